from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from one_gfs2clvm import locking
from one_gfs2clvm.config import Config
from one_gfs2clvm.errors import ConfigError, InvalidArgument, LockTimeout
from one_gfs2clvm.locking import lock_path, vg_lock

# A separate process that takes the lock, says "locked", and holds it until
# its stdin is closed (or exits with 5 on LockTimeout).
CHILD = """
import sys
from one_gfs2clvm.config import Config
from one_gfs2clvm.errors import LockTimeout
from one_gfs2clvm.locking import vg_lock
config = Config(volume_groups=("vg_one", "vg_two"), lock_dir=sys.argv[1],
                lock_timeout=float(sys.argv[2]))
try:
    with vg_lock(config, "vg_one"):
        print("locked", flush=True)
        if sys.argv[3] == "hold":
            sys.stdin.read()
except LockTimeout as exc:
    print(exc, flush=True)
    sys.exit(5)
"""


def make_config(lock_dir, timeout=0.5) -> Config:
    return Config(volume_groups=("vg_one", "vg_two"), lock_dir=str(lock_dir),
                  lock_timeout=timeout)


def child(lock_dir, timeout: float, hold: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lock_dir), str(timeout),
         "hold" if hold else "release"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def holder(lock_dir) -> subprocess.Popen:
    proc = child(lock_dir, 5, hold=True)
    assert proc.stdout.readline() == "locked\n"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def try_from_other_process(lock_dir) -> int:
    """Exit status of a separate process trying the lock once: 0 got it, 5 timed out."""
    proc = child(lock_dir, 0, hold=False)
    proc.communicate(timeout=10)
    return proc.returncode


@pytest.fixture(autouse=True)
def no_leftover_locks():
    yield
    assert locking._held == {}


def test_second_process_times_out(tmp_path):
    config = make_config(tmp_path, timeout=0.5)
    proc = holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            with vg_lock(config, "vg_one"):
                pytest.fail("got a lock another process holds")
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < 3
        assert str(info.value) == (f"could not lock {tmp_path}/gfs2clvm-vg_one.lock within "
                                   f"0.5 s: one holder kept it all that time (a stuck driver action?)")
        # other VGs are independent
        with vg_lock(config, "vg_two") as path:
            assert path == f"{tmp_path}/gfs2clvm-vg_two.lock"
    finally:
        release(proc)
    with vg_lock(config, "vg_one"):
        pass


def test_a_queue_longer_than_the_timeout_still_gets_its_turn(tmp_path):
    """lock_timeout bounds the wait for ONE holder.  Whoever takes the lock
    writes itself into the file; here the lock changes hands (as the file
    shows) every 0.8 s of a 1.5 s timeout for 2.4 s: the waiter keeps waiting
    and then gets it, and the file names it."""
    config = make_config(tmp_path, timeout=1.5)
    path = lock_path(config, "vg_one")
    proc = holder(tmp_path)
    started = time.monotonic()
    try:
        def next_holders():
            for turn in range(3):
                time.sleep(0.8)
                if turn < 2:            # as the next queued action's _claim() would
                    Path(path).write_text(f"{90000 + turn} {time.time_ns()}\n")
            release(proc)
        import threading
        relay = threading.Thread(target=next_holders)
        relay.start()
        with vg_lock(config, "vg_one"):
            waited = time.monotonic() - started
            assert Path(path).read_text().split()[0] == str(os.getpid())
        relay.join(10)
        assert waited >= 2.4
    finally:
        if proc.poll() is None:
            release(proc)


def test_second_process_waits_then_gets_it(tmp_path):
    first = holder(tmp_path)
    second = child(tmp_path, 10, hold=False)
    try:
        time.sleep(0.5)
        assert second.poll() is None  # still waiting
    finally:
        release(first)
    out, _ = second.communicate(timeout=10)
    assert (second.returncode, out) == (0, "locked\n")


