/** The NoCloud seed of the build VM: one user with an ephemeral key, nothing else. */
export function renderBuildUserData(options: { user: string; publicKey: string }): string {
  return [
    '#cloud-config',
    'users:',
    `  - name: ${options.user}`,
    '    gecos: kube-image-builder build user (removed before power-off)',
    '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
    '    shell: /bin/bash',
    '    lock_passwd: true',
    '    ssh_authorized_keys:',
    `      - ${options.publicKey.trim()}`,
    'ssh_pwauth: false',
    'disable_root: true',
    '',
  ].join('\n');
}

export function renderBuildMetaData(options: { instanceId: string; hostname: string }): string {
  return `instance-id: ${options.instanceId}\nlocal-hostname: ${options.hostname}\n`;
}

/**
 * The last command of a build, run as root in the guest: remove the build user (which the
 * playbook could not delete while logged in as it), trim free space so the exported image is
 * small, and power off. `systemctl --no-block poweroff` only queues the shutdown, so the command
 * returns before the SSH session is torn down; anything left running in the background here would
 * be killed with the session before it acted.
 */
export function renderFinalSealScript(user: string): string {
  return [
    'set -u',
    `userdel --force --remove ${user} 2>/dev/null || true`,
    `rm -f /etc/sudoers.d/90-cloud-init-users /etc/sudoers.d/${user}`,
    'rm -rf /var/lib/kib /tmp/* /var/tmp/* /root/.ansible 2>/dev/null || true',
    'fstrim --all --verbose || true',
    'sync',
    'systemctl --no-block poweroff',
    '',
  ].join('\n');
}
