import {
  agentCommand,
  clip,
  commandCheck,
  failureText,
  moduleLoaded,
  modulePersisted,
  onlyRedhat,
  packageInstalled,
  programsPresent,
  serviceState,
  shellQuote,
  skipUnlessKubernetes,
  skipUnlessRuntime,
  sysctl,
  type Check,
  type CheckOutcome,
} from './check.js';
import { RELEASE_FILE_PATH, RELEASE_FILE_REQUIRED_KEYS, parseReleaseFile, type ExpectedImage } from './expected.js';
import {
  NETWORK_CONFIG_GLOBS,
  compareSets,
  dumpFilesCommand,
  findMacBoundLines,
  isCloudInitNetworkFile,
  parseCloudInitStatus,
  parseContainerdConfig,
  parseCrictlImages,
  parseDsIdentifyList,
  parseFileDump,
  parseImageList,
  parseRootDiskLayout,
  parseUnitProperties,
  pauseImageOf,
} from './parse.js';

/**
 * Guest-agent commands KubeVirt needs before it reports the agent as supported (a VMI without
 * them gets AgentVersionNotSupported). Source: kubevirt pkg/virt-handler guest-agent checks.
 */
export const KUBEVIRT_REQUIRED_AGENT_COMMANDS = [
  'guest-ping',
  'guest-get-time',
  'guest-info',
  'guest-shutdown',
  'guest-network-get-interfaces',
  'guest-get-fsinfo',
  'guest-get-host-name',
  'guest-get-users',
  'guest-get-timezone',
  'guest-get-osinfo',
] as const;

/** What KubeVirt's qemuGuestAgent SSH-key propagation uses first (before the guest-exec fallback). */
export const KUBEVIRT_SSH_KEY_AGENT_COMMANDS = [
  'guest-ssh-get-authorized-keys',
  'guest-ssh-add-authorized-keys',
  'guest-ssh-remove-authorized-keys',
] as const;

/** kubeadm preflight (Linux, Kubernetes ≥ 1.32) fails without these in PATH. */
export const KUBEADM_REQUIRED_PROGRAMS = ['ip', 'iptables', 'mount', 'nsenter'] as const;

/**
 * kubeadm preflight only warns without these, but CNI plugins and kube-proxy use them. ebtables is
 * not asked for: kubeadm only warns without it, and the playbook does not install it on EL9 (where
 * it would have to come with iptables-nft, which is not confirmed on a Rocky guest).
 */
export const KUBEADM_OPTIONAL_PROGRAMS = ['conntrack', 'ethtool', 'socat', 'tc', 'touch'] as const;

/**
 * Where playbook/roles/containerd installs the upstream release binaries. Checks name them by
 * absolute path because they run through `sudo`, and EL9's sudoers `secure_path`
 * (/sbin:/bin:/usr/sbin:/usr/bin, as printed on Rocky, RHEL and Alma in
 * github.com/ezrizhu/cs497 src/securepath.md) has no /usr/local: a bare `containerd` is "command
 * not found" there although the image is fine. Binaries from distribution and pkgs.k8s.io packages
 * (kubeadm, kubelet, kubectl, crictl) live in /usr/bin and are named bare.
 */
export const CONTAINERD_BINARY = '/usr/local/bin/containerd';
export const RUNC_BINARY = '/usr/local/sbin/runc';

/** cloud-init's units that run user-data (`kubeadm init/join` from CABPK runs in cloud-final). */
export const CLOUD_INIT_UNITS_AFTER_RUNTIME = ['cloud-config.service', 'cloud-final.service'] as const;

/** image-builder's node sysctls: the ones its Goss spec asserts, plus the congestion control and inotify limits it sets. */
export const NODE_SYSCTLS: readonly (readonly [string, string])[] = [
  ['net.bridge.bridge-nf-call-iptables', '1'],
  ['net.bridge.bridge-nf-call-ip6tables', '1'],
  ['net.ipv4.ip_forward', '1'],
  ['net.ipv6.conf.all.forwarding', '1'],
  ['net.ipv6.conf.all.disable_ipv6', '0'],
  ['net.ipv4.tcp_congestion_control', 'bbr'],
  ['vm.overcommit_memory', '1'],
  ['kernel.panic', '10'],
  ['kernel.panic_on_oops', '1'],
  ['fs.inotify.max_user_instances', '8192'],
  ['fs.inotify.max_user_watches', '524288'],
];

