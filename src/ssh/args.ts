/** Where and as whom to log in; the key is the ephemeral one made for this VM. */
export interface SshTarget {
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  /** A master connection's socket (openSshMaster): commands ride on it instead of logging in anew. */
  controlPath?: string;
  /**
   * Run ssh inside this network namespace (`ip netns exec`): the guest is reached on the
   * namespace's own addresses (its loopback port forward, or its address on a private bridge).
   */
  netns?: string;
}

/**
 * The command that runs an ssh-family tool for a target: the tool itself, or `ip netns exec NS
 * tool` for a guest inside a network namespace. Pure.
 */
export function sshToolCommand(target: Pick<SshTarget, 'netns'>, tool: 'ssh' | 'scp', args: readonly string[]): [string, string[]] {
  return target.netns === undefined ? [tool, [...args]] : ['ip', ['netns', 'exec', target.netns, tool, ...args]];
}

/** Seconds ssh waits for the TCP connection and banner; sshd under emulation can be slow to answer. */
export const SSH_CONNECT_TIMEOUT_S = 10;

/**
 * Options shared by ssh and scp: never prompt, trust the freshly booted guest's new host key
 * without recording it (the VM and its key are throwaway), use only our key.
 */
export function sshOptionArgs(target: SshTarget): string[] {
  return [
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    `ConnectTimeout=${SSH_CONNECT_TIMEOUT_S}`,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'ServerAliveInterval=15',
    '-o',
    'ServerAliveCountMax=4',
    '-i',
    target.privateKeyPath,
    ...(target.controlPath === undefined ? [] : ['-o', `ControlPath=${target.controlPath}`, '-o', 'ControlMaster=no']),
  ];
}

/**
 * argv for `ssh` running one remote command. A string is a shell command line for the remote
 * shell; an array is quoted word by word, so its elements arrive exactly as given.
 */
export function sshArgs(target: SshTarget, remoteCommand: string | readonly string[]): string[] {
  const command = typeof remoteCommand === 'string' ? remoteCommand : remoteCommand.map(shellQuote).join(' ');
  // `--` ends ssh's own options, so a command starting with '-' is not taken for one.
  return [...sshOptionArgs(target), '-p', String(target.port), '--', `${target.user}@${target.host}`, command];
}

/** argv for `scp` copying one remote file to a local path. */
export function scpFromArgs(target: SshTarget, remotePath: string, localPath: string): string[] {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return [...sshOptionArgs(target), '-P', String(target.port), '-q', '--', `${target.user}@${host}:${remotePath}`, localPath];
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  if (word !== '' && /^[\w@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
