"""Fuzz every action's input against THE RULE (issue 8 §3 "Fuzz").

Every TM action of both layouts (argv as oned writes it) and every datastore /
3.x image action (argv + DS_DRIVER_ACTION_DATA fields) runs in-process through
runtime.run, with testkit/recording.py's recording worker in place of SSH and a
fake oned.  Generated arguments mix real-looking values with hostile ones.
For every generated case this file checks:

  (1) no crash: exit status 0 or a DriverError's code (never 70, "internal
      error"), and at most one stderr line that is not an `INFO:` log line
      (3.x error framing lines aside);
  (2) THE RULE (`rule_violations` below, the test's own statement of it,
      independent of the implementation): every remote command names only
      the paths, LVs and hosts the action's input entitles it to.

Each test first runs its action's `known_cases` (inputs that broke the rule
before or after issue 8's fix), then the generated ones.

Modes (environment):
  FUZZ_SURVEY=1   record every violation instead of stopping at the first
                  failing case of a test; the last test prints the catalogue
                  of distinct failure kinds, each with its shortest input.
  FUZZ_SCALE=x    multiply every test's number of examples (default 1).
  FUZZ_SEED=s     another fixed seed (exploration; default "issue-8-fuzz").
  FUZZ_CATALOGUE=path   (with FUZZ_SURVEY) also write the catalogue there.

Reproducibility: each test runs with a fixed seed (hypothesis.seed, derived
from FUZZ_SEED and the test's name) and no example database, so a CI run
explores exactly the same cases every time: a failure is reproducible by
re-running, and a change of verdict means the code changed, not the dice.
Hypothesis still shrinks a failing case to a small one before reporting it.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import socket
import time
import zlib
from dataclasses import dataclass, field
from unittest import mock

import pytest
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st
from lxml import etree

from testkit.fakeoned import datastore_doc, image_doc, user_doc, vm_doc
from testkit.recording import FakeApi, GiB, MiB, RecordingWorker, installed, run_action
from one_gfs2clvm import config as config_module
from one_gfs2clvm.errors import DriverError

SURVEY = os.environ.get("FUZZ_SURVEY", "") not in ("", "0")
SCALE = float(os.environ.get("FUZZ_SCALE", "1") or 1)
SEED_SALT = os.environ.get("FUZZ_SEED") or "issue-8-fuzz"

M = "/var/lib/one"                              # [storage] gfs2_mount
VGS = {"vg_one"}                                # [storage] volume_groups
BRIDGES = {"node1", "node2"}                    # [storage] bridge_hosts
FRONTEND = socket.gethostname()                 # what is_frontend() recognises
FRONTEND_NAMES = {FRONTEND, FRONTEND.split(".")[0], socket.getfqdn(), "localhost"}


# =============================================================================
# The world the actions see (fake oned + worker state).  THE RULE refers to
# these facts only where it must know whose objects things are.
# =============================================================================

OWNER, OTHER = 5, 6                 # alice (owns VM 7 & co.), bob (owns VMs 555 and 8)
OTHER_USERS_VMS = {555, 8}          # every other VM id is one of alice's (vm_default)
USABLE_IMAGES = {5, 9, 11, 12, 13, 42}          # images alice may USE (owner or OTHER_U)
IMAGE_SOURCE = {5: "vg_one/lv-oneimg-5", 6: "vg_one/lv-oneimg-6", 9: "vg_one/lv-oneimg-9",
                11: "vg_one/lv-one-555-0",     # an image whose SOURCE is bob's VM disk
                12: "vg_one/lv-oneimg-12", 13: f"{M}/datastores/1/x.isox",
                42: "vg_one/lv-oneimg-42"}
PERSISTENT_DISK_LV = {2: "lv-oneimg-12"}        # disk 2 of every world VM: image 12


def vm_like_7(vm_id: int, uid: int = OWNER, state: int = 3, lcm: int = 3,
              host: str = "node1") -> str:
    """A VM: disk 0 clone of image 5, 1 volatile ext4, 2 persistent image 12,
    3 an .isox CD-ROM (image 13), context disk 4; running on `host`."""
    return vm_doc(vm_id, uid=uid, gid=1, uname="alice" if uid == OWNER else "bob",
                  gname="users", permissions="600", state=state, lcm_state=lcm,
                  disks=[{"image_id": 5, "datastore_id": 1},
                         {"fs": "ext4", "size": 512},
                         {"image_id": 12, "persistent": True, "datastore_id": 1,
                          "source": IMAGE_SOURCE[12]},
                         {"image_id": 13, "clone": False, "readonly": True, "type": "CDROM",
                          "datastore_id": 1, "source": IMAGE_SOURCE[13]}],
                  history=[{"hostname": host, "ds_id": 0}], context=True)


def build_api() -> FakeApi:
    api = FakeApi(vm_default=lambda vm_id: None if vm_id in OTHER_USERS_VMS
                  else vm_like_7(vm_id))
    api.add_user(user_doc(0, name="oneadmin", gid=0))
    api.add_user(user_doc(OWNER, name="alice", gid=1))
    api.add_user(user_doc(OTHER, name="bob", gid=1))
    api.add_vm(vm_like_7(7))
    api.add_vm(vm_like_7(555, uid=OTHER, state=8, lcm=0, host="node2"))   # powered off
    api.add_vm(vm_like_7(8, uid=OTHER, state=8, lcm=0, host="node2"))
    owners = {5: (OWNER, "600"), 6: (OTHER, "600"), 9: (OTHER, "604"), 11: (OWNER, "600"),
              12: (OWNER, "600"), 13: (OWNER, "600"), 42: (OWNER, "600")}
    for image_id, (uid, perms) in owners.items():
        api.add_image(image_doc(image_id, uid=uid, gid=1, permissions=perms,
                                source=IMAGE_SOURCE[image_id], persistent=image_id == 12,
                                type=1 if image_id == 13 else 0, datastore_id=1))
    api.add_datastore(datastore_doc(0, type=1))
    api.add_datastore(datastore_doc(101, type=1, template={"BRIDGE_LIST": "node2"}))
    for ds_id in (1, 100):
        api.add_datastore(datastore_doc(ds_id, type=0))
    api.add_datastore(datastore_doc(102, type=0, template={"VG_NAME": "vg_other"}))
    return api


INITIAL_LINKS = {
    f"{M}/datastores/0/7/disk.0": "/dev/vg_one/lv-one-7-0",
    f"{M}/datastores/0/7/disk.1": "/dev/vg_one/lv-one-7-1",
    f"{M}/datastores/0/7/disk.2": "/dev/vg_one/lv-oneimg-12",
    f"{M}/datastores/0/7/disk.3": IMAGE_SOURCE[13],
    f"{M}/datastores/0/555/disk.0": "/dev/vg_one/lv-one-555-0",
    f"{M}/7/images/disk.0": "/dev/vg_one/lv-one-7-0",
    f"{M}/7/images/disk.1": "/dev/vg_one/lv-one-7-1",
    f"{M}/7/images/disk.2": "/dev/vg_one/lv-oneimg-12",
    f"{M}/555/images/disk.0": "/dev/vg_one/lv-one-555-0",
    f"{M}/datastores/0/8/disk.0": "/dev/vg_one/lv-one-8-0",      # bob's VM 8
    f"{M}/8/images/disk.0": "/dev/vg_one/lv-one-8-0",
    f"{M}/datastores/0/70/disk.0": "/dev/vg_one/lv-one-70-0",    # alice's VM 70
    f"{M}/70/images/disk.0": "/dev/vg_one/lv-one-70-0",
}


def build_worker(config) -> RecordingWorker:
    worker = RecordingWorker(config)
    add = worker.vg.add
    add("vg_one", "lv-one-7-0", GiB, ["one-use=7:0:node1"], {"node1": "ey"})
    add("vg_one", "lv-one-7-1", 512 * MiB, ["one-use=7:1:node1"], {"node1": "ey"})
    add("vg_one", "lv-one-7-0-snap-0", GiB)
    add("vg_one", "lv-one-7-0-snap-3", GiB)
    for name in ("lv-oneimg-5", "lv-oneimg-5-snap-0", "lv-oneimg-5-snap-1", "lv-oneimg-6",
                 "lv-oneimg-9", "lv-one-555-0-snap-1", "lv-one-8-0"):
        add("vg_one", name, GiB)
    add("vg_one", "lv-oneimg-12", GiB, ["one-use=7:2:node1"], {"node1": "ey"})
    add("vg_one", "lv-one-555-0", GiB, ["one-use=555:0:node2"], {"node2": "ey"})
    add("vg_one", "lv-one-70-0", GiB, ["one-use=70:0:node2"], {"node2": "ey"})
    worker.gfs.links.update(INITIAL_LINKS)
    return worker


@dataclass
class World:
    config: object
    worker: RecordingWorker
    api: FakeApi
    initial: object
    tmp: str

    def reset(self) -> None:
        self.worker.restore(self.initial)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "locks").mkdir()
    (tmp / "vms" / "7").mkdir(parents=True)
    (tmp / "vms" / "7" / "context.sh").write_text("ETH0_IP=10.0.0.7\n")
    (tmp / "key.pub").write_text("ssh-ed25519 AAAA test\n")
    (tmp / "upload.raw").write_bytes(b"\0" * 4096 + b"data" * 1024)
    config = config_module.parse(
        f"[storage]\nvolume_groups = vg_one\ngfs2_mount = {M}\nbridge_hosts = node1, node2\n"
        f"lock_mode = lvmlockd\nzeroing = on_delete\n"
        f"[locking]\nlock_dir = {tmp / 'locks'}\nlock_timeout = 0\n", source="fuzz.conf")
    worker = build_worker(config)
    api = build_api()
    with installed(worker, api, remotes_dir=str(tmp / "no-remotes")):
        yield World(config, worker, api, worker.snapshot(), str(tmp))


# =============================================================================
# Cases
# =============================================================================

def _short(text: str) -> str:
    if len(text) > 48 and len(set(text)) == 1:
        return f"{text[0]!r}*{len(text)}"
    return repr(text if len(text) <= 120 else text[:117] + "...")


@dataclass
class Case:
    family: str                    # "tm" (modern), "tm3", "ds" (datastore), "image3"
    action: str
    argv: list[str]
    stdin: bytes | None = None
    note: str = ""                 # what the stdin / XML carries, for people
    fields: dict = field(default_factory=dict)   # DS: the XML fields generated

    def __repr__(self) -> str:
        args = "[" + ", ".join(_short(a) for a in self.argv) + "]"
        extra = f" {self.note}" if self.note else ""
        return f"<{self.family} {self.action} {args}{extra}>"

    @property
    def size(self) -> int:
        """How big the input reads (non-ASCII counts as its escape): the catalogue
        keeps the smallest input per failure kind."""
        return len(ascii(repr(self)))


# =============================================================================
# THE RULE
# =============================================================================
#
# For a TM action with VM id v (its VMID argument; 3.x: the id in its VM path)
# and datastore id d (its DSID argument), with M the gfs2 mount, a remote
# command may name:
#
#   * paths: the VM directory M/datastores/<s>/<v> (3.x: M/<v>/images); for
#     actions whose DSID is the SYSTEM datastore (mkimage, mkswap, context,
#     pre/post/failmigrate, mv/delete of the directory form) s must be d (but the
#     SOURCE directory of a directory mv, a migration from another system
#     datastore, may be this VM's directory in any datastore; never rm -rf'd), for
#     the others (DSID = an image datastore) s is any id; a disk <dir>/disk.<N>;
#     <dir>/disk.<N>.d and <dir>/disk.<N>.tmp.  The 3.x front-end side of mv,
#     M/<v> or M/<v>/disk.<N>, only in a 3.x mv.  `rm -rf` only the VM directory
#     or disk.N.d/.tmp.
#     Only READ (readlink, qemu-img info/convert source, ln target, ...): an
#     image file M/datastores/<n>/<name> (3.x M/images/<name>), <name> one
#     component, not a decimal id, not starting with '.'; or an .isox under M;
#     and M itself (a mount check such as `mountpoint -q M`);
#   * LVs (helper arguments, /dev/<vg>/<lv>): lv-one-<v>-<disk>[-snap-<k>] and
#     image LVs lv-oneimg-<id>[-snap-<k>]; never lv-one-<w>-... for w != v;
#     /dev/<vg>/... and helper VGs only for configured VGs;
#   * hosts: the hosts of its host:path / host arguments (not the SOURCE's
#     front-end prefix) and the bridge lists (config, the datastore's
#     BRIDGE_LIST); never a name starting with '-', never the front-end.
#
# A datastore / 3.x image action with image id i (its ID argument) may name:
#   * LVs lv-oneimg-<i>[-snap-<k>], plus the source its PATH names: clone's
#     <vg>/lv-oneimg-<j>, vol://<j>'s image LV if the image's owner may use
#     image j, lvm://<w>/<k>'s (and 3.x mv's M/<w>/images/disk.<k>'s) disk LV
#     if the owner may use VM w; stat (sizes only) also a PATH <vg>/lv-oneimg-<j>,
#     and, as README "What an action may touch" documents (stat gets no owner),
#     an `lvs` size report of the LV its lvm:// / vol:// source names;
#   * paths: write only M/datastores/<ds>/ and files directly in it whose name
#     is not a decimal id (3.x: M/images/...), where <ds> is DATASTORE/ID;
#     read also image files and .isox under M as above (and 3.x mv's SRC);
#     no rm -rf;
#   * hosts: the XML's BRIDGE_LIST and the configured bridge hosts.

ID = r"(?:0|[1-9][0-9]{0,9})"
MODERN_VM_PATH = re.compile(rf"{M}/datastores/({ID})/({ID})(/.*)?")
LEGACY_VM_PATH = re.compile(rf"{M}/({ID})/images(/.*)?")
LEGACY_FE_SIDE = re.compile(rf"{M}/({ID})(/disk\.[^/]*)?")
DISK_REST = re.compile(rf"/disk\.{ID}")
DERIVED_REST = re.compile(rf"/disk\.{ID}\.(?:d|tmp)")
VM_LV = re.compile(rf"lv-one-({ID})-({ID})(?:-snap-{ID})?")
IMAGE_LV = re.compile(rf"lv-oneimg-({ID})(-snap-{ID})?")
SOURCE_IMAGE_LV = re.compile(rf"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*/(lv-oneimg-{ID})")


def canonical_id(text) -> int | None:
    """The id a decimal argument names, if spelled canonically (no sign, no
    leading zero, ASCII, at most 10 digits)."""
    return int(text) if isinstance(text, str) and re.fullmatch(ID, text) else None


def split_host_path(arg: str) -> tuple[str, str] | None:
    host, sep, path = arg.partition(":")
    return (host, path) if sep else None


def collapse(path: str) -> str:
    """'//' -> '/', no trailing '/': the spelling OpenNebula's paths vary in."""
    path = re.sub(r"/+", "/", path)
    return path.rstrip("/") or "/"


