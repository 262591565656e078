import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What one request asked for and how it was answered. */
export interface SeenRequest {
  path: string;
  range: string | undefined;
  status: number;
}

export type Behaviour =
  /** Honours Range with 206 and sends an ETag. */
  | 'normal'
  /** Like normal, but closes the connection halfway through the first full download. */
  | 'cut-first'
  /** Closes the connection halfway through every response. */
  | 'cut-always'
  /** Answers every request with 200 and the whole file, ignoring Range. */
  | 'ignore-range'
  /** Sends the body slowly, in small pieces. */
  | 'slow';

/** A qcow2-looking payload: the qcow2 magic, then random bytes. */
export function makeImage(sizeBytes: number): { data: Buffer; sha256: string } {
  const data = randomBytes(sizeBytes);
  data.write('QFI\xfb', 0, 'latin1');
  return { data, sha256: createHash('sha256').update(data).digest('hex') };
}

/**
 * A small HTTP server on 127.0.0.1 serving files from memory, with switchable misbehaviour, that
 * records every request it saw.
 */
export class ImageServer {
  readonly seen: SeenRequest[] = [];
  behaviour: Behaviour = 'normal';
  readonly #files = new Map<string, Buffer>();
  readonly #server: Server;
  #fullDownloads = 0;

  private constructor() {
    this.#server = createServer((request, response) => this.#handle(request, response));
  }

  static async start(): Promise<ImageServer> {
    const server = new ImageServer();
    await new Promise<void>((resolve) => server.#server.listen(0, '127.0.0.1', resolve));
    return server;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${String(this.port)}${path}`;
  }

  serve(path: string, data: Buffer | string): void {
    this.#files.set(path, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    const path = request.url ?? '/';
    const range = request.headers.range;
    const data = this.#files.get(path);
    const record = (status: number): void => {
      this.seen.push({ path, range, status });
    };
    if (data === undefined) {
      record(404);
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const etag = `"${createHash('sha256').update(data).digest('hex').slice(0, 16)}"`;
    const match = /^bytes=(\d+)-$/.exec(range ?? '');
    if (match !== null && this.behaviour !== 'ignore-range') {
      const start = Number(match[1]);
      if (start >= data.length) {
        record(416);
        response.writeHead(416, { 'content-range': `bytes */${String(data.length)}` }).end();
        return;
      }
      record(206);
      response.writeHead(206, {
        'content-length': String(data.length - start),
        'content-range': `bytes ${String(start)}-${String(data.length - 1)}/${String(data.length)}`,
        etag,
      });
      this.#send(response, data.subarray(start), this.behaviour === 'cut-always');
      return;
    }
    record(200);
    response.writeHead(200, { 'content-length': String(data.length), 'accept-ranges': 'bytes', etag });
    this.#fullDownloads += 1;
    const cut = this.behaviour === 'cut-always' || (this.behaviour === 'cut-first' && this.#fullDownloads === 1);
    this.#send(response, data, cut);
  }

  #send(response: ServerResponse, body: Buffer, cutHalfway: boolean): void {
    if (cutHalfway) {
      const half = body.subarray(0, Math.floor(body.length / 2));
      response.write(half, () => {
        // Give the bytes time to leave, then drop the connection like a flaky network would.
        setTimeout(() => response.socket?.destroy(), 20);
      });
      return;
    }
    if (this.behaviour === 'slow') {
      let offset = 0;
      const tick = (): void => {
        if (response.destroyed) return;
        const end = Math.min(offset + 32 * 1024, body.length);
        const last = end === body.length;
        response.write(body.subarray(offset, end), () => {
          offset = end;
          if (last) response.end();
          else setTimeout(tick, 15);
        });
      };
      tick();
      return;
    }
    response.end(body);
  }
}

/** A TCP port on 127.0.0.1 that nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
