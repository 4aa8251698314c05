"""Strict naming: LV names, host:path arguments, disk paths, image sources.

Every function here either returns a validated value or raises
InvalidArgument with one line naming the bad value.  Matching is exact
(`fullmatch`, ASCII digits only): one object has exactly one spelling, so
`lv-one-01-0` or `lv-one-1-0\\n` can never alias `lv-one-1-0`.

The LV/VG/tag patterns come from nodehelper.py, the policy the workers
enforce, so the front-end never builds a name a worker would refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Union

from .errors import InvalidArgument
from .nodehelper import (LV_IMAGE_RE, LV_IMAGE_SNAP_RE, LV_VM_DISK_RE, LV_VM_SNAP_RE, TAG_RE,
                         USE_TAG_RE, VG_RE)

MAX_ID = 9_999_999_999  # ids are at most 10 digits (nodehelper's _ID)

# Same shape as config.py's host rule: no leading '-' (it would read as an
# ssh option) or '.'; ASCII letters, digits, '-', '.', '_' only.
HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")
_ID_RE = re.compile(r"0|[1-9][0-9]{0,9}")
_DISK_FILE_RE = re.compile(r"disk\.(0|[1-9][0-9]{0,9})")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _check_id(value: object, what: str) -> int:
    # bool is an int subclass; True is not a VM id.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"invalid {what} {value!r}: expected an integer 0..{MAX_ID}")
    return value


def shown(value: object, limit: int = 120) -> str:
    """repr() of a value for an error line, shortened: an argument of thousands of
    characters must not become a line of thousands of characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}...({len(text)} chars)"


def parse_id(text: object, what: str) -> int:
    """A decimal id as OpenNebula writes it: 0..MAX_ID, no sign, no leading zeros
    (bounded before int(): a 5000-digit argument is refused, not converted)."""
    if not isinstance(text, str) or not _ID_RE.fullmatch(text):
        raise InvalidArgument(f"invalid {what} {shown(text)}: expected a decimal id "
                              f"without leading zeros")
    return int(text)


# --- LV / VG names -----------------------------------------------------------

def vm_disk_lv(vm_id: int, disk_id: int) -> str:
    """LV holding disk `disk_id` of VM `vm_id`: lv-one-<vm>-<disk>."""
    return f"lv-one-{_check_id(vm_id, 'VM id')}-{_check_id(disk_id, 'disk id')}"


def image_lv(image_id: int) -> str:
    """LV holding a persistent/base image: lv-oneimg-<id>."""
    return f"lv-oneimg-{_check_id(image_id, 'image id')}"


def vm_snap_lv(vm_id: int, disk_id: int, snap_id: int) -> str:
    """Full-copy snapshot `snap_id` of a VM disk: lv-one-<vm>-<disk>-snap-<snap>."""
    return f"{vm_disk_lv(vm_id, disk_id)}-snap-{_check_id(snap_id, 'snapshot id')}"


def image_snap_lv(image_id: int, snap_id: int) -> str:
    """Full-copy snapshot of a persistent image LV: lv-oneimg-<image>-snap-<snap>."""
    return f"{image_lv(image_id)}-snap-{_check_id(snap_id, 'snapshot id')}"


@dataclass(frozen=True)
class LvName:
    kind: str  # "vm_disk", "image", "vm_snap" or "image_snap"
    vm_id: int | None = None
    disk_id: int | None = None
    image_id: int | None = None
    snap_id: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "vm_disk":
            return vm_disk_lv(self.vm_id, self.disk_id)
        if self.kind == "vm_snap":
            return vm_snap_lv(self.vm_id, self.disk_id, self.snap_id)
        if self.kind == "image_snap":
            return image_snap_lv(self.image_id, self.snap_id)
        return image_lv(self.image_id)

    @property
    def parent(self) -> "LvName | None":
        """The disk or image LV a snapshot LV belongs to (None for those themselves)."""
        if self.kind == "vm_snap":
            return LvName("vm_disk", vm_id=self.vm_id, disk_id=self.disk_id)
        if self.kind == "image_snap":
            return LvName("image", image_id=self.image_id)
        return None

    def snapshot(self, snap_id: int) -> str:
        """Name of snapshot `snap_id` of this disk or image LV."""
        if self.kind == "vm_disk":
            return vm_snap_lv(self.vm_id, self.disk_id, snap_id)
        if self.kind == "image":
            return image_snap_lv(self.image_id, snap_id)
        raise InvalidArgument(f"{self.name} is a snapshot itself")