def without_dots(path: str) -> str:
    """collapse() and drop '.' components ('..' stays): for reading an argv path."""
    return collapse(re.sub(r"/\.(?=/|$)", "", path))


def is_image_file(path: str, legacy: bool) -> bool:
    """An image file SOURCE that may be read (see THE RULE); also M itself, for
    a read-only check such as `mountpoint -q M`."""
    if path == M:
        return True
    if path.endswith(".isox") and path.startswith(M + "/"):
        return True
    m = re.fullmatch(rf"{M}/images/([^/]+)" if legacy else rf"{M}/datastores/{ID}/([^/]+)",
                     path)
    return bool(m) and not re.fullmatch(r"[0-9]+", m[1]) and not m[1].startswith(".")


class TmScope:
    """What a TM action with this argv may touch."""

    def __init__(self, case: Case, world: World):
        spec = (TM_SPEC if case.family == "tm" else TM3_SPEC)[case.action]
        argv, self.case = case.argv, case
        self.legacy = case.family == "tm3"
        self.action = case.action
        ok_arity = spec.low <= len(argv) <= (spec.high or 10 ** 6)
        locations = [argv[i] for i in spec.locations] if ok_arity else []
        host_args = [argv[i] for i in spec.hosts] if ok_arity else []
        self.v = self.d = None
        if ok_arity and not self.legacy and spec.vm is not None:
            self.v, self.d = canonical_id(argv[spec.vm]), canonical_id(argv[spec.ds])
        elif ok_arity and spec.ds is not None:
            self.d = canonical_id(argv[spec.ds])
        if self.legacy and locations:      # 3.x: the VM id is the one its path names
            for text in reversed(locations):   # (a '.' component names the same path)
                parts = split_host_path(text)
                path = parts and without_dots(parts[1])
                m = parts and (LEGACY_VM_PATH.fullmatch(path) or
                               (case.action == "mv" and LEGACY_FE_SIDE.fullmatch(path)))
                if m:
                    self.v = int(m[1])
                    break
        system = spec.system
        if system == "dir form":           # mv/delete: the directory form is the system DS's
            last = split_host_path(locations[-1]) if locations else None
            system = not (last and last[1].rstrip("/").rpartition("/")[2].startswith("disk."))
        self.system_only = bool(system)
        # OpenNebula migrates a VM to another system datastore with `mv <old dir>
        # <new dir> VMID <new DSID>`: the SOURCE directory argv names, if it is this
        # VM's directory, may be in another system datastore (it is moved, never rm'd).
        self.previous_dir = None
        if case.action == "mv" and not self.legacy and self.system_only and locations:
            src = split_host_path(locations[0])
            m = src and MODERN_VM_PATH.fullmatch(without_dots(src[1]))
            if m and m[3] is None and self.v is not None and int(m[2]) == self.v:
                self.previous_dir = without_dots(src[1])
        self.hosts = set(BRIDGES)
        for text in locations:
            parts = split_host_path(text)
            if parts:
                self.hosts.add(parts[0])
        self.hosts |= set(host_args)
        if self.d is not None and self.d in world.api.datastores:
            self.hosts |= set(world.api.datastores[self.d].bridge_list)
        self.hosts |= set(case.fields.get("bridge_list", []))

    def describe(self) -> str:
        where = f"M/{self.v}/images" if self.legacy else \
            f"M/datastores/{self.d if self.system_only else '<any>'}/{self.v}"
        return f"VM {self.v}, dir {where}"

    def own(self, path: str) -> str | None:
        """'dir', 'disk', 'derived', 'fe-side' (3.x mv) or 'previous-dir' (mv from
        another system datastore) if the path is this VM's, else None."""
        if self.v is None:
            return None
        if self.legacy:
            m = LEGACY_VM_PATH.fullmatch(path)
            if not m and self.action == "mv":          # the front-end side: M/<v>[/disk.N]
                m = LEGACY_FE_SIDE.fullmatch(path)
                if m and int(m[1]) == self.v and (m[2] is None or DISK_REST.fullmatch(m[2])):
                    return "fe-side"
                return None
            if not m or int(m[1]) != self.v:
                return None
            rest = m[2]
        else:
            if path == self.previous_dir:
                return "previous-dir"
            m = MODERN_VM_PATH.fullmatch(path)
            if not m or int(m[2]) != self.v:
                return None
            if self.system_only and (self.d is None or int(m[1]) != self.d):
                return None
            rest = m[3]
        if rest is None:
            return "dir"
        if DISK_REST.fullmatch(rest):
            return "disk"
        if DERIVED_REST.fullmatch(rest):
            return "derived"
        return None

    def readable(self, path: str) -> bool:
        return is_image_file(path, self.legacy)

    def lv_ok(self, lv: str) -> bool:
        m = VM_LV.fullmatch(lv)
        if m:
            return self.v is not None and int(m[1]) == self.v
        return bool(IMAGE_LV.fullmatch(lv))

    def lv_problem(self, lv: str) -> str:
        if VM_LV.fullmatch(lv) and self.v is None:
            return "names a VM LV although the VMID is not a canonical id"
        if VM_LV.fullmatch(lv):
            return "names another VM's LV (lv-one-<w>-... with w != v)"
        return "names an LV that is not one of the driver's"

    def path_problem(self, path: str, mode: str) -> str:
        if mode == "remove-tree":
            return "rm -rf of a path that is not the VM directory (nor disk.N.d/.tmp)"
        if self.v is None and (MODERN_VM_PATH.fullmatch(path) or
                               LEGACY_VM_PATH.fullmatch(path)):
            return "touches a VM directory although the VMID is not a canonical id"
        m = MODERN_VM_PATH.fullmatch(path)
        if m and not self.legacy and self.v is not None and int(m[2]) == self.v:
            return "uses this VM's directory in another system datastore than DSID"
        m = m or LEGACY_VM_PATH.fullmatch(path)
        if m:
            return "touches another VM's directory (or a non-disk file in it)"
        if mode == "read":
            return "reads a file that is not an image file (nor an .isox under M)"
        if path == M or path.startswith(M + "/"):
            return "writes a path under M outside the VM directory"
        return "writes a path outside M"


