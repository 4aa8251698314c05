"""Typed, read-only views of the XML documents OpenNebula hands the driver.

Four documents matter: VM, IMAGE, DATASTORE and USER, as returned by
`one.<object>.info` (see api.py) or embedded in the base64 payloads the TM
and datastore drivers get on stdin (DS_DRIVER_ACTION_DATA, premigrate's VM
XML).  This module only wraps lxml: XPath look-ups and type conversion.  It
knows nothing about LVM or about what the driver does with the values.

Conventions:

* oned sends these documents WITHOUT a namespace (the XSDs' targetNamespace
  is for validation only).  A namespaced document is accepted too: the
  namespace is stripped on parsing.
* Text fields return '' when the element is absent or empty; optional
  integers return None; mandatory elements that are missing (or an integer
  field that is not an integer) raise InvalidArgument with one line.
* Malformed XML or base64 raises InvalidArgument.

Element names follow OpenNebula 7.x (`share/doc/xsd/*.xsd`); the state
numbers below come from `include/VirtualMachine.h` of OpenNebula/one.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Iterable

from lxml import etree

from ..errors import InvalidArgument

# --- state numbers -----------------------------------------------------------

# VirtualMachine::VmState (7 = FAILED was removed long ago and is not used).
VM_STATES: dict[str, int] = {
    "INIT": 0, "PENDING": 1, "HOLD": 2, "ACTIVE": 3, "STOPPED": 4,
    "SUSPENDED": 5, "DONE": 6, "POWEROFF": 8, "UNDEPLOYED": 9,
    "CLONING": 10, "CLONING_FAILURE": 11,
}
INIT = 0
PENDING = 1
HOLD = 2
ACTIVE = 3
STOPPED = 4
SUSPENDED = 5
DONE = 6
POWEROFF = 8
UNDEPLOYED = 9
CLONING = 10
CLONING_FAILURE = 11

# VirtualMachine::LcmState.  Gaps are numbers OpenNebula retired and never
# reuses: 13 CANCEL, 14 FAILURE, 58 DISK_SNAPSHOT_REVERT.  55
# (DISK_SNAPSHOT_REVERT_SUSPENDED) is commented out in current oned but was
# emitted by older releases, so it stays here for decoding.
LCM_STATES: dict[str, int] = {
    "LCM_INIT": 0, "PROLOG": 1, "BOOT": 2, "RUNNING": 3, "MIGRATE": 4,
    "SAVE_STOP": 5, "SAVE_SUSPEND": 6, "SAVE_MIGRATE": 7, "PROLOG_MIGRATE": 8,
    "PROLOG_RESUME": 9, "EPILOG_STOP": 10, "EPILOG": 11, "SHUTDOWN": 12,
    "CLEANUP_RESUBMIT": 15, "UNKNOWN": 16, "HOTPLUG": 17, "SHUTDOWN_POWEROFF": 18,
    "BOOT_UNKNOWN": 19, "BOOT_POWEROFF": 20, "BOOT_SUSPENDED": 21, "BOOT_STOPPED": 22,
    "CLEANUP_DELETE": 23, "HOTPLUG_SNAPSHOT": 24, "HOTPLUG_NIC": 25,
    "HOTPLUG_SAVEAS": 26, "HOTPLUG_SAVEAS_POWEROFF": 27, "HOTPLUG_SAVEAS_SUSPENDED": 28,
    "SHUTDOWN_UNDEPLOY": 29, "EPILOG_UNDEPLOY": 30, "PROLOG_UNDEPLOY": 31,
    "BOOT_UNDEPLOY": 32, "HOTPLUG_PROLOG_POWEROFF": 33, "HOTPLUG_EPILOG_POWEROFF": 34,
    "BOOT_MIGRATE": 35, "BOOT_FAILURE": 36, "BOOT_MIGRATE_FAILURE": 37,
    "PROLOG_MIGRATE_FAILURE": 38, "PROLOG_FAILURE": 39, "EPILOG_FAILURE": 40,
    "EPILOG_STOP_FAILURE": 41, "EPILOG_UNDEPLOY_FAILURE": 42,
    "PROLOG_MIGRATE_POWEROFF": 43, "PROLOG_MIGRATE_POWEROFF_FAILURE": 44,
    "PROLOG_MIGRATE_SUSPEND": 45, "PROLOG_MIGRATE_SUSPEND_FAILURE": 46,
    "BOOT_UNDEPLOY_FAILURE": 47, "BOOT_STOPPED_FAILURE": 48,
    "PROLOG_RESUME_FAILURE": 49, "PROLOG_UNDEPLOY_FAILURE": 50,
    "DISK_SNAPSHOT_POWEROFF": 51, "DISK_SNAPSHOT_REVERT_POWEROFF": 52,
    "DISK_SNAPSHOT_DELETE_POWEROFF": 53, "DISK_SNAPSHOT_SUSPENDED": 54,
    "DISK_SNAPSHOT_REVERT_SUSPENDED": 55, "DISK_SNAPSHOT_DELETE_SUSPENDED": 56,
    "DISK_SNAPSHOT": 57, "DISK_SNAPSHOT_DELETE": 59,
    "PROLOG_MIGRATE_UNKNOWN": 60, "PROLOG_MIGRATE_UNKNOWN_FAILURE": 61,
    "DISK_RESIZE": 62, "DISK_RESIZE_POWEROFF": 63, "DISK_RESIZE_UNDEPLOYED": 64,
    "HOTPLUG_NIC_POWEROFF": 65, "HOTPLUG_RESIZE": 66,
    "HOTPLUG_SAVEAS_UNDEPLOYED": 67, "HOTPLUG_SAVEAS_STOPPED": 68,
    "BACKUP": 69, "BACKUP_POWEROFF": 70, "RESTORE": 71,
}
LCM_STATE_NAMES: dict[int, str] = {number: name for name, number in LCM_STATES.items()}
VM_STATE_NAMES: dict[int, str] = {number: name for name, number in VM_STATES.items()}

# States in which no hypervisor has the VM's disks open: POWEROFF, SUSPENDED,
# STOPPED, UNDEPLOYED.  (Operations on such a VM, e.g. a disk snapshot while
# powered off, move it back to ACTIVE with a *_POWEROFF LCM state.)
QUIESCENT_STATES = frozenset({POWEROFF, SUSPENDED, STOPPED, UNDEPLOYED})

# Image::ImageType / Datastore::DatastoreType
IMAGE_TYPES: dict[str, int] = {"OS": 0, "CDROM": 1, "DATABLOCK": 2, "KERNEL": 3,
                               "RAMDISK": 4, "CONTEXT": 5}
DATASTORE_TYPES: dict[str, int] = {"IMAGE": 0, "SYSTEM": 1, "FILE": 2, "BACKUP": 3}
IMAGE_DS = 0
SYSTEM_DS = 1
FILE_DS = 2

ONEADMIN_UID = 0
ONEADMIN_GID = 0


def vm_is_quiescent(vm: "Vm") -> bool:
    """True when no hypervisor is writing the VM's disks.

    STATE must be POWEROFF, SUSPENDED, STOPPED or UNDEPLOYED, and (defensively)
    LCM_STATE must be LCM_INIT, which oned always pairs with those states: any
    operation in flight on such a VM moves it to ACTIVE first.  Used to allow
    `lvm://VM/DISK` image sources.
    """
    return vm.state in QUIESCENT_STATES and vm.lcm_state == LCM_STATES["LCM_INIT"]


# --- parsing -------------------------------------------------------------------

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_comments=True, remove_pis=True)
_INT_RE = re.compile(r"-?[0-9]{1,20}")
_SPLIT_RE = re.compile(r"[\s,]+")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def parse_xml(data: str | bytes, what: str = "XML document") -> etree._Element:
    """Parse `data` into an element tree with namespaces stripped."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, bytes):
        raise InvalidArgument(f"{what}: expected XML text, got {type(data).__name__}")
    if not data.strip():
        raise InvalidArgument(f"{what}: empty document")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise InvalidArgument(f"{what}: malformed XML: {_one_line(exc)}") from None
    if root is None:
        raise InvalidArgument(f"{what}: empty document")
    _strip_namespaces(root)
    return root


