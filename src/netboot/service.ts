import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { CancelledError, KibError, MissingToolError } from '../core/errors.js';
import { findTool, lastLines, run, spawnDaemon, type StartedDaemon } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { createNoCloudSeed } from '../vm/seeds.js';
import { machineBootstrapToken, renderMetaData, renderUserData, renderVendorData, type CloudConfigSpec, type JoinSpec } from './cloud-config.js';
import { dnsmasqArgs, IPXE_BIOS_FILE, IPXE_UEFI_FILE, renderDnsmasqConfig } from './dnsmasq-config.js';
import { parseGpt, planSeedPartition, type SeedPartitionPlan } from './gpt.js';
import { ensureServedImage, type ServedImage } from './image.js';
import { bootDecision, initialStatus, installId, transition, type MachineEvent, type MachineStatus } from './lifecycle.js';
import { normalizeMac, type Machine } from './machines.js';
import { renderChainScript, renderInstructions, renderIpxeScript, renderUnknownIpxeScript } from './scripts.js';
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
  join?: Omit<JoinSpec, 'token'> & { tokenSecret: string };
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
  const imageGpt = parseGpt(image.head);

  const root = join(spec.stateDir, 'netboot');
  const machinesDir = join(root, 'machines');
  const tftpRoot = join(root, 'tftp');
  const seedsDir = join(root, 'seeds');
  await mkdir(machinesDir, { recursive: true });
  await mkdir(tftpRoot, { recursive: true });
  await mkdir(seedsDir, { recursive: true });
  for (const file of [IPXE_BIOS_FILE, IPXE_UEFI_FILE]) await copyFile(join(ipxeDir, file), join(tftpRoot, file));

  const byMac = new Map(spec.machines.map((machine) => [machine.spec.macAddress, machine]));
  const byIp = new Map(spec.machines.map((machine) => [machine.spec.ipAddress, machine]));
  const statuses = new Map<string, MachineStatus>();
  for (const machine of spec.machines) {
    const file = join(machinesDir, `${machine.metadata.name}.json`);
    const saved = existsSync(file) ? (JSON.parse(await readFile(file, 'utf8')) as { status?: MachineStatus }).status : undefined;
    statuses.set(machine.metadata.name, saved ?? initialStatus(new Date()));
  }
  let writes = Promise.resolve();
  const persist = (machine: Machine, status: MachineStatus): Promise<void> => {
    const file = join(machinesDir, `${machine.metadata.name}.json`);
    writes = writes.then(async () => {
      const temp = `${file}.tmp`;
      await writeFile(temp, `${JSON.stringify({ name: machine.metadata.name, macAddress: machine.spec.macAddress, status }, null, 2)}\n`);
      await rename(temp, file);
      await spec.writeStatus?.(machine.metadata.name, status).catch((error: unknown) => {
        log(`${machine.metadata.name}: writing status to the API failed: ${(error as Error).message}`, 'warn');
      });
    });
    return writes;
  };
  for (const machine of spec.machines) await persist(machine, statuses.get(machine.metadata.name)!);
  const apply = async (machine: Machine, event: MachineEvent): Promise<MachineStatus> => {
    const name = machine.metadata.name;
    const result = transition(statuses.get(name)!, event, new Date());
    if (!result.applied) {
      log(`${name}: ignored ${event.type} in phase ${statuses.get(name)!.phase}`, 'debug');
      return result.status;
    }
    statuses.set(name, result.status);
    await persist(machine, result.status);
    if (event.type !== 'progress') log(`${name}: ${result.status.phase}${result.status.reason === undefined ? '' : ` (${result.status.reason})`}`);
    options.onStatus?.({ machine: name, status: result.status, event });
    return result.status;
  };

  const server = `http://${iface.address}:${spec.httpPort}`;
  const cloudSpec = (machine: Machine): CloudConfigSpec => {
    const status = statuses.get(machine.metadata.name)!;
    const id = installId(status);
    return {
      machine,
      server,
      sshAuthorizedKeys: spec.sshAuthorizedKeys,
      installId: id,
      ...(spec.join === undefined
        ? {}
        : {
            join: {
              endpoint: spec.join.endpoint,
              caCertHash: spec.join.caCertHash,
              token: machineBootstrapToken(spec.join.tokenSecret, machine.metadata.name, id),
              ...(spec.join.certificateKey === undefined ? {} : { certificateKey: spec.join.certificateKey }),
            },
          }),
    };
  };
  const seeds = new Map<string, Promise<string>>();
  const seedIso = (machine: Machine): Promise<string> => {
    const cloud = cloudSpec(machine);
    const key = `${machine.metadata.name}-${cloud.installId}`;
    let seed = seeds.get(key);
    if (seed === undefined) {
      seed = createNoCloudSeed({ dir: join(seedsDir, key), userData: renderUserData(cloud), metaData: renderMetaData(cloud) });
      seeds.set(key, seed);
    }
    return seed;
  };
  const seedPlan = async (machine: Machine, diskBytes: bigint): Promise<{ plan: SeedPartitionPlan; iso: string }> => {
    const iso = await seedIso(machine);
    const plan = planSeedPartition(imageGpt, {
      diskBytes,
      imageBytes: BigInt(image.sizeBytes),
      seedBytes: (await stat(iso)).size,
      uniqueSeed: `${machine.metadata.name}/${installId(statuses.get(machine.metadata.name)!)}`,
    });
    return { plan, iso };
  };

  const text = (response: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
    response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    response.end(body);
  };
  const sendFile = async (request: IncomingMessage, response: ServerResponse, path: string): Promise<void> => {
    const size = (await stat(path)).size;
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    await new Promise<void>((resolve) => pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), response, () => resolve()));
  };
  const readBody = async (request: IncomingMessage): Promise<string> => {
    let body = '';
    for await (const chunk of request) {
      body += String(chunk);
      if (body.length > 64 * 1024) break;
    }
    return body;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://netboot');
    const parts = url.pathname.split('/').filter((part) => part !== '').map(decodeURIComponent);
    const remote = (request.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    log(`${request.method ?? '?'} ${url.pathname} from ${remote}`, 'debug');
    const machineOf = (text: string | undefined): Machine | undefined => {
      const mac = text === undefined ? undefined : normalizeMac(text);
      return mac === undefined ? undefined : byMac.get(mac);
    };
    const [first, second, third, fourth] = parts;
    if (request.method === 'GET' || request.method === 'HEAD') {
      if (first === 'boot.ipxe' && parts.length === 1) return text(response, 200, renderChainScript(server));
      if (first === 'ipxe' && parts.length === 2) {
        const machine = machineOf(second);
        if (machine === undefined) {
          log(`iPXE script asked for unknown MAC ${second ?? ''} from ${remote}`, 'warn');
          return text(response, 200, renderUnknownIpxeScript());
        }
        const decision = bootDecision(machine, statuses.get(machine.metadata.name)!);
        if (decision.kind === 'stage2') await apply(machine, { type: 'stage2-offered', ...(decision.reinstall === undefined ? {} : { reinstall: decision.reinstall }) });
        else log(`${machine.metadata.name}: network boot refused, ${decision.why}`);
        return text(response, 200, renderIpxeScript(machine, decision, server));
      }
      if (first === 'stage2' && parts.length === 2) {
        if (second === 'vmlinuz') return sendFile(request, response, stage2.kernelPath);
        if (second === 'initrd') return sendFile(request, response, stage2.initrdPath);
      }
      if (first === 'image' && second === `${image.sha256}.raw.zst` && parts.length === 2) return sendFile(request, response, image.zstPath);
      if (first === 'instructions' && parts.length === 2) {
        const machine = machineOf(second);
        if (machine === undefined) return text(response, 404, 'unknown MAC\n');
        const disk = machine.spec.disk;
        return text(
          response,
          200,
          renderInstructions({
            name: machine.metadata.name,
            imageUrl: `${server}/image/${image.sha256}.raw.zst`,
            imageSha256: image.sha256,
            imageSizeBytes: image.sizeBytes,
            ...(disk.path === undefined ? {} : { diskPath: disk.path }),
            ...(disk.minSizeBytes === undefined ? {} : { diskMinSizeBytes: disk.minSizeBytes }),
            ...(disk.model === undefined ? {} : { diskModel: disk.model }),
            allowWipe: machine.spec.allowWipe,
            cidataUrl: `${server}/cidata/${machine.spec.macAddress}/`,
          }),
        );
      }
      if (first === 'cidata' && parts.length === 4 && third !== undefined && /^\d+$/.test(third)) {
        const machine = machineOf(second);
        if (machine === undefined) return text(response, 404, 'unknown MAC\n');
        const { plan, iso } = await seedPlan(machine, BigInt(third));
        if (fourth === 'plan') return text(response, 200, `SEED_LBA=${plan.seedLba}\nSEED_SECTORS=${plan.seedSectors}\nBACKUP_LBA=${plan.backupLba}\nSEED_PARTITION=${plan.partitionNumber}\n`);
        if (fourth === 'seed') return sendFile(request, response, iso);
        if (fourth === 'primary') return sendBuffer(response, plan.primary);
        if (fourth === 'backup') return sendBuffer(response, plan.backup);
      }
      if (first === 'nocloud') {
        // /nocloud/<name>/<file>, or /nocloud/<file> mapped from the requesting address.
        const machine = parts.length === 3 ? spec.machines.find((m) => m.metadata.name === second) : parts.length === 2 ? byIp.get(remote) : undefined;
        const file = parts.length === 3 ? third : second;
        if (machine !== undefined) {
          const cloud = cloudSpec(machine);
          if (file === 'meta-data') return text(response, 200, renderMetaData(cloud));
          if (file === 'user-data') return text(response, 200, renderUserData(cloud));
          if (file === 'vendor-data') return text(response, 200, renderVendorData());
        }
      }
    }
    if (request.method === 'POST' && first === 'report' && parts.length === 2) {
      const machine = machineOf(second);
      if (machine === undefined) return text(response, 404, 'unknown MAC\n');
      const form = new URLSearchParams(await readBody(request));
      const phase = url.searchParams.get('phase') ?? form.get('phase');
      const event = reportEvent(phase, form);
      if (event === undefined) return text(response, 400, `unknown phase ${String(phase)}\n`);
      const status = await apply(machine, event);
      return text(response, 200, `${JSON.stringify(status)}\n`, 'application/json');
    }
    return text(response, 404, 'not found\n');
  };

  const http = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      log(`HTTP ${request.url ?? ''}: ${(error as Error).message}`, 'warn');
      if (!response.headersSent) text(response, 500, `${(error as Error).message}\n`);
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
      machines: spec.machines,
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
  log(`netboot on ${spec.interface} (${iface.address}): HTTP ${server}, ${spec.machines.length} Machine(s), ${spec.proxyDhcp ? 'proxy-DHCP' : 'DHCP'}, image sha256 ${image.sha256}`);

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
      await writes;
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

  return {
    url: server,
    serverAddress: iface.address,
    image,
    stage2,
    status: (name) => statuses.get(name),
    done,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function sendBuffer(response: ServerResponse, data: Buffer): void {
  response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
  response.end(data);
}

/** A report's form → an event; undefined for an unknown phase. */
export function reportEvent(phase: string | null, form: URLSearchParams): MachineEvent | undefined {
  switch (phase) {
    case 'writing':
      return { type: 'writing', disk: form.get('disk') ?? 'unknown' };
    case 'progress':
      return { type: 'progress', bytesWritten: Number(form.get('bytesWritten') ?? 0) };
    case 'written':
      return { type: 'written', imageSha256: form.get('sha256') ?? '', ...seconds(form, 'writeSeconds'), ...seconds(form, 'verifySeconds') };
    case 'booted':
      return { type: 'booted' };
    case 'joined':
      return { type: 'joined' };
    case 'failed':
      return { type: 'failed', reason: (form.get('reason') ?? 'stage2 reported a failure').slice(0, 500) };
    default:
      return undefined;
  }
}

function seconds(form: URLSearchParams, key: 'writeSeconds' | 'verifySeconds'): Partial<Record<typeof key, number>> {
  const value = Number(form.get(key));
  return form.has(key) && Number.isFinite(value) && value >= 0 ? { [key]: value } : {};
}