class DsScope:
    """What a datastore (or 3.x image) action with this input may touch."""

    def __init__(self, case: Case, world: World):
        self.legacy = case.family == "image3"
        self.action = case.action
        f, argv = case.fields, case.argv
        self.ds = f.get("ds_id")                   # the XML's DATASTORE/ID
        self.hosts = set(BRIDGES) | set(f.get("bridge_list", []))
        self.source_lvs: set[str] = set()
        self.read_paths: set[str] = set()
        if self.legacy:                            # PATH ID [ID], FSTYPE SIZE ID [ID], ...
            pos = {"cp": 1, "mkfs": 2, "mv": 2, "rm": 1}[case.action]
            ok = len(argv) == pos + 1 or (len(argv) == pos + 2 and argv[-1] in (argv[pos], ""))
            self.i = canonical_id(argv[pos]) if ok else None
            path = argv[0] if ok and case.action in ("cp", "mv") else ""
        else:                                      # ID (XML on stdin) or BASE64 ID
            id_text = argv[0] if len(argv) == 1 else argv[1] if len(argv) == 2 else None
            self.i = None if case.action in ("stat", "monitor") else canonical_id(id_text)
            path = f.get("path", "")               # the XML's IMAGE/PATH
        if self.action in ("clone", "stat") and not self.legacy:
            m = SOURCE_IMAGE_LV.fullmatch(path)
            if m:
                self.source_lvs.add(m[1])
        m = re.fullmatch(rf"vol://({ID})", path)
        if m and self.action in ("cp", "stat") and int(m[1]) in USABLE_IMAGES:
            m = SOURCE_IMAGE_LV.fullmatch(IMAGE_SOURCE.get(int(m[1]), ""))
            if m:
                self.source_lvs.add(m[1])
        vm_disk = re.fullmatch(rf"lvm://({ID})/({ID})", path) if self.action in ("cp", "stat") \
            else None
        if self.legacy and self.action == "mv":
            vm_disk = re.fullmatch(rf"{M}/({ID})/images/disk\.({ID})", collapse(path))
            if vm_disk and int(vm_disk[1]) not in OTHER_USERS_VMS:
                self.read_paths.add(collapse(path))
        if vm_disk and int(vm_disk[1]) not in OTHER_USERS_VMS:
            w, k = int(vm_disk[1]), int(vm_disk[2])
            self.source_lvs.add(PERSISTENT_DISK_LV.get(k, f"lv-one-{w}-{k}"))
        # README "What an action may touch", Rights: stat gets no owner and, for
        # lvm:// and vol://, may report the size of whatever LV that source names
        # (an `lvs` report only, nothing else).
        self.size_only: set[str] = set()
        if self.action == "stat" and not self.legacy:
            m = re.fullmatch(rf"lvm://({ID})/({ID})", path)
            if m:
                self.size_only |= {f"lv-one-{m[1]}-{m[2]}",
                                   PERSISTENT_DISK_LV.get(int(m[2]), "")}
            m = re.fullmatch(rf"vol://({ID})", path)
            m = m and re.fullmatch(r"[^/]+/(lv-[^/]+)", IMAGE_SOURCE.get(int(m[1]), ""))
            if m:
                self.size_only.add(m[1])

    def describe(self) -> str:
        where = "M/images" if self.legacy else f"M/datastores/{self.ds}"
        return f"image {self.i}, dir {where}"

    def own(self, path: str) -> str | None:
        directory = f"{M}/images" if self.legacy else \
            (f"{M}/datastores/{self.ds}" if self.ds is not None else None)
        if directory is None:
            return None
        if path == directory:
            return "dir"
        name = path[len(directory) + 1:] if path.startswith(directory + "/") else ""
        if name and "/" not in name and not re.fullmatch(r"[0-9]+", name):
            return "file"
        return None

    def readable(self, path: str) -> bool:
        return is_image_file(path, self.legacy) or path in self.read_paths

    def lv_ok(self, lv: str) -> bool:
        m = IMAGE_LV.fullmatch(lv)
        if m and self.i is not None and int(m[1]) == self.i:
            return True
        return lv in self.source_lvs

    def lv_problem(self, lv: str) -> str:
        if VM_LV.fullmatch(lv):
            return "names a VM's LV that is not the source the owner may use"
        if IMAGE_LV.fullmatch(lv):
            return "names another image's LV (not lv-oneimg-<i>, not the usable source)"
        return "names an LV that is not one of the driver's"

    def path_problem(self, path: str, mode: str) -> str:
        if mode == "remove-tree":
            return "rm -rf in a datastore action"
        if MODERN_VM_PATH.fullmatch(path) or LEGACY_VM_PATH.fullmatch(path):
            return ("reads" if mode == "read" else "writes") + " a VM's directory"
        if mode == "read":
            return "reads a file that is not an image file (nor an .isox under M)"
        if path == M or path.startswith(M + "/"):
            return "writes under M outside the datastore directory"
        return "writes a path outside M"


# -- reading the recorded commands -------------------------------------------------

READERS = {"readlink", "find", "stat", "test", "md5sum", "sha1sum", "blockdev", "cat",
           "mountpoint"}


def path_words(argv: tuple[str, ...]) -> list[tuple[str, str]]:
    """(path, mode) for every absolute path an argv names (argv[0], the program,
    aside); mode: 'read', 'write' or 'remove-tree'.  `sh -c SCRIPT NAME ARGS`
    counts as the script's first command (ARGS are its paths)."""
    program = argv[0].rpartition("/")[2] if argv else ""
    args = list(argv[1:])
    if args[:1] == ["-c"] and program.startswith("python"):
        args = args[2:]                  # the receiver's program text is not a path
    elif args[:1] == ["-c"] and program in ("sh", "bash", "dash") and len(args) > 1:
        script = args[1].split()
        program = script[0] if script and script[0] in READERS else program
        args = args[3:]                  # the script text and $0 are not paths
    words = []
    for word in args:
        if word.startswith("/"):
            words.append(word)
        elif "=/" in word:               # dd-style if=/path
            words.append(word.partition("=")[2])
    if program in READERS or (program == "qemu-img" and args[:1] == ["info"]):
        return [(w, "read") for w in words]
    if program in ("qemu-img", "ln") and words:          # convert SRC... DST; ln -s TARGET LINK
        return [(w, "read") for w in words[:-1]] + [(words[-1], "write")]
    if program == "rm" and any(a.startswith("-") and "r" in a.lower() and not
                               a.startswith("--") for a in args):
        return [(w, "remove-tree") for w in words]
    return [(w, "write") for w in words]


