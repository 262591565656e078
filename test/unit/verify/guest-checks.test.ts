import { describe, expect, it } from 'vitest';
import type { ExpectedImage } from '../../../src/verify/expected.js';
import {
  KUBEVIRT_REQUIRED_AGENT_COMMANDS,
  KUBEVIRT_SSH_KEY_AGENT_COMMANDS,
  guestChecks,
  judgeCloudInitAfterContainerd,
  judgeCloudInitStatus,
} from '../../../src/verify/guest-checks.js';
import { hasFailures, runChecks } from '../../../src/verify/runner.js';
import type { CheckResult } from '../../../src/verify/check.js';
import { cloudInitStatusJson, containerd2Dump, fakeContext, goodDebianOfflineNode, goodRockyNode, type FakeNode } from './fake-node.js';

const rockyExpected: ExpectedImage = {
  osFamily: 'redhat',
  kubernetesVersion: '1.36.1',
  kubernetesInstalled: true,
  kubernetesSkippedReason: null,
  selinux: 'permissive',
  firewall: true,
  imageVersion: 'v0.4.0',
  diskGrownToBytes: 22 * 1024 ** 3,
};

const debianReason = 'pkgs.k8s.io is not reachable from the build VM';
const debianExpected: ExpectedImage = {
  osFamily: 'debian',
  kubernetesVersion: '1.36.1',
  kubernetesInstalled: false,
  kubernetesSkippedReason: debianReason,
  selinux: 'permissive',
  firewall: true,
};

/** `null`: the CLI could not tell which user SSH logged in as. */
async function runOn(node: FakeNode, expected: ExpectedImage, sshUser: string | null = 'kib'): Promise<CheckResult[]> {
  return runChecks(guestChecks, fakeContext(node, expected, sshUser ?? undefined));
}

const ids = (results: readonly CheckResult[], status: CheckResult['status']): string[] =>
  results.filter((r) => r.status === status).map((r) => r.id);

const byId = (results: readonly CheckResult[], id: string): CheckResult => {
  const found = results.find((r) => r.id === id);
  if (found === undefined) throw new Error(`no result ${id}`);
  return found;
};

const KUBERNETES_CHECKS = [
  'packages/kubeadm-version',
  'packages/kubelet-version',
  'packages/kubectl-version',
  'packages/kubeadm',
  'packages/kubelet',
  'packages/kubectl',
  'packages/cri-tools',
  'packages/kubernetes-cni',
  'runtime/crictl-version',
  'runtime/crictl-reaches-containerd',
  'services/kubelet',
  'images/prepulled',
  'images/sandbox-matches-kubeadm',
];

/** Skipped with the Kubernetes packages: the same gate installs containerd and runc. */
const RUNTIME_CHECKS = ['runtime/containerd-version', 'runtime/runc-version', 'runtime/systemd-cgroup', 'services/containerd', 'cloud-init/after-containerd'];

describe('guestChecks list', () => {
  it('has unique ids of the form <group>/<name>', () => {
    const seen = new Set<string>();
    for (const check of guestChecks) {
      expect(check.id).toMatch(/^[a-z-]+\/[a-z0-9._-]+$/);
      expect(check.id.startsWith(`${check.group}/`)).toBe(true);
      expect(seen.has(check.id)).toBe(false);
      seen.add(check.id);
    }
  });

  it('asks the agent for guest-info and every KubeVirt command it can call without side effects', async () => {
    const ctx = fakeContext(goodRockyNode(), rockyExpected, 'kib');
    await runChecks(guestChecks, ctx);
    const called = new Set(ctx.log.agentCalls.map((c) => c.execute));
    // guest-shutdown would stop the VM: guest-info proves it is there and enabled instead.
    const callable = KUBEVIRT_REQUIRED_AGENT_COMMANDS.filter((name) => name !== 'guest-shutdown');
    for (const name of callable) expect(called.has(name), name).toBe(true);
    expect(called.has('guest-shutdown')).toBe(false);
    expect(ctx.log.agentCalls.find((c) => c.execute === 'guest-ssh-get-authorized-keys')?.args).toEqual({ username: 'kib' });
  });

  it('requires in guest-info every command KubeVirt needs, including SSH key propagation', async () => {
    for (const name of [...KUBEVIRT_REQUIRED_AGENT_COMMANDS, ...KUBEVIRT_SSH_KEY_AGENT_COMMANDS]) {
      const node = goodRockyNode();
      const info = node.agent['guest-info'] as { supported_commands: { name: string }[] };
      info.supported_commands = info.supported_commands.filter((c) => c.name !== name);
      const results = await runOn(node, rockyExpected);
      expect(byId(results, 'guest-agent/guest-info').status, name).toBe('fail');
      expect(byId(results, 'guest-agent/guest-info').detail).toContain(name);
    }
  });
});

