#!/bin/bash
# The peer baseline for `./run bench`: what OpenNebula's own fs_lvm TM driver
# runs for clone, mv, delete and monitor, written small (not copied) from
# OpenNebula/one src/tm_mad/fs_lvm/{clone,mv,delete,monitor},
# src/tm_mad/fs_lvm/fs_lvm.conf and src/mad/sh/scripts_common.sh.  Same remote
# command sequence, same number of ssh round trips, the same commands under
# `sudo -n`, the same copy command (qemu-img convert of the image file on the
# shared filesystem into the LV), the same front-end flocks.
#
#   peer_fs_lvm.sh clone  IMAGE_FILE HOST:DST_PATH VM_ID SIZE_MB
#   peer_fs_lvm.sh mv     SRC_HOST:PATH DST_HOST:PATH      (cold migration of a disk)
#   peer_fs_lvm.sh delete HOST:PATH                        (a VM disk)
#   peer_fs_lvm.sh monitor BASE_PATH HOST...                (system datastore, no VM disks)
#
# Environment: PEER_SSH_CONFIG (OpenNebula's oneadmin ~/.ssh/config settings),
# PEER_VG (fs_lvm's vg-one-<system ds id>; here the lab's shared VG),
# PEER_LOCK_DIR (fs_lvm's /var/lock/one), PEER_TRACE (optional: one line per ssh).
#
# Left out, all front-end-local work: fs_lvm asks oned (`onevm show`,
# `onedatastore show`, `onehost list`, each a Ruby CLI plus xpath.rb) for the
# disk size, LCM state, last host and live bridges, and runs `qemu-img info`
# and `file` on the image through the front-end's mount.  Here those answers
# are arguments, so this peer is a lower bound on fs_lvm's cost.
set -euo pipefail

: "${PEER_SSH_CONFIG:?}" "${PEER_VG:?}" "${PEER_LOCK_DIR:?}"
SUDO="sudo -n"                          # scripts_common.sh: SUDO=${SUDO:-sudo -n}
DD_BLOCK_SIZE=64k                       # fs_lvm.conf
ZERO_LVM_ON_CREATE=yes                  # fs_lvm.conf
ZERO_LVM_ON_DELETE=yes                  # fs_lvm.conf

