import { existsSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initialStatus, transition, type MachineEvent, type MachineStatus } from './lifecycle.js';
import { normalizeMac, type Machine } from './machines.js';

/**
 * The Machines the service currently serves, and their statuses. The set can be replaced while the
 * service runs (a watch on the Machine resources): Machines keep their status by name, a new one
 * starts from its saved state file (or `pending`), a removed one is no longer looked up by MAC or
 * address (its state file stays, so it is still known to be installed if it comes back).
 *
 * Every status change is written atomically to `<machinesDir>/<name>.json` and, when given, to the
 * Kubernetes status subresource; the writes are serialized.
 */

export interface MachineRegistryOptions {
  machinesDir: string;
  /** Also write every status change here (the Kubernetes status subresource); failures are logged. */
  writeStatus?: (name: string, status: MachineStatus) => Promise<void>;
  log?: (line: string, level: 'info' | 'warn' | 'debug') => void;
  onStatus?: (change: { machine: string; status: MachineStatus; event: MachineEvent }) => void;
  /** Machines this returns a reason for are left out of the set (e.g. an address outside the network). */
  reject?: (machine: Machine) => string | undefined;
}

export interface SetChange {
  added: string[];
  removed: string[];
  changed: string[];
  /** Left out, with the reason (a conflict with a Machine already in the set, or `reject`). */
  skipped: { name: string; reason: string }[];
}

export class MachineRegistry {
  private machines = new Map<string, Machine>();
  private byMacMap = new Map<string, Machine>();
  private byIpMap = new Map<string, Machine>();
  private readonly statuses = new Map<string, MachineStatus>();
  private writes = Promise.resolve();
  private readonly log: (line: string, level: 'info' | 'warn' | 'debug') => void;

  constructor(private readonly options: MachineRegistryOptions) {
    this.log = options.log ?? (() => undefined);
  }

  list(): Machine[] {
    return [...this.machines.values()];
  }

  byMac(text: string | undefined): Machine | undefined {
    const mac = text === undefined ? undefined : normalizeMac(text);
    return mac === undefined ? undefined : this.byMacMap.get(mac);
  }

  byIp(ip: string): Machine | undefined {
    return this.byIpMap.get(ip);
  }

  byName(name: string | undefined): Machine | undefined {
    return name === undefined ? undefined : this.machines.get(name);
  }

  status(name: string): MachineStatus | undefined {
    return this.statuses.get(name);
  }

  /** Resolves when every status write queued so far has finished. */
  flushed(): Promise<void> {
    return this.writes;
  }

  /**
   * Replaces the set. Machines are taken in name order; one that shares a MAC or an address with a
   * Machine already taken is skipped with a warning (the offline loader refuses such a set outright;
   * a watch cannot, as the conflict may be fixed by the next event).
   */
  async replace(next: readonly Machine[]): Promise<SetChange> {
    const change: SetChange = { added: [], removed: [], changed: [], skipped: [] };
    const machines = new Map<string, Machine>();
    const byMac = new Map<string, Machine>();
    const byIp = new Map<string, Machine>();
    for (const machine of [...next].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
      const name = machine.metadata.name;
      const rejected = this.options.reject?.(machine);
      const clash = machines.has(name)
        ? `another Machine is named ${name}`
        : byMac.has(machine.spec.macAddress)
          ? `${byMac.get(machine.spec.macAddress)!.metadata.name} has MAC ${machine.spec.macAddress}`
          : byIp.has(machine.spec.ipAddress)
            ? `${byIp.get(machine.spec.ipAddress)!.metadata.name} has address ${machine.spec.ipAddress}`
            : undefined;
      const reason = rejected ?? clash;
      if (reason !== undefined) {
        change.skipped.push({ name, reason });
        this.log(`Machine ${name} left out: ${reason}`, 'warn');
        continue;
      }
      machines.set(name, machine);
      byMac.set(machine.spec.macAddress, machine);
      byIp.set(machine.spec.ipAddress, machine);
      const before = this.machines.get(name);
      if (before === undefined) change.added.push(name);
      else if (JSON.stringify(before.spec) !== JSON.stringify(machine.spec)) change.changed.push(name);
    }
    for (const name of this.machines.keys()) if (!machines.has(name)) change.removed.push(name);
    for (const name of change.added) {
      if (this.statuses.has(name)) continue;
      const file = this.stateFile(name);
      const saved = existsSync(file) ? (JSON.parse(await readFile(file, 'utf8')) as { status?: MachineStatus }).status : undefined;
      this.statuses.set(name, saved ?? initialStatus(new Date()));
    }
    this.machines = machines;
    this.byMacMap = byMac;
    this.byIpMap = byIp;
    for (const name of change.added) await this.persist(machines.get(name)!, this.statuses.get(name)!);
    return change;
  }

  /** Applies an event to a Machine of the set; returns its status (unchanged when it did not apply). */
  async apply(machine: Machine, event: MachineEvent): Promise<MachineStatus> {
    const name = machine.metadata.name;
    const current = this.statuses.get(name) ?? initialStatus(new Date());
    const result = transition(current, event, new Date());
    if (!result.applied) {
      this.log(`${name}: ignored ${event.type} in phase ${current.phase}`, 'debug');
      return result.status;
    }
    this.statuses.set(name, result.status);
    await this.persist(machine, result.status);
    if (event.type !== 'progress') this.log(`${name}: ${result.status.phase}${result.status.reason === undefined ? '' : ` (${result.status.reason})`}`, 'info');
    this.options.onStatus?.({ machine: name, status: result.status, event });
    return result.status;
  }

  private stateFile(name: string): string {
    return join(this.options.machinesDir, `${name}.json`);
  }

  private persist(machine: Machine, status: MachineStatus): Promise<void> {
    const file = this.stateFile(machine.metadata.name);
    this.writes = this.writes.then(async () => {
      const temp = `${file}.tmp`;
      await writeFile(temp, `${JSON.stringify({ name: machine.metadata.name, macAddress: machine.spec.macAddress, status }, null, 2)}\n`);
      await rename(temp, file);
      await this.options.writeStatus?.(machine.metadata.name, status).catch((error: unknown) => {
        this.log(`${machine.metadata.name}: writing status to the API failed: ${(error as Error).message}`, 'warn');
      });
    });
    return this.writes;
  }
}