def helper_lvs(words: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """(VG, LV names) of one node-helper call (verb VG [LV ...] ...)."""
    verb, args = (words[0], words[1:]) if words else ("", ())
    vg = args[0] if args else None
    if verb == "lvs":
        return vg, list(args[1:])
    return vg, list(args[1:2])


def rule_violations(case: Case, world: World, outcome) -> list[tuple[str, str]]:
    """THE RULE, applied to every host contacted and every command recorded:
    [(kind of violation, the offending command)]."""
    scope = TmScope(case, world) if case.family in ("tm", "tm3") else DsScope(case, world)
    found = []
    for host in dict.fromkeys(outcome.contacted):
        if host in FRONTEND_NAMES:
            found.append(("contacts the front-end over SSH", host))
        elif host.startswith("-") or host not in scope.hosts:
            found.append(("contacts a host that is neither an argument host nor a bridge",
                          host))
    prefix = (world.config.sudo, "-n", world.config.node_helper)
    for call in outcome.calls:
        if call.argv[:3] == prefix and call.argv[3:4] == ("batch",):
            continue            # a helper batch: its steps are recorded as calls of their own
        if call.argv[:3] == prefix:
            vg, lvs = helper_lvs(call.argv[3:])
            if vg is not None and vg not in VGS:
                found.append(("node-helper call on a VG that is not configured", str(call)))
            for lv in lvs:
                if scope.lv_ok(lv) or (call.argv[3:4] == ("lvs",) and
                                       lv in getattr(scope, "size_only", ())):
                    continue
                found.append((scope.lv_problem(lv), str(call)))
            continue
        for raw, mode in path_words(call.argv):
            problem = path_problem(scope, raw, mode)
            if problem:
                found.append((problem, str(call)))
    return found


def path_problem(scope, raw: str, mode: str) -> str | None:
    path = collapse(raw)
    if re.search(r"[\x00-\x1f\x7f]", path) or any(part in (".", "..")
                                                    for part in path.split("/")):
        return "names a path with '.'/'..' components or control characters"
    if path.startswith("/dev/"):
        parts = path.split("/")
        if len(parts) == 4 and parts[2] in VGS and (VM_LV.fullmatch(parts[3]) or
                                                    IMAGE_LV.fullmatch(parts[3])):
            return None if scope.lv_ok(parts[3]) else scope.lv_problem(parts[3])
        return "names a device that is not one of our LVs in a configured VG"
    own = scope.own(path)
    if mode == "remove-tree":
        return None if own in ("dir", "derived") and isinstance(scope, TmScope) \
            else scope.path_problem(path, mode)
    if own or (mode == "read" and scope.readable(path)):
        return None
    return scope.path_problem(path, mode)


# -- (1): no crash ------------------------------------------------------------------

def _driver_codes() -> set[int]:
    codes, todo = {0}, [DriverError]
    while todo:
        cls = todo.pop()
        codes.add(cls.exit_code)
        todo += cls.__subclasses__()
    return codes


def crash_problems(outcome, traceback_text: str = "") -> list[tuple[str, str]]:
    """(1) of the module docstring; `traceback_text`: stderr of a re-run with
    ONE_GFS2CLVM_DEBUG=1 (names where an internal error was raised)."""
    if outcome.code == 70 or "internal error" in outcome.stderr:
        frames = re.findall(r'File "[^"]*/(one_gfs2clvm/[^"]+)", line \d+, in (\w+)',
                            outcome.stderr + traceback_text)
        what = re.search(r"internal error: (\w+)", outcome.stderr)
        where = f" in {frames[-1][0]}:{frames[-1][1]}" if frames else ""
        return [(f"internal error ({what[1] if what else '?'}{where})",
                 outcome.error_lines()[-1] if outcome.error_lines() else "")]
    problems = []
    if outcome.code not in _driver_codes():
        problems.append((f"exit status {outcome.code} is no DriverError code", ""))
    lines = outcome.error_lines()
    if len(lines) > 1:
        problems.append(("more than one non-INFO stderr line", " | ".join(lines[:3])))
    return problems


# =============================================================================
# Running one case, counting, reporting
# =============================================================================

STATS: dict[str, dict] = {}             # test id -> {"cases": n, "done": bool, "seconds": s}
CATALOGUE: dict[tuple[str, str], tuple[int, Case, str]] = {}   # (action, kind) -> shortest
EXPECTED_TESTS: set[str] = set()


def entry(case: Case):
    """(function, name, legacy) exactly as the action's main() runs it."""
    from one_gfs2clvm.opennebula import datastore, image3, tm, tm3
    if case.family == "tm":
        return tm.ACTIONS[case.action], case.action, False
    if case.family == "tm3":
        return tm3.COMMANDS[case.action], f"tm_{case.action}", True
    if case.family == "ds":
        return datastore.ACTIONS[case.action], f"datastore {case.action}", False
    return image3.COMMANDS[case.action], f"image {case.action}", True


def check_case(world: World, case: Case):
    """Run the case on a fresh world; (outcome, [(kind, detail)] of what it broke)."""
    function, name, legacy = entry(case)

    def run():
        world.reset()
        return run_action(function, name, case.argv, world.config, stdin=case.stdin,
                          legacy=legacy, worker=world.worker)

    outcome = run()
    traceback_text = ""
    if outcome.code == 70:       # only to say where: run it again with the traceback on
        with mock.patch.dict(os.environ, {"ONE_GFS2CLVM_DEBUG": "1"}):
            traceback_text = run().stderr
        world.reset()
        outcome = run()          # the verdict is the plain run's (and its calls)
    return outcome, crash_problems(outcome, traceback_text) + \
        rule_violations(case, world, outcome)


def report(case: Case, world: World, outcome, problems) -> str:
    scope = TmScope(case, world) if case.family in ("tm", "tm3") else DsScope(case, world)
    lines = [f"{case!r} ({scope.describe()}): exit status {outcome.code}"]
    lines += [f"  stderr: {line}" for line in outcome.error_lines()[-3:]]
    lines += [f"  VIOLATION {kind}: {detail}" for kind, detail in problems]
    lines += ["  commands:"] + [f"    {call}"[:300] for call in outcome.calls[:40]]
    return "\n".join(lines)


def fuzz(world: World, test_id: str, strategy, examples: int) -> None:
    """Run `examples` generated cases (after the known cases of this action)."""
    known = known_cases(world.tmp).get(test_id, [])
    examples = max(1, int(examples * SCALE))
    stats = STATS.setdefault(test_id, {"cases": 0, "done": False, "seconds": 0.0,
                                       "codes": {}})
    started = time.monotonic()

    def one_case(case: Case):
        stats["cases"] += 1
        outcome, problems = check_case(world, case)
        stats["codes"][outcome.code] = stats["codes"].get(outcome.code, 0) + 1
        if SURVEY:
            for kind, _ in problems:
                key = (f"{case.family} {case.action}", kind)
                if key not in CATALOGUE or case.size < CATALOGUE[key][0]:
                    CATALOGUE[key] = (case.size, case, report(case, world, outcome, problems))
            return
        assert not problems, report(case, world, outcome, problems)

    test = given(strategy)(one_case)
    for case in known:
        test = example(case)(test)
    test = settings(max_examples=examples, deadline=None, database=None, print_blob=False,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))(test)
    test = seed(zlib.crc32(f"{SEED_SALT}:{test_id}".encode()))(test)
    try:
        test()
        stats["done"] = True
    finally:
        stats["seconds"] += time.monotonic() - started


# =============================================================================
# Strategies: real-looking values mixed with hostile ones
# =============================================================================

TEXT = st.text(st.characters(blacklist_characters="\x00"), max_size=16)
HOSTILE_IDS = ["", "-1", "007", "7\n", " 7", "\u0667", "\uff17", "+7", "7.0", "0x7",
               "9" * 5000, "12345678901", "2147483648", "seven", "7 8", "-0"]
HOSTILE_HOSTS = ["-oProxyCommand=x", "", "node1 node2", "node1\n", "n\u00f6de1", "a" * 300,
                 "node1;id", "-", "..", "node1/x"]


def pick(common, hostile=(), fuzz_text: bool = True, key=()):
    """Mostly one of `common`, sometimes one of `hostile`, rarely any text; `key`:
    the hostile values that matter most, drawn as often as all others together."""
    return _pick(tuple(common), tuple(hostile), fuzz_text, tuple(key))


@functools.lru_cache(maxsize=4096)      # building strategies per draw is what costs time
def _pick(common: tuple, hostile: tuple, fuzz_text: bool, key: tuple = ()):
    # weights 20 : 3 (: 3) : 1 (st.one_of would not do: it drops repeated branches)
    branches = [(20, choice(common))] + ([(3, choice(hostile))] if hostile else []) + \
        ([(3, choice(key))] if key else []) + ([(1, TEXT)] if fuzz_text else [])
    return weighted(tuple(branches))


def ways(**weights):
    """One of the keyword names, drawn with the given weights (the first is the
    shrink target)."""
    return _ways(tuple(weights.items()))


@functools.lru_cache(maxsize=256)
def _ways(items: tuple):
    return weighted(tuple((weight, st.just(name)) for name, weight in items))


@st.composite
def weighted(draw, branches: tuple):
    """Draw from one of `branches` ((weight, strategy), ...); shrinks towards the first."""
    r = draw(st.integers(0, sum(weight for weight, _ in branches) - 1))
    for weight, strategy in branches:
        if r < weight:
            return draw(strategy)
        r -= weight
    raise AssertionError("unreachable")


def choice(options):
    """st.sampled_from, built once per list of options (of hashable values)."""
    options = tuple(options)
    try:
        return _sampled(options)
    except TypeError:                   # unhashable options (lists of argv words)
        return st.sampled_from(options)


@functools.lru_cache(maxsize=4096)
def _sampled(options: tuple):
    return st.sampled_from(options)


HOSTS = pick(["node1", "node1", "node2", "node3"], HOSTILE_HOSTS)
DISK_IDS = ["0", "1", "2", "3", "4", "9"]
HOSTILE_DISK_IDS = ["03", "-1", "\u0663", "", "0.d", "0/..", "1x", "9" * 5000, "0 ", "0\n"]
PREFIXES = [f"{M}/", f"{M}//", f"{M}/./", f"{M}x/", "/srv/one/", "/", "", f"/{M}/"]
SUFFIXES = ["", "", "", "/", "/..", "/../555", "\n", "/.", "/../../555/disk.0", "/x"]
SIZES = pick(["1024", "512", "1", "2048"],
             ["0", "-1", "9" * 5000, "1e3", "", "1024M", "18446744073709551616", "\u0663"])
SNAP_IDS = pick(["0", "1", "3"], ["-1", "01", "9" * 5000, "", "\u0663", "99999999999"])


def modern_whole_paths(v: str, d: str) -> list[str]:
    return [M, "/", f"{M}/victim", f"{M}/datastores", f"{M}/datastores/{d}",
            f"{M}/datastores/0/555", f"{M}/datastores/0/555/disk.0", "/etc", "/etc/passwd",
            "/dev/vg_one/lv-one-555-0", f"{M}/{v}/images", f"{M}/{v}/images/disk.0",
            f"{M}/datastores/{d}/{v}/../555", f"{M}/datastores/{d}/{v}/disk.0/../../555/disk.0",
            f"{M}/datastores/1/abcd", f"{M}/datastores/{d}/{v}/disk.0.d",
            f"{M}/datastores/{d}/{v}/disk.0/x", f"{M}/datastores/{d}/{v}/.."]


