export type { Accelerator, NetworkMode, VmDisk, VmFirmware, VmNic, VmRunPaths, VmSpec } from './types.js';
export { qemuSystemArgs, QEMU_SYSTEM_BINARY, GUEST_AGENT_PORT_NAME } from './qemu-args.js';
export { detectAccelerator, type AcceleratorChoice, type AcceleratorProbe } from './accelerator.js';
export { findOvmf, type OvmfFiles } from './firmware.js';
export {
  createNoCloudSeed,
  createConfigDriveSeed,
  isoArgs,
  NOCLOUD_LABEL,
  CONFIG_DRIVE_LABEL,
  type NoCloudSeedSpec,
  type ConfigDriveSeedSpec,
  type IsoTool,
} from './seeds.js';
export { createOverlay, qemuImgInfo, parseQemuImgInfo, qemuImgOverlayArgs, type OverlaySpec, type QemuImgInfo } from './disks.js';
export { QmpClient, QmpError, type QmpEvent } from './qmp.js';
export { GuestAgentClient, GuestAgentError } from './guest-agent.js';
export { waitForReady, whileVmRuns, describeVmExit, type WaitForReadyOptions, type WatchedVm, type WhileVmRunsOptions } from './wait.js';
export { readConsoleTail, cleanConsoleText } from './console.js';
export { startVm, qemuCommand, type StartVmSpec, type StartVmOptions, type StartVmNic, type StartedVm, type VmState, type VmStopOptions } from './start-vm.js';
export { reapOrphans, decideReap, isClusterUp, CREATION_GRACE_MS, type ReapDecision, type RunDirFacts } from './reap.js';
export { allocateLoopbackPort, defaultStateDir, type RunDirOwner, type VmOwner } from './run-dir.js';
export {
  bootGuest,
  renderGuestUserData,
  type BootGuestSpec,
  type BootGuestOptions,
  type StartedGuest,
  type GuestDisk,
  type GuestSeed,
  type GuestWait,
} from './boot-guest.js';
export {
  saveVmSnapshot,
  readVmSnapshot,
  restoreVm,
  setGuestClock,
  incomingUri,
  SNAPSHOT_FILE,
  SNAPSHOT_FORMAT_VERSION,
  type VmSnapshot,
  type SaveSnapshotOptions,
  type RestoreVmOptions,
  type GuestClockResult,
} from './snapshot.js';
export { attachVm, type AttachVmSpec } from './attach.js';
