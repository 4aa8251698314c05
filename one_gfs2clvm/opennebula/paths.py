"""What an action may touch on GFS2: paths derived from the ids of its argv.

The one rule, checked here and nowhere else, before any remote call and
before asking oned (a refusal names the refused argument):

  * modern layout: the VM directory is exactly
    `<gfs2_mount>/datastores/<system ds>/<vm id>`, a disk exactly
    `<vm dir>/disk.<N>`, for the VMID of the same argv.  Where the action's
    DSID is the system datastore (mkimage, mkswap, context, the directory
    forms of mv and delete, pre/post/failmigrate), <system ds> must be that
    DSID.  Where it is the image datastore (clone, ln, mvds, cpds, per-disk mv
    and delete, snap_*, resize), the argv does not name the system datastore,
    so any id is accepted there: the VM id still binds the path to the VM.
    A migration to another system datastore moves `<old>/<vm>` to
    `<DSID>/<vm>`: mv's source directory may name another system datastore.
  * 3.x layout (no VMID argument: the path carries it): the VM directory is
    exactly `<gfs2_mount>/<vm id>/images` on hosts (`<gfs2_mount>/<vm id>` or
    `<gfs2_mount>/<vm id>/images` on the front-end), a disk exactly
    `<that dir>/disk.<N>`.
  * an image FILE a disk is cloned from or linked to lies directly in a
    datastore directory, `<gfs2_mount>/datastores/<ds id>/<name>` (3.x:
    `<gfs2_mount>/images/<name>`), where <name> is one path component that is
    not a decimal id (those are VM directories) and does not start with '.'
    (the driver's own staging and export files); or it is an `.isox` ISO under
    `<gfs2_mount>`.  The worker resolves symlinks and the resolved path must
    obey the same rule (see file_source_real).

Paths are normalised ('//' and '.' collapsed, '..' refused) before the
comparison, so OpenNebula's `/var/lib/one//datastores/0/7/disk.0` is fine.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ..errors import InvalidArgument
from ..names import disk_id_from_path, normalize_abspath, parse_host_path, shown

_ID = r"(0|[1-9][0-9]{0,9})"
_NAME = r"[^/.][^/]*"


@dataclass(frozen=True)
class DiskArg:
    """A VM disk argument `host:<vm dir>/disk.<N>`, checked against the ids."""
    host: str
    path: str
    disk_id: int
    vm_id: int

    @property
    def sysdir(self) -> str:
        return posixpath.dirname(self.path)


@dataclass(frozen=True)
class DirArg:
    """A VM directory argument `host:<vm dir>`, checked against the ids."""
    host: str
    path: str
    vm_id: int


def _mount(config) -> str:
    return normalize_abspath(config.gfs2_mount, "gfs2_mount").rstrip("/") or ""


def vm_dir(config, vm_id: int, system_ds: int) -> str:
    """<gfs2_mount>/datastores/<system ds>/<vm id> (modern layout)."""
    return f"{_mount(config)}/datastores/{system_ds}/{vm_id}"


def vm_dir3(config, vm_id: int) -> str:
    """<gfs2_mount>/<vm id>/images: a 3.x VM's directory on the hosts."""
    return f"{_mount(config)}/{vm_id}/images"


def _host_path(text: str, what: str):
    if not isinstance(text, str) or "://" in text:
        raise InvalidArgument(f"refusing {what} {shown(text)}: expected host:/path")
    return parse_host_path(text)


def _refuse(what: str, text: str, expected: str) -> InvalidArgument:
    return InvalidArgument(f"refusing {what} {shown(text)}: it must be {expected}")


def _match_modern(config, path: str, vm_id: int, system_ds: int | None, disk: bool):
    """The system datastore id of a modern VM dir / disk path of vm_id, or None."""
    tail = r"/disk\.(0|[1-9][0-9]{0,9})" if disk else ""
    match = re.fullmatch(re.escape(_mount(config)) + r"/datastores/" + _ID + "/" + _ID + tail,
                         path)
    if not match or int(match[2]) != vm_id:
        return None
    if system_ds is not None and int(match[1]) != system_ds:
        return None
    return int(match[1])


def _expected(config, vm_id: int, system_ds: int | None, suffix: str = "") -> str:
    ds = "<system ds>" if system_ds is None else str(system_ds)
    return f"{_mount(config)}/datastores/{ds}/{vm_id}{suffix}"


def disk_arg(config, text: str, vm_id: int, system_ds: int | None = None,
             what: str = "disk") -> DiskArg:
    """`host:<gfs2>/datastores/<ds>/<vm_id>/disk.<N>` (ds = system_ds if given)."""
    hp = _host_path(text, what)
    if _match_modern(config, hp.path, vm_id, system_ds, disk=True) is None:
        raise _refuse(what, text, f"a disk of VM {vm_id}: "
                      f"{_expected(config, vm_id, system_ds, '/disk.<N>')}")
    return DiskArg(hp.host, hp.path, disk_id_from_path(hp.path), vm_id)


def dir_arg(config, text: str, vm_id: int, system_ds: int | None = None,
            what: str = "VM directory") -> DirArg:
    """`host:<gfs2>/datastores/<ds>/<vm_id>` (ds = system_ds if given)."""
    hp = _host_path(text, what)
    if _match_modern(config, hp.path, vm_id, system_ds, disk=False) is None:
        raise _refuse(what, text, f"the directory of VM {vm_id}: "
                      f"{_expected(config, vm_id, system_ds)}")
    return DirArg(hp.host, hp.path, vm_id)


def is_disk_path(text: str) -> bool:
    """Does a host:path argument name a disk (…/disk.<something>) rather than a dir?"""
    return posixpath.basename(text.rstrip("/")).startswith("disk.")


