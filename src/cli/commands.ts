import { buildCommand } from './cmd-build.js';
import { fetchCommand, lockCommand, planCommand } from './cmd-config.js';
import { doctorCommand } from './cmd-doctor.js';
import { verifyCommand } from './cmd-verify.js';
import type { CommandDefinition } from './define.js';

export type { CommandContext, CommandDefinition } from './define.js';

export const COMMANDS: CommandDefinition[] = [buildCommand, planCommand, fetchCommand, lockCommand, verifyCommand, doctorCommand];
