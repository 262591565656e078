import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listNetns } from '../../src/net/index.js';
import { isProcessRunning } from '../../src/process/index.js';
import { sshExec, type SshTarget } from '../../src/ssh/index.js';
import { ensureDebianArtifact } from '../support/artifact.js';
import { processesMentioning, qemuProcessesMentioning, runKib } from '../support/kib-cli.js';

/**
 * `kib up` of a two-node cluster from the offline Debian artifact, which has no Kubernetes. The
 * one stand-in is kubeadm: an argument recorder installed through --node-files, which on
 * `kubeadm init` also opens port 6443 on node 1 (socat) so the firewall path can be probed.
 * Everything else is real: the namespace, dnsmasq, the cloud-config server, the firewall, the
 * snapshot and the resume.
 */
const RECORDED = '/run/kib-test/kubeadm-args';
const NODE_FILES = `- path: /usr/local/bin/kubeadm
  permissions: '0755'
  content: |
    #!/bin/sh
    # Test stand-in: records its arguments; "init" also listens on 6443 like an API server would.
    mkdir -p /run/kib-test
    printf '%s\\n' "$*" >> ${RECORDED}
    if [ "$1" = init ]; then setsid socat TCP-LISTEN:6443,fork,reuseaddr SYSTEM:'echo api' </dev/null >/dev/null 2>&1 & fi
    exit 0
`;
const RESUME_TARGET_MS = 15_000;

