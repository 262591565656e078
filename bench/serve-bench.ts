/**
 * Throughput of `kib serve` against nginx (sendfile) for the download CDI does: whole multi-GiB
 * files over HTTP. Both servers run side by side in the same run, on 127.0.0.1 only, serving the
 * same 1 GiB artifact; the same clients download it with 1 and 8 concurrent connections: Node's
 * http client, and curl (when installed), which costs less CPU per byte than Node. Each
 * server runs in its own process, so neither shares an event loop or a CPU budget with the client.
 *
 *   npm run bench:serve                        # 1 GiB, 2 rounds
 *   npm run bench:serve -- --size-mib 256 --rounds 1
 */
import { createHash, randomFillSync } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool, run, spawnDaemon, type StartedDaemon } from '../src/process/index.js';
import type { ArtifactServerOptions } from '../src/serve/artifact-server.js';

const MIB = 1024 * 1024;

interface Options {
  sizeMiB: number;
  rounds: number;
  concurrencies: number[];
  clients: ('node' | 'curl')[];
}

function parseOptions(argv: readonly string[]): Options {
  const options: Options = { sizeMiB: 1024, rounds: 2, concurrencies: [1, 8], clients: findTool('curl') === undefined ? ['node'] : ['node', 'curl'] };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === '--size-mib' && value !== undefined) options.sizeMiB = Number(value);
    else if (argv[i] === '--rounds' && value !== undefined) options.rounds = Number(value);
    else if (argv[i] === '--concurrency' && value !== undefined) options.concurrencies = value.split(',').map(Number);
    else if (argv[i] === '--client' && value !== undefined) options.clients = value.split(',').filter((c): c is 'node' | 'curl' => c === 'node' || c === 'curl');
    else continue;
    i++;
  }
  return options;
}

