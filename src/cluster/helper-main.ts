/**
 * Small long-lived helpers of a cluster, run as their own processes so they outlive `kib up`:
 *
 *   seed-server --dir DIR --listen IP:PORT --log FILE
 *       Runs inside the cluster's namespace (`ip netns exec NS node helper-main.js …`), listens on
 *       the bridge address and serves DIR/<node>/{meta-data,user-data,vendor-data} under
 *       /nocloud/<node>/, the NoCloud seed each node names in its SMBIOS serial. One JSON line per
 *       request goes to FILE.
 *   api-forward --listen 127.0.0.1:PORT --netns NS --target IP:PORT
 *       Runs on the host and forwards a loopback port to node 1's API server. Node cannot enter a
 *       namespace, so each connection is carried by a `pipe` helper started inside it.
 *   pipe IP PORT
 *       Connects to IP:PORT and copies stdin to it and it to stdout.
 *
 * Only Node's standard library: these start from dist/ without the CLI's dependencies.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

const SEED_FILES = new Set(['meta-data', 'user-data', 'vendor-data', 'network-config']);

function option(args: string[], name: string): string {
  const index = args.indexOf(`--${name}`);
  const value = index === -1 ? undefined : args[index + 1];
  if (value === undefined) throw new Error(`missing --${name}`);
  return value;
}

function hostPort(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at), port: Number(text.slice(at + 1)) };
}

function seedServer(args: string[]): void {
  const dir = option(args, 'dir');
  const log = option(args, 'log');
  const { host, port } = hostPort(option(args, 'listen'));
  const server = createHttpServer((request, response) => {
    const match = /^\/nocloud\/([a-z0-9-]+)\/([a-z-]+)$/.exec((request.url ?? '').split('?')[0] ?? '');
    let status = 404;
    let body: Buffer | undefined;
    if ((request.method === 'GET' || request.method === 'HEAD') && match !== null && SEED_FILES.has(match[2] ?? '')) {
      try {
        body = readFileSync(join(dir, match[1] ?? '', match[2] ?? ''));
        status = 200;
      } catch {
        // 404: cloud-init treats a missing vendor-data or network-config as absent.
      }
    }
    response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body?.length ?? 0 });
    response.end(request.method === 'HEAD' ? undefined : body);
    appendFileSync(log, `${JSON.stringify({ time: new Date().toISOString(), remote: request.socket.remoteAddress, method: request.method, path: request.url, status, bytes: body?.length ?? 0 })}\n`);
  });
  server.listen(port, host, () => appendFileSync(log, `${JSON.stringify({ time: new Date().toISOString(), listening: `${host}:${port}`, pid: process.pid })}\n`));
}

function apiForward(args: string[], self: string): void {
  const netns = option(args, 'netns');
  const target = hostPort(option(args, 'target'));
  const { host, port } = hostPort(option(args, 'listen'));
  const server = createServer((socket) => {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, self, 'pipe', target.host, String(target.port)], { stdio: ['pipe', 'pipe', 'ignore'] });
    socket.pipe(child.stdin);
    child.stdout.pipe(socket);
    const end = (): void => {
      socket.destroy();
      child.kill();
    };
    socket.on('error', end);
    socket.on('close', end);
    child.on('exit', () => socket.end());
    child.on('error', end);
  });
  server.listen(port, host);
}

function pipe(args: string[]): void {
  const [host, port] = args;
  const socket = connect(Number(port), host ?? '127.0.0.1');
  process.stdin.pipe(socket);
  socket.pipe(process.stdout);
  socket.on('error', () => process.exit(1));
  socket.on('close', () => process.exit(0));
  process.stdin.on('end', () => socket.end());
}

const [command, ...rest] = process.argv.slice(2);
const self = process.argv[1] ?? '';
if (command === 'seed-server') seedServer(rest);
else if (command === 'api-forward') apiForward(rest, self);
else if (command === 'pipe') pipe(rest);
else {
  process.stderr.write(`unknown helper ${String(command)}\n`);
  process.exit(2);
}
