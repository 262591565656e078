// Checks of the timing parsers against output shaped like the real tools' (node --test bench/).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countSshHandshakeTimeouts, kibRows, packerMarks, packerRows, parseJsonLines, parseMachineReadableLine, provisionStepsFromEvents, renderTable } from './timings.mjs';

// Packer 1.6.6's -machine-readable output of a smoke run (bench/packer/smoke-playbook.yml), with the
// milliseconds at which the bench read each line; log lines of the provisioner are left out.
const PACKER_LINES = [
  [1240, "1795266118,,ui,say,==> qemu: Retrieving ISO"],
  [2480, "1795266120,,ui,say,==> qemu: Resizing hard drive..."],
  [2527, "1795266120,,ui,say,==> qemu: Found port for communicator (SSH%!(PACKER_COMMA) WinRM%!(PACKER_COMMA) etc): 3980."],
  [2527, "1795266120,,ui,say,==> qemu: Looking for available port between 5900 and 6000 on 127.0.0.1"],
  [2588, "1795266120,,ui,say,==> qemu: Starting VM%!(PACKER_COMMA) booting disk image"],
  [2589, "1795266120,,ui,say,==> qemu: Overriding default Qemu arguments with qemuargs template option..."],
  [4592, "1795266122,,ui,say,==> qemu: Waiting 10s for boot..."],
  [14600, "1795266132,,ui,say,==> qemu: Connecting to VM via VNC (127.0.0.1:5938)"],
  [14600, "1795266132,,ui,say,==> qemu: Typing the boot command over VNC..."],
  [14600, "1795266132,,ui,say,==> qemu: Using ssh communicator to connect: 127.0.0.1"],
  [14601, "1795266132,,ui,say,==> qemu: Waiting for SSH to become available..."],
  [98999, "1795266216,,ui,say,==> qemu: Connected to SSH!"],
  [99003, "1795266216,,ui,say,==> qemu: Provisioning with Ansible..."],
  [140813, "1795266258,,ui,say,==> qemu: Gracefully halting virtual machine..."],
  [188691, "1795266306,,ui,say,==> qemu: Converting hard drive..."],
  [207926, "1795266325,,ui,say,Build 'qemu' finished after 3 minutes 26 seconds."],
  [207926, "1795266325,,ui,say,\\n==> Wait completed after 3 minutes 26 seconds"],
  [207926, "1795266325,,ui,say,\\n==> Builds finished. The artifacts of successful builds are:"],
  [207926, "1795266325,qemu,artifact-count,1"],
  [207927, "1795266325,qemu,artifact,0,builder-id,transcend.qemu"],
  [207928, "1795266325,qemu,artifact,0,id,VM"],
  [207928, "1795266325,qemu,artifact,0,string,VM files in directory: /tmp/kib-bench-gMinIp/packer/output"],
  [207928, "1795266325,qemu,artifact,0,files-count,1"],
  [207928, "1795266325,qemu,artifact,0,file,0,/tmp/kib-bench-gMinIp/packer/output/debian-12.qcow2"],
  [207928, "1795266325,qemu,artifact,0,end"],
  [207928, "1795266325,,ui,say,--> qemu: VM files in directory: /tmp/kib-bench-gMinIp/packer/output"],
].map(([ms, line]) => ({ ms, line }));

test('machine-readable lines: commas and newlines are unescaped', () => {
  const parsed = parseMachineReadableLine('1795264439,,ui,say,==> qemu: Starting VM%!(PACKER_COMMA) booting disk image\\nmore');
  assert.deepEqual(parsed, { timestamp: 1795264439, target: '', type: 'ui', data: ['say', '==> qemu: Starting VM, booting disk image\nmore'] });
  assert.equal(parseMachineReadableLine('2026/11/21 12:33:33 not machine readable'), undefined);
});

test('packer marks and rows come from the step messages', () => {
  const { marks, artifact, errored } = packerMarks(PACKER_LINES);
  assert.equal(marks.startVm, 2588);
  assert.equal(marks.connected, 98_999);
  assert.equal(artifact, '/tmp/kib-bench-gMinIp/packer/output/debian-12.qcow2');
  assert.equal(errored, false);

  const { rows, notes } = packerRows({ lines: PACKER_LINES, prepMs: 100, wallMs: 207_950 });
  assert.deepEqual(notes, []);
  assert.equal(rows.prepare, 2688);
  assert.equal(rows.bootToSsh, 98_999 - 2588);
  assert.equal(rows.cloudInit, undefined);
  assert.equal(rows.playbook, 140_813 - 99_003);
  assert.equal(rows.seal, 188_691 - 140_813);
  assert.equal(rows.export, 207_926 - 188_691);
  assert.equal(rows.total, 208_050);
  // The hand-over from SSH to Ansible and Packer's exit are all that is left.
  assert.equal(rows.other, 208_050 - (2688 + (98_999 - 2588) + (140_813 - 99_003) + (188_691 - 140_813) + (207_926 - 188_691)));
});

test('a failed packer build is recognised and missing steps are named', () => {
  const lines = [
    { ms: 5, line: '1795264439,,ui,say,==> qemu: Starting VM%!(PACKER_COMMA) booting disk image' },
    { ms: 9, line: "1795264472,,ui,error,Build 'qemu' errored after 32 seconds: Build was cancelled." },
  ];
  const { rows, notes, errored } = packerRows({ lines, prepMs: 0, wallMs: 10 });
  assert.equal(errored, true);
  assert.equal(rows.bootToSsh, undefined);
  assert.ok(notes.some((n) => n.includes('boot→ssh')));
});

