"""A stand-in for oned's XML-RPC API, for tests.

oned (OpenNebula's core daemon) cannot run here, so the driver's API client
(one_gfs2clvm/opennebula/api.py) is tested against this server instead.  It
is a real XML-RPC server (stdlib SimpleXMLRPCServer, threaded, on 127.0.0.1,
port chosen at run time, path /RPC2) that implements exactly four calls the
way oned 7.x answers them:

    one.vm.info(session, id, decrypt)        one.image.info(session, id, decrypt)
    one.datastore.info(session, id, decrypt) one.user.info(session, id, decrypt)

* success: `[True, <document XML>, 0]`
* session not `user:password` of a known, enabled user:
  `[False, "[one.vm.info] User couldn't be authenticated, aborting call.", 256, -1, 0]`
* unknown id: `[False, "[one.vm.info] Error getting virtual machine [7].", 1024, 7, 0]`
* a non-oneadmin user without the USE right (owner/group/other USE bits only,
  no ACL rules): `[False, "[one.vm.info] User [5] : Not authorized to perform
  USE VM [7].", 512, 7, 0]`; a user may always read its own USER document.

Error codes are oned's (AUTHENTICATION 0x100, AUTHORIZATION 0x200, NO_EXISTS
0x400); failure arrays carry the object id and oned's replication index,
marshalled as <i8> like oned does.  Nothing else of oned is implemented (no
pools, no state machine, no ACLs, no password hashing).

Documents are built by the *_doc() builders below and VALIDATED against
OpenNebula's XSDs (share/doc/xsd of OpenNebula/one, copied to
../shared/reference/opennebula-xsd) when they are stored and again every time
one is served, so a fixture that builds an invalid document fails loudly.
The XSDs have a targetNamespace while oned's documents have none: validation
runs on a copy of the tree with the namespace added to every element.

XSD directory: $ONE_XSD_DIR, else <repo>/../shared/reference/opennebula-xsd,
else /work/shared/reference/opennebula-xsd.  Not found -> the fixture fails
(it never skips).

The `fake_oned` fixture is function-scoped: every test gets a fresh server
with only the oneadmin user (id 0, group 0).
"""

from __future__ import annotations

import base64
import copy
import os
import socketserver
import threading
import time
import xmlrpc.client
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest
from lxml import etree

NAMESPACE = "http://opennebula.org/XMLSchema"
REPO = Path(__file__).resolve().parent.parent

# oned's RequestAttributes error codes (include/Request.h)
SUCCESS = 0x0000
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800

ONEADMIN_PASSWORD = "fake-oned-secret"

# object kind -> (XML root, name oned uses in NO_EXISTS messages, auth name)
_KINDS = {
    "vm": ("VM", "virtual machine", "VM"),
    "image": ("IMAGE", "image", "IMAGE"),
    "datastore": ("DATASTORE", "datastore", "DATASTORE"),
    "user": ("USER", "user", "USER"),
}


class SchemaError(AssertionError):
    """A document does not validate against OpenNebula's XSD."""


# --- XSD validation ---------------------------------------------------------------

def xsd_candidates() -> list[Path]:
    """Where the XSDs are looked for, in order."""
    candidates = []
    if os.environ.get("ONE_XSD_DIR"):
        candidates.append(Path(os.environ["ONE_XSD_DIR"]))
    return candidates + [REPO.parent / "shared" / "reference" / "opennebula-xsd",
                         Path("/work/shared/reference/opennebula-xsd")]


def xsd_dir() -> Path:
    candidates = xsd_candidates()
    for path in candidates:
        if (path / "vm.xsd").is_file():
            return path
    raise RuntimeError("OpenNebula XSD directory not found (looked in: "
                       + ", ".join(str(path) for path in candidates)
                       + "); set ONE_XSD_DIR to the directory holding vm.xsd")


_SCHEMA_FILES = {"VM": "vm.xsd", "IMAGE": "image.xsd", "DATASTORE": "datastore.xsd",
                 "USER": "user.xsd"}
