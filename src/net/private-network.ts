import { KibError, MissingToolError } from '../core/errors.js';
import { findTool, run } from '../process/index.js';
import { silentReporter, type Reporter } from '../report/events.js';
import {
  addressAddArgs,
  bridgeAddArgs,
  IP_BINARY,
  isValidInterfaceName,
  isValidNetnsName,
  linkDeleteArgs,
  linkMacArgs,
  linkUpArgs,
  loopbackUpArgs,
  netnsAddArgs,
  netnsDeleteArgs,
  netnsListArgs,
  netnsPidsArgs,
  tapAddArgs,
  tapAttachArgs,
} from './args.js';

export interface PrivateNetworkSpec {
  /** The network namespace to create; it must not exist yet. */
  netns: string;
  /** The bridge inside it; default br0. */
  bridge?: string;
  /** The bridge's own address, e.g. 10.77.0.1/24 (where dnsmasq and the image server listen). */
  bridgeAddress?: string;
  /**
   * A fixed MAC for the bridge. Guests restored from a memory snapshot onto a new bridge still
   * hold the old bridge's MAC in their ARP caches; with the same MAC they answer at once instead
   * of after their neighbour entries go stale (tens of seconds).
   */
  bridgeMac?: string;
}

/**
 * A private L2 segment that only exists inside a network namespace kib created: a bridge and one
 * tap per VM. Nothing touches the host's own network; removing the handle deletes every tap, the
 * bridge and the namespace. Hold it with `await using` before the VMs that use its taps, so they
 * are stopped first; a namespace with a process still inside lingers until that process exits.
 */
export interface PrivateNetwork extends AsyncDisposable {
  readonly netns: string;
  readonly bridge: string;
  readonly bridgeAddress: string | undefined;
  /** Taps made so far and not removed. */
  readonly taps: readonly string[];
  /** Makes a tap on the bridge (named `tap<N>` unless given) and returns its name. */
  addTap(name?: string, options?: { signal?: AbortSignal }): Promise<string>;
  removeTap(name: string): Promise<void>;
  /** Deletes the taps, the bridge and the namespace. Idempotent; safe to call concurrently. */
  remove(): Promise<void>;
}

const IP_TIMEOUT_MS = 15_000;

/** Creates the namespace (loopback up), the bridge (up, with its address). */
export async function createPrivateNetwork(spec: PrivateNetworkSpec, options: { signal?: AbortSignal; reporter?: Reporter } = {}): Promise<PrivateNetwork> {
  const reporter = options.reporter ?? silentReporter;
  const bridge = spec.bridge ?? 'br0';
  if (!isValidNetnsName(spec.netns)) {
    throw new KibError('NETNS_NAME_INVALID', `network namespace name ${JSON.stringify(spec.netns)} must be 1-48 of a-z, 0-9, '_', '.', '-'`);
  }
  if (!isValidInterfaceName(bridge)) throw new KibError('IFNAME_INVALID', `bridge name ${JSON.stringify(bridge)} is not a valid interface name (1-15 of A-Z, a-z, 0-9, '_', '.', '-')`);
  if (findTool(IP_BINARY) === undefined) {
    throw new MissingToolError([{ command: IP_BINARY, purpose: 'create network namespaces, bridges and taps', packageName: 'iproute2' }]);
  }
  if ((await listNetns(options.signal)).includes(spec.netns)) {
    throw new KibError('NETNS_EXISTS', `network namespace ${spec.netns} already exists`, {
      hint: `Another kib run (or a leftover) uses that name; remove it with \`ip netns delete ${spec.netns}\` once nothing runs in it.`,
    });
  }
  const ip = (args: string[]): Promise<unknown> => run(IP_BINARY, args, { timeoutMs: IP_TIMEOUT_MS, ...(options.signal === undefined ? {} : { signal: options.signal }) });

  await ip(netnsAddArgs(spec.netns));
  const network = new NamespacedNetwork(spec.netns, bridge, spec.bridgeAddress, reporter);
  try {
    await ip(loopbackUpArgs(spec.netns));
    await ip(bridgeAddArgs(spec.netns, bridge));
    if (spec.bridgeMac !== undefined) await ip(linkMacArgs(spec.netns, bridge, spec.bridgeMac));
    if (spec.bridgeAddress !== undefined) await ip(addressAddArgs(spec.netns, bridge, spec.bridgeAddress));
    await ip(linkUpArgs(spec.netns, bridge));
  } catch (error) {
    await network.remove();
    throw error;
  }
  reporter.emit({ type: 'log', source: 'net', line: `created network namespace ${spec.netns} with bridge ${bridge}${spec.bridgeAddress === undefined ? '' : ` (${spec.bridgeAddress})`}` });
  return network;
}

