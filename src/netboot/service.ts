import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { CancelledError, KibError, MissingToolError } from '../core/errors.js';
import { findTool, lastLines, run, spawnDaemon, type StartedDaemon } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import type { JoinSpec } from './cloud-config.js';
import { dnsmasqArgs, IPXE_BIOS_FILE, IPXE_UEFI_FILE, renderDnsmasqConfig, renderDnsmasqHosts } from './dnsmasq-config.js';
import { parseGpt } from './gpt.js';
import { createNetbootHandler, machineTokenSource } from './http.js';
import { ensureServedImage, type ServedImage } from './image.js';
import type { BootstrapTokenSpec } from './kube.js';
import type { MachineEvent, MachineStatus } from './lifecycle.js';
import type { Machine } from './machines.js';
import { MachineRegistry, type SetChange } from './registry.js';
import { ensureStage2, type Stage2Files } from './stage2.js';

/**
 * `kib netboot`: dnsmasq (DHCP for known MACs, TFTP for iPXE) and an HTTP server (iPXE scripts,
 * stage2, the image, instructions, seeds, reports) on one interface. Every Machine's status lives
 * in `<state>/netboot/machines/<name>.json`, written atomically on every change, so a restarted
 * service still knows which Machines are installed and never offers them stage2 again.
 */

export interface NetbootSpec {
  interface: string;
  machines: readonly Machine[];
  /** A raw or qcow2 disk image. */
  imagePath: string;
  proxyDhcp: boolean;
  httpPort: number;
  cacheDir: string;
  stateDir: string;
  sshAuthorizedKeys: readonly string[];
  join?: Omit<JoinSpec, 'token'> & {
    /** The secret each Machine's token is derived from (with its name and install). */
    tokenSecret: string;
    /** Creates the token in the cluster being joined (the Kubernetes API); without it the operator does. */
    createToken?: (token: BootstrapTokenSpec) => Promise<void>;
    /** How long a created token lives (default 24 h, kubeadm's default). */
    tokenTtlMs?: number;
  };
  /** Ask stage2 to measure the disk's raw streaming speed before it writes (benchmarks; doubles the disk time). */
  measureDisk?: boolean;
  /** Where iPXE files come from (Debian's ipxe package). */
  ipxeDir?: string;
  /** Also write every status change here (the Kubernetes status subresource); failures are logged. */
  writeStatus?: (name: string, status: MachineStatus) => Promise<void>;
  /** Skip the check for another DHCP server (only where kib made the network itself). */
  skipDhcpProbe?: boolean;
}

export interface StatusChange {
  machine: string;
  status: MachineStatus;
  event: MachineEvent;
}

