import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { caCertHash, CNI_CONFIG_PATH, renderBridgeCniConfig, type ClusterNode } from '../../src/cluster/index.js';
import { addressAddArgs, bridgeAddArgs, linkUpArgs, tapAddArgs, tapAttachArgs } from '../../src/net/args.js';
import { MACHINE_GROUP, MACHINE_PLURAL, MACHINE_VERSION } from '../../src/netboot/machines.js';
import { run } from '../../src/process/index.js';
import { generateKeyPair } from '../../src/ssh/index.js';
import { startVm, type StartedVm } from '../../src/vm/index.js';
import { KIB_BIN, qemuProcessesMentioning, REPO_ROOT, runKib } from '../support/kib-cli.js';

/**
 * The network tier of `kib netboot`: the real join. `kib up` makes a one-node cluster from the real
 * Rocky Linux 9 artifact (KIB_E2E_ARTIFACT, a `kib build` qcow2) in its namespace `kib-<name>`;
 * the test adds a second bridge there (br1, 10.78.0.1/24, forwarding on, so the two segments
 * reach each other through the namespace, not the host), applies the Machine CRD to the cluster
 * and runs `kib netboot --interface br1 --kubeconfig …` inside the namespace. Then it creates a
 * Machine (after the service started: the watch must pick it up) and boots a VM with a blank disk
 * on br1. stage2 writes and verifies the Rocky image, the node reboots into it, and its
 * cloud-config runs the real `kubeadm join` with a token kib netboot created in the cluster as a
 * bootstrap-token Secret. Both nodes must be Ready, through @kubernetes/client-node, and the
 * Machine's status in the cluster must say `joined`.
 */
const enabled = process.env.KIB_E2E === '1';
const reason = 'set KIB_E2E=1 to run: needs internet access to the Rocky Linux mirror, pkgs.k8s.io and registry.k8s.io (unreachable on the offline CI machines)';

const CLUSTER = 'e2enb';
const NETNS = `kib-${CLUSTER}`;
const NETBOOT_BRIDGE = 'br1';
const NETBOOT_ADDRESS = '10.78.0.1';
const CONTROL_PLANE_IP = '10.77.0.11';
const MACHINE = { name: 'nb-rocky', mac: '52:54:00:78:00:21', ip: '10.78.0.21', podCidr: '10.244.9.0/24' };
const TIMEOUT_MS = 3_600_000;

async function nodeReady(kubeconfig: string): Promise<string[]> {
  const config = new KubeConfig();
  config.loadFromFile(kubeconfig);
  const nodes = await config.makeApiClient(CoreV1Api).listNode();
  return nodes.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).map((n) => n.metadata?.name ?? '');
}

