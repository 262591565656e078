import type { Machine } from './machines.js';

/**
 * dnsmasq's configuration for netboot (Debian's dnsmasq-base; DHCP and TFTP only, DNS off).
 * Settings and why (measured, see docs/netboot.md):
 * - one `dhcp-host` line per Machine, in a `dhcp-hostsfile` (dnsmasq re-reads it on SIGHUP, so
 *   Machines added or removed while the service runs take effect without a restart), and
 *   `dhcp-ignore=tag:!known`: unknown MACs get no answer;
 * - infinite leases: a node keeps its address when the server is down (the provisioner this
 *   descends from gave 1 h leases from the cluster it provisioned);
 * - firmware PXE clients (vendor class PXEClient) get iPXE over TFTP: `undionly.kpxe` (BIOS) or
 *   `snponly.efi` (UEFI, client arch 7 or 9); iPXE itself (user class `iPXE`, or option 175) gets
 *   the HTTP URL of its script. Telling the two apart stops chainload loops, and offering boot
 *   files only to the `pxe` tag keeps them away from the installed system's own DHCP client;
 * - a router advertisement (`ra-only`) on the interface: without it iPXE waits about 14 s for IPv6
 *   autoconfiguration on every boot.
 * In proxy-DHCP mode another server hands out addresses: dnsmasq answers only PXE requests, with
 * `pxe-service` entries for BIOS and x86-64 EFI.
 */
export interface DnsmasqConfigSpec {
  interface: string;
  /** The interface's IPv4 address (the HTTP server's). */
  serverAddress: string;
  /** The IPv4 network of the interface, e.g. 10.77.0.0, and its netmask. */
  network: string;
  netmask: string;
  httpPort: number;
  tftpRoot: string;
  /** The file of per-Machine host lines (renderDnsmasqHosts); re-read on SIGHUP. */
  hostsFile: string;
  proxyDhcp: boolean;
  /** Send router advertisements (needs an IPv6 address on the interface). */
  routerAdvertisement: boolean;
  leaseFile: string;
  pidFile: string;
  /**
   * The user dnsmasq runs as: the one running kib. By default dnsmasq drops to `nobody`, which
   * cannot reach kib's state directory (the TFTP root and lease file live there, under a home
   * or a private temporary directory) and refuses to start.
   */
  user: string;
}

export const IPXE_BIOS_FILE = 'undionly.kpxe';
export const IPXE_UEFI_FILE = 'snponly.efi';

/** The first script iPXE fetches; it chains to the script of its own MAC (see renderChainScript). */
export function ipxeScriptUrl(serverAddress: string, httpPort: number): string {
  return `http://${serverAddress}:${httpPort}/boot.ipxe`;
}

export function renderDnsmasqConfig(spec: DnsmasqConfigSpec): string {
  const lines = [
    '# Written by kib netboot; regenerated on every start.',
    'port=0',
    `interface=${spec.interface}`,
    'bind-interfaces',
    `user=${spec.user}`,
    'log-dhcp',
    `dhcp-leasefile=${spec.leaseFile}`,
    `pid-file=${spec.pidFile}`,
    'enable-tftp',
    `tftp-root=${spec.tftpRoot}`,
  ];
  if (spec.proxyDhcp) {
    lines.push(`dhcp-range=${spec.network},proxy,${spec.netmask}`);
  } else {
    lines.push(`dhcp-range=${spec.network},static,${spec.netmask},infinite`, 'dhcp-authoritative');
  }
  lines.push(
    `dhcp-hostsfile=${spec.hostsFile}`,
    'dhcp-ignore=tag:!known',
    'dhcp-vendorclass=set:pxe,PXEClient',
    'dhcp-userclass=set:ipxe,iPXE',
    'dhcp-match=set:ipxe,175',
    'dhcp-match=set:efi64,option:client-arch,7',
    'dhcp-match=set:efi64,option:client-arch,9',
  );
  const script = ipxeScriptUrl(spec.serverAddress, spec.httpPort);
  if (spec.proxyDhcp) {
    // In proxy mode the boot file comes from pxe-service; iPXE (which sends no PXEClient menu
    // request the same way) still gets its script through dhcp-boot.
    lines.push(
      `pxe-service=tag:!ipxe,x86PC,"kib netboot (BIOS)",${IPXE_BIOS_FILE.replace(/\.kpxe$/, '')},${spec.serverAddress}`,
      `pxe-service=tag:!ipxe,X86-64_EFI,"kib netboot (UEFI)",${IPXE_UEFI_FILE},${spec.serverAddress}`,
      `dhcp-boot=tag:ipxe,${script}`,
    );
  } else {
    lines.push(
      `dhcp-boot=tag:pxe,tag:!ipxe,tag:!efi64,${IPXE_BIOS_FILE},,${spec.serverAddress}`,
      `dhcp-boot=tag:pxe,tag:!ipxe,tag:efi64,${IPXE_UEFI_FILE},,${spec.serverAddress}`,
      `dhcp-boot=tag:ipxe,${script}`,
    );
  }
  if (spec.routerAdvertisement) lines.push('enable-ra', `dhcp-range=::,constructor:${spec.interface},ra-only`);
  return `${lines.join('\n')}\n`;
}

/** The dhcp-hostsfile: one `MAC,ADDRESS,NAME,infinite` line per Machine (the form of `dhcp-host=`). */
export function renderDnsmasqHosts(machines: readonly Machine[]): string {
  return machines.map((machine) => `${machine.spec.macAddress},${machine.spec.ipAddress},${machine.metadata.name},infinite\n`).join('');
}

/** dnsmasq's argv: the config file, in the foreground, logging to stderr. */
export function dnsmasqArgs(configFile: string): string[] {
  return ['--keep-in-foreground', '--log-facility=-', `--conf-file=${configFile}`];
}