def _strip_namespaces(root: etree._Element) -> None:
    if not any(isinstance(el.tag, str) and el.tag.startswith("{") for el in root.iter()):
        return
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = etree.QName(el).localname
    etree.cleanup_namespaces(root)


def decode_base64(data: str | bytes, what: str = "base64 payload") -> bytes:
    """Strict base64 (whitespace and line breaks allowed, nothing else)."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{what}: not base64 (non-ASCII characters)") from None
    if not isinstance(data, bytes):
        raise InvalidArgument(f"{what}: expected base64 text, got {type(data).__name__}")
    compact = b"".join(data.split())
    if not compact:
        raise InvalidArgument(f"{what}: empty")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"{what}: not valid base64 ({_one_line(exc)})") from None


# --- element wrapper base ---------------------------------------------------------

class _Node:
    """A wrapped element; `label` names it in error messages (e.g. 'VM 7')."""

    KIND = "XML"

    def __init__(self, element: etree._Element, label: str | None = None):
        if not isinstance(element, etree._Element):
            raise TypeError(f"expected an lxml element, got {type(element).__name__}")
        self.element = element
        self._label = label

    @property
    def label(self) -> str:
        if self._label is None:
            ident = self.element.findtext("ID")
            ident = ident.strip() if ident is not None else ""
            self._label = f"{self.KIND} {ident}" if _INT_RE.fullmatch(ident) else self.KIND
        return self._label

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    # generic access
    def xpath(self, expr: str, **variables):
        """Raw lxml XPath relative to this element."""
        try:
            return self.element.xpath(expr, **variables)
        except etree.XPathError as exc:
            raise InvalidArgument(f"invalid XPath {expr!r}: {_one_line(exc)}") from None

    def text(self, path: str, default: str = "") -> str:
        node = self.element.find(path)
        if node is None or node.text is None:
            return default
        return node.text.strip()

    def has(self, path: str) -> bool:
        return self.element.find(path) is not None

    def required_text(self, path: str) -> str:
        node = self.element.find(path)
        if node is None:
            raise InvalidArgument(f"{self.label} XML has no <{path}> element")
        return (node.text or "").strip()

    def integer(self, path: str) -> int:
        return self._to_int(path, self.required_text(path))

    def optional_integer(self, path: str) -> int | None:
        value = self.text(path)
        return self._to_int(path, value) if value != "" else None

    def flag(self, path: str) -> bool:
        """YES/NO attribute (case-insensitive); absent means NO."""
        return self.text(path).upper() == "YES"

    def integers(self, path: str) -> list[int]:
        return [self._to_int(path, (node.text or "").strip())
                for node in self.element.findall(path)]

    def _to_int(self, path: str, value: str) -> int:
        if not _INT_RE.fullmatch(value):
            raise InvalidArgument(f"{self.label} XML: <{path}> is not an integer: {value!r}")
        return int(value)

    def template_value(self, name: str) -> str | None:
        """TEMPLATE/<NAME> text, or None when the attribute is absent."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name or ""):
            raise InvalidArgument(f"invalid template attribute name {name!r}")
        node = self.element.find(f"TEMPLATE/{name}")
        if node is None:
            return None
        return (node.text or "").strip()

    def check_required(self, paths: Iterable[str]) -> None:
        for path in paths:
            self.required_text(path)


