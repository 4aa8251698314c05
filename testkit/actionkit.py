"""What the per-action unit tests share (tests/unit/test_actions_*.py).

Those tests run the actions of one front door each (modern TM, 3.x TM,
datastore, 3.x image manager) against the recording worker
(testkit.recording) and compare what was sent, per host and in order, with
lists built from what is here:

* argv words: `h` (a node-helper call), `dev`, `link_steps`, `convert`,
  `receiver`, `MOUNT_CHECK`, `on` (argvs on one host); the LV tag words
  (`USED`, `INCOMPLETE`, `RO`, `made`);
* the scripts every door sends alike: `activate_and_link`, `copy_into`,
  `failed_copy_undone` (what follows a failed copy), `removed_new_lv` (the
  undo of a created LV), `zero_and_remove`;
* checks: `ok`, `failed` (with the 3.x framing, or nothing on stdout, as a
  door wants), `state` (an LV's tags and activations), `monitor_output`;
* the world: `make_config` (the one configuration, lock mode and zeroing as
  parameters), `users_api` (oned with oneadmin and alice), `world_of` (a
  world whose .run goes through a door's argv-level entry).

What one door's tests alone need (its LVs, links, VMs and images, its
scenario steps) stays in its file.  Plain functions and constants: no
fixtures, nothing patched on import.  tests/conftest.py has pytest rewrite
the asserts here as in a test module.
"""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

from one_gfs2clvm import config as config_module
from testkit.fakeoned import user_doc
from testkit.recording import MiB, FakeApi, installed, run_action

M = "/var/lib/one"                        # [storage] gfs2_mount
FE = socket.gethostname()                 # the front-end, as OpenNebula names it
SUDO, HELPER = "/usr/bin/sudo", "/usr/sbin/one-gfs2clvm-helper"
ALICE = 5                                 # alice's user id (group 1, "users")

# LV tag words
USED = "one-use"                          # one-use=<vm>:<disk>:<host>
INCOMPLETE = "one-incomplete"             # an LV being made
RO = "one-readonly"                       # an image LV some VM uses READONLY
REGTIME = 1_760_000_000 - 86400           # image_doc's REGTIME: the made tag's stamp

# The 3.x error framing around the one error line on stderr.
FRAMING = ("ERROR MESSAGE --8<------", "ERROR MESSAGE ------>8--")


# ----------------------------------------------------------------- argv words

def h(verb: str, *args) -> tuple[str, ...]:
    """A node-helper call as the worker sees it."""
    return (SUDO, "-n", HELPER, verb, *map(str, args))


MOUNT_CHECK = ("sh", "-c", 'mountpoint -q "$1"', "gfs2clvm-mount-check", M)


def dev(lv: str) -> str:
    return f"/dev/vg_one/{lv}"


def link_steps(target: str, path: str) -> list[tuple[str, ...]]:
    return [("mkdir", "-p", os.path.dirname(path)), ("ln", "-sfn", target, path)]


def convert(source: str, target: str, fmt: str = "raw", progress: bool = True
            ) -> tuple[str, ...]:
    return ("qemu-img", "convert", "-p" if progress else "-q", "-n", "-f", fmt, "-O", "raw",
            "-t", "none", "-W", source, target)


def receiver(kind: str, path: str, known_zero: str) -> tuple[str, ...]:
    """The streamed-import receiver step as the worker log records it."""
    return ("/usr/bin/python3", "-c", "<stream_receiver program>", kind, path, known_zero)


def on(host: str, *argvs) -> list[tuple[str, tuple[str, ...]]]:
    return [(host, tuple(argv)) for argv in argvs]


def made(action: str) -> str:
    """The made tag an image action puts on the LV it creates for an image
    whose document oned gave (stamped with its REGTIME)."""
    return f"one-made={action}.{REGTIME}"


# ----------------------------------------------------------------- scripts every door sends

