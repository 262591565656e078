import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBuildManifest } from '../../src/core/build-facts.js';
import { sshExec } from '../../src/ssh/index.js';
import { KUBEVIRT_REQUIRED_AGENT_COMMANDS } from '../../src/verify/guest-checks.js';
import { bootGuest } from '../../src/vm/index.js';
import { LayerStore } from '../../src/layers/index.js';
import { openArtifactFs } from '../../src/verify/artifact-fs.js';
import { findBuildUserTraces } from '../../src/verify/hygiene.js';
import {
  BOOTSTRAP_SUCCESS_FILE,
  cabpkControlPlaneUserData,
  configDriveMetaData,
  KUBEADM_CONFIG_PATH,
  KUBEADM_RECORDED_ARGUMENTS_PATH,
  makeCapkKey,
  makeClusterCa,
} from '../support/capi.js';
import { ensureDebianFixture } from '../support/fixture.js';
import { parseForwardingResults, PROBE_FORWARDING_PATH, REVERT_FIREWALL_FIX, SETUP_FORWARDING_PATH } from '../support/cni-forwarding.js';
import { DEBIAN_FAMILY_SKIPPED_CHECKS, DEBIAN_FAMILY_SKIP_DETAIL, OFFLINE_DEBIAN_SKIPPED_CHECKS, PACKAGE_SOURCE_SKIPPED_CHECKS } from '../support/offline-skips.js';
import { listTree, makeKibDirs, qemuProcessesMentioning, REPO_ROOT, runKib, startKib } from '../support/kib-cli.js';

/**
 * The whole engine on a real VM, offline: `kib build` of examples/debian-12.yaml on the Debian 12
 * test base with the project's playbook, then the artifact booted fresh by `kib verify`.
 */
const BOOT_TIMEOUT_MS = 600_000;
/** The build date of every build here (2026-01-01), so that an unchanged rebuild keeps its keys. */
const REBUILD_DATE_EPOCH = '1767225600';
const STAGE_NAMES = ['os', 'runtime', 'kubernetes', 'images', 'finalize'];

type StageEvent = { type: 'stage-start'; stage: string; key: string; hit: boolean } | { type: 'stage-end'; stage: string; durationMs: number; layer: string | null };

/** The stage-start and stage-end events of a `--log-format json` run, in order. */
function stageEvents(stderr: string): (StageEvent & { hit?: boolean; layer?: string | null; key?: string })[] {
  const out: StageEvent[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const event = JSON.parse(line) as { type?: string };
      if (event.type === 'stage-start' || event.type === 'stage-end') out.push(event as StageEvent);
    } catch {
      // not an event line
    }
  }
  return out;
}

type BuildOutput = { outputDir: string; logDir: string; artifacts: { path: string; kind: string; sha256: string; sizeBytes: number }[] };

function artifactPath(build: BuildOutput | undefined, kind: string): string {
  const path = build?.artifacts.find((a) => a.kind === kind)?.path;
  if (path === undefined) throw new Error(`no ${kind} artifact: the build test above did not finish`);
  return path;
}