@dataclass(frozen=True)
class Permissions:
    owner_u: bool = False
    owner_m: bool = False
    owner_a: bool = False
    group_u: bool = False
    group_m: bool = False
    group_a: bool = False
    other_u: bool = False
    other_m: bool = False
    other_a: bool = False

    @classmethod
    def from_octal(cls, text: str) -> "Permissions":
        """'640' -> u+m for owner, u for group (OpenNebula's chmod notation)."""
        if not re.fullmatch(r"[0-7]{3}", text):
            raise InvalidArgument(f"invalid permissions {text!r}: expected 3 octal digits")
        bits = [int(char) for char in text]
        values = []
        for digit in bits:
            values += [bool(digit & 4), bool(digit & 2), bool(digit & 1)]
        return cls(*values)

    def octal(self) -> str:
        def digit(u, m, a):
            return str(4 * u + 2 * m + a)
        return (digit(self.owner_u, self.owner_m, self.owner_a)
                + digit(self.group_u, self.group_m, self.group_a)
                + digit(self.other_u, self.other_m, self.other_a))


_PERM_FIELDS = ("OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M", "GROUP_A",
                "OTHER_U", "OTHER_M", "OTHER_A")


def _permissions(node: _Node) -> Permissions:
    if not node.has("PERMISSIONS"):
        raise InvalidArgument(f"{node.label} XML has no <PERMISSIONS> element")
    values = []
    for field in _PERM_FIELDS:
        value = node.integer(f"PERMISSIONS/{field}")
        if value not in (0, 1):
            raise InvalidArgument(f"{node.label} XML: <PERMISSIONS/{field}> must be 0 or 1, "
                                  f"got {value}")
        values.append(value == 1)
    return Permissions(*values)


