import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { KibError } from '../core/errors.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { bootGuest, qemuImgInfo } from '../vm/index.js';
import { checkArtifactHygiene } from './artifact-fs.js';
import { asRoot, type CheckContext, type CheckResult } from './check.js';
import { expectedFromManifest, expectedFromRelease, RELEASE_FILE_PATH, type ExpectedImage, type ExpectedOverrides } from './expected.js';
import { guestChecks } from './guest-checks.js';
import { runChecks } from './runner.js';

export const VERIFY_USER = 'kib-verify';

export interface VerifyArtifactOptions {
  /** Where run dirs and the scratch overlay live (the overlay is removed afterwards). */
  stateDir: string;
  /** manifest.json describing the artifact; default: the one beside it, if any. */
  manifestPath?: string;
  /** Grow the disk by this many bytes before the first boot; the root filesystem must follow. */
  growBytes?: number;
  /** How the verify VM gets its cloud-init data: NoCloud (`cidata`) or ConfigDrive (`config-2`, as CAPK does). */
  seed: 'nocloud' | 'configdrive';
  firmware: 'bios' | 'uefi';
  accelerator: 'auto' | 'kvm' | 'tcg';
  cpus: number;
  memoryMiB: number;
  bootTimeoutMs: number;
  overrides?: ExpectedOverrides;
  /** Skip the offline hygiene checks (they need debugfs or xfs_db). */
  skipHygiene?: boolean;
  signal: AbortSignal;
  reporter?: Reporter;
}

export interface VerifyArtifactResult {
  expected: ExpectedImage;
  results: CheckResult[];
  consoleLogPath: string;
  bootMs: number;
}

/**
 * `kib verify`: checks a finished artifact the way it will be used. First its files, read offline
 * (hygiene: what the image carries before any boot); then a fresh copy-on-write overlay of it —
 * never the build VM — booted like KubeVirt boots it (q35, virtio, guest-agent channel, a new
 * cloud-init seed, no network but SSH), and the declarative check list over SSH and the agent.
 */
export async function verifyArtifact(artifactPath: string, options: VerifyArtifactOptions): Promise<VerifyArtifactResult> {
  const reporter = options.reporter ?? silentReporter;
  const { signal } = options;
  const step = (message: string): void => reporter.emit({ type: 'step', phase: 'verify', message });

  const info = await qemuImgInfo(artifactPath, signal);
  if (info.backingFile !== undefined) {
    throw new KibError('ARTIFACT_HAS_BACKING_FILE', `${artifactPath} has a backing file (${info.backingFile}); KubeVirt rejects such disks`, {
      hint: 'Verify the exported artifact from the output directory, not the build overlay.',
    });
  }
  if (info.format !== 'qcow2' && info.format !== 'raw') {
    throw new KibError('ARTIFACT_FORMAT', `${artifactPath} is ${info.format}; kib verify (and KubeVirt) take qcow2 or raw`);
  }
  const format: 'qcow2' | 'raw' = info.format;
  let manifest: string | undefined;
  const manifestPath = options.manifestPath ?? join(dirname(artifactPath), 'manifest.json');
  try {
    manifest = await readFile(manifestPath, 'utf8');
  } catch (error) {
    if (options.manifestPath !== undefined) throw new KibError('MANIFEST_UNREADABLE', `Could not read ${manifestPath}: ${(error as Error).message}`);
  }
  const grownTo = options.growBytes === undefined || options.growBytes === 0 ? undefined : info.virtualSizeBytes + options.growBytes;
  const overrides: ExpectedOverrides = { ...options.overrides, ...(grownTo === undefined ? {} : { diskGrownToBytes: grownTo }) };

  await mkdir(join(options.stateDir, 'verify'), { recursive: true });
  const workDir = await mkdtemp(join(options.stateDir, 'verify', `${basename(artifactPath)}-`));
  try {
    let expected = manifest === undefined ? undefined : expectedFromManifest(manifest, overrides, manifestPath);
    const results: CheckResult[] = [];
    if (expected !== undefined && options.skipHygiene !== true) {
      step(`reading the artifact's files offline (hygiene: host keys, machine-id, cloud-init state, build user, logs)`);
      results.push(...(await checkArtifactHygiene(artifactPath, { workDir: join(workDir, 'fs'), format, expected, buildUser: 'kib', reporter, signal })));
    }

    step(`booting a fresh overlay of ${basename(artifactPath)}${grownTo === undefined ? '' : ` grown to ${grownTo} bytes`} with a ${options.seed === 'nocloud' ? 'NoCloud' : 'ConfigDrive'} seed`);
    await using guest = await bootGuest(
      {
        name: 'kib-verify',
        workDir,
        disk: { kind: 'overlay', basePath: artifactPath, baseFormat: format, sizeBytes: grownTo ?? info.virtualSizeBytes },
        seed: options.seed === 'nocloud' ? { kind: 'nocloud' } : { kind: 'configdrive' },
        user: VERIFY_USER,
        hostname: 'kib-verify',
        vm: {
          cpus: options.cpus,
          memoryMiB: options.memoryMiB,
          accelerator: options.accelerator,
          firmware: options.firmware,
          network: 'restricted',
          stateDir: options.stateDir,
        },
        // The check list judges cloud-init's final status itself; here we only wait for it to settle.
        wait: 'cloud-init-settled',
        bootTimeoutMs: options.bootTimeoutMs,
      },
      { signal, reporter, onStep: step },
    );
    const { vm } = guest;
    const bootMs = guest.bootMs;

    const ssh: CheckContext['ssh'] = async (command, opts) => {
      const result = await guest.exec(asRoot(command), { signal, timeoutMs: opts?.timeoutMs ?? 120_000, allowFailure: true });
      return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr };
    };
    if (expected === undefined) {
      const release = await ssh(`cat ${RELEASE_FILE_PATH}`);
      if (release.exitCode !== 0) {
        throw new KibError('NO_EXPECTATION', `Neither ${manifestPath} nor ${RELEASE_FILE_PATH} in the image says what this image should be`, {
          hint: 'Pass --manifest FILE (the manifest.json written with the artifact).',
        });
      }
      expected = expectedFromRelease(release.stdout, overrides);
    }
    const agent = vm.guestAgent();
    const context: CheckContext = {
      ssh,
      agent: (execute, args) => agent.execute(execute, args),
      expected,
      sshUser: VERIFY_USER,
    };
    step('running the guest checks over SSH and the guest agent');
    results.push(...(await runChecks(guestChecks, context, { reporter, signal })));
    return { expected, results, consoleLogPath: vm.consoleLogPath, bootMs };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