/** Writes `sizeBytes` of random data and returns its sha256 (random data defeats any compression). */
async function writeRandomFile(path: string, sizeBytes: number): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(path, 'w');
  try {
    const chunk = Buffer.alloc(16 * MIB);
    for (let written = 0; written < sizeBytes; written += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, sizeBytes - written));
      randomFillSync(part);
      hash.update(part);
      await handle.write(part);
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** Downloads `url` once, discarding the body; returns bytes received (and the digest when asked). */
function download(agent: Agent, url: string, withDigest: boolean): Promise<{ bytes: number; sha256: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`${url}: HTTP ${String(res.statusCode)}`));
        return;
      }
      const hash = withDigest ? createHash('sha256') : undefined;
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        hash?.update(chunk);
      });
      res.on('end', () => resolve({ bytes, sha256: hash?.digest('hex') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function measure(
  client: 'node' | 'curl',
  url: string,
  clients: number,
  downloadsPerClient: number,
  expectedBytes: number,
): Promise<{ seconds: number; mibPerSecond: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const once = async (): Promise<number> => {
    if (client === 'node') return (await download(agent, url, false)).bytes;
    const { stdout } = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{size_download}', url], { timeoutMs: 600_000 });
    return Number(stdout.trim());
  };
  try {
    const started = performance.now();
    let total = 0;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let i = 0; i < downloadsPerClient; i++) {
          const bytes = await once();
          if (bytes !== expectedBytes) throw new Error(`${url}: got ${bytes} bytes, expected ${expectedBytes}`);
          total += bytes;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    return { seconds, mibPerSecond: total / MIB / seconds };
  } finally {
    agent.destroy();
  }
}

async function startNginx(prefix: string, root: string, port: number): Promise<StartedDaemon> {
  for (const dir of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(prefix, 'tmp', dir), { recursive: true });
  const conf = `
worker_processes 1;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  default_type application/octet-stream;
  client_body_temp_path ${join(prefix, 'tmp/body')};
  proxy_temp_path ${join(prefix, 'tmp/proxy')};
  fastcgi_temp_path ${join(prefix, 'tmp/fastcgi')};
  uwsgi_temp_path ${join(prefix, 'tmp/uwsgi')};
  scgi_temp_path ${join(prefix, 'tmp/scgi')};
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`;
  const confPath = join(prefix, 'nginx.conf');
  await writeFile(confPath, conf);
  const daemon = spawnDaemon('nginx', ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', confPath, '-g', 'daemon off;'], {
    stdoutFile: join(prefix, 'stdout.log'),
    stderrFile: join(prefix, 'stdout.log'),
  });
  return daemon;
}

/** Runs `startArtifactServer` in a child Node process, the way `kib serve` runs it. */
async function startKibServer(work: string, root: string, port: number): Promise<StartedDaemon> {
  const serverModule = new URL('../src/serve/artifact-server.js', import.meta.url).href;
  const options: ArtifactServerOptions = { dir: root, host: '127.0.0.1', port };
  const script = [
    `const { startArtifactServer } = await import(${JSON.stringify(serverModule)});`,
    `const server = await startArtifactServer(${JSON.stringify(options)});`,
    `process.on('SIGTERM', () => { server.close().then(() => process.exit(0)); });`,
  ].join('\n');
  return spawnDaemon(process.execPath, ['--input-type=module', '-e', script], {
    stdoutFile: join(work, 'kib-serve.log'),
    stderrFile: join(work, 'kib-serve.log'),
  });
}

async function waitForOk(url: string, daemon: StartedDaemon | undefined): Promise<void> {
  const deadline = performance.now() + 15_000;
  for (;;) {
    if (daemon !== undefined && !daemon.isRunning()) throw new Error(`server for ${url} exited during startup`);
    const status = await new Promise<number | undefined>((resolve) => {
      const req = request(url, { method: 'HEAD', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', () => resolve(undefined));
      req.end();
    });
    if (status === 200) return;
    if (performance.now() > deadline) throw new Error(`${url} not ready within 15 s (last status ${String(status)})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const sizeBytes = options.sizeMiB * MIB;
  const work = await mkdtemp(join(tmpdir(), 'kib-serve-bench-'));
  // nginx workers run as an unprivileged user when started by root: the tree must be world-readable.
  await chmod(work, 0o755);
  const output = join(work, 'output');
  const artifactDir = join(output, 'bench');
  await mkdir(artifactDir, { recursive: true, mode: 0o755 });
  await chmod(output, 0o755);
  let nginx: StartedDaemon | undefined;
  let kib: StartedDaemon | undefined;
  try {
    const digest = await writeRandomFile(join(artifactDir, 'bench.raw'), sizeBytes);
    await chmod(join(artifactDir, 'bench.raw'), 0o644);
    await writeFile(join(artifactDir, 'SHA256SUMS'), `${digest}  bench.raw\n`, { mode: 0o644 });

    const kibPort = await freePort();
    kib = await startKibServer(work, output, kibPort);
    const nginxPort = await freePort();
    nginx = await startNginx(join(work, 'nginx'), output, nginxPort);
    const urls = { kib: `http://127.0.0.1:${kibPort}/bench/bench.raw`, nginx: `http://127.0.0.1:${nginxPort}/bench/bench.raw` };
    await waitForOk(urls.kib, kib);
    await waitForOk(urls.nginx, nginx);

    const nginxVersion = (await run('nginx', ['-v'])).stderr.trim();
    const lines: string[] = [];
    const say = (line: string): void => {
      lines.push(line);
      process.stdout.write(`${line}\n`);
    };
    say(`kib serve vs nginx — ${new Date().toISOString()}`);
    say(`node ${process.version} (kib serve in its own process); ${nginxVersion} (worker_processes 1, sendfile on, tcp_nopush on, access_log off)`);
    say(`host: ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    say(`file: ${options.sizeMiB} MiB random data on 127.0.0.1; clients: ${options.clients.join(', ')} (node: http keep-alive agent; curl: one process per download); best of ${options.rounds} round(s)`);

    // Correctness first (untimed): both servers deliver exactly the file.
    for (const [name, url] of Object.entries(urls)) {
      const agent = new Agent({ keepAlive: false });
      const { bytes, sha256 } = await download(agent, url, true);
      agent.destroy();
      if (bytes !== sizeBytes || sha256 !== digest) throw new Error(`${name} served wrong content (${bytes} bytes, sha256 ${String(sha256)})`);
    }
    say('content check: both servers returned the file with the expected sha256');
    say('');
    say('client  server  connections  downloads  seconds  MiB/s');

    const best: Record<string, number> = {};
    for (const client of options.clients) {
      for (const clients of options.concurrencies) {
        const downloadsPerClient = clients === 1 ? 3 : 1;
        for (let round = 0; round < options.rounds; round++) {
          // Alternate which server goes first so neither always gets the warmer page cache.
          const order = round % 2 === 0 ? (['kib', 'nginx'] as const) : (['nginx', 'kib'] as const);
          for (const name of order) {
            const result = await measure(client, urls[name], clients, downloadsPerClient, sizeBytes);
            const key = `${client}/${name}/${clients}`;
            best[key] = Math.max(best[key] ?? 0, result.mibPerSecond);
            say(
              `${client.padEnd(6)}  ${name.padEnd(6)}  ${String(clients).padStart(11)}  ${String(clients * downloadsPerClient).padStart(9)}  ${result.seconds.toFixed(2).padStart(7)}  ${result.mibPerSecond.toFixed(0).padStart(5)}`,
            );
          }
        }
      }
    }
    say('');
    say('best per configuration:');
    for (const client of options.clients) {
      for (const clients of options.concurrencies) {
        const ours = best[`${client}/kib/${clients}`] ?? 0;
        const theirs = best[`${client}/nginx/${clients}`] ?? 0;
        say(
          `${client} client, ${clients} connection(s): kib ${ours.toFixed(0)} MiB/s, nginx ${theirs.toFixed(0)} MiB/s, ratio kib/nginx ${(ours / theirs).toFixed(2)}`,
        );
      }
    }
    say(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  } finally {
    await kib?.stop({ termMs: 5_000 });
    await nginx?.stop({ termMs: 5_000 });
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`serve-bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