def parse_lv_name(name: object) -> LvName:
    if isinstance(name, str):
        match = LV_VM_DISK_RE.fullmatch(name)
        if match:
            return LvName("vm_disk", vm_id=int(match[1]), disk_id=int(match[2]))
        match = LV_IMAGE_RE.fullmatch(name)
        if match:
            return LvName("image", image_id=int(match[1]))
        match = LV_VM_SNAP_RE.fullmatch(name)
        if match:
            return LvName("vm_snap", vm_id=int(match[1]), disk_id=int(match[2]),
                          snap_id=int(match[3]))
        match = LV_IMAGE_SNAP_RE.fullmatch(name)
        if match:
            return LvName("image_snap", image_id=int(match[1]), snap_id=int(match[2]))
    raise InvalidArgument(f"invalid LV name {name!r}: expected lv-one-<vm>-<disk> "
                          f"or lv-oneimg-<image> (or their -snap-<id> snapshots)")


@dataclass(frozen=True)
class Use:
    """One VM disk using an LV on a host, recorded as an LV tag (see USE_TAG_RE)."""
    vm_id: int
    disk_id: int
    host: str

    @property
    def tag(self) -> str:
        return check_tag(f"one-use={_check_id(self.vm_id, 'VM id')}:"
                         f"{_check_id(self.disk_id, 'disk id')}:{check_host(self.host)}")


def parse_use_tag(tag: str) -> Use | None:
    match = USE_TAG_RE.fullmatch(tag)
    return Use(int(match[1]), int(match[2]), match[3]) if match else None


def check_lv(name: object) -> str:
    """Return `name` if it is one of our LV names, else InvalidArgument."""
    parse_lv_name(name)
    return name  # type: ignore[return-value]


def check_vg(name: object) -> str:
    # LVM itself refuses "." and ".."; VG_RE alone would let /dev/../x through.
    if not isinstance(name, str) or not VG_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidArgument(f"invalid VG name {name!r}")
    return name


def check_tag(tag: object) -> str:
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise InvalidArgument(f"invalid LV tag {tag!r}: 1-128 of A-Z a-z 0-9 _ + . : = -")
    return tag


def lv_device_path(vg: str, lv: str) -> str:
    return f"/dev/{check_vg(vg)}/{check_lv(lv)}"


# --- host:path and disk paths -------------------------------------------------

def check_host(host: object) -> str:
    if not isinstance(host, str) or not HOST_RE.fullmatch(host):
        raise InvalidArgument(f"invalid host name {host!r}")
    return host


def normalize_abspath(path: object, what: str = "path") -> str:
    """Absolute path with '//' and '.' collapsed; '..' and control chars refused.

    OpenNebula hands out paths such as /var/lib/one//datastores/0/7/disk.0,
    so doubled slashes are normal; '..' never is, and we refuse rather than
    resolve it.
    """
    if not isinstance(path, str) or not path.startswith("/") or _CONTROL_RE.search(path):
        raise InvalidArgument(f"invalid {what} {shown(path)}: expected an absolute path")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"invalid {what} {shown(path)}: '..' is not allowed")
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class HostPath:
    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}:{self.path}"


def parse_host_path(text: object) -> HostPath:
    """Split OpenNebula's `host:/path` at the first colon and validate both halves."""
    if not isinstance(text, str) or ":" not in text:
        raise InvalidArgument(f"invalid host:path argument {shown(text)}")
    host, _, path = text.partition(":")
    if not HOST_RE.fullmatch(host):
        raise InvalidArgument(f"invalid host {shown(host)} in host:path argument {shown(text)}")
    return HostPath(host, normalize_abspath(path, f"path in {shown(text)}"))