trace() {
    local text=${2//$'\n'/; }
    [ -n "${PEER_TRACE:-}" ] && printf '%s\t%s\n' "$1" "${text:0:160}" >>"$PEER_TRACE"
    return 0
}

# ssh_exec_and_log: the script goes to `ssh HOST bash -s` on stdin; stdout is
# dropped, stderr kept for the error message.
remote() {
    local host=$1 script=$2
    trace "$host" "$script"
    ssh -F "$PEER_SSH_CONFIG" "$host" bash -s >/dev/null <<EOF
export LANG=C
export LC_ALL=C
$script
EOF
}

# scripts_common.sh `exclusive`: a front-end flock around the command (120 s).
exclusive() {
    local lock="$PEER_LOCK_DIR/$1"
    shift
    (
        flock -w 120 9
        "$@"
    ) 9>"$lock"
}

host_of() { echo "${1%%:*}"; }
path_of() { echo "${1#*:}"; }

# fs_lvm/clone: ssh 1 drops the datastore's .monitor (disable_local_monitoring),
# ssh 2 (under the datastore flock) lvscan + lvcreate, ssh 3 zeroes the LV's
# tail, qemu-img converts the image file into it and links it.
tm_clone() {
    local src=$1 host dst vm=$3 size=$4
    host=$(host_of "$2"); dst=$(path_of "$2")
    local dir lv dev zero_seek
    dir=$(dirname "$dst")
    lv="lv-one-$vm-${dst##*.}"
    dev="/dev/$PEER_VG/$lv"
    zero_seek=$(( (size - 1) * 1024 * 1024 ))    # image size == disk size here
    remote "$host" "set -e -o pipefail
MONITOR_FN=\"\$(dirname $dir)/.monitor\"
rm -f \"\${MONITOR_FN}\""
    exclusive "tm-fs_lvm-$PEER_VG.lock" remote "$host" "set -e -o pipefail
sync
$SUDO lvscan
$SUDO lvcreate --wipesignatures n -L${size}M -n $lv $PEER_VG"
    remote "$host" "set -e -o pipefail
mkdir -p $dir
hostname -f >\"$dir/.host\" || :
if [ \"$ZERO_LVM_ON_CREATE\" = \"yes\" ]; then
LVSIZE=\$($SUDO lvs --nosuffix --noheadings --units B -o lv_size \"$dev\" | tr -d '[:blank:]')
dd if=/dev/zero of=\"$dev\" bs=$DD_BLOCK_SIZE oflag=seek_bytes iflag=count_bytes seek=$zero_seek count=\"\$(( LVSIZE - $zero_seek ))\"
fi
qemu-img convert -O raw \"$src\" \"$dev\"
rm -f \"$dst\"
ln -s \"$dev\" \"$dst\""
}

# fs_lvm/mv, a disk, same path on both hosts (cold migration, LCM state
# PROLOG_MIGRATE): ssh 1 (under the flock) deactivates on the source, ssh 2
# activates on the destination.
tm_mv() {
    local src_host dst_host path dir dev
    src_host=$(host_of "$1"); dst_host=$(host_of "$2"); path=$(path_of "$2")
    dir=$(dirname "$path")
    dev="/dev/$PEER_VG/lv-one-$(basename "$(dirname "$path")")-${path##*.}"
    exclusive "tm-fs_lvm-$PEER_VG.lock" remote "$src_host" "set -ex -o pipefail
if [ -b \"$dev\" ]; then
  sync
  $SUDO lvscan
  $SUDO lvchange -an \"$dev\"
fi
rm -f \"$dir/.host\" || :"
    remote "$dst_host" "set -ex -o pipefail
sync
$SUDO lvscan
$SUDO lvchange -ay \"$dev\"
hostname -f >\"$dir/.host\" || :"
}

# fs_lvm/delete, a disk: ssh 1 reads the link, then (ZERO_LVM_ON_DELETE) ssh 2
# activates, ssh 3 zeroes the whole LV with dd (its error ignored), ssh 4
# removes the LV, ssh 5 removes the link.
tm_delete() {
    local host path dev
    host=$(host_of "$1"); path=$(path_of "$1")
    trace "$host" "readlink $path"
    dev=$(ssh -F "$PEER_SSH_CONFIG" "$host" "readlink $path 2> /dev/null | grep \"^/dev/\"") || dev=""
    if [ -n "$dev" ]; then
        if [ "$ZERO_LVM_ON_DELETE" = "yes" ]; then
            exclusive "tm-fs_lvm-$PEER_VG.lock" remote "$host" "set -ex -o pipefail
sync
$SUDO lvscan
$SUDO lvchange -ay \"$dev\""
            remote "$host" "dd if=/dev/zero of=\"$dev\" bs=$DD_BLOCK_SIZE" 2>/dev/null || true
        fi
        exclusive "tm-fs_lvm-$PEER_VG.lock" remote "$host" "$SUDO lvremove -f \"$dev\""
    fi
    remote "$host" "rm -rf \"$path\""
}

# fs_lvm/monitor with a BRIDGE_LIST and MONITOR_VM_DISKS=0: one ssh to a random
# bridge (get_destination_host) running vgdisplay -C; prints USED/FREE/TOTAL.
tm_monitor() {
    local base=$1
    shift
    local hosts=("$@")
    local host=${hosts[$((RANDOM % ${#hosts[@]}))]}
    trace "$host" "monitor $base"
    ssh -F "$PEER_SSH_CONFIG" "$host" bash -s 2>/dev/null <<EOF
export LANG=C
export LC_ALL=C
if [ ! -d $base ]; then
    mkdir -p $base
fi
if PATH=\$PATH:/sbin:/bin:/usr/sbin:/usr/bin which vgdisplay &> /dev/null; then
    LVM_SIZE=\$($SUDO vgdisplay --separator : --units m -o vg_size,vg_free --nosuffix --noheadings -C $PEER_VG 2>/dev/null)
fi
if [ -n "\$LVM_SIZE" ]; then
    LVM_TOTAL=\$(echo \$LVM_SIZE | cut -d: -f1 | sed 's/\..*//;s/^\s*//')
    LVM_FREE=\$(echo \$LVM_SIZE | cut -d: -f2 | sed 's/\..*//;s/^\s*//')
    echo "USED_MB=\$(( LVM_TOTAL - LVM_FREE ))"
    echo "FREE_MB=\$LVM_FREE"
    echo "TOTAL_MB=\$LVM_TOTAL"
else
    exit 1
fi
EOF
}

action=${1:?action}
shift
case "$action" in
    clone|mv|delete|monitor) "tm_$action" "$@" ;;
    *) echo "unknown action $action" >&2; exit 2 ;;
esac
