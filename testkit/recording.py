"""A recording worker and a fake oned, for unit tests of the actions (no lab, no ssh).

THIS IS A STAND-IN.  It lets a test run any action in-process (through
`runtime.run`, with the driver's real Cluster, LvmClient, helper argv
builder and run_steps error mapping) and then look at every remote command
the action sent, per host.  It behaves like a real worker in these respects,
and in no others:

* the node helper (`sudo -n <helper> VERB ...`; a `batch` of steps runs its
  steps in order, each recorded as a Call with via "batch", and stops at the
  first failure with the helper's `batch step K of N failed` line): the
  request is validated
  with the helper's own `nodehelper.lvm_argv` against the configured VGs
  (a refusal exits 64 with the helper's message); `vgs`/`lvs` answer JSON
  in exactly the format the helper produces (lvm.py parses it); `create`,
  `remove`, `extend`, `addtag`, `deltag`, `retag`, `use` (the helper's own
  `use_tag_change` rule) and `activate` change a
  tiny in-memory model of the VG(s), with LVM's error lines for a missing
  or already existing LV, too little free space and (lvmlockd-style) an LV
  active on another host (`-aey` while active elsewhere, `-asy` while
  exclusive elsewhere, removal while active elsewhere);
* GFS2 is one shared namespace of symlinks (`disk.N` links): `ln -sfn`,
  `readlink`, `find DIR ... -type l -printf '%f %l\\n'`, `rm -f`, `rm -rf`
  and `mv` act on it.  Every other path is taken to exist as a regular
  file unless listed in `GfsModel.missing` (so `readlink -e`, `test -f`,
  `stat`, `qemu-img info`, `md5sum` answer as if the file were there: the
  actions get as far as they would on a real worker that has the file);
* `qemu-img info` answers a 1 GiB raw image (an LV: its size),
  `blockdev --getsize64` the LV's size, `stat -L -c %s` 10 MiB, `md5sum` /
  `sha1sum` the digest of nothing; every other command (qemu-img convert,
  blkdiscard, mkfs, mkswap, tar, xorriso, the stream receiver, sh -c ...)
  succeeds with empty output.  Data is not modelled at all;
* stdin (bytes or a stream such as the import Framer) is read to the end,
  as paramiko's feeder thread would;
* a script (run_script) runs its steps in order and stops at the first
  failing one, raising RemoteCommandFailed with that step's text, exactly
  like remote.Remote.run_script; run(check=True) raises like Remote.run;
* hosts in `down` raise ConnectError (with .host) on connect.

Nothing else of a worker exists: no timing, no lock manager beyond the rule
above, no sudo, no shell parsing of `sh -c` scripts.

Use:

    worker = RecordingWorker(config)                  # add LVs / links as needed
    worker.vg.add("vg_one", "lv-oneimg-5", 1 << 30)
    worker.gfs.links["/var/lib/one/datastores/0/7/disk.0"] = "/dev/vg_one/lv-one-7-0"
    api = FakeApi(); api.add_vm(vm_doc(7, disks=[...]))
    with installed(worker, api):                      # patches get_remote + runtime.Action
        outcome = run_action(tm.ACTIONS["delete"], "delete", argv, config)
    outcome.code, outcome.stderr, worker.calls        # Call(host, argv, via, stdin)

`worker.snapshot()` / `worker.restore(state)` reset the model between cases.
`ScriptedWorker` adds canned answers: `fail(*argv_prefix, host=)` makes the
first matching command fail once (`after_failure()`: what was sent after it,
i.e. the undo), `reply(*argv_prefix, stdout=)` answers matching commands.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import posixpath
import shlex
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Iterable
from unittest import mock

from one_gfs2clvm import remote as remote_module
from one_gfs2clvm.errors import ConnectError, InvalidArgument, RemoteCommandFailed
from one_gfs2clvm.nodehelper import (EXIT_REFUSED, VERSION, Refused, batch_steps, lvm_argv,
                                     use_request, use_tag_change)
from one_gfs2clvm.opennebula import runtime
from one_gfs2clvm.remote import CommandResult, Labeled, Pipe, ShellFragment

GiB = 1 << 30
MiB = 1 << 20
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"


# ----------------------------------------------------------------- records

@dataclass(frozen=True)
class Call:
    """One command a worker ran: `via` is "run" (Remote.run) or "script" (one
    step of Remote.run_script; a Pipe contributes one Call per stage), or
    "batch" (one step of a node-helper batch, recorded after the batch's own
    Call)."""
    host: str
    argv: tuple[str, ...]
    via: str
    stdin: bool = False

    def __str__(self) -> str:
        return f"{self.host}: {shlex.join(self.argv)}"


# ----------------------------------------------------------------- the VG model

@dataclass
class LvState:
    size: int
    tags: list[str] = field(default_factory=list)
    active: dict[str, str] = field(default_factory=dict)   # host -> "ey" | "sy" | "y"


class VgModel:
    """LVs per VG; what `vgs`/`lvs` report and the change verbs modify."""

    def __init__(self, vgs: Iterable[str], size: int = 100 * GiB):
        self.size = {vg: size for vg in vgs}
        self.lvs: dict[tuple[str, str], LvState] = {}

    def add(self, vg: str, name: str, size: int = GiB, tags: Iterable[str] = (),
            active: dict[str, str] | None = None) -> None:
        self.size.setdefault(vg, 100 * GiB)
        self.lvs[(vg, name)] = LvState(size, list(tags), dict(active or {}))

    def free(self, vg: str) -> int:
        return self.size[vg] - sum(lv.size for (g, _), lv in self.lvs.items() if g == vg)

    # -- reports, as nodehelper's LV_FIELDS / VG_FIELDS produce them
    def lv_row(self, vg: str, name: str, host: str) -> dict:
        lv = self.lvs[(vg, name)]
        mode = lv.active.get(host)
        dm = f"/dev/mapper/{vg.replace('-', '--')}-{name.replace('-', '--')}"
        return {"lv_name": name, "vg_name": vg, "lv_uuid": f"uuid-{vg}-{name}",
                "lv_size": str(lv.size), "lv_attr": "-wi-a-----" if mode else "-wi-------",
                "lv_active": "active" if mode else "",
                "lv_active_locally": "active locally" if mode else "",
                "lv_active_exclusively": "active exclusively" if mode == "ey" else "",
                "lv_tags": ",".join(lv.tags), "lv_layout": "linear", "origin": "",
                "lv_path": f"/dev/{vg}/{name}", "lv_dm_path": dm, "lv_lock_args": "dlm"}

    def vg_row(self, vg: str) -> dict:
        count = sum(1 for (g, _) in self.lvs if g == vg)
        return {"vg_name": vg, "vg_uuid": f"uuid-{vg}", "vg_size": str(self.size[vg]),
                "vg_free": str(self.free(vg)), "vg_extent_size": "4194304",
                "vg_attr": "wz--ns", "vg_lock_type": "dlm", "vg_shared": "shared",
                "lv_count": str(count), "vg_tags": ""}


# ----------------------------------------------------------------- the GFS2 model

@dataclass
class GfsModel:
    """The shared filesystem: symlinks (path -> target) and paths known absent.
    Any other path "exists" as a regular file (see the module docstring)."""
    links: dict[str, str] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)

    @staticmethod
    def norm(path: str) -> str:
        return posixpath.normpath(path) if path.startswith("/") else path

    def exists(self, path: str) -> bool:
        path = self.norm(path)
        return path not in self.missing and not any(
            path.startswith(gone.rstrip("/") + "/") for gone in self.missing)

    def remove_tree(self, path: str) -> None:
        path = self.norm(path)
        for link in [p for p in self.links if p == path or p.startswith(path + "/")]:
            del self.links[link]
        self.missing.add(path)

    def remove(self, path: str) -> None:
        path = self.norm(path)
        self.links.pop(path, None)
        self.missing.add(path)

    def link(self, target: str, path: str) -> None:
        path = self.norm(path)
        self.links[path] = target
        self.missing.discard(path)

    def move(self, src: str, dst: str) -> None:
        src, dst = self.norm(src), self.norm(dst)
        for path in [p for p in self.links if p == src or p.startswith(src + "/")]:
            self.links[dst + path[len(src):]] = self.links.pop(path)
        self.missing.add(src)
        self.missing.discard(dst)


# ----------------------------------------------------------------- the worker

def _ok(stdout: str = "") -> CommandResult:
    return CommandResult(0, stdout, "", stdout.encode(), b"")


def _fail(status: int, stderr: str, stdout: str = "") -> CommandResult:
    return CommandResult(status, stdout, stderr, stdout.encode(), stderr.encode())


class RecordingWorker:
    """Every worker of the cluster at once: one VG model, one GFS2 model, one
    log of calls.  `remote(host)` is what remote.get_remote returns while
    `installed()` is active."""

    def __init__(self, config, vg: VgModel | None = None, gfs: GfsModel | None = None,
                 down: Iterable[str] = ()):
        self.config = config
        self.vg = vg or VgModel(config.volume_groups)
        self.gfs = gfs or GfsModel()
        self.down = set(down)
        self.calls: list[Call] = []
        self.contacted: list[str] = []     # every host get_remote was asked for
        self.helper_prefix = (config.sudo, "-n", config.node_helper)

    # -- state between cases
    def snapshot(self):
        return copy.deepcopy((self.vg.size, self.vg.lvs, self.gfs.links, self.gfs.missing,
                              self.down))

    def restore(self, state) -> None:
        size, lvs, links, missing, down = copy.deepcopy(state)
        self.vg.size, self.vg.lvs = size, lvs
        self.gfs.links, self.gfs.missing, self.down = links, missing, down
        self.calls.clear()
        self.contacted.clear()

    # -- what get_remote returns
    def remote(self, host: str) -> "FakeRemote":
        self.contacted.append(host)
        return FakeRemote(self, host)

    # -- views for assertions
    def is_batch(self, call: Call) -> bool:
        """The Call of a whole helper batch (its steps follow as their own Calls)."""
        n = len(self.helper_prefix)
        return call.argv[:n] == self.helper_prefix and call.argv[n:n + 1] == ("batch",)

    def listed(self, calls: Iterable[Call]) -> list[Call]:
        """Every command that ran, batches shown as their steps."""
        return [c for c in calls if not self.is_batch(c)]

    def commands(self, host: str | None = None) -> list[tuple[str, ...]]:
        return [c.argv for c in self.listed(self.calls) if host is None or c.host == host]

    def helper_calls(self) -> list[tuple[str, tuple[str, ...]]]:
        """(host, (verb, args...)) of every node-helper request (batch steps each)."""
        n = len(self.helper_prefix)
        return [(c.host, c.argv[n:]) for c in self.listed(self.calls)
                if c.argv[:n] == self.helper_prefix]

    def helper_runs(self, host: str | None = None, start: int = 0) -> int:
        """How many times the node helper was started (sudo + python): a batch
        counts once, its steps not again."""
        n = len(self.helper_prefix)
        return sum(1 for c in self.calls[start:] if c.argv[:n] == self.helper_prefix
                   and c.via != "batch" and (host is None or c.host == host))

    # -- answering one argv
    def answer(self, host: str, argv: tuple[str, ...]) -> CommandResult:
        n = len(self.helper_prefix)
        if argv[:n] == self.helper_prefix:
            return self._helper(host, list(argv[n:]))
        program = posixpath.basename(argv[0]) if argv else ""
        handler = getattr(self, "_cmd_" + program.replace("-", "_").replace(".", "_"), None)
        return handler(host, list(argv[1:])) if handler else _ok()

    # -- the node helper
    def _helper(self, host: str, words: list[str]) -> CommandResult:
        if not words:
            return _fail(EXIT_REFUSED, "one-gfs2clvm-helper: refused: no verb given\n")
        verb, args = words[0], words[1:]
        if verb == "batch":
            return self._batch(host, args)
        if verb == "version":
            return _ok(json.dumps({"helper": VERSION, "lock_mode": self.config.lock_mode,
                                   "volume_groups": list(self.config.volume_groups)}) + "\n")
        try:
            lvm_argv(verb, args, list(self.config.volume_groups))
        except Refused as exc:
            return _fail(EXIT_REFUSED, f"one-gfs2clvm-helper: refused: {exc}\n")
        vg = args[0]
        model = self.vg
        if vg not in model.size:
            return _fail(5, f'  Volume group "{vg}" not found\n')
        if verb == "vgs":
            return _ok(json.dumps({"report": [{"vg": [model.vg_row(vg)]}]}))
        if verb == "lvs":
            names = args[1:]
            rows = [model.lv_row(g, name, host) for (g, name) in sorted(model.lvs)
                    if g == vg and (not names or name in names)]
            return _ok(json.dumps({"report": [{"lv": rows}]}))
        name = args[1]
        key = (vg, name)
        lv = model.lvs.get(key)
        missing = _fail(5, f'  Failed to find logical volume "{vg}/{name}"\n')
        if verb == "create":
            if lv is not None:
                return _fail(5, f'  Logical Volume "{name}" already exists in volume group '
                                f'"{vg}"\n')
            size = int(args[2])
            if size > model.free(vg):
                return _fail(5, f'  Volume group "{vg}" has insufficient free space\n')
            model.add(vg, name, size, args[3:])
            return _ok(f'  Logical volume "{name}" created.\n')
        if lv is None:
            return missing
        elsewhere = [h for h in lv.active if h != host]
        locked = _fail(5, f"  LV locked by other host: {vg}/{name}\n")
        if verb == "remove":
            if elsewhere:
                return locked
            del model.lvs[key]
            return _ok(f'  Logical volume "{name}" successfully removed.\n')
        if verb == "extend":
            size = int(args[2])
            if size <= lv.size:
                return _fail(5, f"  New size given ({size}) not larger than existing size "
                                f"({lv.size})\n")
            if size - lv.size > model.free(vg):
                return _fail(5, f'  Volume group "{vg}" has insufficient free space\n')
            lv.size = size
            return _ok()
        if verb in ("addtag", "deltag", "retag", "use"):
            if verb == "use":
                add, drop = use_tag_change(list(lv.tags), *use_request(args[2:]))
                changes = [("deltag", t) for t in drop] + [("addtag", t) for t in add]
            elif verb == "retag":
                changes = list(zip(args[2::2], args[3::2]))
            else:
                changes = [(verb, args[2])]
            for change, tag in changes:
                if change == "addtag" and tag not in lv.tags:
                    lv.tags.append(tag)
                if change == "deltag" and tag in lv.tags:
                    lv.tags.remove(tag)
            return _ok()
        if verb == "activate":
            mode = args[2]
            if mode in ("n", "ln"):
                lv.active.pop(host, None)
                return _ok()
            if self.config.lock_mode == "lvmlockd":
                if mode == "ey" and elsewhere:
                    return locked
                if mode == "sy" and any(lv.active[h] == "ey" for h in elsewhere):
                    return locked
            lv.active[host] = mode
            return _ok()
        return _ok()

    def _batch(self, host: str, args: list[str]) -> CommandResult:
        try:
            steps = batch_steps(args, list(self.config.volume_groups))
        except Refused as exc:
            return _fail(EXIT_REFUSED, f"one-gfs2clvm-helper: refused: {exc}\n")
        out = []
        for number, (verb, step_args, _) in enumerate(steps, 1):
            argv = (*self.helper_prefix, verb, *step_args)
            self.calls.append(Call(host, argv, "batch"))
            result = self.answer(host, argv)
            out.append(result.stdout)
            if result.exit_status != 0:
                return _fail(result.exit_status,
                             f"one-gfs2clvm-helper: batch step {number} of {len(steps)} "
                             f"failed: {verb} {step_args[0]}/{step_args[1]}\n" + result.stderr,
                             "".join(out))
        return _ok("".join(out))

    # -- other commands (argv without the program)
    def _size_of(self, path: str) -> int:
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "dev" and (parts[2], parts[3]) in self.vg.lvs:
            return self.vg.lvs[(parts[2], parts[3])].size
        return GiB

    def _cmd_readlink(self, host, args):
        paths = [a for a in args if not a.startswith("-")]
        if not paths:
            return _fail(1, "readlink: missing operand\n")
        path = self.gfs.norm(paths[-1])
        if "-e" in args or "-f" in args:
            if not self.gfs.exists(path):
                return _fail(1, "")
            return _ok(self.gfs.links.get(path, path) + "\n")
        target = self.gfs.links.get(path)
        return _ok(target + "\n") if target is not None else _fail(1, "")

    def _cmd_find(self, host, args):
        if not args:
            return _ok()
        directory = self.gfs.norm(args[0]).rstrip("/") or "/"
        lines = [f"{posixpath.basename(p)} {t}" for p, t in sorted(self.gfs.links.items())
                 if posixpath.dirname(p) == directory
                 and posixpath.basename(p).startswith("disk.")]
        return _ok("".join(line + "\n" for line in lines))

    def _cmd_test(self, host, args):
        path = args[-1] if args else ""
        return _ok() if path and self.gfs.exists(path) else _fail(1, "")

    def _cmd_stat(self, host, args):
        path = args[-1] if args else ""
        if not path or not self.gfs.exists(path):
            return _fail(1, f"stat: cannot statx '{path}': No such file or directory\n")
        return _ok(f"{10 * MiB}\n")

    def _digest(self, args, digest):
        paths = [a for a in args if a != "--"] or ["-"]
        return _ok("".join(f"{digest}  {p}\n" for p in paths))

    def _cmd_md5sum(self, host, args):
        return self._digest(args, EMPTY_MD5)

    def _cmd_sha1sum(self, host, args):
        return self._digest(args, EMPTY_SHA1)

    def _cmd_qemu_img(self, host, args):
        if args[:1] == ["info"]:
            path = args[-1]
            if not self.gfs.exists(path):
                return _fail(1, f"qemu-img: Could not open '{path}': No such file\n")
            size = self._size_of(path)
            return _ok(json.dumps({"virtual-size": size, "filename": path, "format": "raw",
                                   "actual-size": size, "dirty-flag": False}))
        return _ok()

    def _cmd_blockdev(self, host, args):
        return _ok(f"{self._size_of(args[-1]) if args else GiB}\n")

    def _cmd_ln(self, host, args):
        words = [a for a in args if not a.startswith("-")]
        if len(words) == 2:
            self.gfs.link(words[0], words[1])
        return _ok()

    def _cmd_rm(self, host, args):
        tree = any(a.startswith("-") and "r" in a for a in args)
        for path in (a for a in args if not a.startswith("-")):
            (self.gfs.remove_tree if tree else self.gfs.remove)(path)
        return _ok()

    def _cmd_mv(self, host, args):
        words = [a for a in args if not a.startswith("-")]
        if len(words) == 2:
            self.gfs.move(*words)
        return _ok()

    def _cmd_mkdir(self, host, args):
        for path in (a for a in args if not a.startswith("-")):
            self.gfs.missing.discard(self.gfs.norm(path))
        return _ok()


class FakeRemote:
    """What remote.get_remote returns for one host: Remote's run / run_script /
    reach / transport, recording each command into the worker's log."""

    def __init__(self, worker: RecordingWorker, host: str):
        self.worker = worker
        self.host = host

    def _check_up(self) -> None:
        if self.host in self.worker.down:
            raise ConnectError(f"{self.host}: cannot connect to {self.host}:22: "
                               f"[Errno 113] No route to host", self.host)

    def transport(self):
        self._check_up()
        return self

    def reach(self) -> None:
        self._check_up()

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        pass

    @staticmethod
    def _drain(stdin) -> bool:
        if stdin is None:
            return False
        if isinstance(stdin, (bytes, bytearray, memoryview)):
            return True
        while stdin.read(1 << 20):         # a stream (e.g. the import Framer): read it all
            pass
        return True

    def run(self, argv, stdin=None, timeout=None, check=True) -> CommandResult:
        if not argv:
            raise ValueError("run() needs a non-empty argv list")
        self._check_up()
        had_stdin = self._drain(stdin)
        argv = tuple(str(word) for word in argv)
        self.worker.calls.append(Call(self.host, argv, "run", had_stdin))
        result = self.worker.answer(self.host, argv)
        if check and result.exit_status != 0:
            raise RemoteCommandFailed(self.host, shlex.join(argv), result.exit_status,
                                      result.stderr, result.stdout)
        return result

    def run_script(self, steps, stdin=None, timeout=None, check=True,
                   on_stdout: Callable[[bytes], None] | None = None) -> CommandResult:
        if not steps:
            raise ValueError("run_script() needs at least one step")
        self._check_up()
        had_stdin = self._drain(stdin)
        out, err = [], []
        for index, step in enumerate(steps):
            shown, stages = _stages(step)
            result = _ok()
            for argv in stages:
                self.worker.calls.append(Call(self.host, argv, "script", had_stdin))
                result = self.worker.answer(self.host, argv) if argv else _ok()
                if result.exit_status != 0:
                    break
            out.append(result.stdout)
            err.append(result.stderr)
            if result.exit_status != 0:
                if check:
                    raise RemoteCommandFailed(self.host, shown, result.exit_status,
                                              result.stderr, "".join(out), step_index=index)
                return _fail(result.exit_status, "".join(err), "".join(out))
        stdout = "".join(out)
        if on_stdout is not None and stdout:
            on_stdout(stdout.encode())
        return CommandResult(0, stdout, "".join(err), stdout.encode(), "".join(err).encode())