const t = (s) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
const KIB_EVENTS = [
  { time: t(0), type: 'phase-start', phase: 'preflight', title: 'checking' },
  { time: t(1), type: 'phase-end', phase: 'preflight', durationMs: 1000, ok: true },
  { time: t(1), type: 'phase-end', phase: 'base', durationMs: 2000, ok: true },
  { time: t(3), type: 'phase-start', phase: 'provision', title: 'provisioning' },
  { time: t(4), type: 'step', phase: 'provision', message: 'booting the build VM (tcg, 2 vCPU, 2048 MiB, bios)' },
  { time: t(44), type: 'step', phase: 'provision', message: 'waiting for cloud-init to finish' },
  { time: t(50), type: 'step', phase: 'provision', message: 'running /x/playbook/site.yml (40 tasks; log: /l/ansible.log)' },
  { time: t(250), type: 'step', phase: 'provision', message: 'removing the build user, trimming free space and powering off' },
  { time: t(270), type: 'phase-end', phase: 'provision', durationMs: 267_000, ok: true },
  { time: t(290), type: 'phase-end', phase: 'export', durationMs: 20_000, ok: true },
];

test('kib step times fall back to the step events', () => {
  const text = `not json\n${KIB_EVENTS.map((e) => JSON.stringify(e)).join('\n')}\n{"torn`;
  const events = parseJsonLines(text);
  assert.equal(events.length, KIB_EVENTS.length);
  assert.deepEqual(provisionStepsFromEvents(events), { boot: 40_000, cloudInit: 6000, playbook: 200_000, seal: 20_000 });
});

test('kib rows prefer the step times kib reports itself', () => {
  const result = { phasesMs: { preflight: 1000, base: 2000, provision: 267_000, export: 20_000 }, provision: { boot: 39_000, cloudInit: 7000, playbook: 200_000, seal: 20_000 } };
  const { rows, notes } = kibRows({ result, events: KIB_EVENTS, manifest: undefined, wallMs: 291_000 });
  assert.deepEqual(notes, []);
  assert.equal(rows.prepare, 1000 + 2000 + (267_000 - 266_000));
  assert.equal(rows.bootToSsh, 39_000);
  assert.equal(rows.export, 20_000);
  assert.equal(rows.other, 291_000 - (4000 + 39_000 + 7000 + 200_000 + 20_000 + 20_000));
});

test('kib rows without step times show provision whole and say so', () => {
  const { rows, notes } = kibRows({ result: { phasesMs: { preflight: 1, base: 2, provision: 300, export: 4 } }, events: [], manifest: undefined, wallMs: 400 });
  assert.equal(rows.playbook, 300);
  assert.equal(rows.bootToSsh, undefined);
  assert.ok(notes.some((n) => n.includes('no provision step times')));
});

test('the table shows ratios and dashes', () => {
  const table = renderTable({ bootToSsh: 40_000, total: 100_000 }, { bootToSsh: 50_000, total: 200_000 });
  const lines = table.split('\n');
  assert.match(lines[0] ?? '', /^phase\s+kib\s+packer\s+kib\/packer$/);
  assert.match(table, /boot→ssh\s+40\.0 s\s+50\.0 s\s+0\.80/);
  assert.match(table, /cloud-init wait\s+—\s+—\s+—/);
  assert.match(table, /total \(wall\)\s+100\.0 s\s+200\.0 s\s+0\.50/);
  assert.match(renderTable({ other: 800 }, { other: 40 }), /other\s+0\.8 s\s+0\.0 s\s+—/);
});

test('handshake timeouts are counted from the raw Packer log', () => {
  const log = [
    '2026/11/21 12:56:37 packer-builder-qemu plugin: [DEBUG] handshaking with SSH',
    '2026/11/21 12:57:37 packer-builder-qemu plugin: [DEBUG] SSH handshake err: Timeout during SSH handshake',
    '2026/11/21 12:58:03 packer-builder-qemu plugin: [DEBUG] SSH handshake err: ssh: handshake failed: read tcp 127.0.0.1:44188->127.0.0.1:3123: read: connection reset by peer',
  ].join('\n');
  assert.equal(countSshHandshakeTimeouts(log), 1);
});

test('median, stage summaries and the rebuild table', async () => {
  const { median, renderRebuildTable, stagesFromEvents } = await import('./timings.mjs');
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1]), 2.5);
  assert.equal(median([]), undefined);
  assert.equal(
    stagesFromEvents([
      { type: 'stage-start', stage: 'os', key: 'a', hit: true },
      { type: 'stage-end', stage: 'os', durationMs: 0, layer: 'a' },
      { type: 'stage-start', stage: 'finalize', key: 'b', hit: false },
    ]),
    'os:hit finalize:run',
  );
  const table = renderRebuildTable({ coldKibMs: 400_000, coldPackerMs: 500_000, late: [80_000, 60_000], k8sBump: [], noop: [2000, 2400], layerStoreBytes: 900 * 1024 ** 2, artifactBytes: 300 * 1024 ** 2, rebuilds: 5 });
  assert.match(table, /cold build, kib \/ Packer\s+≤ 0\.8\s+0\.80/);
  assert.match(table, /last stage changed \/ cold\s+≤ 0\.2\s+0\.17\s+median of 2: 70\.0 s/);
  assert.match(table, /Kubernetes patch bump \/ cold\s+≤ 0\.5\s+—\s+not run/);
  assert.match(table, /nothing changed\s+≤ 3 s\s+2\.2 s/);
  assert.match(table, /after 5 rebuilds \/ artifact\s+reported\s+3\.00\s+900 MiB \/ 300 MiB/);
});
