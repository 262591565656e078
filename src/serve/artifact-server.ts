import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { CancelledError, KibError } from '../core/errors.js';
import { silentReporter, type Reporter } from '../report/events.js';
import { ArtifactCatalog, sameIdentity, type CatalogEntry } from './artifact-catalog.js';
import {
  ifRangeHolds,
  notModifiedSince,
  parseRangeHeader,
  strongEntityTagMatch,
  weakEntityTagMatch,
} from './http-semantics.js';

export interface ArtifactServerOptions {
  /** The output directory (`outputs.dir`), or one artifact directory inside it. */
  dir: string;
  /** Loopback by default: exposing build outputs to a network is the caller's explicit choice. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  reporter?: Reporter;
  /** Aborting it closes the server gracefully. */
  signal?: AbortSignal;
  /** How long in-flight responses may run on after close() before their sockets are destroyed. */
  shutdownTimeoutMs?: number;
  /** A connection that moves no byte for this long is dropped, so a stalled client cannot pin a file open. */
  idleTimeoutMs?: number;
}

export interface StartedArtifactServer extends AsyncDisposable {
  /** Base URL with a trailing slash, e.g. `http://127.0.0.1:41234/`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The URL path → file table the server answers from (refreshed when unknown paths are asked for). */
  readonly catalog: ArtifactCatalog;
  /** Stops accepting, lets in-flight responses finish up to the deadline, then destroys what is left. Idempotent. */
  close(): Promise<void>;
}

export class ServeError extends KibError {
  readonly dir: string;

  constructor(dir: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super('SERVE_FAILED', message, options);
    this.dir = dir;
  }
}

const ALLOW = 'GET, HEAD';
const READ_CHUNK_BYTES = 1024 * 1024;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;

/**
 * Serves finished artifacts read-only over HTTP/1.1 the way KubeVirt CDI's HTTP importer wants
 * them: HEAD with Content-Length, `Accept-Ranges: bytes` and single byte ranges (so CDI can use
 * nbdkit-curl and qemu-img to validate sizes before it copies), strong ETags taken from SHA256SUMS,
 * and an `application/octet-stream` type. Only files found by scanning are served; a request path
 * is looked up in that table and never joined to the directory, so no path outside it is reachable.
 */
