import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import * as z from 'zod';
import { KibError } from '../core/errors.js';

/**
 * Machine resources: the inventory of machines that netboot from `kib netboot`. The schema keeps
 * the fields of the provisioner it descends from (`metadata.name`, `spec.macAddress`,
 * `spec.ipAddress`) and adds what installing a disk needs: the node's role, hints that pick the
 * disk, whether a disk holding data may be overwritten, and a reinstall request. The same schema is
 * the CRD in deploy/crd-machine.yaml (group `netboot.kib.dev`, cluster-scoped).
 */

export const MACHINE_GROUP = 'netboot.kib.dev';
export const MACHINE_VERSION = 'v1alpha1';
export const MACHINE_API_VERSION = `${MACHINE_GROUP}/${MACHINE_VERSION}`;
export const MACHINE_KIND = 'Machine';
export const MACHINE_PLURAL = 'machines';
export const MACHINE_ROLES = ['control-plane', 'worker'] as const;

const MAC_PATTERN = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const IPV4_PATTERN = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const DISK_PATH_PATTERN = /^\/dev\/[A-Za-z0-9_./-]+$/;

export const machineSchema = z.strictObject({
  apiVersion: z.literal(MACHINE_API_VERSION),
  kind: z.literal(MACHINE_KIND),
  metadata: z.object({
    // A DNS label: the name becomes the node's hostname.
    name: z.string().regex(NAME_PATTERN, 'must be a DNS label (a-z, 0-9, -; at most 63)'),
  }).loose(),
  spec: z.strictObject({
    macAddress: z.string().transform((mac) => mac.toLowerCase()).pipe(z.string().regex(MAC_PATTERN, 'must be six colon-separated hex octets')),
    ipAddress: z.string().regex(IPV4_PATTERN, 'must be an IPv4 address'),
    role: z.enum(MACHINE_ROLES).default('worker'),
    disk: z
      .strictObject({
        /** A device path as stage2 sees it (/dev/vda, /dev/sda, /dev/nvme0n1). */
        path: z.string().regex(DISK_PATH_PATTERN, 'must be a path under /dev').optional(),
        /** The smallest disk to accept. */
        minSizeBytes: z.number().int().positive().optional(),
        /** A substring of the disk's model (sysfs `device/model`). */
        model: z.string().min(1).optional(),
      })
      .default({}),
    /** Overwrite a disk whose first MiB is not blank (a partition table, a file system). */
    allowWipe: z.boolean().default(false),
    /**
     * Reinstall once: any new value (a date, a counter) offers stage2 again to a Machine that is
     * `written` or later. The status records the value handled, so the Machine is not reimaged
     * on every network boot while the field stays set.
     */
    reinstall: z.string().min(1).optional(),
    /** Extra cloud-config merged into the Machine's user-data (a cloud-config mapping). */
    cloudConfig: z.record(z.string(), z.unknown()).optional(),
  }),
  status: z.unknown().optional(),
});

export type Machine = z.output<typeof machineSchema>;
export type MachineRole = (typeof MACHINE_ROLES)[number];

export class MachineError extends KibError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super('MACHINE_INVALID', message, options);
  }
}

/** Validates one parsed document; `where` names it in errors. */
export function parseMachine(value: unknown, where: string): Machine {
  const result = machineSchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join('.') || '(document)'}: ${issue.message}`);
    throw new MachineError(`${where} is not a valid ${MACHINE_KIND}:\n  ${problems.join('\n  ')}`);
  }
  return result.data;
}

/** Two Machines may not share a name, a MAC or an address: dnsmasq would hand out one of them. */
export function checkMachineSet(machines: readonly Machine[]): void {
  const problems: string[] = [];
  for (const key of ['name', 'macAddress', 'ipAddress'] as const) {
    const seen = new Map<string, string>();
    for (const machine of machines) {
      const value = key === 'name' ? machine.metadata.name : machine.spec[key];
      const other = seen.get(value);
      if (other !== undefined) problems.push(`${machine.metadata.name} and ${other} share ${key} ${value}`);
      seen.set(value, machine.metadata.name);
    }
  }
  if (problems.length > 0) throw new MachineError(`Machines conflict:\n  ${problems.join('\n  ')}`);
}

/** Reads every *.yaml / *.yml file of a directory (several documents per file allowed), sorted by name. */
export async function loadMachineDir(dir: string): Promise<Machine[]> {
  let entries: string[];
  try {
    entries = (await readdir(dir)).filter((name) => /\.ya?ml$/.test(name)).sort();
  } catch (error) {
    throw new MachineError(`Cannot read the Machine directory ${dir}: ${(error as Error).message}`, { cause: error });
  }
  const machines: Machine[] = [];
  for (const file of entries) {
    const path = join(dir, file);
    const documents = parseAllDocuments(await readFile(path, 'utf8'));
    documents.forEach((document, index) => {
      if (document.errors.length > 0) throw new MachineError(`${path}: ${document.errors[0]?.message ?? 'invalid YAML'}`);
      const value: unknown = document.toJS();
      if (value === null || value === undefined) return;
      machines.push(parseMachine(value, documents.length > 1 ? `${path} (document ${index + 1})` : path));
    });
  }
  checkMachineSet(machines);
  return machines;
}

/** Lower-case, colon-separated; also accepts dashes (the form iPXE's `${net0/mac:hexhyp}` gives). */
export function normalizeMac(text: string): string | undefined {
  const mac = text.toLowerCase().replaceAll('-', ':');
  return MAC_PATTERN.test(mac) ? mac : undefined;
}
