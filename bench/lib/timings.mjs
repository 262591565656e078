/**
 * Turns what the two builds leave behind into comparable phase timings, and renders the table.
 * Pure functions over text and plain data, so they can be checked against recorded output
 * (bench/lib/timings.test.mjs) without running a VM.
 */

/** The rows of the comparison, in the order a build goes through them. */
export const ROWS = /** @type {const} */ ([
  ['prepare', 'prepare'],
  ['bootToSsh', 'boot→ssh'],
  ['cloudInit', 'cloud-init wait'],
  ['playbook', 'playbook'],
  ['seal', 'seal+power-off'],
  ['export', 'export'],
  ['other', 'other'],
  ['total', 'total (wall)'],
]);

// ---------------------------------------------------------------------------------------------
// kib

/**
 * Finds an object with the provision step timings (boot, cloudInit, playbook, seal) anywhere in
 * `value`: `kib build --json` and manifest.json have carried them under different keys while the
 * CLI took shape, and the benchmark should not care which.
 * @returns {{boot: number, cloudInit: number, playbook: number, seal: number} | undefined}
 */
export function findProvisionSteps(value, depth = 0) {
  if (value === null || typeof value !== 'object' || depth > 6) return undefined;
  const v = /** @type {Record<string, unknown>} */ (value);
  if (['boot', 'cloudInit', 'playbook', 'seal'].every((k) => typeof v[k] === 'number')) {
    return { boot: /** @type {number} */ (v.boot), cloudInit: /** @type {number} */ (v.cloudInit), playbook: /** @type {number} */ (v.playbook), seal: /** @type {number} */ (v.seal) };
  }
  for (const child of Object.values(v)) {
    const found = findProvisionSteps(child, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** json-lines text (`--log-format json`, events.jsonl) → events; lines that are not JSON are skipped. */
export function parseJsonLines(text) {
  const events = [];
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed.startsWith('{')) continue;
    try {
      events.push(JSON.parse(trimmed));
    } catch {
      // A torn last line of a killed run; the rest is still worth reading.
    }
  }
  return events;
}

/**
 * Step timings from the json-lines events alone (the fallback when neither stdout nor the
 * manifest has them): the provision phase's `step` messages mark where each step begins.
 */
export function provisionStepsFromEvents(events) {
  const at = (predicate) => {
    const event = events.find(predicate);
    return event === undefined || typeof event.time !== 'string' ? undefined : Date.parse(event.time);
  };
  const step = (re) => at((e) => e.type === 'step' && e.phase === 'provision' && re.test(String(e.message)));
  const booting = step(/^booting the build VM/);
  const cloudInit = step(/^waiting for cloud-init/);
  const playbook = step(/^running .*tasks/) ?? at((e) => e.type === 'log' && e.source === 'ansible');
  const seal = step(/^removing the build user/);
  const end = at((e) => e.type === 'phase-end' && e.phase === 'provision');
  if ([booting, cloudInit, playbook, seal, end].some((t) => t === undefined)) return undefined;
  return { boot: cloudInit - booting, cloudInit: playbook - cloudInit, playbook: seal - playbook, seal: end - seal };
}

/** Phase durations from `phase-end` events. */
export function phasesFromEvents(events) {
  /** @type {Record<string, number>} */
  const phases = {};
  for (const e of events) if (e.type === 'phase-end' && typeof e.durationMs === 'number') phases[e.phase] = e.durationMs;
  return phases;
}

/**
 * kib's rows. `result` is the `kib build --json` object (or undefined), `events` the json-lines
 * events, `manifest` the parsed manifest.json (or undefined), `wallMs` the process's wall time.
 */
export function kibRows({ result, events, manifest, wallMs }) {
  const phases = { ...phasesFromEvents(events), ...(result?.phasesMs ?? {}) };
  const steps = findProvisionSteps(result) ?? findProvisionSteps(manifest?.build) ?? provisionStepsFromEvents(events);
  const notes = [];
  const need = (name) => {
    const value = phases[name];
    if (typeof value !== 'number') notes.push(`kib reported no '${name}' phase time`);
    return typeof value === 'number' ? value : undefined;
  };
  const preflight = need('preflight');
  const base = need('base');
  const provision = need('provision');
  const exp = need('export');
  /** @type {Record<string, number | undefined>} */
  const rows = { total: wallMs };
  if (preflight !== undefined && base !== undefined && provision !== undefined) {
    if (steps === undefined) {
      notes.push('kib reported no provision step times: provision is shown whole under playbook');
      rows.prepare = preflight + base;
      rows.playbook = provision;
    } else {
      const inside = steps.boot + steps.cloudInit + steps.playbook + steps.seal;
      // Overlay, key pair and seed ISO are made inside the provision phase before the VM starts.
      rows.prepare = preflight + base + Math.max(0, provision - inside);
      rows.bootToSsh = steps.boot;
      rows.cloudInit = steps.cloudInit;
      rows.playbook = steps.playbook;
      rows.seal = steps.seal;
    }
  }
  rows.export = exp;
  rows.other = otherOf(rows);
  return { rows, notes, steps, phases };
}

// ---------------------------------------------------------------------------------------------
// Packer

/**
 * One line of `packer build -machine-readable`: `timestamp,target,type,data...`, where commas in
 * data are written as `%!(PACKER_COMMA)` and newlines as `\n`.
 */
export function parseMachineReadableLine(line) {
  const parts = line.split(',');
  if (parts.length < 3 || !/^\d+$/.test(parts[0] ?? '')) return undefined;
  const unescape = (s) => s.replaceAll('%!(PACKER_COMMA)', ',').replaceAll('\\n', '\n').replaceAll('\\r', '\r');
  return { timestamp: Number(parts[0]), target: parts[1] ?? '', type: parts[2] ?? '', data: parts.slice(3).map(unescape) };
}

/** Messages Packer 1.6.6 prints at each step boundary of a QEMU + Ansible build. */
export const PACKER_MARKS = /** @type {const} */ ({
  retrieve: /==> \S+: Retrieving ISO/,
  copy: /==> \S+: Copying hard drive/,
  resize: /==> \S+: Resizing hard drive/,
  startVm: /==> \S+: Starting VM/,
  waitSsh: /==> \S+: Waiting for SSH to become available/,
  connected: /==> \S+: Connected to SSH!/,
  provision: /==> \S+: Provisioning with Ansible/,
  halt: /==> \S+: Gracefully halting virtual machine/,
  convert: /==> \S+: Converting hard drive/,
  finished: /Build '[^']+' finished/,
});