export async function startArtifactServer(options: ArtifactServerOptions): Promise<StartedArtifactServer> {
  const { dir, host = '127.0.0.1', port = 0, reporter = silentReporter, signal } = options;
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  if (signal?.aborted === true) throw new CancelledError('Serving artifacts');

  let catalog: ArtifactCatalog;
  try {
    catalog = await ArtifactCatalog.open(dir);
  } catch (error) {
    throw new ServeError(dir, `Cannot serve ${dir}: ${(error as Error).message}`, {
      hint: 'Pass the output directory of a build (outputs.dir), e.g. `kib serve output`.',
      cause: error,
    });
  }

  let closing = false;
  /** Requests in progress per connection, so shutdown can tell idle keep-alive sockets from busy ones. */
  const connections = new Map<Socket, number>();

  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const socket = req.socket;
    connections.set(socket, (connections.get(socket) ?? 0) + 1);
    if (closing) res.shouldKeepAlive = false;
    res.on('close', () => {
      const left = (connections.get(socket) ?? 1) - 1;
      connections.set(socket, left);
      // A keep-alive connection that finished its last response during shutdown is not reused.
      if (closing && left === 0) socket.destroySoon();
    });
    handleRequest(req, res, catalog, reporter).catch((error: unknown) => {
      reporter.emit({ type: 'log', source: 'serve', level: 'warn', line: `internal error: ${String(error)}` });
      if (!res.headersSent) sendEmpty(res, 500, {});
      else res.destroy();
    });
  });
  server.setTimeout(options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS);
  server.on('connection', (socket: Socket) => {
    connections.set(socket, 0);
    socket.on('close', () => connections.delete(socket));
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    // A client that hung up is not a protocol error worth a log line.
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    // Malformed request lines (raw NUL bytes, bad header syntax) never reach the handler.
    reporter.emit({ type: 'log', source: 'serve', level: 'warn', line: `${socket.remoteAddress ?? '-'} rejected malformed request (${error.code ?? error.message}) 400` });
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    throw new ServeError(dir, `Cannot listen on ${host}:${port}: ${(error as Error).message}`, {
      ...((error as NodeJS.ErrnoException).code === 'EADDRINUSE' ? { hint: 'Choose another port, or 0 for a free one.' } : {}),
      cause: error,
    });
  });

  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${urlHost}:${address.port}/`;

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      signal?.removeEventListener('abort', onAbort);
      const allClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const [socket, active] of connections) if (active === 0) socket.destroy();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((resolve) => {
        timer = setTimeout(() => resolve('deadline'), shutdownTimeoutMs);
      });
      const outcome = await Promise.race([allClosed.then(() => 'drained' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'deadline') {
        reporter.emit({
          type: 'log',
          source: 'serve',
          level: 'warn',
          line: `shutdown deadline of ${shutdownTimeoutMs} ms reached; closing ${connections.size} connection(s) with responses in flight`,
        });
        for (const socket of connections.keys()) socket.destroy();
        await allClosed;
      }
      reporter.emit({ type: 'log', source: 'serve', line: `stopped serving ${url}` });
    })();
    return closed;
  };
  const onAbort = (): void => {
    void close();
  };
  signal?.addEventListener('abort', onAbort, { once: true });

  reporter.emit({
    type: 'log',
    source: 'serve',
    line: `serving ${catalog.list().length} file(s) from ${catalog.root} at ${url}`,
  });

  return {
    url,
    host: address.address,
    port: address.port,
    catalog,
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function handleRequest(
  req: IncomingMessage,
  res: ServerResponse,
  catalog: ArtifactCatalog,
  reporter: Reporter,
): Promise<void> {
  const startedMs = performance.now();
  const method = req.method ?? 'GET';
  const rawPath = req.url ?? '/';
  let bodyBytes = 0;
  res.on('close', () => {
    const durationMs = Math.round(performance.now() - startedMs);
    const aborted = res.writableFinished ? '' : ' (aborted)';
    reporter.emit({
      type: 'log',
      source: 'serve',
      line: `${req.socket.remoteAddress ?? '-'} ${method} ${printable(rawPath)} ${res.statusCode} ${bodyBytes} ${durationMs}ms${aborted}`,
    });
  });

  if (method !== 'GET' && method !== 'HEAD') {
    sendText(res, method, 405, 'Method Not Allowed: this server is read-only\n', { Allow: ALLOW });
    return;
  }
  const path = decodeRequestPath(rawPath);
  if (path === undefined) {
    sendText(res, method, 400, 'Bad Request: invalid path\n');
    return;
  }
  if (path === '/') {
    await catalog.refreshIfStale();
    sendText(res, method, 200, renderIndex(catalog.list()), { 'Cache-Control': 'no-cache' });
    return;
  }

  const opened = await openEntry(catalog, path);
  if (opened === undefined) {
    sendText(res, method, 404, 'Not Found\n');
    return;
  }
  const { entry, handle } = opened;
  let handedOff = false;
  try {
    const etag = `"sha256:${entry.sha256}"`;
    const lastModified = new Date(entry.mtimeMs).toUTCString();
    const validators = {
      ETag: etag,
      'Last-Modified': lastModified,
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-cache',
    };
    const ifMatch = req.headers['if-match'];
    const ifUnmodifiedSince = req.headers['if-unmodified-since'];
    if (
      (ifMatch !== undefined && !strongEntityTagMatch(ifMatch, etag)) ||
      (ifMatch === undefined && ifUnmodifiedSince !== undefined && isModifiedAfter(ifUnmodifiedSince, entry.mtimeMs))
    ) {
      sendEmpty(res, 412, validators);
      return;
    }
    const ifNoneMatch = req.headers['if-none-match'];
    const ifModifiedSince = req.headers['if-modified-since'];
    if (
      ifNoneMatch !== undefined
        ? weakEntityTagMatch(ifNoneMatch, etag)
        : ifModifiedSince !== undefined && notModifiedSince(ifModifiedSince, entry.mtimeMs)
    ) {
      sendEmpty(res, 304, validators);
      return;
    }

    const headers: Record<string, string | number> = { ...validators, 'Content-Type': contentTypeOf(entry.urlPath), 'X-Content-Type-Options': 'nosniff' };
    const size = entry.sizeBytes;
    // Range handling is defined for GET only (RFC 9110 §14.2); HEAD reports the whole representation.
    const ifRange = req.headers['if-range'] as string | undefined;
    const range =
      method === 'GET' && (ifRange === undefined || ifRangeHolds(ifRange, etag, lastModified))
        ? parseRangeHeader(req.headers.range, size)
        : ({ kind: 'none' } as const);
    if (range.kind === 'unsatisfiable') {
      sendEmpty(res, 416, { ...headers, 'Content-Range': `bytes */${size}` });
      return;
    }
    let start = 0;
    let end = size - 1;
    if (range.kind === 'single') {
      ({ start, end } = range);
      res.statusCode = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    } else {
      res.statusCode = 200;
    }
    headers['Content-Length'] = end - start + 1;
    res.writeHead(res.statusCode, headers);
    if (method === 'HEAD' || end < start) {
      res.end();
      return;
    }
    const stream = handle.createReadStream({ start, end, highWaterMark: READ_CHUNK_BYTES, autoClose: true });
    handedOff = true;
    stream.on('data', (chunk: string | Buffer) => {
      bodyBytes += chunk.length;
    });
    pipeline(stream, res, () => {
      // Errors here are client aborts or read failures; the access log line records the outcome.
    });
  } finally {
    if (!handedOff) await handle.close();
  }
}

/**
 * Opens a catalogued file and checks it is still the file that was scanned (same inode, size and
 * mtime), rescanning once if not — a directory replaced by a newer build must not be served with
 * the old digest.
 */
async function openEntry(
  catalog: ArtifactCatalog,
  path: string,
): Promise<{ entry: CatalogEntry; handle: FileHandle } | undefined> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const entry = attempt === 0 ? await catalog.find(path) : catalog.get(path);
    if (entry === undefined) return undefined;
    const handle = await open(entry.filePath, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
    if (handle !== undefined) {
      const info = await handle.stat();
      if (info.isFile() && sameIdentity(entry, { sizeBytes: info.size, mtimeMs: info.mtimeMs, dev: info.dev, ino: info.ino })) {
        return { entry, handle };
      }
      await handle.close();
    }
    if (attempt === 0) await catalog.refresh();
  }
  return undefined;
}

/**
 * The decoded path of a request target, or undefined when it must be refused: not origin-form,
 * malformed percent-encoding, NUL, backslashes, or `.`/`..` segments. Decoding happens exactly
 * once, so `%252e%252e` stays the literal name `%2e%2e` (which no artifact has).
 */
export function decodeRequestPath(target: string): string | undefined {
  let pathPart = target;
  if (/^https?:\/\//i.test(pathPart)) {
    try {
      pathPart = new URL(pathPart).pathname;
    } catch {
      return undefined;
    }
  }
  const cut = pathPart.search(/[?#]/);
  if (cut >= 0) pathPart = pathPart.slice(0, cut);
  if (!pathPart.startsWith('/')) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathPart);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return undefined;
  if (decoded.split('/').some((segment) => segment === '.' || segment === '..')) return undefined;
  return decoded;
}

function contentTypeOf(urlPath: string): string {
  if (urlPath.endsWith('.json')) return 'application/json';
  if (urlPath.endsWith('/SHA256SUMS')) return 'text/plain; charset=utf-8';
  // Disk images and the containerDisk archive: CDI warns about text/* types.
  return 'application/octet-stream';
}

function renderIndex(entries: readonly CatalogEntry[]): string {
  const lines = ['# kube-image-builder artifacts: sha256, size in bytes, path', ''];
  for (const entry of entries) lines.push(`${entry.sha256}  ${entry.sizeBytes}  ${entry.urlPath}`);
  return `${lines.join('\n')}\n`;
}

function sendText(
  res: ServerResponse,
  method: string,
  status: number,
  body: string,
  extra: Record<string, string> = {},
): void {
  const bytes = Buffer.from(body, 'utf8');
  res.writeHead(status, { ...extra, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': bytes.length });
  res.end(method === 'HEAD' ? undefined : bytes);
}

function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string | number>): void {
  const { 'Content-Length': _ignored, ...rest } = headers;
  res.writeHead(status, status === 304 ? rest : { ...rest, 'Content-Length': 0 });
  res.end();
}

function isModifiedAfter(httpDate: string, mtimeMs: number): boolean {
  const since = Date.parse(httpDate);
  return !Number.isNaN(since) && Math.floor(mtimeMs / 1000) * 1000 > since;
}

function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  const safe = text.replace(/[\u0000-\u001f\u007f"\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return safe.length > 300 ? `${safe.slice(0, 299)}…` : safe;
}