export interface StartedNetboot extends AsyncDisposable {
  readonly url: string;
  readonly serverAddress: string;
  readonly image: ServedImage;
  readonly stage2: Stage2Files;
  status(name: string): MachineStatus | undefined;
  /**
   * Replaces the Machines served (a watch event): new ones are served from the next request and
   * DHCP answer on, removed ones no longer are (their state files stay).
   */
  setMachines(machines: readonly Machine[]): Promise<SetChange>;
  /** Ends when dnsmasq exits on its own (an error) or the service is closed. */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

export interface NetbootOptions {
  signal?: AbortSignal;
  reporter?: Reporter;
  onStatus?: (change: StatusChange) => void;
}

const DEFAULT_IPXE_DIR = '/usr/lib/ipxe';

/** IPv4 address and prefix, and whether an IPv6 address exists (then router advertisements are sent). */
export async function interfaceAddresses(name: string, signal?: AbortSignal): Promise<{ address: string; prefix: number; ipv6: boolean }> {
  const result = await run('ip', ['-json', 'address', 'show', 'dev', name], { timeoutMs: 10_000, allowFailure: true, ...(signal === undefined ? {} : { signal }) });
  if (result.exitCode !== 0) throw new KibError('NETBOOT_INTERFACE', `interface ${name} does not exist: ${result.stderr.trim()}`);
  const [info] = JSON.parse(result.stdout) as { addr_info?: { family: string; local: string; prefixlen: number; scope: string }[] }[];
  const addresses = info?.addr_info ?? [];
  const v4 = addresses.find((entry) => entry.family === 'inet');
  if (v4 === undefined) throw new KibError('NETBOOT_INTERFACE', `interface ${name} has no IPv4 address`, { hint: 'Give it the address the Machines reach the server on.' });
  return { address: v4.local, prefix: v4.prefixlen, ipv6: addresses.some((entry) => entry.family === 'inet6' && entry.scope === 'global') };
}

export function networkOf(address: string, prefix: number): { network: string; netmask: string } {
  const toInt = (ip: string): number => ip.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
  const toIp = (value: number): string => [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { network: toIp((toInt(address) & mask) >>> 0), netmask: toIp(mask) };
}

function networkOfMask(ip: string, netmask: string): string {
  const a = ip.split('.').map(Number);
  const m = netmask.split('.').map(Number);
  return a.map((octet, index) => octet & (m[index] ?? 0)).join('.');
}

/**
 * Asks on the interface whether a DHCP server answers (busybox udhcpc: DISCOVER, then REQUEST on an
 * offer, then RELEASE; the address is never configured). True when one answered.
 */
export async function probeForeignDhcp(iface: string, signal?: AbortSignal): Promise<boolean> {
  const busybox = findTool('busybox');
  if (busybox === undefined) throw new MissingToolError([{ command: 'busybox', purpose: 'probe for another DHCP server', packageName: 'busybox-static' }]);
  const result = await run(busybox, ['udhcpc', '-i', iface, '-n', '-q', '-R', '-t', '3', '-T', '1', '-s', '/bin/true'], {
    timeoutMs: 30_000,
    allowFailure: true,
    ...(signal === undefined ? {} : { signal }),
  });
  return result.exitCode === 0;
}

export async function startNetboot(spec: NetbootSpec, options: NetbootOptions = {}): Promise<StartedNetboot> {
  const reporter = options.reporter ?? silentReporter;
  const log = (line: string, level: 'info' | 'warn' | 'debug' = 'info'): void => reporter.emit({ type: 'log', source: 'netboot', line, level });
  if (options.signal?.aborted === true) throw new CancelledError('Starting netboot');
  if (findTool('dnsmasq') === undefined) throw new MissingToolError([{ command: 'dnsmasq', purpose: 'DHCP and TFTP for netboot', packageName: 'dnsmasq-base' }]);
  const ipxeDir = spec.ipxeDir ?? DEFAULT_IPXE_DIR;
  for (const file of [IPXE_BIOS_FILE, IPXE_UEFI_FILE]) {
    if (!existsSync(join(ipxeDir, file))) throw new MissingToolError([{ command: join(ipxeDir, file), purpose: 'iPXE for PXE firmware', packageName: 'ipxe' }]);
  }
  const iface = await interfaceAddresses(spec.interface, options.signal);
  const { network, netmask } = networkOf(iface.address, iface.prefix);
  const outside = spec.machines.filter((machine) => networkOfMask(machine.spec.ipAddress, netmask) !== network);
  if (outside.length > 0 && !spec.proxyDhcp) {
    throw new KibError('MACHINE_INVALID', `Machines outside ${network}/${iface.prefix} on ${spec.interface}: ${outside.map((m) => `${m.metadata.name} (${m.spec.ipAddress})`).join(', ')}`);
  }
  if (!spec.proxyDhcp && spec.skipDhcpProbe !== true) {
    log(`asking on ${spec.interface} whether another DHCP server answers`);
    if (await probeForeignDhcp(spec.interface, options.signal)) {
      throw new KibError('NETBOOT_DHCP_PRESENT', `another DHCP server answers on ${spec.interface}; refusing to start a second one`, {
        hint: 'Use --proxy-dhcp to leave addresses to that server and answer only network-boot requests.',
      });
    }
  }

  const stage2 = await ensureStage2({ cacheDir: spec.cacheDir, reporter, ...(options.signal === undefined ? {} : { signal: options.signal }) });
  const image = await ensureServedImage(spec.imagePath, { cacheDir: spec.cacheDir, reporter, ...(options.signal === undefined ? {} : { signal: options.signal }) });
  // An image without a GPT cannot get its CIDATA partition: fail now, not when the first Machine asks.
  parseGpt(image.head);

  const root = join(spec.stateDir, 'netboot');
  const machinesDir = join(root, 'machines');
  const tftpRoot = join(root, 'tftp');
  const seedsDir = join(root, 'seeds');
  await mkdir(machinesDir, { recursive: true });
  await mkdir(tftpRoot, { recursive: true });
  await mkdir(seedsDir, { recursive: true });
  for (const file of [IPXE_BIOS_FILE, IPXE_UEFI_FILE]) await copyFile(join(ipxeDir, file), join(tftpRoot, file));

  const registry = new MachineRegistry({
    machinesDir,
    log,
    ...(spec.writeStatus === undefined ? {} : { writeStatus: spec.writeStatus }),
    ...(options.onStatus === undefined ? {} : { onStatus: options.onStatus }),
    reject: (machine) =>
      !spec.proxyDhcp && networkOfMask(machine.spec.ipAddress, netmask) !== network ? `${machine.spec.ipAddress} is outside ${network}/${iface.prefix} on ${spec.interface}` : undefined,
  });
  await registry.replace(spec.machines);
  const hostsFile = join(root, 'dnsmasq.hosts');
  const writeHosts = async (): Promise<void> => {
    await writeFile(`${hostsFile}.tmp`, renderDnsmasqHosts(registry.list()));
    await rename(`${hostsFile}.tmp`, hostsFile);
  };
  await writeHosts();

  const server = `http://${iface.address}:${spec.httpPort}`;
  const joinSpec = spec.join;
  const handler = createNetbootHandler({
    registry,
    image,
    stage2,
    server,
    seedsDir,
    sshAuthorizedKeys: spec.sshAuthorizedKeys,
    log,
    ...(spec.measureDisk === true ? { measureDisk: true } : {}),
    ...(joinSpec === undefined
      ? {}
      : {
          join: {
            endpoint: joinSpec.endpoint,
            caCertHash: joinSpec.caCertHash,
            ...(joinSpec.certificateKey === undefined ? {} : { certificateKey: joinSpec.certificateKey }),
            token: machineTokenSource({
              tokenSecret: joinSpec.tokenSecret,
              log,
              ...(joinSpec.createToken === undefined ? {} : { createToken: joinSpec.createToken }),
              ...(joinSpec.tokenTtlMs === undefined ? {} : { ttlMs: joinSpec.tokenTtlMs }),
            }),
          },
        }),
  });

  const http = createServer((request, response) => {
    handler(request, response).catch((error: unknown) => {
      log(`HTTP ${request.url ?? ''}: ${(error as Error).message}`, 'warn');
      if (!response.headersSent) {
        response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        response.end(`${(error as Error).message}\n`);
      }
      else response.destroy();
    });
  });
  const sockets = new Set<Socket>();
  http.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(spec.httpPort, iface.address, () => resolve());
  });

