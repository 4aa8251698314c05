"""Management-side LVM layer.

The front-end never runs lvm itself.  It builds the argv a worker runs,
`sudo -n <node helper> <verb> ...` (see nodehelper.py for the verbs), hands it
to an injectable runner (SSH in production, a fake in tests), parses the JSON
reports and turns failures into typed errors.

Creation is always inactive (the `create` verb passes `--activate n`): under
lvmlockd an LV activated at creation would hold its lock on whichever worker
happened to run lvcreate.  The LV is then activated on the host where the VM
runs, through ActivationPolicy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Protocol

from .config import Config
from .names import check_host, check_lv, check_tag, check_vg
from .remote import CommandResult  # cheap: paramiko is imported only on connect
from .errors import (ActivationError, DriverError, HelperRefused, InvalidArgument,
                     LockContention, LockManagerDown, LvmError, NotFound)
from .nodehelper import (ACTIVATION_FLAGS, EXIT_REFUSED, LV_LOCKED_RE, NOT_FOUND_RE,
                         TRANSIENT_LOCK_RE, Refused, lvm_argv)

# --- reports -----------------------------------------------------------------

# Keys we rely on, exactly as nodehelper's LV_FIELDS / VG_FIELDS request them.
_LV_KEYS = ("lv_name", "vg_name", "lv_uuid", "lv_size", "lv_attr", "lv_active",
            "lv_active_locally", "lv_active_exclusively", "lv_tags", "lv_layout",
            "origin", "lv_path", "lv_dm_path")
_VG_KEYS = ("vg_name", "vg_uuid", "vg_size", "vg_free", "vg_extent_size", "vg_attr",
            "vg_lock_type", "vg_shared", "lv_count", "vg_tags")
_INT_RE = re.compile(r"[0-9]{1,20}")
# Spellings LVM uses for "no" in its binary/string state columns.
_FALSE_WORDS = ("", "0", "-", "no", "inactive", "not active")


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    vg: str
    uuid: str
    size_bytes: int
    attr: str
    active: bool
    active_locally: bool
    active_exclusively: bool
    tags: tuple[str, ...]
    layout: str          # lv_layout: "linear", "thin,sparse", "raid,raid1", "cache", ...
    origin: str
    path: str
    dm_path: str

    @property
    def volume_type(self) -> str:
        """First lv_attr character: '-' plain, 's' snapshot, 'V' thin, 'C' cache..."""
        return self.attr[:1]

    @property
    def open_locally(self) -> bool:
        """lv_attr's 6th character: the device is open on the host that reported
        (a VM or any other process still uses it there)."""
        return self.attr[5:6] == "o"

    @property
    def is_snapshot(self) -> bool:
        # classic snapshots show 's'/'S'; thin snapshots are 'V' with an origin
        return self.volume_type in ("s", "S") or bool(self.origin)

    @property
    def is_origin(self) -> bool:
        return self.volume_type in ("o", "O")

    @property
    def is_thin(self) -> bool:
        return "thin" in self.layout.split(",") or self.volume_type in ("V", "t", "T")

    @property
    def is_cache(self) -> bool:
        return bool({"cache", "writecache"} & set(self.layout.split(","))) or self.volume_type == "C"

    @property
    def is_raid(self) -> bool:
        return (bool({"raid", "mirror"} & set(self.layout.split(",")))
                or self.volume_type in ("r", "R", "m", "M"))


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    uuid: str
    size_bytes: int
    free_bytes: int
    extent_size: int
    attr: str
    lock_type: str
    shared: bool
    lv_count: int
    tags: tuple[str, ...]


def _report_rows(text: str, kind: str, keys: tuple[str, ...], what: str) -> list[dict]:
    """Rows of `{"report": [{kind: [row, ...]}, ...]}`; strict about the shape."""
    def bad(why: str) -> LvmError:
        return LvmError(f"cannot parse {what} output: {why}")

    try:
        document = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise bad(f"invalid JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("report"), list):
        raise bad('no "report" list')
    rows: list[dict] = []
    for entry in document["report"]:
        if not isinstance(entry, dict) or not isinstance(entry.get(kind), list):
            raise bad(f'report entry without a "{kind}" list')
        for row in entry[kind]:
            if not isinstance(row, dict):
                raise bad(f"{kind} row is not an object: {row!r}")
            for key in keys:
                if not isinstance(row.get(key), str):
                    raise bad(f"{kind} row without string field {key!r}: {row!r}")
            rows.append(row)
    return rows


def _int(row: dict, key: str, what: str) -> int:
    value = row[key].strip()
    if not _INT_RE.fullmatch(value):
        raise LvmError(f"cannot parse {what} output: {key} {row[key]!r} is not a "
                       f"byte count (--units b --nosuffix expected)")
    return int(value)


def _flag(value: str) -> bool:
    return value.strip().lower() not in _FALSE_WORDS


def _tags(value: str) -> tuple[str, ...]:
    return tuple(tag.strip() for tag in value.split(",") if tag.strip())


def parse_lvs_json(text: str) -> list[LogicalVolume]:
    """`lvs --reportformat json --units b --nosuffix -o <LV_FIELDS>` -> LVs.

    One row per LV is required: a repeated LV means a segment field crept into
    the report, and every caller would then see that LV twice."""
    volumes = [
        LogicalVolume(
            name=row["lv_name"], vg=row["vg_name"], uuid=row["lv_uuid"],
            size_bytes=_int(row, "lv_size", "lvs"), attr=row["lv_attr"],
            active=_flag(row["lv_active"]), active_locally=_flag(row["lv_active_locally"]),
            active_exclusively=_flag(row["lv_active_exclusively"]),
            tags=_tags(row["lv_tags"]), layout=row["lv_layout"], origin=row["origin"],
            path=row["lv_path"], dm_path=row["lv_dm_path"])
        for row in _report_rows(text, "lv", _LV_KEYS, "lvs")
    ]
    seen: set[tuple[str, str]] = set()
    for lv in volumes:
        if (lv.vg, lv.name) in seen:
            raise LvmError(f"cannot parse lvs output: {lv.vg}/{lv.name} reported twice "
                           f"(one row per segment?)")
        seen.add((lv.vg, lv.name))
    return volumes


def parse_vgs_json(text: str) -> list[VolumeGroup]:
    """`vgs --reportformat json --units b --nosuffix -o <VG_FIELDS>` -> VGs."""
    groups = []
    for row in _report_rows(text, "vg", _VG_KEYS, "vgs"):
        attr = row["vg_attr"]
        groups.append(VolumeGroup(
            name=row["vg_name"], uuid=row["vg_uuid"], size_bytes=_int(row, "vg_size", "vgs"),
            free_bytes=_int(row, "vg_free", "vgs"),
            extent_size=_int(row, "vg_extent_size", "vgs"), attr=attr,
            lock_type=row["vg_lock_type"],
            # 6th vg_attr char: (c)lustered (clvmd) or (s)hared (lvmlockd)
            shared=_flag(row["vg_shared"]) or attr[5:6] in ("c", "s"),
            lv_count=_int(row, "lv_count", "vgs"), tags=_tags(row["vg_tags"])))
    return groups


# --- activation policy -------------------------------------------------------------

INTENTS = ("exclusive", "shared", "off", "read", "release")


class ActivationPolicy:
    def __init__(self, lock_mode: str):
        if lock_mode not in ACTIVATION_FLAGS:
            raise InvalidArgument(f"unknown lock mode {lock_mode!r}")
        self.lock_mode = lock_mode

    def flag(self, intent: str) -> str:
        try:
            return ACTIVATION_FLAGS[self.lock_mode][intent]
        except KeyError:
            raise InvalidArgument(f"invalid activation intent {intent!r}: expected "
                                  f"{', '.join(INTENTS)}") from None

    def check_shared_allowed(self, lv: LogicalVolume) -> None:
        """lvmlockd refuses `-asy` for thin, snapshot, cache and raid LVs; say so first."""
        if self.lock_mode != "lvmlockd":
            return
        for kind, present in (("thin", lv.is_thin), ("snapshot", lv.is_snapshot),
                              ("snapshot origin", lv.is_origin), ("cache", lv.is_cache),
                              ("raid/mirror", lv.is_raid)):
            if present:
                raise ActivationError(f"{lv.vg}/{lv.name} is a {kind} LV: lvmlockd allows "
                                      f"only exclusive activation for it")


# --- running the helper ---------------------------------------------------------------

class Runner(Protocol):
    """Run argv on host; return the result, never raise on a non-zero exit."""

    def __call__(self, host: str, argv: list[str]) -> CommandResult: ...


# Everything the helper accepts (VG/LV names, tags, sizes, modes) fits this
# set, so a built argv is also safe to paste into a remote shell script.
_SAFE_ARG_RE = re.compile(r"[A-Za-z0-9+_.:=-]+")


def helper_argv(config: Config, verb: str, *args: object) -> list[str]:
    """argv that runs one node-helper verb on a worker.

    Validated here with the helper's own lvm_argv(), so a request the worker
    would refuse fails before any SSH connection.  Public so that an action
    can join several steps into one remote script (shlex.join each argv).
    """
    words = [str(arg) for arg in args]
    for word in words:
        if not _SAFE_ARG_RE.fullmatch(word):
            raise InvalidArgument(f"{verb}: invalid argument {word!r}")
    if verb != "version":
        try:
            lvm_argv(verb, words, list(config.volume_groups))
        except Refused as exc:
            raise InvalidArgument(f"{verb}: {exc}") from None
    elif words:
        raise InvalidArgument("version: takes no arguments")
    return [config.sudo, "-n", config.node_helper, verb, *words]


# The host's lock manager cannot serve the VG at all (not contention: nothing
# to retry): lvmlockd is not running, or the VG's lockspace is not started.
LOCKD_DOWN_RE = re.compile(r"lvmlockd process is not running", re.I)
LOCKSPACE_DOWN_RE = re.compile(r"Cannot access VG \S+ due to failed lock", re.I)


def _is_noise(line: str) -> bool:
    return line.startswith("WARNING") or line.startswith("Retrying ")


def last_error_line(stderr: str) -> str:
    """LVM's last meaningful stderr line (WARNING chatter skipped)."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    meaningful = [line for line in lines if not _is_noise(line)]
    return (meaningful or lines or [""])[-1]