_schemas: dict[tuple[str, str], etree.XMLSchema] = {}
_schema_lock = threading.Lock()


def _schema(root_tag: str) -> etree.XMLSchema:
    if root_tag not in _SCHEMA_FILES:
        raise SchemaError(f"no XSD known for <{root_tag}>")
    directory = xsd_dir()
    key = (str(directory), root_tag)
    with _schema_lock:
        if key not in _schemas:
            _schemas[key] = etree.XMLSchema(etree.parse(str(directory / _SCHEMA_FILES[root_tag])))
        return _schemas[key]


def _as_element(doc) -> etree._Element:
    if isinstance(doc, etree._Element):
        return doc
    if isinstance(doc, str):
        doc = doc.encode("utf-8")
    return etree.fromstring(doc)


def validate(doc) -> etree._Element:
    """Validate a VM/IMAGE/DATASTORE/USER document (text or element); return it
    as an element.  Raises SchemaError listing the schema violations."""
    root = _as_element(doc)
    tag = etree.QName(root).localname
    schema = _schema(tag)
    namespaced = copy.deepcopy(root)
    for el in namespaced.iter():
        if isinstance(el.tag, str):
            el.tag = f"{{{NAMESPACE}}}{etree.QName(el).localname}"
    if not schema.validate(namespaced):
        problems = "; ".join(f"line {e.line}: {e.message}" for e in schema.error_log)
        raise SchemaError(f"<{tag}> document does not validate against "
                          f"{_SCHEMA_FILES[tag]}: {problems}")
    return root


# --- document builders -----------------------------------------------------------------

def _sub(parent, name, text=None):
    el = etree.SubElement(parent, name)
    if text is not None:
        el.text = _str(text)
    return el


def _str(value) -> str:
    if isinstance(value, bool):
        return "YES" if value else "NO"
    return str(value)


def _permissions(parent, octal: str) -> None:
    if len(octal) != 3 or any(char not in "01234567" for char in octal):
        raise ValueError(f"permissions must be 3 octal digits, got {octal!r}")
    perms = _sub(parent, "PERMISSIONS")
    for who, digit in zip(("OWNER", "GROUP", "OTHER"), octal):
        bits = int(digit)
        _sub(perms, f"{who}_U", int(bool(bits & 4)))
        _sub(perms, f"{who}_M", int(bool(bits & 2)))
        _sub(perms, f"{who}_A", int(bool(bits & 1)))


