import { KibError } from '../core/errors.js';
import type { MachineStatus } from './lifecycle.js';
import { MACHINE_GROUP, MACHINE_PLURAL, MACHINE_VERSION, parseMachine, type Machine } from './machines.js';

/**
 * Machines from the Kubernetes API (deploy/crd-machine.yaml): listed, then watched, with their
 * `status` written back as a JSON merge patch on the status subresource; and the per-Machine
 * bootstrap tokens created as Secrets in the cluster being joined. Through
 * @kubernetes/client-node, loaded only when a kubeconfig is given.
 */

export interface MachineApi {
  /** Every Machine, validated like the offline files (an invalid one fails the list, naming it). */
  listMachines(): Promise<Machine[]>;
  /**
   * Lists, then watches the Machines until `signal` aborts, calling `onChange` with the whole valid
   * set after the list and after every change. See watchMachines.
   */
  watchMachines(options: MachineWatchOptions): Promise<void>;
  writeStatus(name: string, status: MachineStatus): Promise<void>;
  /** Creates the bootstrap token Secret (kube-system `bootstrap-token-<id>`); an identical one may exist. */
  createBootstrapToken(token: BootstrapTokenSpec): Promise<void>;
}

export interface MachineWatchOptions {
  onChange: (machines: Machine[]) => void | Promise<void>;
  signal: AbortSignal;
  log?: (line: string, level: 'info' | 'warn' | 'debug') => void;
  /** Wait after a failed list or watch: doubles from `initialMs` up to `maxMs` (1 s … 30 s). */
  backoff?: { initialMs: number; maxMs: number };
}

/** The merge patch for the status subresource; `reason` is nulled when absent so an old one goes. */
export function statusPatchBody(status: MachineStatus): { status: Record<string, unknown> } {
  return { status: { reason: null, bytesWritten: null, diskSpeed: null, ...status } };
}

/** A Machine object from the API: only what the offline schema reads (the server adds metadata fields, and status). */
export function machineFromApi(item: unknown, index = 0): Machine {
  const { apiVersion, kind, metadata, spec } = (item ?? {}) as Record<string, unknown>;
  const name = (metadata as { name?: string } | undefined)?.name;
  return parseMachine({ apiVersion, kind, metadata: { name }, spec }, `Machine ${name ?? `item ${index}`} (API)`);
}

// --- bootstrap tokens --------------------------------------------------------------------------

/**
 * A bootstrap token as the API server's bootstrap authenticator reads it
 * (https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/): a Secret of type
 * `bootstrap.kubernetes.io/token` named `bootstrap-token-<token-id>` in kube-system, with the
 * token's two parts, its usages, an RFC 3339 expiration (the TokenCleaner deletes it then) and the
 * group kubeadm's node-joining RBAC is bound to.
 */
export interface BootstrapTokenSpec {
  /** `[a-z0-9]{6}.[a-z0-9]{16}` */
  token: string;
  expiration: Date;
  description: string;
}

export const BOOTSTRAP_TOKEN_NAMESPACE = 'kube-system';
export const BOOTSTRAP_TOKEN_TYPE = 'bootstrap.kubernetes.io/token';
/** The group `kubeadm join` tokens carry (kubeadm binds it to node bootstrapping and CSR approval). */
export const KUBEADM_NODE_TOKEN_GROUP = 'system:bootstrappers:kubeadm:default-node-token';
/** kubeadm's default token lifetime (`kubeadm token create --ttl`): 24 h. */
export const BOOTSTRAP_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

const TOKEN_PATTERN = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;

export function bootstrapTokenSecret(spec: BootstrapTokenSpec): {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  type: string;
  stringData: Record<string, string>;
} {
  const match = TOKEN_PATTERN.exec(spec.token);
  if (match === null) throw new KibError('NETBOOT_TOKEN', `not a bootstrap token: ${spec.token.slice(0, 6)}…`);
  const [, id, secret] = match as unknown as [string, string, string];
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `bootstrap-token-${id}`, namespace: BOOTSTRAP_TOKEN_NAMESPACE, labels: { 'app.kubernetes.io/managed-by': 'kib-netboot' } },
    type: BOOTSTRAP_TOKEN_TYPE,
    stringData: {
      description: spec.description,
      'token-id': id,
      'token-secret': secret,
      expiration: spec.expiration.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      'usage-bootstrap-authentication': 'true',
      'usage-bootstrap-signing': 'true',
      'auth-extra-groups': KUBEADM_NODE_TOKEN_GROUP,
    },
  };
}

