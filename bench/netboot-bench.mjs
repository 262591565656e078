// Netboot figures: runs the vm-tier netboot test (BIOS and UEFI installs from `kib netboot`) with
// KIB_NETBOOT_BENCH_OUT set, then prints what it measured. TCG figures; run it on a quiet machine
// (and, where VMs are shared, under the same lock as the vm tier).
//
//   node bench/netboot-bench.mjs [--out bench/results/netboot-DATE.txt]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const outIndex = process.argv.indexOf('--out');
const outFile = outIndex > 0 ? process.argv[outIndex + 1] : undefined;
const json = path.join(mkdtempSync(path.join(tmpdir(), 'kib-netboot-bench-')), 'figures.json');
const result = spawnSync('npx', ['vitest', 'run', '--project', 'vm', 'test/vm/netboot.test.ts', '-t', 'installs|UEFI'], {
  stdio: ['ignore', 'inherit', 'inherit'],
  env: { ...process.env, KIB_NETBOOT_BENCH_OUT: json },
});
let rows = [];
try {
  rows = JSON.parse(readFileSync(json, 'utf8'));
} catch {
  console.error('the netboot test recorded no figures');
  process.exit(1);
}
const f = (value, digits = 1) => (value === null || value === undefined ? 'n/a' : Number(value).toFixed(digits));
const lines = [
  `kib netboot bench, ${new Date().toISOString()} (TCG; vitest exit ${result.status})`,
  '',
  '| firmware | QEMU start → stage2 /init | → writing | → written (verified) | → SSH | → joined | write MB/s | read-back verify MB/s |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.firmware} | ${f(r.stage2RunningS)} s | ${f(r.writingS)} s | ${f(r.writtenS)} s | ${f(r.sshS)} s | ${f(r.joinedS)} s | ${f(r.writeMBps)} | ${f(r.verifyMBps)} |`),
  '',
  'Phase shares of power-on → SSH:',
  ...rows.map((r) => {
    const total = r.sshS;
    const parts = [
      ['firmware + iPXE + stage2 start', r.stage2RunningS ?? 0],
      ['DHCP + instructions', r.writingS - (r.stage2RunningS ?? 0)],
      ['write + verify + CIDATA', r.writtenS - r.writingS],
      ['reboot + first boot to SSH', r.sshS - r.writtenS],
    ];
    return `  ${r.firmware}: ${parts.map(([name, s]) => `${name} ${f(s)} s (${f((100 * s) / total, 0)} %)`).join(', ')}`;
  }),
  '',
  `image: ${rows[0]?.imageBytes ?? 'n/a'} bytes raw`,
];
const text = `${lines.join('\n')}\n`;
process.stdout.write(text);
if (outFile !== undefined) writeFileSync(outFile, text);
process.exit(result.status ?? 1);
