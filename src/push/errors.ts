import { KibError } from '../core/errors.js';

/** An image reference that cannot be pushed to: the message says which part is wrong. */
export class ImageReferenceError extends KibError {
  readonly reference: string;

  constructor(reference: string, problem: string) {
    super('IMAGE_REFERENCE_INVALID', `Image reference '${reference}' is invalid: ${problem}`, {
      hint: 'Use host[:port]/repository[:tag][@sha256:digest], e.g. registry.example.com/kib/rocky-9:v1.36.1',
    });
    this.reference = reference;
  }
}

/** The containerDisk archive is not a readable OCI image layout. */
export class OciArchiveError extends KibError {
  readonly archivePath: string;

  constructor(archivePath: string, problem: string, options: { hint?: string; cause?: unknown } = {}) {
    super('OCI_ARCHIVE_INVALID', `${archivePath} is not a usable OCI archive: ${problem}`, options);
    this.archivePath = archivePath;
  }
}

/** The registry answered with an unexpected HTTP status. */
export class RegistryError extends KibError {
  readonly registry: string;
  readonly method: string;
  readonly url: string;
  readonly status: number;
  /** The `errors[].code` values of an OCI distribution error body, if there was one. */
  readonly registryCodes: readonly string[];

  constructor(init: {
    code?: string;
    registry: string;
    method: string;
    url: string;
    status: number;
    what: string;
    detail?: string;
    registryCodes?: readonly string[];
    hint?: string;
  }) {
    const detail = init.detail === undefined || init.detail === '' ? '' : `: ${init.detail}`;
    super(init.code ?? 'REGISTRY_HTTP', `Registry ${init.registry} answered ${init.status} to ${init.what} (${init.method} ${init.url})${detail}`, {
      ...(init.hint === undefined ? {} : { hint: init.hint }),
    });
    this.registry = init.registry;
    this.method = init.method;
    this.url = init.url;
    this.status = init.status;
    this.registryCodes = init.registryCodes ?? [];
  }
}

/** 401/403 after authenticating as well as we could. */
export class RegistryAuthError extends RegistryError {
  constructor(init: Omit<ConstructorParameters<typeof RegistryError>[0], 'code' | 'hint'> & { hasCredentials: boolean }) {
    super({
      ...init,
      code: 'REGISTRY_AUTH',
      hint: init.hasCredentials
        ? `Check the user name and password for ${init.registry}, and that this account may push to the repository.`
        : `${init.registry} requires credentials: pass a user name and password (for example from a registry token).`,
    });
  }
}

/** The registry could not be reached at all (DNS, refused connection, TLS). */
export class RegistryUnreachableError extends KibError {
  readonly registry: string;
  readonly url: string;

  constructor(registry: string, url: string, cause: unknown, hint?: string) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super('REGISTRY_UNREACHABLE', `Cannot reach registry ${registry} at ${url}: ${reason}`, {
      cause,
      ...(hint === undefined ? {} : { hint }),
    });
    this.registry = registry;
    this.url = url;
  }
}

/** What we uploaded is not what the registry stored, or not what the archive claims. */
export class DigestMismatchError extends KibError {
  readonly what: string;
  readonly expected: string;
  readonly actual: string;

  constructor(what: string, expected: string, actual: string) {
    super('DIGEST_MISMATCH', `${what}: expected digest ${expected}, got ${actual}`);
    this.what = what;
    this.expected = expected;
    this.actual = actual;
  }
}
