"""The fs_lvm peer: OpenNebula's own LVM TM driver, run beside ours in the lab.

bench/peer_fs_lvm.sh does what fs_lvm does; this sets up what fs_lvm expects
of a node and a front-end, for a throw-away user `onepeer` (its own uid, so
nothing it does is mistaken for the driver's oneadmin):
  * on every guest: the user (groups `disk` and `oneadmin`: fs_lvm writes LV
    devices as oneadmin, which our udev rule gives to group oneadmin), a
    bench-generated ssh key, and OpenNebula's LVM sudoers allow-list;
  * on GFS2: its own system datastore dir and an image file, since fs_lvm
    images are files on the shared filesystem, copied with qemu-img convert;
  * on this host: an ssh config with OpenNebula's ControlMaster settings.
The script runs through testkit.oneclient like any TM action (argv, cwd,
oned's environment, nice 19), so it is timed exactly as the driver is.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from lab.vmlab import VG
from testkit import oneclient

USER = "onepeer"
UID = 29999                 # fixed: GFS2 stores numeric owners, and every guest must agree
SYSTEM_DS, IMAGE_DS = 1000, 1001
DATASTORES = "/var/lib/one/datastores"
SCRIPT = Path(__file__).with_name("peer_fs_lvm.sh")
SUDOERS_FILE = "/etc/sudoers.d/bench-onepeer"      # no dot: sudo skips names with one
AUTHORIZED_KEYS = f"/etc/ssh/authorized_keys/{USER}"   # the lab's sshd AuthorizedKeysFile

# OpenNebula's LVM allow-list: Cmnd_Alias ONE_LVM and its secure_path from
# share/pkgs/sudoers/debian/opennebula, enabled for oneadmin by
# share/pkgs/sudoers/opennebula-node-kvm -- here for the peer's user.
SUDOERS = f"""\
Defaults:{USER} secure_path = /sbin:/bin:/usr/sbin:/usr/bin
Cmnd_Alias ONE_LVM = /usr/sbin/lvcreate, /usr/sbin/lvremove, /usr/sbin/lvs, \
/usr/sbin/vgdisplay, /usr/sbin/lvchange, /usr/sbin/lvscan, /usr/sbin/lvextend, /usr/sbin/dmsetup
{USER} ALL=(ALL:ALL) NOPASSWD: ONE_LVM
"""

# OpenNebula's oneadmin ~/.ssh/config (share/ssh/etc/config: ControlPersist 70s,
# ControlPath ctl-M-%C.sock, ServerAliveInterval 10) with ControlMaster auto,
# which OpenNebula's ssh wrapper share/ssh/bin/ssh adds to every driver call.
SSH_DEFAULTS = """\
Host *
  StrictHostKeyChecking accept-new
  ServerAliveInterval 10
  ControlMaster auto
  ControlPersist 70s
  ControlPath {sockets}/ctl-M-%C.sock
  User {user}
  IdentityFile {key}
  IdentitiesOnly yes
  BatchMode yes
  UserKnownHostsFile {known_hosts}
