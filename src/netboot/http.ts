import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { createHash } from 'node:crypto';
import { createNoCloudSeed } from '../vm/seeds.js';
import { machineBootstrapToken, renderMetaData, renderUserData, renderVendorData, type CloudConfigSpec, type JoinSpec } from './cloud-config.js';
import { parseGpt, planSeedPartition, type SeedPartitionPlan } from './gpt.js';
import type { ServedImage } from './image.js';
import { BOOTSTRAP_TOKEN_TTL_MS, type BootstrapTokenSpec } from './kube.js';
import { bootDecision, installId, type MachineEvent } from './lifecycle.js';
import type { Machine } from './machines.js';
import type { MachineRegistry } from './registry.js';
import { renderChainScript, renderInstructions, renderIpxeScript, renderUnknownIpxeScript } from './scripts.js';

/**
 * The HTTP side of `kib netboot`: iPXE scripts per MAC, stage2's kernel and initrd, the image,
 * stage2's instructions, the per-Machine CIDATA partition and GPT, NoCloud files, and the reports
 * stage2 and the installed system send. Machines are looked up in the registry on every request,
 * so a Machine added or removed while the service runs is served, or not, from the next request on.
 */

export interface NetbootHttpContext {
  registry: MachineRegistry;
  image: Pick<ServedImage, 'zstPath' | 'sha256' | 'sizeBytes' | 'head'>;
  stage2: { kernelPath: string; initrdPath: string };
  /** Base URL of this server as the Machines reach it (no trailing slash). */
  server: string;
  /** Where the per-Machine NoCloud seed images are made. */
  seedsDir: string;
  sshAuthorizedKeys: readonly string[];
  /** The join, with each Machine's bootstrap token (undefined: no join for that Machine). */
  join?: Omit<JoinSpec, 'token'> & { token: (machine: Machine, installId: string) => Promise<string> };
  /** Ask stage2 to measure the disk's raw streaming speed before writing (benchmarks). */
  measureDisk?: boolean;
  log: (line: string, level: 'info' | 'warn' | 'debug') => void;
}

export type NetbootRequestHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

export function createNetbootHandler(context: NetbootHttpContext): NetbootRequestHandler {
  const { registry, image, stage2, server, log } = context;
  let imageGpt: ReturnType<typeof parseGpt> | undefined;

  const cloudSpec = async (machine: Machine): Promise<CloudConfigSpec> => {
    const status = registry.status(machine.metadata.name);
    const id = status === undefined ? 'none' : installId(status);
    const join = context.join;
    return {
      machine,
      server,
      sshAuthorizedKeys: context.sshAuthorizedKeys,
      installId: id,
      ...(join === undefined
        ? {}
        : {
            join: {
              endpoint: join.endpoint,
              caCertHash: join.caCertHash,
              token: await join.token(machine, id),
              ...(join.certificateKey === undefined ? {} : { certificateKey: join.certificateKey }),
            },
          }),
    };
  };
  // Seeds are keyed by their content: a Machine whose spec changed (a watch event) gets a new one.
  const seeds = new Map<string, Promise<string>>();
  const seedIso = async (machine: Machine): Promise<string> => {
    const cloud = await cloudSpec(machine);
    const userData = renderUserData(cloud);
    const metaData = renderMetaData(cloud);
    const key = `${machine.metadata.name}-${cloud.installId}-${createHash('sha256').update(userData).update('\0').update(metaData).digest('hex').slice(0, 12)}`;
    let seed = seeds.get(key);
    if (seed === undefined) {
      seed = createNoCloudSeed({ dir: join(context.seedsDir, key), userData, metaData });
      seeds.set(key, seed);
      seed.catch(() => seeds.delete(key));
    }
    return seed;
  };
  const seedPlan = async (machine: Machine, diskBytes: bigint): Promise<{ plan: SeedPartitionPlan; iso: string }> => {
    const iso = await seedIso(machine);
    imageGpt ??= parseGpt(image.head);
    const status = registry.status(machine.metadata.name);
    const plan = planSeedPartition(imageGpt, {
      diskBytes,
      imageBytes: BigInt(image.sizeBytes),
      seedBytes: (await stat(iso)).size,
      uniqueSeed: `${machine.metadata.name}/${status === undefined ? 'none' : installId(status)}`,
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

  return async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://netboot');
    const parts = url.pathname.split('/').filter((part) => part !== '').map(decodeURIComponent);
    const remote = (request.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    log(`${request.method ?? '?'} ${url.pathname} from ${remote}`, 'debug');
    const [first, second, third, fourth] = parts;
    if (request.method === 'GET' || request.method === 'HEAD') {
      if (first === 'boot.ipxe' && parts.length === 1) return text(response, 200, renderChainScript(server));
      if (first === 'ipxe' && parts.length === 2) {
        const machine = registry.byMac(second);
        if (machine === undefined) {
          log(`iPXE script asked for unknown MAC ${second ?? ''} from ${remote}`, 'warn');
          return text(response, 200, renderUnknownIpxeScript());
        }
        const decision = bootDecision(machine, registry.status(machine.metadata.name)!);
        if (decision.kind === 'stage2') await registry.apply(machine, { type: 'stage2-offered', ...(decision.reinstall === undefined ? {} : { reinstall: decision.reinstall }) });
        else log(`${machine.metadata.name}: network boot refused, ${decision.why}`, 'info');
        return text(response, 200, renderIpxeScript(machine, decision, server));
      }
      if (first === 'stage2' && parts.length === 2) {
        if (second === 'vmlinuz') return sendFile(request, response, stage2.kernelPath);
        if (second === 'initrd') return sendFile(request, response, stage2.initrdPath);
      }
      if (first === 'image' && second === `${image.sha256}.raw.zst` && parts.length === 2) return sendFile(request, response, image.zstPath);
      if (first === 'instructions' && parts.length === 2) {
        const machine = registry.byMac(second);
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
            ...(context.measureDisk === true ? { measureDisk: true } : {}),
          }),
        );
      }
      if (first === 'cidata' && parts.length === 4 && third !== undefined && /^\d+$/.test(third)) {
        const machine = registry.byMac(second);
        if (machine === undefined) return text(response, 404, 'unknown MAC\n');
        const { plan, iso } = await seedPlan(machine, BigInt(third));
        if (fourth === 'plan') return text(response, 200, `SEED_LBA=${plan.seedLba}\nSEED_SECTORS=${plan.seedSectors}\nBACKUP_LBA=${plan.backupLba}\nSEED_PARTITION=${plan.partitionNumber}\n`);
        if (fourth === 'seed') return sendFile(request, response, iso);
        if (fourth === 'primary') return sendBuffer(response, plan.primary);
        if (fourth === 'backup') return sendBuffer(response, plan.backup);
      }
      if (first === 'nocloud') {
        // /nocloud/<name>/<file>, or /nocloud/<file> mapped from the requesting address.
        const machine = parts.length === 3 ? registry.byName(second) : parts.length === 2 ? registry.byIp(remote) : undefined;
        const file = parts.length === 3 ? third : second;
        if (machine !== undefined) {
          if (file === 'meta-data') return text(response, 200, renderMetaData(await cloudSpec(machine)));
          if (file === 'user-data') return text(response, 200, renderUserData(await cloudSpec(machine)));
          if (file === 'vendor-data') return text(response, 200, renderVendorData());
        }
      }
    }
    if (request.method === 'POST' && first === 'report' && parts.length === 2) {
      const machine = registry.byMac(second);
      if (machine === undefined) return text(response, 404, 'unknown MAC\n');
      const form = new URLSearchParams(await readBody(request));
      const phase = url.searchParams.get('phase') ?? form.get('phase');
      const event = reportEvent(phase, form);
      if (event === undefined) return text(response, 400, `unknown phase ${String(phase)}\n`);
      const status = await registry.apply(machine, event);
      return text(response, 200, `${JSON.stringify(status)}\n`, 'application/json');
    }
    return text(response, 404, 'not found\n');
  };
}