/**
 * Packer's step boundaries. `lines` are machine-readable lines, each with `ms`: when the benchmark
 * read it, relative to starting packer (Packer's own timestamps have one-second resolution).
 * @param {{ms: number, line: string}[]} lines
 */
export function packerMarks(lines) {
  /** @type {Record<string, number>} */
  const marks = {};
  let artifact;
  let errored = false;
  for (const { ms, line } of lines) {
    const parsed = parseMachineReadableLine(line);
    if (parsed === undefined) continue;
    const text = parsed.data.join(',');
    if (parsed.type === 'ui') {
      for (const [name, re] of Object.entries(PACKER_MARKS)) if (marks[name] === undefined && re.test(text)) marks[name] = ms;
      if (parsed.data[0] === 'error') errored = true;
    } else if (parsed.type === 'artifact' && parsed.data[1] === 'file') {
      // `artifact,0,file,0,<path>`
      artifact = parsed.data[3];
    } else if (parsed.type === 'artifact' && parsed.data[1] === 'end') {
      marks.artifact ??= ms;
    } else if (parsed.type === 'error-count' && Number(parsed.data[0]) > 0) {
      errored = true;
    }
  }
  return { marks, artifact, errored };
}

/**
 * Packer's rows. `prepMs` is what the benchmark did for Packer before starting it (key pair and
 * seed ISO: kib does both inside its own run), `wallMs` Packer's wall time.
 */
export function packerRows({ lines, prepMs, wallMs }) {
  const { marks, errored } = packerMarks(lines);
  const notes = [];
  const span = (from, to, label) => {
    const a = marks[from];
    const b = to === 'exit' ? wallMs : marks[to];
    if (a === undefined || b === undefined) {
      notes.push(`packer: no '${label}' time (markers ${from} → ${to} not both seen)`);
      return undefined;
    }
    return b - a;
  };
  /** @type {Record<string, number | undefined>} */
  const rows = {
    prepare: marks.startVm === undefined ? undefined : prepMs + marks.startVm,
    bootToSsh: span('startVm', 'connected', 'boot→ssh'),
    cloudInit: undefined,
    playbook: span('provision', 'halt', 'playbook'),
    seal: span('halt', 'convert', 'seal+power-off'),
    export: span('convert', marks.finished !== undefined ? 'finished' : 'exit', 'export'),
    total: wallMs + prepMs,
  };
  rows.other = otherOf(rows);
  return { rows, notes, marks, errored };
}