def test_released_after_exception(tmp_path):
    config = make_config(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with vg_lock(config, "vg_one"):
            assert try_from_other_process(tmp_path) == 5
            raise RuntimeError("boom")
    assert try_from_other_process(tmp_path) == 0


def test_reentrant_within_process(tmp_path):
    config = make_config(tmp_path, timeout=0)
    with vg_lock(config, "vg_one") as outer:
        with vg_lock(config, "vg_one") as inner:  # would time out if not re-entrant
            assert inner == outer
            assert locking._held["vg:vg_one"].depth == 2
        assert locking._held["vg:vg_one"].depth == 1
        assert try_from_other_process(tmp_path) == 5  # inner exit kept it
    assert try_from_other_process(tmp_path) == 0


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o077], ids=["022", "000", "077"])
def test_creates_lock_dir_and_file_modes(tmp_path, umask):
    lock_dir = tmp_path / "run" / "one"
    old_umask = os.umask(umask)
    try:
        with vg_lock(make_config(lock_dir), "vg_one") as path:
            assert path == str(lock_dir / "gfs2clvm-vg_one.lock")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.lstat(lock_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600 & ~umask


def test_unusable_lock_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as info:
        with vg_lock(make_config(blocker / "locks"), "vg_one"):
            pass
    assert str(info.value) == (f"[locking] lock_dir {blocker}/locks: its parent {blocker} "
                               f"is not a directory")
    with pytest.raises(ConfigError) as info:
        with vg_lock(make_config(blocker), "vg_one"):
            pass
    assert str(info.value) == (f"[locking] lock_dir {blocker}: cannot create or open it: "
                               f"Not a directory")


# --- the lock directory must be the driver's own (issue 8 §2) -----------------
# Tests run as root, so "another user" is made with os.chown to NOBODY.

NOBODY = 65534


def refused(lock_dir) -> str:
    """The one-line ConfigError taking a lock in lock_dir gives."""
    with pytest.raises(ConfigError) as info:
        with vg_lock(make_config(lock_dir), "vg_one"):
            pytest.fail("took a lock in an unsafe lock_dir")
    return str(info.value)


def test_symlinked_lock_dir_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "locks"
    link.symlink_to(real)
    assert refused(link) == (f"[locking] lock_dir {link}: is a symlink: refusing to follow "
                             f"it (make it a directory of its own)")
    assert list(real.iterdir()) == []


def test_foreign_lock_dir_is_refused_and_left_alone(tmp_path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    os.chmod(lock_dir, 0o777)        # e.g. pre-created by a local user in /run/lock
    os.chown(lock_dir, NOBODY, NOBODY)
    message = refused(lock_dir)
    assert message.startswith(f"[locking] lock_dir {lock_dir}: is owned by ")
    assert f"(uid {NOBODY}), not by " in message and "(uid 0) that runs the driver" in message
    st = os.lstat(lock_dir)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o777)   # not "fixed"
    assert list(lock_dir.iterdir()) == []


def test_own_lock_dir_writable_by_others_is_tightened(tmp_path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    os.chmod(lock_dir, 0o777)
    with vg_lock(make_config(lock_dir), "vg_one"):
        pass
    assert stat.S_IMODE(os.lstat(lock_dir).st_mode) == 0o700
    os.chmod(lock_dir, 0o755)        # what earlier versions created: kept as it is
    with vg_lock(make_config(lock_dir), "vg_one"):
        pass
    assert stat.S_IMODE(os.lstat(lock_dir).st_mode) == 0o755


def test_planted_symlink_lock_file_is_refused(tmp_path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir(mode=0o700)
    target = tmp_path / "victim"
    (lock_dir / "gfs2clvm-vg_one.lock").symlink_to(target)
    assert refused(lock_dir) == (f"[locking] lock_dir {lock_dir}: lock file "
                                 f"gfs2clvm-vg_one.lock is a symlink: refusing to follow it "
                                 f"(remove it)")
    assert not target.exists()                       # nothing created through the link
    (lock_dir / "gfs2clvm-vg_one.lock").unlink()
    target.write_text("precious")
    (lock_dir / "gfs2clvm-vg_two.lock").symlink_to(target)
    with pytest.raises(ConfigError, match="gfs2clvm-vg_two.lock is a symlink"):
        with vg_lock(make_config(lock_dir), "vg_two"):
            pass
    assert target.read_text() == "precious"
    with pytest.raises(ConfigError, match="gfs2clvm-x.lock is a symlink"):
        (lock_dir / "gfs2clvm-x.lock").symlink_to(target)
        with locking.named_lock(make_config(lock_dir), "x"):
            pass


def test_planted_foreign_lock_file_is_refused(tmp_path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir(mode=0o700)
    planted = lock_dir / "gfs2clvm-vg_one.lock"
    planted.write_text("")
    os.chown(planted, NOBODY, NOBODY)
    message = refused(lock_dir)
    assert message.startswith(f"[locking] lock_dir {lock_dir}: lock file gfs2clvm-vg_one.lock "
                              f"is owned by ")
    assert message.endswith("(remove it)")


def test_parent_writable_by_others_must_be_sticky(tmp_path):
    parent = tmp_path / "run-lock"
    parent.mkdir()
    os.chmod(parent, 0o777)
    assert refused(parent / "one") == (f"[locking] lock_dir {parent}/one: its parent {parent} "
                                       f"is writable by group or others and not sticky, so "
                                       f"anyone could replace it")
    assert list(parent.iterdir()) == []
    os.chmod(parent, 0o1777)                         # like /run/lock
    with vg_lock(make_config(parent / "one"), "vg_one"):
        pass
    os.chown(parent, NOBODY, NOBODY)
    assert f"its parent {parent} is owned by " in refused(parent / "one")


def test_refuses_unconfigured_or_bad_vg(tmp_path):
    config = make_config(tmp_path)
    with pytest.raises(ConfigError, match="^volume group 'vg_x' is not configured"):
        with vg_lock(config, "vg_x"):
            pass
    with pytest.raises(InvalidArgument, match=r"^invalid VG name '\.\./x'$"):
        lock_path(config, "../x")
    assert os.listdir(tmp_path) == []


def test_forked_child_does_not_inherit_the_lock(tmp_path):
    config = make_config(tmp_path, timeout=0)
    with vg_lock(config, "vg_one"):
        pid = os.fork()
        if pid == 0:  # child: the parent's lock must not count as re-entry
            try:
                with vg_lock(config, "vg_one"):
                    os._exit(0)
            except LockTimeout:
                os._exit(5)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 5
        assert try_from_other_process(tmp_path) == 5  # still held by the parent
    assert try_from_other_process(tmp_path) == 0