describe('a good Rocky node', () => {
  it('passes every check', async () => {
    const results = await runOn(goodRockyNode(), rockyExpected);
    expect(ids(results, 'fail'), JSON.stringify(results.filter((r) => r.status === 'fail'), null, 2)).toEqual([]);
    expect(ids(results, 'skip')).toEqual([]);
    expect(results).toHaveLength(guestChecks.length);
    expect(hasFailures(results)).toBe(false);
  });

  it('ignores the MAC-bound file cloud-init wrote on this boot, and says so', async () => {
    const results = await runOn(goodRockyNode(), rockyExpected);
    expect(byId(results, 'network/no-mac-bound-config').detail).toBe('1 file(s) checked, 1 written by cloud-init on this boot ignored');
  });

  it('reports the sandbox image, the image count and the cloud-init status in details', async () => {
    const results = await runOn(goodRockyNode(), rockyExpected);
    expect(byId(results, 'images/sandbox-matches-kubeadm').detail).toBe('registry.k8s.io/pause:3.10.1');
    expect(byId(results, 'images/prepulled').detail).toMatch(/^7 images: kube-apiserver:v1\.36\.1, /);
    expect(byId(results, 'cloud-init/status').detail).toBe('done (DataSourceNoCloud [seed=/dev/vdb])');
    expect(byId(results, 'services/kubelet').detail).toBe('kubelet: activating (auto-restart), enabled');
  });

  it('skips the SSH-key agent check when no SSH user is known', async () => {
    const results = await runOn(goodRockyNode(), rockyExpected, null);
    expect(ids(results, 'skip')).toEqual(['guest-agent/guest-ssh-get-authorized-keys']);
  });
});

describe('a good Debian offline node (Kubernetes skipped)', () => {
  it('passes, and skips exactly the Kubernetes, runtime, SELinux and disk-growth checks', async () => {
    const results = await runOn(goodDebianOfflineNode(), debianExpected);
    expect(ids(results, 'fail'), JSON.stringify(results.filter((r) => r.status === 'fail'), null, 2)).toEqual([]);
    expect(ids(results, 'skip').sort()).toEqual([...KUBERNETES_CHECKS, ...RUNTIME_CHECKS, 'kernel/selinux-mode', 'kernel/selinux-config', 'disk/root-grown'].sort());
  });

  it('says why the runtime checks are skipped: containerd shares the Kubernetes packages\' gate', async () => {
    const results = await runOn(goodDebianOfflineNode(), debianExpected);
    for (const id of RUNTIME_CHECKS) expect(byId(results, id).detail).toMatch(/^containerd and runc are installed only together with the Kubernetes packages.*: /);
    expect(byId(results, 'services/containerd').detail).toContain(debianReason);
  });

  it("gives the manifest's reason for every skipped Kubernetes check", async () => {
    const results = await runOn(goodDebianOfflineNode(), debianExpected);
    for (const id of KUBERNETES_CHECKS) {
      expect(byId(results, id).detail).toBe(`Kubernetes packages are not in this image: ${debianReason}`);
    }
    expect(byId(results, 'kernel/selinux-mode').detail).toBe('does not apply to the debian family');
  });

  it('runs no Kubernetes command on the node', async () => {
    const ctx = fakeContext(goodDebianOfflineNode(), debianExpected, 'kib');
    await runChecks(guestChecks, ctx);
    expect(ctx.log.commands.filter((c) => /kubeadm|kubelet|kubectl|crictl|containerd|runc/.test(c))).toEqual([]);
  });
});

