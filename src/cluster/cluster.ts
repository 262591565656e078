import { existsSync, readFileSync } from 'node:fs';
import { copyFile, cp, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { KibError, MissingToolError } from '../core/errors.js';
import { createPrivateNetwork, listNetns, removePrivateNetwork, startDnsmasq } from '../net/index.js';
import { findTool, isProcessRunning, spawnDaemon } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { generateKeyPair, sshExec, waitForCloudInit, waitForSsh, type SshTarget } from '../ssh/index.js';
import { allocateLoopbackPort, attachVm, bootGuest, readVmSnapshot, restoreVm, saveVmSnapshot, setGuestClock, SNAPSHOT_FILE, type StartedVm } from '../vm/index.js';
import { BOOTSTRAP_LOG_PATH, generateBootstrapToken, generateClusterCa, renderNodeMetaData, renderNodeUserData } from './bootstrap.js';
import {
  API_PORT,
  BRIDGE,
  BRIDGE_IP,
  BRIDGE_MAC,
  checkMemory,
  CLUSTER_DOMAIN,
  CLUSTER_STATE_VERSION,
  clusterDir,
  clusterStateFile,
  controlPlane,
  NETMASK,
  NETWORK,
  netnsOf,
  parseClusterState,
  parseMemAvailable,
  planNodes,
  PREFIX_LENGTH,
  REGISTRY_PORT,
  SEED_PORT,
  validateClusterName,
  validateNodeCount,
  type ClusterNode,
  type ClusterState,
} from './model.js';

export const CLUSTER_USER = 'kib';
export const SNAPSHOT_CLUSTER_FILE = 'cluster.json';
const HELPER = fileURLToPath(new URL('./helper-main.js', import.meta.url));

export interface CommonOptions {
  stateDir: string;
  reporter?: Reporter;
  signal?: AbortSignal;
}

export interface UpOptions extends CommonOptions {
  name: string;
  artifactPath: string;
  nodes: number;
  memoryMiB: number;
  cpus: number;
  accelerator: 'auto' | 'kvm' | 'tcg';
  kibVersion: string;
  /** A CNI manifest node 1 applies after init, instead of kib's bridge CNI. */
  cniManifestPath?: string;
  registry: boolean;
  /** YAML list of cloud-init write_files entries added to every node. */
  nodeFilesPath?: string;
  bootTimeoutMs: number;
  readyTimeoutMs: number;
  rmOnFailure: boolean;
  /** For tests and small machines: MemAvailable in KiB instead of /proc/meminfo's. */
  memAvailableKiB?: number;
}

export interface UpResult {
  state: ClusterState;
  stateFile: string;
  kubeconfigPath: string | undefined;
  /** Why the Ready wait did not run (an image without Kubernetes), if it did not. */
  readySkipped: string | undefined;
  timingsMs: Record<string, number>;
}

function log(reporter: Reporter, line: string, level: 'info' | 'warn' = 'info'): void {
  reporter.emit({ type: 'log', source: 'cluster', line, level });
}

function nodeLog(reporter: Reporter, node: string, line: string): void {
  reporter.emit({ type: 'log', source: 'cluster', line: `${node}: ${line}` });
}

async function writeState(stateDir: string, state: ClusterState): Promise<void> {
  const file = clusterStateFile(stateDir, state.name);
  await writeFile(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
}

export async function readClusterState(stateDir: string, name: string): Promise<ClusterState> {
  const file = clusterStateFile(stateDir, name);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new KibError('CLUSTER_UNKNOWN', `there is no cluster ${JSON.stringify(name)} (no ${file})`, { hint: 'kib status lists the clusters.' });
  }
  return parseClusterState(text, file);
}

export async function listClusters(stateDir: string): Promise<ClusterState[]> {
  const names = await readdir(join(stateDir, 'clusters')).catch(() => [] as string[]);
  const states: ClusterState[] = [];
  for (const name of names.sort()) states.push(await readClusterState(stateDir, name).catch(() => undefined as never));
  return states.filter((s) => s !== undefined);
}

export function nodeSshTarget(state: ClusterState, stateDir: string, node: ClusterNode): SshTarget {
  return { host: node.ip, port: 22, user: CLUSTER_USER, privateKeyPath: join(clusterDir(stateDir, state.name), 'ssh', 'id_ed25519'), netns: state.netns };
}

interface ArtifactFacts {
  kubernetes: boolean;
  kubernetesVersion?: string;
  skippedReason?: string;
}

/** What the build manifest beside the artifact says about Kubernetes in it. */
async function readArtifactFacts(artifactPath: string): Promise<ArtifactFacts> {
  const manifestPath = join(dirname(artifactPath), 'manifest.json');
  try {
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { image?: { kubernetesVersion?: string }; kubernetes?: { installed?: boolean; skippedReason?: string | null; version?: string | null } };
    const installed = manifest.kubernetes?.installed !== false;
    const version = manifest.kubernetes?.version ?? manifest.image?.kubernetesVersion;
    return {
      kubernetes: installed,
      ...(version === undefined || version === null ? {} : { kubernetesVersion: version }),
      ...(installed ? {} : { skippedReason: `the build manifest ${manifestPath} says Kubernetes is not installed: ${manifest.kubernetes?.skippedReason ?? 'no reason given'}` }),
    };
  } catch {
    return { kubernetes: true };
  }
}

/** Everything that must hold before anything starts; each failure is a clear error. */
async function preflight(options: { stateDir: string; name: string; nodes: number; memoryMiB: number; memAvailableKiB?: number }): Promise<void> {
  validateClusterName(options.name);
  validateNodeCount(options.nodes);
  if (existsSync(clusterStateFile(options.stateDir, options.name))) {
    throw new KibError('CLUSTER_EXISTS', `cluster name ${options.name} is in use (${clusterStateFile(options.stateDir, options.name)})`, {
      hint: `Pick another --name, or remove it first: kib down ${options.name}`,
    });
  }
  if ((await listNetns()).includes(netnsOf(options.name))) {
    throw new KibError('CLUSTER_EXISTS', `network namespace ${netnsOf(options.name)} already exists`, { hint: `kib down ${options.name} removes a leftover.` });
  }
  checkMemory(options.nodes, options.memoryMiB, options.memAvailableKiB ?? parseMemAvailable(readFileSync('/proc/meminfo', 'utf8')));
  const missing = [
    { command: 'ip', purpose: 'network namespaces, bridges and taps', packageName: 'iproute2' },
    { command: 'dnsmasq', purpose: 'DHCP and DNS on the cluster network', packageName: 'dnsmasq-base' },
    { command: 'openssl', purpose: 'the cluster CA', packageName: 'openssl' },
  ].filter((need) => findTool(need.command) === undefined);
  if (missing.length > 0) throw new MissingToolError(missing);
}

/** The network, dnsmasq (and the registry), for a new or a resumed cluster. */
async function startNetwork(state: ClusterState, dir: string, reporter: Reporter): Promise<void> {
  const network = await createPrivateNetwork({ netns: state.netns, bridge: BRIDGE, bridgeAddress: `${BRIDGE_IP}/${PREFIX_LENGTH}`, bridgeMac: BRIDGE_MAC }, { reporter });
  for (const node of state.nodes) await network.addTap(node.tap);
  const dnsmasq = await startDnsmasq({
    netns: state.netns,
    configPath: join(dir, 'dnsmasq.conf'),
    logFile: join(dir, 'dnsmasq.log'),
    config: {
      bridge: BRIDGE,
      bridgeIp: BRIDGE_IP,
      network: NETWORK,
      netmask: NETMASK,
      domain: CLUSTER_DOMAIN,
      hosts: state.nodes.map((node) => ({ mac: node.mac, ip: node.ip, name: node.name })),
      leaseFile: join(dir, 'dnsmasq.leases'),
      pidFile: join(dir, 'dnsmasq.pid'),
    },
  });
  dnsmasq.detach();
  state.daemons.dnsmasq = dnsmasq.pid;
  log(reporter, `dnsmasq (pid ${dnsmasq.pid}) serves ${state.netns}'s ${BRIDGE}: ${state.nodes.map((n) => `${n.name} ${n.mac} → ${n.ip}`).join(', ')}`);
  if (state.registry) {
    if (findTool('docker-registry') === undefined) throw new MissingToolError([{ command: 'docker-registry', purpose: '--registry', packageName: 'docker-registry' }]);
    const config = join(dir, 'registry.yml');
    await mkdir(join(dir, 'registry'), { recursive: true });
    await writeFile(
      config,
      ['version: 0.1', 'log:', '  level: info', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'registry')}`, 'http:', `  addr: ${BRIDGE_IP}:${REGISTRY_PORT}`, ''].join('\n'),
    );
    const registry = spawnDaemon('ip', ['netns', 'exec', state.netns, 'docker-registry', 'serve', config], { stdoutFile: join(dir, 'registry.log'), stderrFile: join(dir, 'registry.log') });
    registry.detach();
    state.daemons.registry = registry.pid;
    state.ports.registry = REGISTRY_PORT;
    log(reporter, `registry (pid ${registry.pid}) on ${BRIDGE_IP}:${REGISTRY_PORT} inside ${state.netns}`);
  }
}

async function startSeedServer(state: ClusterState, dir: string): Promise<void> {
  const logFile = join(dir, 'seed-server.log');
  const daemon = spawnDaemon('ip', ['netns', 'exec', state.netns, process.execPath, HELPER, 'seed-server', '--dir', join(dir, 'nocloud'), '--listen', `${BRIDGE_IP}:${SEED_PORT}`, '--log', logFile], {
    stdoutFile: join(dir, 'seed-server.out'),
    stderrFile: join(dir, 'seed-server.out'),
  });
  daemon.detach();
  state.daemons.seed = daemon.pid;
  for (let i = 0; i < 200; i += 1) {
    if ((await readFile(logFile, 'utf8').catch(() => '')).includes('"listening"')) return;
    if (!daemon.isRunning()) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new KibError('SEED_SERVER_FAILED', `the cloud-config server did not start; see ${join(dir, 'seed-server.out')}`);
}

async function startApiForward(state: ClusterState, dir: string): Promise<number> {
  const port = await allocateLoopbackPort();
  const daemon = spawnDaemon(process.execPath, [HELPER, 'api-forward', '--listen', `127.0.0.1:${port}`, '--netns', state.netns, '--target', `${controlPlane(state).ip}:${API_PORT}`], {
    stdoutFile: join(dir, 'api-forward.log'),
    stderrFile: join(dir, 'api-forward.log'),
  });
  daemon.detach();
  state.daemons.apiForward = daemon.pid;
  state.ports.apiForward = port;
  return port;
}

/** kubeadm's admin.conf from node 1 with its server pointed at the host's forwarded port. */
async function writeKubeconfig(state: ClusterState, stateDir: string, adminConf: string): Promise<string> {
  const path = join(clusterDir(stateDir, state.name), 'kubeconfig');
  const port = state.ports.apiForward;
  const text = adminConf.replace(/server: https:\/\/[^\s]+/g, `server: https://127.0.0.1:${String(port)}`);
  await writeFile(path, text, { mode: 0o600 });
  return path;
}

async function readNodeFiles(path: string | undefined): Promise<Record<string, unknown>[]> {
  if (path === undefined) return [];
  const data = parseYaml(await readFile(path, 'utf8')) as unknown;
  if (!Array.isArray(data) || !data.every((entry) => typeof entry === 'object' && entry !== null && typeof (entry as { path?: unknown }).path === 'string')) {
    throw new KibError('NODE_FILES_INVALID', `${path} must be a YAML list of cloud-init write_files entries (each with a path)`);
  }
  return data as Record<string, unknown>[];
}

/** `kib up ARTIFACT`: a new cluster, booted and bootstrapped. */
export async function upCluster(options: UpOptions): Promise<UpResult> {
  const reporter = options.reporter ?? silentReporter;
  const timings: Record<string, number> = {};
  const started = performance.now();
  const artifactPath = resolve(options.artifactPath);
  if (!existsSync(artifactPath)) throw new KibError('ARTIFACT_MISSING', `the artifact ${artifactPath} does not exist`, { hint: 'Build one with `npm run image` (kib build), or name a .qcow2 from the output directory.' });
  await preflight(options);
  const cniText = options.cniManifestPath === undefined ? undefined : await readFile(options.cniManifestPath, 'utf8');
  const extraFiles = await readNodeFiles(options.nodeFilesPath);
  const facts = await readArtifactFacts(artifactPath);
  const dir = clusterDir(options.stateDir, options.name);
  await mkdir(dir, { recursive: true });
  const stateFile = clusterStateFile(options.stateDir, options.name);

  const keys = await generateKeyPair(join(dir, 'ssh'), { comment: `kib-cluster-${options.name}` });
  await mkdir(join(dir, 'pki'), { recursive: true, mode: 0o700 });
  const ca = await generateClusterCa(join(dir, 'pki'), options.signal);
  const token = generateBootstrapToken();
  const accelerator = options.accelerator === 'auto' ? ((await import('../vm/accelerator.js')).detectAccelerator('auto').then((a) => a.accelerator)) : Promise.resolve(options.accelerator);
  const state: ClusterState = {
    version: CLUSTER_STATE_VERSION,
    name: options.name,
    status: 'starting',
    kibVersion: options.kibVersion,
    createdAt: new Date().toISOString(),
    netns: netnsOf(options.name),
    bridge: BRIDGE,
    bridgeIp: BRIDGE_IP,
    domain: CLUSTER_DOMAIN,
    artifact: { path: artifactPath, format: artifactPath.endsWith('.raw') ? 'raw' : 'qcow2', ...facts },
    nodeMemoryMiB: options.memoryMiB,
    nodeCpus: options.cpus,
    accelerator: await accelerator,
    nodes: planNodes(options.name, options.nodes, dir),
    ports: { seed: SEED_PORT },
    daemons: {},
    bootstrap: { token, caCertHash: ca.hash },
    cni: cniText === undefined ? 'kib-bridge' : { manifest: resolve(options.cniManifestPath ?? '') },
    registry: options.registry,
  };
  await writeState(options.stateDir, state);

  const fail = async (error: unknown, keep: boolean): Promise<never> => {
    if (keep && !options.rmOnFailure) {
      state.status = 'up';
      await writeState(options.stateDir, state);
      log(reporter, `cluster ${options.name} is left running for inspection; remove it with: kib down ${options.name}`, 'warn');
    } else {
      await downCluster({ stateDir: options.stateDir, name: options.name, reporter });
    }
    throw error;
  };

  try {
    await startNetwork(state, dir, reporter);
    for (const node of state.nodes) {
      const seedDir = join(dir, 'nocloud', node.name);
      await mkdir(seedDir, { recursive: true });
      await writeFile(join(seedDir, 'meta-data'), renderNodeMetaData(options.name, node, Date.now().toString(36)));
      await writeFile(join(seedDir, 'vendor-data'), '#cloud-config\n{}\n');
      await writeFile(
        join(seedDir, 'user-data'),
        renderNodeUserData({
          node,
          nodes: state.nodes,
          user: CLUSTER_USER,
          publicKey: keys.publicKey,
          token,
          ca,
          kubernetesVersion: facts.kubernetesVersion,
          cni: cniText === undefined ? { kind: 'kib-bridge' } : { kind: 'manifest', text: cniText },
          registry: options.registry,
          extraFiles,
        }),
        { mode: 0o600 },
      );
    }
    await startSeedServer(state, dir);
    await writeState(options.stateDir, state);
  } catch (error) {
    return await fail(error, false);
  }
  timings.network = performance.now() - started;

  // Every node boots at once; each reports its own progress.
  const bootStarted = performance.now();
  const vms: StartedVm[] = [];
  try {
    await Promise.all(
      state.nodes.map(async (node) => {
        nodeLog(reporter, node.name, `booting (${node.mac}, ${node.ip})`);
        const guest = await bootGuest(
          {
            name: `${options.name}-${node.name}`,
            workDir: dirname(node.diskPath),
            disk: { kind: 'overlay', basePath: artifactPath, baseFormat: state.artifact.format, keep: true },
            seed: { kind: 'none' },
            privateKeyPath: keys.privateKeyPath,
            user: CLUSTER_USER,
            smbiosSerial: `ds=nocloud-net;s=http://${BRIDGE_IP}:${SEED_PORT}/nocloud/${node.name}/`,
            vm: {
              cpus: options.cpus,
              memoryMiB: options.memoryMiB,
              accelerator: state.accelerator,
              firmware: 'bios',
              netns: state.netns,
              nics: [{ kind: 'tap', ifname: node.tap, macAddress: node.mac }],
              stateDir: options.stateDir,
              persistentRunId: node.runId,
              owner: { kind: 'cluster', name: options.name, stateFile },
              stopGraceMs: 10_000,
            },
            sshAddress: { host: node.ip },
            wait: 'none',
            bootTimeoutMs: options.bootTimeoutMs,
          },
          { reporter, onStep: (m) => nodeLog(reporter, node.name, m), ...(options.signal === undefined ? {} : { signal: options.signal }) },
        );
        guest.vm.detach();
        vms.push(guest.vm);
        await writeFile(join(guest.vm.runDir, 'spec.json'), `${JSON.stringify(guest.vm.spec, null, 2)}\n`);
        const target = nodeSshTarget(state, options.stateDir, node);
        const waitOptions = { vm: guest.vm, timeoutMs: options.bootTimeoutMs, onStillWaiting: (m: string) => nodeLog(reporter, node.name, m), ...(options.signal === undefined ? {} : { signal: options.signal }) };
        await waitForSsh(target, waitOptions).catch((error: unknown) => {
          throw new KibError('NODE_BOOT_FAILED', `${node.name} did not answer SSH at ${node.ip}: ${(error as Error).message}`, { hint: `Read its console log: ${join(options.stateDir, 'runs', node.runId, 'console.log')}` });
        });
        nodeLog(reporter, node.name, `SSH answers after ${((performance.now() - bootStarted) / 1000).toFixed(1)} s`);
        await waitForCloudInit(target, waitOptions).catch((error: unknown) => {
          throw new KibError('NODE_BOOT_FAILED', `${node.name}: cloud-init did not finish cleanly: ${(error as Error).message}`, {
            hint: `Read ${BOOTSTRAP_LOG_PATH} and /var/log/cloud-init-output.log on it (kib ssh ${options.name} ${node.name}), and its console log ${join(options.stateDir, 'runs', node.runId, 'console.log')}`,
          });
        });
        nodeLog(reporter, node.name, `cloud-init finished after ${((performance.now() - bootStarted) / 1000).toFixed(1)} s`);
      }),
    );
  } catch (error) {
    return await fail(error, vms.length > 0);
  }
  timings.nodes = performance.now() - bootStarted;
  state.status = 'up';
  await writeState(options.stateDir, state);

  let kubeconfigPath: string | undefined;
  let readySkipped: string | undefined;
  if (!facts.kubernetes) {
    readySkipped = `skipping the wait for Ready nodes: ${facts.skippedReason ?? 'the image has no Kubernetes'}`;
    log(reporter, readySkipped);
  } else {
    try {
      const readyStarted = performance.now();
      await startApiForward(state, dir);
      await writeState(options.stateDir, state);
      const admin = await sshExec(nodeSshTarget(state, options.stateDir, controlPlane(state)), 'sudo cat /etc/kubernetes/admin.conf', { timeoutMs: 60_000 });
      kubeconfigPath = await writeKubeconfig(state, options.stateDir, admin.stdout);
      await waitForReadyNodes(state, options.stateDir, kubeconfigPath, options.readyTimeoutMs, reporter);
      timings.ready = performance.now() - readyStarted;
    } catch (error) {
      return await fail(error, true);
    }
  }
  timings.total = performance.now() - started;
  log(reporter, `cluster ${options.name} is up: ${state.nodes.map((n) => `${n.name} ${n.ip}`).join(', ')} (${(timings.total / 1000).toFixed(1)} s)`);
  return { state, stateFile, kubeconfigPath, readySkipped, timingsMs: timings };
}

/** Waits until every node reports Ready through the API (@kubernetes/client-node). */
async function waitForReadyNodes(state: ClusterState, stateDir: string, kubeconfigPath: string, timeoutMs: number, reporter: Reporter): Promise<void> {
  const k8s = await import('@kubernetes/client-node');
  const config = new k8s.KubeConfig();
  config.loadFromFile(kubeconfigPath);
  const api = config.makeApiClient(k8s.CoreV1Api);
  const deadline = Date.now() + timeoutMs;
  const ready = new Set<string>();
  let last = '';
  while (Date.now() < deadline) {
    try {
      const list = await api.listNode();
      for (const item of list.items) {
        const name = item.metadata?.name ?? '';
        if (item.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true && !ready.has(name)) {
          ready.add(name);
          nodeLog(reporter, name, 'Ready');
        }
      }
      if (state.nodes.every((n) => ready.has(n.name))) return;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 2_000));
  }
  const waiting = state.nodes.filter((n) => !ready.has(n.name));
  const first = waiting[0];
  throw new KibError(
    'NODE_NOT_READY',
    `${waiting.map((n) => n.name).join(', ')} did not become Ready within ${Math.round(timeoutMs / 1000)} s${last === '' ? '' : ` (last API error: ${last})`}`,
    { hint: first === undefined ? '' : `Read ${BOOTSTRAP_LOG_PATH} on ${first.name} (kib ssh ${state.name} ${first.name} -- sudo cat ${BOOTSTRAP_LOG_PATH}) and its console log ${join(stateDir, 'runs', first.runId, 'console.log')}. The cluster is left running.` },
  );
}

/** Stops a helper daemon by pid if its command line still names what we expect. */
async function stopPid(pid: number | undefined, mustMention: string): Promise<void> {
  if (pid === undefined || !isProcessRunning(pid)) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes(mustMention)) return;
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
  }
  for (let i = 0; i < 60 && isProcessRunning(pid); i += 1) await new Promise((r) => setTimeout(r, 50));
  if (isProcessRunning(pid)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
    for (let i = 0; i < 100 && isProcessRunning(pid); i += 1) await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * `kib down NAME`: no QEMU, no dnsmasq, no helper, no namespace, no tap, no state left.
 * Idempotent: a cluster that is already gone (or half gone) is finished off without error.
 */
export async function downCluster(options: CommonOptions & { name: string; keepDir?: boolean }): Promise<{ removed: boolean }> {
  const reporter = options.reporter ?? silentReporter;
  validateClusterName(options.name);
  const dir = clusterDir(options.stateDir, options.name);
  const state = await readClusterState(options.stateDir, options.name).catch(() => undefined);
  const netns = state?.netns ?? netnsOf(options.name);
  const nodes = state?.nodes ?? planNodes(options.name, 1, dir);
  if (state !== undefined) {
    state.status = 'stopped';
    await writeState(options.stateDir, state).catch(() => undefined);
  }
  await Promise.all(
    nodes.map(async (node) => {
      const runDir = join(options.stateDir, 'runs', node.runId);
      const vm = await attachVm({ runDir, spec: { name: node.name, diskPath: node.diskPath, diskFormat: 'qcow2', cpus: 1, memoryMiB: 1, accelerator: 'tcg', firmware: 'bios', netns }, accelerator: 'tcg' }).catch(() => undefined);
      if (vm !== undefined) {
        await vm.stop({ graceMs: 0 });
        nodeLog(reporter, node.name, 'stopped');
      }
      await rm(runDir, { recursive: true, force: true });
    }),
  );
  await stopPid(state?.daemons.apiForward, 'api-forward');
  await stopPid(state?.daemons.seed, 'seed-server');
  await stopPid(state?.daemons.registry, 'docker-registry');
  await stopPid(state?.daemons.dnsmasq, 'dnsmasq');
  const existed = (await listNetns()).includes(netns);
  if (existed) await removePrivateNetwork({ netns, bridge: BRIDGE, taps: nodes.map((n) => n.tap) }, { reporter });
  if (options.keepDir !== true) await rm(dir, { recursive: true, force: true });
  const removed = state !== undefined || existed;
  log(reporter, removed ? `cluster ${options.name} removed` : `there is no cluster ${options.name}; nothing to do`);
  return { removed };
}

export interface NodeStatus {
  name: string;
  ip: string;
  mac: string;
  running: boolean;
}

export async function clusterStatus(stateDir: string, state: ClusterState): Promise<NodeStatus[]> {
  return await Promise.all(
    state.nodes.map(async (node) => {
      const pid = Number((await readFile(join(stateDir, 'runs', node.runId, 'qemu.pid'), 'utf8').catch(() => '')).trim());
      return { name: node.name, ip: node.ip, mac: node.mac, running: Number.isInteger(pid) && pid > 0 && isProcessRunning(pid) };
    }),
  );
}

export interface SnapshotResult {
  dir: string;
  nodesMs: Record<string, number>;
  totalMs: number;
}

/**
 * `kib snapshot NAME`: saves every node's memory and disk (saveVmSnapshot) and the cluster's
 * state, keys and kubeconfig into DIR, with kib's version; then the cluster is taken down (its
 * VMs quit when their memory is saved). `kib up --from DIR` resumes it.
 */
export async function snapshotCluster(options: CommonOptions & { name: string; outDir: string }): Promise<SnapshotResult> {
  const reporter = options.reporter ?? silentReporter;
  const started = performance.now();
  const state = await readClusterState(options.stateDir, options.name);
  if (state.status !== 'up') throw new KibError('CLUSTER_NOT_UP', `cluster ${options.name} is ${state.status}, not up`);
  const out = resolve(options.outDir);
  if (existsSync(join(out, SNAPSHOT_CLUSTER_FILE))) throw new KibError('SNAPSHOT_EXISTS', `${out} already holds a cluster snapshot`);
  await mkdir(out, { recursive: true });
  const dir = clusterDir(options.stateDir, options.name);
  const nodesMs: Record<string, number> = {};
  await Promise.all(
    state.nodes.map(async (node) => {
      const nodeStarted = performance.now();
      const runDir = join(options.stateDir, 'runs', node.runId);
      const spec = await readVmSpec(runDir, node, state);
      const vm = await attachVm({ runDir, spec, accelerator: state.accelerator, reporter });
      const nodeDir = join(out, node.name);
      const saved = await saveVmSnapshot(vm, { dir: nodeDir, reporter });
      const disk = join(nodeDir, 'disk.qcow2');
      await rename(saved.diskPath, disk).catch(async () => {
        await copyFile(saved.diskPath, disk);
      });
      await writeFile(join(nodeDir, SNAPSHOT_FILE), `${JSON.stringify({ ...saved, diskPath: 'disk.qcow2', statePath: saved.statePath.slice(nodeDir.length + 1) }, null, 2)}\n`);
      nodesMs[node.name] = performance.now() - nodeStarted;
      nodeLog(reporter, node.name, `saved in ${((nodesMs[node.name] ?? 0) / 1000).toFixed(1)} s`);
    }),
  );
  await cp(join(dir, 'ssh'), join(out, 'ssh'), { recursive: true });
  if (existsSync(join(dir, 'kubeconfig'))) await copyFile(join(dir, 'kubeconfig'), join(out, 'kubeconfig'));
  await writeFile(join(out, SNAPSHOT_CLUSTER_FILE), `${JSON.stringify({ ...state, status: 'stopped', daemons: {}, savedAt: new Date().toISOString() }, null, 2)}\n`);
  await downCluster({ stateDir: options.stateDir, name: options.name, reporter });
  return { dir: out, nodesMs, totalMs: performance.now() - started };
}

/** The start spec a node's QEMU runs with, as bootGuest gave it (kept in the cluster's run dir). */
async function readVmSpec(runDir: string, node: ClusterNode, state: ClusterState): Promise<StartedVm['spec']> {
  const saved = await readFile(join(runDir, 'spec.json'), 'utf8').catch(() => undefined);
  if (saved !== undefined) return JSON.parse(saved) as StartedVm['spec'];
  return {
    name: `${state.name}-${node.name}`,
    diskPath: node.diskPath,
    diskFormat: 'qcow2',
    cpus: state.nodeCpus,
    memoryMiB: state.nodeMemoryMiB,
    accelerator: state.accelerator,
    firmware: 'bios',
    netns: state.netns,
    nics: [{ kind: 'tap', ifname: node.tap, macAddress: node.mac }],
    smbiosSerial: `ds=nocloud-net;s=http://${BRIDGE_IP}:${SEED_PORT}/nocloud/${node.name}/`,
    persistentRunId: node.runId,
    owner: { kind: 'cluster', name: state.name, stateFile: clusterStateFile(dirname(dirname(dirname(runDir))), state.name) },
  };
}

export interface ResumeOptions extends CommonOptions {
  from: string;
  name?: string;
  kibVersion: string;
  readyTimeoutMs: number;
  memAvailableKiB?: number;
}

export interface ResumeResult {
  state: ClusterState;
  kubeconfigPath: string | undefined;
  /** Per node: restore (QEMU running again), clock correction, SSH answer. */
  nodes: Record<string, { restoredMs: number; clockSkewBeforeMs: number; clockSkewAfterMs: number; reachableMs: number }>;
  /** Until every node answers SSH and the guest agent. */
  reachableMs: number;
  readySkipped: string | undefined;
  totalMs: number;
}

/** Reads a cluster snapshot's state, refusing one from another kib version before anything starts. */
export async function readClusterSnapshot(dir: string, kibVersion: string): Promise<ClusterState> {
  const file = join(resolve(dir), SNAPSHOT_CLUSTER_FILE);
  const text = await readFile(file, 'utf8').catch(() => {
    throw new KibError('SNAPSHOT_MISSING', `${dir} is not a cluster snapshot (no ${SNAPSHOT_CLUSTER_FILE})`, { hint: 'kib snapshot NAME --out DIR makes one.' });
  });
  const state = parseClusterState(text, file);
  if (state.kibVersion !== kibVersion) {
    throw new KibError('SNAPSHOT_KIB_VERSION', `${dir} was saved by kib ${state.kibVersion}; this is kib ${kibVersion}, which does not resume other versions' snapshots`, {
      hint: `Resume it with kib ${state.kibVersion}, or save a new snapshot with this kib.`,
    });
  }
  return state;
}

/**
 * `kib up --from DIR [--name NEW]`: a new namespace (so clones of one snapshot do not clash: same
 * MACs and addresses, separate namespaces), dnsmasq, every node restored from its memory, clocks
 * corrected through the guest agent, SSH checked on each node.
 */
export async function resumeCluster(options: ResumeOptions): Promise<ResumeResult> {
  const reporter = options.reporter ?? silentReporter;
  const started = performance.now();
  const from = resolve(options.from);
  const saved = await readClusterSnapshot(from, options.kibVersion);
  const name = options.name ?? saved.name;
  await preflight({ stateDir: options.stateDir, name, nodes: saved.nodes.length, memoryMiB: saved.nodeMemoryMiB, ...(options.memAvailableKiB === undefined ? {} : { memAvailableKiB: options.memAvailableKiB }) });
  const snapshots = await Promise.all(saved.nodes.map(async (node) => ({ node, snapshot: await readVmSnapshot(join(from, node.name)) })));
  const dir = clusterDir(options.stateDir, name);
  await mkdir(dir, { recursive: true });
  const stateFile = clusterStateFile(options.stateDir, name);
  const nodes = planNodes(name, saved.nodes.length, dir);
  const state: ClusterState = { ...saved, name, status: 'starting', netns: netnsOf(name), createdAt: new Date().toISOString(), nodes, daemons: {}, ports: { seed: SEED_PORT }, from };
  await cp(join(from, 'ssh'), join(dir, 'ssh'), { recursive: true });
  await writeState(options.stateDir, state);
  const result: ResumeResult['nodes'] = {};
  try {
    await startNetwork(state, dir, reporter);
    await writeState(options.stateDir, state);
    await Promise.all(
      snapshots.map(async ({ node: savedNode, snapshot }) => {
        const node = nodes.find((n) => n.name === savedNode.name) ?? savedNode;
        const nodeDir = join(from, node.name);
        await mkdir(dirname(node.diskPath), { recursive: true });
        const vm = await restoreVm(
          { ...snapshot, diskPath: resolve(nodeDir, snapshot.diskPath), statePath: resolve(nodeDir, snapshot.statePath) },
          {
            overlayPath: node.diskPath,
            overrides: { name: `${name}-${node.name}`, stateDir: options.stateDir, netns: state.netns, persistentRunId: node.runId, owner: { kind: 'cluster', name, stateFile } },
            reporter,
          },
        );
        await writeFile(join(vm.runDir, 'spec.json'), `${JSON.stringify(vm.spec, null, 2)}\n`);
        const restoredMs = performance.now() - started;
        nodeLog(reporter, node.name, `running again after ${(restoredMs / 1000).toFixed(1)} s`);
        try {
          const clock = await setGuestClock(vm, { timeoutMs: 60_000 });
          nodeLog(reporter, node.name, `clock corrected: it was ${(clock.skewBeforeMs / 1000).toFixed(1)} s off, now ${clock.skewAfterMs.toFixed(0)} ms`);
          await waitForSsh(nodeSshTarget(state, options.stateDir, node), { timeoutMs: 60_000, vm });
          const reachableMs = performance.now() - started;
          nodeLog(reporter, node.name, `answers SSH after ${(reachableMs / 1000).toFixed(1)} s`);
          result[node.name] = { restoredMs, clockSkewBeforeMs: clock.skewBeforeMs, clockSkewAfterMs: clock.skewAfterMs, reachableMs };
        } finally {
          vm.detach();
        }
      }),
    );
  } catch (error) {
    await downCluster({ stateDir: options.stateDir, name, reporter });
    throw error;
  }
  const reachableMs = performance.now() - started;
  state.status = 'up';
  await writeState(options.stateDir, state);

  let kubeconfigPath: string | undefined;
  let readySkipped: string | undefined;
  if (!state.artifact.kubernetes) {
    readySkipped = `skipping the wait for Ready nodes: ${state.artifact.skippedReason ?? 'the image has no Kubernetes'}`;
    log(reporter, readySkipped);
  } else if (existsSync(join(from, 'kubeconfig'))) {
    await startApiForward(state, dir);
    await writeState(options.stateDir, state);
    kubeconfigPath = await writeKubeconfig(state, options.stateDir, await readFile(join(from, 'kubeconfig'), 'utf8'));
    await waitForReadyNodes(state, options.stateDir, kubeconfigPath, options.readyTimeoutMs, reporter);
  }
  return { state, kubeconfigPath, nodes: result, reachableMs, readySkipped, totalMs: performance.now() - started };
}

/** Size on disk of a directory tree (snapshot reports). */
export async function treeSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? await treeSize(path) : (await stat(path)).size;
  }
  return total;
}
