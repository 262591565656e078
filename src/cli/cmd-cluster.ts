import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  clusterStatus,
  downCluster,
  findNode,
  listClusters,
  nodeSshTarget,
  readClusterState,
  resumeCluster,
  snapshotCluster,
  upCluster,
} from '../cluster/index.js';
import { parseDuration, parseSize } from '../config/index.js';
import { KibError, UsageError } from '../core/errors.js';
import { stateDir } from '../pipeline/dirs.js';
import { sshArgs, sshToolCommand } from '../ssh/index.js';
import { stringOption } from './args.js';
import { defineCommand } from './define.js';
import { CliReporter } from './reporting.js';
import { toolVersion } from './version.js';

/** The newest qcow2 with a manifest.json beside it under a build definition's outputs.dir. */
async function artifactFromConfig(configPath: string): Promise<string> {
  const config = parseYaml(await readFile(configPath, 'utf8')) as { outputs?: { dir?: string } };
  const outputs = resolve(dirname(configPath), config.outputs?.dir ?? 'output');
  let best: { path: string; mtime: number } | undefined;
  for (const entry of await readdir(outputs, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isDirectory()) continue;
    const qcow2 = join(outputs, entry.name, `${entry.name}.qcow2`);
    if (!existsSync(qcow2) || !existsSync(join(outputs, entry.name, 'manifest.json'))) continue;
    const mtime = (await stat(qcow2)).mtimeMs;
    if (best === undefined || mtime > best.mtime) best = { path: qcow2, mtime };
  }
  if (best === undefined) throw new KibError('ARTIFACT_MISSING', `no built artifact under ${outputs} (from ${configPath})`, { hint: `Build it first: kib build --config ${configPath}` });
  return best.path;
}

