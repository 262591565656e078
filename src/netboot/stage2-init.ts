/**
 * stage2's /init (busybox ash). It runs as PID 1 in the initramfs and:
 * 1. loads the virtio modules (and whatever else the recipe lists) in order;
 * 2. brings up the NIC whose MAC is `kib.mac` with DHCP (udhcpc);
 * 3. fetches its instructions from `kib.server` (`/instructions/<mac>`, shell variables);
 * 4. picks the disk by the Machine's hints and refuses one whose first MiB is not blank unless a
 *    wipe is allowed;
 * 5. when asked (benchmarks), first measures the disk's raw streaming speed: zeros of the image's
 *    length written with O_DIRECT and read back, the same block size and flags as the install;
 * 6. streams `wget | zstd -dc | dd bs=4M` (busybox `head -c` and fifos ran at 1–4 MB/s under
 *    TCG; dd with 4 MiB blocks keeps up with the disk), reporting progress from the block
 *    device's write counter;
 * 7. reads back exactly the image's length with O_DIRECT (so the page cache cannot answer) and
 *    compares its sha256 with the served one;
 * 8. on a match writes the per-Machine CIDATA partition and the new GPT, reports `written`,
 *    syncs and reboots; on any failure reports `failed` with the reason, blanks the first MiB
 *    (nothing half-written can boot) and powers off.
 * Reports are form POSTs to `/report/<mac>`.
 */