describe.skipIf(process.getuid?.() !== 0)('kib up (two nodes, offline Debian artifact; kubeadm is an argument recorder)', () => {
  let artifact: string;
  let root: string;
  let env: Record<string, string>;
  const name = `vt${process.pid % 10000}`;
  const clone = `${name}r`;
  let state: { bootstrap: { token: string; caCertHash: string }; daemons: { dnsmasq?: number } } | undefined;

  const target = (cluster: string, ip: string): SshTarget => ({ host: ip, port: 22, user: 'kib', privateKeyPath: join(env.KIB_STATE_DIR ?? '', 'clusters', cluster, 'ssh', 'id_ed25519'), netns: `kib-${cluster}` });
  const on = async (cluster: string, ip: string, command: string): Promise<string> => (await sshExec(target(cluster, ip), command, { timeoutMs: 60_000 })).stdout;

  beforeAll(async () => {
    artifact = (await ensureDebianArtifact()).qcow2;
    // Short: run dirs hold unix sockets.
    root = await mkdtemp(join(tmpdir(), 'kc-'));
    env = { KIB_STATE_DIR: join(root, 's'), KIB_CACHE_DIR: join(root, 'c') };
    await writeFile(join(root, 'node-files.yaml'), NODE_FILES);
  });

  afterAll(async () => {
    for (const cluster of [name, clone]) await runKib(['down', cluster], { env });
    const left = await qemuProcessesMentioning(root, { ignoreZombies: true });
    await rm(root, { recursive: true, force: true });
    expect(left, 'QEMU processes left behind').toEqual([]);
  });

  it('refuses bad input before anything starts', async () => {
    const cases: [string[], RegExp][] = [
      [['up', join(root, 'missing.qcow2')], /does not exist/],
      [['up', artifact, '--nodes', '0'], /--nodes must be a whole number from 1 to 9, got 0/],
      [['up', artifact, '--name', 'Bad_Name'], /cluster name "Bad_Name"/],
      [['up', artifact, '--memory', '4000G'], /only \d+ MiB are available/],
    ];
    for (const [args, message] of cases) {
      const result = await runKib(args, { env });
      expect(result.exitCode, args.join(' ')).not.toBe(0);
      expect(result.stderr).toMatch(message);
    }
    expect(await listNetns()).not.toContain('kib-kib');
  });

  it('boots both nodes: addresses from dnsmasq by MAC, names, per-node cloud-configs, init and join', async ({ annotate }) => {
    const result = await runKib(['up', artifact, '--nodes', '2', '--name', name, '--memory', '1G', '--cpus', '1', '--registry', '--node-files', join(root, 'node-files.yaml'), '--json'], { env });
    expect(result.exitCode, result.stderr.slice(-4000)).toBe(0);
    const report = JSON.parse(result.stdout) as { readySkipped: string; timingsMs: Record<string, number> };
    await annotate(`kib up (2 nodes, TCG): ${JSON.stringify(report.timingsMs)}`);
    expect(report.readySkipped).toMatch(/Kubernetes is not installed/);
    const dir = join(env.KIB_STATE_DIR ?? '', 'clusters', name);
    state = JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as typeof state;

    // Name in use, while it is up.
    const again = await runKib(['up', artifact, '--name', name], { env });
    expect(again.stderr).toMatch(new RegExp(`cluster name ${name} is in use`));

    // dnsmasq handed each MAC its address; the guests got them by DHCP (dynamic), not statically.
    const leases = await readFile(join(dir, 'dnsmasq.leases'), 'utf8');
    expect(leases).toMatch(/52:54:00:4b:00:01 10\.77\.0\.11 node1/);
    expect(leases).toMatch(/52:54:00:4b:00:02 10\.77\.0\.12 node2/);
    const dnsmasqLog = await readFile(join(dir, 'dnsmasq.log'), 'utf8');
    expect(dnsmasqLog).toMatch(/DHCPACK\(br0\) 10\.77\.0\.11 52:54:00:4b:00:01 node1/);
    expect(dnsmasqLog).toMatch(/DHCPACK\(br0\) 10\.77\.0\.12 52:54:00:4b:00:02 node2/);
    // The guest's own lease (systemd-networkd) names dnsmasq's address as its server.
    const lease = await on(name, '10.77.0.11', 'sudo cat /run/systemd/netif/leases/*');
    expect(lease).toMatch(/^ADDRESS=10\.77\.0\.11$/m);
    expect(lease).toMatch(/^SERVER_ADDRESS=10\.77\.0\.1$/m);
    // Each resolves the other by name through dnsmasq (networkd does not use DHCP search domains
    // by default, so the names are fully qualified).
    expect(await on(name, '10.77.0.11', 'getent hosts node2.cluster.kib')).toMatch(/^10\.77\.0\.12\s/);
    expect(await on(name, '10.77.0.12', 'getent hosts node1.cluster.kib')).toMatch(/^10\.77\.0\.11\s/);

    // Each node fetched its own cloud-config from the server on the bridge.
    const fetches = (await readFile(join(dir, 'seed-server.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { remote?: string; path?: string; status?: number });
    expect(fetches).toContainEqual(expect.objectContaining({ remote: '10.77.0.11', path: '/nocloud/node1/user-data', status: 200 }));
    expect(fetches).toContainEqual(expect.objectContaining({ remote: '10.77.0.12', path: '/nocloud/node2/user-data', status: 200 }));
    expect(fetches.filter((f) => f.remote === '10.77.0.11').every((f) => f.path?.startsWith('/nocloud/node1/') === true)).toBe(true);

    // Init on node 1 with its own address; join on node 2 with node 1's address, the token and the CA hash.
    expect((await on(name, '10.77.0.11', `cat ${RECORDED}`)).trim()).toBe('init --config /etc/kib/kubeadm-init.yaml');
    const initConfig = await on(name, '10.77.0.11', 'sudo cat /etc/kib/kubeadm-init.yaml');
    expect(initConfig).toContain('advertiseAddress: 10.77.0.11');
    expect(initConfig).toContain(`token: ${state?.bootstrap.token ?? 'missing'}`);
    expect(await on(name, '10.77.0.11', 'sudo openssl x509 -noout -subject -in /etc/kubernetes/pki/ca.crt')).toContain('CN = kubernetes');
    expect((await on(name, '10.77.0.12', `cat ${RECORDED}`)).trim()).toBe(
      `join 10.77.0.11:6443 --token ${state?.bootstrap.token ?? 'missing'} --discovery-token-ca-cert-hash ${state?.bootstrap.caCertHash ?? 'missing'} --node-name node2`,
    );

    // Node 2 reaches node 1's API port through the image's firewall.
    expect(await on(name, '10.77.0.12', "timeout 10 bash -c 'exec 3<>/dev/tcp/10.77.0.11/6443; head -c 3 <&3'")).toBe('api');

    // The registry answers /v2/ from node 1, and containerd's mirror config is written.
    expect(await on(name, '10.77.0.11', "timeout 10 bash -c 'exec 3<>/dev/tcp/10.77.0.1/5000; printf \"GET /v2/ HTTP/1.0\\r\\n\\r\\n\" >&3; head -n1 <&3'")).toMatch(/^HTTP\/1\.[01] 200/);
    expect(await on(name, '10.77.0.12', 'cat /etc/containerd/certs.d/10.77.0.1:5000/hosts.toml')).toContain('server = "http://10.77.0.1:5000"');
  });

  it('forwards traffic between pod-like interfaces on the two nodes (bridge CNI routes, firewall on)', async () => {
    const pod = (n: number): string =>
      [
        'set -eu',
        `sudo ip link add cni0 type bridge 2>/dev/null || true`,
        `sudo ip addr add 10.244.${n}.1/24 dev cni0 2>/dev/null || true`,
        'sudo ip link set cni0 up',
        'sudo ip netns add pod',
        'sudo ip link add veth-pod type veth peer name eth0 netns pod',
        'sudo ip link set veth-pod master cni0 up',
        `sudo ip -n pod addr add 10.244.${n}.2/24 dev eth0`,
        'sudo ip -n pod link set eth0 up',
        'sudo ip -n pod link set lo up',
        `sudo ip -n pod route add default via 10.244.${n}.1`,
        `sudo ip netns exec pod setsid socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:'echo pod-node${n}' </dev/null >/dev/null 2>&1 &`,
        'sleep 1',
      ].join('\n');
    await on(name, '10.77.0.11', pod(1));
    await on(name, '10.77.0.12', pod(2));
    expect(await on(name, '10.77.0.12', 'ip route show 10.244.1.0/24')).toContain('via 10.77.0.11');
    const probe = (peer: string): string => `sudo ip netns exec pod socat -T 5 - TCP:${peer}:8080,connect-timeout=5 </dev/null`;
    expect((await on(name, '10.77.0.12', probe('10.244.1.2'))).trim()).toBe('pod-node1');
    expect((await on(name, '10.77.0.11', probe('10.244.2.2'))).trim()).toBe('pod-node2');
  });

  it('snapshots the cluster and resumes it under a new name with both nodes reachable and clocks corrected; kib down leaves nothing', async ({ annotate }) => {
    const snapshotDir = join(root, 'snap');
    const saved = await runKib(['snapshot', name, '--out', snapshotDir, '--json'], { env });
    expect(saved.exitCode, saved.stderr.slice(-3000)).toBe(0);
    await annotate(`kib snapshot (2 nodes): ${saved.stdout.trim()}`);
    expect(await listNetns()).not.toContain(`kib-${name}`);
    // The saved clocks fall behind while the cluster is frozen.
    await new Promise((r) => setTimeout(r, 5_000));

    const resumed = await runKib(['up', '--from', snapshotDir, '--name', clone, '--json'], { env });
    expect(resumed.exitCode, resumed.stderr.slice(-4000)).toBe(0);
    const report = JSON.parse(resumed.stdout) as { reachableMs: number; nodes: Record<string, { clockSkewBeforeMs: number; clockSkewAfterMs: number }> };
    await annotate(`resume of a frozen 2-node cluster → both answer SSH and the guest agent: ${(report.reachableMs / 1000).toFixed(1)} s (target ${RESUME_TARGET_MS / 1000} s, TCG)`);
    for (const node of ['node1', 'node2']) {
      expect(report.nodes[node]?.clockSkewBeforeMs ?? 0).toBeLessThan(-4_000);
      expect(Math.abs(report.nodes[node]?.clockSkewAfterMs ?? Infinity)).toBeLessThan(2_000);
    }
    // Speed is recorded (annotation, bench), not asserted: the TCG figure swings with the host's load.
    const guestEpoch = Number((await on(clone, '10.77.0.12', 'date +%s')).trim());
    expect(Math.abs(guestEpoch - Date.now() / 1000)).toBeLessThan(10);
    // The nodes still reach each other (and the recorder's API listener survived the freeze).
    expect(await on(clone, '10.77.0.12', "timeout 10 bash -c 'exec 3<>/dev/tcp/10.77.0.11/6443; head -c 3 <&3'")).toBe('api');

    const status = await runKib(['status', clone, '--json'], { env });
    expect(JSON.parse(status.stdout)).toMatchObject([{ name: clone, status: 'up', nodes: [{ name: 'node1', running: true }, { name: 'node2', running: true }] }]);

    const dnsmasqPid = (JSON.parse(await readFile(join(env.KIB_STATE_DIR ?? '', 'clusters', clone, 'cluster.json'), 'utf8')) as { daemons: { dnsmasq: number } }).daemons.dnsmasq;
    const downStarted = performance.now();
    const down = await runKib(['down', clone], { env });
    await annotate(`kib down → nothing left: ${((performance.now() - downStarted) / 1000).toFixed(1)} s`);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(await listNetns()).not.toContain(`kib-${clone}`);
    // Exited children of an init that does not reap linger as zombies: those count as gone.
    expect(isProcessRunning(dnsmasqPid)).toBe(false);
    expect(await qemuProcessesMentioning(join(env.KIB_STATE_DIR ?? ''), { ignoreZombies: true })).toEqual([]);
    // No dnsmasq, seed server, registry or forward of either cluster (their command lines name the state dir).
    expect(await processesMentioning(root, { ignoreZombies: true })).toEqual([]);
    expect(existsSync(join(env.KIB_STATE_DIR ?? '', 'clusters', clone))).toBe(false);
    // Idempotent.
    expect((await runKib(['down', clone], { env })).exitCode).toBe(0);
  });
});