class _Owned(_Node):
    """Objects with ID, UID, GID, UNAME, PERMISSIONS."""

    @property
    def id(self) -> int:
        return self.integer("ID")

    @property
    def uid(self) -> int:
        return self.integer("UID")

    @property
    def gid(self) -> int:
        return self.integer("GID")

    @property
    def uname(self) -> str:
        return self.text("UNAME")

    @property
    def gname(self) -> str:
        return self.text("GNAME")

    @property
    def name(self) -> str:
        return self.text("NAME")

    @property
    def permissions(self) -> Permissions:
        return _permissions(self)


# --- VM ---------------------------------------------------------------------------

@dataclass(frozen=True)
class History:
    seq: int
    hostname: str
    ds_id: int
    tm_mad: str
    vm_mad: str
    action: int
    hid: int | None = None
    stime: int | None = None
    etime: int | None = None


class Disk(_Node):
    """One TEMPLATE/DISK of a VM."""

    KIND = "DISK"

    def __init__(self, element: etree._Element, vm: "Vm | None" = None):
        super().__init__(element)
        self.vm = vm

    @property
    def label(self) -> str:
        disk_id = self.text("DISK_ID")
        prefix = f"{self.vm.label} " if self.vm is not None else ""
        return f"{prefix}DISK {disk_id}" if disk_id else f"{prefix}DISK"

    @property
    def disk_id(self) -> int:
        return self.integer("DISK_ID")

    @property
    def size_mb(self) -> int | None:
        return self.optional_integer("SIZE")

    @property
    def original_size_mb(self) -> int | None:
        return self.optional_integer("ORIGINAL_SIZE")

    @property
    def fs(self) -> str:
        return self.text("FS")

    @property
    def type(self) -> str:
        """TYPE lower-cased: 'fs', 'swap', 'block', 'cdrom', 'file', ... or ''."""
        return self.text("TYPE").lower()

    @property
    def format(self) -> str:
        return self.text("FORMAT") or self.text("DRIVER")

    @property
    def source(self) -> str:
        return self.text("SOURCE")

    @property
    def image_id(self) -> int | None:
        return self.optional_integer("IMAGE_ID")

    @property
    def datastore_id(self) -> int | None:
        return self.optional_integer("DATASTORE_ID")

    @property
    def tm_mad(self) -> str:
        return self.text("TM_MAD")

    @property
    def tm_mad_system(self) -> str:
        return self.text("TM_MAD_SYSTEM")

    @property
    def persistent(self) -> bool:
        return self.flag("PERSISTENT")

    @property
    def clone(self) -> bool:
        """CLONE=YES/NO; when absent, True unless the disk is persistent."""
        if self.text("CLONE"):
            return self.flag("CLONE")
        return not self.persistent

    @property
    def save(self) -> bool:
        return self.flag("SAVE")

    @property
    def readonly(self) -> bool:
        return self.flag("READONLY")

    @property
    def disk_type(self) -> str:
        return self.text("DISK_TYPE")

    @property
    def target(self) -> str:
        return self.text("TARGET")

    @property
    def is_volatile(self) -> bool:
        return not self.has("IMAGE_ID")

    @property
    def snapshots(self) -> list[int]:
        """Ids of this disk's snapshots ([] when it has none).

        oned lists disk snapshots in VM-level <SNAPSHOTS> elements keyed by
        DISK_ID; a <SNAPSHOTS> inside the DISK itself is accepted too.
        """
        own = self.element.findall("SNAPSHOTS/SNAPSHOT/ID")
        if own:
            return self.integers("SNAPSHOTS/SNAPSHOT/ID")
        if self.vm is None or not self.text("DISK_ID"):
            return []
        disk_id = self.disk_id
        ids: list[int] = []
        for block in self.vm.element.findall("SNAPSHOTS"):
            node = _Node(block, label=f"{self.vm.label} SNAPSHOTS")
            if node.optional_integer("DISK_ID") == disk_id:
                ids += node.integers("SNAPSHOT/ID")
        return ids


