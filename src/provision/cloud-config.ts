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

/** Where the build user's files wait in the guest while a layer is frozen (tmpfs: never on the disk). */
export const LAYER_STASH_DIR = '/run/kib-layer';
/** Printed by the stash script once the build user is off the disk and the disk is synced. */
export const LAYER_STASH_READY = 'kib-layer: build user stashed';
/** Printed by the stash script once everything is back. */
export const LAYER_STASH_RESTORED = 'kib-layer: build user restored';

/**
 * Run as root (`sudo /bin/sh -c`) around the freezing of a stage's layer: the build user's account
 * lines, its sudoers file, home directory and cloud-init's instance state (its user-data holds the
 * ephemeral key) are copied to tmpfs and removed from the disk, the disk is synced, and the script
 * waits for one line on stdin, the sign that the layer is frozen. Then it puts everything back. The
 * SSH connection that runs it stays open throughout, so the build goes on as before; the layer
 * never holds the build user, and a build that boots from it gets a new one from cloud-init (its
 * seed has a new instance-id). The account files are restored whole, which also undoes what
 * userdel changed in group member lists and /etc/subuid.
 */
export function renderStashBuildUserScript(user: string): string {
  return [
    'set -u',
    `user=${user}`,
    `stash=${LAYER_STASH_DIR}`,
    'fail() { echo "kib-layer: $*" >&2; exit 1; }',
    'rm -rf "$stash"',
    'mkdir -m 0700 "$stash" "$stash/sudoers.d" || fail "cannot make $stash"',
    'home=$(getent passwd "$user" | cut -d: -f6)',
    'for f in /etc/passwd /etc/shadow /etc/group /etc/gshadow /etc/subuid /etc/subgid; do',
    '  if [ -e "$f" ]; then cp -a "$f" "$stash/" || fail "cannot stash $f"; fi',
    'done',
    'for f in /etc/sudoers.d/90-cloud-init-users "/etc/sudoers.d/$user"; do',
    '  if [ -e "$f" ]; then cp -a "$f" "$stash/sudoers.d/" || fail "cannot stash $f"; fi',
    'done',
    'if [ -n "$home" ] && [ -d "$home" ]; then cp -a "$home" "$stash/home" || fail "cannot stash $home"; fi',
    'if [ -d /var/lib/cloud/instances ]; then cp -a /var/lib/cloud/instances "$stash/cloud-instances" || fail "cannot stash cloud-init instances"; fi',
    'if [ -L /var/lib/cloud/instance ]; then cp -a /var/lib/cloud/instance "$stash/cloud-instance" || fail "cannot stash the cloud-init instance link"; fi',
    'userdel --force --remove "$user" >/dev/null 2>&1',
    'rm -f /etc/sudoers.d/90-cloud-init-users "/etc/sudoers.d/$user"',
    'rm -rf /var/lib/cloud/instances /var/lib/cloud/instance',
    'if getent passwd "$user" >/dev/null; then echo "kib-layer: $user is still in the passwd database" >&2; fi',
    'sync',
    `echo '${LAYER_STASH_READY}'`,
    // The host answers once the layer is frozen; end of input (the host gave up) restores too.
    'read -r _ || true',
    'for f in passwd shadow group gshadow subuid subgid; do',
    '  if [ -e "$stash/$f" ]; then cp -a "$stash/$f" "/etc/$f"; fi',
    'done',
    'for f in "$stash"/sudoers.d/*; do',
    '  if [ -e "$f" ]; then cp -a "$f" /etc/sudoers.d/; fi',
    'done',
    'if [ -n "$home" ] && [ -d "$stash/home" ]; then rm -rf "$home"; cp -a "$stash/home" "$home"; fi',
    'if [ -d "$stash/cloud-instances" ]; then cp -a "$stash/cloud-instances" /var/lib/cloud/instances; fi',
    'if [ -L "$stash/cloud-instance" ]; then cp -a "$stash/cloud-instance" /var/lib/cloud/instance; fi',
    'getent passwd "$user" >/dev/null || fail "$user could not be restored"',
    'rm -rf "$stash"',
    `echo '${LAYER_STASH_RESTORED}'`,
    '',
  ].join('\n');
}
