/**
 * The checks `kib verify --grow 2G` skips on the offline Debian build of examples/debian-12.yaml
 * (`kubernetes.packages: auto`, no Kubernetes package source reachable), read off the check
 * definitions:
 *
 * - src/verify/guest-checks.ts: every check with `appliesTo: skipUnlessKubernetes` (the Kubernetes
 *   packages, crictl, the kubelet service, the pre-pulled images) or `skipUnlessRuntime`
 *   (containerd and runc sit behind the same package-source gate, and so do the cloud-init
 *   drop-ins that order cloud-init after containerd). Both give the package-source reason the
 *   build recorded in the image.
 * - `onlyRedhat`: the two SELinux checks, which do not apply to the Debian family.
 * - Not skipped there: `disk/root-grown` (the disk is grown), the agent's SSH-key check (verify
 *   knows its SSH user), and every hygiene check (src/verify/hygiene.ts; only
 *   `hygiene/no-build-user` can skip, when no build user is given, and verify always gives one).
 *
 * test/vm/build.test.ts expects exactly this set from the real run; the unit test
 * test/unit/verify/offline-skips.test.ts computes it from the check list with a fake node, so a
 * new check behind the gate fails the unit tier first.
 */
export const PACKAGE_SOURCE_SKIPPED_CHECKS: readonly string[] = [
  'cloud-init/after-containerd',
  'images/prepulled',
  'images/sandbox-matches-kubeadm',
  'packages/cri-tools',
  'packages/kubeadm',
  'packages/kubeadm-version',
  'packages/kubectl',
  'packages/kubectl-version',
  'packages/kubelet',
  'packages/kubelet-version',
  'packages/kubernetes-cni',
  'runtime/containerd-version',
  'runtime/crictl-reaches-containerd',
  'runtime/crictl-version',
  'runtime/runc-version',
  'runtime/systemd-cgroup',
  'services/containerd',
  'services/kubelet',
];

/** Skipped on any Debian image, whatever its package source: SELinux is a Red Hat family setting. */
export const DEBIAN_FAMILY_SKIPPED_CHECKS: readonly string[] = ['kernel/selinux-config', 'kernel/selinux-mode'];

/** What `onlyRedhat` says for them. */
export const DEBIAN_FAMILY_SKIP_DETAIL = 'does not apply to the debian family';

/** Every check skipped on the offline Debian build, sorted. */
export const OFFLINE_DEBIAN_SKIPPED_CHECKS: readonly string[] = [...PACKAGE_SOURCE_SKIPPED_CHECKS, ...DEBIAN_FAMILY_SKIPPED_CHECKS].sort();
