#!/usr/bin/env node
/**
 * `npm run bench`: builds the same image with kib and with Packer 1.6.6 (QEMU builder + Ansible
 * provisioner), one after the other, and prints the wall time of each phase side by side.
 * See bench/README.md for what is compared and how the two runs are kept equivalent.
 *
 * Plain ESM on purpose: it runs from a clean clone after `npm ci && npx tsc`, drives kib through
 * its CLI (`node bin/kib.js`) like a user would, and borrows only kib's pure renderers (ansible.cfg,
 * final seal script) so that Packer's run gets exactly the same Ansible settings and seal.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, homedir, hostname, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { renderPackerTemplate } from './packer/template.mjs';
import { countSshHandshakeTimeouts, kibRows, packerRows, parseJsonLines, renderRebuildTable, renderTable, stagesFromEvents } from './lib/timings.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_CONFIG = 'examples/debian-12.yaml';
const PACKER_USER = 'packer';
/** The build date of the bench's kib builds (2026-01-01) unless SOURCE_DATE_EPOCH is set. */
const BENCH_DATE_EPOCH = '1767225600';

const USAGE = `usage: npm run bench -- [options]

  --config FILE      build definition to benchmark (default: ${DEFAULT_CONFIG}; the offline Debian
                     12 fixture base is built or reused first when it is the default)
  --only kib|packer  run one side only (the other column shows —)
  --playbook FILE    use this playbook on both sides instead of the definition's (smoke tests)
  --order kib-first|packer-first   which build runs first (default kib-first)
  --results FILE     also write the report (with the command and machine facts) to FILE
  --cold-only        skip kib's rebuilds (no-op, last stage changed, Kubernetes patch bump) after its cold build
  --keep             keep the work directory (disks, outputs) instead of removing it
  -h, --help`;

// ---------------------------------------------------------------------------------------------
// Children: every process started here is remembered and stopped on failure or Ctrl-C.

/** @type {Set<{pid: number, name: string, group: boolean}>} */
const live = new Set();

/**
 * Runs a command, collecting stdout and stderr (or handing lines to callbacks). `group`: start it
 * in its own process group so that stopping it also stops what it started (Packer's QEMU).
 */
