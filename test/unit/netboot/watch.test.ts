import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { renderDnsmasqHosts } from '../../../src/netboot/dnsmasq-config.js';
import { createNetbootHandler, machineTokenSource } from '../../../src/netboot/http.js';
import { bootstrapTokenSecret, connectMachineApi, KUBEADM_NODE_TOKEN_GROUP, type MachineApi } from '../../../src/netboot/kube.js';
import { MachineRegistry } from '../../../src/netboot/registry.js';

/**
 * The Machine watch and the bootstrap tokens against a fake API server on loopback: it serves a
 * Machine list with a resourceVersion, watch streams the test feeds event by event (or fails with
 * 500, or answers 410 Gone), status patches, and Secrets in kube-system (409 on a second create).
 */

interface Seen {
  method: string;
  url: string;
  contentType: string | undefined;
  body: string;
}

type WatchPlan = 'fail' | 'gone' | 'stream';

interface FakeApi {
  url: string;
  seen: Seen[];
  machines: Map<string, Record<string, unknown>>;
  secrets: Map<string, { data: Record<string, string> } & Record<string, unknown>>;
  /** What the next watch requests get, in order (then: stream). */
  watchPlans: WatchPlan[];
  /** Sends an event on the open watch stream (and applies it to the list). */
  push(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: Record<string, unknown>): void;
  /** Ends the open watch stream cleanly (as the API server does at its watch timeout). */
  endWatch(): void;
  watchOpen(): boolean;
  close(): Promise<void>;
}

const machineObject = (name: string, mac: string, ip: string, resourceVersion: string): Record<string, unknown> => ({
  apiVersion: 'netboot.kib.dev/v1alpha1',
  kind: 'Machine',
  metadata: { name, uid: `uid-${name}`, resourceVersion, creationTimestamp: '2026-01-01T00:00:00Z', generation: 1 },
  spec: { macAddress: mac, ipAddress: ip, role: 'worker' },
});