def _attributes(parent, values: dict) -> None:
    """Template attributes, sorted by name as oned prints them; a dict value
    becomes a vector attribute, None is left out."""
    for key in sorted(values, key=str.upper):
        value = values[key]
        if value is None:
            continue
        if isinstance(value, dict):
            _attributes(_sub(parent, key.upper()), value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                _attributes(_sub(parent, key.upper()), item)
        else:
            _sub(parent, key.upper(), value)


def _ids(parent, name, ids) -> None:
    node = _sub(parent, name)
    for ident in ids:
        _sub(node, "ID", ident)


def _text(root) -> str:
    return etree.tostring(root, encoding="unicode")


_NOW = 1_760_000_000


def disk_attrs(index: int, spec: dict) -> dict:
    """oned-like DISK attributes from a short spec.

    With `image_id` the disk is an image disk (defaults: non-persistent clone
    of vg_one/lv-oneimg-<id> in image datastore 100, TM gfs2clvm, 1024 MB,
    BLOCK); without, a volatile `fs` disk.  Keys are attribute names in any
    case; True/False become YES/NO; None removes a default; `snapshots` (a
    list of snapshot ids) goes to the VM's SNAPSHOTS element.
    """
    spec = {key.upper(): value for key, value in spec.items() if key.lower() != "snapshots"}
    disk_id = spec.get("DISK_ID", index)
    target = "vd" + "abcdefghijklmnopqrstuvwxyz"[int(disk_id) % 26]
    if "IMAGE_ID" in spec:
        image_id = spec["IMAGE_ID"]
        persistent = bool(spec.get("PERSISTENT", False))
        size = spec.get("SIZE", 1024)
        attrs = {
            "ALLOW_ORPHANS": "FORMAT", "CLONE": not persistent, "CLONE_TARGET": "SYSTEM",
            "CLUSTER_ID": "0", "DATASTORE": "lvm_images", "DATASTORE_ID": 100,
            "DEV_PREFIX": "vd", "DISK_ID": disk_id, "DISK_SNAPSHOT_TOTAL_SIZE": 0,
            "DISK_TYPE": "BLOCK", "DRIVER": "raw", "FORMAT": "raw",
            "IMAGE": f"image-{image_id}", "IMAGE_ID": image_id,
            "IMAGE_STATE": 8 if persistent else 2, "IMAGE_UNAME": "oneadmin",
            "LN_TARGET": "NONE", "ORIGINAL_SIZE": size, "READONLY": False,
            "SAVE": persistent, "SIZE": size,
            "SOURCE": f"vg_one/lv-oneimg-{image_id}", "TARGET": target,
            "TM_MAD": "gfs2clvm", "TYPE": "BLOCK",
        }
        if persistent:
            attrs["PERSISTENT"] = True
    else:
        attrs = {"DEV_PREFIX": "vd", "DISK_ID": disk_id, "DISK_TYPE": "BLOCK",
                 "FORMAT": "raw", "SIZE": 1024, "TARGET": target, "TYPE": "fs"}
    attrs.update(spec)
    return {key: value for key, value in attrs.items() if value is not None}


def vm_doc(id: int, *, uid: int = 0, gid: int = 0, uname: str = "oneadmin",
           gname: str = "oneadmin", name: str | None = None, permissions: str = "600",
           state: int = 3, lcm_state: int = 3, prev_state: int | None = None,
           prev_lcm_state: int | None = None, disks=(), history=(), context=None,
           tm_mad_system: str = "", deploy_id: str | None = None,
           user_template: dict | None = None) -> str:
    """A VM document like `one.vm.info` returns (validated by the server).

    disks: list of disk_attrs() specs.  history: list of dicts with
    hostname, ds_id and optionally tm_mad, vm_mad, seq, hid, action, etime.
    context: None, True (CONTEXT with the next free DISK_ID) or a dict of
    CONTEXT attributes.
    """
    vm = etree.Element("VM")
    _sub(vm, "ID", id)
    _sub(vm, "UID", uid)
    _sub(vm, "GID", gid)
    _sub(vm, "UNAME", uname)
    _sub(vm, "GNAME", gname)
    _sub(vm, "NAME", name if name is not None else f"vm-{id}")
    _permissions(vm, permissions)
    _sub(vm, "LAST_POLL", _NOW)
    _sub(vm, "STATE", state)
    _sub(vm, "LCM_STATE", lcm_state)
    _sub(vm, "PREV_STATE", state if prev_state is None else prev_state)
    _sub(vm, "PREV_LCM_STATE", lcm_state if prev_lcm_state is None else prev_lcm_state)
    _sub(vm, "RESCHED", 0)
    _sub(vm, "STIME", _NOW - 3600)
    _sub(vm, "ETIME", 0)
    _sub(vm, "DEPLOY_ID", deploy_id if deploy_id is not None else
         (f"one-{id}" if history else ""))
    _sub(vm, "MONITORING")
    _sub(vm, "SCHED_ACTIONS")

    disk_specs = [disk_attrs(index, dict(spec)) for index, spec in enumerate(disks)]
    template = _sub(vm, "TEMPLATE")
    if context:
        ctx = {"DISK_ID": len(disk_specs), "TARGET": "hda", "NETWORK": "YES"}
        if isinstance(context, dict):
            ctx.update({key.upper(): value for key, value in context.items()})
        _attributes(template, {"CONTEXT": ctx})
    _sub(template, "CPU", "1")
    for spec in disk_specs:
        _attributes(template, {"DISK": spec})
    _sub(template, "MEMORY", "512")
    _sub(template, "TEMPLATE_ID", "0")
    _sub(template, "TM_MAD_SYSTEM", tm_mad_system)
    _sub(template, "VMID", id)

    _attributes(_sub(vm, "USER_TEMPLATE"), user_template or {})

    records = _sub(vm, "HISTORY_RECORDS")
    items = [dict(item, seq=item.get("seq", index)) for index, item in enumerate(history)]
    last_seq = max((item["seq"] for item in items), default=None)
    for item in items:
        if item["seq"] != last_seq:  # closed records carry an end time
            item.setdefault("etime", _NOW - 2000 + item["seq"])
        _history(records, id, item["seq"], item)

    for index, spec in enumerate(disks):
        snapshots = spec.get("snapshots") or spec.get("SNAPSHOTS")
        if snapshots:
            _snapshots(vm, disk_specs[index]["DISK_ID"], snapshots)

    backups = _sub(vm, "BACKUPS")
    _sub(backups, "BACKUP_CONFIG")
    _sub(backups, "BACKUP_IDS")
    return _text(vm)


def _history(parent, vm_id: int, seq: int, item: dict) -> None:
    known = {"hostname", "ds_id", "tm_mad", "vm_mad", "seq", "hid", "cid", "action",
             "stime", "etime", "uid", "gid"}
    unknown = set(item) - known
    if unknown:
        raise ValueError(f"unknown history keys {sorted(unknown)}")
    record = _sub(parent, "HISTORY")
    _sub(record, "OID", vm_id)
    _sub(record, "SEQ", seq)
    _sub(record, "HOSTNAME", item["hostname"])
    _sub(record, "HID", item.get("hid", 0))
    _sub(record, "CID", item.get("cid", 0))
    _sub(record, "STIME", item.get("stime", _NOW - 3000 + seq))
    _sub(record, "ETIME", item.get("etime", 0))
    _sub(record, "VM_MAD", item.get("vm_mad", "kvm"))
    _sub(record, "TM_MAD", item.get("tm_mad", "gfs2clvm"))
    _sub(record, "DS_ID", item["ds_id"])
    _sub(record, "PLAN_ID", -1)
    _sub(record, "ACTION_ID", -1)
    for field in ("PSTIME", "PETIME", "RSTIME", "RETIME", "ESTIME", "EETIME"):
        _sub(record, field, 0)
    _sub(record, "ACTION", item.get("action", 0))
    _sub(record, "UID", item.get("uid", -1))
    _sub(record, "GID", item.get("gid", -1))
    _sub(record, "REQUEST_ID", -1)


def _snapshots(vm, disk_id, snapshot_ids) -> None:
    block = _sub(vm, "SNAPSHOTS")
    _sub(block, "ALLOW_ORPHANS", "FORMAT")
    _sub(block, "CURRENT_BASE", -1)
    _sub(block, "DISK_ID", disk_id)
    _sub(block, "NEXT_SNAPSHOT", max(snapshot_ids) + 1)
    parent = -1
    for snap_id in snapshot_ids:
        snap = _sub(block, "SNAPSHOT")
        _sub(snap, "DATE", _NOW - 100 + snap_id)
        _sub(snap, "ID", snap_id)
        _sub(snap, "NAME", f"snapshot-{snap_id}")
        _sub(snap, "PARENT", parent)
        _sub(snap, "SIZE", 1024)
        parent = snap_id


def image_doc(id: int, *, uid: int = 0, gid: int = 0, uname: str = "oneadmin",
              gname: str = "oneadmin", name: str | None = None, permissions: str = "600",
              type: int = 2, persistent: bool = False, source: str | None = None,
              path: str = "", format: str = "raw", fs: str = "", size: int = 1024,
              state: int = 1, datastore_id: int = 100, datastore: str = "lvm_images",
              vms=(), running_vms: int | None = None, template: dict | None = None,
              disk_type: int = 2) -> str:
    """An IMAGE document like `one.image.info` returns.  type: 0 OS, 1 CDROM,
    2 DATABLOCK; state: 1 READY, 2 USED, 8 USED_PERS ...; disk_type 2 = BLOCK."""
    image = etree.Element("IMAGE")
    _sub(image, "ID", id)
    _sub(image, "UID", uid)
    _sub(image, "GID", gid)
    _sub(image, "UNAME", uname)
    _sub(image, "GNAME", gname)
    _sub(image, "NAME", name if name is not None else f"image-{id}")
    _permissions(image, permissions)
    _sub(image, "TYPE", type)
    _sub(image, "DISK_TYPE", disk_type)
    _sub(image, "PERSISTENT", int(persistent))
    _sub(image, "REGTIME", _NOW - 86400)
    _sub(image, "MODTIME", _NOW - 86400)
    _sub(image, "SOURCE", f"vg_one/lv-oneimg-{id}" if source is None else source)
    _sub(image, "PATH", path)
    _sub(image, "FORMAT", format)
    _sub(image, "FS", fs)
    _sub(image, "SIZE", size)
    _sub(image, "STATE", state)
    _sub(image, "PREV_STATE", state)
    _sub(image, "RUNNING_VMS", len(vms) if running_vms is None else running_vms)
    _sub(image, "CLONING_OPS", 0)
    _sub(image, "CLONING_ID", -1)
    _sub(image, "TARGET_SNAPSHOT", -1)
    _sub(image, "DATASTORE_ID", datastore_id)
    _sub(image, "DATASTORE", datastore)
    _ids(image, "VMS", vms)
    _ids(image, "CLONES", ())
    _ids(image, "APP_CLONES", ())
    defaults = {"DEV_PREFIX": "vd", "DRIVER": format}
    defaults.update({key.upper(): value for key, value in (template or {}).items()})
    _attributes(_sub(image, "TEMPLATE"), defaults)
    snaps = _sub(image, "SNAPSHOTS")
    _sub(snaps, "ALLOW_ORPHANS", "FORMAT")
    _sub(snaps, "CURRENT_BASE", -1)
    _sub(snaps, "NEXT_SNAPSHOT", 0)
    _sub(image, "BACKUP_INCREMENTS")
    return _text(image)


def datastore_doc(id: int, *, name: str | None = None, type: int = 0,
                  ds_mad: str = "gfs2clvm", tm_mad: str = "gfs2clvm",
                  base_path: str | None = None, uid: int = 0, gid: int = 0,
                  uname: str = "oneadmin", gname: str = "oneadmin",
                  permissions: str = "640", disk_type: int = 2, state: int = 0,
                  clusters=(0,), total_mb: int = 102400, free_mb: int = 81920,
                  used_mb: int = 20480, images=(), template: dict | None = None) -> str:
    """A DATASTORE document like `one.datastore.info` returns.  type: 0 image,
    1 system, 2 file.  The template gets DS_MAD/TM_MAD/TYPE like oned's, plus
    BRIDGE_LIST/VG_NAME or whatever `template` says (None removes a key)."""
    ds = etree.Element("DATASTORE")
    _sub(ds, "ID", id)
    _sub(ds, "UID", uid)
    _sub(ds, "GID", gid)
    _sub(ds, "UNAME", uname)
    _sub(ds, "GNAME", gname)
    _sub(ds, "NAME", name if name is not None else f"ds-{id}")
    _permissions(ds, permissions)
    _sub(ds, "DS_MAD", ds_mad if type != 1 else "-")
    _sub(ds, "TM_MAD", tm_mad)
    _sub(ds, "BASE_PATH", base_path if base_path is not None
         else f"/var/lib/one//datastores/{id}")
    _sub(ds, "TYPE", type)
    _sub(ds, "DISK_TYPE", disk_type)
    _sub(ds, "STATE", state)
    _ids(ds, "CLUSTERS", clusters)
    _sub(ds, "TOTAL_MB", total_mb)
    _sub(ds, "FREE_MB", free_mb)
    _sub(ds, "USED_MB", used_mb)
    _ids(ds, "IMAGES", images)
    type_name = {0: "IMAGE_DS", 1: "SYSTEM_DS", 2: "FILE_DS"}.get(type, "IMAGE_DS")
    values = {"ALLOW_ORPHANS": "FORMAT", "BRIDGE_LIST": "node1 node2",
              "DISK_TYPE": "BLOCK", "DS_MAD": ds_mad if type != 1 else None,
              "SHARED": "YES", "TM_MAD": tm_mad, "TYPE": type_name, "VG_NAME": "vg_one"}
    values.update({key.upper(): value for key, value in (template or {}).items()})
    _attributes(_sub(ds, "TEMPLATE"), values)
    return _text(ds)


def user_doc(id: int, *, name: str | None = None, gid: int = 1, groups=(),
             gname: str | None = None, password: str = "x" * 64,
             auth_driver: str = "core", enabled: bool = True,
             template: dict | None = None) -> str:
    """A USER document like `one.user.info` returns.  GROUPS lists the primary
    group and `groups` (secondary groups)."""
    user = etree.Element("USER")
    _sub(user, "ID", id)
    _sub(user, "GID", gid)
    group_ids = [gid] + [g for g in groups if g != gid]
    _ids(user, "GROUPS", sorted(group_ids))
    _sub(user, "GNAME", gname if gname is not None else
         ("oneadmin" if gid == 0 else "users" if gid == 1 else f"group-{gid}"))
    _sub(user, "NAME", name if name is not None else f"user-{id}")
    _sub(user, "PASSWORD", password)
    _sub(user, "AUTH_DRIVER", auth_driver)
    _sub(user, "ENABLED", int(enabled))
    _attributes(_sub(user, "TEMPLATE"), template or {"TOKEN_PASSWORD": "x" * 40})
    _sub(user, "DEFAULT_USER_QUOTAS")
    return _text(user)


def driver_action_xml(image: str | None = None, datastore: str | None = None,
                      extra: dict | None = None) -> str:
    """<DS_DRIVER_ACTION_DATA> from (validated) IMAGE / DATASTORE documents plus
    extra elements, e.g. {"DATASTORE_LOCATION": "/var/lib/one/datastores",
    "MONITOR_VM_DISKS": 1} for the TM monitor."""
    root = etree.Element("DS_DRIVER_ACTION_DATA")
    for doc in (image, datastore):
        if doc is not None:
            root.append(copy.deepcopy(validate(doc)))
    for key, value in (extra or {}).items():
        _sub(root, key, value)
    return _text(root)


def driver_action_b64(image=None, datastore=None, extra=None) -> str:
    """driver_action_xml(), base64-encoded as the datastore driver's stdin."""
    return base64.b64encode(driver_action_xml(image, datastore, extra).encode()).decode()


# --- the server ------------------------------------------------------------------------

class I8(int):
    """An int marshalled as <i8>, as oned sends the replication index."""


class _Marshaller(xmlrpc.client.Marshaller):
    dispatch = dict(xmlrpc.client.Marshaller.dispatch)

    def _dump_i8(self, value, write):
        write("<value><i8>")
        write(str(int(value)))
        write("</i8></value>\n")

    dispatch[I8] = _dump_i8


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)

    def log_message(self, format, *args):  # keep pytest output clean
        pass