function runCommand(command, args, options = {}) {
  const { cwd = REPO, env = process.env, onStdoutLine, onStderrLine, group = false, inheritStderr = false } = options;
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', inheritStderr ? 'inherit' : 'pipe'], detached: group });
    const handle = { pid: child.pid ?? -1, name: command, group };
    if (child.pid !== undefined) live.add(handle);
    let stdout = '';
    let stderr = '';
    const lineSplitter = (onLine, sink) => {
      let rest = '';
      return (chunk) => {
        const text = chunk.toString('utf8');
        sink(text);
        if (onLine === undefined) return;
        rest += text;
        const lines = rest.split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) onLine(line);
      };
    };
    child.stdout.on('data', lineSplitter(onStdoutLine, (t) => (stdout += t)));
    child.stderr?.on('data', lineSplitter(onStderrLine, (t) => (stderr += t)));
    child.on('error', (error) => {
      live.delete(handle);
      reject(new Error(`could not start ${command}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      live.delete(handle);
      resolvePromise({ code: code ?? (signal === null ? 1 : 128), signal, stdout, stderr, wallMs: performance.now() - started });
    });
  });
}

async function runChecked(command, args, options = {}) {
  const result = await runCommand(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.code}${result.stderr ? `:\n${result.stderr.trim().split('\n').slice(-15).join('\n')}` : ''}`);
  }
  return result;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGINT (both tools clean up on it), then SIGTERM, then SIGKILL; to the group where there is one. */
async function stopChildren() {
  const signalTo = (h, sig) => {
    try {
      process.kill(h.group ? -h.pid : h.pid, sig);
    } catch {
      // Already gone.
    }
  };
  for (const [sig, waitMs] of [['SIGINT', 60_000], ['SIGTERM', 10_000], ['SIGKILL', 2_000]]) {
    const remaining = [...live].filter((h) => alive(h.pid));
    if (remaining.length === 0) return;
    for (const h of remaining) signalTo(h, sig);
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && [...live].some((h) => alive(h.pid))) await sleep(200);
  }
}

/** QEMU processes kib recorded in its state directory (pidfiles under runs/) that are still alive. */
async function stopKibOrphans(stateDir) {
  const runsDir = join(stateDir, 'runs');
  const entries = await readdir(runsDir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const files = await readdir(join(runsDir, entry.name)).catch(() => []);
    for (const file of files.filter((f) => f.endsWith('.pid') || f === 'pid')) {
      const pid = Number((await readFile(join(runsDir, entry.name, file), 'utf8').catch(() => '')).trim());
      if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) continue;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (!cmdline.includes('qemu')) continue;
      process.stderr.write(`bench: stopping QEMU ${pid} left behind by kib\n`);
      process.kill(pid, 'SIGTERM');
      await sleep(3000);
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Watches for QEMU processes that are not the benchmark's (their command lines do not mention its
 * work directory) and for the load average: other VMs on a 2-core machine slow both builds, and
 * the report says so rather than print inflated figures as if the machine had been quiet.
 */
function watchContention(workRoot) {
  const foreign = new Set();
  let maxForeign = 0;
  let maxLoad = 0;
  const sample = async () => {
    const load = Number((await readFile('/proc/loadavg', 'utf8').catch(() => '0')).split(' ')[0]);
    maxLoad = Math.max(maxLoad, load);
    let count = 0;
    for (const entry of await readdir('/proc').catch(() => [])) {
      if (!/^\d+$/.test(entry)) continue;
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
      if (!cmdline.startsWith('qemu-system') && !cmdline.includes('/qemu-system')) continue;
      if (cmdline.includes(workRoot)) continue;
      foreign.add(Number(entry));
      count += 1;
    }
    maxForeign = Math.max(maxForeign, count);
  };
  void sample();
  const timer = setInterval(() => void sample(), 10_000);
  return {
    stop() {
      clearInterval(timer);
      return { foreignQemuPids: [...foreign], maxForeignAtOnce: maxForeign, maxLoad1: maxLoad };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Inputs

function stateRoot() {
  if (process.env.KIB_STATE_DIR) return process.env.KIB_STATE_DIR;
  if (process.env.XDG_STATE_HOME) return join(process.env.XDG_STATE_HOME, 'kube-image-builder');
  return join(homedir(), '.local', 'state', 'kube-image-builder');
}

async function sha256File(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

/** The base as a local path: the benchmark compares offline builds of a file both tools read. */
function localBasePath(url) {
  if (url.startsWith('file://')) return fileURLToPath(url);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw new Error(`the base ${url} is remote; the benchmark compares offline builds — run \`kib fetch\` and pass the cached file with --config pointing at a definition whose base is a local path`);
  }
  return url;
}

/** What accelerator a build will get; Packer needs it spelled out. Mirrors kib's rule: KVM only when the CPU offers it. */
async function resolveAccelerator(requested) {
  if (requested === 'kvm' || requested === 'tcg') return requested;
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '';
  return existsSync('/dev/kvm') && /\b(vmx|svm)\b/.test(flags) ? 'kvm' : 'tcg';
}

/** The image version kib derives (src/pipeline/git-version.ts), for Packer's kib_image_version. */
async function gitVersion(dir) {
  const git = async (args) => {
    const r = await runCommand('git', ['-C', dir, ...args]).catch(() => undefined);
    return r !== undefined && r.code === 0 ? r.stdout.trim() : undefined;
  };
  const commit = await git(['rev-parse', 'HEAD']);
  if (commit === undefined) return { version: '0.0.0-unknown', commit: 'unknown' };
  const status = await git(['status', '--porcelain', '--untracked-files=no']);
  const described = await git(['describe', '--tags', '--match', 'v[0-9]*']);
  const base = described ?? `0.0.0-dev+${commit.slice(0, 12)}`;
  return { version: status ? `${base}-dirty` : base, commit };
}

async function machineFacts(accelerator) {
  const meminfo = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  const version = async (cmd, args, pick = (s) => s.split('\n')[0]) => {
    const r = await runCommand(cmd, args).catch(() => undefined);
    return r === undefined || r.code !== 0 ? 'not found' : pick(`${r.stdout}${r.stderr}`.trim());
  };
  return {
    host: hostname(),
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memory: `${(memKiB / 1024 ** 2).toFixed(1)} GiB (${memKiB} kB MemTotal)`,
    kernel: release(),
    accelerator,
    node: process.version,
    packer: await version('packer', ['version']),
    qemu: await version('qemu-system-x86_64', ['--version']),
    ansible: await version('ansible-playbook', ['--version']),
    kibCommit: (await version('git', ['-C', REPO, 'rev-parse', '--short=12', 'HEAD'])) + ((await version('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no'], (s) => s)) === '' ? '' : ' (+ uncommitted changes)'),
  };
}

// ---------------------------------------------------------------------------------------------
// The two builds

/**
 * kib's side: a copy of the definition with absolute paths and outputs limited to a compressed
 * qcow2 (what Packer produces), built with fresh cache and state directories so the base is
 * imported cold, as Packer imports it.
 */
async function runKib({ spec, basePath, baseSha256, accelerator, playbookPath, workDir, logDir, log, variant = { label: 'cold' } }) {
  const outputDir = join(workDir, 'output');
  const cold = variant.label === 'cold';
  // As short as it gets: QEMU's sockets and Ansible's SSH control sockets live deep inside it, and a
  // unix socket path has at most 107 bytes. kib's build logs are copied to logDir afterwards.
  const stateDir = join(dirname(workDir), 's');
  const definition = {
    name: variant.name ?? spec.name,
    base: { url: basePath, ...(baseSha256 === undefined ? {} : { sha256: baseSha256 }), osFamily: spec.base.osFamily },
    // The resolved release, without the lock's exact builds: the copy has no lock, and Packer's side
    // gets the same (an empty kib_kubernetes_locked_packages), so both install alike.
    kubernetes: { version: variant.kubernetesVersion ?? spec.kubernetes.version, packages: spec.kubernetes.packages },
    node: spec.node,
    disk: { size: String(spec.disk.sizeBytes) },
    vm: { cpus: spec.vm.cpus, memory: `${spec.vm.memoryMiB}M`, accelerator, firmware: spec.vm.firmware, bootTimeout: `${Math.ceil(spec.vm.bootTimeoutMs / 1000)}s` },
    provision: { playbook: playbookPath, vars: spec.provision.vars },
    outputs: { dir: outputDir, formats: ['qcow2'], compress: true },
  };
  const suffix = cold ? '' : `-${variant.label}`;
  const configPath = join(workDir, `image${suffix}.yaml`);
  // JSON is YAML: no YAML writer needed, and every path is absolute so the file's location does not matter.
  await writeFile(configPath, `${JSON.stringify(definition, null, 2)}\n`);
  await copyFile(configPath, join(logDir, `kib-image${suffix}.yaml`));

  const eventsPath = join(logDir, `kib-events${suffix}.jsonl`);
  const events = createWriteStream(eventsPath);
  log(`kib: building${cold ? '' : ` (${variant.label})`} (events: ${eventsPath})`);
  // The definition lives outside Git, so without SOURCE_DATE_EPOCH every build would be dated now
  // and its last stage could never hit: the rebuilds would not be comparable.
  const env = { ...process.env, KIB_CACHE_DIR: join(workDir, 'cache'), KIB_STATE_DIR: stateDir, SOURCE_DATE_EPOCH: process.env.SOURCE_DATE_EPOCH ?? BENCH_DATE_EPOCH };
  let result;
  try {
    result = await runCommand(process.execPath, [join(REPO, 'bin', 'kib.js'), 'build', '--config', configPath, '--json', '--log-format', 'json'], {
      env,
      group: true,
      onStderrLine: (line) => {
        events.write(`${line}\n`);
        const e = parseJsonLines(line)[0];
        if (e?.type === 'phase-start') log(`kib: ${e.phase}: ${e.title}`);
        else if (e?.type === 'phase-end') log(`kib: ${e.phase} ${e.ok ? 'done' : 'FAILED'} in ${(e.durationMs / 1000).toFixed(1)} s`);
        else if (e?.type === 'step') log(`kib:   ${e.message}`);
        else if (e?.type === 'warning') log(`kib: warning: ${e.message}`);
        else if (e === undefined && line.trim() !== '') log(`kib: ${line}`);
      },
    });
  } finally {
    await new Promise((r) => events.end(r));
    await stopKibOrphans(stateDir);
    await cp(join(stateDir, 'builds'), join(logDir, 'kib-builds'), { recursive: true }).catch(() => undefined);
  }
  await writeFile(join(logDir, `kib-stdout${suffix}.json`), result.stdout);
  const eventList = parseJsonLines(await readFile(eventsPath, 'utf8'));
  let parsed;
  try {
    parsed = JSON.parse(result.stdout);
  } catch {
    parsed = undefined;
  }
  if (result.code !== 0 || parsed === undefined) {
    const errors = eventList.filter((e) => e.type === 'warning' || e.type === 'error').map((e) => e.message);
    throw new Error(`kib build exited with ${result.code}${errors.length > 0 ? `: ${errors.slice(-3).join('; ')}` : ''}; events: ${eventsPath}, build logs: ${join(logDir, 'kib-builds')}`);
  }
  const qcow2 = (parsed.artifacts ?? []).find((a) => a.kind === 'qcow2' || String(a.path).endsWith('.qcow2'));
  if (!cold) {
    const stages = stagesFromEvents(eventList);
    log(`kib: ${variant.label}: ${parsed.upToDate === true ? 'up to date, nothing built' : stages} in ${(result.wallMs / 1000).toFixed(1)} s`);
    return { label: variant.label, wallMs: result.wallMs, upToDate: parsed.upToDate === true, stages, artifact: qcow2 === undefined ? undefined : { path: qcow2.path, sizeBytes: qcow2.sizeBytes } };
  }
  const manifestPath = parsed.outputDir === undefined ? undefined : join(parsed.outputDir, 'manifest.json');
  const manifest = manifestPath === undefined ? undefined : await readFile(manifestPath, 'utf8').then(JSON.parse).catch(() => undefined);
  if (manifestPath !== undefined && manifest !== undefined) await copyFile(manifestPath, join(logDir, 'kib-manifest.json'));
  const accel = eventList.find((e) => e.type === 'step' && /^accelerator: /.test(String(e.message)))?.message;
  return {
    ...kibRows({ result: parsed, events: eventList, manifest, wallMs: result.wallMs }),
    artifact: qcow2 === undefined ? undefined : { path: qcow2.path, sizeBytes: qcow2.sizeBytes },
    acceleratorNote: accel,
    buildLogDir: join(logDir, 'kib-builds'),
  };
}

/**
 * kib's rebuilds after its cold build, on the same cache (layers), state and output directories:
 * twice with nothing changed, twice with only the image name changed (read by the last stage
 * only), twice with the next Kubernetes patch releases. Then the layer store's size on disk.
 */
async function runRebuilds(common) {
  const { spec, log } = common;
  const [major, minor, patch] = spec.kubernetes.version.split('.').map(Number);
  const plan = [
    { kind: 'noop', label: 'noop-1' },
    { kind: 'noop', label: 'noop-2' },
    { kind: 'late', label: 'late-1', name: `${spec.name}-r1` },
    { kind: 'late', label: 'late-2', name: `${spec.name}-r2` },
    { kind: 'k8s-bump', label: 'k8s-bump-1', kubernetesVersion: `${major}.${minor}.${patch + 1}` },
    { kind: 'k8s-bump', label: 'k8s-bump-2', kubernetesVersion: `${major}.${minor}.${patch + 2}` },
  ];
  const runs = [];
  const failures = [];
  for (const variant of plan) {
    try {
      runs.push({ kind: variant.kind, ...(await runKib({ ...common, variant })) });
    } catch (error) {
      failures.push(`${variant.label}: ${error instanceof Error ? error.message : String(error)}`);
      log(`kib: ${variant.label} FAILED: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const du = await runCommand('du', ['-sb', join(common.workDir, 'cache', 'layers')]);
  const layerStoreBytes = du.code === 0 ? Number(du.stdout.split('\t')[0]) : undefined;
  return { runs, failures, layerStoreBytes };
}

/**
 * Packer's side: key pair and NoCloud seed (what kib makes inside its provision phase), the same
 * variables, ansible.cfg and seal script kib uses, then `packer build -machine-readable`.
 */
async function runPacker({ spec, basePath, baseSha256, accelerator, playbookPath, workDir, logDir, log, kibModules }) {
  const prepStarted = performance.now();
  await mkdir(join(workDir, 'seed'), { recursive: true });
  const keyPath = join(workDir, 'id_ed25519');
  await runChecked('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kib-bench-packer', '-f', keyPath]);
  const publicKey = (await readFile(`${keyPath}.pub`, 'utf8')).trim();
  const seedSource = join(REPO, 'bench', 'packer', 'seed');
  const fill = (text) => text.replaceAll('@USER@', PACKER_USER).replaceAll('@PUBLIC_KEY@', publicKey).replaceAll('@INSTANCE_ID@', `kib-bench-packer-${Date.now().toString(36)}`);
  for (const name of ['user-data', 'meta-data']) {
    await writeFile(join(workDir, 'seed', name), fill(await readFile(join(seedSource, `${name}.in`), 'utf8')));
  }
  const seedIso = join(workDir, 'seed.iso');
  await runChecked('genisoimage', ['-quiet', '-output', seedIso, '-volid', 'cidata', '-joliet', '-rock', join(workDir, 'seed', 'user-data'), join(workDir, 'seed', 'meta-data')]);
  let ovmf;
  if (spec.vm.firmware === 'uefi') {
    const code = ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd'].find((p) => existsSync(p));
    const varsSource = code?.replace('CODE', 'VARS');
    if (code === undefined || varsSource === undefined || !existsSync(varsSource)) throw new Error('uefi: OVMF not found (install ovmf)');
    await copyFile(varsSource, join(workDir, 'OVMF_VARS.fd'));
    ovmf = { code, vars: join(workDir, 'OVMF_VARS.fd') };
  }
  const prepMs = performance.now() - prepStarted;

  // kib versions the image from the Git repository holding its definition; the bench's copy of the
  // definition lives in the work directory, outside Git. Packer gets what kib gets from there.
  const git = await gitVersion(dirname(workDir));
  const vars = {
    ...spec.provision.vars,
    kib_kubernetes_version: spec.kubernetes.version,
    kib_kubernetes_packages: spec.kubernetes.packages,
    kib_kubernetes_locked_packages: {},
    kib_selinux: spec.node.selinux,
    kib_firewall: spec.node.firewall,
    kib_pod_cidrs: spec.node.network.podCidrs,
    kib_service_cidrs: spec.node.network.serviceCidrs,
    kib_overlay_ports: spec.node.network.overlayPorts,
    kib_os_family: spec.base.osFamily,
    kib_image_name: spec.name,
    kib_image_version: git.version,
    kib_git_commit: git.commit,
    kib_base_sha256: baseSha256,
    // What kib passes: the location it was given (here the bench's copy).
    kib_base_url: basePath,
    kib_build_date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    kib_build_user: PACKER_USER,
    kib_inventory_local_path: join(workDir, 'inventory.json'),
  };
  const varsFilePath = join(workDir, 'vars.json');
  await writeFile(varsFilePath, `${JSON.stringify(vars, null, 2)}\n`);
  await mkdir(join(workDir, 'ansible-cp'), { recursive: true });
  const ansibleConfigPath = join(workDir, 'ansible.cfg');
  await writeFile(ansibleConfigPath, kibModules.renderAnsibleConfig({ logPath: join(logDir, 'packer-ansible.log'), controlPathDir: join(workDir, 'ansible-cp') }));
  const seal = Buffer.from(kibModules.renderFinalSealScript(PACKER_USER)).toString('base64');

  const outputDir = join(workDir, 'output');
  const template = renderPackerTemplate({
    basePath,
    baseSha256,
    outputDir,
    vmName: `${spec.name}.qcow2`,
    diskSizeBytes: spec.disk.sizeBytes,
    cpus: spec.vm.cpus,
    memoryMiB: spec.vm.memoryMiB,
    accelerator,
    firmware: spec.vm.firmware,
    ovmf,
    seedIsoPath: seedIso,
    consoleLogPath: join(logDir, 'packer-console.log'),
    sshUser: PACKER_USER,
    sshPrivateKeyPath: keyPath,
    bootTimeout: `${Math.ceil(spec.vm.bootTimeoutMs / 1000)}s`,
    playbookPath,
    varsFilePath,
    ansibleConfigPath,
    // kib's final seal, run the same way: as root, the script on stdin.
    shutdownCommand: `echo ${seal} | base64 -d | sudo /bin/sh -s`,
  });
  const templatePath = join(workDir, 'template.json');
  await writeFile(templatePath, `${JSON.stringify(template, null, 2)}\n`);
  await copyFile(templatePath, join(logDir, 'packer-template.json'));

  const packerLog = join(logDir, 'packer.log');
  const machineLog = createWriteStream(join(logDir, 'packer-machine-readable.log'));
  const lines = [];
  let started = 0;
  log(`packer: building (PACKER_LOG: ${packerLog})`);
  const env = {
    ...process.env,
    PACKER_LOG: '1',
    PACKER_LOG_PATH: packerLog,
    PACKER_CACHE_DIR: join(workDir, 'packer_cache'),
    CHECKPOINT_DISABLE: '1',
    PACKER_NO_COLOR: '1',
  };
  started = performance.now();
  let result;
  try {
    result = await runCommand('packer', ['build', '-machine-readable', templatePath], {
      cwd: workDir,
      env,
      group: true,
      onStdoutLine: (line) => {
        const ms = performance.now() - started;
        lines.push({ ms, line });
        machineLog.write(`+${(ms / 1000).toFixed(3)}s ${line}\n`);
        const say = /,ui,(say|error),(.*)$/.exec(line);
        if (say?.[2] !== undefined) log(`packer: ${say[2].replaceAll('%!(PACKER_COMMA)', ',').replaceAll('\\n', ' ').trim()}`);
        const task = /,ui,message,\s+\S+: (TASK \[.*?\]|PLAY RECAP)/.exec(line);
        if (task?.[1] !== undefined) log(`packer:   ${task[1]}`);
      },
    });
  } finally {
    await new Promise((r) => machineLog.end(r));
  }
  const timing = packerRows({ lines, prepMs, wallMs: result.wallMs });
  if (result.code !== 0 || timing.errored) {
    throw new Error(`packer build exited with ${result.code}; log: ${packerLog}, machine-readable output: ${join(logDir, 'packer-machine-readable.log')}`);
  }
  const artifactPath = join(outputDir, `${spec.name}.qcow2`);
  const size = await stat(artifactPath).then((s) => s.size).catch(() => undefined);
  const inventoryDelivered = existsSync(vars.kib_inventory_local_path);
  const handshakeTimeouts = countSshHandshakeTimeouts(await readFile(packerLog, 'utf8').catch(() => ''));
  return { ...timing, packerLog, artifact: size === undefined ? undefined : { path: artifactPath, sizeBytes: size }, inventoryDelivered, handshakeTimeouts };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      only: { type: 'string' },
      playbook: { type: 'string' },
      order: { type: 'string', default: 'kib-first' },
      results: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'cold-only': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.only !== undefined && values.only !== 'kib' && values.only !== 'packer') throw new Error('--only takes kib or packer');
  if (values.order !== 'kib-first' && values.order !== 'packer-first') throw new Error('--order takes kib-first or packer-first');
  const commandLine = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const log = (text) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${text}\n`);

  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npx tsc` (or `npm run build`) first');
  const missing = [];
  for (const tool of ['packer', 'qemu-system-x86_64', 'qemu-img', 'genisoimage', 'ssh-keygen', 'ansible-playbook']) {
    const r = await runCommand('sh', ['-c', `command -v ${tool}`]);
    if (r.code !== 0) missing.push(tool);
  }
  if (missing.length > 0) throw new Error(`missing host tools: ${missing.join(', ')} (Debian: packer qemu-system-x86 qemu-utils genisoimage openssh-client ansible-core)`);
  const kibModules = {
    ...(await import(pathToFileURL(join(REPO, 'dist', 'provision', 'ansible.js')).href)),
    ...(await import(pathToFileURL(join(REPO, 'dist', 'provision', 'cloud-config.js')).href)),
  };

  const configArg = values.config ?? DEFAULT_CONFIG;
  const configPath = resolve(process.cwd(), configArg);
  if (values.config === undefined) {
    // Not timed: both builds start from the same, already existing base file.
    log('fixture: building or reusing the offline Debian 12 base (npm run fixture)');
    const fixture = await runChecked('npm', ['run', '--silent', 'fixture'], { inheritStderr: true });
    log(`fixture: ${fixture.stdout.trim().split('\n').pop()}`);
  }

  const plan = await runChecked(process.execPath, [join(REPO, 'bin', 'kib.js'), 'plan', '--json', '--config', configPath]);
  const described = JSON.parse(plan.stdout).config;
  if (described.kubernetes.version === null) {
    throw new Error(`${configPath}: kubernetes.series "${described.kubernetes.series}" is not resolved by a lock file; run kib lock --update first`);
  }
  const spec = {
    name: described.name,
    configDir: dirname(configPath),
    base: described.base,
    kubernetes: described.kubernetes,
    node: described.node,
    disk: { sizeBytes: described.disk.sizeBytes },
    vm: { cpus: described.vm.cpus, memoryMiB: described.vm.memoryMiB, accelerator: described.vm.accelerator, firmware: described.vm.firmware, bootTimeoutMs: described.vm.bootTimeoutMs },
    provision: { playbook: described.provision.playbook, vars: described.provision.vars ?? {} },
  };
  const playbookPath = values.playbook === undefined ? spec.provision.playbook : resolve(process.cwd(), values.playbook);
  const sourceBasePath = resolve(spec.configDir, localBasePath(spec.base.url));
  const accelerator = await resolveAccelerator(spec.vm.accelerator);

  const logDir = join(stateRoot(), 'bench', new Date().toISOString().replace(/[:.]/g, '-'));
  await mkdir(logDir, { recursive: true });
  // A short name: kib's state directory (with unix sockets deep inside) lives in it.
  const workRoot = await mkdtemp(join(tmpdir(), 'kb-'));
  // Both builds read one private copy: the base can be a link that moves while the bench runs (the
  // fixture link follows its recipe), and the two sides must start from the same bytes. Not timed;
  // the copy and the hash also warm the page cache, so neither build reads the base from disk first.
  const basePath = join(workRoot, 'base.qcow2');
  log(`base: copying ${sourceBasePath} to ${basePath} and hashing it`);
  await copyFile(sourceBasePath, basePath);
  const actualSha256 = await sha256File(basePath);
  if (spec.base.sha256 !== null && spec.base.sha256 !== actualSha256) {
    await rm(workRoot, { recursive: true, force: true });
    throw new Error(`${sourceBasePath} has sha256 ${actualSha256}, the definition pins ${spec.base.sha256}`);
  }
  let stopping = false;
  const onSignal = (sig) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping the builds and removing ${workRoot}`);
    void stopChildren()
      .then(() => rm(workRoot, { recursive: true, force: true }))
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const contention = watchContention(workRoot);
  const common = { spec, basePath, baseSha256: actualSha256, accelerator, playbookPath, logDir, log };
  const sides = values.only === undefined ? (values.order === 'kib-first' ? ['kib', 'packer'] : ['packer', 'kib']) : [values.only];
  /** @type {{kib?: any, packer?: any}} */
  const outcome = {};
  const failures = [];
  try {
    for (const side of sides) {
      const workDir = join(workRoot, side);
      await mkdir(workDir, { recursive: true });
      try {
        outcome[side] = side === 'kib' ? await runKib({ ...common, workDir }) : await runPacker({ ...common, workDir, kibModules });
        if (side === 'kib' && !values['cold-only']) {
          outcome.rebuilds = await runRebuilds({ ...common, workDir });
          failures.push(...outcome.rebuilds.failures.map((f) => `kib rebuild ${f}`));
        }
      } catch (error) {
        failures.push(`${side}: ${error instanceof Error ? error.message : String(error)}`);
        log(`${side} FAILED: ${error instanceof Error ? error.message : String(error)}`);
        await stopChildren();
      }
      if (side === 'kib' && !values.keep) await rm(join(workDir, 'cache'), { recursive: true, force: true });
    }
  } finally {
    await stopChildren();
    if (values.keep) log(`kept the work directory ${workRoot}`);
    else await rm(workRoot, { recursive: true, force: true });
  }

  const facts = await machineFacts(accelerator);
  facts.contention = contention.stop();
  const report = renderReport({ commandLine, facts, spec, basePath: sourceBasePath, baseSha256: actualSha256, playbookPath, outcome, failures, logDir, kept: values.keep ? workRoot : undefined });
  process.stdout.write(report);
  // Everything the table was made from, to check or re-derive figures later.
  await writeFile(join(logDir, 'bench-result.json'), `${JSON.stringify({ facts, outcome, failures }, (key, value) => (key === 'lines' ? undefined : value), 2)}\n`);
  await writeFile(join(logDir, 'report.txt'), report);
  if (values.results !== undefined) {
    const resultsPath = resolve(process.cwd(), values.results);
    await mkdir(dirname(resultsPath), { recursive: true });
    await writeFile(resultsPath, report);
    log(`report written to ${resultsPath}`);
  }
  return failures.length === 0 ? 0 : 1;
}

function renderReport({ commandLine, facts, spec, basePath, baseSha256, playbookPath, outcome, failures, logDir, kept }) {
  const mib = (b) => (b === undefined ? '—' : `${(b / 1024 ** 2).toFixed(1)} MiB`);
  const out = [];
  out.push(`kib vs Packer benchmark — ${new Date().toISOString()}`);
  out.push(`command:     ${commandLine}`);
  out.push(`machine:     ${facts.nproc} CPUs (${facts.cpu}), ${facts.memory}, kernel ${facts.kernel}, accelerator ${facts.accelerator}`);
  const c = facts.contention;
  out.push(
    `contention:  highest 1-min load average ${c.maxLoad1.toFixed(2)}; ${c.foreignQemuPids.length === 0 ? 'no other QEMU ran during the run' : `${c.foreignQemuPids.length} other QEMU process(es) ran during the run (up to ${c.maxForeignAtOnce} at once) — figures are inflated and not comparable between the two sides`}`,
  );
  out.push(`tools:       ${facts.packer}; ${facts.qemu}; ${facts.ansible}; node ${facts.node}; kib ${facts.kibCommit}`);
  out.push(`base:        ${basePath} (sha256 ${baseSha256})`);
  out.push(`playbook:    ${playbookPath}`);
  out.push(`build VM:    ${spec.vm.cpus} vCPU, ${spec.vm.memoryMiB} MiB, disk ${(spec.disk.sizeBytes / 1024 ** 3).toFixed(1)} GiB, ${spec.vm.firmware}, ${facts.accelerator}, q35, -cpu max, virtio disk + cidata seed`);
  out.push(`output:      compressed qcow2 only on both sides (kib also writes SHA256SUMS, manifest.json, SBOM)`);
  out.push('');
  out.push(renderTable(outcome.kib?.rows, outcome.packer?.rows));
  out.push('');
  out.push(`qcow2 size   kib ${mib(outcome.kib?.artifact?.sizeBytes)}   packer ${mib(outcome.packer?.artifact?.sizeBytes)}`);
  if (outcome.rebuilds !== undefined) {
    const r = outcome.rebuilds;
    out.push('');
    out.push('incremental builds (kib, on the layers of the cold build above; wall times):');
    out.push(
      renderRebuildTable({
        coldKibMs: outcome.kib?.rows?.total,
        coldPackerMs: outcome.packer?.rows?.total,
        late: r.runs.filter((x) => x.kind === 'late').map((x) => x.wallMs),
        k8sBump: r.runs.filter((x) => x.kind === 'k8s-bump').map((x) => x.wallMs),
        noop: r.runs.filter((x) => x.kind === 'noop').map((x) => x.wallMs),
        layerStoreBytes: r.layerStoreBytes,
        artifactBytes: outcome.kib?.artifact?.sizeBytes,
        rebuilds: r.runs.length,
      }),
    );
    for (const run of r.runs) out.push(`  ${run.label.padEnd(12)} ${(run.wallMs / 1000).toFixed(1).padStart(7)} s   ${run.upToDate ? 'up to date, nothing built' : run.stages}`);
    for (const failure of r.failures) out.push(`  FAILED ${failure}`);
  }
  out.push('');
  out.push('rows: prepare = kib preflight + base + overlay/key/seed | bench-made key + seed ISO + packer start → "Starting VM" (checksum, disk copy, resize);');
  out.push('      boot→ssh = VM start → SSH login works; cloud-init wait = kib waits for `cloud-init status --wait`, Packer does not wait;');
  out.push('      playbook = ansible-playbook run; seal+power-off = the same seal script (remove build user, fstrim, power off) until QEMU exits;');
  out.push('      export = compressed qcow2 written; other = what no row covers (tool start-up, hand-overs); total = wall time of the run.');
  const notes = [...(outcome.kib?.notes ?? []), ...(outcome.packer?.notes ?? [])];
  if (outcome.kib?.acceleratorNote !== undefined) notes.push(`kib: ${outcome.kib.acceleratorNote}`);
  if (outcome.packer?.handshakeTimeouts > 0) {
    notes.push(`packer: ${outcome.packer.handshakeTimeouts} SSH attempt(s) made while the guest was still booting hung for Packer's fixed 60 s handshake timeout (part of its boot→ssh)`);
  }
  if (outcome.packer !== undefined && !outcome.packer.inventoryDelivered) notes.push('packer: the playbook did not deliver the guest inventory (kib_inventory_local_path) — check packer-ansible.log');
  if (notes.length > 0) {
    out.push('');
    out.push('notes:');
    for (const note of notes) out.push(`  - ${note}`);
  }
  if (failures.length > 0) {
    out.push('');
    out.push('FAILED:');
    for (const failure of failures) out.push(`  - ${failure}`);
  }
  out.push('');
  out.push(`logs:        ${logDir}`);
  if (outcome.packer?.packerLog !== undefined) out.push(`packer log:  ${outcome.packer.packerLog}`);
  if (outcome.kib?.buildLogDir !== undefined) out.push(`kib logs:    ${outcome.kib.buildLogDir}`);
  if (kept !== undefined) out.push(`work dir:    ${kept} (kept)`);
  return `${out.join('\n')}\n`;
}

try {
  process.exitCode = await main();
} catch (error) {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  await stopChildren();
  process.exitCode = 1;
}