/** Datasources KubeVirt uses: cloudInitNoCloud and cloudInitConfigDrive (CAPK uses the latter). */
export const REQUIRED_DATASOURCES = ['NoCloud', 'ConfigDrive'] as const;

/** Slack for the root filesystem after growth: partition alignment, backup GPT, filesystem metadata. */
export const DISK_GROWTH_UNPARTITIONED_TOLERANCE_BYTES = 64 * 1024 * 1024;
export const DISK_GROWTH_FILESYSTEM_RATIO = 0.95;

const kubernetesVersionTag = (e: ExpectedImage): string => `v${e.kubernetesVersion}`;

/** The kubeadm image list for the pinned version; no registry is contacted when the version is explicit. */
const kubeadmImagesCommand = (e: ExpectedImage): string =>
  `kubeadm config images list --kubernetes-version ${shellQuote(kubernetesVersionTag(e))}`;

/**
 * Every check run over SSH and the guest agent on a booted artifact. Read it as the spec of a
 * good node image. Hygiene (host keys, machine-id, build leftovers) is not here: booting changes
 * exactly those files, so `hygieneChecks` reads them from the artifact itself.
 */
export const guestChecks: readonly Check[] = [
  // ── packages: exact Kubernetes versions, and the packages KubeVirt and CAPI rely on
  commandCheck({
    id: 'packages/kubeadm-version',
    title: 'kubeadm is the pinned version',
    appliesTo: skipUnlessKubernetes,
    command: 'kubeadm version -o short',
    expect: { equals: kubernetesVersionTag },
  }),
  commandCheck({
    id: 'packages/kubelet-version',
    title: 'kubelet is the pinned version',
    appliesTo: skipUnlessKubernetes,
    command: 'kubelet --version',
    expect: { equals: (e) => `Kubernetes ${kubernetesVersionTag(e)}` },
  }),
  commandCheck({
    id: 'packages/kubectl-version',
    title: 'kubectl is the pinned version',
    appliesTo: skipUnlessKubernetes,
    command: 'kubectl version --client -o json',
    interpret: (result, e) => {
      if (result.exitCode !== 0) return { ok: false, detail: `kubectl failed${failureText(result)}` };
      const got = jsonField(result.stdout, ['clientVersion', 'gitVersion']);
      const want = kubernetesVersionTag(e);
      return got === want ? { ok: true, detail: got } : { ok: false, detail: `kubectl ${String(got)}, expected ${want}` };
    },
  }),
  packageInstalled('kubeadm', { appliesTo: skipUnlessKubernetes, version: (e) => e.kubernetesVersion }),
  packageInstalled('kubelet', { appliesTo: skipUnlessKubernetes, version: (e) => e.kubernetesVersion }),
  packageInstalled('kubectl', { appliesTo: skipUnlessKubernetes, version: (e) => e.kubernetesVersion }),
  packageInstalled('cri-tools', { appliesTo: skipUnlessKubernetes }),
  packageInstalled('kubernetes-cni', { appliesTo: skipUnlessKubernetes }),
  packageInstalled('qemu-guest-agent'),
  packageInstalled('cloud-init'),
  packageInstalled('chrony'),

  // ── runtime: containerd, runc, crictl and how containerd is configured
  commandCheck({
    id: 'runtime/containerd-version',
    title: 'containerd runs and reports its version',
    appliesTo: skipUnlessRuntime,
    command: `${CONTAINERD_BINARY} --version`,
    expect: { stdout: /^containerd \S+ v?\d+\.\d+\.\d+/ },
  }),
  commandCheck({
    id: 'runtime/runc-version',
    title: 'runc runs and reports its version',
    appliesTo: skipUnlessRuntime,
    command: `${RUNC_BINARY} --version`,
    expect: { stdout: /^runc version \d+\.\d+\.\d+/ },
  }),
  commandCheck({
    id: 'runtime/crictl-version',
    title: 'crictl runs and reports its version',
    appliesTo: skipUnlessKubernetes,
    command: 'crictl --version',
    expect: { stdout: /^crictl version v?\d+\.\d+\.\d+/ },
  }),
  commandCheck({
    id: 'runtime/crictl-reaches-containerd',
    title: 'crictl talks to containerd over CRI',
    appliesTo: skipUnlessKubernetes,
    command: 'crictl ps',
    expect: { exitCode: 0 },
  }),
  commandCheck({
    id: 'runtime/systemd-cgroup',
    title: 'containerd runs containers with the systemd cgroup driver',
    appliesTo: skipUnlessRuntime,
    command: `${CONTAINERD_BINARY} config dump`,
    interpret: (result) => {
      if (result.exitCode !== 0) return { ok: false, detail: `containerd config dump failed${failureText(result)}` };
      const { systemdCgroup } = parseContainerdConfig(result.stdout);
      if (systemdCgroup === true) return { ok: true, detail: 'runc SystemdCgroup = true' };
      return { ok: false, detail: `runc SystemdCgroup is ${systemdCgroup === undefined ? 'not set' : 'false'}; the kubelet uses the systemd driver` };
    },
  }),

  // ── services
  serviceState('containerd', 'containerd', { active: 'active', enabled: 'enabled' }, { appliesTo: skipUnlessRuntime }),
  serviceState('kubelet', 'kubelet', { active: 'inactive', enabled: 'enabled' }, { appliesTo: skipUnlessKubernetes }),
  serviceState('qemu-guest-agent', 'qemu-guest-agent', { active: 'active' }),
  serviceState('chrony', (e) => (e.osFamily === 'redhat' ? 'chronyd' : 'chrony'), { active: 'active', enabled: 'enabled' }),
  serviceState('sshd', (e) => (e.osFamily === 'redhat' ? 'sshd' : 'ssh'), { active: 'active', enabled: 'enabled' }),
  serviceState('firewalld', 'firewalld', (e) =>
    e.firewall ? { active: 'active', enabled: 'enabled' } : { active: 'inactive', enabled: 'disabled' },
  ),

  // ── kernel: modules, sysctls, swap, cgroups, SELinux
  moduleLoaded('overlay'),
  modulePersisted('overlay'),
  moduleLoaded('br_netfilter'),
  modulePersisted('br_netfilter'),
  ...NODE_SYSCTLS.map(([name, value]) => sysctl(name, value)),
  commandCheck({
    id: 'kernel/swap-off',
    title: 'no swap is active',
    command: 'swapon --show --noheadings',
    interpret: (result) => {
      if (result.exitCode !== 0) return { ok: false, detail: `swapon failed${failureText(result)}` };
      const active = result.stdout.trim();
      return active === '' ? { ok: true, detail: 'no active swap' } : { ok: false, detail: `active swap: ${clip(active)}` };
    },
  }),
  commandCheck({
    id: 'kernel/no-swap-in-fstab',
    title: 'fstab mounts no swap',
    command: `awk '!/^[[:space:]]*#/ && $3 == "swap"' /etc/fstab`,
    interpret: (result) => {
      if (result.exitCode !== 0) return { ok: false, detail: `cannot read /etc/fstab${failureText(result)}` };
      const lines = result.stdout.trim();
      return lines === '' ? { ok: true, detail: 'no swap entries' } : { ok: false, detail: `swap entries: ${clip(lines)}` };
    },
  }),
  commandCheck({
    id: 'kernel/cgroup-v2',
    title: 'the unified cgroup hierarchy (v2) is mounted',
    command: 'stat -fc %T /sys/fs/cgroup',
    // Kubernetes ≥ 1.35 refuses cgroup v1 by default.
    expect: { equals: 'cgroup2fs' },
  }),
  commandCheck({
    id: 'kernel/selinux-mode',
    title: 'SELinux runs in the configured mode',
    appliesTo: onlyRedhat,
    command: 'getenforce',
    interpret: (result, e) => {
      if (result.exitCode !== 0) return { ok: false, detail: `getenforce failed${failureText(result)}` };
      const got = result.stdout.trim().toLowerCase();
      return got === e.selinux ? { ok: true, detail: got } : { ok: false, detail: `SELinux is ${got}, expected ${e.selinux}` };
    },
  }),
  commandCheck({
    id: 'kernel/selinux-config',
    title: 'SELinux keeps the configured mode after a reboot',
    appliesTo: onlyRedhat,
    command: `sed -n 's/^[[:space:]]*SELINUX=//p' /etc/selinux/config`,
    interpret: (result, e) => {
      const got = (result.stdout.trim().split('\n').pop() ?? '').trim().toLowerCase();
      if (result.exitCode !== 0 || got === '') return { ok: false, detail: `no SELINUX= in /etc/selinux/config${failureText(result)}` };
      return got === e.selinux ? { ok: true, detail: `SELINUX=${got}` } : { ok: false, detail: `SELINUX=${got}, expected ${e.selinux}` };
    },
  }),

  // ── kubernetes: what kubeadm init/join will need on this node
  programsPresent('kubernetes/preflight-required-programs', "kubeadm preflight's required programs are present", KUBEADM_REQUIRED_PROGRAMS),
  programsPresent('kubernetes/preflight-optional-programs', "kubeadm preflight's optional programs are present", KUBEADM_OPTIONAL_PROGRAMS),

  // ── images: pre-pulled, so kubeadm init needs no registry
  {
    id: 'images/prepulled',
    title: "containerd holds exactly kubeadm's images for the pinned version",
    group: 'images',
    appliesTo: skipUnlessKubernetes,
    async run(ctx) {
      const wanted = await ctx.ssh(kubeadmImagesCommand(ctx.expected));
      if (wanted.exitCode !== 0) return { ok: false, detail: `kubeadm config images list failed${failureText(wanted)}` };
      const listed = await ctx.ssh('crictl images -o json');
      if (listed.exitCode !== 0) return { ok: false, detail: `crictl images failed${failureText(listed)}` };
      const expectedRefs = parseImageList(wanted.stdout);
      if (expectedRefs.length === 0) return { ok: false, detail: 'kubeadm listed no images' };
      const { missing, extra } = compareSets(expectedRefs, parseCrictlImages(listed.stdout));
      if (missing.length === 0 && extra.length === 0) return { ok: true, detail: `${expectedRefs.length} images: ${expectedRefs.map(shortRef).join(', ')}` };
      return {
        ok: false,
        detail: [missing.length > 0 ? `missing ${missing.join(', ')}` : '', extra.length > 0 ? `unexpected ${extra.join(', ')}` : '']
          .filter((part) => part !== '')
          .join('; '),
      };
    },
  },
  {
    id: 'images/sandbox-matches-kubeadm',
    title: "containerd's sandbox image is kubeadm's pause image",
    group: 'images',
    appliesTo: skipUnlessKubernetes,
    async run(ctx) {
      const wanted = await ctx.ssh(kubeadmImagesCommand(ctx.expected));
      if (wanted.exitCode !== 0) return { ok: false, detail: `kubeadm config images list failed${failureText(wanted)}` };
      const pause = pauseImageOf(parseImageList(wanted.stdout));
      if (pause === undefined) return { ok: false, detail: 'kubeadm listed no pause image' };
      const dump = await ctx.ssh(`${CONTAINERD_BINARY} config dump`);
      if (dump.exitCode !== 0) return { ok: false, detail: `containerd config dump failed${failureText(dump)}` };
      const { sandboxImage } = parseContainerdConfig(dump.stdout);
      if (sandboxImage === undefined) return { ok: false, detail: `containerd sets no sandbox image; kubeadm expects ${pause}` };
      // A mismatch makes an offline node pull a pause image it cannot reach.
      return sandboxImage === pause
        ? { ok: true, detail: sandboxImage }
        : { ok: false, detail: `containerd uses ${sandboxImage}, kubeadm expects ${pause}` };
    },
  },

  // ── guest agent: everything KubeVirt asks it
  agentCommand('guest-ping'),
  agentCommand('guest-info', (value) => {
    const commands = new Map<string, boolean>();
    const list = (value as { supported_commands?: unknown } | null)?.supported_commands;
    if (!Array.isArray(list)) return { ok: false, detail: 'guest-info returned no supported_commands' };
    for (const entry of list as { name?: unknown; enabled?: unknown }[]) {
      if (typeof entry.name === 'string') commands.set(entry.name, entry.enabled === true);
    }
    const needed = [...KUBEVIRT_REQUIRED_AGENT_COMMANDS, ...KUBEVIRT_SSH_KEY_AGENT_COMMANDS];
    const missing = needed.filter((name) => !commands.has(name));
    const disabled = needed.filter((name) => commands.get(name) === false);
    const version = (value as { version?: unknown }).version;
    if (missing.length === 0 && disabled.length === 0) {
      return { ok: true, detail: `qemu-ga ${String(version)}: all ${needed.length} KubeVirt commands enabled` };
    }
    return {
      ok: false,
      detail: [missing.length > 0 ? `missing ${missing.join(', ')}` : '', disabled.length > 0 ? `disabled ${disabled.join(', ')}` : '']
        .filter((part) => part !== '')
        .join('; '),
    };
  }),
  agentCommand('guest-get-time', (value) =>
    typeof value === 'number' && value > 0 ? { ok: true, detail: new Date(value / 1e6).toISOString() } : { ok: false, detail: `unexpected answer ${clip(JSON.stringify(value))}` },
  ),
  agentCommand('guest-network-get-interfaces', (value) => {
    if (!Array.isArray(value)) return { ok: false, detail: 'answer is not a list of interfaces' };
    const withIpv4 = (value as { name?: unknown; 'ip-addresses'?: { 'ip-address-type'?: unknown; 'ip-address'?: unknown }[] }[])
      .filter((nic) => nic.name !== 'lo')
      .flatMap((nic) =>
        (nic['ip-addresses'] ?? []).filter((ip) => ip['ip-address-type'] === 'ipv4').map((ip) => `${String(nic.name)} ${String(ip['ip-address'])}`),
      );
    return withIpv4.length > 0 ? { ok: true, detail: withIpv4.join(', ') } : { ok: false, detail: 'no interface besides lo has an IPv4 address' };
  }),
  agentCommand('guest-get-fsinfo', (value) => {
    if (!Array.isArray(value)) return { ok: false, detail: 'answer is not a list of filesystems' };
    const root = (value as { mountpoint?: unknown; type?: unknown; name?: unknown }[]).find((fs) => fs.mountpoint === '/');
    return root === undefined ? { ok: false, detail: 'no filesystem mounted at /' } : { ok: true, detail: `/ is ${String(root.type)} on ${String(root.name)}` };
  }),
  agentCommand('guest-get-host-name', (value) => {
    const name = (value as { 'host-name'?: unknown } | null)?.['host-name'];
    return typeof name === 'string' && name !== '' ? { ok: true, detail: name } : { ok: false, detail: 'no host name' };
  }),
  agentCommand('guest-get-users', (value) =>
    Array.isArray(value) ? { ok: true, detail: `${value.length} logged-in user(s)` } : { ok: false, detail: 'answer is not a list' },
  ),
  agentCommand('guest-get-timezone', (value) => {
    const offset = (value as { offset?: unknown } | null)?.offset;
    const zone = (value as { zone?: unknown } | null)?.zone;
    return typeof offset === 'number' ? { ok: true, detail: `${typeof zone === 'string' ? zone : 'UTC offset'} ${offset}` } : { ok: false, detail: 'no offset' };
  }),
  agentCommand('guest-get-osinfo', (value, e) => {
    const id = (value as { id?: unknown } | null)?.id;
    const want = e.osFamily === 'redhat' ? 'rocky' : 'debian';
    const pretty = (value as { 'pretty-name'?: unknown } | null)?.['pretty-name'];
    return id === want ? { ok: true, detail: typeof pretty === 'string' ? pretty : String(id) } : { ok: false, detail: `os id ${String(id)}, expected ${want}` };
  }),
  agentCommand(
    'guest-ssh-get-authorized-keys',
    (value) => {
      const keys = (value as { keys?: unknown } | null)?.keys;
      return Array.isArray(keys) ? { ok: true, detail: `${keys.length} key(s) readable by the agent` } : { ok: false, detail: 'answer has no keys list' };
    },
    // Read-only; the write side (add/remove) is covered by guest-info. On SELinux-enforcing EL9
    // this needs the virt_qemu_ga_manage_ssh boolean.
    { args: (ctx) => (ctx.sshUser === undefined ? 'no SSH user given to ask about' : { username: ctx.sshUser }) },
  ),

  // ── cloud-init: finished, the datasources KubeVirt uses, what CABPK user-data needs
  commandCheck({
    id: 'cloud-init/status',
    title: 'cloud-init finished without errors',
    // --wait returns at once when cloud-init is done; it bounds a slow first boot under TCG.
    command: 'cloud-init status --wait --long',
    timeoutMs: 600_000,
    interpret: (result) => judgeCloudInitStatus(result.stdout, result.exitCode),
  }),
  commandCheck({
    id: 'cloud-init/stages',
    title: 'every cloud-init boot stage ran (init-local, init, modules-config, modules-final)',
    // `status` says done even when systemd dropped a stage's unit; status.json records each one.
    command: 'cat /run/cloud-init/status.json',
    interpret: (result) => judgeCloudInitStages(result.stdout, result.exitCode),
  }),
  commandCheck({
    id: 'services/no-ordering-cycle',
    title: 'systemd found no ordering cycle at boot (it would have dropped a unit to break it)',
    // Only systemd's own messages (_PID=1): sudo logs this very command line, pattern included.
    command: "journalctl --boot _PID=1 --output=cat --no-pager | grep -i 'ordering cycle' || true",
    interpret: (result) => judgeOrderingCycles(result.stdout),
  }),
  commandCheck({
    id: 'cloud-init/after-containerd',
    title: "cloud-init's config and final stages start after containerd, and pull it in",
    // The playbook's drop-ins (10-kib-containerd.conf) come with the runtime, as image-builder's do:
    // without them cloud-final may run `kubeadm init/join` before the CRI socket exists.
    appliesTo: skipUnlessRuntime,
    command: `systemctl show --no-pager -p Id -p After -p Wants ${CLOUD_INIT_UNITS_AFTER_RUNTIME.join(' ')}`,
    interpret: (result) => judgeCloudInitAfterContainerd(result.stdout, result.exitCode),
  }),
  commandCheck({
    id: 'cloud-init/datasources',
    title: 'cloud-init looks for NoCloud and ConfigDrive',
    command: 'cat /run/cloud-init/ds-identify.log',
    interpret: (result) => {
      const list = parseDsIdentifyList(result.stdout);
      if (list === undefined) return { ok: false, detail: `no DSLIST in /run/cloud-init/ds-identify.log${failureText(result)}` };
      const missing = REQUIRED_DATASOURCES.filter((ds) => !list.includes(ds));
      return missing.length === 0 ? { ok: true, detail: list.join(', ') } : { ok: false, detail: `datasource list ${list.join(', ')} lacks ${missing.join(', ')}` };
    },
  }),
  commandCheck({
    id: 'cloud-init/jinja2',
    title: "cloud-init can render '## template: jinja' user-data",
    command: `python3 -c 'import jinja2; print(jinja2.__version__)'`,
    expect: { stdout: /^\d+\./ },
  }),
  commandCheck({
    id: 'cloud-init/admin-group',
    title: "the 'admin' group CAPK puts its user in exists",
    command: 'getent group admin',
    expect: { stdout: /^admin:/ },
  }),

  // ── network: nothing tied to this VM's MAC (KubeVirt may restart it with another)
  commandCheck({
    id: 'network/no-mac-bound-config',
    title: 'no network configuration is bound to a MAC address or connection UUID',
    command: dumpFilesCommand(NETWORK_CONFIG_GLOBS),
    interpret: (result) => {
      const files = parseFileDump(result.stdout);
      // cloud-init writes MAC-matched files for this boot; hygieneChecks judge the artifact's own.
      const own = files.filter((file) => !isCloudInitNetworkFile(file.path));
      const bound = findMacBoundLines(own);
      if (bound.length > 0) return { ok: false, detail: bound.map((b) => `${b.path}:${b.line}: ${b.text}`).join('; ') };
      const ignored = files.length - own.length;
      return { ok: true, detail: `${own.length} file(s) checked${ignored > 0 ? `, ${ignored} written by cloud-init on this boot ignored` : ''}` };
    },
  }),

  // ── provenance
  commandCheck({
    id: 'provenance/release-file',
    title: `${RELEASE_FILE_PATH} names the image and its Kubernetes version`,
    command: `cat ${RELEASE_FILE_PATH}`,
    interpret: (result, e) => judgeReleaseFile(result.stdout, result.exitCode, e),
  }),

  // ── disk: the root filesystem grew into a larger disk
  commandCheck({
    id: 'disk/root-grown',
    title: 'the root filesystem grew to fill the enlarged disk',
    appliesTo: (e) => (e.diskGrownToBytes === undefined ? 'the verify VM disk was not enlarged' : undefined),
    command:
      'src=$(findmnt -no SOURCE /); pk=$(lsblk -no PKNAME "$src" | head -n1); [ -n "$pk" ] || pk=${src#/dev/}; ' +
      'echo "root=$src"; echo "disk=/dev/$pk"; lsblk -bnro NAME,SIZE,TYPE "/dev/$pk"; echo "fs=$(df -B1 --output=size / | tail -n1 | tr -d " ")"',
    interpret: (result, e) => judgeDiskGrowth(result.stdout, result.exitCode, e),
  }),
];

