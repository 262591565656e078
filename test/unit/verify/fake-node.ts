import type { CheckContext, CommandResult } from '../../../src/verify/check.js';
import type { ExpectedImage } from '../../../src/verify/expected.js';

/**
 * A booted node described as data, answering the commands the checks send with the text the
 * real tools print (recorded formats: systemctl show, rpm/dpkg-query, crictl JSON, containerd
 * config dump of 1.x and 2.x, cloud-init status --long, ds-identify.log, qemu-ga JSON).
 * The checks' job is to interpret outputs, so canned outputs are the right test input; booting
 * real VMs is the vm tier's job.
 */
export interface FakeNode {
  family: 'redhat' | 'debian';
  /** Version strings as the tools print them; undefined = program not installed. */
  kubeadm: string | undefined;
  kubelet: string | undefined;
  kubectl: string | undefined;
  crictl: string | undefined;
  /** undefined = not installed (an offline build skips the runtime with the Kubernetes packages). */
  containerdVersionLine: string | undefined;
  runcVersionLine: string | undefined;
  packages: Record<string, string>;
  services: Record<string, { load: string; active: string; sub: string; file: string }>;
  modulesLoaded: string[];
  modulesLoadFiles: Record<string, string>;
  sysctls: Record<string, string>;
  swaps: string;
  fstab: string;
  cgroupFs: string;
  selinux: { live: string; config: string } | undefined;
  programs: string[];
  kubeadmImages: string[];
  crictlImages: string[];
  containerdDump: string;
  cloudInit: { stdout: string; exitCode: number };
  dsIdentifyLog: string | undefined;
  /** /run/cloud-init/status.json; undefined = cloud-init never ran. */
  cloudInitStatusJson: string | undefined;
  /** Lines of this boot's journal that mention an ordering cycle. */
  orderingCycleLines: string;
  /** After= and Wants= of units as `systemctl show` prints them (space-separated unit names). */
  unitDependencies: Record<string, { after: string; wants: string }>;
  jinja2: string | undefined;
  adminGroup: boolean;
  networkFiles: Record<string, string>;
  releaseFile: string | undefined;
  diskProbe: string;
  /** Guest-agent answers; an Error is thrown as the agent's error. */
  agent: Record<string, unknown>;
}

/** /run/cloud-init/status.json as cloud-init 22.4–24.x writes it; `skipped` stages never started. */
export function cloudInitStatusJson(datasource: string, skipped: readonly string[] = []): string {
  const stage = (name: string, at: number): { errors: string[]; finished: number | null; start: number | null } =>
    skipped.includes(name) ? { errors: [], finished: null, start: null } : { errors: [], finished: at + 0.8, start: at };
  return JSON.stringify({
    v1: {
      datasource,
      init: stage('init', 1763726413.1),
      'init-local': stage('init-local', 1763726405.2),
      'modules-config': stage('modules-config', 1763726424.5),
      'modules-final': stage('modules-final', 1763726431.9),
      stage: null,
    },
  }, null, 1);
}

const ok = (stdout: string): CommandResult => ({ exitCode: 0, stdout: stdout.endsWith('\n') || stdout === '' ? stdout : `${stdout}\n`, stderr: '' });
const failed = (exitCode: number, stderr: string, stdout = ''): CommandResult => ({ exitCode, stdout, stderr });
const notFound = (program: string): CommandResult => failed(127, `sh: 1: ${program}: not found\n`);
const noSuchFile = (path: string): CommandResult => failed(127, `sh: 1: ${path}: No such file or directory\n`);

type Route = [RegExp, (node: FakeNode, match: RegExpExecArray) => CommandResult];

