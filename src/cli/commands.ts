import { buildCommand } from './cmd-build.js';
import { cacheCommand } from './cmd-cache.js';
import { downCommand, kubeconfigCommand, snapshotCommand, sshCommand, statusCommand, upCommand } from './cmd-cluster.js';
import { fetchCommand, lockCommand, planCommand } from './cmd-config.js';
import { doctorCommand } from './cmd-doctor.js';
import { netbootCommand } from './cmd-netboot.js';
import { verifyCommand } from './cmd-verify.js';
import { kubevirtCommand, pushCommand, serveCommand } from './cmd-deliver.js';
import type { CommandDefinition } from './define.js';

export type { CommandContext, CommandDefinition } from './define.js';

export const COMMANDS: CommandDefinition[] = [buildCommand, planCommand, fetchCommand, lockCommand, verifyCommand, serveCommand, pushCommand, kubevirtCommand, upCommand, statusCommand, sshCommand, kubeconfigCommand, snapshotCommand, downCommand, cacheCommand, netbootCommand, doctorCommand];
