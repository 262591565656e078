export { parseDebianPackages, parseRepomdPrimaryHref, parseRpmPrimary, type RepoPackage } from './metadata.js';
export {
  DEFAULT_KUBERNETES_REPO_BASE,
  KUBERNETES_REPO_BASE_ENV,
  type KubernetesRequest,
  kubernetesRepoUrl,
  repoArchitectures,
  resolveKubernetes,
  type ResolveKubernetesOptions,
  type ResolvedKubernetes,
  selectKubernetesPackages,
} from './resolve.js';
export { compareDebianVersions, compareRpmVersions, debianPartCompare, type PackageVersion, parseDebianVersion, renderPackageVersion, rpmVersionCompare } from './version.js';
export { KUBERNETES_PACKAGES, type KubernetesPackage } from '../core/types.js';