  const configFile = join(root, 'dnsmasq.conf');
  await writeFile(
    configFile,
    renderDnsmasqConfig({
      interface: spec.interface,
      serverAddress: iface.address,
      network,
      netmask,
      httpPort: spec.httpPort,
      tftpRoot,
      hostsFile,
      proxyDhcp: spec.proxyDhcp,
      routerAdvertisement: iface.ipv6,
      leaseFile: join(root, 'dnsmasq.leases'),
      pidFile: join(root, 'dnsmasq.pid'),
      user: userInfo().username,
    }),
  );
  const dnsmasqLog = join(root, 'dnsmasq.log');
  let dnsmasq: StartedDaemon;
  try {
    dnsmasq = spawnDaemon('dnsmasq', dnsmasqArgs(configFile), { stdoutFile: dnsmasqLog, stderrFile: dnsmasqLog });
    // dnsmasq checks its configuration and binds before it settles; an early exit is an error.
    const early = await Promise.race([dnsmasq.exited.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 1_000))]);
    if (early) throw new KibError('NETBOOT_DNSMASQ', `dnsmasq exited at start:\n${lastLines(await readFile(dnsmasqLog, 'utf8').catch(() => ''), 20)}`);
  } catch (error) {
    http.close();
    for (const socket of sockets) socket.destroy();
    throw error;
  }
  log(`netboot on ${spec.interface} (${iface.address}): HTTP ${server}, ${registry.list().length} Machine(s), ${spec.proxyDhcp ? 'proxy-DHCP' : 'DHCP'}, image sha256 ${image.sha256}`);

  let closing: Promise<void> | undefined;
  let markClosed = (): void => undefined;
  const closed = new Promise<void>((resolve) => {
    markClosed = resolve;
  });
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await dnsmasq.stop({ termMs: 5_000 });
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      await updating;
      await registry.flushed();
      markClosed();
    })();
    return closing;
  };
  const onAbort = (): void => void close();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const done = Promise.race([
    dnsmasq.exited.then(async (exit) => {
      if (closing !== undefined) return closing;
      const tail = lastLines(await readFile(dnsmasqLog, 'utf8').catch(() => ''), 20);
      await close();
      throw new KibError('NETBOOT_DNSMASQ', `dnsmasq exited (${String(exit.exitCode ?? exit.signal)}):\n${tail}`);
    }),
    closed,
  ]).finally(() => options.signal?.removeEventListener('abort', onAbort));

  // A new set of Machines: the registry (HTTP looks Machines up on every request), then dnsmasq's
  // hosts file and SIGHUP, which makes dnsmasq re-read it. Updates are serialized.
  let updating: Promise<unknown> = Promise.resolve();
  const setMachines = (machines: readonly Machine[]): Promise<SetChange> => {
    const next = updating.then(async () => {
      const change = await registry.replace(machines);
      if (change.added.length + change.removed.length + change.changed.length === 0) return change;
      await writeHosts();
      if (dnsmasq.isRunning()) process.kill(dnsmasq.pid, 'SIGHUP');
      const parts = [['added', change.added], ['removed', change.removed], ['changed', change.changed]].filter(([, names]) => names!.length > 0);
      log(`Machines ${parts.map(([what, names]) => `${what as string}: ${(names as string[]).join(', ')}`).join('; ')}; dnsmasq re-reads its hosts`);
      return change;
    });
    updating = next.catch(() => undefined);
    return next;
  };

  return {
    url: server,
    serverAddress: iface.address,
    image,
    stage2,
    status: (name) => registry.status(name),
    setMachines,
    done,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Kept here for callers that imported it from the service. */
export { reportEvent } from './http.js';
