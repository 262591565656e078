// Netboot figures: runs the vm-tier netboot test's install cases (a BIOS and a UEFI install from
// `kib netboot`, then four BIOS VMs at once) with KIB_NETBOOT_BENCH_OUT set, then prints what they
// measured. Under the bench, stage2 first measures each disk's raw streaming speed (zeros of the
// image's length written with O_DIRECT and read back, on a fully preallocated disk) so the install
// can be put against it. TCG figures; run it on a quiet machine (and, where VMs are shared, under
// the same lock as the vm tier).
//
//   node bench/netboot-bench.mjs [--out bench/results/netboot-DATE.txt] [--all-cases]
//
// --all-cases runs every case of the file (the refusals and the corrupted image too), so one run
// both checks the netboot tier and measures it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const outIndex = process.argv.indexOf('--out');
const outFile = outIndex > 0 ? process.argv[outIndex + 1] : undefined;
const json = path.join(mkdtempSync(path.join(tmpdir(), 'kib-netboot-bench-')), 'figures.json');
const started = Date.now();
const filter = process.argv.includes('--all-cases') ? [] : ['-t', 'BIOS VM with a blank disk|UEFI VM installs|four VMs netbooting at once'];
const result = spawnSync('npx', ['vitest', 'run', '--project', 'vm', 'test/vm/netboot.test.ts', ...filter], {
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
const f = (value, digits = 1) => (value === null || value === undefined || Number.isNaN(value) ? 'n/a' : Number(value).toFixed(digits));
const single = rows.filter((r) => r.concurrent === undefined);
const fleet = rows.filter((r) => r.concurrent !== undefined);
const mb = (bytes, seconds) => (seconds ? bytes / 1e6 / seconds : null);
const lines = [
  `kib netboot bench, ${new Date().toISOString()} (TCG, 1 vCPU per VM; vitest exit ${result.status}; ${f((Date.now() - started) / 60000)} min in all)`,
  '',
  'Single installs. Marks are from QEMU start; "→ writing" includes the disk speed measurement, which',
  'only the bench runs (its time is given apart and taken out of the phase shares below).',
  '',
  '| firmware | QEMU start → stage2 /init | → writing | disk measurement | → written (verified) | → SSH | → joined | write MB/s | read-back verify MB/s |',
  '|---|---|---|---|---|---|---|---|---|',
  ...single.map((r) => `| ${r.firmware} | ${f(r.stage2RunningS)} s | ${f(r.writingS)} s | ${f(r.streamMeasureS)} s | ${f(r.writtenS)} s | ${f(r.sshS)} s | ${f(r.joinedS)} s | ${f(r.writeMBps)} | ${f(r.verifyMBps)} |`),
  '',
  'Image write + read-back verify as a share of the disk\'s streaming speed in the same VM',
  '(raw: zeros of the image\'s length, dd bs=4M oflag=direct, then read back iflag=direct; install:',
  'wget | zstd -dc | dd bs=4M oflag=direct, then dd iflag=direct | sha256sum; target ≥ 0.8):',
  ...single.map((r) => {
    const d = r.diskSpeed;
    if (d === null || d === undefined) return `  ${r.firmware}: not measured`;
    return `  ${r.firmware}: raw write ${f(mb(d.bytes, d.writeSeconds))} MB/s, raw read ${f(mb(d.bytes, d.readSeconds))} MB/s, raw write+read ${f(d.writeSeconds + d.readSeconds)} s; install write ${f(r.writeSeconds)} s + verify ${f(r.verifySeconds)} s = ${f(r.writeSeconds + r.verifySeconds)} s → share ${f(r.installShareOfStreaming, 2)}`;
  }),
  '',
  'Phase shares of power-on → SSH (without the bench-only disk measurement):',
  ...single.map((r) => {
    const measure = r.streamMeasureS ?? 0;
    const total = r.sshS - measure;
    const parts = [
      ['firmware + iPXE + stage2 start', r.stage2RunningS ?? 0],
      ['DHCP + instructions', r.writingS - measure - (r.stage2RunningS ?? 0)],
      ['write + verify + CIDATA', r.writtenS - r.writingS],
      ['reboot + first boot to SSH', r.sshS - r.writtenS],
    ];
    return `  ${r.firmware}: ${f(total)} s: ${parts.map(([name, s]) => `${name} ${f(s)} s (${f((100 * s) / total, 0)} %)`).join(', ')}`;
  }),
  '',
  ...(fleet.length === 0
    ? ['Four VMs at once: no figures (the case did not finish).']
    : fleet.flatMap((r) => [
        `${r.concurrent} VMs netbooting at once from one server (BIOS, 768 MiB each): all written and verified.`,
        `  QEMU start → all written ${f(r.powerOnToAllWrittenS)} s; first "writing" → last "written" ${f(r.firstWritingToLastWrittenS)} s;`,
        `  aggregate ${f(r.aggregateMBps)} MB/s of image installed (each byte written and read back);`,
        `  per VM write / verify s: ${r.perVm.map((v) => `${v.name} ${f(v.writeSeconds)} / ${f(v.verifySeconds)}`).join(', ')}`,
      ])),
  '',
  `image: ${rows[0]?.imageBytes ?? 'n/a'} bytes raw`,
];
const text = `${lines.join('\n')}\n`;
process.stdout.write(text);
if (outFile !== undefined) writeFileSync(outFile, text);
process.exit(result.status ?? 1);