def _stages(step) -> tuple[str, list[tuple[str, ...]]]:
    """(the step as Remote.run_script shows it, the argv lists it runs)."""
    if isinstance(step, Pipe):
        return str(step), [tuple(stage) for stage in step.stages]
    if isinstance(step, Labeled):
        argv = tuple(step.argv)
        if len(argv) > 2 and argv[1] == "-c":          # a program text: keep the record short
            argv = (argv[0], "-c", f"<{step.label.split()[0]} program>") + argv[3:]
        return str(step), [argv]
    if isinstance(step, ShellFragment):
        return str(step), [("/bin/sh", "-c", str(step))]
    if isinstance(step, str) or not step:
        raise ValueError(f"a run_script step must be an argv list, got {step!r}")
    argv = tuple(str(word) for word in step)
    return shlex.join(argv), [argv]


# ----------------------------------------------------------------- the fake oned

class FakeApi:
    """The four documents an action may ask oned for, kept as parsed xml.py objects.

    Documents are XML text (use testkit/fakeoned.py's vm_doc, image_doc,
    datastore_doc, user_doc) and are parsed with one_gfs2clvm.opennebula.xml
    when added, like api.XmlRpcApi does with oned's answers.  An unknown id
    is oned's NO_EXISTS error (OpenNebulaError, code 0x400).  `vm_default`
    (optional): id -> VM document text (or None) for ids not added, so a
    test can answer "any VM" without listing them; results are cached.
    No XSD validation here (the fakeoned server does that); no permissions:
    the driver reads as oneadmin and applies may_use() itself."""

    def __init__(self, vm_default: Callable[[int], str | None] | None = None):
        from one_gfs2clvm.opennebula import xml
        self._xml = xml
        self.vms: dict[int, object] = {}
        self.images: dict[int, object] = {}
        self.datastores: dict[int, object] = {}
        self.users: dict[int, object] = {}
        self.vm_default = vm_default
        self.calls: list[tuple[str, int]] = []

    def add_vm(self, doc: str):
        vm = self._xml.parse_vm(doc)
        self.vms[vm.id] = vm
        return vm

    def add_image(self, doc: str):
        image = self._xml.parse_image(doc)
        self.images[image.id] = image
        return image

    def add_datastore(self, doc: str):
        ds = self._xml.parse_datastore(doc)
        self.datastores[ds.id] = ds
        return ds

    def add_user(self, doc: str):
        user = self._xml.parse_user(doc)
        self.users[user.id] = user
        return user

    def _get(self, kind: str, table: dict, ident: int, noun: str):
        from one_gfs2clvm.opennebula.api import NO_EXISTS, OpenNebulaError
        if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident < 2 ** 31:
            raise InvalidArgument(f"invalid {kind} id {ident!r}: expected an integer "
                                  f"0..2147483647")     # as api.XmlRpcApi refuses it
        self.calls.append((kind, ident))
        if ident not in table and kind == "vm" and self.vm_default is not None:
            doc = self.vm_default(ident)
            if doc is not None:
                self.add_vm(doc)
        if ident not in table:
            raise OpenNebulaError(f"OpenNebula API: {kind.upper()} {ident}: "
                                  f"[one.{kind}.info] Error getting {noun} [{ident}].",
                                  NO_EXISTS)
        return table[ident]

    def vm(self, vm_id: int):
        return self._get("vm", self.vms, vm_id, "virtual machine")

    def image(self, image_id: int):
        return self._get("image", self.images, image_id, "image")

    def datastore(self, ds_id: int):
        return self._get("datastore", self.datastores, ds_id, "datastore")

    def user(self, user_id: int):
        return self._get("user", self.users, user_id, "user")