class Vm(_Owned):
    KIND = "VM"
    REQUIRED = ("ID", "UID", "GID", "STATE", "LCM_STATE", "PERMISSIONS")

    @property
    def state(self) -> int:
        return self.integer("STATE")

    @property
    def lcm_state(self) -> int:
        return self.integer("LCM_STATE")

    @property
    def state_name(self) -> str:
        state = self.state
        if state == ACTIVE:
            return LCM_STATE_NAMES.get(self.lcm_state, f"LCM_STATE {self.lcm_state}")
        return VM_STATE_NAMES.get(state, f"STATE {state}")

    @property
    def deploy_id(self) -> str:
        return self.text("DEPLOY_ID")

    @property
    def disks(self) -> list[Disk]:
        return [Disk(el, self) for el in self.element.findall("TEMPLATE/DISK")]

    def disk(self, disk_id: int) -> Disk:
        for disk in self.disks:
            if disk.text("DISK_ID") == str(disk_id):
                return disk
        raise InvalidArgument(f"{self.label} has no DISK with DISK_ID {disk_id}")

    @property
    def context_disk_id(self) -> int | None:
        return self.optional_integer("TEMPLATE/CONTEXT/DISK_ID")

    @property
    def tm_mad_system(self) -> str:
        return self.text("TEMPLATE/TM_MAD_SYSTEM")

    @property
    def history(self) -> list[History]:
        """History records sorted by SEQ (one.vm.info sends the last two)."""
        records = []
        for el in self.element.findall("HISTORY_RECORDS/HISTORY"):
            node = _Node(el, label=f"{self.label} HISTORY")
            records.append(History(
                seq=node.integer("SEQ"),
                hostname=node.required_text("HOSTNAME"),
                ds_id=node.integer("DS_ID"),
                tm_mad=node.text("TM_MAD"),
                vm_mad=node.text("VM_MAD"),
                action=node.optional_integer("ACTION") or 0,
                hid=node.optional_integer("HID"),
                stime=node.optional_integer("STIME"),
                etime=node.optional_integer("ETIME"),
            ))
        return sorted(records, key=lambda record: record.seq)

    @property
    def last_history(self) -> History | None:
        history = self.history
        return history[-1] if history else None

    @property
    def previous_history(self) -> History | None:
        history = self.history
        return history[-2] if len(history) >= 2 else None


