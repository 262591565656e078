import { describe, expect, it } from 'vitest';
import { KibError } from '../../../src/core/errors.js';
import { dnsmasqArgs, renderDnsmasqConfig, startDnsmasq, type DnsmasqConfigSpec } from '../../../src/net/index.js';

const spec: DnsmasqConfigSpec = {
  bridge: 'br0',
  bridgeIp: '10.77.0.1',
  network: '10.77.0.0',
  netmask: '255.255.255.0',
  domain: 'demo.kib',
  hosts: [
    { mac: '52:54:00:4b:00:01', ip: '10.77.0.11', name: 'node1' },
    { mac: '52:54:00:4b:00:02', ip: '10.77.0.12', name: 'node2' },
  ],
  leaseFile: '/state/clusters/demo/dnsmasq.leases',
  pidFile: '/state/clusters/demo/dnsmasq.pid',
};

describe('renderDnsmasqConfig', () => {
  it('serves DNS for the cluster domain only and static infinite leases by MAC', () => {
    expect(renderDnsmasqConfig(spec).split('\n')).toEqual([
      "# Written by kib for one cluster; dnsmasq runs inside the cluster's network namespace.",
      'interface=br0',
      'bind-interfaces',
      'no-resolv',
      'no-hosts',
      'no-poll',
      'local=/demo.kib/',
      'domain=demo.kib',
      'expand-hosts',
      'dhcp-range=10.77.0.0,static,255.255.255.0,infinite',
      'dhcp-authoritative',
      'dhcp-leasefile=/state/clusters/demo/dnsmasq.leases',
      'pid-file=/state/clusters/demo/dnsmasq.pid',
      'user=root',
      'log-dhcp',
      'log-queries',
      'dhcp-option=option:router,10.77.0.1',
      'dhcp-option=option:dns-server,10.77.0.1',
      'dhcp-host=52:54:00:4b:00:01,10.77.0.11,node1,infinite',
      'host-record=node1.demo.kib,node1,10.77.0.11',
      'dhcp-host=52:54:00:4b:00:02,10.77.0.12,node2,infinite',
      'host-record=node2.demo.kib,node2,10.77.0.12',
      '',
    ]);
  });

  it('never forwards: no server= line at all, and no router when asked', () => {
    const text = renderDnsmasqConfig({ ...spec, router: false });
    expect(text).not.toMatch(/^server=/m);
    expect(text).toContain('dhcp-option=option:router\n');
  });

  it('rejects malformed MACs, addresses, names and duplicates', () => {
    const bad = (override: Partial<DnsmasqConfigSpec>): unknown => {
      try {
        renderDnsmasqConfig({ ...spec, ...override });
      } catch (error) {
        return error;
      }
      return undefined;
    };
    expect(bad({ hosts: [{ mac: '52:54:00:4B:00:01', ip: '10.77.0.11', name: 'node1' }] })).toBeInstanceOf(KibError);
    expect(bad({ hosts: [{ mac: '52:54:00:4b:00:01', ip: '10.77.0.300', name: 'node1' }] })).toBeInstanceOf(KibError);
    expect(bad({ hosts: [{ mac: '52:54:00:4b:00:01', ip: '10.77.0.11', name: 'Node_1' }] })).toBeInstanceOf(KibError);
    expect(String(bad({ hosts: [spec.hosts[0]!, { ...spec.hosts[1]!, ip: '10.77.0.11' }] }))).toContain('10.77.0.11 appears twice');
    expect(bad({ leaseFile: 'relative.leases' })).toBeInstanceOf(KibError);
    expect(bad({ domain: 'bad domain' })).toBeInstanceOf(KibError);
  });
});

describe('dnsmasqArgs', () => {
  it('keeps dnsmasq in the foreground with its own log file', () => {
    expect(dnsmasqArgs('/c/dnsmasq.conf', '/c/dnsmasq.log')).toEqual(['dnsmasq', '--keep-in-foreground', '--conf-file=/c/dnsmasq.conf', '--log-facility=/c/dnsmasq.log']);
  });
});

describe('startDnsmasq', () => {
  it('refuses to run outside a namespace that exists (never on the host network)', async () => {
    await expect(startDnsmasq({ netns: 'kib-no-such-namespace-4711', configPath: '/nonexistent/c', config: spec, logFile: '/nonexistent/l' })).rejects.toMatchObject({
      code: 'DNSMASQ_NO_NAMESPACE',
    });
  });
});