"""


class Peer:
    def __init__(self, lab, workdir: Path):
        self.lab = lab
        self.workdir = workdir
        self.key = workdir / "id_ed25519"
        self.ssh_config = workdir / "ssh_config"
        self.locks = workdir / "locks"
        self.trace = workdir / "trace"
        self.image_file = f"{DATASTORES}/{IMAGE_DS}/bench-image"
        self.sockets = Path()
        self.ready = False

    # -- set up and take down --------------------------------------------------
    def setup(self, image_lv: str) -> None:
        """User, key, sudoers on every guest; datastore dirs and the image file
        (a copy of `image_lv`) on GFS2; the ssh config here."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.locks.mkdir(exist_ok=True)
        # its own short dir: ssh adds 17 characters to ctl-M-<40 hex>.sock while it
        # binds, and a UNIX socket path has 107 at most
        self.sockets = Path(tempfile.mkdtemp(prefix="ctl-"))
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gfs2clvm-bench-peer",
                        "-f", str(self.key)], check=True)
        known_hosts = self.workdir / "known_hosts"
        known_hosts.write_text(self.lab.known_hosts.read_text())
        hosts = "".join(f"Host {node.name}\n  HostName 127.0.0.1\n  Port {node.ssh_port}\n"
                        for node in self.lab.members)
        self.ssh_config.write_text(hosts + SSH_DEFAULTS.format(
            sockets=self.sockets, user=USER, key=self.key, known_hosts=known_hosts))
        self.ready = True      # from here on, teardown has something to undo
        public_key = (self.workdir / "id_ed25519.pub").read_text().strip()
        self.lab.on_all(
            f"set -e\ngetent passwd {USER} >/dev/null || useradd -u {UID} -U -G disk,oneadmin "
            f"-m -s /bin/bash {USER}\n"
            f'printf "%s\\n" "$1" > {AUTHORIZED_KEYS} && chmod 644 {AUTHORIZED_KEYS}\n'
            f'printf "%s" "$2" > /root/bench-onepeer.sudoers\n'
            f"visudo -cqf /root/bench-onepeer.sudoers\n"
            f"install -m 0440 -o root -g root /root/bench-onepeer.sudoers {SUDOERS_FILE}\n"
            f"rm -f /root/bench-onepeer.sudoers",
            public_key, SUDOERS)
        first = self.lab.node_names[0]
        self.lab.sh(first,
                    # the parent as the driver (oneadmin) would make it, then the peer's own
                    f"set -e; [ -d {DATASTORES} ] || install -d -o oneadmin -g oneadmin "
                    f"{DATASTORES}\n"
                    f"install -d -o {UID} -g {UID} {DATASTORES}/{SYSTEM_DS} "
                    f"{DATASTORES}/{IMAGE_DS}\n"
                    f'lvchange -aey "{VG}/$1"\n'
                    f'dd if="/dev/{VG}/$1" of="$2" bs=4M status=none conv=fsync\n'
                    f'lvchange -an "{VG}/$1"\n'
                    f'chown {UID}:{UID} "$2"', image_lv, self.image_file)

    def teardown(self) -> None:
        """Close the ssh masters, then remove the user, its files and dirs."""
        if not self.ready:
            return
        for node in self.lab.node_names:
            subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", node],
                           capture_output=True)
        time.sleep(1)          # let sshd end the master sessions before userdel
        self.lab.on_all(f"rm -f {SUDOERS_FILE} {AUTHORIZED_KEYS}; "
                        f"if getent passwd {USER} >/dev/null; then userdel -f -r {USER} "
                        f"2>/dev/null; fi; true")
        self.lab.sh(self.lab.node_names[0], "rm -rf " + " ".join(
            shlex.quote(f"{DATASTORES}/{ds}") for ds in (SYSTEM_DS, IMAGE_DS)))
        shutil.rmtree(self.sockets, ignore_errors=True)
        self.ready = False

    # -- actions -----------------------------------------------------------------
    def warm(self, nodes) -> None:
        """Open the ControlMaster connections, as a front-end that is busy has them."""
        for node in nodes:
            subprocess.run(["ssh", "-F", str(self.ssh_config), node, "true"], check=True)

    def disk_path(self, vm_id: int, disk_id: int = 0) -> str:
        return f"{DATASTORES}/{SYSTEM_DS}/{vm_id}/disk.{disk_id}"

    @property
    def base_path(self) -> str:
        return f"{DATASTORES}/{SYSTEM_DS}"

    def run(self, action: str, *args) -> tuple[float, int]:
        """Run one fs_lvm action as a TM action; (seconds, ssh round trips)."""
        self.trace.unlink(missing_ok=True)
        env = {"PEER_SSH_CONFIG": str(self.ssh_config), "PEER_VG": VG,
               "PEER_LOCK_DIR": str(self.locks), "PEER_TRACE": str(self.trace)}
        started = time.monotonic()
        result = oneclient.run_script(str(SCRIPT), [action, *map(str, args)], env=env,
                                      cwd=str(self.workdir), timeout=600)
        seconds = time.monotonic() - started
        if not result.success:
            raise RuntimeError(f"peer fs_lvm {action} failed (exit {result.exit_code}):\n"
                               f"{result.stderr}")
        calls = len(self.trace.read_text().splitlines()) if self.trace.exists() else 0
        return seconds, calls
