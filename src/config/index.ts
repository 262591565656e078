export { type BuildOverrides, type BuildSpec, computeConfigSha256, withConfigSha256 } from './build-spec.js';
export { canonicalJson, sha256Hex } from './canonical.js';
export { DEFAULT_IMAGE_YAML } from './default-image.js';
export { describeSpec } from './describe.js';
export { CONFIGURATION_DOC_PATH, renderConfigurationDoc } from './docs.js';
export { kibPackageRoot, loadBuildSpec, type LoadBuildSpecOptions, parseBuildSpec, type ParseBuildSpecContext, resolveLocation } from './load.js';
export { applyLock, type Lock, type LockedKubernetes, lockPathFor, parseLock, readLock, renderLock, requireKubernetesVersion, updateLock, writeLock } from './lock.js';
export {
  ACCELERATORS,
  FIRMWARES,
  type ImageConfig,
  type ImageConfigInput,
  imageConfigSchema,
  kubernetesSeriesProblem,
  kubernetesVersionProblem,
  OS_FAMILIES,
  OUTPUT_FORMATS,
  type OutputFormat,
  PACKAGE_MODES,
  SELINUX_MODES,
} from './schema.js';
export { formatBytes, formatDuration, parseDuration, parseSize } from './units.js';
