import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { CancelledError } from '../core/errors.js';
import { RegistryAuthError, RegistryError, RegistryUnreachableError } from './errors.js';

export interface RegistryAuth {
  username: string;
  password: string;
}

export interface RegistryResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  url: string;
}

/** A request body: bytes, or a factory so the body can be sent again after an auth challenge. */
export type RequestBody = Buffer | (() => Readable);

export interface RequestOptions {
  headers?: Record<string, string | number>;
  body?: RequestBody;
  /** Statuses that count as success; anything else becomes a RegistryError. */
  expect: readonly number[];
  /** What the request does, for error messages ("the manifest upload"). */
  what: string;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const MAX_RESPONSE_BYTES = 1024 * 1024;
const USER_AGENT = 'kube-image-builder';

/**
 * The HTTP side of the OCI distribution API for one repository: sends requests, answers auth
 * challenges (Basic, or Bearer tokens from the realm named in `WWW-Authenticate`), and turns
 * failures into errors that name the registry and the status.
 */
export class RegistryClient {
  readonly registry: string;
  readonly baseUrl: URL;
  readonly repository: string;
  readonly #auth: RegistryAuth | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #agent: HttpAgent | HttpsAgent;
  #authorization: string | undefined;

  constructor(init: { registry: string; baseUrl: string; repository: string; auth?: RegistryAuth | undefined; signal?: AbortSignal | undefined }) {
    this.registry = init.registry;
    this.baseUrl = new URL(init.baseUrl);
    this.repository = init.repository;
    this.#auth = init.auth;
    this.#signal = init.signal;
    this.#agent = this.baseUrl.protocol === 'https:' ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  close(): void {
    this.#agent.destroy();
  }

  /** `GET /v2/`: checks the API is there and collects the auth challenge before any upload. */
  async ping(): Promise<void> {
    await this.request('GET', '/v2/', { expect: [200], what: 'the API version check' });
  }

