import { describe, expect, it } from 'vitest';
import { ImageReferenceError } from '../../../src/push/errors.js';
import { formatImageReference, isLoopbackHost, parseImageReference, registryBaseUrl } from '../../../src/push/reference.js';
import { parseWwwAuthenticate } from '../../../src/push/registry-client.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

describe('parseImageReference', () => {
  it.each([
    ['registry.example.com/kib/rocky-9:v1.36.1', { registry: 'registry.example.com', hostname: 'registry.example.com', repository: 'kib/rocky-9', tag: 'v1.36.1', digest: undefined }],
    ['127.0.0.1:5000/rocky', { registry: '127.0.0.1:5000', hostname: '127.0.0.1', repository: 'rocky', tag: 'latest', digest: undefined }],
    ['localhost/a/b/c', { registry: 'localhost', hostname: 'localhost', repository: 'a/b/c', tag: 'latest', digest: undefined }],
    ['localhost:5000/x@' + DIGEST, { registry: 'localhost:5000', hostname: 'localhost', repository: 'x', tag: undefined, digest: DIGEST }],
    ['[::1]:5000/x/y:t@' + DIGEST, { registry: '[::1]:5000', hostname: '::1', repository: 'x/y', tag: 't', digest: DIGEST }],
    ['quay.io/capk/ubuntu-2404-container-disk:v1.34.1', { registry: 'quay.io', hostname: 'quay.io', repository: 'capk/ubuntu-2404-container-disk', tag: 'v1.34.1', digest: undefined }],
    ['reg.io/a__b/c.d-e_f:V_1.2-rc', { registry: 'reg.io', hostname: 'reg.io', repository: 'a__b/c.d-e_f', tag: 'V_1.2-rc', digest: undefined }],
  ])('%s', (text, expected) => {
    const parsed = parseImageReference(text);
    expect(parsed).toEqual(expected);
  });

  it.each([
    ['', /empty/],
    ['ubuntu:22.04', /names no registry host/],
    ['library/ubuntu', /does not look like a registry host/],
    ['reg.io/Upper/case', /lowercase/],
    ['reg.io/', /repository name is empty/],
    ['reg.io/a//b', /component ''/],
    ['reg.io/a:bad tag', /tag 'bad tag'/],
    ['reg.io/a@sha256:xyz', /not a sha256 digest/],
    ['reg.io:99999/a', /not a valid port/],
    ['reg.io:0/a', /not a valid port/],
    ['bad_host.io/a', /is not a registry host/],
    [' reg.io/a', /surrounding spaces/],
  ])('rejects %j', (text, problem) => {
    expect(() => parseImageReference(text)).toThrow(ImageReferenceError);
    expect(() => parseImageReference(text)).toThrow(problem);
  });

  it('round-trips through formatImageReference', () => {
    for (const text of ['reg.io/a/b:t', `reg.io:5000/a@${DIGEST}`, `[::1]:5000/a:t@${DIGEST}`]) {
      expect(formatImageReference(parseImageReference(text))).toBe(text);
    }
  });
});

describe('registryBaseUrl', () => {
  it('uses HTTPS except for loopback hosts or when plain HTTP is asked for', () => {
    expect(registryBaseUrl(parseImageReference('reg.example.com/a:b'))).toBe('https://reg.example.com');
    expect(registryBaseUrl(parseImageReference('reg.example.com:5000/a:b'), true)).toBe('http://reg.example.com:5000');
    expect(registryBaseUrl(parseImageReference('localhost:5000/a'))).toBe('http://localhost:5000');
    expect(registryBaseUrl(parseImageReference('127.0.0.1:5000/a'))).toBe('http://127.0.0.1:5000');
    expect(registryBaseUrl(parseImageReference('[::1]:5000/a'))).toBe('http://[::1]:5000');
    expect(registryBaseUrl(parseImageReference('10.0.0.1:5000/a'))).toBe('https://10.0.0.1:5000');
    expect(registryBaseUrl(parseImageReference('docker.io/library/x:1'))).toBe('https://registry-1.docker.io');
  });

  it('counts only localhost, 127/8 and ::1 as loopback', () => {
    expect(isLoopbackHost('127.1.2.3')).toBe(true);
    expect(isLoopbackHost('localhost.example.com')).toBe(false);
    expect(isLoopbackHost('128.0.0.1')).toBe(false);
    expect(isLoopbackHost('::2')).toBe(false);
  });
});

describe('parseWwwAuthenticate', () => {
  it('reads a Bearer challenge with quoted parameters', () => {
    expect(
      parseWwwAuthenticate('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"'),
    ).toEqual({
      scheme: 'Bearer',
      params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' },
    });
  });

  it('reads Basic challenges and unquoted values', () => {
    expect(parseWwwAuthenticate('Basic realm="kib test"')).toEqual({ scheme: 'Basic', params: { realm: 'kib test' } });
    expect(parseWwwAuthenticate('Bearer realm=http://x/token, service=svc')).toEqual({
      scheme: 'Bearer',
      params: { realm: 'http://x/token', service: 'svc' },
    });
    expect(parseWwwAuthenticate(undefined)).toBeUndefined();
  });
});
