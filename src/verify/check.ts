import type { ExpectedImage } from './expected.js';
import { parseModulesLoad, parseServiceState, SERVICE_ENABLED_STATES, type ServiceState } from './parse.js';

export type CheckGroup =
  | 'packages'
  | 'services'
  | 'kernel'
  | 'kubernetes'
  | 'runtime'
  | 'images'
  | 'guest-agent'
  | 'cloud-init'
  | 'network'
  | 'provenance'
  | 'hygiene'
  | 'disk';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * How checks reach a booted artifact. The CLI builds it from the VM and SSH layers.
 * `ssh` runs a POSIX shell command line **as root** (log in as root, or wrap with `asRoot`);
 * a non-zero exit is a result, not an error. `agent` sends one guest-agent command and resolves
 * with its `return` value, or throws with the agent's error.
 */
export interface CheckContext {
  ssh(command: string, opts?: { timeoutMs?: number }): Promise<CommandResult>;
  agent(execute: string, args?: Record<string, unknown>): Promise<unknown>;
  expected: ExpectedImage;
  /** The user SSH logged in as, for checks that ask the agent about that user's keys. */
  sshUser?: string;
}

/** `skip` is for facts only known at run time (no SSH user given); static reasons use appliesTo. */
export type CheckOutcome = { ok: boolean; detail: string } | { skip: string };

export interface CheckOf<C> {
  /** `<group>/<name>`, stable: tests and CI logs refer to it. */
  id: string;
  title: string;
  group: CheckGroup;
  /** Returns a reason to skip for images this check does not apply to. */
  appliesTo?: (expected: ExpectedImage) => string | undefined;
  run(ctx: C): Promise<CheckOutcome>;
}

export type Check = CheckOf<CheckContext>;

export type CheckStatus = 'pass' | 'fail' | 'skip';

export interface CheckResult {
  id: string;
  title: string;
  group: CheckGroup;
  status: CheckStatus;
  detail: string;
  durationMs: number;
}

/** A value fixed in the list, or computed from what the image is supposed to be. */
export type PerImage<T> = T | ((expected: ExpectedImage) => T);