describe.skipIf(!enabled)(`e2e: kib netboot installs a blank-disk VM that joins a kib up cluster${enabled ? '' : ` (skipped: ${reason})`}`, () => {
  let root: string;
  let env: Record<string, string>;
  let kubeconfig: string;
  let service: ChildProcess | undefined;
  let serviceLog = '';
  let vm: StartedVm | undefined;
  const artifact = process.env.KIB_E2E_ARTIFACT ?? '';

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'kne-'));
    env = { KIB_STATE_DIR: join(root, 's') };
    expect(artifact, 'KIB_E2E_ARTIFACT names the Rocky qcow2 (kib build output)').not.toBe('');
    // The namespace has no way out: build stage2 and the compressed raw image from the host first.
    const { ensureStage2 } = await import('../../src/netboot/stage2.js');
    const { ensureServedImage } = await import('../../src/netboot/image.js');
    const { cacheDir } = await import('../../src/core/dirs.js');
    await ensureStage2({ cacheDir: cacheDir() });
    await ensureServedImage(artifact, { cacheDir: cacheDir() });
  }, TIMEOUT_MS);

  afterAll(async () => {
    await vm?.stop({ graceMs: 10_000 }).catch(() => undefined);
    if (service !== undefined && service.exitCode === null) {
      const exited = new Promise((resolve) => service?.once('exit', resolve));
      service.kill('SIGTERM');
      await exited;
    }
    // kib down removes the namespace, and with it br1 and the tap this test added.
    await runKib(['down', CLUSTER], { env });
    expect(await qemuProcessesMentioning(root, { ignoreZombies: true })).toEqual([]);
    await rm(root, { recursive: true, force: true });
  });

  it(
    'a one-node kib up cluster, then a netbooted blank-disk VM joins it for real; both nodes Ready',
    async ({ annotate }) => {
      const up = await runKib(['up', artifact, '--nodes', '1', '--name', CLUSTER, '--json'], { env });
      expect(up.exitCode, up.stderr.slice(-4000)).toBe(0);
      kubeconfig = (JSON.parse(up.stdout) as { kubeconfig: string }).kubeconfig;
      expect(await nodeReady(kubeconfig)).toEqual(['node1']);

      const config = new KubeConfig();
      config.loadFromFile(kubeconfig);
      // The CRD, from the file users apply.
      const crd = parse(await readFile(join(REPO_ROOT, 'deploy', 'crd-machine.yaml'), 'utf8')) as V1CustomResourceDefinition;
      await config.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({ body: crd });
      const objects = config.makeApiClient(CustomObjectsApi);
      const deadline = Date.now() + 120_000;
      for (;;) {
        try {
          await objects.listClusterCustomObject({ group: MACHINE_GROUP, version: MACHINE_VERSION, plural: MACHINE_PLURAL });
          break;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await new Promise((resolve) => setTimeout(resolve, 2_000));
        }
      }

      // kib netboot runs inside the namespace, where the API is node 1's own address (in its certificate).
      const cluster = config.getCurrentCluster();
      const caPem = Buffer.from(cluster?.caData ?? '', 'base64').toString();
      expect(caPem).toContain('BEGIN CERTIFICATE');
      const inside = parse(await readFile(kubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[] };
      for (const entry of inside.clusters) entry.cluster.server = `https://${CONTROL_PLANE_IP}:6443`;
      const insideKubeconfig = join(root, 'kubeconfig-inside');
      await writeFile(insideKubeconfig, stringify(inside), { mode: 0o600 });

      // The netboot segment: br1 in the cluster's namespace, routed to br0 there.
      for (const args of [bridgeAddArgs(NETNS, NETBOOT_BRIDGE), addressAddArgs(NETNS, NETBOOT_BRIDGE, `${NETBOOT_ADDRESS}/24`), linkUpArgs(NETNS, NETBOOT_BRIDGE), tapAddArgs(NETNS, 'tapnb1'), tapAttachArgs(NETNS, 'tapnb1', NETBOOT_BRIDGE)]) {
        await run('ip', args);
      }
      await run('ip', ['netns', 'exec', NETNS, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      const keys = await generateKeyPair(join(root, 'keys'));
      await writeFile(join(root, 'keys.pub'), keys.publicKey);

      const started = performance.now();
      service = spawn(
        'ip',
        [
          'netns', 'exec', NETNS, process.execPath, KIB_BIN, 'netboot',
          '--interface', NETBOOT_BRIDGE, '--kubeconfig', insideKubeconfig, '--image', artifact, '--http-port', '8080',
          '--ssh-authorized-keys', join(root, 'keys.pub'),
          '--join-endpoint', `${CONTROL_PLANE_IP}:6443`, '--join-ca-cert-hash', caCertHash(caPem),
          '--verbose',
        ],
        { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      service.stdout?.setEncoding('utf8').on('data', (chunk: string) => (serviceLog += chunk));
      service.stderr?.setEncoding('utf8').on('data', (chunk: string) => (serviceLog += chunk));
      const serving = Date.now() + 600_000;
      while (!serviceLog.includes('kib netboot serving')) {
        if (service.exitCode !== null || Date.now() > serving) throw new Error(`kib netboot did not start:\n${serviceLog.slice(-4000)}`);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }

      // The Machine is created after the service started: the watch brings it in. It carries the
      // pod network config kib up gives its own nodes (bridge CNI, its own /24).
      const podNode: ClusterNode = { name: MACHINE.name, index: 9, mac: MACHINE.mac, ip: MACHINE.ip, tap: 'tapnb1', podCidr: MACHINE.podCidr, role: 'worker', runId: '', diskPath: '' };
      await objects.createClusterCustomObject({
        group: MACHINE_GROUP,
        version: MACHINE_VERSION,
        plural: MACHINE_PLURAL,
        body: {
          apiVersion: `${MACHINE_GROUP}/${MACHINE_VERSION}`,
          kind: 'Machine',
          metadata: { name: MACHINE.name },
          spec: {
            macAddress: MACHINE.mac,
            ipAddress: MACHINE.ip,
            role: 'worker',
            cloudConfig: { write_files: [{ path: CNI_CONFIG_PATH, permissions: '0644', content: renderBridgeCniConfig(podNode) }] },
          },
        },
      });
      const watched = Date.now() + 60_000;
      while (!serviceLog.includes(`added: ${MACHINE.name}`)) {
        if (Date.now() > watched) throw new Error(`the watch did not bring ${MACHINE.name} in:\n${serviceLog.slice(-4000)}`);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }

      const disk = join(root, 'nb-rocky.qcow2');
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '40G']);
      vm = await startVm({
        name: MACHINE.name,
        diskPath: disk,
        diskFormat: 'qcow2',
        diskBootIndex: 1,
        nics: [{ kind: 'tap', ifname: 'tapnb1', macAddress: MACHINE.mac, bootIndex: 2 }],
        netns: NETNS,
        cpus: 2,
        memoryMiB: 2048,
        accelerator: 'auto',
        firmware: 'bios',
        stateDir: join(root, 'vmstate'),
        stopGraceMs: 10_000,
      });

      const joinedBy = Date.now() + TIMEOUT_MS - 600_000;
      let phase = '';
      for (;;) {
        const machine = (await objects.getClusterCustomObject({ group: MACHINE_GROUP, version: MACHINE_VERSION, plural: MACHINE_PLURAL, name: MACHINE.name })) as { status?: { phase?: string; reason?: string } };
        phase = machine.status?.phase ?? '';
        const ready: string[] = await nodeReady(kubeconfig).catch(() => []);
        if (phase === 'failed') throw new Error(`${MACHINE.name} failed: ${machine.status?.reason ?? ''}\n${serviceLog.slice(-4000)}`);
        if (phase === 'joined' && ready.includes(MACHINE.name)) break;
        if (!vm.isRunning() || Date.now() > joinedBy) throw new Error(`${MACHINE.name} is ${phase || 'unknown'}, Ready: ${ready.join(', ')}; console:\n${await vm.consoleTail(60)}\nservice:\n${serviceLog.slice(-4000)}`);
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      }
      await annotate(`kib netboot start → ${MACHINE.name} joined and Ready: ${((performance.now() - started) / 1000).toFixed(1)} s`);
      expect((await nodeReady(kubeconfig)).sort()).toEqual([MACHINE.name, 'node1']);

      // The token it joined with is the Machine's own, made by kib netboot.
      const secrets = await config.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: 'kube-system', fieldSelector: 'type=bootstrap.kubernetes.io/token' });
      const ours = secrets.items.filter((secret) => Buffer.from(secret.data?.description ?? '', 'base64').toString().includes(`Machine ${MACHINE.name}`));
      expect(ours).toHaveLength(1);
    },
    TIMEOUT_MS,
  );
});