# stderr pattern -> error type and what it means for the admin; first match wins
# (contention before "lock manager down" before "not found").
_KNOWN_FAILURES = (
    (LV_LOCKED_RE, LockContention, "the LV lock is held by another host (active there?): "),
    (TRANSIENT_LOCK_RE, LockContention,
     "the VG lock is held by another host and retries ran out: "),
    (LOCKD_DOWN_RE, LockManagerDown,
     "lvmlockd is not running on {host} (start it, then vgchange --lock-start): "),
    (LOCKSPACE_DOWN_RE, LockManagerDown,
     "the VG's lockspace is not started on {host} (vgchange --lock-start there): "),
    (NOT_FOUND_RE, NotFound, ""),
)


def raise_for_result(host: str, result: CommandResult, target: str) -> None:
    """Map a failed helper run to a typed error; no-op on success.

    `target` names what was being changed ("vg_one/lv-one-7-0", "VG vg_one").
    """
    if result.exit_status != 0:
        raise lvm_error(host, result, target)


def lvm_error(host: str, result: CommandResult, target: str) -> DriverError:
    """The typed error for a failed helper run (see raise_for_result)."""
    line = last_error_line(result.stderr) or f"exit status {result.exit_status}"
    if result.exit_status == EXIT_REFUSED:
        return HelperRefused(f"{host}: node helper refused the request for {target}: {line}")
    for pattern, error, explanation in _KNOWN_FAILURES:
        if pattern.search(result.stderr or ""):
            return error(f"{host}: {target}: {explanation.format(host=host)}{line}")
    return LvmError(f"{host}: {target}: {line}")


