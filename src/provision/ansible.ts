import type { FactPlaybookVars } from '../core/build-facts.js';
/**
 * Pure builders for running the playbook: inventory, ansible.cfg, argv and environment.
 * The engine writes these into the build's work directory; nothing here touches the host.
 */

export interface AnsibleTarget {
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
}

/**
 * The extra variables every run of the playbook gets (see docs/playbook.md): the build facts'
 * variables plus the two only provisioning knows.
 */
export interface KibPlaybookVars extends FactPlaybookVars {
  kib_build_user: string;
  /** Where the guest inventory JSON is fetched to on this machine. */
  kib_inventory_local_path: string;
}

const SSH_OPTIONS = [
  '-o StrictHostKeyChecking=no',
  '-o UserKnownHostsFile=/dev/null',
  '-o IdentitiesOnly=yes',
  '-o ServerAliveInterval=15',
  '-o ServerAliveCountMax=8',
].join(' ');

export function renderInventory(target: AnsibleTarget): string {
  // One host, in INI form: ansible-core 2.14 reads it without plugins.
  const vars = [
    `ansible_host=${target.host}`,
    `ansible_port=${target.port}`,
    `ansible_user=${target.user}`,
    `ansible_ssh_private_key_file=${target.privateKeyPath}`,
    `ansible_ssh_common_args='${SSH_OPTIONS}'`,
    'ansible_python_interpreter=/usr/bin/python3',
  ];
  return `[kib_build]\nkib-build ${vars.join(' ')}\n`;
}

export function renderAnsibleConfig(options: { logPath: string; controlPathDir: string }): string {
  return [
    '[defaults]',
    'host_key_checking = False',
    'retry_files_enabled = False',
    'interpreter_python = /usr/bin/python3',
    'stdout_callback = default',
    'callback_result_format = yaml',
    'display_skipped_hosts = True',
    'forks = 1',
    'timeout = 60',
    `log_path = ${options.logPath}`,
    '',
    '[ssh_connection]',
    'pipelining = True',
    `control_path_dir = ${options.controlPathDir}`,
    'ssh_args = -o ControlMaster=auto -o ControlPersist=120s',
    'retries = 3',
    '',
  ].join('\n');
}

export function ansiblePlaybookArgs(options: {
  inventoryPath: string;
  playbookPath: string;
  varsFilePath: string;
  tags?: readonly string[];
  skipTags?: readonly string[];
  listTasks?: boolean;
}): string[] {
  const args = ['-i', options.inventoryPath, '-e', `@${options.varsFilePath}`];
  if (options.tags !== undefined && options.tags.length > 0) args.push('--tags', options.tags.join(','));
  if (options.skipTags !== undefined && options.skipTags.length > 0) args.push('--skip-tags', options.skipTags.join(','));
  if (options.listTasks === true) args.push('--list-tasks');
  args.push(options.playbookPath);
  return args;
}

export function ansibleEnv(configPath: string): Record<string, string> {
  return {
    ANSIBLE_CONFIG: configPath,
    ANSIBLE_FORCE_COLOR: '0',
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_LOCAL_TEMP: `${configPath}.tmp`,
    PYTHONUNBUFFERED: '1',
  };
}

/** Counts the tasks `ansible-playbook --list-tasks` prints, for a progress total. */
export function countListedTasks(listing: string): number {
  return listing.split('\n').filter((line) => /^ {6}\S.*\tTAGS: \[/.test(line)).length;
}

/**
 * Follows ansible-playbook's output line by line: the current task (for progress and for naming
 * the failed task) and whether a task failed.
 */
export class AnsibleOutputTracker {
  currentTask: string | undefined;
  failedTask: string | undefined;
  tasksStarted = 0;
  readonly failureLines: string[] = [];

  /** Returns the task name when this line starts a new task. */
  feed(line: string): string | undefined {
    const task = /^TASK \[(.+)\]/.exec(line);
    if (task?.[1] !== undefined) {
      this.currentTask = task[1];
      this.tasksStarted += 1;
      return task[1];
    }
    if (/^(fatal|failed):/.test(line) || /^fatal: \[/.test(line)) {
      if (!/\.\.\.ignoring$/.test(line)) this.failedTask ??= this.currentTask;
      this.failureLines.push(line);
    } else if (this.failureLines.length > 0 && this.failureLines.length < 40 && /^\s/.test(line)) {
      this.failureLines.push(line);
    }
    return undefined;
  }
}