/**
 * `done` passes. `degraded done` (recoverable errors, e.g. deprecated keys in user-data; exit 2
 * since cloud-init 23.4) passes with a note: CAPI decides bootstrap success by its sentinel file,
 * and failing images over warnings their users' data causes would be wrong. `error` fails: a
 * failed runcmd is how a failed `kubeadm init` shows. Anything else means it never finished.
 */
export function judgeCloudInitStatus(stdout: string, exitCode: number): CheckOutcome {
  const status = parseCloudInitStatus(stdout);
  const detail = status.detail === '' ? '' : ` (${clip(status.detail, 120)})`;
  if (status.status === 'done') {
    const degraded = status.extendedStatus?.startsWith('degraded') === true || exitCode === 2;
    return { ok: true, detail: degraded ? `done, degraded: recoverable errors reported${detail}` : `done${detail}` };
  }
  if (status.status === 'error') return { ok: false, detail: `error${status.extendedStatus === undefined ? '' : ` (${status.extendedStatus})`}${detail}` };
  return { ok: false, detail: `status ${status.status}${exitCode === 0 ? '' : `, exit code ${exitCode}`}${detail}` };
}

/** The stages /run/cloud-init/status.json reports on, in boot order. */
export const CLOUD_INIT_STAGES = ['init-local', 'init', 'modules-config', 'modules-final'] as const;