describe('kib build (offline Debian 12 test base)', () => {
  let fixture: string;
  let dirs: { root: string; env: Record<string, string> };
  let outputDir: string;
  let build: BuildOutput | undefined;
  /** Wall time of each build, printed once at the end (the bench measures them properly). */
  const wallMs: Record<string, number> = {};

  beforeAll(async () => {
    fixture = await ensureDebianFixture();
    dirs = await makeKibDirs('kib-vm-build-');
    // A fixed build date: the keys of the rebuilds below must not depend on whether this checkout
    // has local changes (without it, a dirty tree dates every build now).
    dirs.env.SOURCE_DATE_EPOCH = REBUILD_DATE_EPOCH;
    outputDir = join(dirs.root, 'out');
  });

  afterAll(async () => {
    if (Object.keys(wallMs).length > 1) console.log(`build wall times: ${Object.entries(wallMs).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}`);
    expect(await qemuProcessesMentioning(dirs.root)).toEqual([]);
    await rm(dirs.root, { recursive: true, force: true });
  });

  it('builds, seals and exports the artifacts', async () => {
    const started = performance.now();
    const result = await runKib(['build', '--config', 'examples/debian-12.yaml', '--base', fixture, '--output', outputDir, '--log-format', 'json', '--json'], { env: dirs.env });
    expect(result.exitCode, result.stderr.slice(-4000)).toBe(0);
    const output = JSON.parse(result.stdout) as BuildOutput;
    build = output;
    wallMs.cold = performance.now() - started;

    const kinds = output.artifacts.map((a) => a.kind).sort();
    expect(kinds).toEqual(['containerdisk', 'manifest', 'qcow2', 'raw', 'sbom', 'sha256sums']);
    // Cold: every stage ran, every stage but the last left a layer.
    const stages = stageEvents(result.stderr);
    expect(stages.filter((e) => e.type === 'stage-start').map((e) => `${e.stage}:${e.hit ? 'hit' : 'run'}`)).toEqual(STAGE_NAMES.map((n) => `${n}:run`));
    expect(stages.filter((e) => e.type === 'stage-end').map((e) => e.layer !== null)).toEqual([true, true, true, true, false]);

    const qcow2 = output.artifacts.find((a) => a.kind === 'qcow2');
    expect(qcow2).toBeDefined();
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output', 'json', qcow2?.path ?? ''], { encoding: 'utf8' })) as Record<string, unknown>;
    expect(info.format).toBe('qcow2');
    expect(info['backing-filename']).toBeUndefined();
    expect(info['virtual-size']).toBe(4 * 1024 ** 3);

    // sha256sum -c exits non-zero on any mismatch or missing file.
    const check = execFileSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: output.outputDir, encoding: 'utf8' });
    expect(check.trim().split('\n')).toHaveLength(5);
    expect(check).not.toMatch(/FAILED/);

    // Read through the schema every reader of manifest.json uses.
    const manifest = parseBuildManifest(await readFile(join(output.outputDir, 'manifest.json'), 'utf8'));
    expect(manifest.base.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(manifest.base.url).toContain('debian-12');
    expect(manifest.config.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(manifest.playbook.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(manifest.tool.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(typeof manifest.image.version).toBe('string');
    expect(manifest.image.kubernetesVersion).toMatch(/^\d+\.\d+\.\d+$/);
    for (const phase of ['base', 'provision', 'export'] as const) expect(manifest.build.phases[phase]).toBeGreaterThan(0);
    for (const artifact of manifest.artifacts) {
      expect(artifact.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(artifact.sizeBytes).toBeGreaterThan(0);
    }

    // Nothing of the build is left next to the finished directory.
    const siblings = await listTree(outputDir);
    expect(siblings.filter((entry) => entry.includes('.staging'))).toEqual([]);
  });

  it('kib verify boots the artifact fresh (BIOS, NoCloud, disk grown by 2 GiB) and every check that can run offline passes', async () => {
    const qcow2 = artifactPath(build, 'qcow2');
    const result = await runKib(['verify', qcow2, '--grow', '2G', '--json'], { env: dirs.env });
    const report = JSON.parse(result.stdout) as { results: { id: string; status: string; detail: string }[] };
    const failures = report.results.filter((r) => r.status === 'fail');
    expect(failures, JSON.stringify(failures, null, 2)).toEqual([]);
    expect(result.exitCode).toBe(0);
    // The package-source gate left the Kubernetes packages, the runtime and the images out; the
    // manifest records why, and exactly the checks behind that gate (plus SELinux, which does not
    // apply to Debian) are skipped, each with that reason. The set is read off the check
    // definitions in test/support/offline-skips.ts, and the unit tier computes it too.
    const manifest = JSON.parse(await readFile(join(dirname(qcow2), 'manifest.json'), 'utf8')) as { kubernetes: { installed: boolean; skippedReason: string | null } };
    const skipped = report.results.filter((r) => r.status === 'skip');
    if (manifest.kubernetes.installed) {
      // Only where the build VM reached pkgs.k8s.io after all.
      expect(skipped.map((r) => r.id).sort()).toEqual(DEBIAN_FAMILY_SKIPPED_CHECKS);
    } else {
      const reason = manifest.kubernetes.skippedReason ?? '';
      expect(reason).not.toBe('');
      expect(skipped.map((r) => r.id).sort()).toEqual(OFFLINE_DEBIAN_SKIPPED_CHECKS);
      for (const check of skipped.filter((r) => PACKAGE_SOURCE_SKIPPED_CHECKS.includes(r.id))) expect(check.detail.endsWith(`: ${reason}`), `${check.id}: ${check.detail}`).toBe(true);
    }
    for (const check of skipped.filter((r) => DEBIAN_FAMILY_SKIPPED_CHECKS.includes(r.id))) expect(check.detail, check.id).toBe(DEBIAN_FAMILY_SKIP_DETAIL);
    expect(report.results.filter((r) => r.status === 'pass').length).toBeGreaterThan(20);
    expect(report.results.find((r) => r.id.includes('grow'))?.status).toBe('pass');
  });

  /**
   * The artifact booted the way KubeVirt boots a VM of the Cluster API KubeVirt provider (CAPK):
   * q35, virtio disks and network, the guest-agent channel, UEFI, and the bootstrap data on a
   * ConfigDrive (`config-2`) disk, shaped like the Cluster API kubeadm bootstrap provider's
   * (CABPK) cloud-config (test/support/capi.ts). Offline there is no kubeadm, so the one `kubeadm`
   * command is replaced by a recorder of its arguments; the e2e tier runs the real one.
   */
  describe('as KubeVirt and the Cluster API KubeVirt provider boot it', () => {
    const hostname = 'capi-node-0';
    let work: string;
    let overlayPath: string;
    let seedPath: string;
    let capkKey: string;
    const stateDir = (): string => dirs.env.KIB_STATE_DIR ?? join(dirs.root, 'state');

    beforeAll(async () => {
      work = join(dirs.root, 'capk');
      await mkdir(work, { recursive: true });
      overlayPath = join(work, 'disk.qcow2');
    });

    it('boots with UEFI from a ConfigDrive seed with CABPK-shaped jinja user-data (kubeadm replaced by an argument recorder); the capk user logs in and reads "success"', async () => {
      const qcow2 = artifactPath(build, 'qcow2');
      const key = await makeCapkKey(join(work, 'capk'));
      capkKey = key.privateKeyPath;
      const ca = await makeClusterCa(join(work, 'ca'));
      // The overlay is kept: the boot below restarts the powered-off machine from it.
      await using guest = await bootGuest({
        name: 'kib-capk',
        workDir: work,
        disk: { kind: 'overlay', basePath: qcow2, baseFormat: 'qcow2', keep: true },
        seed: { kind: 'configdrive', metaData: configDriveMetaData(hostname) },
        userData: cabpkControlPlaneUserData({ capkPublicKey: key.publicKey, ca, kubernetesVersion: '1.36.1', kubeadm: 'recorder' }),
        user: 'capk',
        privateKeyPath: capkKey,
        vm: { cpus: 2, memoryMiB: 2048, accelerator: 'auto', firmware: 'uefi', network: 'restricted', stateDir: stateDir() },
        wait: 'cloud-init',
        bootTimeoutMs: BOOT_TIMEOUT_MS,
      });
      const { vm } = guest;
      overlayPath = guest.diskPath;
      seedPath = guest.seedPath ?? '';
      // Kept for the boot below, which reuses the seed as KubeVirt reattaches it.
      await copyFile(seedPath, join(work, 'config-2.iso'));
      seedPath = join(work, 'config-2.iso');
      const capk = guest.requireSsh();
      expect(guest.cloudInitStatus).toContain('done');
      const sh = async (command: string): Promise<string> => (await sshExec(capk, command, { timeoutMs: 60_000 })).stdout.trim();

      // CAPK's bootstrap check, exactly: ssh as capk, cat the file, expect "success".
      expect(await sh(`cat ${BOOTSTRAP_SUCCESS_FILE}`)).toBe('success');
      expect(await sh(`cat ${KUBEADM_RECORDED_ARGUMENTS_PATH}`)).toBe(`init --config ${KUBEADM_CONFIG_PATH}`);
      // Jinja was rendered with the ConfigDrive's metadata.
      const kubeadmConfig = await sh(`sudo -n cat ${KUBEADM_CONFIG_PATH}`);
      expect(kubeadmConfig).toContain(`name: ${hostname}\n`);
      expect(kubeadmConfig).toContain(`value: kubevirt://${hostname}\n`);
      expect(kubeadmConfig).not.toContain('{{');
      expect(await sh('sudo -n cat /etc/kubernetes/pki/ca.crt')).toBe(ca.cert.trim());
      expect(await sh('sudo -n stat -c %a /etc/kubernetes/pki/ca.key /etc/kubernetes/pki/ca.crt')).toBe('600\n640');
      expect((await sh('id -nG')).split(' ')).toEqual(expect.arrayContaining(['capk', 'users', 'admin']));
      expect(await sh('sudo -n id -u')).toBe('0');
      expect(await sh('hostname')).toBe(hostname);
      expect(await sh('test -d /sys/firmware/efi && echo uefi')).toBe('uefi');
      expect(await sh('sudo -n cloud-init status --long')).toMatch(/ConfigDrive/);

      // Every guest-agent command KubeVirt requires answers (guest-shutdown is used below).
      const agent = vm.guestAgent();
      for (const command of KUBEVIRT_REQUIRED_AGENT_COMMANDS.filter((c) => c !== 'guest-shutdown')) {
        await expect(agent.execute(command), command).resolves.toBeDefined();
      }
      expect(await agent.execute<{ 'host-name': string }>('guest-get-host-name')).toEqual({ 'host-name': hostname });
      expect((await agent.execute<{ id: string }>('guest-get-osinfo')).id).toBe('debian');

      // A KubeVirt stop: the guest powers off through the agent, and QEMU exits by itself.
      await agent.execute('guest-shutdown', { mode: 'powerdown' }).catch(() => undefined);
      const exit = await vm.waitForExit({ timeoutMs: 120_000 });
      expect(exit.exitCode).toBe(0);
    });

    it('comes back after power-off with a different MAC address: DHCP and SSH work', async () => {
      expect(seedPath, 'the UEFI + ConfigDrive boot above must run first').toBeDefined();
      const newMac = '52:54:00:6b:69:62';
      // SSH reaches the guest only through its NIC, so a login means DHCP configured the new one.
      await using guest = await bootGuest({
        name: 'kib-capk-newmac',
        workDir: join(work, 'newmac'),
        disk: { kind: 'existing', path: overlayPath, format: 'qcow2' },
        seed: { kind: 'existing', path: seedPath },
        user: 'capk',
        privateKeyPath: capkKey,
        vm: { cpus: 2, memoryMiB: 2048, accelerator: 'auto', firmware: 'uefi', network: 'restricted', macAddress: newMac, stateDir: stateDir() },
        wait: 'ssh',
        bootTimeoutMs: BOOT_TIMEOUT_MS,
      });
      const capk = guest.requireSsh();
      const addresses = (await sshExec(capk, 'cat /sys/class/net/*/address', { timeoutMs: 60_000 })).stdout;
      expect(addresses).toContain(newMac);
      const ipv4 = (await sshExec(capk, 'ip -4 -o addr show scope global', { timeoutMs: 60_000 })).stdout;
      expect(ipv4).toMatch(/inet 10\.0\.2\.\d+\//);
      await guest.stop();
    });
  });

  /**
   * The image's firewall on pod traffic, in the booted artifact (firewalld 1.3.3 on Debian 12; EL9
   * ships 1.3.4, whose zone and forwarding code is the same). Interfaces named like a CNI's carry
   * the traffic (test/support/cni-forwarding.ts): a cni0 bridge with a pod behind it, a flannel.1
   * device with "another node's pods" behind it, and a peer on the node's network.
   *
   * With the pod zone taken away (REVERT_FIREWALL_FIX, the image's firewall before the fix), the same
   * probes gave, on this machine:
   *   pod-a->pod-b rejected, pod-b->pod-a rejected, outside->pod-a rejected,
   *   outside->node:6443 ok, outside->node:12345 rejected, outside->nodeport->pod-a ok
   * (firewalld's FORWARD chain rejects cni0 -> flannel.1 with admin-prohibited, as in flannel#2055;
   * DNATed Service traffic passes either way because firewalld accepts `ct status dnat`). The test
   * reverts the fix itself and asserts that failure too, so it proves the fix is what makes the
   * difference.
   */
  it('forwards pod traffic between CNI interfaces with the firewall on, keeps the node\'s closed ports closed, and rejects pod traffic once the fix is reverted', async () => {
    const qcow2 = artifactPath(build, 'qcow2');
    await using guest = await bootGuest({
      name: 'kib-cni',
      workDir: join(dirs.root, 'cni'),
      disk: { kind: 'overlay', basePath: qcow2, baseFormat: 'qcow2' },
      seed: { kind: 'nocloud' },
      user: 'probe',
      hostname: 'cni-node',
      vm: { cpus: 2, memoryMiB: 1024, accelerator: 'auto', firmware: 'bios', network: 'restricted', stateDir: dirs.env.KIB_STATE_DIR ?? join(dirs.root, 'state') },
      wait: 'cloud-init',
      bootTimeoutMs: BOOT_TIMEOUT_MS,
    });
    const root = async (script: string): Promise<string> => {
      const result = await guest.exec('sudo -n /bin/sh -s', { input: script, timeoutMs: 120_000, allowFailure: true });
      expect(result.exitCode, `${result.stdout}\n${result.stderr}\nconsole: ${guest.vm.consoleLogPath}`).toBe(0);
      return result.stdout;
    };

    expect((await root('firewall-cmd --state')).trim()).toBe('running');
    await root(SETUP_FORWARDING_PATH);
    expect(parseForwardingResults(await root(PROBE_FORWARDING_PATH))).toEqual({
      'pod-a->pod-b': 'ok',
      'pod-b->pod-a': 'ok',
      'outside->node:6443': 'ok',
      'outside->node:12345': 'rejected',
      'outside->nodeport->pod-a': 'ok',
      'outside->pod-a': 'ok',
    });

    await root(REVERT_FIREWALL_FIX);
    expect(parseForwardingResults(await root(PROBE_FORWARDING_PATH))).toEqual({
      'pod-a->pod-b': 'rejected',
      'pod-b->pod-a': 'rejected',
      'outside->node:6443': 'ok',
      'outside->node:12345': 'rejected',
      'outside->nodeport->pod-a': 'ok',
      'outside->pod-a': 'rejected',
    });
    await guest.stop();
  });

  /**
   * Incremental builds on the layers the cold build above stored: a no-op, a stage interrupted
   * and resumed, and a change to the last stage only, whose artifact passes kib verify like the
   * cold one with the same package list.
   */
  describe('rebuilds from stage layers', () => {
    const coldArgs = (): string[] => ['build', '--config', 'examples/debian-12.yaml', '--base', fixture, '--output', outputDir, '--log-format', 'json', '--json'];

    /** examples/debian-12.yaml with `change` applied, written outside the repository (paths made absolute). */
    async function configWith(name: string, change: (text: string) => string): Promise<string> {
      const text = (await readFile(join(REPO_ROOT, 'examples', 'debian-12.yaml'), 'utf8'))
        .replace('playbook: ../playbook/site.yml', `playbook: ${join(REPO_ROOT, 'playbook', 'site.yml')}`)
        .replace('dir: ../output/debian-12', `dir: ${join(dirs.root, `out-${name}`)}`);
      const path = join(dirs.root, `${name}.yaml`);
      await writeFile(path, change(text));
      return path;
    }

    it('with nothing changed, says it is up to date and makes nothing new', async () => {
      expect(build, 'the cold build did not finish').toBeDefined();
      const before = await listTree(outputDir);
      const layersBefore = await listTree(join(dirs.env.KIB_CACHE_DIR ?? '', 'layers', 'entries'));
      const started = performance.now();
      const result = await runKib(coldArgs(), { env: dirs.env });
      wallMs.noop = performance.now() - started;
      expect(result.exitCode, result.stderr.slice(-3000)).toBe(0);
      const output = JSON.parse(result.stdout) as BuildOutput & { upToDate: boolean };
      expect(output.upToDate).toBe(true);
      expect(output.outputDir).toBe(build?.outputDir);
      expect(output.artifacts.map((a) => `${a.kind} ${a.sha256}`).sort()).toEqual(build?.artifacts.map((a) => `${a.kind} ${a.sha256}`).sort());
      expect(result.stderr).toContain('up to date');
      expect(stageEvents(result.stderr)).toEqual([]);
      expect(result.stderr).not.toContain('"phase":"provision"');
      expect(await listTree(outputDir)).toEqual(before);
      expect(await listTree(join(dirs.env.KIB_CACHE_DIR ?? '', 'layers', 'entries'))).toEqual(layersBefore);
    });

    it('no stored layer holds the build user or its cloud-init instance', async () => {
      const store = LayerStore.inCache(dirs.env.KIB_CACHE_DIR ?? '');
      const entries = await store.list();
      expect(entries.map((e) => e.meta.stage).sort()).toEqual(['images', 'kubernetes', 'os', 'runtime']);
      for (const stage of ['os', 'images']) {
        const entry = entries.find((e) => e.meta.stage === stage);
        await using fs = await openArtifactFs(entry?.path ?? '', { workDir: join(dirs.root, `layer-fs-${stage}`), format: 'qcow2' });
        expect(await findBuildUserTraces(fs, 'kib'), stage).toEqual([]);
        expect(await fs.listDir('/var/lib/cloud/instances'), stage).toBeUndefined();
        // The layer is a usable root filesystem (it is booted below), not an empty shell. (Debian's
        // /etc/os-release is a relative symlink, which the artifact reader does not follow.)
        expect(await fs.readFile('/usr/lib/os-release'), stage).toContain('Debian');
      }
    });

    it('Ctrl-C in a stage after os keeps the layers stored before it, and the next build starts from the last one', async () => {
      // A provision variable the containerd role reads: keys runtime and later, not os.
      const config = await configWith('runtime-change', (text) => text.replace(/^(  playbook: .*)$/m, '$1\n  vars:\n    containerd_version: "2.3.4"'));
      const args = ['build', '--config', config, '--base', fixture, '--log-format', 'json'];
      const interruptAt = (stage: string) => {
        let interrupted = false;
        return startKib(args, {
          env: dirs.env,
          onStderrLine: (line, child) => {
            if (!interrupted && line.includes('"type":"stage-start"') && line.includes(`"stage":"${stage}"`)) {
              interrupted = true;
              child.kill('SIGINT');
            }
          },
        }).done;
      };
      const first = await interruptAt('kubernetes');
      expect(first.exitCode, first.stderr.slice(-3000)).toBe(130);
      const firstStages = stageEvents(first.stderr);
      expect(firstStages.filter((e) => e.type === 'stage-start').map((e) => `${e.stage}:${e.hit ? 'hit' : 'run'}`)).toEqual(['os:hit', 'runtime:run', 'kubernetes:run']);
      const runtimeLayer = firstStages.find((e) => e.type === 'stage-end' && e.stage === 'runtime')?.layer;
      expect(runtimeLayer).toMatch(/^[0-9a-f]{64}$/);
      // Nothing half-written: no put in progress, no QEMU, no work directory.
      expect(await listTree(join(dirs.env.KIB_CACHE_DIR ?? '', 'layers', 'tmp'))).toEqual([]);
      expect(await qemuProcessesMentioning(dirs.root)).toEqual([]);
      expect((await listTree(join(dirs.env.KIB_STATE_DIR ?? '', 'builds'))).filter((e) => e.includes('/work/'))).toEqual([]);

      // The next build boots from the runtime layer the interrupted one stored (interrupted again
      // once that shows, to keep the tier short; the late-stage rebuild below runs to the end).
      const second = await interruptAt('kubernetes');
      expect(second.exitCode, second.stderr.slice(-3000)).toBe(130);
      const secondStarts = stageEvents(second.stderr).filter((e) => e.type === 'stage-start');
      expect(secondStarts.map((e) => `${e.stage}:${e.hit ? 'hit' : 'run'}`)).toEqual(['os:hit', 'runtime:hit', 'kubernetes:run']);
      expect(secondStarts.find((e) => e.stage === 'runtime')?.key).toBe(runtimeLayer);
      expect(second.stderr).toMatch(/overlay of the runtime layer/);
    });

    let warm: BuildOutput | undefined;

    it('after a change read only by the last stage (the image name), only the last stage runs', async () => {
      const config = await configWith('renamed', (text) => text.replace(/^name: debian-12$/m, 'name: debian-12-renamed'));
      const started = performance.now();
      const result = await runKib(['build', '--config', config, '--base', fixture, '--log-format', 'json', '--json'], { env: dirs.env });
      expect(result.exitCode, result.stderr.slice(-3000)).toBe(0);
      wallMs.lastStageOnly = performance.now() - started;
      const starts = stageEvents(result.stderr).filter((e) => e.type === 'stage-start');
      expect(starts.map((e) => `${e.stage}:${e.hit ? 'hit' : 'run'}`)).toEqual(['os:hit', 'runtime:hit', 'kubernetes:hit', 'images:hit', 'finalize:run']);
      // The Ansible log of this build has no task of an earlier stage's roles.
      expect(result.stderr).not.toMatch(/TASK \[(base|kernel|guest_agent|cloud_init|network|firewall) :/);
      expect(result.stderr).toMatch(/TASK \[release :/);
      warm = JSON.parse(result.stdout) as BuildOutput;
      const check = execFileSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: warm.outputDir, encoding: 'utf8' });
      expect(check).not.toMatch(/FAILED/);
    });

    it('the warm artifact passes kib verify as the cold one does, with the same installed packages in its SBOM', async () => {
      const qcow2 = artifactPath(warm, 'qcow2');
      // The same flags as the cold artifact's verify above: the disk is grown, so disk/root-grown runs.
      const result = await runKib(['verify', qcow2, '--grow', '2G', '--json'], { env: dirs.env });
      const report = JSON.parse(result.stdout) as { results: { id: string; status: string; detail: string }[] };
      expect(report.results.filter((r) => r.status === 'fail'), result.stderr.slice(-2000)).toEqual([]);
      expect(result.exitCode).toBe(0);
      const manifest = JSON.parse(await readFile(join(dirname(qcow2), 'manifest.json'), 'utf8')) as { kubernetes: { installed: boolean } };
      expect(report.results.filter((r) => r.status === 'skip').map((r) => r.id).sort()).toEqual(manifest.kubernetes.installed ? DEBIAN_FAMILY_SKIPPED_CHECKS : OFFLINE_DEBIAN_SKIPPED_CHECKS);
      expect(report.results.find((r) => r.id === 'hygiene/no-build-user')?.status).toBe('pass');
      const packages = async (sbomPath: string): Promise<string[]> => {
        const sbom = JSON.parse(await readFile(sbomPath, 'utf8')) as { components?: { type?: string; name: string; version?: string; purl?: string }[] };
        return (sbom.components ?? []).filter((c) => c.purl?.startsWith('pkg:deb/') === true).map((c) => `${c.name} ${c.version ?? ''}`).sort();
      };
      const coldPackages = await packages(artifactPath(build, 'sbom'));
      expect(coldPackages.length).toBeGreaterThan(100);
      expect(await packages(artifactPath(warm, 'sbom'))).toEqual(coldPackages);
    });
  });
});

describe('kib build is interrupted or refused cleanly', () => {
  let fixture: string;
  let dirs: { root: string; env: Record<string, string> };

  beforeAll(async () => {
    fixture = await ensureDebianFixture();
    dirs = await makeKibDirs('kib-vm-cancel-');
    // The base is cached first, so "the cache is as it was" can be checked exactly.
    const fetched = await runKib(['fetch', '--config', 'examples/debian-12.yaml', '--base', fixture], { env: dirs.env });
    expect(fetched.exitCode, fetched.stderr).toBe(0);
  });

  afterAll(async () => {
    await rm(dirs.root, { recursive: true, force: true });
  });

  it('Ctrl-C during provisioning stops QEMU, removes temporary files and exits 130', async () => {
    const outputDir = join(dirs.root, 'out');
    const cacheBefore = await listTree(dirs.env.KIB_CACHE_DIR ?? '');
    let interruptedAt: string | undefined;
    const { done } = startKib(['build', '--config', 'examples/debian-12.yaml', '--base', fixture, '--output', outputDir, '--log-format', 'json'], {
      env: dirs.env,
      onStderrLine: (line, child) => {
        // Interrupt once the playbook is running inside the VM.
        if (interruptedAt === undefined && line.includes('"source":"ansible"') && line.includes('TASK [')) {
          interruptedAt = line;
          child.kill('SIGINT');
        }
      },
    });
    const result = await done;
    expect(interruptedAt, result.stderr.slice(-3000)).toBeDefined();
    expect(result.exitCode).toBe(130);
    expect(await qemuProcessesMentioning(dirs.root)).toEqual([]);
    expect(await listTree(outputDir)).toEqual([]);
    expect(await listTree(dirs.env.KIB_CACHE_DIR ?? '')).toEqual(cacheBefore);
    const state = await listTree(join(dirs.env.KIB_STATE_DIR ?? '', 'runs'));
    expect(state).toEqual([]);
    const leftovers = (await listTree(join(dirs.env.KIB_STATE_DIR ?? '', 'builds'))).filter((e) => e.includes('/work/'));
    expect(leftovers).toEqual([]);
  });

  it('a checksum mismatch aborts before provisioning and adds nothing to the cache', async () => {
    const outputDir = join(dirs.root, 'out-bad');
    const cacheBefore = await listTree(dirs.env.KIB_CACHE_DIR ?? '');
    const wrong = '0'.repeat(64);
    const result = await runKib(['build', '--config', 'examples/debian-12.yaml', '--base', `file://${fixture}`, '--base-sha256', wrong, '--output', outputDir], { env: dirs.env });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(wrong);
    expect(result.stderr).toMatch(/sha256/i);
    expect(result.stderr).not.toContain('==> provision');
    expect(await listTree(dirs.env.KIB_CACHE_DIR ?? '')).toEqual(cacheBefore);
    expect(await listTree(outputDir)).toEqual([]);
  });
});