const routes: Route[] = [
  [/^kubeadm version -o short$/, (n) => (n.kubeadm === undefined ? notFound('kubeadm') : ok(n.kubeadm))],
  [/^kubelet --version$/, (n) => (n.kubelet === undefined ? notFound('kubelet') : ok(`Kubernetes ${n.kubelet}`))],
  [
    /^kubectl version --client -o json$/,
    (n) =>
      n.kubectl === undefined
        ? notFound('kubectl')
        : ok(JSON.stringify({ clientVersion: { major: '1', minor: '36', gitVersion: n.kubectl, platform: 'linux/amd64' }, kustomizeVersion: 'v5.7.1' }, null, 2)),
  ],
  [
    /^rpm -q --qf .* (\S+)$/,
    (n, m) => {
      const name = m[1] as string;
      const version = n.packages[name];
      return version === undefined ? failed(1, '', `package ${name} is not installed\n`) : ok(`${name} ${version}`);
    },
  ],
  [
    /^dpkg-query -W .* (\S+)$/,
    (n, m) => {
      const name = m[1] as string;
      const version = n.packages[name];
      return version === undefined ? failed(1, `dpkg-query: no packages found matching ${name}\n`) : ok(`${name} ${version} ii `);
    },
  ],
  // The upstream binaries are only found by absolute path: sudo's secure_path on EL9 has no /usr/local.
  [/^\/usr\/local\/bin\/containerd --version$/, (n) => (n.containerdVersionLine === undefined ? noSuchFile('/usr/local/bin/containerd') : ok(n.containerdVersionLine))],
  [/^\/usr\/local\/sbin\/runc --version$/, (n) => (n.runcVersionLine === undefined ? noSuchFile('/usr/local/sbin/runc') : ok(n.runcVersionLine))],
  [/^crictl --version$/, (n) => (n.crictl === undefined ? notFound('crictl') : ok(`crictl version ${n.crictl}`))],
  [/^crictl ps$/, (n) => (n.crictl === undefined ? notFound('crictl') : ok('CONTAINER           IMAGE               CREATED             STATE               NAME                ATTEMPT             POD ID              POD'))],
  [/^\/usr\/local\/bin\/containerd config dump$/, (n) => (n.containerdVersionLine === undefined ? noSuchFile('/usr/local/bin/containerd') : ok(n.containerdDump))],
  [
    /^systemctl show --no-pager -p Id -p After -p Wants ((?:\S+\.service ?)+)$/,
    (n, m) =>
      ok(
        (m[1] as string)
          .trim()
          .split(' ')
          // systemctl prints the properties in its own order (Wants before After), not the -p order.
          .map((unit) => `Id=${unit}\nWants=${n.unitDependencies[unit]?.wants ?? ''}\nAfter=${n.unitDependencies[unit]?.after ?? ''}\n`)
          .join('\n'),
      ),
  ],
  [
    /^systemctl show --no-pager .* (\S+)$/,
    (n, m) => {
      const s = n.services[m[1] as string] ?? { load: 'not-found', active: 'inactive', sub: 'dead', file: '' };
      return ok(`LoadState=${s.load}\nActiveState=${s.active}\nSubState=${s.sub}\nUnitFileState=${s.file}`);
    },
  ],
  [/^if \[ -d \/sys\/module\/(\w+) \]/, (n, m) => ok(n.modulesLoaded.includes(m[1] as string) ? 'loaded' : 'missing')],
  [/^for f in \/etc\/modules-load\.d\/\*\.conf/, (n) => ok(dump(n.modulesLoadFiles))],
  [
    /^sysctl -n (\S+)$/,
    (n, m) => {
      const value = n.sysctls[m[1] as string];
      return value === undefined ? failed(255, `sysctl: cannot stat /proc/sys/${(m[1] as string).replace(/\./g, '/')}: No such file or directory\n`) : ok(value);
    },
  ],
  [/^swapon --show --noheadings$/, (n) => ok(n.swaps)],
  [/^awk .* \/etc\/fstab$/, (n) => ok(n.fstab.split('\n').filter((l) => !l.trim().startsWith('#') && l.split(/\s+/)[2] === 'swap').join('\n'))],
  [/^stat -fc %T \/sys\/fs\/cgroup$/, (n) => ok(n.cgroupFs)],
  [/^getenforce$/, (n) => (n.selinux === undefined ? notFound('getenforce') : ok(n.selinux.live))],
  [/^sed -n .* \/etc\/selinux\/config$/, (n) => (n.selinux === undefined ? failed(2, "sed: can't read /etc/selinux/config: No such file or directory\n") : ok(n.selinux.config))],
  [
    /^for p in (.+?); do command -v/,
    (n, m) => ok((m[1] as string).split(' ').filter((p) => !n.programs.includes(p)).map((p) => `missing ${p}`).join('\n')),
  ],
  [/^kubeadm config images list --kubernetes-version (\S+)$/, (n) => (n.kubeadm === undefined ? notFound('kubeadm') : ok(n.kubeadmImages.join('\n')))],
  [
    /^crictl images -o json$/,
    (n) =>
      n.crictl === undefined
        ? notFound('crictl')
        : ok(
            JSON.stringify(
              {
                images: n.crictlImages.map((ref, i) => ({
                  id: `sha256:${String(i).padStart(64, '0')}`,
                  repoTags: [ref],
                  repoDigests: [`${ref.split(':')[0]}@sha256:${String(i).padStart(64, 'a')}`],
                  size: '1000',
                  uid: null,
                  username: '',
                  spec: null,
                  pinned: ref.includes('/pause:'),
                })),
              },
              null,
              2,
            ),
          ),
  ],
  [/^cloud-init status --wait --long$/, (n) => ({ exitCode: n.cloudInit.exitCode, stdout: n.cloudInit.stdout, stderr: '' })],
  [/^cat \/run\/cloud-init\/status\.json$/, (n) => (n.cloudInitStatusJson === undefined ? failed(1, 'cat: /run/cloud-init/status.json: No such file or directory\n') : ok(n.cloudInitStatusJson))],
  [/^journalctl --boot _PID=1 --output=cat --no-pager \| grep -i/, (n) => ok(n.orderingCycleLines)],
  [/^cat \/run\/cloud-init\/ds-identify\.log$/, (n) => (n.dsIdentifyLog === undefined ? failed(1, 'cat: /run/cloud-init/ds-identify.log: No such file or directory\n') : ok(n.dsIdentifyLog))],
  [/^python3 -c 'import jinja2/, (n) => (n.jinja2 === undefined ? failed(1, "ModuleNotFoundError: No module named 'jinja2'\n") : ok(n.jinja2))],
  [/^getent group admin$/, (n) => (n.adminGroup ? ok('admin:x:1001:capk') : failed(2, ''))],
  [/^for f in \/etc\/NetworkManager/, (n) => ok(dump(n.networkFiles))],
  [/^cat \/etc\/kube-image-release$/, (n) => (n.releaseFile === undefined ? failed(1, 'cat: /etc/kube-image-release: No such file or directory\n') : ok(n.releaseFile))],
  [/^src=\$\(findmnt -no SOURCE \/\)/, (n) => ok(n.diskProbe)],
];

function dump(files: Record<string, string>): string {
  return Object.entries(files)
    .map(([path, content]) => `==> ${path}\n${content}\n`)
    .join('');
}

export interface FakeContextLog {
  commands: string[];
  agentCalls: { execute: string; args: Record<string, unknown> | undefined }[];
}

export function fakeContext(node: FakeNode, expected: ExpectedImage, sshUser?: string): CheckContext & { log: FakeContextLog } {
  const log: FakeContextLog = { commands: [], agentCalls: [] };
  const ctx: CheckContext & { log: FakeContextLog } = {
    expected,
    log,
    async ssh(command) {
      log.commands.push(command);
      for (const [pattern, answer] of routes) {
        const match = pattern.exec(command);
        if (match !== null) return answer(node, match);
      }
      return failed(127, `fake node: no answer for ${command}\n`);
    },
    async agent(execute, args) {
      log.agentCalls.push({ execute, args });
      if (!(execute in node.agent)) throw new Error(`The command ${execute} has not been found`);
      const answer = node.agent[execute];
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
  if (sshUser !== undefined) ctx.sshUser = sshUser;
  return ctx;
}

const ROCKY_IMAGES = [
  'registry.k8s.io/kube-apiserver:v1.36.1',
  'registry.k8s.io/kube-controller-manager:v1.36.1',
  'registry.k8s.io/kube-scheduler:v1.36.1',
  'registry.k8s.io/kube-proxy:v1.36.1',
  'registry.k8s.io/coredns/coredns:v1.13.1',
  'registry.k8s.io/pause:3.10.1',
  'registry.k8s.io/etcd:3.6.5-0',
];

/** containerd 2.x `config dump` (config version 3): sandbox pinned in the image service. */
export function containerd2Dump(sandbox: string): string {
  return `disabled_plugins = []
imports = ['/etc/containerd/config.toml', '/etc/containerd/conf.d/*.toml']
oom_score = 0
required_plugins = []
root = '/var/lib/containerd'
state = '/run/containerd'
version = 3

[grpc]
  address = '/run/containerd/containerd.sock'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    disable_snapshot_annotations = true

    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '${sandbox}'

    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '/etc/containerd/certs.d'

  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
          sandboxer = 'podsandbox'

          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            BinaryName = ''
            SystemdCgroup = true
`;
}

/** containerd 1.6/1.7 `config dump` (config version 2): sandbox_image on the CRI plugin. */
export function containerd1Dump(sandbox: string, systemdCgroup: boolean): string {
  return `disabled_plugins = []
imports = ["/etc/containerd/config.toml"]
oom_score = 0
root = "/var/lib/containerd"
state = "/run/containerd"
version = 2

[plugins]

  [plugins."io.containerd.grpc.v1.cri"]
    device_ownership_from_security_context = false
    sandbox_image = "${sandbox}"
    selinux_category_range = 1024

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      snapshotter = "overlayfs"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"

          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            BinaryName = ""
            SystemdCgroup = ${String(systemdCgroup)}
`;
}

const AGENT_COMMANDS = [
  'guest-sync-delimited', 'guest-sync', 'guest-ping', 'guest-get-time', 'guest-set-time', 'guest-info', 'guest-shutdown',
  'guest-file-open', 'guest-file-close', 'guest-file-read', 'guest-file-write', 'guest-file-seek', 'guest-file-flush',
  'guest-fsfreeze-status', 'guest-fsfreeze-freeze', 'guest-fsfreeze-thaw', 'guest-fstrim', 'guest-network-get-interfaces',
  'guest-get-vcpus', 'guest-get-fsinfo', 'guest-set-user-password', 'guest-get-memory-blocks', 'guest-get-host-name',
  'guest-get-users', 'guest-get-timezone', 'guest-get-osinfo', 'guest-get-devices', 'guest-ssh-get-authorized-keys',
  'guest-ssh-add-authorized-keys', 'guest-ssh-remove-authorized-keys', 'guest-get-disks', 'guest-exec', 'guest-exec-status',
];

/** What qemu-ga answers on a healthy guest (field names as in the QGA schema). */
export function agentAnswers(osId: string, prettyName: string, disabled: readonly string[] = []): Record<string, unknown> {
  return {
    'guest-ping': {},
    'guest-info': {
      version: '9.1.0',
      supported_commands: AGENT_COMMANDS.map((name) => ({ enabled: !disabled.includes(name), name, 'success-response': name !== 'guest-shutdown' })),
    },
    'guest-get-time': 1_795_264_223_000_000_000,
    'guest-network-get-interfaces': [
      { name: 'lo', 'hardware-address': '00:00:00:00:00:00', 'ip-addresses': [{ 'ip-address-type': 'ipv4', 'ip-address': '127.0.0.1', prefix: 8 }] },
      {
        name: 'eth0',
        'hardware-address': '52:54:00:12:34:56',
        'ip-addresses': [
          { 'ip-address-type': 'ipv4', 'ip-address': '10.0.2.15', prefix: 24 },
          { 'ip-address-type': 'ipv6', 'ip-address': 'fe80::5054:ff:fe12:3456', prefix: 64 },
        ],
      },
    ],
    'guest-get-fsinfo': [{ name: 'vda4', mountpoint: '/', type: 'xfs', 'used-bytes': 3_000_000_000, 'total-bytes': 20_000_000_000, disk: [] }],
    'guest-get-host-name': { 'host-name': 'verify-1' },
    'guest-get-users': [{ user: 'kib', 'login-time': 1795264000.5 }],
    'guest-get-timezone': { zone: 'UTC', offset: 0 },
    'guest-get-osinfo': { id: osId, name: prettyName.split(' ')[0], 'pretty-name': prettyName, version: '9.8 (Blue Onyx)', 'version-id': '9.8', 'kernel-release': '5.14.0-611.el9.x86_64', 'kernel-version': '#1 SMP', machine: 'x86_64' },
    'guest-ssh-get-authorized-keys': { keys: ['ssh-ed25519 AAAAC3Nza kib'] },
  };
}

const running = { load: 'loaded', active: 'active', sub: 'running', file: 'enabled' };

export function goodRockyNode(): FakeNode {
  return {
    family: 'redhat',
    kubeadm: 'v1.36.1',
    kubelet: 'v1.36.1',
    kubectl: 'v1.36.1',
    crictl: 'v1.36.0',
    containerdVersionLine: 'containerd github.com/containerd/containerd/v2 v2.3.2 1e1b7ac2f5e0b6c5d8a1fbd1e1d02a9c2b7f5f4e',
    runcVersionLine: 'runc version 1.4.3\ncommit: v1.4.3-0-g1a2b3c4\nspec: 1.2.1\ngo: go1.25.3\nlibseccomp: 2.5.2',
    packages: {
      kubeadm: '1.36.1-150500.1.1',
      kubelet: '1.36.1-150500.1.1',
      kubectl: '1.36.1-150500.1.1',
      'cri-tools': '1.36.0-150500.1.1',
      'kubernetes-cni': '1.7.1-150500.1.1',
      'qemu-guest-agent': '9.1.0-15.el9_6.1',
      'cloud-init': '24.4-4.el9.0.1',
      chrony: '4.6.1-1.el9',
    },
    services: {
      containerd: running,
      kubelet: { load: 'loaded', active: 'activating', sub: 'auto-restart', file: 'enabled' },
      'qemu-guest-agent': { load: 'loaded', active: 'active', sub: 'running', file: 'static' },
      chronyd: running,
      sshd: running,
      firewalld: running,
    },
    modulesLoaded: ['overlay', 'br_netfilter'],
    modulesLoadFiles: { '/etc/modules-load.d/kubernetes.conf': 'overlay\nbr_netfilter' },
    sysctls: {
      'net.bridge.bridge-nf-call-iptables': '1',
      'net.bridge.bridge-nf-call-ip6tables': '1',
      'net.ipv4.ip_forward': '1',
      'net.ipv6.conf.all.forwarding': '1',
      'net.ipv6.conf.all.disable_ipv6': '0',
      'net.ipv4.tcp_congestion_control': 'bbr',
      'vm.overcommit_memory': '1',
      'kernel.panic': '10',
      'kernel.panic_on_oops': '1',
      'fs.inotify.max_user_instances': '8192',
      'fs.inotify.max_user_watches': '524288',
    },
    swaps: '',
    fstab: 'UUID=8d5c4b1a / xfs defaults 0 0\nUUID=1f2e /boot xfs defaults 0 0\n#/dev/vda9 none swap defaults 0 0',
    cgroupFs: 'cgroup2fs',
    selinux: { live: 'Permissive', config: 'permissive' },
    programs: ['ip', 'iptables', 'mount', 'nsenter', 'conntrack', 'ethtool', 'socat', 'tc', 'touch'],
    kubeadmImages: ROCKY_IMAGES,
    crictlImages: ROCKY_IMAGES,
    containerdDump: containerd2Dump('registry.k8s.io/pause:3.10.1'),
    cloudInit: {
      stdout:
        'status: done\nextended_status: done\nboot_status_code: enabled-by-generator\nlast_update: Thu, 01 Jan 1970 00:00:35 +0000\ndetail: DataSourceNoCloud [seed=/dev/vdb]\nerrors: []\nrecoverable_errors: {}\n',
      exitCode: 0,
    },
    dsIdentifyLog:
      '[up 2.51s] ds-identify\npolicy loaded: mode=search report=false found=all maybe=all notfound=disabled\n' +
      '/etc/cloud/cloud.cfg.d/90-kib-datasources.cfg set datasource_list: [ NoCloud, ConfigDrive, None ]\n' +
      'DMI_PRODUCT_NAME=Standard PC (Q35 + ICH9, 2009)\nFS_LABELS=cidata,boot,root\nDSNAME=\nDSLIST=NoCloud ConfigDrive None\nMODE=search\n' +
      'Found single datasource: NoCloud\n[up 2.60s] returning 0\n',
    cloudInitStatusJson: cloudInitStatusJson('DataSourceNoCloud [seed=/dev/vdb]'),
    orderingCycleLines: '',
    // As systemd resolves them with the playbook's 10-kib-containerd.conf drop-ins in place.
    unitDependencies: {
      'cloud-config.service': {
        wants: 'network-online.target containerd.service',
        after: 'systemd-journald.socket cloud-init.service basic.target network-online.target containerd.service sysinit.target system.slice',
      },
      'cloud-final.service': {
        wants: 'network-online.target containerd.service',
        after: 'cloud-config.service systemd-journald.socket basic.target network-online.target rc-local.service multi-user.target containerd.service sysinit.target system.slice syslog.target',
      },
    },
    jinja2: '3.1.2',
    adminGroup: true,
    networkFiles: {
      '/etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection':
        '[connection]\nid=cloud-init eth0\nuuid=1dd9a779-d327-56e1-8454-c65e2556c12c\ntype=ethernet\n\n[ethernet]\nmac-address=52:54:00:12:34:56\n\n[ipv4]\nmethod=auto',
      '/etc/sysconfig/network-scripts/ifcfg-eth0': 'BOOTPROTO=dhcp\nDEVICE=eth0\nONBOOT=yes\nTYPE=Ethernet\nUSERCTL=no',
    },
    // As the playbook's release role writes it (values through Ansible's `quote`).
    releaseFile:
      "# Managed by kube-image-builder: what this image is and how it was built (shell-style KEY=value).\n" +
      'IMAGE_NAME=rocky-9\nIMAGE_VERSION=v0.4.0\nGIT_COMMIT=0123456789abcdef0123456789abcdef01234567\n' +
      "BUILD_DATE=2026-11-21T10:00:00Z\nBASE_IMAGE_URL=https://dl.rockylinux.org/pub/rocky/9.8/images/x86_64/Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2\n" +
      `BASE_IMAGE_SHA256=${'9'.repeat(64)}\nOS_FAMILY=redhat\nKUBERNETES_VERSION=1.36.1\nKUBERNETES_INSTALLED=true\nKUBERNETES_SKIPPED_REASON=''\n` +
      'SELINUX=permissive\nFIREWALL=true\n',
    diskProbe:
      'root=/dev/vda4\ndisk=/dev/vda\nvda 23622320128 disk\nvda1 1048576 part\nvda2 104857600 part\nvda3 1048576000 part\nvda4 22467313664 part\nfs=22450536448\n',
    agent: agentAnswers('rocky', 'Rocky Linux 9.8 (Blue Onyx)'),
  };
}

export function goodDebianOfflineNode(): FakeNode {
  return {
    family: 'debian',
    kubeadm: undefined,
    kubelet: undefined,
    kubectl: undefined,
    crictl: undefined,
    // Offline, containerd and runc are skipped together with the Kubernetes packages.
    containerdVersionLine: undefined,
    runcVersionLine: undefined,
    packages: { 'qemu-guest-agent': '1:7.2+dfsg-7+deb12u18', 'cloud-init': '22.4.2-1+deb12u3', chrony: '4.3-2+deb12u1' },
    services: {
      'qemu-guest-agent': { load: 'loaded', active: 'active', sub: 'running', file: 'static' },
      chrony: running,
      ssh: running,
      firewalld: running,
    },
    modulesLoaded: ['overlay', 'br_netfilter'],
    modulesLoadFiles: { '/etc/modules-load.d/kubernetes.conf': '# kib\noverlay\nbr_netfilter' },
    sysctls: { ...goodRockyNode().sysctls },
    swaps: '',
    fstab: 'PARTUUID=0ccf12ed / ext4 rw,discard,errors=remount-ro 0 1\nPARTUUID=722b747f /boot/efi vfat defaults 0 0',
    cgroupFs: 'cgroup2fs',
    selinux: undefined,
    programs: ['ip', 'iptables', 'mount', 'nsenter', 'conntrack', 'ethtool', 'socat', 'tc', 'touch'],
    kubeadmImages: [],
    crictlImages: [],
    containerdDump: containerd1Dump('registry.k8s.io/pause:3.6', true),
    cloudInit: { stdout: 'status: done\ntime: Sat, 21 Nov 2026 12:00:05 +0000\ndetail:\nDataSourceNoCloud [seed=/dev/vdb][dsmode=net]\n', exitCode: 0 },
    dsIdentifyLog: '[up 1.90s] ds-identify\nDSNAME=\nDSLIST=NoCloud ConfigDrive None\nMODE=search\n',
    cloudInitStatusJson: cloudInitStatusJson('DataSourceNoCloud [seed=/dev/vdb][dsmode=net]'),
    orderingCycleLines: '',
    // No runtime, so no drop-ins: cloud-init's stock dependencies only.
    unitDependencies: {
      'cloud-config.service': { wants: 'network-online.target', after: 'basic.target cloud-init.service network-online.target sysinit.target system.slice' },
      'cloud-final.service': { wants: 'network-online.target', after: 'basic.target cloud-config.service multi-user.target network-online.target rc-local.service sysinit.target system.slice' },
    },
    jinja2: '3.1.2',
    adminGroup: true,
    networkFiles: {
      '/etc/systemd/network/99-kib-dhcp.network': '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes',
      '/etc/systemd/network/10-cloud-init-eth0.network': '[Match]\nMACAddress=52:54:00:12:34:56\nName=eth0\n\n[Network]\nDHCP=ipv4',
    },
    releaseFile:
      "IMAGE_NAME=debian-12-test\nIMAGE_VERSION=0.0.0-dev+abc1234\nGIT_COMMIT=abc1234\nBUILD_DATE=2026-11-21T10:00:00Z\n" +
      "OS_FAMILY=debian\nKUBERNETES_VERSION=1.36.1\nKUBERNETES_INSTALLED=false\n" +
      "KUBERNETES_SKIPPED_REASON='pkgs.k8s.io is not reachable from the build VM'\nSELINUX=none\nFIREWALL=true\n",
    diskProbe: 'root=/dev/vda3\ndisk=/dev/vda\nvda 2147483648 disk\nvda1 1048576 part\nvda2 66060288 part\nvda3 2079309312 part\nfs=2040000000\n',
    agent: agentAnswers('debian', 'Debian GNU/Linux 12 (bookworm)'),
  };
}