/**
 * Each stage must have finished. A stage whose unit systemd never started (an ordering cycle,
 * a disabled unit) has no finish time, and its modules (host keys, users, growpart) never ran.
 */
export function judgeCloudInitStages(stdout: string, exitCode: number): CheckOutcome {
  if (exitCode !== 0) return { ok: false, detail: '/run/cloud-init/status.json is missing: cloud-init did not run' };
  let v1: Record<string, { finished?: unknown; errors?: unknown } | null | undefined>;
  try {
    v1 = (JSON.parse(stdout) as { v1?: typeof v1 }).v1 ?? {};
  } catch {
    return { ok: false, detail: '/run/cloud-init/status.json is not JSON' };
  }
  const missing = CLOUD_INIT_STAGES.filter((stage) => typeof v1[stage]?.finished !== 'number');
  if (missing.length > 0) return { ok: false, detail: `never finished: ${missing.join(', ')} (see the console log for the unit systemd skipped)` };
  return { ok: true, detail: CLOUD_INIT_STAGES.join(', ') };
}

/** Each of cloud-init's user-data units has containerd.service in both After= and Wants=. */
export function judgeCloudInitAfterContainerd(stdout: string, exitCode: number): CheckOutcome {
  if (exitCode !== 0) return { ok: false, detail: `systemctl show failed (exit code ${exitCode})` };
  const units = parseUnitProperties(stdout);
  const problems: string[] = [];
  for (const unit of CLOUD_INIT_UNITS_AFTER_RUNTIME) {
    const properties = units.get(unit);
    if (properties === undefined) {
      problems.push(`${unit}: not in the output`);
      continue;
    }
    const lacks = (['After', 'Wants'] as const).filter((key) => !(properties[key] ?? '').split(/\s+/).includes('containerd.service'));
    if (lacks.length > 0) problems.push(`${unit}: containerd.service not in ${lacks.join(' or ')}`);
  }
  if (problems.length > 0) return { ok: false, detail: problems.join('; ') };
  return { ok: true, detail: `${CLOUD_INIT_UNITS_AFTER_RUNTIME.join(', ')}: After= and Wants= containerd.service` };
}

