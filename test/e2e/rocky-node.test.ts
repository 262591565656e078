import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnDaemon } from '../../src/process/index.js';
import { sshExec, sshOptionArgs } from '../../src/ssh/index.js';
import { allocateLoopbackPort, bootGuest } from '../../src/vm/index.js';
import { BOOTSTRAP_SUCCESS_FILE, cabpkControlPlaneUserData, configDriveMetaData, makeCapkKey, makeClusterCa } from '../support/capi.js';
import { makeKibDirs, qemuProcessesMentioning, REPO_ROOT, runKib } from '../support/kib-cli.js';

/**
 * The network tier: the real Rocky Linux 9 GenericCloud base, Kubernetes packages from
 * pkgs.k8s.io, control-plane images from registry.k8s.io, then `kubeadm init` on the finished
 * artifact with the guest cut off from every network but SSH, and the API reached from here with
 * @kubernetes/client-node. Opt-in: it needs internet access (and KVM to finish in minutes).
 */
const enabled = process.env.KIB_E2E === '1';
const reason = 'set KIB_E2E=1 to run: needs internet access to the Rocky Linux mirror, pkgs.k8s.io and registry.k8s.io (unreachable on the offline CI machines)';

describe.skipIf(!enabled)(`e2e: Rocky Linux 9 node image${enabled ? '' : ` (skipped: ${reason})`}`, () => {
  let dirs: { root: string; env: Record<string, string> };
  let qcow2: string;
  let kubernetesVersion: string;

  beforeAll(async () => {
    dirs = await makeKibDirs('kib-e2e-');
    const imageYaml = await readFile(join(REPO_ROOT, 'image.yaml'), 'utf8');
    kubernetesVersion = /^\s*version:\s*([0-9.]+)/m.exec(imageYaml)?.[1] ?? '';
    expect(kubernetesVersion).toMatch(/^\d+\.\d+\.\d+$/);
  });

  afterAll(async () => {
    expect(await qemuProcessesMentioning(dirs.root)).toEqual([]);
    await rm(dirs.root, { recursive: true, force: true });
  });

  it('builds the default image (image.yaml) from the real Rocky 9 base', async () => {
    const result = await runKib(['build', '--output', join(dirs.root, 'out'), '--log-format', 'json', '--json'], { env: dirs.env });
    expect(result.exitCode, result.stderr.slice(-4000)).toBe(0);
    const build = JSON.parse(result.stdout) as { artifacts: { kind: string; path: string }[] };
    qcow2 = build.artifacts.find((a) => a.kind === 'qcow2')?.path ?? '';
    const manifest = JSON.parse(await readFile(join(build.artifacts[0]?.path ?? '', '..', 'manifest.json'), 'utf8')) as { kubernetes: { installed: boolean } };
    expect(manifest.kubernetes.installed).toBe(true);
  });

  it('kib verify passes with nothing skipped, on a disk grown by 2 GiB (XFS grows with it)', async () => {
    const result = await runKib(['verify', qcow2, '--grow', '2G', '--json'], { env: dirs.env });
    const report = JSON.parse(result.stdout) as { results: { id: string; status: string; detail: string }[] };
    expect(report.results.filter((r) => r.status !== 'pass')).toEqual([]);
    expect(result.exitCode).toBe(0);
  });

  it('kib verify passes with a ConfigDrive seed, as Cluster API on KubeVirt delivers it', async () => {
    const result = await runKib(['verify', qcow2, '--seed', 'configdrive', '--skip-hygiene', '--json'], { env: dirs.env });
    const report = JSON.parse(result.stdout) as { results: { id: string; status: string }[] };
    expect(report.results.filter((r) => r.status === 'fail')).toEqual([]);
  });

  it('kubeadm init succeeds air-gapped (2 vCPU, 4 GiB) without pulling an image, and the API answers a Kubernetes client', async () => {
    const work = join(dirs.root, 'kubeadm');
    await mkdir(work, { recursive: true });
    // restricted: the guest reaches nothing but its forwarded SSH port, so any image pull would fail.
    await using guest = await bootGuest({
      name: 'kib-e2e-node',
      workDir: work,
      disk: { kind: 'overlay', basePath: qcow2, baseFormat: 'qcow2', sizeBytes: 20 * 1024 ** 3 },
      seed: { kind: 'nocloud', metaData: 'instance-id: kib-e2e-node\nlocal-hostname: kib-e2e-node\n' },
      user: 'e2e',
      vm: { cpus: 2, memoryMiB: 4096, accelerator: 'auto', firmware: 'bios', network: 'restricted', stateDir: dirs.env.KIB_STATE_DIR ?? '' },
      wait: 'cloud-init',
      bootTimeoutMs: 900_000,
    });
    const target = guest.requireSsh();
    const sh = async (command: string, timeoutMs = 600_000): Promise<string> => (await sshExec(target, `sudo -n sh -c '${command.replace(/'/g, `'\\''`)}'`, { timeoutMs })).stdout;

    const imagesBefore = await sh('crictl images -o json');
    await sh(`kubeadm init --kubernetes-version v${kubernetesVersion} --pod-network-cidr 10.244.0.0/16 --apiserver-cert-extra-sans 127.0.0.1`, 900_000);
    const imagesAfter = await sh('crictl images -o json');
    const refs = (json: string): string[] => ((JSON.parse(json) as { images: { repoTags: string[] }[] }).images.flatMap((i) => i.repoTags)).sort();
    expect(refs(imagesAfter)).toEqual(refs(imagesBefore));

    // The control plane becomes healthy: the API server reports ready from inside the node.
    let ready = '';
    for (let attempt = 0; attempt < 60 && ready !== 'ok'; attempt += 1) {
      ready = (await sshExec(target, 'sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz', { allowFailure: true, timeoutMs: 30_000 })).stdout.trim();
      if (ready !== 'ok') await new Promise((r) => setTimeout(r, 5_000));
    }
    expect(ready).toBe('ok');

    // From this machine, through a forwarded port, with a Kubernetes client.
    const localPort = await allocateLoopbackPort();
    const tunnel = spawnDaemon('ssh', [...sshOptionArgs(target), '-p', String(target.port), '-N', '-L', `127.0.0.1:${localPort}:127.0.0.1:6443`, `${target.user}@${target.host}`], {
      stderrFile: join(work, 'tunnel.log'),
    });
    try {
      const adminConf = (await sh('cat /etc/kubernetes/admin.conf')).replace(/server: https:\/\/[^\s]+/, `server: https://127.0.0.1:${localPort}`);
      await writeFile(join(work, 'admin.conf'), adminConf, { mode: 0o600 });
      const kubeConfig = new KubeConfig();
      kubeConfig.loadFromString(adminConf);
      const core = kubeConfig.makeApiClient(CoreV1Api);
      let names: string[] = [];
      for (let attempt = 0; attempt < 30 && names.length === 0; attempt += 1) {
        try {
          names = (await core.listNode()).items.map((node) => node.metadata?.name ?? '');
        } catch {
          await new Promise((r) => setTimeout(r, 2_000));
        }
      }
      expect(names).toEqual(['kib-e2e-node']);
      const pods = await core.listNamespacedPod({ namespace: 'kube-system' });
      const running = pods.items.filter((p) => p.status?.phase === 'Running').map((p) => p.metadata?.name ?? '');
      for (const component of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
        expect(running.some((name) => name.startsWith(component))).toBe(true);
      }
    } finally {
      await tunnel.stop();
    }
  });

  it('boots as a Cluster API KubeVirt machine (UEFI, ConfigDrive, CABPK bootstrap data) and the real kubeadm init inside cloud-init succeeds air-gapped; capk reads "success"', async () => {
    const work = join(dirs.root, 'capk');
    await mkdir(work, { recursive: true });
    const key = await makeCapkKey(join(work, 'capk'));
    const ca = await makeClusterCa(join(work, 'ca'));
    const name = 'capi-cp-0';
    // kubeadm init runs in cloud-init's final stage; an error there makes cloud-init report error.
    await using guest = await bootGuest({
      name: 'kib-e2e-capk',
      workDir: work,
      disk: { kind: 'overlay', basePath: qcow2, baseFormat: 'qcow2', sizeBytes: 20 * 1024 ** 3 },
      seed: { kind: 'configdrive', metaData: configDriveMetaData(name) },
      userData: cabpkControlPlaneUserData({ capkPublicKey: key.publicKey, ca, kubernetesVersion, kubeadm: 'kubeadm' }),
      user: 'capk',
      privateKeyPath: key.privateKeyPath,
      vm: { cpus: 2, memoryMiB: 4096, accelerator: 'auto', firmware: 'uefi', network: 'restricted', stateDir: dirs.env.KIB_STATE_DIR ?? '' },
      wait: 'cloud-init',
      bootTimeoutMs: 1_200_000,
    });
    const capk = guest.requireSsh();
    expect((await sshExec(capk, `cat ${BOOTSTRAP_SUCCESS_FILE}`, { timeoutMs: 60_000 })).stdout.trim()).toBe('success');
    const nodes = (await sshExec(capk, 'sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o name', { timeoutMs: 120_000 })).stdout.trim();
    expect(nodes).toBe(`node/${name}`);
    const providerId = (await sshExec(capk, `sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf get node ${name} -o jsonpath={.spec.providerID}`, { timeoutMs: 120_000 })).stdout.trim();
    expect(providerId).toBe(`kubevirt://${name}`);
    // kubeadm used the CA from the bootstrap data instead of making its own.
    expect((await sshExec(capk, 'sudo -n cat /etc/kubernetes/pki/ca.crt', { timeoutMs: 60_000 })).stdout.trim()).toBe(ca.cert.trim());
  });
});
