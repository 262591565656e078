import { join } from 'node:path';
import { KibError } from '../core/errors.js';

/**
 * A cluster's shape: which addresses, MACs, names and pod CIDRs its nodes get. Every cluster has
 * its own network namespace, so all clusters (and every clone of one snapshot) use the same plan
 * without clashing; only the namespace and the cluster's name differ.
 */

export const CLUSTER_STATE_VERSION = 1;
export const CLUSTER_FILE = 'cluster.json';
export const BRIDGE = 'br0';
export const NETWORK = '10.77.0.0';
export const NETMASK = '255.255.255.0';
export const PREFIX_LENGTH = 24;
export const BRIDGE_IP = '10.77.0.1';
/** Fixed, so restored guests' ARP entries for the bridge stay right in a new namespace. */
export const BRIDGE_MAC = '52:54:00:4b:00:fe';
/** DNS domain dnsmasq answers inside each cluster's namespace (and nothing else). */
export const CLUSTER_DOMAIN = 'cluster.kib';
export const POD_NETWORK = '10.244.0.0/16';
export const SERVICE_NETWORK = '10.96.0.0/12';
export const SEED_PORT = 8080;
export const REGISTRY_PORT = 5000;
export const API_PORT = 6443;
export const MAX_NODES = 9;
/** Left for the host and kib itself when sizing N nodes against MemAvailable. */
export const MEMORY_HEADROOM_MIB = 1024;

export type ClusterStatus = 'starting' | 'up' | 'stopped' | 'failed';

export interface ClusterNode {
  /** node1, node2, …: also its host name and DNS name (`node1.cluster.kib`). */
  name: string;
  index: number;
  mac: string;
  ip: string;
  tap: string;
  /** This node's pod CIDR (bridge CNI with host-local IPAM). */
  podCidr: string;
  role: 'control-plane' | 'worker';
  /** Run dir id under `<state>/runs/` (persistent, owner kind cluster). */
  runId: string;
  diskPath: string;
}

export interface ClusterState {
  version: typeof CLUSTER_STATE_VERSION;
  name: string;
  status: ClusterStatus;
  kibVersion: string;
  createdAt: string;
  netns: string;
  bridge: string;
  bridgeIp: string;
  domain: string;
  artifact: { path: string; format: 'qcow2' | 'raw'; kubernetes: boolean; kubernetesVersion?: string; skippedReason?: string };
  nodeMemoryMiB: number;
  nodeCpus: number;
  accelerator: 'kvm' | 'tcg';
  nodes: ClusterNode[];
  ports: { seed: number; registry?: number; apiForward?: number };
  /** Daemons the cluster runs (pids), so `kib down` can stop them from another process. */
  daemons: { dnsmasq?: number; seed?: number; registry?: number; apiForward?: number };
  /** Bootstrap material kib generated (the token must outlive resumes: ttl 0s). */
  bootstrap: { token: string; caCertHash: string };
  cni: 'kib-bridge' | { manifest: string };
  registry: boolean;
  /** Set when the cluster was resumed from a snapshot. */
  from?: string;
}

const NAME = /^[a-z][a-z0-9-]{0,19}$/;

export function validateClusterName(name: string): void {
  if (!NAME.test(name) || name.endsWith('-')) {
    throw new KibError('CLUSTER_NAME_INVALID', `cluster name ${JSON.stringify(name)} must be 1-20 of a-z, 0-9 and '-', starting with a letter and not ending with '-'`, {
      hint: 'It becomes the network namespace kib-NAME and part of run dir ids.',
    });
  }
}

export function validateNodeCount(nodes: number): void {
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_NODES) {
    throw new KibError('CLUSTER_NODES_INVALID', `--nodes must be a whole number from 1 to ${MAX_NODES}, got ${String(nodes)}`, {
      hint: 'A cluster needs at least its control-plane node.',
    });
  }
}