def legacy_whole_paths(v: str) -> list[str]:
    return [M, "/", f"{M}/victim", f"{M}/images", f"{M}/555/images", f"{M}/555/images/disk.0",
            "/etc", "/etc/passwd", "/dev/vg_one/lv-one-555-0", f"{M}/datastores/0/{v}",
            f"{M}/datastores/0/{v}/disk.0", f"{M}/{v}/images/../../555/images",
            f"{M}/{v}/images/disk.0/../../../555/images/disk.0", f"/tmp/{v}/images",
            f"/{v}/images", f"{M}/{v}", f"{M}/{v}/images/x", f"{M}/victim/images"]


@functools.lru_cache(maxsize=4096)
def location(v: str, d: str, disk: bool, legacy: bool = False, host=None):
    """A host:path VM location (a disk.N, or the VM dir), usually well formed."""
    return _location(v, d, disk, legacy, host)


@st.composite
def _location(draw, v: str, d: str, disk: bool, legacy: bool = False, host=None):
    host_text = draw(host if host is not None else HOSTS)
    shape = draw(ways(exact=12, variant=4, whole=2, arg=1))
    if shape == "arg":
        good = f"{M}/{v}/images/disk.0" if legacy else f"{M}/datastores/{d}/{v}/disk.0"
        return draw(choice(
            ["", "node1", "file:///etc/passwd", "-oProxyCommand=x:/p",
             f"-oProxyCommand=x:{good}", f":{good}", f"node1:node2:{good}",
             "node1:relative/disk.0", f"node1:{M}", "node1:/", f"{FRONTEND}:/etc"]))
    if shape == "whole":
        path = draw(choice(legacy_whole_paths(v) if legacy else modern_whole_paths(v, d)))
    else:
        exact = shape == "exact"
        prefix = f"{M}/" if exact else draw(choice(PREFIXES))
        vm = v if exact else draw(pick([v, v, "555", "7", "victim", "..", "."], HOSTILE_IDS))
        if legacy:
            path = f"{prefix}{vm}/images"
        else:
            s = d if exact else draw(pick([d, d, "0", "1", "100"], HOSTILE_IDS))
            path = f"{prefix}datastores/{s}/{vm}"
        if disk:
            n = draw(choice(DISK_IDS)) if exact else \
                draw(pick(DISK_IDS, HOSTILE_DISK_IDS))
            path += f"/disk.{n}"
        if not exact:
            path += draw(choice(SUFFIXES))
    return f"{host_text}:{path}"


@functools.lru_cache(maxsize=4096)
def vm_ids(common=("7", "7", "70", "0", "12")):
    return pick(common, HOSTILE_IDS)


SYSTEM_DS_IDS = pick(["0", "0", "101"], HOSTILE_IDS + ["102", "5"])
IMAGE_DS_IDS = pick(["1", "100", "1"], HOSTILE_IDS + ["102", "0"])


@functools.lru_cache(maxsize=4096)
def tm_sources(v: str, legacy: bool = False):
    files = [f"fe:{M}/images/abcd", f"fe:{M}/isos/x.isox"] if legacy else \
        [f"fe:{M}/datastores/1/abcd", f"fe:{M}/datastores/1/x.isox"]
    common = ["fe:vg_one/lv-oneimg-5", "fe:vg_one/lv-oneimg-9", "vol://5", "vol://9",
              f"lvm://{v}/1"] + files
    key = ["fe:vg_one/lv-one-555-0", "lvm://555/0", "vol://11", "vol://6", "fe:/etc/shadow",
           f"fe:{M}/datastores/0/555/disk.0", f"fe:{M}/555/images/disk.0"]
    hostile = ["fe:vg_one/lv-one-555-0", "fe:vg_one/lv-one-7-0", "lvm://555/0", "lvm://8/0",
               "lvm://7/0", "vol://6", "vol://11", "vol://999", "fe:/etc/shadow",
               "fe:/etc/x.isox", f"fe:{M}/../../etc/x.isox", f"fe:{M}/datastores/0/555/disk.0",
               f"fe:{M}/datastores/1/7", f"fe:{M}/datastores/1/.hidden", f"fe:{M}", "fe:/",
               "file:///etc/passwd", "http://example.invalid/x.img",
               "fe:/dev/vg_one/lv-one-555-0", "fe:vg_other/lv-oneimg-5",
               f"fe:{M}/datastores/1/abcd/../../0/555/disk.0", "fe:", "",
               f"fe:{M}/datastores/0/555/disk.0.isox", "fe:vg_one/lv-oneimg-5\n",
               "lvm://0555/0", "vol://" + "9" * 5000, "fe:-oProxyCommand=x",
               f"fe:{M}/555/images/disk.0", f"fe:{M}/images/7", f"fe:{M}/images/.x",
               "fe:vg_one/lv-oneimg-5-snap-0", "fe:vg_one/lv-one-555-0-snap-1"]
    return pick(common, hostile, key=key)


IMAGE_TARGETS = pick(["vg_one/lv-oneimg-12", "vg_one/lv-oneimg-42", "vg_one/lv-oneimg-5"],
                     ["vg_one/lv-one-555-0", "vg_one/lv-one-7-1", "vg_other/lv-oneimg-12",
                      "lvm://555/0", "vol://6", "/dev/vg_one/lv-one-555-0",
                      "fe:vg_one/lv-oneimg-12", "", "vg_one/lv-oneimg-12-snap-1"],
                     key=["vg_one/lv-one-555-0", "vg_one/lv-one-555-0-snap-1"])


def vm_b64(vm_id: int | None) -> bytes:
    doc = vm_like_7(7 if vm_id is None else vm_id,
                    uid=OTHER if vm_id in OTHER_USERS_VMS else OWNER)
    return base64.b64encode(doc.encode())


def ds_b64(ds_id: int, template: dict, image: str | None = None) -> bytes:
    template = {key: xml_text(value) if value else None for key, value in template.items()}
    doc = datastore_doc(ds_id, type=1 if ds_id in (0, 101) else 0, template=template)
    return base64.b64encode(f"<DS_DRIVER_ACTION_DATA>{image or ''}{doc}"
                            f"</DS_DRIVER_ACTION_DATA>".encode())


def mutate_arity(draw, argv: list[str]) -> list[str]:
    """Now and then a wrong number of arguments."""
    how = draw(ways(keep=30, drop=1, extra=1, empty=1))
    if how == "drop" and argv:
        return argv[:-1]
    if how == "extra":
        return argv + [draw(pick(["0", "node1:/x", "--"], HOSTILE_IDS))]
    if how == "empty":
        return []
    return argv


# -- modern TM ------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """Where the oracle finds things in an argv (indexes; negative from the end)."""
    low: int
    high: int | None
    vm: int | None = None
    ds: int | None = None
    locations: tuple[int, ...] = ()     # host:path arguments naming the VM's places
    hosts: tuple[int, ...] = ()         # bare host arguments
    system: object = False              # True, False or "dir form"


SNAP = Spec(4, 4, 2, 3, (0,))
MIGRATE = Spec(5, 6, 3, 4, (), (0, 1), True)
TM_SPEC = {
    "clone": Spec(4, 4, 2, 3, (1,)), "ln": Spec(4, 4, 2, 3, (1,)),
    "mkimage": Spec(5, 5, 3, 4, (2,), system=True), "mkswap": Spec(4, 4, 2, 3, (1,), system=True),
    "context": Spec(4, None, -2, -1, (-3,), system=True),
    "mv": Spec(4, 4, 2, 3, (0, 1), system="dir form"), "mvds": Spec(4, 4, 2, 3, (0,)),
    "cpds": Spec(5, 5, 3, 4, (0,)), "delete": Spec(3, 3, 1, 2, (0,), system="dir form"),
    "premigrate": MIGRATE, "postmigrate": MIGRATE, "failmigrate": MIGRATE,
    "resize": Spec(4, 4, 2, 3, (0,)), "snap_create": SNAP, "snap_delete": SNAP,
    "snap_revert": SNAP, "monitor": Spec(1, 1, None, 0),
}
TM3_SPEC = {
    "clone": Spec(2, 3, locations=(1,)), "ln": Spec(2, 2, locations=(1,)),
    "mkswap": Spec(2, 2, locations=(1,)), "mkimage": Spec(3, 3, locations=(2,)),
    "context": Spec(2, None, locations=(-1,)), "mv": Spec(2, 2, locations=(0, 1)),
    "delete": Spec(1, 1, locations=(0,)),
}