export const upCommand = defineCommand({
  name: 'up',
  usage: 'up [ARTIFACT | --config FILE | --from SNAPSHOT] [--nodes N] [--name NAME]',
  summary: 'Boot a kubeadm cluster from the image on a private network (or resume a frozen one), and write its kubeconfig.',
  help: [
    'Options:',
    '  --config FILE        take the newest artifact of this build definition',
    '  --from DIR           resume a cluster saved by kib snapshot (same kib version only)',
    '  --nodes N            number of nodes, 1-9 (default 2); node1 runs kubeadm init, the others join',
    '  --name NAME          cluster name (default kib); its network namespace is kib-NAME',
    '  --memory SIZE        per node (default 2G)   --cpus N (default 2)',
    '  --accelerator auto|kvm|tcg (default auto)',
    '  --cni FILE           apply this CNI manifest after init instead of kib\'s bridge CNI (no download)',
    '  --registry           run a registry beside the nodes (10.77.0.1:5000), used by containerd as a mirror',
    '  --node-files FILE    YAML list of cloud-init write_files entries added to every node',
    '  --boot-timeout D     per node, until cloud-init finished (default 15m)',
    '  --ready-timeout D    until every node is Ready (default 10m)',
    '  --rm-on-failure      remove the cluster when it fails (default: leave it for inspection)',
    '',
    'Each cluster gets a network namespace with a bridge, dnsmasq (DHCP by MAC, DNS for cluster.kib)',
    'and a cloud-config server; nothing runs on the host\'s network. See docs/cluster.md.',
  ].join('\n'),
  options: {
    config: { type: 'string', short: 'c' },
    from: { type: 'string' },
    nodes: { type: 'string' },
    name: { type: 'string' },
    memory: { type: 'string' },
    cpus: { type: 'string' },
    accelerator: { type: 'string' },
    cni: { type: 'string' },
    registry: { type: 'boolean' },
    'node-files': { type: 'string' },
    'boot-timeout': { type: 'string' },
    'ready-timeout': { type: 'string' },
    'rm-on-failure': { type: 'boolean' },
  },
  async action(parsed, context) {
    const values = parsed.values;
    const [artifactArg, ...extra] = parsed.positionals;
    if (extra.length > 0) throw new UsageError('kib up takes at most one ARTIFACT');
    const from = stringOption(values, 'from');
    const configPath = stringOption(values, 'config');
    if ([artifactArg, from, configPath].filter((v) => v !== undefined).length > 1) throw new UsageError('kib up takes one of ARTIFACT, --config FILE or --from SNAPSHOT');
    const nodesText = stringOption(values, 'nodes') ?? '2';
    const nodes = Number(nodesText);
    const accelerator = stringOption(values, 'accelerator') ?? 'auto';
    if (accelerator !== 'auto' && accelerator !== 'kvm' && accelerator !== 'tcg') throw new UsageError(`--accelerator must be auto, kvm or tcg, got "${accelerator}"`);
    const memoryMiB = Math.floor(parseSize(stringOption(values, 'memory') ?? '2G') / 1024 ** 2);
    const cpus = Number(stringOption(values, 'cpus') ?? '2');
    const reporter = new CliReporter(parsed.globals, context.stderr);
    const common = { stateDir: stateDir(context.env), reporter, signal: context.signal };
    const readyTimeoutMs = parseDuration(stringOption(values, 'ready-timeout') ?? '10m');
    const name = stringOption(values, 'name');
    if (from !== undefined) {
      const result = await resumeCluster({ ...common, from: resolve(context.cwd, from), ...(name === undefined ? {} : { name }), kibVersion: toolVersion(), readyTimeoutMs });
      const report = { name: result.state.name, netns: result.state.netns, kubeconfig: result.kubeconfigPath ?? null, readySkipped: result.readySkipped ?? null, reachableMs: Math.round(result.reachableMs), totalMs: Math.round(result.totalMs), nodes: result.nodes };
      context.stdout.write(parsed.globals.json ? `${JSON.stringify(report, null, 2)}\n` : `cluster ${report.name} resumed; every node answers SSH after ${(result.reachableMs / 1000).toFixed(1)} s${result.kubeconfigPath === undefined ? '' : `; kubeconfig: ${result.kubeconfigPath}`}\n`);
      return 0;
    }
    const artifactPath = configPath !== undefined ? await artifactFromConfig(resolve(context.cwd, configPath)) : artifactArg === undefined ? undefined : resolve(context.cwd, artifactArg);
    if (artifactPath === undefined) throw new UsageError('kib up needs an ARTIFACT, --config FILE or --from SNAPSHOT', 'Example: kib up output/<stem>/<stem>.qcow2 --nodes 2');
    const cni = stringOption(values, 'cni');
    const nodeFiles = stringOption(values, 'node-files');
    const result = await upCluster({
      ...common,
      name: name ?? 'kib',
      artifactPath,
      nodes,
      memoryMiB,
      cpus,
      accelerator,
      kibVersion: toolVersion(),
      ...(cni === undefined ? {} : { cniManifestPath: resolve(context.cwd, cni) }),
      ...(nodeFiles === undefined ? {} : { nodeFilesPath: resolve(context.cwd, nodeFiles) }),
      registry: values.registry === true,
      bootTimeoutMs: parseDuration(stringOption(values, 'boot-timeout') ?? '15m'),
      readyTimeoutMs,
      rmOnFailure: values['rm-on-failure'] === true,
    });
    const report = {
      name: result.state.name,
      netns: result.state.netns,
      stateFile: result.stateFile,
      kubeconfig: result.kubeconfigPath ?? null,
      readySkipped: result.readySkipped ?? null,
      nodes: result.state.nodes.map((n) => ({ name: n.name, ip: n.ip, mac: n.mac, podCidr: n.podCidr, role: n.role })),
      timingsMs: Object.fromEntries(Object.entries(result.timingsMs).map(([k, v]) => [k, Math.round(v)])),
    };
    context.stdout.write(
      parsed.globals.json
        ? `${JSON.stringify(report, null, 2)}\n`
        : `cluster ${report.name} is up: ${report.nodes.map((n) => `${n.name} ${n.ip}`).join(', ')}\n${result.kubeconfigPath === undefined ? `${result.readySkipped ?? ''}\n` : `export KUBECONFIG=${result.kubeconfigPath}\n`}`,
    );
    return 0;
  },
});

export const statusCommand = defineCommand({
  name: 'status',
  usage: 'status [NAME]',
  summary: 'Show clusters made by kib up: status, nodes, addresses, whether each node\'s QEMU runs.',
  help: '',
  options: {},
  async action(parsed, context) {
    const dir = stateDir(context.env);
    const [name] = parsed.positionals;
    const states = name === undefined ? await listClusters(dir) : [await readClusterState(dir, name)];
    const report = await Promise.all(states.map(async (s) => ({ name: s.name, status: s.status, netns: s.netns, kibVersion: s.kibVersion, artifact: s.artifact.path, ports: s.ports, nodes: await clusterStatus(dir, s) })));
    if (parsed.globals.json) context.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else if (report.length === 0) context.stdout.write('no clusters\n');
    else for (const c of report) context.stdout.write(`${c.name}  ${c.status}  ${c.netns}\n${c.nodes.map((n) => `  ${n.name}  ${n.ip}  ${n.mac}  ${n.running ? 'running' : 'not running'}`).join('\n')}\n`);
    return 0;
  },
});