# ----------------------------------------------------------------- installing, running

@contextlib.contextmanager
def installed(worker: RecordingWorker, api=None, remotes_dir: str | None = None):
    """While active: remote.get_remote answers with `worker`; every Action that
    runtime.run creates gets `api` (when given) as its oned; http(s) downloads
    fail at once (no network in unit tests); migrate actions find no other TM
    to dispatch to (ONE_REMOTES_DIR -> `remotes_dir`, default an absent path).

    The Cluster stays the real one (helper argv, run_steps error mapping, VG
    locks, bridge fallback), created per Action by Action.cluster.
    A hook in runtime (e.g. an `Action` factory or `run(..., api=)`) would
    make the runtime.Action patch unnecessary."""
    real_action = runtime.Action

    def make_action(*args, **kwargs):
        action = real_action(*args, **kwargs)
        if api is not None and action._api is None:
            action._api = api
        return action

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network access is disabled in unit tests")

    env = {"ONE_REMOTES_DIR": remotes_dir or "/nonexistent/one-remotes-for-tests"}
    with mock.patch.object(remote_module, "get_remote",
                           lambda host, ssh: worker.remote(host)), \
            mock.patch.object(runtime, "Action", make_action), \
            mock.patch.object(urllib.request, "urlopen", no_network), \
            mock.patch.dict(os.environ, env):
        yield worker


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    calls: list[Call]
    contacted: list[str]

    def error_lines(self) -> list[str]:
        """stderr lines that are not INFO: log lines nor 3.x error framing."""
        framing = (runtime.ERROR_OPEN_3X, runtime.ERROR_CLOSE_3X)
        return [line for line in self.stderr.splitlines()
                if not line.startswith("INFO:") and line not in framing]


