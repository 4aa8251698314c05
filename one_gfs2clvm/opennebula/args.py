"""The modern calling conventions, parsed once: TM argv (what oned writes into
transfer files, reference 3.3) and datastore actions (DS_DRIVER_ACTION_DATA,
base64 XML on stdin or as the first argument).  Nothing here calls a worker.
"""

from __future__ import annotations

import re
import sys

from ..errors import InvalidArgument
from ..names import HOST_RE, FileSource, IsoxSource, LvSource, parse_id, parse_lv_name, parse_source
from . import paths


def expect(argv: list[str], count: int, usage: str, optional: int = 0) -> list[str]:
    """argv with `count` arguments and up to `optional` more (missing ones "")."""
    if not count <= len(argv) <= count + optional:
        raise InvalidArgument(f"usage: {usage} (got {len(argv)} arguments)")
    return argv + [""] * (count + optional - len(argv))


_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def tm_source(arg: str):
    """SOURCE as oned passes it: `<fe>:<SOURCE>`, or raw when it contains ':'.
    Schemes other than lvm://, vol://, http(s):// (file://, ...) and host parts
    that are no host name (`-o...`) are refused."""
    for scheme in ("lvm://", "vol://", "http://", "https://"):
        if arg.startswith(scheme):
            return parse_source(arg)
    if _SCHEME_RE.match(arg):
        raise InvalidArgument(f"refusing SOURCE {arg!r}: unsupported scheme")
    host, sep, rest = arg.partition(":")
    if sep and not HOST_RE.fullmatch(host):
        raise InvalidArgument(f"refusing SOURCE {arg!r}: {host!r} is not a host name")
    return parse_source(rest if sep else arg)


def image_source(config, arg: str, legacy: bool = False):
    """A clone/ln SOURCE, checked before any remote call: an image file in a
    datastore directory or an .isox (paths.check_image_file), an image LV
    (<vg>/lv-oneimg-<id>), lvm:// or vol://."""
    source = tm_source(arg)
    if isinstance(source, (FileSource, IsoxSource)):
        paths.check_image_file(config, source.path, legacy)
    elif isinstance(source, LvSource):
        config.check_vg(source.vg)
        if parse_lv_name(source.lv).kind != "image":
            raise InvalidArgument(f"refusing SOURCE {arg!r}: an LV SOURCE must be an image "
                                  f"LV <vg>/lv-oneimg-<id> (lvm://<vm>/<disk> copies a VM's "
                                  f"disk, with its rights checked)")
    return source


# ----------------------------------------------------------------- datastore actions

def driver_action(action, argv: list[str]):
    """(object id, DriverAction) from either datastore calling convention."""
    from .xml import parse_driver_action
    if len(argv) == 1:
        payload, obj = action.stdin, argv[0]
    elif len(argv) == 2:
        payload, obj = argv[0].encode(), argv[1]
    else:
        raise InvalidArgument(f"usage: {action.name} ID (base64 XML on stdin), "
                              f"or {action.name} BASE64_XML ID")
    obj_id = parse_id(obj, "id")
    if not payload.strip():
        raise InvalidArgument(f"{action.name}: no DS_DRIVER_ACTION_DATA on stdin")
    return obj_id, parse_driver_action(payload.strip())


def action_vg(config, data) -> str:
    """The VG of the action's DATASTORE (VG_NAME, else the first configured VG)."""
    ds = data.datastore
    if ds is None:
        raise InvalidArgument("DS_DRIVER_ACTION_DATA has no DATASTORE")
    return config.check_vg(ds.vg_name or config.default_vg)


def action_bridges(config, data) -> list[str]:
    """The DATASTORE's BRIDGE_LIST, else [storage] bridge_hosts."""
    ds = data.datastore
    return (ds.bridge_list if ds is not None else []) or list(config.bridge_hosts)


def reply(line: str) -> None:
    """A datastore action's answer to oned: one line on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