describe('broken Rocky nodes fail exactly the checks that see the defect', () => {
  const cases: { name: string; breakIt: (node: FakeNode) => void; fails: string[]; detail?: [string, RegExp] }[] = [
    {
      name: 'wrong kubelet version',
      breakIt: (n) => {
        n.kubelet = 'v1.35.4';
      },
      fails: ['packages/kubelet-version'],
      detail: ['packages/kubelet-version', /got "Kubernetes v1\.35\.4", expected "Kubernetes v1\.36\.1"/],
    },
    {
      name: 'kubeadm package of another patch release',
      breakIt: (n) => {
        n.packages['kubeadm'] = '1.36.10-150500.1.1';
      },
      fails: ['packages/kubeadm'],
    },
    {
      name: 'swap on',
      breakIt: (n) => {
        n.swaps = '/dev/vda5 partition 2G 0B -2';
        n.fstab += '\n/dev/vda5 none swap defaults 0 0';
      },
      fails: ['kernel/swap-off', 'kernel/no-swap-in-fstab'],
    },
    {
      name: 'br_netfilter neither loaded nor persisted',
      breakIt: (n) => {
        n.modulesLoaded = ['overlay'];
        n.modulesLoadFiles = { '/etc/modules-load.d/kubernetes.conf': 'overlay' };
        delete n.sysctls['net.bridge.bridge-nf-call-iptables'];
        delete n.sysctls['net.bridge.bridge-nf-call-ip6tables'];
      },
      fails: [
        'kernel/module-br_netfilter-loaded',
        'kernel/module-br_netfilter-persisted',
        'kernel/sysctl-net.bridge.bridge-nf-call-iptables',
        'kernel/sysctl-net.bridge.bridge-nf-call-ip6tables',
      ],
    },
    {
      name: 'guest agent without guest-get-osinfo',
      breakIt: (n) => {
        const info = n.agent['guest-info'] as { supported_commands: { name: string }[] };
        info.supported_commands = info.supported_commands.filter((c) => c.name !== 'guest-get-osinfo');
        delete n.agent['guest-get-osinfo'];
      },
      fails: ['guest-agent/guest-info', 'guest-agent/guest-get-osinfo'],
      detail: ['guest-agent/guest-get-osinfo', /The command guest-get-osinfo has not been found/],
    },
    {
      name: 'guest agent with the SSH key commands disabled',
      breakIt: (n) => {
        const info = n.agent['guest-info'] as { supported_commands: { name: string; enabled: boolean }[] };
        for (const c of info.supported_commands) if (c.name.startsWith('guest-ssh-')) c.enabled = false;
      },
      fails: ['guest-agent/guest-info'],
      detail: ['guest-agent/guest-info', /^disabled guest-ssh-get-authorized-keys, guest-ssh-add-authorized-keys, guest-ssh-remove-authorized-keys$/],
    },
    {
      name: 'MAC-bound NetworkManager keyfile in the image',
      breakIt: (n) => {
        n.networkFiles['/etc/NetworkManager/system-connections/eth0.nmconnection'] = '[connection]\nid=eth0\ntype=ethernet\n[ethernet]\nmac-address=52:54:00:AA:BB:CC';
      },
      fails: ['network/no-mac-bound-config'],
      detail: ['network/no-mac-bound-config', /eth0\.nmconnection:5: mac-address=52:54:00:AA:BB:CC/],
    },
    {
      name: "pause image different from kubeadm's",
      breakIt: (n) => {
        n.containerdDump = containerd2Dump('registry.k8s.io/pause:3.10');
      },
      fails: ['images/sandbox-matches-kubeadm'],
      detail: ['images/sandbox-matches-kubeadm', /containerd uses registry\.k8s\.io\/pause:3\.10, kubeadm expects registry\.k8s\.io\/pause:3\.10\.1/],
    },
    {
      name: 'an image missing and an extra one present',
      breakIt: (n) => {
        n.crictlImages = [...n.crictlImages.filter((ref) => !ref.includes('etcd')), 'docker.io/library/busybox:1.36'];
      },
      fails: ['images/prepulled'],
      detail: ['images/prepulled', /^missing registry\.k8s\.io\/etcd:3\.6\.5-0; unexpected docker\.io\/library\/busybox:1\.36$/],
    },
    {
      name: 'kubelet running before kubeadm',
      breakIt: (n) => {
        n.services['kubelet'] = { load: 'loaded', active: 'active', sub: 'running', file: 'enabled' };
      },
      fails: ['services/kubelet'],
    },
    {
      name: 'firewalld missing although the firewall is on',
      breakIt: (n) => {
        delete n.services['firewalld'];
      },
      fails: ['services/firewalld'],
      detail: ['services/firewalld', /firewalld: not installed; expected active and enabled/],
    },
    {
      name: 'SELinux enforcing although permissive was configured',
      breakIt: (n) => {
        n.selinux = { live: 'Enforcing', config: 'enforcing' };
      },
      fails: ['kernel/selinux-mode', 'kernel/selinux-config'],
    },
    {
      name: 'cgroup v1',
      breakIt: (n) => {
        n.cgroupFs = 'tmpfs';
      },
      fails: ['kernel/cgroup-v2'],
    },
    {
      // Seen on Debian with firewalld: systemd dropped cloud-init.service (the network stage), so
      // no host keys were made and sshd could not start, while `cloud-init status` said done.
      name: 'systemd broke an ordering cycle by dropping cloud-init.service',
      breakIt: (n) => {
        n.cloudInitStatusJson = cloudInitStatusJson('DataSourceNoCloud [seed=/dev/vdb][dsmode=net]', ['init']);
        n.orderingCycleLines = [
          'dbus.service: Found ordering cycle on sysinit.target/start',
          'dbus.service: Found dependency on firewalld.service/start',
          'dbus.service: Job cloud-init.service/start deleted to break ordering cycle starting with dbus.service/start',
        ].join('\n');
      },
      fails: ['cloud-init/stages', 'services/no-ordering-cycle'],
      detail: ['services/no-ordering-cycle', /Job cloud-init\.service\/start deleted to break ordering cycle/],
    },
    {
      name: 'cloud-init never ran',
      breakIt: (n) => {
        n.cloudInitStatusJson = undefined;
      },
      fails: ['cloud-init/stages'],
      detail: ['cloud-init/stages', /did not run/],
    },
    {
      name: 'ConfigDrive missing from the datasource list',
      breakIt: (n) => {
        n.dsIdentifyLog = 'DSLIST=NoCloud None\n';
      },
      fails: ['cloud-init/datasources'],
    },
    {
      name: 'cloud-init error',
      breakIt: (n) => {
        n.cloudInit = { stdout: 'status: error\nextended_status: error - done\ndetail: DataSourceNoCloud [seed=/dev/vdb]\n', exitCode: 1 };
      },
      fails: ['cloud-init/status'],
    },
    {
      name: 'no jinja2 and no admin group',
      breakIt: (n) => {
        n.jinja2 = undefined;
        n.adminGroup = false;
      },
      fails: ['cloud-init/jinja2', 'cloud-init/admin-group'],
    },
    {
      name: 'missing preflight programs',
      breakIt: (n) => {
        n.programs = n.programs.filter((p) => p !== 'nsenter' && p !== 'socat');
      },
      fails: ['kubernetes/preflight-required-programs', 'kubernetes/preflight-optional-programs'],
      detail: ['kubernetes/preflight-required-programs', /^not found in PATH: nsenter$/],
    },
    {
      name: 'no drop-in orders cloud-final after containerd',
      breakIt: (n) => {
        n.unitDependencies['cloud-final.service'] = { wants: 'network-online.target', after: 'cloud-config.service network-online.target basic.target' };
      },
      fails: ['cloud-init/after-containerd'],
      detail: ['cloud-init/after-containerd', /^cloud-final\.service: containerd\.service not in After or Wants$/],
    },
    {
      // Ordering alone does not start containerd; Wants= is what pulls it into the boot.
      name: 'cloud-config ordered after containerd but not wanting it',
      breakIt: (n) => {
        const unit = n.unitDependencies['cloud-config.service'];
        if (unit !== undefined) unit.wants = 'network-online.target';
      },
      fails: ['cloud-init/after-containerd'],
      detail: ['cloud-init/after-containerd', /^cloud-config\.service: containerd\.service not in Wants$/],
    },
    {
      name: 'containerd with the cgroupfs driver',
      breakIt: (n) => {
        n.containerdDump = containerd2Dump('registry.k8s.io/pause:3.10.1').replace('SystemdCgroup = true', 'SystemdCgroup = false');
      },
      fails: ['runtime/systemd-cgroup'],
    },
    {
      name: 'release file of another Kubernetes version',
      breakIt: (n) => {
        n.releaseFile = n.releaseFile?.replace('KUBERNETES_VERSION=1.36.1', 'KUBERNETES_VERSION=1.36.0');
      },
      fails: ['provenance/release-file'],
      detail: ['provenance/release-file', /^KUBERNETES_VERSION=1\.36\.0, expected 1\.36\.1$/],
    },
    {
      name: 'root filesystem not grown',
      breakIt: (n) => {
        n.diskProbe = 'root=/dev/vda4\ndisk=/dev/vda\nvda 23622320128 disk\nvda1 1048576 part\nvda2 104857600 part\nvda3 1048576000 part\nvda4 8388608000 part\nfs=8371830784\n';
      },
      fails: ['disk/root-grown'],
      detail: ['disk/root-grown', /in no partition \(growpart did not run\)/],
    },
    {
      name: 'guest agent hostname empty and osinfo of another distribution',
      breakIt: (n) => {
        n.agent['guest-get-host-name'] = { 'host-name': '' };
        n.agent['guest-get-osinfo'] = { id: 'almalinux', 'pretty-name': 'AlmaLinux 9' };
      },
      fails: ['guest-agent/guest-get-host-name', 'guest-agent/guest-get-osinfo'],
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const node = goodRockyNode();
      c.breakIt(node);
      const results = await runOn(node, rockyExpected);
      expect(ids(results, 'fail').sort()).toEqual([...c.fails].sort());
      if (c.detail !== undefined) expect(byId(results, c.detail[0]).detail).toMatch(c.detail[1]);
    });
  }
});