// --- the client --------------------------------------------------------------------------------

type K8s = typeof import('@kubernetes/client-node');

async function loadClient(): Promise<K8s> {
  try {
    return await import('@kubernetes/client-node');
  } catch (error) {
    throw new KibError('NETBOOT_KUBE', `--kubeconfig needs @kubernetes/client-node: ${(error as Error).message}`, { cause: error });
  }
}

export async function connectMachineApi(kubeconfigPath: string): Promise<MachineApi> {
  const k8s = await loadClient();
  const config = new k8s.KubeConfig();
  config.loadFromFile(kubeconfigPath);
  const api = config.makeApiClient(k8s.CustomObjectsApi);
  const core = config.makeApiClient(k8s.CoreV1Api);
  const ref = { group: MACHINE_GROUP, version: MACHINE_VERSION, plural: MACHINE_PLURAL };
  const list = async (): Promise<{ items: unknown[]; resourceVersion: string | undefined }> => {
    const result = (await api.listClusterCustomObject(ref)) as { items?: unknown[]; metadata?: { resourceVersion?: string } };
    return { items: result.items ?? [], resourceVersion: result.metadata?.resourceVersion };
  };
  return {
    async listMachines() {
      return (await list()).items.map((item, index) => machineFromApi(item, index));
    },
    watchMachines(options) {
      return watchMachines({ list, watch: watchStream(new k8s.Watch(config)) }, options);
    },
    async writeStatus(name, status) {
      await api.patchClusterCustomObjectStatus({ ...ref, name, body: statusPatchBody(status) }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    },
    async createBootstrapToken(token) {
      const body = bootstrapTokenSecret(token);
      try {
        await core.createNamespacedSecret({ namespace: BOOTSTRAP_TOKEN_NAMESPACE, body });
      } catch (error) {
        if ((error as { code?: number }).code !== 409) throw error;
        // It exists: fine if it is this token (a restart, or a second request for the same install).
        const existing = await core.readNamespacedSecret({ name: body.metadata.name, namespace: BOOTSTRAP_TOKEN_NAMESPACE });
        const secret = existing.data?.['token-secret'] === undefined ? undefined : Buffer.from(existing.data['token-secret'], 'base64').toString();
        if (secret !== body.stringData['token-secret']) {
          throw new KibError('NETBOOT_TOKEN', `Secret ${BOOTSTRAP_TOKEN_NAMESPACE}/${body.metadata.name} exists and holds another token`);
        }
      }
    },
  };
}

// --- the watch ---------------------------------------------------------------------------------

export interface WatchEvent {
  type: string;
  object: unknown;
}

/** One watch request: events until the stream ends (`undefined`) or fails (the error). */
export type WatchStream = (resourceVersion: string, onEvent: (event: WatchEvent) => void, signal: AbortSignal) => Promise<unknown>;

function watchStream(watch: import('@kubernetes/client-node').Watch): WatchStream {
  const path = `/apis/${MACHINE_GROUP}/${MACHINE_VERSION}/${MACHINE_PLURAL}`;
  return (resourceVersion, onEvent, signal) =>
    new Promise<unknown>((resolve) => {
      let controller: AbortController | undefined;
      const onAbort = (): void => controller?.abort();
      watch
        .watch(
          path,
          // The server ends the watch after timeoutSeconds (jittered, as informers do), so a
          // connection that died without a word is noticed and the watch resumed.
          { resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 300 + Math.floor(Math.random() * 300) },
          (type: string, object: unknown) => onEvent({ type, object }),
          (error: unknown) => {
            signal.removeEventListener('abort', onAbort);
            resolve(error ?? undefined);
          },
        )
        .then(
          (started) => {
            controller = started;
            if (signal.aborted) started.abort();
            else signal.addEventListener('abort', onAbort, { once: true });
          },
          (error: unknown) => resolve(error),
        );
    });
}

class WatchExpired extends Error {}

/**
 * List, then watch from the list's resourceVersion; every ADDED/MODIFIED/DELETED event updates the
 * set and calls `onChange` with it (calls never overlap). A watch that ends is resumed from the last
 * resourceVersion seen (BOOKMARK events keep it fresh); one that fails is resumed after a backoff
 * that doubles up to `maxMs` and resets once events flow again; `410 Gone` (the version is too
 * old) starts over with a new list. A Machine that fails the schema is left out with a warning:
 * one bad object must not stop the service.
 */
export async function watchMachines(
  client: { list: () => Promise<{ items: unknown[]; resourceVersion: string | undefined }>; watch: WatchStream },
  options: MachineWatchOptions,
): Promise<void> {
  const log = options.log ?? (() => undefined);
  const { initialMs, maxMs } = options.backoff ?? { initialMs: 1_000, maxMs: 30_000 };
  const machines = new Map<string, Machine>();
  let resourceVersion: string | undefined;
  let delay = initialMs;
  let emitting = Promise.resolve();
  const emit = (): void => {
    const snapshot = [...machines.values()];
    emitting = emitting.then(() => options.onChange(snapshot)).catch((error: unknown) => log(`applying the Machines failed: ${(error as Error).message}`, 'warn'));
  };
  const take = (object: unknown): void => {
    const name = (object as { metadata?: { name?: string } } | undefined)?.metadata?.name;
    try {
      const machine = machineFromApi(object);
      machines.set(machine.metadata.name, machine);
    } catch (error) {
      if (name !== undefined) machines.delete(name);
      log((error as Error).message, 'warn');
    }
  };
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        options.signal.removeEventListener('abort', done);
        resolve();
      }
      options.signal.addEventListener('abort', done, { once: true });
    });

  while (!options.signal.aborted) {
    try {
      if (resourceVersion === undefined) {
        const listed = await list();
        machines.clear();
        listed.items.forEach((item) => take(item));
        resourceVersion = listed.resourceVersion ?? '0';
        emit();
        log(`listed ${machines.size} Machine(s) at resourceVersion ${resourceVersion}`, 'debug');
      }
      const watchStarted = Date.now();
      const error = await client.watch(
        resourceVersion,
        (event) => {
          const version = (event.object as { metadata?: { resourceVersion?: string } } | undefined)?.metadata?.resourceVersion;
          switch (event.type) {
            case 'ADDED':
            case 'MODIFIED':
              take(event.object);
              break;
            case 'DELETED': {
              const name = (event.object as { metadata?: { name?: string } }).metadata?.name;
              if (name !== undefined) machines.delete(name);
              break;
            }
            case 'BOOKMARK':
              break;
            case 'ERROR': {
              const code = (event.object as { code?: number } | undefined)?.code;
              if (code === 410) resourceVersion = undefined;
              log(`watch error event: ${JSON.stringify(event.object)}`, 'warn');
              return;
            }
            default:
              return;
          }
          if (version !== undefined) resourceVersion = version;
          delay = initialMs;
          if (event.type !== 'BOOKMARK') emit();
        },
        options.signal,
      );
      if (options.signal.aborted) break;
      if (error !== undefined) {
        if ((error as { statusCode?: number }).statusCode === 410) throw new WatchExpired('410 Gone');
        throw error;
      }
      // A clean end (the server's watch timeout): resume from the last version; at once unless it
      // ended as soon as it began (then it is a fault in disguise, and backs off like one).
      if (Date.now() - watchStarted < initialMs) throw new Error('the watch ended as soon as it began');
    } catch (error) {
      if (options.signal.aborted) break;
      if (error instanceof WatchExpired) resourceVersion = undefined;
      log(`Machine ${resourceVersion === undefined ? 'list' : 'watch'} failed (${(error as Error).message}); again in ${delay} ms`, 'warn');
      await sleep(delay);
      delay = Math.min(delay * 2, maxMs);
    }
  }
  await emitting;

  async function list(): Promise<{ items: unknown[]; resourceVersion: string | undefined }> {
    return client.list();
  }
}
