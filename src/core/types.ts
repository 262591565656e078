/**
 * Plain data that phases hand each other. Phases never import each other; they exchange these.
 */

/** A verified base image in the content-addressed cache. */
export interface BaseImage {
  /** Absolute path of the cached file (read-only; never modified in place). */
  path: string;
  sha256: string;
  /** Where it came from: an http(s) URL, or a file URL for a local base. */
  url: string;
  sizeBytes: number;
  /** `qcow2` or `raw`, from `qemu-img info`. */
  format: 'qcow2' | 'raw';
}

export interface DiskImage {
  path: string;
  format: 'qcow2' | 'raw';
  virtualSizeBytes: number;
}

export type ArtifactKind = 'qcow2' | 'raw' | 'containerdisk' | 'sha256sums' | 'manifest' | 'sbom' | 'log';

export interface Artifact {
  /** Absolute path in the output directory (after finalize) or in staging (before). */
  path: string;
  kind: ArtifactKind;
  sha256: string;
  sizeBytes: number;
}

/** Guest OS family; package names and repositories differ per family in the playbook. */
export type OsFamily = 'redhat' | 'debian';

/**
 * The packages a Kubernetes node image installs from its series' pkgs.k8s.io repository. kubelet
 * requires kubernetes-cni; cri-tools (crictl) is named on its own because kubeadm no longer
 * depends on it.
 */
export const KUBERNETES_PACKAGES = ['kubeadm', 'kubelet', 'kubectl', 'cri-tools', 'kubernetes-cni'] as const;
export type KubernetesPackage = (typeof KUBERNETES_PACKAGES)[number];

/** A Kubernetes release and its exact package builds, as read from the series' package repository. */
export interface ResolvedKubernetes {
  /** The release, `1.37.2`. */
  version: string;
  /** The repository's series, `v1.37`. */
  series: string;
  /** The package format the versions are for (rpm for redhat, deb for debian). */
  osFamily: OsFamily;
  /** The architecture, in the repository's naming (`x86_64`, `amd64`). */
  arch: string;
  /** The repository the versions were read from, e.g. `https://pkgs.k8s.io/core:/stable:/v1.37/rpm/`. */
  source: string;
  /** Exact `version-release` (rpm) or `version-revision` (deb) per package. */
  packages: Record<KubernetesPackage, string>;
}