class _Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True

    def _marshaled_dispatch(self, data, dispatch_method=None, path=None):
        try:
            params, method = xmlrpc.client.loads(data, use_builtin_types=self.use_builtin_types)
            response = self._dispatch(method, params)
            body = _Marshaller("utf-8", allow_none=False).dumps((response,))
            return ("<?xml version='1.0'?>\n<methodResponse>\n"
                    f"{body}</methodResponse>\n").encode("utf-8")
        except xmlrpc.client.Fault as fault:
            return xmlrpc.client.dumps(fault, methodresponse=True).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - report, as oned would, as a fault
            return xmlrpc.client.dumps(xmlrpc.client.Fault(1, f"{type(exc).__name__}: {exc}"),
                                       methodresponse=True).encode("utf-8")


class FakeOned:
    """The stand-in oned.  Start with start(), stop with stop() (the fixture does)."""

    def __init__(self, auth_dir: Path):
        xsd_dir()  # fail early and clearly when the XSDs are missing
        self.auth_dir = Path(auth_dir)
        self.auth_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._docs: dict[str, dict[int, etree._Element]] = {kind: {} for kind in _KINDS}
        self._passwords: dict[str, tuple[int, str]] = {}
        self.calls: list[tuple[str, int]] = []     # (method, id) of every call
        self.errors: list[str] = []                # documents that failed validation
        self.delay = 0.0                           # seconds to wait before answering
        self.replication_index = 0
        self.add_user(0, "oneadmin", ONEADMIN_PASSWORD, gid=0)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "FakeOned":
        server = _Server(("127.0.0.1", 0), requestHandler=_Handler, logRequests=False,
                         allow_none=False, use_builtin_types=False)
        for kind in _KINDS:
            server.register_function(self._method(kind), f"one.{kind}.info")
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-oned",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/RPC2"

    @property
    def session(self) -> str:
        """oneadmin's session string."""
        return f"oneadmin:{ONEADMIN_PASSWORD}"

    def session_of(self, name: str) -> str:
        return f"{name}:{self._passwords[name][1]}"

    def auth_file(self, name: str = "oneadmin") -> Path:
        path = self.auth_dir / f"one_auth.{name}"
        path.write_text(self.session_of(name) + "\n")
        path.chmod(0o600)
        return path

    def env(self, name: str = "oneadmin") -> dict[str, str]:
        """{"ONE_XMLRPC": endpoint, "ONE_AUTH": auth file of user `name`}."""
        return {"ONE_XMLRPC": self.endpoint, "ONE_AUTH": str(self.auth_file(name))}

    # -- mutators (each document is validated when stored)
    def _put(self, kind: str, doc) -> int:
        root = copy.deepcopy(validate(doc))
        if root.tag != _KINDS[kind][0]:
            raise SchemaError(f"put_{kind}: expected a <{_KINDS[kind][0]}> document, "
                              f"got <{root.tag}>")
        ident = int(root.findtext("ID"))
        with self._lock:
            self._docs[kind][ident] = root
        return ident

    def put_vm(self, doc) -> int:
        return self._put("vm", doc)

    def put_image(self, doc) -> int:
        return self._put("image", doc)

    def put_datastore(self, doc) -> int:
        return self._put("datastore", doc)

    def put_user(self, doc, password: str | None = None) -> int:
        """Store a USER document; with a password the user can log in."""
        ident = self._put("user", doc)
        name = self._docs["user"][ident].findtext("NAME")
        if password is not None:
            with self._lock:
                self._passwords[name] = (ident, password)
        return ident

    def add_user(self, id: int, name: str, password: str, **kwargs) -> int:
        """user_doc(id, name=name, **kwargs) stored with a login password."""
        return self.put_user(user_doc(id, name=name, **kwargs), password=password)

    def remove(self, kind: str, ident: int) -> None:
        with self._lock:
            self._docs[kind].pop(ident, None)

    def remove_vm(self, ident: int) -> None:
        self.remove("vm", ident)

    def remove_image(self, ident: int) -> None:
        self.remove("image", ident)

    def _edit(self, kind: str, ident: int, changes: dict) -> None:
        with self._lock:
            root = copy.deepcopy(self._docs[kind][ident])
            for path, value in changes.items():
                node = root.find(path)
                if node is None:
                    raise KeyError(f"{kind} {ident} has no <{path}>")
                node.text = _str(value)
            self._docs[kind][ident] = copy.deepcopy(validate(root))

    def set_vm_state(self, ident: int, state: int, lcm_state: int = 0) -> None:
        with self._lock:
            old = self._docs["vm"][ident]
            self._edit("vm", ident, {"PREV_STATE": old.findtext("STATE"),
                                     "PREV_LCM_STATE": old.findtext("LCM_STATE"),
                                     "STATE": state, "LCM_STATE": lcm_state})

    def set_image_state(self, ident: int, state: int) -> None:
        self._edit("image", ident, {"STATE": state})

    def edit(self, kind: str, ident: int, **changes) -> None:
        """Set element texts by path, e.g. edit("image", 3, SOURCE="vg/lv")."""
        self._edit(kind, ident, {key.replace("__", "/"): value
                                 for key, value in changes.items()})

    def calls_to(self, method: str) -> list[int]:
        return [ident for name, ident in self.calls if name == method]

    # -- the XML-RPC methods
    def _method(self, kind: str):
        root_tag, object_name, auth_name = _KINDS[kind]
        method_name = f"one.{kind}.info"

        def info(session, ident, decrypt=False):
            if not isinstance(session, str) or not isinstance(ident, int) \
                    or isinstance(ident, bool):
                raise xmlrpc.client.Fault(-501, "Type mismatch in the call's parameters")
            with self._lock:
                self.calls.append((method_name, ident))
                delay = self.delay
            if delay:
                time.sleep(delay)
            caller = self._authenticate(session)
            if caller is None:
                return self._failure(AUTHENTICATION, f"[{method_name}] User couldn't be "
                                     f"authenticated, aborting call.", -1)
            with self._lock:
                doc = self._docs[kind].get(ident)
                doc = copy.deepcopy(doc) if doc is not None else None
            if doc is None:
                return self._failure(NO_EXISTS, f"[{method_name}] Error getting "
                                     f"{object_name} [{ident}].", ident)
            if not self._authorized(caller, kind, ident, doc):
                return self._failure(AUTHORIZATION, f"[{method_name}] User [{caller[0]}] : "
                                     f"Not authorized to perform USE {auth_name} "
                                     f"[{ident}].", ident)
            try:
                validate(doc)
            except SchemaError as exc:
                self.errors.append(str(exc))
                raise xmlrpc.client.Fault(-32500, f"fake oned served an invalid document: {exc}")
            return [True, etree.tostring(doc, encoding="unicode"), SUCCESS]

        info.__name__ = f"{kind}_info"
        return info

    def _failure(self, code: int, message: str, ident: int) -> list:
        return [False, message, code, ident, I8(self.replication_index)]

    def _authenticate(self, session: str) -> tuple[int, list[int]] | None:
        name, sep, password = session.partition(":")
        with self._lock:
            entry = self._passwords.get(name)
            if not sep or entry is None or entry[1] != password:
                return None
            user = self._docs["user"].get(entry[0])
            if user is None or user.findtext("ENABLED") != "1":
                return None
            groups = [int(g.text) for g in user.findall("GROUPS/ID")]
            return entry[0], groups

    @staticmethod
    def _authorized(caller, kind, ident, doc) -> bool:
        uid, groups = caller
        if uid == 0 or 0 in groups:
            return True
        if kind == "user":
            return ident == uid
        perms = doc.find("PERMISSIONS")
        if int(doc.findtext("UID")) == uid and perms.findtext("OWNER_U") == "1":
            return True
        if int(doc.findtext("GID")) in groups and perms.findtext("GROUP_U") == "1":
            return True
        return perms.findtext("OTHER_U") == "1"


@pytest.fixture
def fake_oned(tmp_path):
    """A fresh FakeOned per test (function scope); see the module docstring."""
    try:
        server = FakeOned(tmp_path).start()
    except RuntimeError as exc:  # missing XSDs: fail, never skip
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
    if server.errors:
        pytest.fail("fake oned served invalid documents: " + " | ".join(server.errors),
                    pytrace=False)
