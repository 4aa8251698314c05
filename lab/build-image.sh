#!/bin/bash
# Build the lab's Debian 12 guest image (run as root).
#
#   lab/build-image.sh OUTDIR
#
# OUTDIR receives base.qcow2, vmlinuz, initrd.img, id_ed25519{,.pub} (the lab's
# client key) and hostkeys/nodeN.{key,pub} (one sshd host key per node, so
# host-key checking in the tests is real).  The caller (lab/vmlab.py) keys
# OUTDIR on a hash of this file and lab/guest/*, so editing either rebuilds.
set -euo pipefail

out=${1:?usage: build-image.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mirror=${LAB_MIRROR:-http://deb.debian.org/debian}
max_nodes=4

packages=(
  linux-image-amd64 initramfs-tools systemd-sysv udev kmod iproute2 iputils-ping procps
  openssh-server sudo python3 lvm2 lvm2-lockd dlm-controld corosync gfs2-utils sanlock
  qemu-utils xorriso e2fsprogs psmisc less
  libvirt-daemon-system libvirt-clients qemu-system-x86 polkitd dbus
)

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

# Small initramfs: only what is needed to mount /dev/vda (virtio + ext4).
setup_hook='mkdir -p "$1/etc/initramfs-tools/conf.d" &&
  echo MODULES=list > "$1/etc/initramfs-tools/conf.d/lab.conf" &&
  printf "virtio_pci\nvirtio_blk\nvirtio_net\next4\n" > "$1/etc/initramfs-tools/modules"'

echo "== mmdebstrap ($mirror)"
mmdebstrap --variant=minbase --mode=root --format=directory \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --setup-hook="$setup_hook" \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$root" "$mirror"

echo "== customise"
# Keys: a client key for root/oneadmin, one host key per node.
ssh-keygen -q -t ed25519 -N '' -C gfs2clvm-lab -f "$work/id_ed25519"
mkdir -p "$work/hostkeys" "$root/etc/ssh/lab-hostkeys"
for i in $(seq 1 $max_nodes); do
  ssh-keygen -q -t ed25519 -N '' -C "node$i" -f "$work/hostkeys/node$i.key"
  mv "$work/hostkeys/node$i.key.pub" "$work/hostkeys/node$i.pub"
  install -m 600 "$work/hostkeys/node$i.key" "$root/etc/ssh/lab-hostkeys/node$i"
done

# oneadmin as on an OpenNebula node (uid 9869, home /var/lib/one, which the
# lab mounts GFS2 over), with NO sudo rights of its own: only the project's
# etc-sudoers-d file, installed at provisioning, grants anything.
chroot "$root" groupadd -g 9869 oneadmin
chroot "$root" useradd -u 9869 -g 9869 -d /var/lib/one -M -s /bin/bash oneadmin
mkdir -p "$root/etc/ssh/authorized_keys"
install -m 644 "$work/id_ed25519.pub" "$root/etc/ssh/authorized_keys/root"
install -m 644 "$work/id_ed25519.pub" "$root/etc/ssh/authorized_keys/oneadmin"
cat > "$root/etc/ssh/sshd_config.d/lab.conf" <<'EOF'
# Keys outside home directories: oneadmin's home is the GFS2 mount point.
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 64
MaxStartups 64:30:128
EOF

install -m 755 "$here/guest/lab-setup" "$root/usr/local/sbin/lab-setup"
install -m 644 "$here/guest/lab-setup.service" "$root/etc/systemd/system/lab-setup.service"
ln -sf /etc/systemd/system/lab-setup.service "$root/etc/systemd/system/multi-user.target.wants/lab-setup.service"

# Cluster daemons start only when the lab asks (lab/vmlab.py cluster_up).
for unit in corosync dlm lvmlockd lvmlocks sanlock wdmd lvm2-monitor lvm2-lvmpolld.socket \
            e2scrub_reap e2scrub_all.timer fstrim.timer apt-daily.timer apt-daily-upgrade.timer \
            getty@tty1 serial-getty@ttyS0 systemd-timesyncd; do
  chroot "$root" systemctl disable "$unit" >/dev/null 2>&1 || true
done
chroot "$root" systemctl mask e2scrub_reap.service getty-static.service >/dev/null 2>&1 || true
# libvirt as on an OpenNebula KVM host, but started by its socket on first use
# (a boot under TCG does not pay for it) with no NAT network (no dnsmasq, no
# bridge: the test VMs have no NIC) and no suspend-all at shutdown.
for unit in libvirtd.service libvirt-guests.service; do
  chroot "$root" systemctl disable "$unit" >/dev/null 2>&1 || true
done
chroot "$root" systemctl enable libvirtd.socket >/dev/null 2>&1
rm -f "$root/etc/libvirt/qemu/networks/autostart/default.xml"
# No nested KVM: TCG's qemu64 CPU offers SVM, so kvm_amd would load and give
# /dev/kvm to root:kvm only; libvirt probes qemu with KVM as root, finds KVM
# unusable for the qemu user (oneadmin) at each domain start and probes again
# (~30 s each).  The test VMs are type='qemu' (TCG) anyway.
printf 'blacklist kvm_amd\nblacklist kvm_intel\n' > "$root/etc/modprobe.d/lab-no-nested-kvm.conf"

# LVM: no autoactivation anywhere (the driver activates where a VM runs);
# lvmlockd on/off is set per boot by lab-setup from the kernel command line.
sed -i -e 's/^\(\s*\)# *use_lvmlockd = .*/\1use_lvmlockd = 1/' \
       -e 's/^\(\s*\)# *auto_activation_volume_list = .*/\1auto_activation_volume_list = []/' \
       "$root/etc/lvm/lvm.conf"
grep -q '^\s*use_lvmlockd = 1' "$root/etc/lvm/lvm.conf"
grep -q '^\s*auto_activation_volume_list = \[\]' "$root/etc/lvm/lvm.conf"
mkdir -p "$root/etc/dlm"
echo "enable_fencing=0" > "$root/etc/dlm/dlm.conf"
mkdir -p "$root/etc/sanlock"
echo "use_watchdog = 0" > "$root/etc/sanlock/sanlock.conf"   # no watchdog device in the guests

echo "/dev/vda / ext4 rw,noatime 0 1" > "$root/etc/fstab"
echo "lab" > "$root/etc/hostname"
# Shrink: module trees a virtio guest never loads.
for dir in gpu sound net/wireless media usb infiniband bluetooth staging iio hid input/touchscreen; do
  rm -rf "$root"/usr/lib/modules/*/kernel/drivers/$dir
done
chroot "$root" sh -c 'depmod -a $(ls /usr/lib/modules)'
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/initrd.img"

echo "== filesystem image"
mkfs.ext4 -q -F -L labroot -d "$root" "$work/rootfs.img" 3G
qemu-img convert -O qcow2 "$work/rootfs.img" "$work/base.qcow2"
rm -f "$work/rootfs.img"

mv "$work/base.qcow2" "$work/vmlinuz" "$work/initrd.img" "$work/id_ed25519" "$work/id_ed25519.pub" "$out/"
rm -rf "$out/hostkeys"; mv "$work/hostkeys" "$out/hostkeys"
echo "== image ready in $out"
