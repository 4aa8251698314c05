"""Two actions of one VM never interleave: Action.bind_vm holds the VM's
front-end lock until the action (and its undo) has ended."""

from __future__ import annotations

import multiprocessing
import os

from one_gfs2clvm.config import parse
from one_gfs2clvm.errors import LockTimeout
from one_gfs2clvm.locking import named_lock
from one_gfs2clvm.opennebula import runtime


def _config(tmp_path):
    return parse(f"[storage]\nvolume_groups = vg_one\n[locking]\nlock_dir = {tmp_path}/locks\n"
                 f"lock_timeout = 0.5\n", source="t.conf")


def _hold(config, ready, done):
    with named_lock(config, "vm-7"):
        ready.set()
        done.wait(30)


def test_an_action_waits_for_another_action_of_the_same_vm(tmp_path, capsys):
    config = _config(tmp_path)
    ready, done = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(config, ready, done))
    holder.start()
    try:
        assert ready.wait(10)
        reached = []

        def action(act, argv):
            act.bind_vm(7)
            reached.append("work")

        def other(act, argv):
            act.bind_vm(8)                       # another VM: not blocked
            reached.append("other")

        assert runtime.run("clone", action, [], config=config) == LockTimeout.exit_code
        assert reached == []
        assert "could not lock" in capsys.readouterr().err
        assert runtime.run("clone", other, [], config=config) == 0
        assert reached == ["other"]
    finally:
        done.set()
        holder.join(10)
    assert runtime.run("clone", action, [], config=config) == 0      # released: goes on


def test_the_lock_is_released_after_a_failure_and_rebinding_is_refused(tmp_path):
    config = _config(tmp_path)

    def fails(act, argv):
        act.bind_vm(7)
        act.bind_vm(7)                           # idempotent
        act.bind_vm(9)                           # another VM: a bug

    assert runtime.run("delete", fails, [], config=config) == runtime.INTERNAL_ERROR
    with named_lock(config, "vm-7"):             # free again (same process: re-entrant,
        pass                                     # so check from a child below)
    child = multiprocessing.Process(target=lambda: os._exit(0 if _free(config) else 1))
    child.start()
    child.join(10)
    assert child.exitcode == 0


def _free(config) -> bool:
    try:
        with named_lock(config, "vm-7"):
            return True
    except LockTimeout:
        return False
