import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import type { Machine } from './machines.js';

/**
 * A Machine's first-boot configuration (NoCloud): meta-data gives the instance id and hostname,
 * user-data the login (`kib`, with the authorized keys), a report to the netboot server from its final stage (`booted`),
 * and the join: `kubeadm join` with the Machine's own bootstrap token and the cluster CA's hash,
 * then a report (`joined`). The Machine's `spec.cloudConfig` is merged in: its lists come first
 * (so files it writes exist before the join runs), its other keys win.
 */

/** The login the installed system gets, with the service's authorized keys and passwordless sudo. */
export const NETBOOT_USER = 'kib';

export interface JoinSpec {
  /** The API server endpoint, HOST:PORT. */
  endpoint: string;
  /** `sha256:<hex>` of the cluster CA's public key. */
  caCertHash: string;
  /** The token for this Machine (`[a-z0-9]{6}.[a-z0-9]{16}`). */
  token: string;
  /** For control-plane Machines: the certificate key of `kubeadm init --upload-certs`. */
  certificateKey?: string;
}

export interface CloudConfigSpec {
  machine: Machine;
  /** Base URL of the netboot server (no trailing slash). */
  server: string;
  sshAuthorizedKeys: readonly string[];
  /** Changes with every install, so cloud-init runs again on a reinstalled disk. */
  installId: string;
  join?: JoinSpec;
}

/**
 * A bootstrap token bound to one Machine: derived from a secret and the Machine's name and
 * install, so it is stable while the install lasts and differs between Machines.
 */
export function machineBootstrapToken(secret: string, machineName: string, installId: string): string {
  const digest = createHash('sha256').update(`${secret}\0${machineName}\0${installId}`).digest();
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const chars = [...digest].map((byte) => alphabet[byte % alphabet.length]).join('');
  return `${chars.slice(0, 6)}.${chars.slice(6, 22)}`;
}

export function renderMetaData(spec: CloudConfigSpec): string {
  return stringify({ 'instance-id': `kib-${spec.machine.metadata.name}-${spec.installId}`, 'local-hostname': spec.machine.metadata.name });
}

/** The argv of the join, as runcmd runs it (no shell). */
export function joinCommand(machine: Machine, join: JoinSpec): string[] {
  const argv = ['kubeadm', 'join', join.endpoint, '--token', join.token, '--discovery-token-ca-cert-hash', join.caCertHash, '--node-name', machine.metadata.name];
  if (machine.spec.role === 'control-plane') {
    argv.push('--control-plane');
    if (join.certificateKey !== undefined) argv.push('--certificate-key', join.certificateKey);
  }
  return argv;
}

/** A POST to the netboot server from the installed system (python3 is in every image kib builds). */
function reportCommand(server: string, mac: string, phase: string): string[] {
  const code = `import urllib.request; urllib.request.urlopen(urllib.request.Request(${JSON.stringify(`${server}/report/${mac}`)}, data=b"phase=${phase}", method="POST"), timeout=20)`;
  return ['python3', '-c', code];
}

export function renderUserData(spec: CloudConfigSpec): string {
  const { machine, server } = spec;
  const mac = machine.spec.macAddress;
  const ours: Record<string, unknown> = {
    hostname: machine.metadata.name,
    preserve_hostname: false,
    users: [{ name: NETBOOT_USER, sudo: 'ALL=(ALL) NOPASSWD:ALL', shell: '/bin/bash', lock_passwd: true, ssh_authorized_keys: [...spec.sshAuthorizedKeys] }],
  };
  // runcmd runs in the final stage, once the system is up; phone_home would run after it.
  const booted = reportCommand(server, mac, 'booted').map(shellWord).join(' ');
  if (spec.join === undefined) {
    ours.runcmd = [['sh', '-c', booted]];
  } else {
    const join = joinCommand(machine, spec.join).map(shellWord).join(' ');
    const joined = reportCommand(server, mac, 'joined').map(shellWord).join(' ');
    ours.runcmd = [['sh', '-c', `${booted}; ${join} && ${joined}`]];
  }
  const merged = mergeCloudConfig(machine.spec.cloudConfig ?? {}, ours);
  return `#cloud-config\n${stringify(merged, { lineWidth: 0 })}`;
}

/** `theirs` lists first, then ours; for other keys theirs win. */
export function mergeCloudConfig(theirs: Readonly<Record<string, unknown>>, ours: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...ours };
  for (const [key, value] of Object.entries(theirs)) {
    const mine = ours[key];
    merged[key] = Array.isArray(value) && Array.isArray(mine) ? [...(value as unknown[]), ...(mine as unknown[])] : value;
  }
  return merged;
}

function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

export function renderVendorData(): string {
  return '#cloud-config\n{}\n';
}