def _check_size(size_bytes: object) -> int:
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or not (
            0 < size_bytes < 10 ** 20):
        raise InvalidArgument(f"invalid size {size_bytes!r}: expected a positive byte count")
    return size_bytes


class LvmClient:
    """LVM operations on one worker (`host`) through the node helper."""

    def __init__(self, config: Config, runner: Runner, host: str):
        self.config = config
        self.runner = runner
        self.host = check_host(host)
        self.policy = ActivationPolicy(config.lock_mode)

    def _vg(self, vg: str) -> str:
        return self.config.check_vg(check_vg(vg))

    def _run(self, vg: str, lv: str | None, verb: str, *args: object) -> CommandResult:
        result = self.runner(self.host, helper_argv(self.config, verb, vg, *args))
        raise_for_result(self.host, result, f"{vg}/{lv}" if lv else f"VG {vg}")
        return result

    # reports

    def vgs(self, vg: str) -> VolumeGroup:
        vg = self._vg(vg)
        result = self._run(vg, None, "vgs")
        found = [group for group in self._parse(parse_vgs_json, result) if group.name == vg]
        if len(found) != 1:
            raise NotFound(f"{self.host}: VG {vg} is not in the vgs report")
        return found[0]

    def lvs(self, vg: str, names: Iterable[str] | None = None) -> list[LogicalVolume]:
        vg = self._vg(vg)
        wanted = [check_lv(name) for name in names or ()]
        result = self._run(vg, None, "lvs", *wanted)
        volumes = self._parse(parse_lvs_json, result)
        if wanted:  # the helper selects exactly; filter again rather than trust it
            volumes = [lv for lv in volumes if lv.name in wanted]
        return volumes

    def lv(self, vg: str, name: str) -> LogicalVolume | None:
        found = self.lvs(vg, [name])
        return found[0] if found else None

    def _parse(self, parser, result: CommandResult):
        try:
            return parser(result.stdout)
        except LvmError as exc:
            raise LvmError(f"{self.host}: {exc}") from None

    # changes

    def create(self, vg: str, name: str, size_bytes: int,
               tags: Iterable[str] = ()) -> None:
        vg, name = self._vg(vg), check_lv(name)
        self._run(vg, name, "create", name, _check_size(size_bytes),
                  *[check_tag(tag) for tag in tags])

    def remove(self, vg: str, name: str) -> None:
        vg, name = self._vg(vg), check_lv(name)
        self._run(vg, name, "remove", name)

    def extend(self, vg: str, name: str, size_bytes: int) -> None:
        """Grow `name` to `size_bytes` in total (not by)."""
        vg, name = self._vg(vg), check_lv(name)
        self._run(vg, name, "extend", name, _check_size(size_bytes))

    def activate(self, vg: str, name: str, mode: str = "exclusive") -> None:
        """Activate on this host; `mode` is an intent: exclusive, shared or off."""
        vg, name = self._vg(vg), check_lv(name)
        flag = self.policy.flag(mode)
        if mode == "shared" and self.policy.lock_mode == "lvmlockd":
            volume = self.lv(vg, name)
            if volume is None:
                raise NotFound(f"{self.host}: {vg}/{name}: logical volume not found")
            self.policy.check_shared_allowed(volume)
        self._run(vg, name, "activate", name, flag)

    def deactivate(self, vg: str, name: str) -> None:
        self.activate(vg, name, "off")

    def add_tag(self, vg: str, name: str, tag: str) -> None:
        vg, name = self._vg(vg), check_lv(name)
        self._run(vg, name, "addtag", name, check_tag(tag))

    def del_tag(self, vg: str, name: str, tag: str) -> None:
        vg, name = self._vg(vg), check_lv(name)
        self._run(vg, name, "deltag", name, check_tag(tag))
