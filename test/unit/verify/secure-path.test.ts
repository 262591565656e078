import { describe, expect, it } from 'vitest';
import type { ExpectedImage } from '../../../src/verify/expected.js';
import { KUBEADM_OPTIONAL_PROGRAMS, KUBEADM_REQUIRED_PROGRAMS, guestChecks } from '../../../src/verify/guest-checks.js';
import { runChecks } from '../../../src/verify/runner.js';
import { commandNames } from '../../support/shell-commands.js';
import { fakeContext, goodRockyNode } from './fake-node.js';

/**
 * `kib verify` runs every check command through `sudo -n sh -c`, so the shell looks programs up in
 * sudoers' `secure_path`. On EL9 that is /sbin:/bin:/usr/sbin:/usr/bin (no /usr/local; seen on
 * Rocky, RHEL and Alma in github.com/ezrizhu/cs497 src/securepath.md). A check may name a program
 * bare only when EL9 installs it in one of those directories.
 *
 * The programs below, and the EL9 package that puts each in /usr/bin or /usr/sbin (/bin and
 * /sbin are links to them on EL9). Add a program here only after checking where its EL9 package
 * installs it; anything under /usr/local (containerd, runc, ctr from upstream tarballs) must be
 * called by absolute path instead.
 */
const EL9_SECURE_PATH_PROGRAMS: ReadonlyMap<string, string> = new Map([
  // coreutils
  ['cat', 'coreutils'],
  ['df', 'coreutils'],
  ['head', 'coreutils'],
  ['stat', 'coreutils'],
  ['tail', 'coreutils'],
  ['touch', 'coreutils'],
  ['tr', 'coreutils'],
  ['uname', 'coreutils'],
  // text tools
  ['awk', 'gawk'],
  ['grep', 'grep'],
  ['sed', 'sed'],
  // system
  ['findmnt', 'util-linux'],
  ['lsblk', 'util-linux'],
  ['mount', 'util-linux'],
  ['nsenter', 'util-linux'],
  ['swapon', 'util-linux (/usr/sbin)'],
  ['sysctl', 'procps-ng (/usr/sbin)'],
  ['systemctl', 'systemd'],
  ['journalctl', 'systemd'],
  ['getent', 'glibc-common'],
  ['getenforce', 'libselinux-utils (/usr/sbin)'],
  ['rpm', 'rpm'],
  ['python3', 'python3'],
  ['cloud-init', 'cloud-init'],
  // networking (kubeadm preflight looks these up in the same PATH)
  ['ip', 'iproute (/usr/sbin)'],
  ['tc', 'iproute-tc (/usr/sbin)'],
  ['iptables', 'iptables-nft (/usr/sbin)'],
  ['conntrack', 'conntrack-tools (/usr/sbin)'],
  ['ethtool', 'ethtool (/usr/sbin)'],
  ['socat', 'socat'],
  // pkgs.k8s.io packages install to %{_bindir}; cri-tools too (kubernetes/release
  // cmd/kubepkg/templates/latest/rpm/cri-tools/cri-tools.spec: %{_bindir}/crictl).
  ['kubeadm', 'kubeadm'],
  ['kubelet', 'kubelet'],
  ['kubectl', 'kubectl'],
  ['crictl', 'cri-tools'],
]);

/** Shell builtins (dash and bash): never looked up in PATH. */
const SHELL_BUILTINS = new Set(['[', 'test', 'echo', 'printf', 'true', 'false', 'command', 'cd', 'exit', 'set', 'export']);

/** A Rocky node on which every check applies (Kubernetes installed, disk grown, SSH user known). */
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

async function rockyCommands(): Promise<string[]> {
  const ctx = fakeContext(goodRockyNode(), rockyExpected, 'kib');
  const results = await runChecks(guestChecks, ctx);
  // Every check ran to its end on the good node, so every command a check can send was sent.
  expect(results.filter((r) => r.status !== 'pass').map((r) => `${r.status} ${r.id}: ${r.detail}`)).toEqual([]);
  return ctx.log.commands;
}

function notOnSecurePath(names: readonly string[]): string[] {
  return names.filter((name) => !name.startsWith('/') && !SHELL_BUILTINS.has(name) && !EL9_SECURE_PATH_PROGRAMS.has(name));
}

describe("guest checks on EL9 find every program through sudo's secure_path", () => {
  it('names every program either by absolute path or as one EL9 installs in /usr/bin or /usr/sbin', async () => {
    const commands = await rockyCommands();
    const offending = commands.flatMap((command) => notOnSecurePath(commandNames(command)).map((name) => `${name} in: ${command}`));
    expect(offending).toEqual([]);
  });

  it('calls containerd and runc by the paths playbook/roles/containerd installs them at', async () => {
    const names = (await rockyCommands()).flatMap(commandNames);
    expect(names).toContain('/usr/local/bin/containerd');
    expect(names).toContain('/usr/local/sbin/runc');
  });

  it("looks up kubeadm preflight's programs only where EL9 installs them", () => {
    expect(notOnSecurePath([...KUBEADM_REQUIRED_PROGRAMS, ...KUBEADM_OPTIONAL_PROGRAMS])).toEqual([]);
  });

  it('rejects the bare containerd and runc the checks used to call', () => {
    expect(notOnSecurePath(commandNames('containerd --version'))).toEqual(['containerd']);
    expect(notOnSecurePath(commandNames('runc --version'))).toEqual(['runc']);
    expect(notOnSecurePath(commandNames('ctr version'))).toEqual(['ctr']);
  });
});

describe('commandNames', () => {
  it('finds the programs of pipelines, lists, command substitutions and compound commands', () => {
    expect(commandNames("journalctl --boot _PID=1 --output=cat --no-pager | grep -i 'ordering cycle' || true")).toEqual(['journalctl', 'grep', 'true']);
    expect(
      commandNames(
        `if [ -d /sys/module/overlay ]; then echo loaded; elif grep -q '/overlay\\.ko' "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null; then echo builtin; else echo missing; fi`,
      ),
    ).toEqual(['[', 'echo', 'grep', 'uname', 'echo', 'echo']);
    expect(commandNames('for p in ip tc; do command -v "$p" >/dev/null 2>&1 || echo "missing $p"; done; true')).toEqual(['command', 'echo', 'true']);
    expect(
      commandNames(
        'src=$(findmnt -no SOURCE /); pk=$(lsblk -no PKNAME "$src" | head -n1); [ -n "$pk" ] || pk=${src#/dev/}; ' +
          'echo "fs=$(df -B1 --output=size / | tail -n1 | tr -d " ")"',
      ),
    ).toEqual(['findmnt', 'lsblk', 'head', '[', 'echo', 'df', 'tail', 'tr']);
    expect(commandNames(`awk '!/^[[:space:]]*#/ && $3 == "swap"' /etc/fstab`)).toEqual(['awk']);
    expect(commandNames('LC_ALL=C /usr/local/bin/containerd config dump > /tmp/x; cat /tmp/x')).toEqual(['/usr/local/bin/containerd', 'cat']);
  });

  it('refuses forms it cannot read rather than missing a program', () => {
    expect(() => commandNames('echo `uname -r`')).toThrow(/backquotes/);
    expect(() => commandNames('$tool --version')).toThrow(/expansion/);
    expect(() => commandNames('case x in x) uname;; esac')).toThrow(/case/);
    expect(() => commandNames("echo 'open")).toThrow(/unbalanced/);
  });
});