describe('cloud-init status', () => {
  it('passes degraded done with a note, because CAPI gates on its own sentinel file', () => {
    const outcome = judgeCloudInitStatus(
      'status: done\nextended_status: degraded done\nboot_status_code: enabled-by-generator\ndetail: DataSourceConfigDrive [net,ver=2][source=/dev/vdb]\nrecoverable_errors:\nWARNING:\n\t- Deprecated cloud-config provided: groups\n',
      2,
    );
    expect(outcome).toEqual({ ok: true, detail: 'done, degraded: recoverable errors reported (DataSourceConfigDrive [net,ver=2][source=/dev/vdb])' });
  });

  it('treats exit code 2 on a release without extended_status as degraded', () => {
    expect(judgeCloudInitStatus('status: done\n', 2)).toEqual({ ok: true, detail: 'done, degraded: recoverable errors reported' });
  });

  it('fails error, running and disabled', () => {
    expect(judgeCloudInitStatus('status: error\ntime: x\ndetail:\n(\'runcmd\', RuntimeError())\n', 1)).toEqual({ ok: false, detail: "error ((\'runcmd\', RuntimeError()))" });
    expect(judgeCloudInitStatus('status: running\n', 0)).toEqual({ ok: false, detail: 'status running' });
    expect(judgeCloudInitStatus('status: disabled\n', 0)).toEqual({ ok: false, detail: 'status disabled' });
    expect(judgeCloudInitStatus('', 1)).toEqual({ ok: false, detail: 'status unknown, exit code 1' });
  });
});

describe('cloud-init ordered after containerd', () => {
  it('fails a unit systemctl did not report on, and a failed systemctl', () => {
    expect(judgeCloudInitAfterContainerd('Id=cloud-config.service\nWants=containerd.service\nAfter=containerd.service\n', 0)).toEqual({
      ok: false,
      detail: 'cloud-final.service: not in the output',
    });
    expect(judgeCloudInitAfterContainerd('', 1)).toEqual({ ok: false, detail: 'systemctl show failed (exit code 1)' });
  });

  it('reads containerd.service as a whole word, not a prefix of another unit', () => {
    const block = (id: string): string => `Id=${id}\nWants=containerd.service.d\nAfter=containerd.services\n`;
    expect(judgeCloudInitAfterContainerd(`${block('cloud-config.service')}\n${block('cloud-final.service')}`, 0)).toMatchObject({ ok: false });
  });
});
