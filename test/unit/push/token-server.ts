import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { run } from '../../../src/process/index.js';

/**
 * A minimal token service for the registry's `auth.token` mode: it checks Basic credentials and
 * issues ES256 JWTs carrying the certificate in `x5c`, which the registry verifies against its
 * `rootcertbundle`. The registry never sees passwords; this exercises the full Bearer flow.
 */
export interface StartedTokenServer extends AsyncDisposable {
  realm: string;
  service: string;
  issuer: string;
  certPath: string;
  /** Every token request: the scopes asked for, the service and who authenticated. */
  requests: { service: string | null; scopes: string[]; account: string | null; authenticated: boolean }[];
  close(): Promise<void>;
}

export async function startTokenServer(workDir: string, credentials: { username: string; password: string }): Promise<StartedTokenServer> {
  const keyPath = join(workDir, 'token-key.pem');
  const certPath = join(workDir, 'token-cert.pem');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=kib-test-token-issuer',
  ]);
  const key = createPrivateKey(await readFile(keyPath));
  const certDer = (await readFile(certPath, 'utf8')).replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const service = 'kib-test-registry';
  const issuer = 'kib-test-issuer';
  const requests: StartedTokenServer['requests'] = [];

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token.invalid');
    const expected = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    const authenticated = req.headers.authorization === expected;
    const scopes = url.searchParams.getAll('scope');
    requests.push({ service: url.searchParams.get('service'), scopes, account: url.searchParams.get('account'), authenticated });
    if (!authenticated) {
      res.writeHead(401, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      return type === undefined || name === undefined || actions === undefined ? [] : [{ type, name, actions: actions.split(',') }];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'ES256', typ: 'JWT', x5c: [certDer] };
    const claims = { iss: issuer, sub: credentials.username, aud: service, exp: now + 300, nbf: now - 30, iat: now, jti: randomUUID(), access };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
    const token = `${signingInput}.${signature.toString('base64url')}`;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = (): Promise<void> => new Promise((resolve) => server.close(() => resolve()));
  return { realm: `http://127.0.0.1:${port}/token`, service, issuer, certPath, requests, close, [Symbol.asyncDispose]: close };
}

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}