@st.composite
def tm_case(draw, action: str, tmp: str):
    system = TM_SPEC[action].system is True
    v = draw(vm_ids())
    d = draw(SYSTEM_DS_IDS if system else IMAGE_DS_IDS)
    disk = lambda: location(v, d, disk=True)            # noqa: E731
    stdin, note, fields = None, "", {}
    if action in ("clone", "ln"):
        argv = [draw(tm_sources(v)), draw(disk()), v, d]
    elif action == "mkimage":
        argv = [draw(SIZES), draw(pick(["raw", "swap", "qcow2"], ["", "-", "../x", "raw\n"])),
                draw(disk()), v, d]
    elif action == "mkswap":
        argv = [draw(SIZES), draw(disk()), v, d]
    elif action == "context":
        files = draw(st.lists(pick([f"{tmp}/vms/7/context.sh", f"{tmp}/key.pub:'key.pub'",
                                    f"{tmp}/key.pub"],
                                   ["/nonexistent/context.sh", f"{tmp}/key.pub:'../evil'",
                                    f"{tmp}/key.pub:''", f"{tmp}/key.pub:'a/b'", "",
                                    "-oProxyCommand=x"]), min_size=1, max_size=3))
        argv = files + [draw(disk()), v, d]
    elif action == "mv":
        form = draw(ways(disk=6, dir=3, mixed=1))
        if form == "dir":
            d = draw(SYSTEM_DS_IDS)
        src_host = choice(["node1", "node2", FRONTEND])
        dst_host = choice(["node2", "node1", FRONTEND])
        argv = [draw(location(v, d, form != "dir", host=src_host)),
                draw(location(v, d, form == "disk", host=dst_host)), v, d]
    elif action == "mvds":
        argv = [draw(disk()), draw(IMAGE_TARGETS), v, d]
    elif action == "cpds":
        argv = [draw(location(v, d, True, host=choice(["node1", FRONTEND]))),
                draw(IMAGE_TARGETS), draw(pick(["-1", "0", "3"], ["-2", "01", "", "9" * 5000])),
                v, d]
    elif action == "delete":
        form = draw(choice(["disk", "dir"]))
        if form == "dir":
            d = draw(SYSTEM_DS_IDS)
        argv = [draw(location(v, d, form == "disk",
                              host=choice(["node1", "node2", FRONTEND]))), v, d]
    elif action in ("premigrate", "postmigrate", "failmigrate"):
        src = draw(pick(["node1", "node2"], HOSTILE_HOSTS + [FRONTEND]))
        dst = draw(pick(["node2", "node3"], HOSTILE_HOSTS + [FRONTEND]))
        sysdir = draw(pick([f"{M}/datastores/{d}/{v}"],
                           [f"{M}/datastores/0/555", "/", f"{M}", "relative", ""]))
        argv = [src, dst, sysdir, v, d] + draw(choice([[], [], ["gfs2clvm"],
                                                                 ["ceph"]]))
        which = draw(ways(own=8, **{"555": 1, "7": 1}, garbage=1, empty=1))
        note = f"stdin: VM XML of {which}"
        stdin = {"own": lambda: vm_b64(canonical_id(v)), "555": lambda: vm_b64(555),
                 "7": lambda: vm_b64(7), "garbage": lambda: b"!!notbase64!!",
                 "empty": lambda: b""}[which]()
    elif action == "resize":
        argv = [draw(disk()), draw(SIZES), v, d]
    elif action.startswith("snap_"):
        argv = [draw(disk()), draw(SNAP_IDS), v, d]
    elif action == "monitor":
        d = draw(pick(["0", "101", "1", "100"], HOSTILE_IDS + ["102"]))
        argv = [d]
        how = draw(ways(none=3, xml=6, garbage=1))
        if how == "xml":
            bridge = draw(pick(["node1 node2", "node2", ""],
                               ["-oProxyCommand=x", "node1,evil.example", "node3"]))
            vg = draw(pick(["vg_one", None], ["vg_other", "", "../vg_one"]))
            fields["bridge_list"] = [h for h in re.split(r"[\s,]+", bridge) if h]
            stdin = ds_b64(canonical_id(d) or 0, {"BRIDGE_LIST": bridge or None,
                                                  "VG_NAME": vg})
            note = f"stdin: DATASTORE BRIDGE_LIST={bridge!r} VG_NAME={vg!r}"
        elif how == "garbage":
            stdin, note = b"!!!", "stdin: garbage"
    else:
        raise AssertionError(action)
    return Case("tm", action, mutate_arity(draw, argv), stdin, note, fields)


# -- 3.x TM ---------------------------------------------------------------------------

@st.composite
def tm3_case(draw, action: str, tmp: str):
    v = draw(vm_ids())
    disk = lambda host=None: location(v, "0", True, legacy=True, host=host)   # noqa: E731
    if action == "clone":
        argv = [draw(tm_sources(v, legacy=True)), draw(disk())] + \
            draw(choice([[], [], ["1024"], [draw(SIZES)]]))
    elif action == "ln":
        argv = [draw(tm_sources(v, legacy=True)), draw(disk())]
    elif action == "mkswap":
        argv = [draw(SIZES), draw(disk())]
    elif action == "mkimage":
        argv = [draw(SIZES), draw(pick(["ext4", "raw", "xfs"], ["", "-", "../x", "ext4;id"])),
                draw(disk())]
    elif action == "context":
        files = draw(st.lists(pick([f"{tmp}/vms/7/context.sh", f"{tmp}/key.pub"],
                                   ["/nonexistent/context.sh", "", "-x"]),
                              min_size=1, max_size=3))
        argv = files + [draw(disk())]
    elif action == "mv":
        form = draw(ways(dir=4, disk=3, stop=2, resume=2))
        if form == "disk":                 # SAVE=YES epilog: host:<rdir>/disk.i fe:<ldir>/disk.i
            n = draw(choice(DISK_IDS))
            fe_side = draw(choice([f"{M}/{v}/disk.{n}", f"{M}/{v}/disk.{n}",
                                            f"{M}/555/disk.{n}", f"{M}/{v}/images/disk.{n}",
                                            f"{M}/{v}/disk.{n}/..", "/etc/disk.0"]))
            argv = [draw(disk(st.just("node1"))), f"{FRONTEND}:{fe_side}"]
        elif form == "stop":
            argv = [draw(location(v, "0", False, legacy=True, host=st.just("node1"))),
                    f"{FRONTEND}:{M}/{v}"]
        elif form == "resume":
            argv = [f"{FRONTEND}:{M}/{v}/images",
                    draw(location(v, "0", False, legacy=True, host=st.just("node2")))]
        else:
            argv = [draw(location(v, "0", False, legacy=True, host=st.just("node1"))),
                    draw(location(v, "0", False, legacy=True, host=st.just("node2")))]
    elif action == "delete":
        argv = [draw(location(v, "0", draw(choice([False, False, True])),
                              legacy=True, host=choice(["node1", "node2", FRONTEND])))]
    else:
        raise AssertionError(action)
    return Case("tm3", action, mutate_arity(draw, argv))


# -- datastore actions (DS_DRIVER_ACTION_DATA) -------------------------------------------

def xml_text(text: str) -> str:
    """What can travel in an XML text node (oned cannot send anything else)."""
    return "".join(c for c in text if c in "\t\n\r" or (" " <= c and c not in "\ufffe\uffff"
                                                        and not "\ud800" <= c <= "\udfff"))


@functools.lru_cache(maxsize=4096)
def ds_paths(tmp: str, action: str):
    common = {"clone": ["vg_one/lv-oneimg-5", "vg_one/lv-oneimg-9"],
              "cp": ["vol://5", "vol://9", f"{M}/datastores/100/abcd", f"{M}/isos/x.isox",
                     f"{tmp}/upload.raw", "lvm://7/0", "http://example.invalid/x.img"],
              "stat": ["vol://5", "vg_one/lv-oneimg-5", f"{M}/datastores/100/abcd",
                       f"{M}/isos/x.isox", f"{tmp}/upload.raw", "lvm://7/0"]}[action]
    hostile = ["vol://6", "vol://11", "vol://999", "lvm://555/0", "lvm://8/0", "/etc/shadow",
               f"{M}/datastores/0/555/disk.0", f"{M}/datastores/0/7/disk.0",
               f"{M}/../../etc/shadow", f"{M}/datastores/100/../0/555/disk.0",
               "file:///etc/passwd", "vg_one/lv-one-555-0", "vg_one/lv-one-7-0",
               "vg_other/lv-oneimg-5", "", "-oProxyCommand=x", "/dev/vg_one/lv-one-555-0",
               ".isox", f"{M}/datastores/1/7", f"{M}/datastores/100/.hidden", f"{M}",
               "vg_one/lv-oneimg-5-snap-0", f"{M}/555/images/disk.0", "/etc/x.isox",
               f"{M}/datastores/0/555/disk.0.isox"]
    return pick(common, hostile, key=["vol://6", "vol://11", "lvm://555/0",
                                      "vg_one/lv-one-555-0", f"{M}/datastores/0/555/disk.0"])


@functools.lru_cache(maxsize=4096)
def image_sources(i: str):
    return pick([f"vg_one/lv-oneimg-{i}"],
                ["vg_one/lv-oneimg-6", "vg_one/lv-one-555-0", "vg_one/lv-one-7-0",
                 "vg_other/lv-oneimg-42", f"vg_one/lv-oneimg-{i}-snap-1",
                 f"{M}/datastores/100/{i}.isox", f"{M}/datastores/0/{i}.isox",
                 f"{M}/datastores/0/555/disk.0.isox", f"{M}/isos/x.isox", "/etc/passwd", "",
                 "-", "vol://6", "lvm://555/0", f"/dev/vg_one/lv-oneimg-{i}"],
                key=["vg_one/lv-oneimg-6", "vg_one/lv-one-555-0",
                     f"{M}/datastores/0/{i}.isox"])


def set_text(root, path: str, value) -> None:
    node = root.find(path)
    if value is None:
        if node is not None:
            node.getparent().remove(node)
        return
    if node is None:
        parent = root
        for name in path.split("/"):
            parent = parent.find(name) if parent.find(name) is not None else \
                etree.SubElement(parent, name)
        node = parent
    node.text = xml_text(str(value))