def check_sysdir(config, path: str, vm_id: int, system_ds: int) -> str:
    """premigrate & co: SYSDIR must be exactly this VM's directory."""
    normal = normalize_abspath(path, "SYSDIR")
    if normal != vm_dir(config, vm_id, system_ds):
        raise _refuse("SYSDIR", path, f"the directory of VM {vm_id}: "
                      f"{vm_dir(config, vm_id, system_ds)}")
    return normal


# --- 3.x ---------------------------------------------------------------------------

def _match3(config, path: str, disk: bool) -> tuple[int, bool] | None:
    """(vm id, under images/) of a 3.x VM dir or disk path, or None."""
    tail = r"/disk\.(0|[1-9][0-9]{0,9})" if disk else ""
    match = re.fullmatch(re.escape(_mount(config)) + "/" + _ID + "(/images)?" + tail, path)
    return (int(match[1]), bool(match[2])) if match else None


def disk_arg3(config, text: str, what: str = "disk") -> DiskArg:
    """3.x `host:<gfs2>/<vid>/images/disk.<N>` (front-end: also <gfs2>/<vid>/disk.<N>);
    the VM id comes from the path."""
    hp = _host_path(text, what)
    found = _match3(config, hp.path, disk=True)
    if found is None:
        raise _refuse(what, text, f"a 3.x VM disk: {_mount(config)}/<vid>/images/disk.<N>")
    return DiskArg(hp.host, hp.path, disk_id_from_path(hp.path), found[0])


def dir_arg3(config, text: str, what: str = "VM directory") -> DirArg:
    """3.x `host:<gfs2>/<vid>/images` (front-end: also <gfs2>/<vid>)."""
    hp = _host_path(text, what)
    found = _match3(config, hp.path, disk=False)
    if found is None:
        raise _refuse(what, text, f"a 3.x VM directory: {_mount(config)}/<vid>/images")
    return DirArg(hp.host, hp.path, found[0])


def disk_path3(config, path: str) -> tuple[int, int]:
    """(vm id, disk id) of a bare 3.x disk path (image manager `mv` SRC)."""
    normal = normalize_abspath(path, "disk path") if isinstance(path, str) else None
    found = _match3(config, normal, disk=True) if normal else None
    if found is None:
        raise _refuse("disk path", path, f"a 3.x VM disk: {_mount(config)}/<vid>/images/"
                      f"disk.<N>")
    return found[0], disk_id_from_path(normal)


# --- image files ------------------------------------------------------------------

def check_image_file(config, path: str, legacy: bool = False) -> str:
    """An image file SOURCE (see the module docstring); returns the normal path."""
    normal = normalize_abspath(path, "image file")
    mount = re.escape(_mount(config))
    if normal.endswith(".isox") and normal.startswith(_mount(config) + "/"):
        return normal
    pattern = mount + (r"/images/" if legacy else r"/datastores/" + _ID + "/") + _NAME
    name = posixpath.basename(normal)
    if re.fullmatch(pattern, normal) and not re.fullmatch(_ID, name):
        return normal
    where = f"{_mount(config)}/images/<file>" if legacy else \
        f"{_mount(config)}/datastores/<ds id>/<file>"
    raise InvalidArgument(f"refusing image file {shown(path)}: an image file must lie in a "
                          f"datastore directory ({where}) or be an .isox under "
                          f"{_mount(config)}")


def file_source_real(config, path: str, real: str, legacy: bool = False) -> str:
    """The worker's resolved path (readlink -e) of an image file: same rule."""
    try:
        return check_image_file(config, real, legacy)
    except InvalidArgument:
        raise InvalidArgument(f"refusing image file {shown(path)}: it resolves to {shown(real)}, "
                              f"outside the datastore directories") from None


# --- datastore directories -------------------------------------------------------------

def datastore_dir(config, ds_id: int) -> str:
    """An image datastore's directory on GFS2: <gfs2_mount>/datastores/<ds id>.
    Staging files, ISO copies and export files go there and nowhere else.
    Choice: the datastore's BASE_PATH is not used: it is oned's path (its
    DATASTORE_LOCATION), and one that points elsewhere -- a VM's directory --
    must not steer where the driver writes."""
    if isinstance(ds_id, bool) or not isinstance(ds_id, int) or ds_id < 0:
        raise InvalidArgument(f"invalid datastore id {shown(ds_id)}")
    return f"{_mount(config)}/datastores/{ds_id}"


def images_dir3(config) -> str:
    """The 3.x image repository on GFS2: <gfs2_mount>/images."""
    return f"{_mount(config)}/images"


def in_vm_dir(config, path: str) -> bool:
    """Does a (normalised) path lie in some VM's directory, either layout?"""
    mount = re.escape(_mount(config))
    return bool(re.fullmatch(mount + r"/datastores/" + _ID + "/" + _ID + r"(/.*)?", path) or
                re.fullmatch(mount + "/" + _ID + r"(/.*)?", path))


def check_worker_file(config, path: str) -> str:
    """A PATH an import reads on a worker (not on the management node): it must
    lie on the shared GFS2 and not in a VM's directory (a VM's disk is copied
    through lvm://, with the VM's rights checked).  Checked before the worker is
    asked; its resolved path is checked again (check_worker_file on it)."""
    normal = normalize_abspath(path, "image path")
    if not normal.startswith(_mount(config) + "/"):
        raise InvalidArgument(f"refusing {shown(path)}: not on the management node, and "
                              f"not on the workers' shared GFS2 ({_mount(config)})")
    if in_vm_dir(config, normal):
        raise InvalidArgument(f"refusing {shown(path)}: it lies in a VM's directory "
                              f"(copy a VM's disk with lvm://<vm>/<disk>)")
    return normal