# --- IMAGE / DATASTORE / USER -----------------------------------------------------------

class Image(_Owned):
    KIND = "IMAGE"
    REQUIRED = ("ID", "UID", "GID", "PERMISSIONS")

    @property
    def type(self) -> int:
        return self.integer("TYPE")

    @property
    def persistent(self) -> bool:
        return self.optional_integer("PERSISTENT") == 1

    @property
    def source(self) -> str:
        return self.text("SOURCE")

    @property
    def path(self) -> str:
        return self.text("PATH")

    @property
    def size_mb(self) -> int | None:
        return self.optional_integer("SIZE")

    @property
    def format(self) -> str:
        return self.text("FORMAT")

    @property
    def fs(self) -> str:
        return self.text("FS")

    @property
    def state(self) -> int:
        return self.integer("STATE")

    @property
    def datastore_id(self) -> int | None:
        return self.optional_integer("DATASTORE_ID")

    @property
    def running_vms(self) -> int:
        return self.optional_integer("RUNNING_VMS") or 0

    @property
    def vm_ids(self) -> list[int]:
        return self.integers("VMS/ID")

    @property
    def target_snapshot(self) -> int | None:
        return self.optional_integer("TARGET_SNAPSHOT")

    @property
    def regtime(self) -> int | None:
        """Registration time: with the id, it tells this image from an earlier
        one of the same id (an OpenNebula database reinstalled)."""
        return self.optional_integer("REGTIME")


class Datastore(_Owned):
    KIND = "DATASTORE"
    REQUIRED = ("ID", "NAME", "TYPE")

    @property
    def type(self) -> int:
        return self.integer("TYPE")

    @property
    def ds_mad(self) -> str:
        return self.text("DS_MAD")

    @property
    def tm_mad(self) -> str:
        return self.text("TM_MAD")

    @property
    def base_path(self) -> str:
        return self.text("BASE_PATH")

    @property
    def bridge_list(self) -> list[str]:
        value = self.template_value("BRIDGE_LIST") or ""
        return [item for item in _SPLIT_RE.split(value) if item]

    @property
    def vg_name(self) -> str | None:
        return self.template_value("VG_NAME") or None

    @property
    def cluster_ids(self) -> list[int]:
        return self.integers("CLUSTERS/ID")


class User(_Node):
    KIND = "USER"
    REQUIRED = ("ID", "GID")

    @property
    def id(self) -> int:
        return self.integer("ID")

    @property
    def gid(self) -> int:
        return self.integer("GID")

    @property
    def name(self) -> str:
        return self.text("NAME")

    @property
    def group_ids(self) -> list[int]:
        """GROUPS/ID (secondary groups), always including the primary GID."""
        ids = self.integers("GROUPS/ID")
        gid = self.gid
        if gid not in ids:
            ids.insert(0, gid)
        return ids


# --- permission rule -------------------------------------------------------------

def may(user: User, owner_uid: int, owner_gid: int, perms: Permissions,
        right: str = "use") -> bool:
    """OpenNebula's USE or MANAGE right from ownership and permission bits alone.

    True for oneadmin (uid 0) and members of the oneadmin group (gid 0), for
    the owner when OWNER_<U|M> is set, for members of the object's group when
    GROUP_<U|M> is set, and for anyone when OTHER_<U|M> is set.

    ACL rules (`oneacl`) are NOT evaluated: a right granted only by an ACL
    rule is refused here, and an ACL cannot revoke what the bits grant.  This
    errs on the side of refusing, which is what a storage driver wants.
    """
    if right not in ("use", "manage"):
        raise ValueError(f"unknown right {right!r}")
    bit = "u" if right == "use" else "m"
    groups = user.group_ids
    if user.id == ONEADMIN_UID or ONEADMIN_GID in groups:
        return True
    if user.id == owner_uid and getattr(perms, f"owner_{bit}"):
        return True
    if owner_gid in groups and getattr(perms, f"group_{bit}"):
        return True
    return getattr(perms, f"other_{bit}")


