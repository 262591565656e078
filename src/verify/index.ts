export {
  agentCommand,
  asRoot,
  commandCheck,
  moduleLoaded,
  modulePersisted,
  packageInstalled,
  programsPresent,
  serviceState,
  shellQuote,
  sysctl,
  type Check,
  type CheckContext,
  type CheckGroup,
  type CheckOf,
  type CheckOutcome,
  type CheckResult,
  type CheckStatus,
  type CommandResult,
} from './check.js';
export {
  RELEASE_FILE_OPTIONAL_KEYS,
  RELEASE_FILE_PATH,
  RELEASE_FILE_REQUIRED_KEYS,
  expectedFromManifest,
  expectedFromRelease,
  parseReleaseFile,
  type ExpectedImage,
  type ExpectedOverrides,
} from './expected.js';
export {
  KUBEADM_OPTIONAL_PROGRAMS,
  KUBEADM_REQUIRED_PROGRAMS,
  KUBEVIRT_REQUIRED_AGENT_COMMANDS,
  KUBEVIRT_SSH_KEY_AGENT_COMMANDS,
  NODE_SYSCTLS,
  REQUIRED_DATASOURCES,
  guestChecks,
} from './guest-checks.js';
export {
  VAR_LOG_LIMIT_BYTES,
  hygieneChecks,
  type ArtifactCheck,
  type ArtifactCheckContext,
  type ArtifactDirEntry,
  type ArtifactFs,
  type ArtifactStat,
} from './hygiene.js';
export { hasFailures, renderCheckJson, renderCheckLines, runChecks, summarize, type CheckSummary, type RunChecksOptions } from './runner.js';