def activate_and_link(lv: str, path: str, flag: str = "ey",
                      tags: list[tuple[str, ...]] = ()) -> list[tuple[str, ...]]:
    """The activate + link script (volumes.ops.Disks.activate_and_link): GFS2
    mounted?, `lv` activated (`flag`), then the tag steps `tags` (`retag`,
    `use`; one helper batch), `path` linked to its device."""
    return [MOUNT_CHECK, h("activate", "vg_one", lv, flag), *tags, *link_steps(dev(lv), path)]


def retag(lv: str, drop: list[str] = (), add: list[str] = ()) -> tuple[str, ...]:
    """The one-lvchange tag step (volumes.ops.Disks.retag_step)."""
    return h("retag", "vg_one", lv, *(w for t in drop for w in ("deltag", t)),
             *(w for t in add for w in ("addtag", t)))


def use(lv: str, vm: int, disk: int, host: str | None, readonly: bool = False
        ) -> tuple[str, ...]:
    """The use-tag step (volumes.ops.Disks.use_step): the helper sets the
    LV's use tags for (vm, disk) to `host` (None: not in use)."""
    return h("use", "vg_one", lv, vm, disk, host or "-", *(["readonly"] if readonly else []))


def copy_into(source: str, target: str) -> list[tuple[str, ...]]:
    """The one copy script (volumes.copies.copy_into) for a `source` LV not
    active on the host: `target` activated exclusively, `source` activated
    for reading, converted, `source` released."""
    return [h("activate", "vg_one", target, "ey"), h("activate", "vg_one", source, "sy"),
            convert(dev(source), dev(target)), h("activate", "vg_one", source, "n")]


def filled_new_lv(source: str | None, target: str, size: int, tags: list[str] = (),
                  copy_from: str | None = None, fmt: str = "raw", link: str | None = None,
                  keep_active: bool = False) -> list[tuple[str, ...]]:
    """A new LV filled by volumes.copies.fill_new_volume: one batch creating
    `target` (incomplete, `tags`), activating it and read-activating the
    `source` LV (None: a file, or an LV already active here); the copy (from
    `copy_from`, default the source's device); one batch releasing the source,
    deactivating `target` unless `keep_active` and dropping the mark, then the
    `link` (GFS2 checked first)."""
    release = [h("activate", "vg_one", source, "n")] if source else []
    finish = [*release, *([] if keep_active else [h("activate", "vg_one", target, "n")]),
              h("deltag", "vg_one", target, INCOMPLETE)]
    if link:
        finish = [MOUNT_CHECK, *finish, *link_steps(dev(target), link)]
    return [h("create", "vg_one", target, size, INCOMPLETE, *tags),
            h("activate", "vg_one", target, "ey"),
            *([h("activate", "vg_one", source, "sy")] if source else []),
            convert(copy_from or dev(source), dev(target), fmt), *finish]


def removed_new_lv(lv: str, host: str = "node1") -> list:
    """The undo of a created LV: report, then deactivate + remove in one script."""
    return on(host, h("lvs", "vg_one", lv), h("activate", "vg_one", lv, "n"),
              h("remove", "vg_one", lv))


def failed_copy_undone(source: str | None, target: str, host: str = "node1",
                       removed: bool = True) -> list:
    """What follows a failed copy (volumes.copies.copy_into, fill_new_volume) on `host`, each
    step alone: the `source` LV released (None: nothing to release -- a file, or
    an LV already active there), `target` deactivated; then, when `removed`
    (the action created `target`), the undo removing it (removed_new_lv)."""
    release = [h("activate", "vg_one", source, "n")] if source is not None else []
    steps = on(host, *release, h("activate", "vg_one", target, "n"))
    return steps + (removed_new_lv(target, host) if removed else [])