def may_use(user: User, owner_uid: int, owner_gid: int, perms: Permissions) -> bool:
    """may() for the USE right."""
    return may(user, owner_uid, owner_gid, perms, "use")


def may_use_object(user: User, obj: _Owned, right: str = "use") -> bool:
    """may() with the owner and permissions of a VM or IMAGE document."""
    return may(user, obj.uid, obj.gid, obj.permissions, right)


# --- entry points ------------------------------------------------------------------

def _wrap(cls, data, what: str):
    root = parse_xml(data, what)
    if root.tag != cls.KIND:
        raise InvalidArgument(f"{what}: expected a <{cls.KIND}> document, got <{root.tag}>")
    obj = cls(root)
    obj.check_required(cls.REQUIRED)
    return obj


def parse_vm(data: str | bytes) -> Vm:
    return _wrap(Vm, data, "VM XML")


def parse_image(data: str | bytes) -> Image:
    return _wrap(Image, data, "IMAGE XML")


def parse_datastore(data: str | bytes) -> Datastore:
    return _wrap(Datastore, data, "DATASTORE XML")


def parse_user(data: str | bytes) -> User:
    return _wrap(User, data, "USER XML")


def parse_vm_base64(data: str | bytes) -> Vm:
    """The base64 VM XML premigrate/postmigrate/failmigrate get on stdin."""
    return _wrap(Vm, decode_base64(data, "VM XML (base64)"), "VM XML (base64)")


class DriverAction:
    """DS_DRIVER_ACTION_DATA: <IMAGE>, <DATASTORE> and extra elements.

    The IMAGE and DATASTORE are not checked for completeness: `stat` gets an
    IMAGE with only PATH and SIZE, and the TM monitor gets no IMAGE at all.
    Accessing a missing mandatory element still raises InvalidArgument.
    """

    def __init__(self, root: etree._Element):
        self.root = root
        image = root.find("IMAGE")
        datastore = root.find("DATASTORE")
        self.image: Image | None = Image(image) if image is not None else None
        self.datastore: Datastore | None = (Datastore(datastore)
                                            if datastore is not None else None)

    def extra(self, xpath: str) -> str | None:
        """Text at `xpath` relative to DS_DRIVER_ACTION_DATA (e.g.
        'DATASTORE_LOCATION', 'MONITOR_VM_DISKS'), or None when absent."""
        try:
            found = self.root.xpath(xpath)
        except etree.XPathError as exc:
            raise InvalidArgument(f"invalid XPath {xpath!r}: {_one_line(exc)}") from None
        if isinstance(found, list):
            if not found:
                return None
            found = found[0]
        if isinstance(found, etree._Element):
            return (found.text or "").strip()
        if isinstance(found, bool):
            return "true" if found else "false"
        if isinstance(found, float) and found.is_integer():
            return str(int(found))
        return str(found).strip()

    def __repr__(self) -> str:
        return f"<DriverAction image={self.image!r} datastore={self.datastore!r}>"


def parse_driver_action(data: str | bytes) -> DriverAction:
    """Decode the base64 DS_DRIVER_ACTION_DATA a datastore/TM-monitor action reads."""
    what = "DS_DRIVER_ACTION_DATA"
    root = parse_xml(decode_base64(data, f"{what} (base64)"), what)
    if root.tag != what:
        raise InvalidArgument(f"{what}: expected a <{what}> document, got <{root.tag}>")
    return DriverAction(root)