/**
 * How often Packer's SSH wait ran into its fixed 60 s handshake timeout (raw PACKER_LOG text).
 * QEMU's user network accepts the TCP connection before the guest listens, so an attempt made
 * while the guest boots hangs until that timeout; the count explains Packer's boot→ssh time.
 */
export function countSshHandshakeTimeouts(packerLogText) {
  return packerLogText.split('\n').filter((line) => line.includes('SSH handshake err: Timeout during SSH handshake')).length;
}

/** What the named rows do not cover: process start-up, SSH handshakes between steps, exit. */
function otherOf(rows) {
  if (rows.total === undefined) return undefined;
  const parts = ['prepare', 'bootToSsh', 'cloudInit', 'playbook', 'seal', 'export'].map((k) => rows[k]).filter((v) => v !== undefined);
  return Math.max(0, rows.total - parts.reduce((a, b) => a + b, 0));
}

// ---------------------------------------------------------------------------------------------
// Rendering

export function formatSeconds(ms) {
  if (ms === undefined) return '—';
  return `${(ms / 1000).toFixed(1)} s`;
}

export function formatRatio(a, b) {
  // Below a second (the "other" row, mostly) a ratio says more about timer noise than about the tools.
  if (a === undefined || b === undefined || b < 1000) return '—';
  return (a / b).toFixed(2);
}

/** The comparison table, one row per phase, as fixed-width text. */
export function renderTable(kib, packer) {
  const header = ['phase', 'kib', 'packer', 'kib/packer'];
  const body = ROWS.map(([key, label]) => [label, formatSeconds(kib?.[key]), formatSeconds(packer?.[key]), formatRatio(kib?.[key], packer?.[key])]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)) + 3);
  const render = (cells) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('').trimEnd();
  return [render(header), ...body.map(render)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Incremental builds

/** The median of the numbers given (undefined for none). */
export function median(values) {
  const sorted = values.filter((v) => typeof v === 'number').sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Which stages a build ran and which came from the layer store, from its stage-start events: `os:hit runtime:run …`. */
export function stagesFromEvents(events) {
  return events.filter((e) => e.type === 'stage-start').map((e) => `${e.stage}:${e.hit ? 'hit' : 'run'}`).join(' ');
}

/**
 * The table of issue 9: each case's measured figure next to its target. `runs` holds wall times
 * (ms) per case; ratios are medians over cold.
 * @param {{ coldKibMs?: number, coldPackerMs?: number, late: number[], k8sBump: number[], noop: number[], layerStoreBytes?: number, artifactBytes?: number, rebuilds: number }} input
 */
export function renderRebuildTable(input) {
  const cold = input.coldKibMs;
  const ratio = (ms) => (ms === undefined || cold === undefined ? '—' : (ms / cold).toFixed(2));
  const runs = (list) => (list.length === 0 ? 'not run' : `median of ${list.length}: ${formatSeconds(median(list))}`);
  const rows = [
    ['cold build, kib / Packer', '≤ 0.8', cold === undefined || input.coldPackerMs === undefined ? '—' : (cold / input.coldPackerMs).toFixed(2), cold === undefined ? '' : `kib ${formatSeconds(cold)}, Packer ${formatSeconds(input.coldPackerMs)}`],
    ['cold offline Debian build (kib)', '≤ 300 s', formatSeconds(cold), ''],
    ['rebuild, last stage changed / cold', '≤ 0.2', ratio(median(input.late)), runs(input.late)],
    ['rebuild, Kubernetes patch bump / cold', '≤ 0.5', ratio(median(input.k8sBump)), runs(input.k8sBump)],
    ['rebuild, nothing changed', '≤ 3 s', formatSeconds(median(input.noop)), runs(input.noop)],
    [
      `layer store after ${input.rebuilds} rebuilds / artifact`,
      'reported',
      input.layerStoreBytes === undefined || input.artifactBytes === undefined ? '—' : (input.layerStoreBytes / input.artifactBytes).toFixed(2),
      input.layerStoreBytes === undefined ? '' : `${(input.layerStoreBytes / 1024 ** 2).toFixed(0)} MiB / ${((input.artifactBytes ?? 0) / 1024 ** 2).toFixed(0)} MiB`,
    ],
  ];
  const header = ['case', 'target', 'measured', 'detail'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)) + 3);
  const render = (cells) => cells.map((c, i) => (i === cells.length - 1 ? c : String(c).padEnd(widths[i]))).join('').trimEnd();
  return [render(header), ...rows.map(render)].join('\n');
}
