import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../../src/process/index.js';
import { RegistryAuthError } from '../../../src/push/errors.js';
import { pushContainerDisk } from '../../../src/push/push-container-disk.js';
import { createOciArchive, type OciArchiveFixture } from '../../support/oci-fixture.js';
import { registryGet, startRegistry, type StartedRegistry } from './registry-fixture.js';
import { startTokenServer, type StartedTokenServer } from './token-server.js';

const USER = 'builder';
const PASSWORD = 'correct horse battery staple';

let work: string;
let archive: OciArchiveFixture;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kib-push-auth-'));
  archive = await createOciArchive(join(work, 'containerdisk.tar'), { diskBytes: 256 * 1024 });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('basic auth (htpasswd, bcrypt)', () => {
  let registry: StartedRegistry;

  beforeAll(async () => {
    const htpasswd = join(work, 'htpasswd');
    // The registry accepts only bcrypt entries in htpasswd files.
    await writeFile(htpasswd, `${USER}:${bcrypt.hashSync(PASSWORD, 8)}\n`);
    registry = await startRegistry(join(work, 'basic'), { kind: 'htpasswd', path: htpasswd });
  }, 60_000);

  afterAll(async () => {
    await registry.stop();
  });

  it('pushes with the right credentials', async () => {
    const result = await pushContainerDisk({
      archivePath: archive.path,
      reference: `${registry.host}/kib/basic:v1`,
      auth: { username: USER, password: PASSWORD },
      chunkSizeBytes: 64 * 1024,
    });
    expect(result.digest).toBe(archive.rootDigest);
    expect(result.uploadedBlobs).toBe(2);
    const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
    const manifest = await registryGet(`${registry.url}/v2/kib/basic/manifests/v1`, {
      Authorization: basic,
      Accept: 'application/vnd.oci.image.manifest.v1+json',
    });
    expect(manifest.status).toBe(200);
    expect(manifest.headers['docker-content-digest']).toBe(archive.rootDigest);
  });

  it('fails without credentials with REGISTRY_AUTH, the registry, the status and a hint', async () => {
    const error = await pushContainerDisk({ archivePath: archive.path, reference: `${registry.host}/kib/basic:v2` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryAuthError);
    const authError = error as RegistryAuthError;
    expect(authError.code).toBe('REGISTRY_AUTH');
    expect(authError.status).toBe(401);
    expect(authError.message).toContain(registry.host);
    expect(authError.message).toContain('401');
    expect(authError.hint).toMatch(/requires credentials/);
  });

  it('fails with a wrong password with a hint to check the credentials', async () => {
    const error = await pushContainerDisk({
      archivePath: archive.path,
      reference: `${registry.host}/kib/basic:v3`,
      auth: { username: USER, password: 'wrong' },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryAuthError);
    expect((error as RegistryAuthError).hint).toMatch(/Check the user name and password/);
  });
});

describe('bearer tokens from the WWW-Authenticate realm', () => {
  let tokens: StartedTokenServer;
  let registry: StartedRegistry;

  beforeAll(async () => {
    tokens = await startTokenServer(work, { username: USER, password: PASSWORD });
    registry = await startRegistry(join(work, 'token'), {
      kind: 'token',
      realm: tokens.realm,
      service: tokens.service,
      issuer: tokens.issuer,
      rootCertBundle: tokens.certPath,
    });
  }, 60_000);

  afterAll(async () => {
    await registry.stop();
    await tokens.close();
  });

  it('gets a token for push scope with basic credentials and pushes', async () => {
    const result = await pushContainerDisk({
      archivePath: archive.path,
      reference: `${registry.host}/kib/token:v1`,
      auth: { username: USER, password: PASSWORD },
      chunkSizeBytes: 64 * 1024,
    });
    expect(result.digest).toBe(archive.rootDigest);
    expect(tokens.requests.length).toBeGreaterThan(0);
    for (const request of tokens.requests) {
      expect(request.service).toBe(tokens.service);
      expect(request.authenticated).toBe(true);
      expect(request.account).toBe(USER);
      expect(request.scopes).toContain('repository:kib/token:pull,push');
    }
    // The registry itself confirms: skopeo sees the image through the same token service.
    const { stdout } = await run(
      'skopeo',
      ['inspect', '--tls-verify=false', '--creds', `${USER}:${PASSWORD}`, `docker://${registry.host}/kib/token:v1`],
      { timeoutMs: 60_000 },
    );
    expect((JSON.parse(stdout) as { Digest: string }).Digest).toBe(archive.rootDigest);
  });

  it('reports a rejected token request as an auth error naming the registry', async () => {
    const error = await pushContainerDisk({
      archivePath: archive.path,
      reference: `${registry.host}/kib/token:v2`,
      auth: { username: USER, password: 'wrong' },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryAuthError);
    expect((error as RegistryAuthError).message).toContain('the token request');
    expect((error as RegistryAuthError).message).toContain(registry.host);
    expect((error as RegistryAuthError).status).toBe(401);
  });

  it('fails anonymously with a hint that credentials are needed', async () => {
    const error = await pushContainerDisk({ archivePath: archive.path, reference: `${registry.host}/kib/token:v3` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryAuthError);
    expect((error as RegistryAuthError).hint).toMatch(/requires credentials/);
  });
});