/**
 * Each Machine's bootstrap token, derived from the secret, its name and its install (so every
 * Machine and every reinstall has its own); with `createToken`, the token is created in the
 * cluster being joined before the user-data carrying it is handed out, once per token while the
 * service runs (a failure is retried on the next request, and fails that request).
 */
export function machineTokenSource(options: {
  tokenSecret: string;
  createToken?: (token: BootstrapTokenSpec) => Promise<void>;
  ttlMs?: number;
  log?: (line: string, level: 'info' | 'warn' | 'debug') => void;
}): (machine: Machine, installId: string) => Promise<string> {
  const created = new Map<string, Promise<void>>();
  return async (machine, install) => {
    const token = machineBootstrapToken(options.tokenSecret, machine.metadata.name, install);
    const create = options.createToken;
    if (create === undefined) return token;
    let done = created.get(token);
    if (done === undefined) {
      done = create({
        token,
        expiration: new Date(Date.now() + (options.ttlMs ?? BOOTSTRAP_TOKEN_TTL_MS)),
        description: `kib netboot: joins Machine ${machine.metadata.name} (install ${install})`,
      });
      created.set(token, done);
      done.then(
        () => options.log?.(`${machine.metadata.name}: bootstrap token ${token.slice(0, 6)} created in the cluster`, 'info'),
        () => created.delete(token),
      );
    }
    await done;
    return token;
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
      return { type: 'writing', disk: form.get('disk') ?? 'unknown', ...diskSpeed(form) };
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

function seconds<K extends string>(form: URLSearchParams, key: K): Partial<Record<K, number>> {
  const value = Number(form.get(key));
  return form.has(key) && Number.isFinite(value) && value >= 0 ? ({ [key]: value } as Partial<Record<K, number>>) : {};
}

/** The raw streaming speed stage2 measured before writing, when it was asked to. */
function diskSpeed(form: URLSearchParams): { diskSpeed?: { bytes: number; writeSeconds: number; readSeconds: number } } {
  const bytes = Number(form.get('streamBytes'));
  const write = seconds(form, 'streamWriteSeconds').streamWriteSeconds;
  const read = seconds(form, 'streamReadSeconds').streamReadSeconds;
  if (!(bytes > 0) || write === undefined || read === undefined) return {};
  return { diskSpeed: { bytes, writeSeconds: write, readSeconds: read } };
}
