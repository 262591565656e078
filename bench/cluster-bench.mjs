#!/usr/bin/env node
/**
 * `npm run bench:cluster -- ARTIFACT [--results FILE] [--nodes N]`: the cluster rows of the bench
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
import { cpus, hostname, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values, positionals } = parseArgs({ allowPositionals: true, options: { results: { type: 'string' }, nodes: { type: 'string', default: '2' } } });
const artifact = positionals[0];
if (artifact === undefined) {
  process.stderr.write('usage: npm run bench:cluster -- ARTIFACT [--results FILE] [--nodes N]\n');
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

const root = await mkdtemp(join(tmpdir(), 'kcb-'));
const env = { KIB_STATE_DIR: join(root, 's') };
const name = 'bench';
const rows = [];
try {
  const up = await kib(['up', resolve(artifact), '--nodes', values.nodes, '--name', name, '--memory', '1G', '--cpus', '1', '--json'], env);
  rows.push([`cold kib up, ${values.nodes} nodes → cloud-init done${JSON.parse(up.stdout).readySkipped ? ' (no Kubernetes in the image)' : ' and Ready'}`, up.ms, '—']);
  const snap = await kib(['snapshot', name, '--out', join(root, 'snap'), '--json'], env);
  rows.push([`kib snapshot, ${values.nodes} nodes`, snap.ms, '—']);
  const resumed = await kib(['up', '--from', join(root, 'snap'), '--name', `${name}r`, '--json'], env);
  const report = JSON.parse(resumed.stdout);
  rows.push([`resume a frozen ${values.nodes}-node cluster → every node answers SSH and the guest agent`, report.reachableMs, '≤ 15 s']);
  rows.push([`kib up --from, whole command`, resumed.ms, '—']);
  const down = await kib(['down', `${name}r`, '--json'], env);
  rows.push(['kib down → nothing left', down.ms, '≤ 5 s']);
} finally {
  await kib(['down', name], env).catch(() => undefined);
  await kib(['down', `${name}r`], env).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
}

const width = Math.max(...rows.map((r) => r[0].length));
const lines = [
  `kib cluster bench — ${new Date().toISOString()} — ${hostname()}, ${cpus().length} CPUs, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Linux ${release()}`,
  `artifact: ${resolve(artifact)}`,
  '',
  `${'case'.padEnd(width)}  ${'time'.padStart(8)}  target`,
  ...rows.map(([label, ms, target]) => `${label.padEnd(width)}  ${`${(ms / 1000).toFixed(1)} s`.padStart(8)}  ${target}`),
  '',
];
process.stdout.write(lines.join('\n'));
if (values.results !== undefined) await writeFile(values.results, lines.join('\n'));