export function resolve<T>(value: PerImage<T>, expected: ExpectedImage): T {
  return typeof value === 'function' ? (value as (e: ExpectedImage) => T)(expected) : value;
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Wraps a command line so a passwordless-sudo login user runs it as root. */
export function asRoot(command: string): string {
  return `sudo -n sh -c ${shellQuote(command)}`;
}

export const skipUnlessKubernetes = (e: ExpectedImage): string | undefined =>
  e.kubernetesInstalled ? undefined : `Kubernetes packages are not in this image: ${e.kubernetesSkippedReason ?? 'no reason recorded'}`;

/** containerd and runc sit behind the same package-source gate as the Kubernetes packages. */
export const skipUnlessRuntime = (e: ExpectedImage): string | undefined =>
  e.kubernetesInstalled
    ? undefined
    : `containerd and runc are installed only together with the Kubernetes packages (one package-source gate), which are not in this image: ${e.kubernetesSkippedReason ?? 'no reason recorded'}`;

export const onlyRedhat = (e: ExpectedImage): string | undefined =>
  e.osFamily === 'redhat' ? undefined : `does not apply to the ${e.osFamily} family`;

export interface CommandExpectation {
  /** Exit code the command must return (default 0). */
  exitCode?: number;
  /** First line of stdout, trimmed, must equal this. */
  equals?: PerImage<string>;
  /** stdout must match this. */
  stdout?: PerImage<RegExp>;
}

export interface CommandCheckSpec {
  id: string;
  title: string;
  appliesTo?: (expected: ExpectedImage) => string | undefined;
  command: PerImage<string>;
  timeoutMs?: number;
  /** Either a declarative expectation … */
  expect?: CommandExpectation;
  /** … or an interpretation of the whole result, for outputs that need parsing. */
  interpret?: (result: CommandResult, expected: ExpectedImage) => CheckOutcome;
}

/** A check that runs one command and judges its result. */
export function commandCheck(spec: CommandCheckSpec): Check {
  const check: Check = {
    id: spec.id,
    title: spec.title,
    group: groupOf(spec.id),
    async run(ctx) {
      const command = resolve(spec.command, ctx.expected);
      const result = await ctx.ssh(command, spec.timeoutMs === undefined ? undefined : { timeoutMs: spec.timeoutMs });
      if (spec.interpret !== undefined) return spec.interpret(result, ctx.expected);
      return judge(result, spec.expect ?? {}, ctx.expected);
    },
  };
  if (spec.appliesTo !== undefined) check.appliesTo = spec.appliesTo;
  return check;
}

function judge(result: CommandResult, expect: CommandExpectation, expected: ExpectedImage): CheckOutcome {
  const wantExit = expect.exitCode ?? 0;
  const firstLine = (result.stdout.trim().split('\n')[0] ?? '').trim();
  if (result.exitCode !== wantExit) {
    return { ok: false, detail: `exit code ${result.exitCode}, expected ${wantExit}${failureText(result)}` };
  }
  if (expect.equals !== undefined) {
    const want = resolve(expect.equals, expected);
    if (firstLine !== want) return { ok: false, detail: `got ${JSON.stringify(firstLine)}, expected ${JSON.stringify(want)}` };
  }
  if (expect.stdout !== undefined) {
    const pattern = resolve(expect.stdout, expected);
    if (!pattern.test(result.stdout)) return { ok: false, detail: `output ${JSON.stringify(clip(result.stdout.trim()))} does not match ${String(pattern)}` };
  }
  return { ok: true, detail: clip(firstLine) };
}

/** The stderr (or stdout) tail of a failed command, for a detail line. */
export function failureText(result: CommandResult): string {
  const text = (result.stderr.trim() === '' ? result.stdout : result.stderr).trim();
  return text === '' ? '' : `: ${clip(text.split('\n').slice(-2).join(' | '))}`;
}

export function clip(text: string, max = 160): string {
  const oneLine = text.replace(/\s*\n\s*/g, ' | ');
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

export function groupOf(id: string): CheckGroup {
  return id.slice(0, id.indexOf('/')) as CheckGroup;
}

export interface ServiceExpectation {
  /** `inactive` means "not running": a kubelet waiting for kubeadm restarts in a loop (activating). */
  active?: 'active' | 'inactive';
  enabled?: 'enabled' | 'disabled';
}

/** A systemd unit's run state and boot enablement. */
export function serviceState(
  name: string,
  unit: PerImage<string>,
  want: PerImage<ServiceExpectation>,
  options: { appliesTo?: (expected: ExpectedImage) => string | undefined } = {},
): Check {
  return commandCheck({
    id: `services/${name}`,
    title: `${name} service state`,
    ...(options.appliesTo === undefined ? {} : { appliesTo: options.appliesTo }),
    command: (e) => `systemctl show --no-pager -p LoadState -p ActiveState -p SubState -p UnitFileState ${shellQuote(resolve(unit, e))}`,
    interpret: (result, e) => {
      if (result.exitCode !== 0) return { ok: false, detail: `systemctl failed${failureText(result)}` };
      return judgeService(parseServiceState(result.stdout), resolve(want, e), resolve(unit, e));
    },
  });
}

export function judgeService(state: ServiceState, want: ServiceExpectation, unit: string): CheckOutcome {
  const found = state.loadState !== 'not-found' && state.loadState !== '';
  const enabled = SERVICE_ENABLED_STATES.has(state.unitFileState);
  const described = found
    ? `${unit}: ${state.activeState}${state.subState === '' ? '' : ` (${state.subState})`}, ${state.unitFileState === '' ? 'no unit file state' : state.unitFileState}`
    : `${unit}: not installed`;
  const wantText = [want.active, want.enabled].filter((w) => w !== undefined).join(' and ');
  const problems: string[] = [];
  if (want.active === 'active' && state.activeState !== 'active') problems.push('not active');
  if (want.active === 'inactive' && state.activeState === 'active') problems.push('running');
  if (want.enabled === 'enabled' && !enabled) problems.push('not enabled');
  if (want.enabled === 'disabled' && enabled) problems.push('enabled');
  if (problems.length > 0) return { ok: false, detail: `${described}; expected ${wantText}` };
  return { ok: true, detail: described };
}

/** A kernel parameter's live value. */
export function sysctl(name: string, value: string): Check {
  return commandCheck({
    id: `kernel/sysctl-${name}`,
    title: `${name} = ${value}`,
    command: `sysctl -n ${shellQuote(name)}`,
    interpret: (result) => {
      if (result.exitCode !== 0) return { ok: false, detail: `cannot read ${name}${failureText(result)}` };
      const got = result.stdout.trim().replace(/\s+/g, ' ');
      return got === value ? { ok: true, detail: `${name} = ${got}` } : { ok: false, detail: `${name} = ${got}, expected ${value}` };
    },
  });
}

/** A kernel module is loaded now (or built into the kernel). */
export function moduleLoaded(name: string): Check {
  return commandCheck({
    id: `kernel/module-${name}-loaded`,
    title: `kernel module ${name} is loaded`,
    // /sys/module/<name> exists for loaded modules; a built-in one may only show in modules.builtin.
    command:
      `if [ -d /sys/module/${name} ]; then echo loaded; ` +
      `elif grep -q '/${name}\\.ko' "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null; then echo builtin; ` +
      `else echo missing; fi`,
    interpret: (result) => {
      const state = result.stdout.trim();
      return state === 'loaded' || state === 'builtin'
        ? { ok: true, detail: `${name}: ${state}` }
        : { ok: false, detail: `${name} is not loaded${failureText(result)}` };
    },
  });
}

/** A kernel module is named in /etc/modules-load.d, so it is loaded again after a reboot. */
export function modulePersisted(name: string): Check {
  return commandCheck({
    id: `kernel/module-${name}-persisted`,
    title: `kernel module ${name} is loaded at boot`,
    command: `for f in /etc/modules-load.d/*.conf; do [ -f "$f" ] && { echo "==> $f"; cat "$f"; echo; }; done; true`,
    interpret: (result) => {
      const files = parseModulesLoad(result.stdout);
      const file = files.find((f) => f.modules.includes(name));
      return file === undefined
        ? { ok: false, detail: `${name} is in no /etc/modules-load.d/*.conf (files: ${files.map((f) => f.path).join(', ') || 'none'})` }
        : { ok: true, detail: `${name} in ${file.path}` };
    },
  });
}

/** A package is installed (rpm or dpkg, by family), optionally at a version prefix. */
export function packageInstalled(
  name: string,
  options: { appliesTo?: (expected: ExpectedImage) => string | undefined; version?: (expected: ExpectedImage) => string } = {},
): Check {
  return commandCheck({
    id: `packages/${name}`,
    title: `package ${name} is installed`,
    ...(options.appliesTo === undefined ? {} : { appliesTo: options.appliesTo }),
    command: (e) =>
      e.osFamily === 'redhat'
        ? `rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' ${shellQuote(name)}`
        : `dpkg-query -W -f='\${Package} \${Version} \${db:Status-Abbrev}\\n' ${shellQuote(name)}`,
    interpret: (result, e) => {
      const line = result.stdout.trim().split('\n')[0] ?? '';
      const [pkg, version, status] = line.trim().split(/\s+/);
      const installed =
        result.exitCode === 0 && pkg === name && version !== undefined && (e.osFamily === 'redhat' || status === 'ii');
      if (!installed) return { ok: false, detail: `${name} is not installed${failureText(result)}` };
      if (options.version !== undefined) {
        const want = options.version(e);
        // 1.36.1 matches rpm 1.36.1-150500.1.1 and deb 1.36.1-1.1, not 1.36.10.
        if (version !== want && !version.startsWith(`${want}-`)) return { ok: false, detail: `${name} ${version}, expected ${want}` };
      }
      return { ok: true, detail: `${name} ${version}` };
    },
  });
}

/** Every named program is in root's PATH. */
export function programsPresent(id: string, title: string, programs: readonly string[]): Check {
  return commandCheck({
    id,
    title,
    command: `for p in ${programs.join(' ')}; do command -v "$p" >/dev/null 2>&1 || echo "missing $p"; done; true`,
    interpret: (result) => {
      const missing = result.stdout
        .split('\n')
        .map((line) => /^missing (\S+)$/.exec(line.trim())?.[1])
        .filter((name): name is string => name !== undefined);
      return missing.length === 0
        ? { ok: true, detail: programs.join(', ') }
        : { ok: false, detail: `not found in PATH: ${missing.join(', ')}` };
    },
  });
}

/**
 * One guest-agent command answers. `validate` looks at the returned value; without it any answer
 * that is not an error passes.
 */
export function agentCommand(
  name: string,
  validate?: (value: unknown, expected: ExpectedImage) => CheckOutcome,
  options: { args?: (ctx: CheckContext) => Record<string, unknown> | string } = {},
): Check {
  return {
    id: `guest-agent/${name}`,
    title: `guest agent answers ${name}`,
    group: 'guest-agent',
    async run(ctx) {
      const args = options.args?.(ctx);
      // A string instead of arguments is a reason to skip (an input the context lacks).
      if (typeof args === 'string') return { skip: args };
      let value: unknown;
      try {
        value = args === undefined ? await ctx.agent(name) : await ctx.agent(name, args);
      } catch (error) {
        return { ok: false, detail: `${name} failed: ${error instanceof Error ? error.message : String(error)}` };
      }
      if (validate === undefined) return { ok: true, detail: `${name} answered` };
      return validate(value, ctx.expected);
    },
  };
}