const STAGE2_INIT_RAW = String.raw`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/sbin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# stdout is the console (the last console= on the command line, the serial port in VMs).
log() { echo "kib-stage2: $*"; }
log running

for module in $(cat /etc/kib/modules); do
  insmod "/lib/modules/$module.ko" 2>/dev/null || log "module $module not loaded"
done

SERVER=
MAC=
for word in $(cat /proc/cmdline); do
  case "$word" in
    kib.server=*) SERVER="\${word#kib.server=}" ;;
    kib.mac=*) MAC="\${word#kib.mac=}" ;;
  esac
done

halt_here() {
  log "powering off: $*"
  sync
  poweroff -f
  sleep 3600
}
[ -n "$SERVER" ] && [ -n "$MAC" ] || halt_here "kib.server or kib.mac missing on the kernel command line"

report() {
  # report PHASE [key=value ...]: a form POST; failures to report are logged, not fatal.
  phase="$1"; shift
  data="phase=$phase"
  for pair in "$@"; do data="$data&$pair"; done
  wget -q -O /dev/null --post-data "$data" "$SERVER/report/$MAC" || log "report $phase failed"
}

fail() {
  log "FAILED: $*"
  reason=$(printf '%s' "$*" | sed 's/%/%25/g; s/&/%26/g; s/+/%2B/g; s/ /+/g; s/=/%3D/g')
  report failed "reason=$reason"
  if [ -n "$DISK" ] && [ "$WROTE" = yes ]; then
    dd if=/dev/zero of="$DISK" bs=1M count=1 conv=fsync 2>/dev/null
  fi
  halt_here "install failed"
}

# Wait for the NIC with the Machine's MAC (modules probe asynchronously).
IFACE=
tries=0
while [ -z "$IFACE" ] && [ $tries -lt 100 ]; do
  for dev in /sys/class/net/*; do
    [ "$(cat "$dev/address" 2>/dev/null)" = "$MAC" ] && IFACE="\${dev##*/}"
  done
  [ -z "$IFACE" ] && { sleep 0.1; tries=$((tries + 1)); }
done
[ -n "$IFACE" ] || halt_here "no network interface with MAC $MAC"
ip link set lo up
ip link set "$IFACE" up
udhcpc -i "$IFACE" -s /etc/kib/udhcpc.script -q -n -t 20 -T 1 -A 1 >/dev/null 2>&1 || halt_here "no DHCP answer on $IFACE"
log "$IFACE is up: $(ip -4 -o addr show dev "$IFACE" | awk '{print $4}')"

wget -q -O /tmp/instructions "$SERVER/instructions/$MAC" || halt_here "cannot fetch $SERVER/instructions/$MAC"
. /tmp/instructions
log "installing $KIB_NAME: $KIB_IMAGE_SIZE bytes, sha256 $KIB_IMAGE_SHA256"

# Disk choice: an explicit path, else the first whole disk (virtio, SCSI/SATA, NVMe) that is
# large enough and whose model matches.
size_of() { echo $(( $(cat "/sys/block/$1/size") * 512 )); }
DISK=
WROTE=no
need=$KIB_IMAGE_SIZE
[ -n "$KIB_DISK_MIN_SIZE" ] && [ "$KIB_DISK_MIN_SIZE" -gt "$need" ] && need=$KIB_DISK_MIN_SIZE
if [ -n "$KIB_DISK_PATH" ]; then
  [ -b "$KIB_DISK_PATH" ] || fail "disk $KIB_DISK_PATH does not exist"
  DISK="$KIB_DISK_PATH"
  [ "$(size_of "\${DISK##*/}")" -ge "$need" ] || fail "disk $DISK is smaller than $need bytes"
else
  tries=0
  while [ -z "$DISK" ] && [ $tries -lt 50 ]; do
    for block in $(ls /sys/block | grep -E '^(vd[a-z]+|sd[a-z]+|nvme[0-9]+n[0-9]+|xvd[a-z]+)$' | sort); do
      [ "$(cat "/sys/block/$block/removable" 2>/dev/null)" = 1 ] && continue
      [ "$(cat "/sys/block/$block/ro" 2>/dev/null)" = 1 ] && continue
      [ "$(size_of "$block")" -ge "$need" ] || continue
      if [ -n "$KIB_DISK_MODEL" ]; then
        grep -qF "$KIB_DISK_MODEL" "/sys/block/$block/device/model" 2>/dev/null || continue
      fi
      DISK="/dev/$block"
      break
    done
    [ -z "$DISK" ] && { sleep 0.2; tries=$((tries + 1)); }
  done
  [ -n "$DISK" ] || fail "no disk of at least $need bytes matches the Machine's disk hints"
fi
DISK_BYTES=$(size_of "\${DISK##*/}")

if ! cmp -s -n 1048576 "$DISK" /dev/zero; then
  [ "$KIB_ALLOW_WIPE" = yes ] || fail "disk $DISK holds data (its first MiB is not blank); set spec.allowWipe to overwrite it"
  log "disk $DISK holds data; overwriting it (spec.allowWipe)"
fi

# Times from /proc/uptime (10 ms resolution; busybox date has whole seconds only).
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
MEASURED=
if [ "$KIB_MEASURE_DISK" = yes ]; then
  log "measuring $DISK: $KIB_IMAGE_SIZE bytes of zeros written and read back"
  t0=$(now)
  dd if=/dev/zero of="$DISK" bs=4M iflag=count_bytes count="$KIB_IMAGE_SIZE" oflag=direct 2>/dev/null || fail "cannot write to $DISK"
  sync
  t1=$(now)
  dd if="$DISK" of=/dev/null bs=4M iflag=direct,count_bytes count="$KIB_IMAGE_SIZE" 2>/dev/null || fail "cannot read $DISK"
  t2=$(now)
  MEASURED="streamBytes=$KIB_IMAGE_SIZE&streamWriteSeconds=$(elapsed "$t0" "$t1")&streamReadSeconds=$(elapsed "$t1" "$t2")"
  log "streaming: written in $(elapsed "$t0" "$t1") s, read in $(elapsed "$t1" "$t2") s"
fi

report writing "disk=$DISK" "diskBytes=$DISK_BYTES" $MEASURED
sectors_written() { awk '{print $7}' "/sys/block/\${DISK##*/}/stat"; }
base=$(sectors_written)
(
  while sleep 5; do
    report progress "bytesWritten=$(( ($(sectors_written) - base) * 512 ))"
  done
) &
PROGRESS=$!
WROTE=yes
start=$(now)
wget -q -O - "$KIB_IMAGE_URL" | zstd -q -dc | dd of="$DISK" bs=4M iflag=fullblock oflag=direct 2>/tmp/dd.log
kill $PROGRESS 2>/dev/null
sync
written=$(now)
# Exactly the image's length, read with O_DIRECT from the device.
sum=$(dd if="$DISK" bs=4M iflag=direct,count_bytes count="$KIB_IMAGE_SIZE" 2>/dev/null | sha256sum | cut -d' ' -f1)
verified=$(now)
log "wrote in $(elapsed "$start" "$written") s, verified in $(elapsed "$written" "$verified") s: $sum"
[ "$sum" = "$KIB_IMAGE_SHA256" ] || fail "sha256 mismatch on $DISK: read back $sum, expected $KIB_IMAGE_SHA256"

# The per-Machine seed: a CIDATA partition near the end of the disk, and the GPT that names it.
if [ -n "$KIB_CIDATA_URL" ]; then
  wget -q -O /tmp/cidata.plan "$KIB_CIDATA_URL$DISK_BYTES/plan" || fail "cannot fetch the CIDATA plan"
  . /tmp/cidata.plan
  wget -q -O - "$KIB_CIDATA_URL$DISK_BYTES/seed" | dd of="$DISK" bs=512 seek="$SEED_LBA" iflag=fullblock conv=notrunc,fsync 2>/dev/null || fail "cannot write the CIDATA partition"
  wget -q -O - "$KIB_CIDATA_URL$DISK_BYTES/backup" | dd of="$DISK" bs=512 seek="$BACKUP_LBA" iflag=fullblock conv=notrunc,fsync 2>/dev/null || fail "cannot write the backup GPT"
  wget -q -O - "$KIB_CIDATA_URL$DISK_BYTES/primary" | dd of="$DISK" bs=512 iflag=fullblock conv=notrunc,fsync 2>/dev/null || fail "cannot write the primary GPT"
fi
sync
report written "sha256=$sum" "writeSeconds=$(elapsed "$start" "$written")" "verifySeconds=$(elapsed "$written" "$verified")"
log "rebooting into the installed system"
reboot -f
sleep 3600
`;

/** busybox udhcpc's hook: configure the address and the default route it was given. */
const UDHCPC_SCRIPT_RAW = String.raw`#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "\${router%% *}" dev "$interface"
    ;;
esac
exit 0
`;

/** `\${` in the raw templates above keeps JavaScript from interpolating the shell's `${…}`. */
const unescape = (text: string): string => text.replaceAll('\\${', '${');
export const STAGE2_INIT = unescape(STAGE2_INIT_RAW);
export const UDHCPC_SCRIPT = unescape(UDHCPC_SCRIPT_RAW);
