import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { spawnDaemon, type StartedDaemon } from '../../../src/process/index.js';

/**
 * A real CNCF distribution registry (Debian's docker-registry) on 127.0.0.1 and a port of its own,
 * with filesystem storage in a temp dir. It is never the system service on port 5000.
 */
export interface StartedRegistry extends AsyncDisposable {
  /** `127.0.0.1:<port>` */
  host: string;
  url: string;
  logPath: string;
  daemon: StartedDaemon;
  stop(): Promise<void>;
}

export type RegistryAuthConfig =
  | { kind: 'none' }
  | { kind: 'htpasswd'; path: string }
  | { kind: 'token'; realm: string; service: string; issuer: string; rootCertBundle: string };

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export async function startRegistry(workDir: string, auth: RegistryAuthConfig = { kind: 'none' }): Promise<StartedRegistry> {
  await mkdir(workDir, { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: 'info', accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: join(workDir, 'data') }, delete: { enabled: true } },
    http: { addr: host, secret: 'kib-test-secret' },
  };
  if (auth.kind === 'htpasswd') config.auth = { htpasswd: { realm: 'kib-test', path: auth.path } };
  if (auth.kind === 'token') {
    config.auth = { token: { realm: auth.realm, service: auth.service, issuer: auth.issuer, rootcertbundle: auth.rootCertBundle } };
  }
  const configPath = join(workDir, 'config.yml');
  await writeFile(configPath, stringify(config));
  const logPath = join(workDir, 'registry.log');
  const daemon = spawnDaemon('docker-registry', ['serve', configPath], { stdoutFile: logPath, stderrFile: logPath });

  const deadline = performance.now() + 20_000;
  for (;;) {
    if (!daemon.isRunning()) {
      throw new Error(`docker-registry exited before it was ready:\n${await readFile(logPath, 'utf8').catch(() => '')}`);
    }
    const status = await probe(`http://${host}/v2/`);
    if (status === 200 || status === 401) break;
    if (performance.now() > deadline) {
      await daemon.stop();
      throw new Error(`docker-registry on ${host} not ready within 20 s; log: ${logPath}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const stop = async (): Promise<void> => {
    await daemon.stop({ graceMs: 0, termMs: 5_000 });
  };
  return { host, url: `http://${host}`, logPath, daemon, stop, [Symbol.asyncDispose]: stop };
}

function probe(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(undefined));
    req.setTimeout(1_000, () => req.destroy());
    req.end();
  });
}

/** GET from the registry API with optional basic or bearer auth; returns status, headers and body. */
export function registryGet(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
