export type { Accelerator, NetworkMode, VmDisk, VmFirmware, VmRunPaths, VmSpec } from './types.js';
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
export { waitForReady, type WaitForReadyOptions, type WatchedVm } from './wait.js';
export { readConsoleTail, cleanConsoleText } from './console.js';
export { startVm, type StartVmSpec, type StartVmOptions, type StartedVm, type VmStopOptions } from './start-vm.js';
export { reapOrphans } from './reap.js';
export { allocateLoopbackPort, defaultStateDir, type RunDirOwner } from './run-dir.js';