def zero_and_remove(lv: str | None, *snapshots: str) -> list[tuple[str, ...]]:
    """Removing `lv` with its snapshot LVs (zeroing on_delete): one script that
    activates each exclusively (one helper batch), then zeroes each (the LV
    first, then the snapshots), one that deactivates and removes the
    snapshots, in the order given, then the LV.  `lv` None: the LV is gone,
    only its snapshots left."""
    names = ([lv] if lv else []) + list(snapshots)
    steps = [h("activate", "vg_one", name, "ey") for name in names]
    steps += [("/sbin/blkdiscard", "--zeroout", dev(name)) for name in names]
    for name in (*snapshots, *([lv] if lv else [])):
        steps += [h("activate", "vg_one", name, "n"), h("remove", "vg_one", name)]
    return steps


# ----------------------------------------------------------------- checks

def ok(outcome, stdout: str | None = None) -> None:
    """Exit 0, no error line; with `stdout`, exactly that on stdout."""
    assert outcome.code == 0, outcome.stderr
    assert outcome.error_lines() == [], outcome.stderr
    if stdout is not None:
        assert outcome.stdout == stdout


def failed(outcome, code: int, *words: str, framed: bool = False,
           quiet: bool = False) -> str:
    """Exit `code` with exactly one error line (containing `words`), returned;
    `framed`: that line alone inside the 3.x ERROR MESSAGE framing; `quiet`:
    nothing on stdout."""
    assert outcome.code == code, outcome.stderr
    (line,) = outcome.error_lines()
    for word in words:
        assert word in line, line
    if framed:
        lines = [text for text in outcome.stderr.splitlines() if not text.startswith("INFO:")]
        assert lines == [FRAMING[0], line, FRAMING[1]]
    if quiet:
        assert outcome.stdout == ""
    return line


def state(worker, name):
    """An LV's (sorted tags, activation per host), or None when it is gone."""
    lv = worker.lv(name)
    return None if lv is None else (sorted(lv.tags), dict(lv.active))


def monitor_output(worker) -> str:
    """What monitor prints for the worker's VG (100 GiB, every LV counted used)."""
    used = sum(lv.size for lv in worker.vg.lvs.values()) // MiB
    return f"USED_MB={used}\nFREE_MB={102400 - used}\nTOTAL_MB=102400\n"


# ----------------------------------------------------------------- the world

def make_config(tmp_path, source: str, lock_mode: str = "lvmlockd",
                zeroing: str = "on_delete"):
    """One VG (vg_one), GFS2 at M, bridge hosts node1 and node2, the helper
    behind sudo, locks under tmp_path/locks with no waiting."""
    (tmp_path / "locks").mkdir(exist_ok=True)
    return config_module.parse(
        f"[storage]\nvolume_groups = vg_one\ngfs2_mount = {M}\nbridge_hosts = node1, node2\n"
        f"lock_mode = {lock_mode}\nzeroing = {zeroing}\n"
        f"[node]\nhelper = {HELPER}\nsudo = {SUDO}\n"
        f"[locking]\nlock_dir = {tmp_path / 'locks'}\nlock_timeout = 0\n",
        source=source)


def world_of(config, worker, api: FakeApi, entry, legacy: bool = False,
             remotes_dir: str | None = None, **more) -> SimpleNamespace:
    """A test's world: .config, .worker, .api (and `more`) as attributes, and
    .run(name, *argv, stdin=None), which runs the action `entry(name)` names
    -- a (function, program name) pair -- through its argv-level entry with
    `worker` and `api` installed (3.x error framing when `legacy`; migrate
    actions look for other TMs under `remotes_dir`) and returns its Outcome."""
    world = SimpleNamespace(config=config, worker=worker, api=api, **more)

    def run(name: str, *argv: str, stdin: bytes | None = None):
        function, program = entry(name)
        with installed(worker, api, remotes_dir=remotes_dir):
            return run_action(function, program, list(argv), config, stdin=stdin,
                              legacy=legacy, worker=worker)

    world.run = run
    return world


def users_api() -> FakeApi:
    """A fake oned that knows oneadmin (0, group 0) and alice (ALICE, group 1)."""
    api = FakeApi()
    api.add_user(user_doc(0, name="oneadmin", gid=0))
    api.add_user(user_doc(ALICE, name="alice", gid=1))
    return api
