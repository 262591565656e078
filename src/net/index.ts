export {
  addressAddArgs,
  bridgeAddArgs,
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
export { createPrivateNetwork, removePrivateNetwork, listNetns, type PrivateNetwork, type PrivateNetworkSpec } from './private-network.js';
export { renderDnsmasqConfig, dnsmasqArgs, startDnsmasq, stopDnsmasqByPidFile, DNSMASQ_BINARY, type DnsmasqConfigSpec, type DnsmasqHost, type StartDnsmasqSpec } from './dnsmasq.js';
