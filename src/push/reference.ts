import { ImageReferenceError } from './errors.js';

export interface ImageReference {
  /** `host`, `host:port` or `[v6]:port`, as written. */
  registry: string;
  /** Host name without brackets or port (for the loopback check). */
  hostname: string;
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOSTNAME = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/**
 * Parses `host[:port]/repository[:tag][@sha256:digest]`. The registry host is required: an image
 * built here is never meant to land on a default registry by accident. A reference without tag
 * and digest gets the tag `latest`, as container tools do.
 */
export function parseImageReference(text: string): ImageReference {
  const fail = (problem: string): never => {
    throw new ImageReferenceError(text, problem);
  };
  if (text !== text.trim() || text === '') fail('it is empty or has surrounding spaces');
  const slash = text.indexOf('/');
  if (slash < 0) fail('it names no registry host (expected host[:port]/repository)');
  const registry = text.slice(0, slash);
  let rest = text.slice(slash + 1);

  let hostname: string;
  let port: string | undefined;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(registry);
  if (v6 !== null) {
    hostname = v6[1] ?? '';
    port = v6[2];
  } else {
    const colon = registry.lastIndexOf(':');
    hostname = colon < 0 ? registry : registry.slice(0, colon);
    port = colon < 0 ? undefined : registry.slice(colon + 1);
    if (!HOSTNAME.test(hostname)) fail(`'${registry}' is not a registry host`);
    // "library/ubuntu" has no dot, colon or localhost in its first part: it is a path, not a host.
    if (colon < 0 && !hostname.includes('.') && hostname !== 'localhost') {
      fail(`'${registry}' does not look like a registry host (expected a name with a dot, a port, or localhost)`);
    }
  }
  if (port !== undefined && (!/^\d{1,5}$/.test(port) || Number(port) > 65535 || Number(port) === 0)) {
    fail(`port '${port}' is not a valid port`);
  }

  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) fail(`'${digest}' is not a sha256 digest (sha256:<64 lowercase hex>)`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`tag '${tag}' is not valid (letters, digits, '_', '.', '-'; at most 128)`);
  }
  const repository = rest;
  if (repository === '' || repository.length > 255) fail('the repository name is empty or longer than 255 characters');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      fail(`repository component '${component}' must be lowercase letters and digits, separated by '.', '_', '__' or '-'`);
    }
  }
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, hostname, repository, tag, digest };
}

export function formatImageReference(ref: Pick<ImageReference, 'registry' | 'repository' | 'tag' | 'digest'>): string {
  return `${ref.registry}/${ref.repository}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/** localhost, 127.0.0.0/8 and ::1: the only hosts we talk plain HTTP to without being told. */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/**
 * The base URL of the registry's API. HTTPS unless the host is loopback or plain HTTP was asked
 * for explicitly; `docker.io` is served from its API host.
 */
export function registryBaseUrl(ref: Pick<ImageReference, 'registry' | 'hostname'>, insecureHttp = false): string {
  const scheme = insecureHttp || isLoopbackHost(ref.hostname) ? 'http' : 'https';
  const host = ref.registry === 'docker.io' ? 'registry-1.docker.io' : ref.registry;
  return `${scheme}://${host}`;
}