/** Lines in which systemd reports an ordering cycle; any is a failure, quoted. */
export function judgeOrderingCycles(stdout: string): CheckOutcome {
  const lines = stdout.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  if (lines.length === 0) return { ok: true, detail: 'none in this boot\'s journal' };
  const dropped = lines.filter((line) => /deleted to break ordering cycle/i.test(line));
  return { ok: false, detail: clip((dropped.length > 0 ? dropped : lines).join('; '), 400) };
}

export function judgeReleaseFile(text: string, exitCode: number, e: ExpectedImage): CheckOutcome {
  if (exitCode !== 0) return { ok: false, detail: `${RELEASE_FILE_PATH} is missing` };
  const values = parseReleaseFile(text);
  const missing = RELEASE_FILE_REQUIRED_KEYS.filter((key) => values[key] === undefined || values[key] === '');
  if (missing.length > 0) return { ok: false, detail: `missing ${missing.join(', ')}` };
  const problems: string[] = [];
  const k8s = (values['KUBERNETES_VERSION'] ?? '').replace(/^v/, '');
  if (k8s !== e.kubernetesVersion) problems.push(`KUBERNETES_VERSION=${k8s}, expected ${e.kubernetesVersion}`);
  if (e.imageVersion !== undefined && values['IMAGE_VERSION'] !== e.imageVersion) {
    problems.push(`IMAGE_VERSION=${String(values['IMAGE_VERSION'])}, expected ${e.imageVersion}`);
  }
  if (problems.length > 0) return { ok: false, detail: problems.join('; ') };
  return { ok: true, detail: `${String(values['IMAGE_NAME'])} ${String(values['IMAGE_VERSION'])}, Kubernetes ${k8s}` };
}