/**
 * Removes a cluster's network from another process than the one that made it (`kib down`): the
 * given taps, the bridge and the namespace. Idempotent; failures are reported, not thrown.
 */
export async function removePrivateNetwork(spec: { netns: string; bridge?: string; taps?: readonly string[] }, options: { reporter?: Reporter } = {}): Promise<void> {
  if (!isValidNetnsName(spec.netns)) return;
  const network = new NamespacedNetwork(spec.netns, spec.bridge ?? 'br0', undefined, options.reporter ?? silentReporter, spec.taps ?? []);
  await network.remove();
}

/** Names of the network namespaces on this host (`ip netns list`). */
export async function listNetns(signal?: AbortSignal): Promise<string[]> {
  const result = await run(IP_BINARY, netnsListArgs(), { timeoutMs: IP_TIMEOUT_MS, allowFailure: true, ...(signal === undefined ? {} : { signal }) });
  if (result.exitCode !== 0 || result.stdout.trim() === '') return [];
  try {
    return (JSON.parse(result.stdout) as { name?: unknown }[]).flatMap((entry) => (typeof entry.name === 'string' ? [entry.name] : []));
  } catch {
    return [];
  }
}

class NamespacedNetwork implements PrivateNetwork {
  readonly netns: string;
  readonly bridge: string;
  readonly bridgeAddress: string | undefined;
  readonly #taps = new Set<string>();
  readonly #reporter: Reporter;
  #nextTap = 0;
  #removing: Promise<void> | undefined;

  constructor(netns: string, bridge: string, bridgeAddress: string | undefined, reporter: Reporter, taps: readonly string[] = []) {
    for (const tap of taps) this.#taps.add(tap);
    this.netns = netns;
    this.bridge = bridge;
    this.bridgeAddress = bridgeAddress;
    this.#reporter = reporter;
  }

  get taps(): readonly string[] {
    return [...this.#taps];
  }

  async addTap(name?: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    if (this.#removing !== undefined) throw new KibError('NETWORK_REMOVED', `network namespace ${this.netns} has been removed`);
    const tap = name ?? `tap${this.#nextTap++}`;
    if (!isValidInterfaceName(tap)) throw new KibError('IFNAME_INVALID', `tap name ${JSON.stringify(tap)} is not a valid interface name`);
    const signal = options.signal === undefined ? {} : { signal: options.signal };
    await run(IP_BINARY, tapAddArgs(this.netns, tap), { timeoutMs: IP_TIMEOUT_MS, ...signal });
    this.#taps.add(tap);
    await run(IP_BINARY, tapAttachArgs(this.netns, tap, this.bridge), { timeoutMs: IP_TIMEOUT_MS, ...signal });
    return tap;
  }

  async removeTap(name: string): Promise<void> {
    await run(IP_BINARY, linkDeleteArgs(this.netns, name), { timeoutMs: IP_TIMEOUT_MS, allowFailure: true });
    this.#taps.delete(name);
  }

  remove(): Promise<void> {
    this.#removing ??= this.#remove();
    return this.#removing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove();
  }

  async #remove(): Promise<void> {
    // Failures are reported, never thrown: removal runs in cleanup, where it must not mask the error.
    const pids = await run(IP_BINARY, netnsPidsArgs(this.netns), { timeoutMs: IP_TIMEOUT_MS, allowFailure: true });
    const inside = pids.stdout.split('\n').filter((line) => line.trim() !== '');
    if (inside.length > 0) {
      this.#warn(`processes still run in network namespace ${this.netns} (pids ${inside.join(', ')}); it goes away once they exit`);
    }
    for (const tap of this.#taps) await this.removeTap(tap);
    for (const args of [linkDeleteArgs(this.netns, this.bridge), netnsDeleteArgs(this.netns)]) {
      const result = await run(IP_BINARY, args, { timeoutMs: IP_TIMEOUT_MS, allowFailure: true });
      if (result.exitCode !== 0 && !/Cannot find device|No such file|does not exist/i.test(result.stderr)) {
        this.#warn(`\`ip ${args.join(' ')}\` failed: ${result.stderr.trim()}`);
      }
    }
    this.#reporter.emit({ type: 'log', source: 'net', line: `removed network namespace ${this.netns}` });
  }

  #warn(line: string): void {
    this.#reporter.emit({ type: 'log', source: 'net', line, level: 'warn' });
  }
}