async function fakeApiServer(): Promise<FakeApi> {
  const seen: Seen[] = [];
  const machines = new Map<string, Record<string, unknown>>();
  const secrets = new Map<string, { data: Record<string, string> } & Record<string, unknown>>();
  const watchPlans: WatchPlan[] = [];
  let version = 10;
  let stream: ServerResponse | undefined;
  const machinesPath = '/apis/netboot.kib.dev/v1alpha1/machines';
  const server: Server = createServer((request: IncomingMessage, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      seen.push({ method: request.method ?? '', url: request.url ?? '', contentType: request.headers['content-type'], body });
      const url = new URL(request.url ?? '/', 'http://fake');
      response.setHeader('content-type', 'application/json');
      if (request.method === 'GET' && url.pathname === machinesPath && url.searchParams.get('watch') === 'true') {
        const plan = watchPlans.shift() ?? 'stream';
        if (plan === 'fail') {
          response.statusCode = 500;
          response.end(JSON.stringify({ kind: 'Status', status: 'Failure', code: 500 }));
          return;
        }
        response.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        if (plan === 'gone') {
          response.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 } })}\n`);
          return;
        }
        stream = response;
        response.write('');
        return;
      }
      if (request.method === 'GET' && url.pathname === machinesPath) {
        response.end(JSON.stringify({ apiVersion: 'netboot.kib.dev/v1alpha1', kind: 'MachineList', metadata: { resourceVersion: String(version) }, items: [...machines.values()] }));
        return;
      }
      if (request.method === 'PATCH' && url.pathname.startsWith(`${machinesPath}/`)) {
        response.end(body === '' ? '{}' : body);
        return;
      }
      const secretsPath = '/api/v1/namespaces/kube-system/secrets';
      if (request.method === 'POST' && url.pathname === secretsPath) {
        const secret = JSON.parse(body) as { metadata: { name: string }; stringData: Record<string, string> };
        if (secrets.has(secret.metadata.name)) {
          response.statusCode = 409;
          response.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'AlreadyExists', code: 409 }));
          return;
        }
        const data = Object.fromEntries(Object.entries(secret.stringData).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
        const { stringData: _stringData, ...rest } = secret;
        secrets.set(secret.metadata.name, { ...rest, data });
        response.statusCode = 201;
        response.end(JSON.stringify({ ...rest, data }));
        return;
      }
      if (request.method === 'GET' && url.pathname.startsWith(`${secretsPath}/`)) {
        const secret = secrets.get(url.pathname.slice(secretsPath.length + 1));
        response.statusCode = secret === undefined ? 404 : 200;
        response.end(JSON.stringify(secret ?? { kind: 'Status', code: 404 }));
        return;
      }
      response.statusCode = 404;
      response.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    machines,
    secrets,
    watchPlans,
    push(type, object) {
      version += 1;
      const name = (object.metadata as { name: string }).name;
      const stamped = { ...object, metadata: { ...(object.metadata as object), resourceVersion: String(version) } };
      if (type === 'DELETED') machines.delete(name);
      else machines.set(name, stamped);
      stream?.write(`${JSON.stringify({ type, object: stamped })}\n`);
    },
    endWatch() {
      stream?.end();
      stream = undefined;
    },
    watchOpen: () => stream !== undefined && !stream.writableEnded,
    close: () =>
      new Promise((resolve) => {
        stream?.end();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('Machines watched through the Kubernetes API (fake API server on loopback)', () => {
  let dir: string;
  let api: FakeApi;
  let client: MachineApi;

  beforeEach(async () => {
    api = await fakeApiServer();
    dir = await mkdtemp(join(tmpdir(), 'kib-watch-'));
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        `clusters: [{name: fake, cluster: {server: "${api.url}", insecure-skip-tls-verify: true}}]`,
        'users: [{name: u, user: {token: t0ken}}]',
        'contexts: [{name: c, context: {cluster: fake, user: u}}]',
        'current-context: c',
        '',
      ].join('\n'),
    );
    client = await connectMachineApi(kubeconfig);
  });

  afterEach(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a Machine added after start is served (DHCP host line, stage2), a deleted one no longer is; the watch reconnects with backoff and resourceVersion, and relists on 410', async () => {
    api.machines.set('nb-a', machineObject('nb-a', '52:54:00:00:00:0a', '10.0.0.10', '9'));
    // The first watch fails (500): the watcher waits and tries again from the list's version.
    api.watchPlans.push('fail');
    const machinesDir = join(dir, 'machines');
    await mkdir(machinesDir);
    const hostsFile = join(dir, 'dnsmasq.hosts');
    const warnings: string[] = [];
    const registry = new MachineRegistry({ machinesDir, writeStatus: (name, status) => client.writeStatus(name, status) });
    const stage2Dir = join(dir, 'stage2');
    await mkdir(stage2Dir);
    await writeFile(join(stage2Dir, 'vmlinuz'), 'kernel');
    await writeFile(join(stage2Dir, 'initrd'), 'initrd');
    const handler = createNetbootHandler({
      registry,
      image: { zstPath: join(dir, 'image.zst'), sha256: 'f'.repeat(64), sizeBytes: 1 << 20, head: Buffer.alloc(0) },
      stage2: { kernelPath: join(stage2Dir, 'vmlinuz'), initrdPath: join(stage2Dir, 'initrd') },
      server: 'http://10.0.0.1:8080',
      seedsDir: join(dir, 'seeds'),
      sshAuthorizedKeys: [],
      log: () => undefined,
    });
    const http = createServer((request, response) => void handler(request, response));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const get = async (path: string): Promise<{ status: number; text: string }> => {
      const response = await fetch(`${base}${path}`);
      return { status: response.status, text: await response.text() };
    };
    const stop = new AbortController();
    const watching = client.watchMachines({
      signal: stop.signal,
      backoff: { initialMs: 50, maxMs: 200 },
      log: (line, level) => {
        if (level === 'warn') warnings.push(line);
      },
      onChange: async (machines) => {
        // What the service does on a change: the registry, then the hosts file dnsmasq re-reads.
        await registry.replace(machines);
        await writeFile(hostsFile, renderDnsmasqHosts(registry.list()));
      },
    });
    try {
      await until('the listed Machine', () => registry.byName('nb-a') !== undefined);
      await until('the watch after the failed one', () => api.watchOpen());
      const watches = () => api.seen.filter((request) => request.url.includes('watch=true'));
      expect(watches()).toHaveLength(2);
      expect(watches().every((request) => request.url.includes('resourceVersion=10'))).toBe(true);
      expect(watches().every((request) => /timeoutSeconds=\d+/.test(request.url) && request.url.includes('allowWatchBookmarks=true'))).toBe(true);
      expect(warnings.some((line) => /watch failed/.test(line))).toBe(true);

      // Not a Machine yet: no host line, and iPXE is told this MAC is unknown.
      expect(await readFile(hostsFile, 'utf8')).not.toContain('52:54:00:00:00:0b');
      expect((await get('/ipxe/52-54-00-00-00-0b')).text).toContain('not a known Machine');

      api.push('ADDED', machineObject('nb-b', '52:54:00:00:00:0b', '10.0.0.11', ''));
      await until('nb-b in the hosts file', async () => (await readFile(hostsFile, 'utf8')).includes('52:54:00:00:00:0b,10.0.0.11,nb-b,infinite\n'));
      const script = await get('/ipxe/52-54-00-00-00-0b');
      expect(script.text).toContain('kernel http://10.0.0.1:8080/stage2/vmlinuz');
      expect(script.text).toContain('kib.mac=52:54:00:00:00:0b');
      expect((await get('/instructions/52:54:00:00:00:0b')).text).toContain("KIB_NAME='nb-b'");
      expect(registry.status('nb-b')?.phase).toBe('booting');
      await registry.flushed();
      // The status is written back: to the state file and to the status subresource.
      expect(existsSync(join(machinesDir, 'nb-b.json'))).toBe(true);
      await until('the booting status patch', () =>
        api.seen.some((request) => request.method === 'PATCH' && request.url.endsWith('/machines/nb-b/status') && request.body.includes('"booting"')),
      );

      // A change of spec takes effect too (a new address for nb-b).
      api.push('MODIFIED', machineObject('nb-b', '52:54:00:00:00:0b', '10.0.0.21', ''));
      await until('nb-b moved', async () => (await readFile(hostsFile, 'utf8')).includes('52:54:00:00:00:0b,10.0.0.21,nb-b,infinite\n'));
      expect(registry.byName('nb-b')?.spec.ipAddress).toBe('10.0.0.21');

      api.push('DELETED', machineObject('nb-a', '52:54:00:00:00:0a', '10.0.0.10', ''));
      await until('nb-a gone from the hosts file', async () => !(await readFile(hostsFile, 'utf8')).includes('52:54:00:00:00:0a'));
      expect(registry.byName('nb-a')).toBeUndefined();
      expect((await get('/ipxe/52:54:00:00:00:0a')).text).toContain('not a known Machine');
      expect((await get('/instructions/52:54:00:00:00:0a')).status).toBe(404);

      // The server ends the watch: it is resumed from the last version seen (13), which is then
      // too old (410 Gone): the watcher lists again and watches from the new list's version.
      api.watchPlans.push('gone');
      const listsBefore = api.seen.filter((request) => request.method === 'GET' && !request.url.includes('watch=true') && request.url.includes('/machines')).length;
      await new Promise((resolve) => setTimeout(resolve, 60));
      api.endWatch();
      await until('a watch again after the relist', () => api.watchOpen() && watches().length >= 4);
      expect(watches()[2]?.url).toContain('resourceVersion=13');
      const lists = api.seen.filter((request) => request.method === 'GET' && !request.url.includes('watch=true') && request.url.includes('/machines')).length;
      expect(lists).toBe(listsBefore + 1);
      expect(registry.list().map((machine) => machine.metadata.name)).toEqual(['nb-b']);

      // A Machine that fails the schema is left out with a warning; the others stay.
      api.push('ADDED', { ...machineObject('nb-c', 'not-a-mac', '10.0.0.12', ''), spec: { macAddress: 'not-a-mac', ipAddress: '10.0.0.12' } });
      await until('the warning', () => warnings.some((line) => line.includes('nb-c')));
      expect(registry.list().map((machine) => machine.metadata.name)).toEqual(['nb-b']);
    } finally {
      stop.abort();
      await watching;
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  });

  it('creates the bootstrap token Secret kubeadm reads, once per Machine install, before handing out the user-data', async () => {
    const registry = new MachineRegistry({ machinesDir: dir });
    api.machines.set('nb-a', machineObject('nb-a', '52:54:00:00:00:0a', '10.0.0.10', '9'));
    await registry.replace([(await client.listMachines())[0]!]);
    const token = machineTokenSource({ tokenSecret: 'the-secret', createToken: (spec) => client.createBootstrapToken(spec), ttlMs: 3_600_000 });
    const handler = createNetbootHandler({
      registry,
      image: { zstPath: join(dir, 'image.zst'), sha256: 'f'.repeat(64), sizeBytes: 1 << 20, head: Buffer.alloc(0) },
      stage2: { kernelPath: join(dir, 'k'), initrdPath: join(dir, 'i') },
      server: 'http://10.0.0.1:8080',
      seedsDir: join(dir, 'seeds'),
      sshAuthorizedKeys: [],
      join: { endpoint: '10.0.0.1:6443', caCertHash: `sha256:${'ab'.repeat(32)}`, token },
      log: () => undefined,
    });
    const http = createServer((request, response) => void handler(request, response));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const before = Date.now();
      const userData = await (await fetch(`http://127.0.0.1:${(http.address() as AddressInfo).port}/nocloud/nb-a/user-data`)).text();
      const match = /--token ([a-z0-9]{6})\.([a-z0-9]{16})/.exec(userData);
      expect(match).not.toBeNull();
      const [, id, secret] = match!;
      const posts = api.seen.filter((request) => request.method === 'POST');
      expect(posts).toHaveLength(1);
      expect(posts[0]?.url).toBe('/api/v1/namespaces/kube-system/secrets');
      const body = JSON.parse(posts[0]!.body) as { metadata: { name: string; namespace: string }; type: string; stringData: Record<string, string> };
      expect(body.metadata).toMatchObject({ name: `bootstrap-token-${id!}`, namespace: 'kube-system' });
      expect(body.type).toBe('bootstrap.kubernetes.io/token');
      expect(body.stringData).toMatchObject({
        'token-id': id,
        'token-secret': secret,
        'usage-bootstrap-authentication': 'true',
        'usage-bootstrap-signing': 'true',
        'auth-extra-groups': KUBEADM_NODE_TOKEN_GROUP,
      });
      expect(body.stringData.description).toContain('nb-a');
      expect(body.stringData.expiration).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const expires = Date.parse(body.stringData.expiration!);
      expect(expires).toBeGreaterThanOrEqual(before + 3_600_000 - 1_000);
      expect(expires).toBeLessThanOrEqual(Date.now() + 3_600_000);

      // The same install again: no second create. Another service (a restart) meets 409 and finds its own token.
      await fetch(`http://127.0.0.1:${(http.address() as AddressInfo).port}/nocloud/nb-a/user-data`);
      expect(api.seen.filter((request) => request.method === 'POST')).toHaveLength(1);
      await client.createBootstrapToken({ token: `${id!}.${secret!}`, expiration: new Date(expires), description: 'again' });
      expect(api.seen.filter((request) => request.method === 'POST')).toHaveLength(2);
      // A different secret under the same id is refused, not overwritten.
      await expect(client.createBootstrapToken({ token: `${id!}.${'0'.repeat(16)}`, expiration: new Date(expires), description: 'other' })).rejects.toThrow(/holds another token/);
    } finally {
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  });

  it('the offline path needs no cluster: the token is derived from the secret file alone', async () => {
    const token = machineTokenSource({ tokenSecret: 'the-secret' });
    const machine = (await (async () => {
      api.machines.set('nb-a', machineObject('nb-a', '52:54:00:00:00:0a', '10.0.0.10', '9'));
      return client.listMachines();
    })())[0]!;
    const seenBefore = api.seen.length;
    expect(await token(machine, 'install-1')).toMatch(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    expect(await token(machine, 'install-1')).toBe(await token(machine, 'install-1'));
    expect(await token(machine, 'install-2')).not.toBe(await token(machine, 'install-1'));
    expect(api.seen.length).toBe(seenBefore);
  });

  it('the Secret shape: name from the token id, RFC 3339 expiration without fractions', () => {
    const secret = bootstrapTokenSecret({ token: 'abcdef.0123456789abcdef', expiration: new Date('2030-01-02T03:04:05.678Z'), description: 'd' });
    expect(secret.metadata.name).toBe('bootstrap-token-abcdef');
    expect(secret.stringData.expiration).toBe('2030-01-02T03:04:05Z');
    expect(() => bootstrapTokenSecret({ token: 'ABCDEF.0123456789abcdef', expiration: new Date(), description: 'd' })).toThrow(/not a bootstrap token/);
  });
});