def run_action(function, name: str, argv: list[str], config, stdin: bytes | None = None,
               legacy: bool = False, worker: RecordingWorker | None = None) -> Outcome:
    """runtime.run(name, function, argv, ...) with stdout/stderr captured; the
    calls are the worker's (pass it, or read worker.calls yourself)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = runtime.run(name, function, list(argv), config=config, stdin=stdin,
                           legacy=legacy)
    return Outcome(code, out.getvalue(), err.getvalue(),
                   list(worker.calls) if worker else [],
                   list(worker.contacted) if worker else [])


# The failure every canned failure reports unless told otherwise.
IO_ERROR = "qemu-img: error while writing at byte 0: Input/output error\n"


class ScriptedWorker(RecordingWorker):
    """The recording worker, plus canned answers: `fail(prefix, host=)` makes the
    first command starting with `prefix` (on `host`, if given) exit non-zero with
    `stderr` (`failed_at`: its index in `calls`); `reply(prefix, stdout)` answers
    every command starting with `prefix` with `stdout`."""

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.canned: list[tuple[str | None, tuple[str, ...], CommandResult]] = []
        self.replies: list[tuple[tuple[str, ...], CommandResult]] = []
        self.failed_at: int | None = None

    def fail(self, *prefix: str, host: str | None = None, status: int = 1,
             stderr: str = IO_ERROR) -> None:
        self.canned.append((host, tuple(prefix),
                            CommandResult(status, "", stderr, b"", stderr.encode())))

    def reply(self, *prefix: str, stdout: str) -> None:
        self.replies.append((tuple(prefix), CommandResult(0, stdout, "", stdout.encode(), b"")))

    def answer(self, host, argv):
        for entry in self.canned:
            where, prefix, result = entry
            if (where is None or where == host) and tuple(argv[:len(prefix)]) == prefix:
                self.canned.remove(entry)
                self.failed_at = len(self.calls) - 1
                return result
        for prefix, result in self.replies:
            if tuple(argv[:len(prefix)]) == prefix:
                return result
        return super().answer(host, argv)

    def sent(self, start: int = 0) -> list[tuple[str, tuple[str, ...]]]:
        """(host, argv) of every command from `start` on, batches as their steps."""
        return [(c.host, c.argv) for c in self.listed(self.calls[start:])]

    def after_failure(self) -> list[tuple[str, tuple[str, ...]]]:
        assert self.failed_at is not None, "the canned failure was never reached"
        return self.sent(self.failed_at + 1)

    def lv(self, name: str):
        return self.vg.lvs.get(("vg_one", name))

    def names(self) -> set[str]:
        return {name for _, name in self.vg.lvs}
