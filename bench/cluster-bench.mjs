#!/usr/bin/env node
/**
 * `npm run bench:cluster -- ARTIFACT [--results FILE] [--nodes N] [--runs N]`: the cluster rows of the bench
 * report, measured through the CLI like a user would run it (as root):
 *
 *   cold kib up (N nodes, 1 GiB each)       → every node has run cloud-init (Ready, with Kubernetes)
 *   kib snapshot                            → every node saved, cluster gone
 *   kib up --from (resume a frozen cluster) → every node answers SSH and the guest agent
 *   kib down                                → nothing left
 *
 * Targets from the cluster issue: resume of 2 nodes ≤ 15 s (TCG), kib down ≤ 5 s.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, hostname, loadavg, release, tmpdir, totalmem } from 'node:os';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values, positionals } = parseArgs({ allowPositionals: true, options: { results: { type: 'string' }, nodes: { type: 'string', default: '2' }, runs: { type: 'string', default: '2' } } });
const artifact = positionals[0];
if (artifact === undefined) {
  process.stderr.write('usage: npm run bench:cluster -- ARTIFACT [--results FILE] [--nodes N] [--runs N]\n');
  process.exit(2);
}

function kib(args, env) {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [join(REPO, 'bin', 'kib.js'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`kib ${args.join(' ')} exited ${code}`));
      else resolvePromise({ ms: performance.now() - started, stdout });
    });
  });
}

/** QEMU processes that are not this bench's (their command line does not name its state dir). */
function foreignQemu(root) {
  const found = new Set();
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    if (cmdline.startsWith('qemu-system') && !cmdline.includes(root)) found.add(pid);
  }
  return found;
}

const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`--runs must be a whole number of at least 1, not ${values.runs}\n`);
  process.exit(2);
}
const root = await mkdtemp(join(tmpdir(), 'kcb-'));
let highestLoad = loadavg()[0];
const others = new Set();
const sampler = setInterval(() => {
  highestLoad = Math.max(highestLoad, loadavg()[0]);
  for (const pid of foreignQemu(root)) others.add(pid);
}, 1000);
/** label → [ms of each run], target */
const samples = new Map();
const record = (label, ms, target) => {
  const entry = samples.get(label) ?? { values: [], target };
  entry.values.push(ms);
  samples.set(label, entry);
};
try {
  for (let run = 1; run <= runs; run += 1) {
    const env = { KIB_STATE_DIR: join(root, `s${run}`) };
    const name = `bench${run}`;
    try {
      const up = await kib(['up', resolve(artifact), '--nodes', values.nodes, '--name', name, '--memory', '1G', '--cpus', '1', '--json'], env);
      record(`cold kib up, ${values.nodes} nodes → cloud-init done${JSON.parse(up.stdout).readySkipped ? ' (no Kubernetes in the image)' : ' and Ready'}`, up.ms, '—');
      const snap = await kib(['snapshot', name, '--out', join(root, `snap${run}`), '--json'], env);
      record(`kib snapshot, ${values.nodes} nodes`, snap.ms, '—');
      const resumed = await kib(['up', '--from', join(root, `snap${run}`), '--name', `${name}r`, '--json'], env);
      const report = JSON.parse(resumed.stdout);
      record(`resume a frozen ${values.nodes}-node cluster → every node answers SSH and the guest agent`, report.reachableMs, '≤ 15 s');
      record('kib up --from, whole command', resumed.ms, '—');
      const down = await kib(['down', `${name}r`, '--json'], env);
      record('kib down → nothing left', down.ms, '≤ 5 s');
    } finally {
      await kib(['down', name], env).catch(() => undefined);
      await kib(['down', `${name}r`], env).catch(() => undefined);
    }
  }
} finally {
  clearInterval(sampler);
  await rm(root, { recursive: true, force: true });
}
const median = (list) => {
  const sorted = [...list].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const rows = [...samples].map(([label, { values: list, target }]) => [label, median(list), target, list]);

const width = Math.max(...rows.map((r) => r[0].length));
const lines = [
  `kib cluster bench — ${new Date().toISOString()} — ${hostname()}, ${cpus().length} CPUs, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Linux ${release()}`,
  `artifact: ${resolve(artifact)}`,
  '',
  `contention: highest 1-min load average ${highestLoad.toFixed(2)}; ${others.size === 0 ? 'no other QEMU ran during the run' : `${others.size} other QEMU process(es) ran during the run: figures are not a quiet machine's`}`,
  `runs: ${runs} (the time column is the median; every run's figure follows it)`,
  '',
  `${'case'.padEnd(width)}  ${'median'.padStart(8)}  ${'target'.padEnd(7)}  runs`,
  ...rows.map(([label, ms, target, list]) => `${label.padEnd(width)}  ${`${(ms / 1000).toFixed(1)} s`.padStart(8)}  ${target.padEnd(7)}  ${list.map((v) => `${(v / 1000).toFixed(1)} s`).join(', ')}`),
  '',
];
process.stdout.write(lines.join('\n'));
if (values.results !== undefined) await writeFile(values.results, lines.join('\n'));
