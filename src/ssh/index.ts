export { sshArgs, sshOptionArgs, sshToolCommand, scpFromArgs, shellQuote, SSH_CONNECT_TIMEOUT_S, type SshTarget } from './args.js';
export { generateKeyPair, type SshKeyPair } from './keys.js';
export { openSshMaster, type SshMaster } from './master.js';
export {
  sshExec,
  waitForSsh,
  waitForCloudInit,
  stillWaitingMessage,
  copyFromGuest,
  SSH_CONNECTION_FAILED,
  type SshExecOptions,
  type SshWaitOptions,
} from './exec.js';