def ds_input(action: str, id_text: str, *, path: str = "", source: str = "",
             ds_id: int = 100, base_path: str | None = None, bridge: str | None = "node1 node2",
             vg: str | None = "vg_one", safe: str | None = None, fmt: str = "raw",
             fs: str = "", size: str = "1024", target: str = "-1", form: str = "stdin",
             bad_argv: list[str] | None = None) -> Case:
    """A datastore action's input: argv (`ID` + base64 DS_DRIVER_ACTION_DATA on stdin,
    or the <= 6.6 form `BASE64 ID`) from the XML fields given."""
    i = canonical_id(id_text)
    base_path = f"{M}//datastores/{ds_id}" if base_path is None else base_path
    ds_values = {"BRIDGE_LIST": bridge, "VG_NAME": vg, "SAFE_DIRS": safe}
    datastore = etree.fromstring(datastore_doc(ds_id, type=1 if ds_id in (0, 101) else 0,
                                               template={k: xml_text(v) if v else None
                                                         for k, v in ds_values.items()}))
    set_text(datastore, "BASE_PATH", base_path)
    image = None
    if action != "monitor":
        image = etree.fromstring(image_doc(i if i is not None and i < 2 ** 31 else 42,
                                           uid=OWNER, gid=1, datastore_id=ds_id))
        for name, value in (("PATH", path), ("SOURCE", source), ("FORMAT", fmt), ("FS", fs),
                            ("SIZE", size), ("TARGET_SNAPSHOT", target)):
            set_text(image, name, value)
        if action == "stat":                         # oned sends only PATH and SIZE
            for child in list(image):
                if child.tag not in ("PATH", "SIZE"):
                    image.remove(child)
    xml = "<DS_DRIVER_ACTION_DATA>" + \
        (etree.tostring(image, encoding="unicode") if image is not None else "") + \
        etree.tostring(datastore, encoding="unicode") + "</DS_DRIVER_ACTION_DATA>"
    payload = base64.b64encode(xml.encode())
    stdin = None
    if bad_argv is not None:
        argv = bad_argv
    elif form == "stdin":
        argv, stdin = [id_text], payload
    else:
        argv = [payload.decode(), id_text]
    fields = {"ds_id": ds_id, "path": path,
              "bridge_list": [h for h in re.split(r"[\s,]+", bridge or "") if h]}
    shown = {"PATH": path, "DS": ds_id, "BASE_PATH": base_path, **ds_values}
    if image is not None:                 # the IMAGE fields this action reads
        names = {"mkfs": ("FORMAT", "FS", "SIZE"), "cp": ("SIZE",),
                 "snap_delete": ("SOURCE", "TARGET_SNAPSHOT"),
                 "snap_revert": ("SOURCE", "TARGET_SNAPSHOT"),
                 "snap_flatten": ("SOURCE", "TARGET_SNAPSHOT"),
                 "rm": ("SOURCE",), "export": ("SOURCE",)}.get(action, ())
        shown |= {name: image.findtext(name) for name in names}
    note = "XML: " + ", ".join(f"{name}={_short(str(value))}" for name, value in shown.items()
                               if value not in (None, ""))
    return Case("ds", action, argv, stdin, note, fields)


@st.composite
def ds_case(draw, action: str, tmp: str):
    if action == "monitor":
        id_text = draw(pick(["100", "1"], HOSTILE_IDS))
    elif action == "stat":
        id_text = draw(pick(["0", "17"], HOSTILE_IDS))
    elif action in ("cp", "mkfs", "clone"):              # a new image
        id_text = draw(pick(["42"], HOSTILE_IDS + ["5", "12"]))
    else:                                                  # an existing image
        id_text = draw(pick(["5", "5", "12"], HOSTILE_IDS + ["42"]))
    ds_id = draw(weighted(((20, st.just(100)), (1, choice([1, 0, 101, 102])))))
    values = dict(
        ds_id=ds_id,
        bridge=draw(pick(["node1 node2", "node2", None],
                         ["-oProxyCommand=x", "node1,evil.example", "node1 -oProxyCommand=x",
                          "n\u00f6de", "node3"])),
        vg=draw(pick(["vg_one", None], ["vg_other", "", "../vg_one", "vg_one -x"])),
        safe=draw(choice([None, f"{M} {tmp}", f"{M} {tmp}", "/"])),
        base_path=draw(pick([f"{M}//datastores/{ds_id}", f"{M}/datastores/{ds_id}"],
                            [f"{M}/datastores/0/555", M, "/", "/tmp", f"{M}/../../etc", "",
                             f"{M}/datastores/0/7/disk.0", "relative"])))
    if action != "monitor":
        values.update(
            path=draw(ds_paths(tmp, action)) if action in ("cp", "stat", "clone") else "",
            source=draw(image_sources(id_text)) if action in (
                "rm", "snap_delete", "snap_revert", "snap_flatten", "export") else "",
            fmt=draw(pick(["raw", "qcow2", "save_as"], ["", "raw;id", "-f"])),
            fs=draw(pick(["", "ext4", "xfs"], ["ext4;id", "../../bin/sh", "-F", "ext4 -O x"])),
            size=draw(SIZES),
            target=draw(pick(["1", "0", "-1"], ["01", "9" * 5000, "", "\u0663", "-2"])))
    form = draw(ways(stdin=16, argv=3, bad=1))
    bad = draw(choice([[], [id_text, id_text, id_text], ["PAYLOAD"]])) if form == "bad" else None
    case = ds_input(action, id_text, form=form, bad_argv=bad, **values)
    if bad == ["PAYLOAD"]:                               # the base64 XML alone, no id
        case.argv = [base64.b64encode(b"<DS_DRIVER_ACTION_DATA/>").decode()]
    return case


# -- 3.x image actions ---------------------------------------------------------------------

@st.composite
def image3_case(draw, action: str, tmp: str):
    i_text = draw(pick(["42"] if action in ("cp", "mkfs", "mv") else ["5"],
                       HOSTILE_IDS + ["5", "42"]))
    again = draw(ways(none=3, same=3, other=1))
    again = [] if again == "none" else [i_text] if again == "same" else \
        [draw(pick(["42", ""], HOSTILE_IDS))]
    if action == "cp":
        path = draw(pick([f"{M}/images/abcd", f"{M}/isos/x.isox", f"{tmp}/upload.raw",
                          "vol://5", "vol://9", "lvm://7/0"],
                         ["vol://6", "vol://11", "lvm://555/0", "/etc/shadow",
                          f"{M}/555/images/disk.0", f"{M}/../../etc/shadow",
                          "vg_one/lv-one-555-0", "vg_one/lv-oneimg-5", "", "-oProxyCommand=x",
                          f"{M}/images/7", f"{M}/images/.x", "file:///etc/passwd"]))
        argv = [path, i_text] + again
    elif action == "mkfs":
        argv = [draw(pick(["ext4", "raw", "xfs"], ["", "-", "ext4;id", "../../bin/sh"])),
                draw(SIZES), i_text] + again
    elif action == "mv":                   # SRC: a VM disk path (3.x) the image is saved from
        w = draw(pick(["7", "70"], ["8", "555"], fuzz_text=False))
        path = draw(pick([f"{M}/{w}/images/disk.0", f"{M}/{w}/images/disk.2"],
                         [f"{M}/datastores/0/{w}/disk.0", "/etc/passwd",
                          "/dev/vg_one/lv-one-555-0", "relative", "",
                          f"{M}/{w}/images/disk.0/../../../555/images/disk.0"]))
        dst = draw(pick(["-", "vg_one/lv-oneimg-12"],
                        ["vg_one/lv-one-555-0", "vg_one/lv-oneimg-6", "", "vol://6"]))
        argv = [path, dst, i_text] + again
    elif action == "rm":
        argv = [draw(image_sources(i_text)), i_text] + again
    else:
        raise AssertionError(action)
    return Case("image3", action, mutate_arity(draw, argv))


# =============================================================================
# Known cases: every input the catalogue (FUZZ_SURVEY) found breaking THE RULE,
# on the code before issue 8's fix (009c1b3) or after it, pinned so they run
# first in every run whatever the seed explores (hypothesis.example).
# =============================================================================