export function judgeDiskGrowth(stdout: string, exitCode: number, e: ExpectedImage): CheckOutcome {
  if (exitCode !== 0) return { ok: false, detail: `disk probe failed (exit code ${exitCode})` };
  let layout;
  try {
    layout = parseRootDiskLayout(stdout);
  } catch (error) {
    return { ok: false, detail: error instanceof Error ? error.message : String(error) };
  }
  const want = e.diskGrownToBytes ?? 0;
  const gib = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  const facts = `disk ${gib(layout.diskBytes)}, ${layout.rootSource} ${gib(layout.partitionBytes)}, filesystem ${gib(layout.filesystemBytes)}`;
  if (layout.diskBytes < want) return { ok: false, detail: `${facts}; the disk is smaller than ${gib(want)}` };
  if (layout.unpartitionedBytes > DISK_GROWTH_UNPARTITIONED_TOLERANCE_BYTES) {
    return { ok: false, detail: `${facts}; ${gib(layout.unpartitionedBytes)} of the disk is in no partition (growpart did not run)` };
  }
  if (layout.filesystemBytes < layout.partitionBytes * DISK_GROWTH_FILESYSTEM_RATIO) {
    return { ok: false, detail: `${facts}; the filesystem does not fill its partition (resizefs did not run)` };
  }
  return { ok: true, detail: facts };
}

function jsonField(text: string, path: readonly string[]): unknown {
  try {
    let value: unknown = JSON.parse(text);
    for (const key of path) value = (value as Record<string, unknown> | null)?.[key];
    return value;
  } catch {
    return undefined;
  }
}

function shortRef(ref: string): string {
  return ref.slice(ref.lastIndexOf('/') + 1);
}