  async request(method: string, target: string | URL, options: RequestOptions): Promise<RegistryResponse> {
    const url = typeof target === 'string' ? new URL(target, this.baseUrl) : target;
    let response: RegistryResponse | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const sameOrigin = url.origin === this.baseUrl.origin;
      const headers: Record<string, string | number> = { 'User-Agent': USER_AGENT, ...options.headers };
      if (this.#authorization !== undefined && sameOrigin) headers.Authorization = this.#authorization;
      response = await this.#send(method, url, headers, options.body);
      if (response.status !== 401 || !sameOrigin) break;
      const challenge = parseWwwAuthenticate(headerValue(response.headers['www-authenticate']));
      if (challenge === undefined || !(await this.#answer(challenge))) break;
    }
    if (response === undefined) throw new Error('unreachable');
    if (!options.expect.includes(response.status)) throw this.#errorFor(method, url, response, options.what);
    return response;
  }

  /** Sets the Authorization header for a challenge; false when there is nothing new to try. */
  async #answer(challenge: Challenge): Promise<boolean> {
    const scheme = challenge.scheme.toLowerCase();
    if (scheme === 'basic') {
      if (this.#auth === undefined) return false;
      const value = `Basic ${Buffer.from(`${this.#auth.username}:${this.#auth.password}`).toString('base64')}`;
      if (value === this.#authorization) return false;
      this.#authorization = value;
      return true;
    }
    if (scheme === 'bearer') {
      const realm = challenge.params.realm;
      if (realm === undefined) return false;
      const scopes = new Set([`repository:${this.repository}:pull,push`]);
      if (challenge.params.scope !== undefined) for (const scope of challenge.params.scope.split(' ')) scopes.add(scope);
      const token = await this.#fetchToken(realm, challenge.params.service, [...scopes]);
      const value = `Bearer ${token}`;
      if (value === this.#authorization) return false;
      this.#authorization = value;
      return true;
    }
    return false;
  }

  async #fetchToken(realm: string, service: string | undefined, scopes: readonly string[]): Promise<string> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError({ registry: this.registry, method: 'GET', url: realm, status: 401, what: 'an auth challenge', detail: `the token realm '${realm}' is not a URL` });
    }
    if (service !== undefined) url.searchParams.set('service', service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    if (this.#auth !== undefined) url.searchParams.set('account', this.#auth.username);
    const headers: Record<string, string> = { 'User-Agent': USER_AGENT };
    if (this.#auth !== undefined) {
      headers.Authorization = `Basic ${Buffer.from(`${this.#auth.username}:${this.#auth.password}`).toString('base64')}`;
    }
    const response = await this.#send('GET', url, headers, undefined);
    if (response.status !== 200) throw this.#errorFor('GET', url, response, 'the token request');
    let parsed: { token?: unknown; access_token?: unknown };
    try {
      parsed = JSON.parse(response.body.toString('utf8')) as typeof parsed;
    } catch {
      parsed = {};
    }
    const token = typeof parsed.token === 'string' ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : undefined;
    if (token === undefined || token === '') {
      throw new RegistryError({ registry: this.registry, method: 'GET', url: url.href, status: 200, what: 'the token request', detail: 'the answer holds no token' });
    }
    return token;
  }

  #errorFor(method: string, url: URL, response: RegistryResponse, what: string): RegistryError {
    const { codes, detail } = describeErrorBody(response.body);
    const init = { registry: this.registry, method, url: redact(url), status: response.status, what, detail, registryCodes: codes };
    if (response.status === 401 || response.status === 403) return new RegistryAuthError({ ...init, hasCredentials: this.#auth !== undefined });
    return new RegistryError(init);
  }

  #send(method: string, url: URL, headers: Record<string, string | number>, body: RequestBody | undefined): Promise<RegistryResponse> {
    if (this.#signal?.aborted === true) return Promise.reject(new CancelledError('Pushing the containerDisk'));
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const agent = url.origin === this.baseUrl.origin ? this.#agent : undefined;
    return new Promise<RegistryResponse>((resolve, reject) => {
      let settled = false;
      const fail = (error: unknown): void => {
        if (settled) return;
        settled = true;
        if (this.#signal?.aborted === true) reject(new CancelledError('Pushing the containerDisk'));
        else reject(new RegistryUnreachableError(this.registry, redact(url), error, hintForNetworkError(error, url)));
      };
      const req = send(url, { method, headers, ...(agent === undefined ? {} : { agent }), ...(this.#signal === undefined ? {} : { signal: this.#signal }) }, (res) => {
        const chunks: Buffer[] = [];
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received <= MAX_RESPONSE_BYTES) chunks.push(chunk);
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), url: url.href });
        });
        res.on('error', fail);
      });
      req.on('error', fail);
      if (body === undefined) {
        req.end();
      } else if (Buffer.isBuffer(body)) {
        req.end(body);
      } else {
        const stream = body();
        stream.on('error', (error) => {
          req.destroy(error);
          fail(error);
        });
        // The registry may answer (401, 400) before the body is sent; the response wins then.
        req.on('close', () => stream.destroy());
        stream.pipe(req);
      }
    });
  }
}

/** Parses `Bearer realm="…",service="…",scope="…"` (or Basic). */
export function parseWwwAuthenticate(header: string | undefined): Challenge | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (match === null) return undefined;
  const [, scheme = '', rest = ''] = match;
  const params: Record<string, string> = {};
  const pattern = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g;
  let param: RegExpExecArray | null;
  while ((param = pattern.exec(rest)) !== null) {
    if (param[1] === undefined) continue;
    params[param[1].toLowerCase()] = param[2] !== undefined ? param[2].replace(/\\(.)/g, '$1') : (param[3] ?? '');
  }
  return { scheme, params };
}

function describeErrorBody(body: Buffer): { codes: string[]; detail: string } {
  const text = body.toString('utf8').trim();
  if (text === '') return { codes: [], detail: '' };
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    if (Array.isArray(parsed.errors)) {
      const codes = parsed.errors.map((e) => String(e.code ?? 'UNKNOWN'));
      const detail = parsed.errors.map((e) => `${String(e.code ?? 'UNKNOWN')}: ${String(e.message ?? '')}`).join('; ');
      return { codes, detail };
    }
  } catch {
    // Not a distribution error body; fall through to the raw text.
  }
  return { codes: [], detail: text.length > 300 ? `${text.slice(0, 299)}…` : text };
}

function hintForNetworkError(error: unknown, url: URL): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (url.protocol === 'https:' && (code === 'EPROTO' || code.startsWith('ERR_SSL') || code === 'ECONNRESET')) {
    return 'If this registry speaks plain HTTP, allow it explicitly with the insecure-HTTP option.';
  }
  if (code === 'ECONNREFUSED') return `Nothing listens at ${url.host}; check the registry address and port.`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `The host name ${url.hostname} does not resolve.`;
  return undefined;
}

/** Upload URLs carry state tokens; messages keep only the path. */
function redact(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
