import { KibError } from '../core/errors.js';
import type { MachineStatus } from './lifecycle.js';
import { MACHINE_GROUP, MACHINE_PLURAL, MACHINE_VERSION, parseMachine, type Machine } from './machines.js';

/**
 * Machines from the Kubernetes API (deploy/crd-machine.yaml) and their `status` written back as a
 * JSON merge patch on the status subresource, through @kubernetes/client-node (loaded only when a
 * kubeconfig is given).
 */

export interface MachineApi {
  /** Every Machine, validated like the offline files (an invalid one fails the list, naming it). */
  listMachines(): Promise<Machine[]>;
  writeStatus(name: string, status: MachineStatus): Promise<void>;
}

/** The merge patch for the status subresource; `reason` is nulled when absent so an old one goes. */
export function statusPatchBody(status: MachineStatus): { status: Record<string, unknown> } {
  return { status: { reason: null, bytesWritten: null, ...status } };
}

export async function connectMachineApi(kubeconfigPath: string): Promise<MachineApi> {
  let k8s: typeof import('@kubernetes/client-node');
  try {
    k8s = await import('@kubernetes/client-node');
  } catch (error) {
    throw new KibError('NETBOOT_KUBE', `--kubeconfig needs @kubernetes/client-node: ${(error as Error).message}`, { cause: error });
  }
  const config = new k8s.KubeConfig();
  config.loadFromFile(kubeconfigPath);
  const api = config.makeApiClient(k8s.CustomObjectsApi);
  const ref = { group: MACHINE_GROUP, version: MACHINE_VERSION, plural: MACHINE_PLURAL };
  return {
    async listMachines() {
      const list = (await api.listClusterCustomObject(ref)) as { items?: unknown[] };
      return (list.items ?? []).map((item, index) => {
        const name = (item as { metadata?: { name?: string } }).metadata?.name ?? `item ${index}`;
        // The API server adds metadata fields and may hold a status: keep only what the schema reads.
        const { apiVersion, kind, metadata, spec } = item as Record<string, unknown>;
        return parseMachine({ apiVersion, kind, metadata: { name: (metadata as { name?: string } | undefined)?.name }, spec }, `Machine ${name} (API)`);
      });
    },
    async writeStatus(name, status) {
      await api.patchClusterCustomObjectStatus({ ...ref, name, body: statusPatchBody(status) }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    },
  };
}
