import { readFile, writeFile } from 'node:fs/promises';
import { KibError, MissingToolError, TimeoutError } from '../core/errors.js';
import { findTool, isProcessRunning, spawnDaemon, type StartedDaemon } from '../process/index.js';
import { IP_BINARY, isValidInterfaceName, isValidNetnsName } from './args.js';
import { listNetns } from './private-network.js';

export const DNSMASQ_BINARY = 'dnsmasq';

export interface DnsmasqHost {
  mac: string;
  ip: string;
  /** Short host name; it resolves as NAME and NAME.<domain>. */
  name: string;
}

export interface DnsmasqConfigSpec {
  /** The bridge dnsmasq serves (inside the namespace), e.g. br0. */
  bridge: string;
  /** The bridge's own address (DNS server and router handed to the nodes). */
  bridgeIp: string;
  /** The network's address, e.g. 10.77.0.0 (the static range: only listed hosts get leases). */
  network: string;
  netmask: string;
  /** DNS domain answered locally and never forwarded, e.g. `demo.kib`. */
  domain: string;
  hosts: readonly DnsmasqHost[];
  leaseFile: string;
  pidFile: string;
  /** Hand the bridge out as the default router (kubelet picks its node IP from the default route). */
  router?: boolean;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const DOMAIN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

/**
 * dnsmasq's configuration for one cluster's bridge. DNS answers the cluster's domain and the
 * nodes' names only: `no-resolv` with no `server=` means nothing is forwarded anywhere. DHCP hands
 * out static, infinite leases to the listed MACs and nothing else (`static` range), as kubevirtci
 * does; `dhcp-authoritative` so a node that asks again after a restore is answered at once.
 * Pure: the exact text is unit-tested.
 */
export function renderDnsmasqConfig(spec: DnsmasqConfigSpec): string {
  const problems: string[] = [];
  if (!isValidInterfaceName(spec.bridge)) problems.push(`bridge ${JSON.stringify(spec.bridge)} is not an interface name`);
  for (const [what, ip] of [['bridgeIp', spec.bridgeIp], ['network', spec.network], ['netmask', spec.netmask]] as const) {
    if (!isIpv4(ip)) problems.push(`${what} ${JSON.stringify(ip)} is not an IPv4 address`);
  }
  if (!DOMAIN.test(spec.domain)) problems.push(`domain ${JSON.stringify(spec.domain)} is not a DNS domain`);
  for (const [path, what] of [[spec.leaseFile, 'leaseFile'], [spec.pidFile, 'pidFile']] as const) {
    if (!path.startsWith('/') || /[\s\n]/.test(path)) problems.push(`${what} must be an absolute path without whitespace`);
  }
  const seen = new Set<string>();
  for (const host of spec.hosts) {
    if (!MAC.test(host.mac)) problems.push(`host ${host.name}: MAC ${JSON.stringify(host.mac)} must be lower-case aa:bb:cc:dd:ee:ff`);
    if (!isIpv4(host.ip)) problems.push(`host ${host.name}: ${JSON.stringify(host.ip)} is not an IPv4 address`);
    if (!NAME.test(host.name)) problems.push(`host name ${JSON.stringify(host.name)} must be a DNS label`);
    for (const key of [host.mac, host.ip, host.name]) {
      if (seen.has(key)) problems.push(`${key} appears twice`);
      seen.add(key);
    }
  }
  if (problems.length > 0) throw new KibError('DNSMASQ_CONFIG_INVALID', `dnsmasq configuration: ${problems.join('; ')}`);

  return [
    '# Written by kib for one cluster; dnsmasq runs inside the cluster\'s network namespace.',
    `interface=${spec.bridge}`,
    'bind-interfaces',
    'no-resolv',
    'no-hosts',
    'no-poll',
    `local=/${spec.domain}/`,
    `domain=${spec.domain}`,
    'expand-hosts',
    `dhcp-range=${spec.network},static,${spec.netmask},infinite`,
    'dhcp-authoritative',
    `dhcp-leasefile=${spec.leaseFile}`,
    `pid-file=${spec.pidFile}`,
    'user=root',
    'log-dhcp',
    'log-queries',
    ...(spec.router === false ? ['dhcp-option=option:router'] : [`dhcp-option=option:router,${spec.bridgeIp}`]),
    `dhcp-option=option:dns-server,${spec.bridgeIp}`,
    ...spec.hosts.flatMap((host) => [`dhcp-host=${host.mac},${host.ip},${host.name},infinite`, `host-record=${host.name}.${spec.domain},${host.name},${host.ip}`]),
    '',
  ].join('\n');
}

function isIpv4(text: string): boolean {
  const match = IPV4.exec(text);
  return match !== null && match.slice(1).every((part) => Number(part) <= 255);
}

/** dnsmasq's argv (after `ip netns exec NS`): in the foreground, so the stop ladder owns it. Pure. */
export function dnsmasqArgs(configPath: string, logFile: string): string[] {
  return [DNSMASQ_BINARY, '--keep-in-foreground', `--conf-file=${configPath}`, `--log-facility=${logFile}`];
}

export interface StartDnsmasqSpec {
  /** A namespace kib created; dnsmasq is never started outside one. */
  netns: string;
  configPath: string;
  config: DnsmasqConfigSpec;
  logFile: string;
  timeoutMs?: number;
}

/**
 * Writes the config and runs dnsmasq inside the namespace (`ip netns exec NS dnsmasq …`, which
 * execs, so the pid and process group are dnsmasq's), then waits for its pidfile. Refuses a
 * namespace that does not exist: DHCP must never answer on the host's own network.
 */
export async function startDnsmasq(spec: StartDnsmasqSpec): Promise<StartedDaemon> {
  if (!isValidNetnsName(spec.netns) || !(await listNetns()).includes(spec.netns)) {
    throw new KibError('DNSMASQ_NO_NAMESPACE', `dnsmasq runs only inside a network namespace kib created; ${JSON.stringify(spec.netns)} does not exist`);
  }
  if (findTool(DNSMASQ_BINARY) === undefined) {
    throw new MissingToolError([{ command: DNSMASQ_BINARY, purpose: 'DHCP and DNS for a cluster\'s private network', packageName: 'dnsmasq-base' }]);
  }
  await writeFile(spec.configPath, renderDnsmasqConfig(spec.config));
  const daemon = spawnDaemon(IP_BINARY, ['netns', 'exec', spec.netns, ...dnsmasqArgs(spec.configPath, spec.logFile)], { stdoutFile: spec.logFile, stderrFile: spec.logFile });
  const timeoutMs = spec.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pid = Number((await readFile(spec.config.pidFile, 'utf8').catch(() => '')).trim());
    if (pid === daemon.pid) return daemon;
    if (!daemon.isRunning()) {
      const log = await readFile(spec.logFile, 'utf8').catch(() => '');
      throw new KibError('DNSMASQ_FAILED', `dnsmasq in ${spec.netns} exited at start: ${log.trim().split('\n').slice(-5).join(' | ')}`, { hint: `Its log is ${spec.logFile}.` });
    }
    if (Date.now() > deadline) {
      await daemon.stop({ termMs: 2_000 });
      throw new TimeoutError(`dnsmasq in ${spec.netns} writing its pidfile`, timeoutMs);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Stops a dnsmasq another process started, by its pidfile (it must still be a dnsmasq). */
export async function stopDnsmasqByPidFile(pidFile: string): Promise<boolean> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isProcessRunning(pid)) return false;
  const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
  if (comm.trim() !== 'dnsmasq') return false;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && isProcessRunning(pid); i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
  if (isProcessRunning(pid)) process.kill(pid, 'SIGKILL');
  return true;
}