def known_cases(tmp: str) -> dict[str, list[Case]]:
    ctx, key = f"{tmp}/vms/7/context.sh", f"{tmp}/key.pub"
    big = "9" * 5000

    def tm(action, *argv, stdin=None, note=""):
        return Case("tm", action, list(argv), stdin, note)

    def tm3(action, *argv):
        return Case("tm3", action, list(argv))

    def im3(action, *argv):
        return Case("image3", action, list(argv))

    cases = [
        tm("delete", "node1:/var/lib/one/victim", "7110", "0"),      # issue 8's example
        tm("delete", f"{FRONTEND}:/etc", "12", "100"),
        tm("delete", "node1:/dev/vg_one/lv-one-555-0", "0", "1"),
        tm("delete", "node1:/var/lib/one/datastores/1/007/disk.0", "007", "1"),
        tm("context", ctx, "node1:/var/lib/one/datastores/0/555/disk.0", "7", "0"),
        tm("clone", "fe:/etc/shadow", "node1:/var/lib/one/datastores/1/7/disk.0", "7", "1"),
        tm("clone", "fe:/var/lib/one/datastores/1/7", "node1:/var/lib/one/datastores/1/12/disk.0",
           "12", "1"),
        tm("clone", "lvm://555/0", "node1:/var/lib/one/datastores/1/7/disk.0", "7", "1"),
        tm("ln", "fe:vg_one/lv-one-555-0", "node2:/var/lib/one/datastores/1/0/disk.0", "0", "1"),
        tm("ln", "fe:/var/lib/one/555/images/disk.0",
           "node1:/var/lib/one/datastores/100/7/disk.1", "7", "100"),
        tm("mkimage", "1024", "raw", "node1:/var/lib/one/datastores/0/555/disk.0", "7", "0"),
        tm("mkswap", "1", "node2:/var/lib/one/12/images/disk.0", "12", "0"),
        tm("mkswap", "2048", "file:///etc/passwd", big, "0"),
        tm("mv", "node1:/var/lib/one/datastores/1/70/disk.0", "node1:/var/lib/one", "70", "1"),
        tm("mv", f"{FRONTEND}:/var/lib/one/datastores/101/7",
           "node2:/var/lib/one/datastores/0/555", "7", "101"),
        tm("mv", "file:///etc/passwd", "node2:/var/lib/one/datastores/0/70", "70", "0"),
        tm("mvds", "node1:/var/lib/one/datastores/1/70/disk.0", "vg_one/lv-one-555-0", "70", "1"),
        tm("mvds", "node1:/var/lib/one/datastores/0/555/disk.2", "vg_one/lv-oneimg-12", "7", "1"),
        tm("cpds", "node1:/var/lib/one/datastores/1/7/disk.0", "vg_one/lv-one-555-0", "-1",
           "7", "1"),
        tm("premigrate", "node1", FRONTEND, f"{M}/datastores/0/7", "7", "0",
           stdin=vm_b64(7), note="stdin: VM XML of own"),
        tm("premigrate", "node1", "node3", f"{M}/datastores/0/7", "7", "0",
           stdin=vm_b64(555), note="stdin: VM XML of 555"),
        tm("postmigrate", "node1", "node2", "/", "70", "0", "gfs2clvm",
           stdin=vm_b64(7), note="stdin: VM XML of 7"),
        tm("snap_create", "node2:/", "3", "0", big),
        tm3("delete", "node2:/tmp/12/images"),
        tm3("delete", f"node1:/var/lib/one/{big}/images"),
        tm3("clone", "vol://11", "node1:/var/lib/one/7/images/disk.2"),
        tm3("ln", "fe:/etc/shadow", "node2:/var/lib/one/70/images/disk.1"),
        tm3("context", key, "node1:/var/lib/onex/7/images/disk.2"),
        tm3("mkimage", "1", "ext4", "node1:/7/images/disk.0"),
        tm3("mv", "node1:/var/lib/one/555/images", f"{FRONTEND}:/var/lib/one/0"),
        ds_input("rm", "5", source="vg_one/lv-oneimg-6"),
        ds_input("rm", "5", source=f"{M}/datastores/0/5.isox"),
        ds_input("clone", "42", path="vg_one/lv-one-555-0"),
        ds_input("clone", big, path="vg_one/lv-oneimg-5"),
        ds_input("export", "5", source="vg_one/lv-oneimg-5", base_path=f"{M}/datastores/0/555"),
        ds_input("export", "5", source="vg_one/lv-oneimg-6"),
        ds_input("snap_revert", "5", source="vg_one/lv-oneimg-6", target="1"),
        ds_input("cp", "42", path=f"{M}/datastores/1/7"),
        ds_input("cp", "42", path="/etc/x.isox", safe="/"),
        ds_input("stat", "0", path=f"{M}/datastores/1/7"),
        ds_input("stat", "0", path="vg_one/lv-one-7-0"),
        im3("rm", "vg_one/lv-oneimg-6", "5"),
        im3("rm", f"{M}/datastores/100/5.isox", "5"),
        im3("mv", f"{M}/8/images/disk.2", "-", "42"),
        im3("mv", "/dev/vg_one/lv-one-555-0", "-", "42"),
        im3("mv", "/etc/passwd", "-", "42"),
        im3("mkfs", "xfs", "1024", "007"),
        im3("mkfs", "raw", big, "42"),
        im3("cp", f"{M}/555/images/disk.0", "42"),
    ]
    known: dict[str, list[Case]] = {}
    for case in cases:
        known.setdefault(f"{case.family} {case.action}", []).append(case)
    return known


# =============================================================================
# The tests
# =============================================================================

TM_ACTIONS = list(TM_SPEC)
TM3_ACTIONS = list(TM3_SPEC)
DS_ACTIONS = ["cp", "mkfs", "rm", "stat", "clone", "monitor", "snap_delete", "snap_revert",
              "snap_flatten", "export"]
IMAGE3_ACTIONS = ["cp", "mkfs", "mv", "rm"]
EXAMPLES = {"tm": 300, "tm3": 250, "ds": 250, "image3": 250}   # 10,350 + the known cases
EXPECTED_TESTS |= ({f"tm {a}" for a in TM_ACTIONS} | {f"tm3 {a}" for a in TM3_ACTIONS}
                   | {f"ds {a}" for a in DS_ACTIONS} | {f"image3 {a}" for a in IMAGE3_ACTIONS})


def test_the_recording_worker_answers_like_a_worker(world):
    """The stand-in, seen through the driver's real Cluster and LvmClient: reports
    parse, changes show in the next report, a failing script step maps to the
    typed error and stops the script, GFS2 links are shared by all hosts."""
    from one_gfs2clvm.cluster import Cluster
    from one_gfs2clvm.errors import HelperRefused, NotFound
    from one_gfs2clvm.lvm import raise_for_result
    world.reset()
    cluster = Cluster(world.config)
    lvm = cluster.lvm("node2")
    assert lvm.lv("vg_one", "lv-one-7-0").active_exclusively is False     # active on node1
    assert cluster.lvm("node1").lv("vg_one", "lv-one-7-0").active_exclusively is True
    lvm.create("vg_one", "lv-one-9-0", 4 * MiB, ["one-incomplete"])
    assert lvm.lv("vg_one", "lv-one-9-0").tags == ("one-incomplete",)
    assert lvm.vgs("vg_one").lv_count == len([k for k in world.worker.vg.lvs])
    with pytest.raises(NotFound):
        cluster.run_steps("node2", [cluster.helper("remove", "vg_one", "lv-one-9-1"),
                                    ["touch", "/never"]])
    assert world.worker.commands()[-1][-1] == "lv-one-9-1"              # stopped there
    refused = world.worker.answer("node1", (world.config.sudo, "-n", world.config.node_helper,
                                            "lvs", "vg_other"))     # not a configured VG
    assert refused.exit_status == 64
    with pytest.raises(HelperRefused):
        raise_for_result("node1", refused, "VG vg_other")
    cluster.run_steps("node1", [["ln", "-sfn", "/dev/vg_one/lv-one-9-0", f"{M}/x/disk.0"]])
    assert cluster.remote("node2").run(["readlink", f"{M}/x/disk.0"]).stdout.strip() == \
        "/dev/vg_one/lv-one-9-0"
    found = cluster.remote("node2").run(["find", f"{M}/x", "-maxdepth", "1", "-name",
                                         "disk.*", "-type", "l", "-printf", "%f %l\\n"])
    assert found.stdout == "disk.0 /dev/vg_one/lv-one-9-0\n"
    world.worker.down.add("node2")
    with pytest.raises(DriverError):                                    # ConnectError
        cluster.remote("node2").transport()
    assert "node2" in world.worker.contacted
    world.reset()
    assert ("vg_one", "lv-one-9-0") not in world.worker.vg.lvs and not world.worker.calls


def test_the_fake_oned_answers_documents_or_no_exists(world):
    from one_gfs2clvm.opennebula.api import OpenNebulaError
    assert world.api.vm(7).uid == OWNER and world.api.vm(555).uid == OTHER
    assert world.api.vm(70).id == 70                                     # vm_default
    with pytest.raises(OpenNebulaError) as info:
        world.api.image(999)
    assert info.value.not_found


def test_the_action_lists_are_complete():
    """Every action the modules register is fuzzed here."""
    from one_gfs2clvm.opennebula import datastore, image3, tm, tm3
    assert set(tm.ACTIONS) == set(TM_ACTIONS)
    assert set(tm3.COMMANDS) == set(TM3_ACTIONS)
    assert set(datastore.ACTIONS) == set(DS_ACTIONS)
    assert set(image3.COMMANDS) == set(IMAGE3_ACTIONS)


@pytest.mark.parametrize("action", TM_ACTIONS)
def test_tm_action(world, action):
    fuzz(world, f"tm {action}", tm_case(action, world.tmp), EXAMPLES["tm"])


@pytest.mark.parametrize("action", TM3_ACTIONS)
def test_tm3_action(world, action):
    fuzz(world, f"tm3 {action}", tm3_case(action, world.tmp), EXAMPLES["tm3"])


@pytest.mark.parametrize("action", DS_ACTIONS)
def test_datastore_action(world, action):
    fuzz(world, f"ds {action}", ds_case(action, world.tmp), EXAMPLES["ds"])


@pytest.mark.parametrize("action", IMAGE3_ACTIONS)
def test_image3_action(world, action):
    fuzz(world, f"image3 {action}", image3_case(action, world.tmp), EXAMPLES["image3"])


def summary() -> str:
    cases = sum(s["cases"] for s in STATS.values())
    seconds = sum(s["seconds"] for s in STATS.values())
    done = sum(1 for s in STATS.values() if s["done"])
    return (f"fuzz: {cases} generated cases in {seconds:.1f} s across {len(STATS)} tests "
            f"({done} ran to the end)")


def catalogue() -> str:
    lines = [f"{len(CATALOGUE)} distinct failure kinds (action, kind) -> shortest input:"]
    for (action, kind), (_, case, text) in sorted(CATALOGUE.items()):
        lines.append(f"- [{action}] {kind}\n    {case!r}")
    return "\n".join(lines)


def test_zz_generated_case_count():
    """The run totals >= 10,000 generated cases (when every fuzz test ran to its end);
    in survey mode, also: no failure kind was recorded (FUZZ_CATALOGUE=path: the
    catalogue, with each kind's full report, is also written there)."""
    print("\n" + summary())
    if SURVEY and os.environ.get("FUZZ_CATALOGUE"):
        with open(os.environ["FUZZ_CATALOGUE"], "w", encoding="utf-8") as out:
            out.write(summary() + "\n" + catalogue() + "\n\nexit statuses per test:\n")
            for test_id, stats in sorted(STATS.items()):
                out.write(f"  {test_id}: {dict(sorted(stats['codes'].items()))}\n")
            out.write("\n")
            for (action, kind), (_, case, text) in sorted(CATALOGUE.items()):
                out.write(f"=== [{action}] {kind}\n{text}\n\n")
    if SURVEY and CATALOGUE:
        pytest.fail(catalogue(), pytrace=False)
    ran = set(STATS)
    if ran != EXPECTED_TESTS or not all(s["done"] for s in STATS.values()):
        pytest.skip(f"{summary()}: the count is checked only when all "
                    f"{len(EXPECTED_TESTS)} fuzz tests ran to their end")
    if SCALE >= 1:
        assert sum(s["cases"] for s in STATS.values()) >= 10_000, summary()