/**
 * Refuses N nodes that would not fit: N × node memory + headroom must be within MemAvailable.
 * Pure: `memAvailableKiB` comes from /proc/meminfo.
 */
export function checkMemory(nodes: number, nodeMemoryMiB: number, memAvailableKiB: number): void {
  const neededMiB = nodes * nodeMemoryMiB + MEMORY_HEADROOM_MIB;
  const availableMiB = Math.floor(memAvailableKiB / 1024);
  if (neededMiB > availableMiB) {
    throw new KibError(
      'CLUSTER_MEMORY',
      `${nodes} node(s) of ${nodeMemoryMiB} MiB need ${neededMiB} MiB with ${MEMORY_HEADROOM_MIB} MiB headroom, but only ${availableMiB} MiB are available (MemAvailable in /proc/meminfo)`,
      { hint: 'Use fewer nodes (--nodes) or smaller ones (--memory), or stop other VMs.' },
    );
  }
}

/** MemAvailable from /proc/meminfo text, in KiB. */
export function parseMemAvailable(meminfo: string): number {
  const match = /^MemAvailable:\s+(\d+)\s+kB$/m.exec(meminfo);
  if (match === null) throw new KibError('MEMINFO', 'no MemAvailable line in /proc/meminfo');
  return Number(match[1]);
}

export function netnsOf(cluster: string): string {
  return `kib-${cluster}`;
}

export function clusterDir(stateDir: string, name: string): string {
  return join(stateDir, 'clusters', name);
}

export function clusterStateFile(stateDir: string, name: string): string {
  return join(clusterDir(stateDir, name), CLUSTER_FILE);
}

/** The nodes of an N-node cluster: node i gets 10.77.0.(10+i), MAC 52:54:00:4b:00:0i, pods 10.244.i.0/24. */
export function planNodes(cluster: string, count: number, dir: string): ClusterNode[] {
  validateNodeCount(count);
  return Array.from({ length: count }, (_, i) => {
    const index = i + 1;
    const name = `node${index}`;
    return {
      name,
      index,
      mac: `52:54:00:4b:00:${index.toString(16).padStart(2, '0')}`,
      ip: `10.77.0.${10 + index}`,
      tap: `tap${index}`,
      podCidr: `10.244.${index}.0/24`,
      role: index === 1 ? 'control-plane' : 'worker',
      runId: `c-${cluster}-${name}`,
      diskPath: join(dir, 'nodes', name, `${cluster}-${name}.qcow2`),
    };
  });
}

/** The first node; it runs kubeadm init. */
export function controlPlane(state: Pick<ClusterState, 'nodes' | 'name'>): ClusterNode {
  const node = state.nodes[0];
  if (node === undefined) throw new KibError('CLUSTER_EMPTY', `cluster ${state.name} has no nodes`);
  return node;
}

export function findNode(state: Pick<ClusterState, 'nodes' | 'name'>, name: string): ClusterNode {
  const node = state.nodes.find((n) => n.name === name);
  if (node === undefined) {
    throw new KibError('CLUSTER_NODE_UNKNOWN', `cluster ${state.name} has no node ${JSON.stringify(name)}; its nodes are ${state.nodes.map((n) => n.name).join(', ')}`);
  }
  return node;
}

/** Reads and checks a cluster state file's JSON (shape only; paths are not checked). */
export function parseClusterState(text: string, path: string): ClusterState {
  let data: Partial<ClusterState>;
  try {
    data = JSON.parse(text) as Partial<ClusterState>;
  } catch (error) {
    throw new KibError('CLUSTER_STATE_UNREADABLE', `${path} is not JSON: ${(error as Error).message}`);
  }
  if (data.version !== CLUSTER_STATE_VERSION || typeof data.name !== 'string' || !Array.isArray(data.nodes) || typeof data.netns !== 'string') {
    throw new KibError('CLUSTER_STATE_UNREADABLE', `${path} is not a kib cluster state file of version ${CLUSTER_STATE_VERSION}`);
  }
  return data as ClusterState;
}