class DiskPath(NamedTuple):
    system_ds_id: int
    vm_id: int
    disk_id: int


def disk_id_from_path(path: object) -> int:
    """…/disk.<N> -> N (exactly; disk.03 and disk.3.snap are refused)."""
    if not isinstance(path, str) or _CONTROL_RE.search(path):
        raise InvalidArgument(f"invalid disk path {path!r}")
    match = _DISK_FILE_RE.fullmatch(path.rpartition("/")[2])
    if not match:
        raise InvalidArgument(f"invalid disk path {path!r}: expected .../disk.<N>")
    return int(match[1])


def parse_disk_path(path: object) -> DiskPath:
    """<anything>/<system ds id>/<vm id>/disk.<N> -> DiskPath."""
    disk_id = disk_id_from_path(path)  # first: refuses a trailing '/'
    parts = normalize_abspath(path, "disk path").split("/")
    if len(parts) < 4:
        raise InvalidArgument(f"invalid disk path {path!r}: expected "
                              f".../<system ds>/<vm id>/disk.<N>")
    return DiskPath(parse_id(parts[-3], f"system datastore id in {path!r}"),
                    parse_id(parts[-2], f"VM id in {path!r}"), disk_id)


# --- image SOURCE values --------------------------------------------------------

@dataclass(frozen=True)
class LvmSource:
    """lvm://<VMID>/<DISKID>: an existing VM disk LV."""
    vm_id: int
    disk_id: int


@dataclass(frozen=True)
class VolSource:
    """vol://<IMAGEID>: an image LV by image id."""
    image_id: int


@dataclass(frozen=True)
class IsoxSource:
    path: str


@dataclass(frozen=True)
class LvSource:
    """<vg>/<lv>: the SOURCE our image datastore records for an image LV."""
    vg: str
    lv: str


@dataclass(frozen=True)
class FileSource:
    path: str


@dataclass(frozen=True)
class UrlSource:
    url: str


Source = Union[LvmSource, VolSource, IsoxSource, LvSource, FileSource, UrlSource]

_LVM_SOURCE_RE = re.compile(r"lvm://(0|[1-9][0-9]{0,9})/(0|[1-9][0-9]{0,9})")
_VOL_SOURCE_RE = re.compile(r"vol://(0|[1-9][0-9]{0,9})")
_URL_RE = re.compile(r"https?://[^\s/?#]+([/?#]\S*)?", re.I)
_EXPECTED = ("expected lvm://<VMID>/<DISKID>, vol://<IMAGEID>, <vg>/<lv>, "
             "an absolute path or an http(s) URL")


def parse_source(text: object) -> Source:
    def bad(why: str = _EXPECTED) -> InvalidArgument:
        return InvalidArgument(f"invalid image source {shown(text)}: {why}")

    if not isinstance(text, str) or not text or _CONTROL_RE.search(text):
        raise bad()
    if text.startswith("lvm://"):
        match = _LVM_SOURCE_RE.fullmatch(text)
        if not match:
            raise bad("expected lvm://<VMID>/<DISKID>")
        return LvmSource(int(match[1]), int(match[2]))
    if text.startswith("vol://"):
        match = _VOL_SOURCE_RE.fullmatch(text)
        if not match:
            raise bad("expected vol://<IMAGEID>")
        return VolSource(int(match[1]))
    if text.partition("://")[0].lower() in ("http", "https"):
        if not _URL_RE.fullmatch(text):
            raise bad("malformed http(s) URL")
        return UrlSource(text)
    if text.startswith("/"):
        if text != text.strip():
            raise bad("leading or trailing whitespace")
        path = normalize_abspath(text, "image source")
        if path == "/":
            raise bad("the root directory is not an image")
        return IsoxSource(path) if path.endswith(".isox") else FileSource(path)
    vg, sep, lv = text.partition("/")
    if sep and VG_RE.fullmatch(vg) and vg not in (".", "..") and (
            LV_VM_DISK_RE.fullmatch(lv) or LV_IMAGE_RE.fullmatch(lv)):
        return LvSource(vg, lv)
    raise bad()
