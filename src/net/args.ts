/**
 * Pure `ip` argv builders for the private L2 segment: a network namespace holding a bridge and
 * one tap per VM (docs/machine.md): a bridge with forward_delay 0 and STP off, so a port forwards
 * at once; taps made by `ip tuntap`, opened later by QEMU by name from inside the namespace.
 */

export const IP_BINARY = 'ip';

export function netnsAddArgs(netns: string): string[] {
  return ['netns', 'add', netns];
}

export function netnsDeleteArgs(netns: string): string[] {
  return ['netns', 'delete', netns];
}

export function netnsListArgs(): string[] {
  return ['-json', 'netns', 'list'];
}

/** Processes still inside a namespace (one pid per line). */
export function netnsPidsArgs(netns: string): string[] {
  return ['netns', 'pids', netns];
}

/** A fresh namespace's loopback is down; user-mode SSH forwards inside it need it up. */
export function loopbackUpArgs(netns: string): string[] {
  return ['-n', netns, 'link', 'set', 'lo', 'up'];
}

/** No STP and no forwarding delay: a port that comes up forwards at once (a VM's first DHCP). */
export function bridgeAddArgs(netns: string, bridge: string): string[] {
  return ['-n', netns, 'link', 'add', bridge, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0'];
}

/** A fixed MAC for a device (a bridge whose guests are restored from memory keep its MAC in their ARP caches). */
export function linkMacArgs(netns: string, device: string, mac: string): string[] {
  return ['-n', netns, 'link', 'set', device, 'address', mac];
}

export function addressAddArgs(netns: string, device: string, cidr: string): string[] {
  return ['-n', netns, 'address', 'add', cidr, 'dev', device];
}

export function linkUpArgs(netns: string, device: string): string[] {
  return ['-n', netns, 'link', 'set', device, 'up'];
}

export function tapAddArgs(netns: string, tap: string): string[] {
  return ['-n', netns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap'];
}

export function tapAttachArgs(netns: string, tap: string, bridge: string): string[] {
  return ['-n', netns, 'link', 'set', tap, 'master', bridge, 'up'];
}

export function linkDeleteArgs(netns: string, device: string): string[] {
  return ['-n', netns, 'link', 'delete', device];
}

/** Linux interface names: at most 15 bytes, no '/', no whitespace, not '.' or '..'. */
export function isValidInterfaceName(name: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name) && name !== '.' && name !== '..';
}

/** Namespace names become files under /run/netns; kib keeps them short and plain. */
export function isValidNetnsName(name: string): boolean {
  return /^[a-z0-9][a-z0-9_.-]{0,47}$/.test(name);
}