export const sshCommand = defineCommand({
  name: 'ssh',
  usage: 'ssh NAME NODE [-- COMMAND…]',
  summary: 'Log in to a cluster node (ssh runs inside the cluster\'s network namespace).',
  help: '',
  options: {},
  async action(parsed, context) {
    const [name, nodeName, ...command] = parsed.positionals;
    if (name === undefined || nodeName === undefined) throw new UsageError('kib ssh takes NAME and NODE', 'Example: kib ssh kib node1 -- sudo crictl ps');
    const dir = stateDir(context.env);
    const state = await readClusterState(dir, name);
    const target = nodeSshTarget(state, dir, findNode(state, nodeName));
    // Interactive without a command: ask for a terminal (-t) before the options.
    const base = sshArgs(target, command);
    const [cmd, args] = sshToolCommand(target, 'ssh', command.length === 0 ? ['-t', ...base] : base);
    const child = spawn(cmd, args, { stdio: 'inherit' });
    return await new Promise<number>((resolvePromise) => child.on('close', (code) => resolvePromise(code ?? 1)));
  },
});

export const kubeconfigCommand = defineCommand({
  name: 'kubeconfig',
  usage: 'kubeconfig NAME',
  summary: 'Print the path of a cluster\'s kubeconfig (its server is a forwarded loopback port).',
  help: '',
  options: {},
  async action(parsed, context) {
    const [name] = parsed.positionals;
    if (name === undefined) throw new UsageError('kib kubeconfig takes NAME');
    const dir = stateDir(context.env);
    const state = await readClusterState(dir, name);
    const path = join(dir, 'clusters', state.name, 'kubeconfig');
    if (!existsSync(path)) throw new KibError('NO_KUBECONFIG', `cluster ${name} has no kubeconfig${state.artifact.kubernetes ? '' : ': its image has no Kubernetes'}`);
    context.stdout.write(`${path}\n`);
    return 0;
  },
});

export const downCommand = defineCommand({
  name: 'down',
  usage: 'down NAME',
  summary: 'Remove a cluster: no QEMU, dnsmasq, helper, namespace, tap or state is left. Idempotent.',
  help: '',
  options: {},
  async action(parsed, context) {
    const [name] = parsed.positionals;
    if (name === undefined) throw new UsageError('kib down takes NAME');
    const started = performance.now();
    const result = await downCluster({ stateDir: stateDir(context.env), name, reporter: new CliReporter(parsed.globals, context.stderr) });
    const report = { name, removed: result.removed, ms: Math.round(performance.now() - started) };
    context.stdout.write(parsed.globals.json ? `${JSON.stringify(report)}\n` : `${result.removed ? `cluster ${name} removed` : `no cluster ${name}`} (${(report.ms / 1000).toFixed(1)} s)\n`);
    return 0;
  },
});

export const snapshotCommand = defineCommand({
  name: 'snapshot',
  usage: 'snapshot NAME [--out DIR]',
  summary: 'Freeze a running cluster (every node\'s memory and disk) into DIR and stop it; kib up --from DIR resumes it.',
  help: '',
  options: { out: { type: 'string' } },
  async action(parsed, context) {
    const [name] = parsed.positionals;
    if (name === undefined) throw new UsageError('kib snapshot takes NAME');
    const out = resolve(context.cwd, stringOption(parsed.values, 'out') ?? `${name}.snapshot`);
    const result = await snapshotCluster({ stateDir: stateDir(context.env), name, outDir: out, reporter: new CliReporter(parsed.globals, context.stderr) });
    const report = { dir: result.dir, totalMs: Math.round(result.totalMs), nodesMs: Object.fromEntries(Object.entries(result.nodesMs).map(([k, v]) => [k, Math.round(v)])) };
    context.stdout.write(parsed.globals.json ? `${JSON.stringify(report, null, 2)}\n` : `cluster ${name} saved to ${result.dir} in ${(result.totalMs / 1000).toFixed(1)} s; resume it with: kib up --from ${result.dir}\n`);
    return 0;
  },
});
