from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from one_gfs2clvm import nodehelper
from one_gfs2clvm.nodehelper import Refused, boot_activate, lvm_argv, read_config, run_lvm

VGS = ["vg_one", "vg_two"]
REPORT = ["--reportformat", "json", "--units", "b", "--nosuffix"]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs a root-owned file")


# --- lvm_argv ---------------------------------------------------------------------

@pytest.mark.parametrize("verb, args, argv", [
    ("vgs", ["vg_one"], ["vgs", *REPORT, "-o", nodehelper.VG_FIELDS, "vg_one"]),
    ("lvs", ["vg_two"], ["lvs", *REPORT, "-o", nodehelper.LV_FIELDS, "vg_two"]),
    ("lvs", ["vg_one", "lv-one-1-0"],
     ["lvs", *REPORT, "-o", nodehelper.LV_FIELDS, "vg_one/lv-one-1-0"]),
    ("lvs", ["vg_one", "lv-one-1-0", "lv-oneimg-7", "lv-one-1-0"],          # each once
     ["lvs", *REPORT, "-o", nodehelper.LV_FIELDS, "vg_one/lv-one-1-0", "vg_one/lv-oneimg-7"]),
    ("create", ["vg_one", "lv-one-1-0", "1073741824"],
     ["lvcreate", "--yes", "--activate", "n", "--zero", "n", "--wipesignatures", "n",
      "--size", "1073741824b", "--name", "lv-one-1-0", "vg_one"]),
    ("create", ["vg_one", "lv-oneimg-3", "512", "one:image=3", "one:ds=1"],
     ["lvcreate", "--yes", "--activate", "n", "--zero", "n", "--wipesignatures", "n",
      "--size", "512b", "--name", "lv-oneimg-3", "--addtag", "one:image=3",
      "--addtag", "one:ds=1", "vg_one"]),
    ("remove", ["vg_one", "lv-one-1-0"], ["lvremove", "--yes", "vg_one/lv-one-1-0"]),
    ("extend", ["vg_one", "lv-one-1-0", "2147483648"],
     ["lvextend", "--yes", "--size", "2147483648b", "vg_one/lv-one-1-0"]),
    ("activate", ["vg_one", "lv-one-1-0", "ey"],
     ["lvchange", "--activate", "ey", "vg_one/lv-one-1-0"]),
    ("activate", ["vg_one", "lv-one-1-0", "sy"],
     ["lvchange", "--activate", "sy", "vg_one/lv-one-1-0"]),
    ("activate", ["vg_one", "lv-one-1-0", "y"],
     ["lvchange", "--activate", "y", "vg_one/lv-one-1-0"]),
    ("activate", ["vg_one", "lv-one-1-0", "ly"],
     ["lvchange", "--activate", "ly", "vg_one/lv-one-1-0"]),
    ("activate", ["vg_one", "lv-one-1-0", "n"],
     ["lvchange", "--activate", "n", "vg_one/lv-one-1-0"]),
    ("addtag", ["vg_one", "lv-one-1-0", "one:vm=1"],
     ["lvchange", "--addtag", "one:vm=1", "vg_one/lv-one-1-0"]),
    ("deltag", ["vg_one", "lv-one-1-0", "one:vm=1"],
     ["lvchange", "--deltag", "one:vm=1", "vg_one/lv-one-1-0"]),
    # several tag changes, ONE lvchange (one metadata commit), in the order given
    ("retag", ["vg_one", "lv-one-1-0", "deltag", "one-incomplete", "addtag", "one-use=1:0:n1"],
     ["lvchange", "--deltag", "one-incomplete", "--addtag", "one-use=1:0:n1",
      "vg_one/lv-one-1-0"]),
    # use reads the LV's tags first (run_step makes the change)
    ("use", ["vg_one", "lv-oneimg-3", "7", "2", "node1"],
     ["lvs", *REPORT, "-o", "lv_name,lv_tags", "vg_one/lv-oneimg-3"]),
    ("use", ["vg_one", "lv-oneimg-3", "7", "2", "-", "readonly"],
     ["lvs", *REPORT, "-o", "lv_name,lv_tags", "vg_one/lv-oneimg-3"]),
])
def test_lvm_argv(verb, args, argv):
    assert lvm_argv(verb, args, VGS) == argv


def test_lvs_selection_is_exact():
    # vg/lv arguments name whole LVs: no selection expression, no pattern at all
    argv = lvm_argv("lvs", ["vg_one", "lv-one-1-0", "lv-one-1-10"], VGS)
    assert "-S" not in argv and "--select" not in argv
    assert argv[-2:] == ["vg_one/lv-one-1-0", "vg_one/lv-one-1-10"]


@pytest.mark.parametrize("verb, args, message", [
    ("vgs", ["vg_x"], "VG 'vg_x' is not configured in /etc/one/gfs2clvm.conf"),
    ("vgs", ["-vg"], "invalid VG name '-vg'"),
    ("remove", ["", "lv-one-1-0"], "invalid VG name ''"),
    ("remove", ["vg_one", "lv-one-1"], "LV name 'lv-one-1' is not one of ours "
                                       "(lv-one-<vm>-<disk>, lv-oneimg-<image>)"),
    ("remove", ["vg_one", "gfs2"], "LV name 'gfs2' is not one of ours "
                                   "(lv-one-<vm>-<disk>, lv-oneimg-<image>)"),
    ("remove", ["vg_one", "lv-one-1-2;rm"], "LV name 'lv-one-1-2;rm' is not one of ours "
                                            "(lv-one-<vm>-<disk>, lv-oneimg-<image>)"),
    ("remove", ["vg_one", "lv-one-01-2"], "LV name 'lv-one-01-2' is not one of ours "
                                          "(lv-one-<vm>-<disk>, lv-oneimg-<image>)"),
    ("lvs", ["vg_one", "lv-one-1-0", "gfs2"], "LV name 'gfs2' is not one of ours "
                                             "(lv-one-<vm>-<disk>, lv-oneimg-<image>)"),
    ("create", ["vg_one", "lv-one-1-0", "0"], "invalid size '0' (bytes, positive integer)"),
    ("create", ["vg_one", "lv-one-1-0", "10G"], "invalid size '10G' (bytes, positive integer)"),
    ("create", ["vg_one", "lv-one-1-0", "-1"], "invalid size '-1' (bytes, positive integer)"),
    ("create", ["vg_one", "lv-one-1-0", "01"], "invalid size '01' (bytes, positive integer)"),
    ("create", ["vg_one", "lv-one-1-0", "1" * 21],
     "invalid size '111111111111111111111' (bytes, positive integer)"),
    ("extend", ["vg_one", "lv-one-1-0", "+1024"],
     "invalid size '+1024' (bytes, positive integer)"),
    ("activate", ["vg_one", "lv-one-1-0", "ay"],
     "activation mode 'ay' is not one of ey sy y ly n ln"),
    ("activate", ["vg_one", "lv-one-1-0", ""], "activation mode '' is not one of ey sy y ly n ln"),
    ("create", ["vg_one", "lv-one-1-0", "1", "bad tag"], "invalid tag 'bad tag'"),
    ("addtag", ["vg_one", "lv-one-1-0", "@x"], "invalid tag '@x'"),
    ("deltag", ["vg_one", "lv-one-1-0", "a" * 129], "invalid tag '%s'" % ("a" * 129)),
    ("vgs", [], "vgs: expected 1 arguments, got 0"),
    ("vgs", ["vg_one", "vg_two"], "vgs: expected 1 arguments, got 2"),
    ("lvs", [], "lvs: expected 1..65 arguments, got 0"),
    ("lvs", ["vg_one"] + ["lv-one-1-0"] * 65, "lvs: expected 1..65 arguments, got 66"),
    ("create", ["vg_one", "lv-one-1-0"], "create: expected 3 arguments, got 2"),
    ("remove", ["vg_one"], "remove: expected 2 arguments, got 1"),
    ("remove", ["vg_one", "lv-one-1-0", "lv-one-1-1"], "remove: expected 2 arguments, got 3"),
    ("extend", ["vg_one", "lv-one-1-0"], "extend: expected 3 arguments, got 2"),
    ("activate", ["vg_one", "lv-one-1-0"], "activate: expected 3 arguments, got 2"),
    ("addtag", ["vg_one", "lv-one-1-0", "a", "b"], "addtag: expected 3 arguments, got 4"),
    ("lvremove", ["vg_one", "lv-one-1-0"], "unknown verb 'lvremove'"),
    ("version", [], "unknown verb 'version'"),  # handled by main(), never reaches lvm
    ("udev-owns", ["vg_one", "lv-one-1-0"], "unknown verb 'udev-owns'"),  # main(), no lvm
    # no caller renames an LV: the verb is gone, not merely unused
    ("rename", ["vg_one", "lv-one-1-0", "lv-oneimg-9"], "unknown verb 'rename'"),
    ("retag", ["vg_one", "lv-one-1-0"],
     "retag: expected VG LV and {deltag|addtag} TAG pairs, got 2 arguments"),
    ("retag", ["vg_one", "lv-one-1-0", "deltag"],
     "retag: expected VG LV and {deltag|addtag} TAG pairs, got 3 arguments"),
    ("retag", ["vg_one", "lv-one-1-0", "--deltag", "x"], "retag: '--deltag' is not deltag or addtag"),
    ("retag", ["vg_one", "lv-one-1-0", "addtag", "x", "activate", "ey"],
     "retag: 'activate' is not deltag or addtag"),
    ("retag", ["vg_one", "lv-one-1-0", "addtag", "@x"], "invalid tag '@x'"),
    ("use", ["vg_one", "lv-one-1-0", "7", "0"], "use: expected 5..6 arguments, got 4"),
    ("use", ["vg_one", "lv-one-1-0", "07", "0", "n1"], "use: invalid VM id '07'"),
    ("use", ["vg_one", "lv-one-1-0", "7", "-1", "n1"], "use: invalid disk id '-1'"),
    ("use", ["vg_one", "lv-one-1-0", "7", "0", "n1\n"], "use: invalid host 'n1\\n'"),
    ("use", ["vg_one", "lv-one-1-0", "7", "0", "-n1"], "use: invalid host '-n1'"),
    ("use", ["vg_one", "lv-one-1-0", "7", "0", "a" * 120], "use: invalid host '%s'" % ("a" * 120)),
    ("use", ["vg_one", "lv-one-1-0", "7", "0", "n1", "ro"],
     "use: expected VM DISK HOST|- [readonly]"),
    ("use", ["vg_one", "lv-x", "7", "0", "n1"],
     "LV name 'lv-x' is not one of ours (lv-one-<vm>-<disk>, lv-oneimg-<image>)"),
])
def test_lvm_argv_refuses(verb, args, message):
    with pytest.raises(Refused) as info:
        lvm_argv(verb, args, VGS)
    assert str(info.value) == message


# '$' alone matches before a trailing newline; the helper must use fullmatch.
@pytest.mark.parametrize("verb, args", [
    ("remove", ["vg_one", "lv-one-1-0\n"]),
    ("remove", ["vg_one\n", "lv-one-1-0"]),
    ("remove", ["..", "lv-one-1-0"]),
    ("extend", ["vg_one", "lv-one-1-0", "1024\n"]),
    ("addtag", ["vg_one", "lv-one-1-0", "one:vm=1\n"]),
])
def test_trailing_newline_is_refused(verb, args):
    with pytest.raises(Refused):
        lvm_argv(verb, args, VGS)


# --- read_config ----------------------------------------------------------------

CONF = """\
[storage]
volume_groups = vg_one, vg_two  # comment
lock_mode = clvmd
[locking]
lvm_retries = 3
lvm_retry_delay = 0.25
"""


def conf_file(tmp_path, text=CONF, mode=0o644):
    path = tmp_path / "gfs2clvm.conf"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


@as_root
def test_read_config(tmp_path):
    assert read_config(conf_file(tmp_path)) == {
        "vgs": ["vg_one", "vg_two"], "lock_mode": "clvmd", "retries": 3, "delay": 0.25}


@as_root
def test_read_config_defaults_and_sample(tmp_path):
    path = conf_file(tmp_path, "[storage]\nvolume_groups = vg_a\n")
    assert read_config(path) == {"vgs": ["vg_a"], "lock_mode": "lvmlockd", "retries": 6,
                                 "delay": 0.5}
    sample = os.path.join(os.path.dirname(__file__), "..", "..", "etc-one", "gfs2clvm.conf")
    with open(sample) as handle:
        path = conf_file(tmp_path, handle.read())
    assert read_config(path) == {"vgs": ["vg_one"], "lock_mode": "lvmlockd", "retries": 6,
                                 "delay": 0.5}


@as_root
@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666, 0o620])
def test_read_config_refuses_writable_file(tmp_path, mode):
    path = conf_file(tmp_path, mode=mode)
    with pytest.raises(Refused) as info:
        read_config(path)
    assert str(info.value) == f"{path} must be owned by root and not group/world-writable"


@as_root
def test_read_config_refuses_foreign_owner(tmp_path):
    path = conf_file(tmp_path)
    os.chown(path, 1000, 1000)
    with pytest.raises(Refused) as info:
        read_config(path)
    assert str(info.value) == f"{path} must be owned by root and not group/world-writable"


def test_read_config_missing_file(tmp_path):
    path = str(tmp_path / "nope.conf")
    with pytest.raises(Refused) as info:
        read_config(path)
    assert str(info.value) == f"cannot read {path}: No such file or directory"


@as_root
@pytest.mark.parametrize("text, message", [
    ("[storage]\nvolume_groups = ,\n", "{path}: [storage] volume_groups is empty"),
    ("[storage]\nvolume_groups =\n", "{path}: [storage] volume_groups is empty"),
    ("[storage]\nlock_mode = none\n",
     "{path}: No option 'volume_groups' in section: 'storage'"),
    ("[ssh]\nuser = x\n", "{path}: No section: 'storage'"),
])
def test_read_config_bad_contents(tmp_path, text, message):
    path = conf_file(tmp_path, text)
    with pytest.raises(Refused) as info:
        read_config(path)
    assert str(info.value) == message.format(path=path)


@as_root
@pytest.mark.parametrize("key, value", [
    ("lvm_retries", "many"), ("lvm_retries", "-3"), ("lvm_retries", "100"),
    ("lvm_retries", "2.5"), ("lvm_retries", "inf"), ("lvm_retry_delay", "soon"),
    ("lvm_retry_delay", "-1"), ("lvm_retry_delay", "nan"), ("lvm_retry_delay", "1e3"),
])
def test_read_config_refuses_odd_retry_settings(tmp_path, key, value):
    path = conf_file(tmp_path, f"[storage]\nvolume_groups = vg\n[locking]\n{key} = {value}\n")
    with pytest.raises(Refused) as info:
        read_config(path)
    assert str(info.value) == (f"{path}: [locking] lvm_retries/lvm_retry_delay must be "
                               f"small numbers")


@as_root
def test_read_config_retry_settings(tmp_path):
    path = conf_file(tmp_path, "[storage]\nvolume_groups = vg\n[locking]\n"
                               "lvm_retries = 0\nlvm_retry_delay = 0\n")
    assert read_config(path) == {"vgs": ["vg"], "lock_mode": "lvmlockd", "retries": 0,
                                 "delay": 0.0}


# --- run_lvm retries ------------------------------------------------------------------

TRANSIENT = b"  VG vg_one lock failed: held by other host.\n"
LV_LOCKED = b"  LV locked by other host: vg_one/lv-one-1-0\n"


class FakeLvm:
    """Stands in for subprocess.run: returns scripted (returncode, stderr) results."""

    def __init__(self, monkeypatch, *results):
        self.results = list(results)
        self.calls = []
        monkeypatch.setattr(nodehelper.subprocess, "run", self)
        monkeypatch.setattr(nodehelper, "lvm_binary", lambda: "/usr/sbin/lvm")

    def __call__(self, command, **kwargs):
        self.calls.append((command, kwargs))
        code, stderr = self.results.pop(0)
        return subprocess.CompletedProcess(command, code, b"out", stderr)


def test_run_lvm_success_runs_once(monkeypatch):
    fake = FakeLvm(monkeypatch, (0, b""))
    sleeps = []
    proc = run_lvm(["lvs", "vg_one"], 6, 0.5, sleep=sleeps.append)
    assert (proc.returncode, proc.stdout) == (0, b"out")
    assert sleeps == []
    (command, kwargs), = fake.calls
    assert command == ["/usr/sbin/lvm", "lvs", "vg_one"]
    assert kwargs == {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                      "stderr": subprocess.PIPE, "close_fds": True,
                      "env": {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
                              "LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}}


def test_run_lvm_transient_lock_retried_to_the_bound(monkeypatch):
    fake = FakeLvm(monkeypatch, *[(5, TRANSIENT)] * 7)
    sleeps = []
    proc = run_lvm(["lvremove", "--yes", "vg_one/lv-one-1-0"], 6, 0.5, sleep=sleeps.append)
    assert proc.returncode == 5 and proc.stderr == TRANSIENT
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]  # doubling, capped at 5 s
    assert len(fake.calls) == 7  # first try + 6 retries


def test_run_lvm_transient_then_success(monkeypatch):
    fake = FakeLvm(monkeypatch, (5, b"  Global lock failed: held by other host.\n"),
                   (5, b"  VG vg_one lock failed: error -11\n"), (0, b""))
    sleeps = []
    assert run_lvm(["vgs"], 6, 0.2, sleep=sleeps.append).returncode == 0
    assert sleeps == [0.2, 0.4]
    assert len(fake.calls) == 3


@pytest.mark.parametrize("stderr", [
    LV_LOCKED,
    TRANSIENT + LV_LOCKED,  # an LV lock held elsewhere wins: it is a state, not a race
    b"  LV vg_one/lv-one-1-0 lock failed: held by other host.\n",
    b'  Failed to find logical volume "vg_one/lv-one-1-0"\n',
    b"  Insufficient free space: 2 extents needed, but only 1 available\n",
])
def test_run_lvm_not_retried(monkeypatch, stderr):
    fake = FakeLvm(monkeypatch, (5, stderr), (0, b""))
    sleeps = []
    proc = run_lvm(["lvchange", "--activate", "ey", "vg_one/lv-one-1-0"], 6, 0.5,
                   sleep=sleeps.append)
    assert proc.returncode == 5 and proc.stderr == stderr
    assert sleeps == [] and len(fake.calls) == 1


def test_run_lvm_zero_retries(monkeypatch):
    fake = FakeLvm(monkeypatch, (5, TRANSIENT))
    sleeps = []
    assert run_lvm(["vgs"], 0, 0.5, sleep=sleeps.append).returncode == 5
    assert sleeps == [] and len(fake.calls) == 1


def test_run_lvm_large_delay_is_capped(monkeypatch):
    FakeLvm(monkeypatch, (5, TRANSIENT), (5, TRANSIENT), (0, b""))
    sleeps = []
    run_lvm(["vgs"], 2, 30.0, sleep=sleeps.append)
    assert sleeps == [5.0, 5.0]


# --- fullmatch everywhere input is validated ------------------------------------------

def test_use_tag_with_trailing_newline_is_not_a_use():
    lvs = {"report": [{"lv": [{"lv_name": "lv-one-7-0", "lv_tags": "one-use=7:0:node2\n",
                              "lv_active": ""}]}]}
    calls = []

    def fake(argv):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps(lvs).encode(), b"")
    config = {"vgs": ["vg_one"], "lock_mode": "none", "retries": 0, "delay": 0.0}
    assert boot_activate(config, ["vg_one"], run=fake, host_names={"node2"}) == (0, [])
    assert [argv[0] for argv in calls] == ["lvs"]


@pytest.mark.parametrize("args", [["--wait", "5\n"], ["--wait", "05x"], ["--wait", "12345"],
                                  ["--wait"], ["vg_one\n"], ["vg_x"]])
def test_boot_activate_arguments_refused(args):
    with pytest.raises(Refused):
        nodehelper.boot_activate_request(args, ["vg_one"])


def test_boot_activate_arguments():
    assert nodehelper.boot_activate_request([], ["vg_one", "vg_two"]) == (
        ["vg_one", "vg_two"], 0.0)
    assert nodehelper.boot_activate_request(["--wait", "90", "vg_two"], ["vg_one", "vg_two"]) \
        == (["vg_two"], 90.0)


def test_no_prefix_or_substring_matching_in_the_helper():
    # .search() only scans lvm's own stderr for lock messages
    source = Path(nodehelper.__file__).read_text()
    assert not re.search(r"\.match\(", source)
    searches = re.findall(r"(\w+)\.search\(", source)
    assert set(searches) <= {"TRANSIENT_LOCK_RE", "LV_LOCKED_RE"}


# --- the helper as a process: any failure is one refusal line ---------------------------

HELPER = Path(nodehelper.__file__)
# The helper file in a fresh isolated interpreter, with a test config and,
# optionally, another lvm path (bypassing the /usr/sbin, /sbin lookup).
RUNNER = """\
import importlib.util, sys
path, config, lvm = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("helper", path)
helper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helper)
helper.CONFIG_PATH = config
if lvm:
    helper.lvm_binary = lambda: lvm
sys.exit(helper.main(sys.argv[4:]))
"""


def run_helper(config, *argv, lvm=""):
    return subprocess.run([sys.executable, "-I", "-c", RUNNER, str(HELPER), config, lvm, *argv],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def helper_conf(tmp_path):
    return conf_file(tmp_path, "[storage]\nvolume_groups = vg_one\nlock_mode = none\n"
                               "[locking]\nlvm_retries = 0\n")


def fake_lvm(tmp_path, body):
    path = tmp_path / "fake-lvm"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def assert_one_refusal_line(result):
    assert result.returncode == nodehelper.EXIT_REFUSED, result
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("one-gfs2clvm-helper: ")
    assert "Traceback" not in result.stderr


@as_root
def test_helper_process_runs_lvm(tmp_path, helper_conf):
    result = run_helper(helper_conf, "vgs", "vg_one", lvm=fake_lvm(tmp_path, 'echo "$@"\n'))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == " ".join(lvm_argv("vgs", ["vg_one"], ["vg_one"])) + "\n"


@as_root
def test_helper_process_missing_lvm(tmp_path, helper_conf):
    result = run_helper(helper_conf, "vgs", "vg_one", lvm=str(tmp_path / "no-such-lvm"))
    assert_one_refusal_line(result)
    assert result.stderr.startswith("one-gfs2clvm-helper: error: FileNotFoundError: ")
    assert "no-such-lvm" in result.stderr


@as_root
def test_helper_process_lvm_not_executable(tmp_path, helper_conf):
    result = run_helper(helper_conf, "vgs", "vg_one", lvm=str(tmp_path))   # a directory
    assert_one_refusal_line(result)
    assert result.stderr.startswith("one-gfs2clvm-helper: error: PermissionError: ")


@as_root
def test_helper_process_unexpected_exception(tmp_path, helper_conf):
    # boot-activate parses lvm's JSON: garbage there is a bug-shaped failure
    lvm = fake_lvm(tmp_path, "echo 'not json'\n")
    result = run_helper(helper_conf, "boot-activate", lvm=lvm)
    assert_one_refusal_line(result)
    assert result.stderr.startswith("one-gfs2clvm-helper: error: JSONDecodeError: ")


@as_root
def test_helper_process_wait_with_newline_is_refused(tmp_path, helper_conf):
    lvm = fake_lvm(tmp_path, 'echo \'{"report": [{"lv": []}]}\'\n')
    assert run_helper(helper_conf, "boot-activate", "--wait", "5", lvm=lvm).returncode == 0
    result = run_helper(helper_conf, "boot-activate", "--wait", "5\n", lvm=lvm)
    assert_one_refusal_line(result)
    assert result.stderr == ("one-gfs2clvm-helper: refused: boot-activate --wait takes "
                             "seconds (0..9999)\n")


@as_root
def test_helper_process_refusal_is_one_line(tmp_path, helper_conf):
    result = run_helper(helper_conf, "remove", "vg_one", "lv-one-1-0\nx", lvm="/bin/false")
    assert_one_refusal_line(result)
    assert result.stderr.startswith("one-gfs2clvm-helper: refused: LV name 'lv-one-1-0\\nx' ")


# --- batch -------------------------------------------------------------------------

def test_batch_steps_are_all_checked_before_any_runs():
    steps = nodehelper.batch_steps(["create", "vg_one", "lv-one-1-0", "4194304", ";",
                                    "activate", "vg_one", "lv-one-1-0", "ey", ";",
                                    "deltag", "vg_one", "lv-one-1-0", "one-incomplete"], VGS)
    assert [(verb, args) for verb, args, _ in steps] == [
        ("create", ["vg_one", "lv-one-1-0", "4194304"]),
        ("activate", ["vg_one", "lv-one-1-0", "ey"]),
        ("deltag", ["vg_one", "lv-one-1-0", "one-incomplete"])]
    assert steps[1][2] == ["lvchange", "--activate", "ey", "vg_one/lv-one-1-0"]


@pytest.mark.parametrize("args, message", [
    (["activate", "vg_one", "lv-one-1-0", "ey", ";", "remove", "vg_one", "lv-root"],
     "batch step 2: LV name 'lv-root' is not one of ours"),
    (["activate", "vg_one", "lv-one-1-0", "ey", ";", ";", "remove", "vg_one", "lv-one-1-0"],
     "batch step 2 is empty"),
    (["lvs", "vg_one"], "batch step 1: verb 'lvs' cannot be batched"),
    (["batch", "vg_one"], "batch step 1: verb 'batch' cannot be batched"),
    ([], "batch step 1 is empty"),
    (["activate", "vg_other", "lv-one-1-0", "ey"], "batch step 1: VG 'vg_other' is not "
                                                   "configured"),
])
def test_a_bad_batch_step_refuses_the_whole_batch(args, message):
    with pytest.raises(Refused, match=re.escape(message)):
        nodehelper.batch_steps(args, VGS)


class _Proc:
    def __init__(self, returncode, stdout=b"", stderr=b""):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def test_run_batch_stops_at_the_first_failure_and_names_it():
    import io
    steps = nodehelper.batch_steps(["activate", "vg_one", "lv-one-1-0", "ey", ";",
                                    "addtag", "vg_one", "lv-one-1-0", "one-x", ";",
                                    "remove", "vg_one", "lv-one-1-0"], VGS)
    ran = []

    def run(command):
        ran.append(command)
        if command[0] == "lvchange" and "--addtag" in command:
            return _Proc(5, stderr=b"  Failed to update VG vg_one.\n")
        return _Proc(0, stderr=b"  ok\n")
    out, err = io.BytesIO(), io.BytesIO()
    assert nodehelper.run_batch(steps, run, out, err) == 5
    assert len(ran) == 2                                 # remove never ran
    assert err.getvalue().decode().splitlines() == [
        "  ok", "one-gfs2clvm-helper: batch step 2 of 3 failed: addtag vg_one/lv-one-1-0",
        "  Failed to update VG vg_one."]                 # lvm's own line stays the last


# --- the use-tag rule ------------------------------------------------------------

U = "one-use="


@pytest.mark.parametrize("tags, request_, expected", [
    ([], (7, 0, "n1", False), ([U + "7:0:n1"], [])),
    ([U + "7:0:n1"], (7, 0, "n1", False), ([], [])),                     # already so
    ([U + "7:0:n1"], (7, 0, "n2", False), ([U + "7:0:n2"], [U + "7:0:n1"])),  # moved
    ([U + "7:0:n1", U + "8:0:n2"], (7, 0, None, False), ([], [U + "7:0:n1"])),
    # another disk of the same VM, or another VM, is never touched
    ([U + "7:1:n1", U + "70:0:n1"], (7, 0, "n2", False), ([U + "7:0:n2"], [])),
    ([], (7, 3, "n1", True), ([U + "7:3:n1", "one-readonly"], [])),
    # the read-only mark goes with the last use only
    ([U + "7:3:n1", "one-readonly", U + "8:3:n2"], (7, 3, None, False), ([], [U + "7:3:n1"])),
    ([U + "7:3:n1", "one-readonly"], (7, 3, None, False),
     ([], [U + "7:3:n1", "one-readonly"])),
    (["one-incomplete", "one-made=cp.5"], (7, 0, None, False), ([], [])),
])
def test_use_tag_change(tags, request_, expected):
    assert nodehelper.use_tag_change(tags, *request_) == expected


def test_use_step_reads_the_tags_then_makes_one_change():
    """`use` runs its report, then ONE lvchange with every drop and add (none at
    all when the tags already say so); its stdout stays empty."""
    [(verb, args, command)] = nodehelper.batch_steps(
        ["use", "vg_one", "lv-one-7-0", "7", "0", "node2"], VGS)
    ran = []

    def run_with(tags):
        def run(argv):
            ran.append(argv)
            if argv[0] == "lvs":
                report = {"report": [{"lv": [{"lv_name": "lv-one-7-0", "lv_tags": tags}]}]}
                return _Proc(0, stdout=json.dumps(report).encode(), stderr=b"  notice\n")
            return _Proc(0, stderr=b"  changed\n")
        return run
    done = nodehelper.run_step(verb, args, command, run_with("one-use=7:0:node1,one-x"))
    assert ran == [command, ["lvchange", "--deltag", "one-use=7:0:node1",
                             "--addtag", "one-use=7:0:node2", "vg_one/lv-one-7-0"]]
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"  notice\n  changed\n")
    ran.clear()
    done = nodehelper.run_step(verb, args, command, run_with("one-use=7:0:node2"))
    assert ran == [command] and done.returncode == 0


def test_use_step_on_a_missing_lv_fails_like_lvs():
    [(verb, args, command)] = nodehelper.batch_steps(
        ["use", "vg_one", "lv-one-7-0", "7", "0", "-"], VGS)
    missing = b'  Failed to find logical volume "vg_one/lv-one-7-0"\n'
    done = nodehelper.run_step(verb, args, command, lambda argv: _Proc(5, stderr=missing))
    assert (done.returncode, done.stderr) == (5, missing)


def test_run_batch_of_steps_that_succeed_exits_0():
    import io
    steps = nodehelper.batch_steps(["activate", "vg_one", "lv-one-1-0", "n", ";",
                                    "remove", "vg_one", "lv-one-1-0"], VGS)
    assert nodehelper.run_batch(steps, lambda command: _Proc(0), io.BytesIO(),
                                io.BytesIO()) == 0


# --- a named report: absent LVs are an answer ---------------------------------------

@pytest.mark.parametrize("status, stderr, expected", [
    (5, b'  Failed to find logical volume "vg_one/lv-one-1-0"\n', (0, b"")),
    (5, b'  Failed to find logical volume "vg_one/lv-one-1-0"\n'
        b'  Failed to find logical volume "vg_one/lv-oneimg-7"\n', (0, b"")),
    # an LV nobody asked about, a lock failure, no reason at all: still failures
    (5, b'  Failed to find logical volume "vg_one/lv-one-2-0"\n', None),
    (5, b'  Failed to find logical volume "vg_one/lv-one-1-0"\n'
        b'  VG vg_one lock failed: held by other host\n', None),
    (5, b"", None),
    (0, b"  WARNING: something\n", (0, b"  WARNING: something\n")),
    # the VG's lockspace not started here: lvs reads without a lock and says so
    (5, b"  Reading VG vg_one without a lock.\n"
        b'  Failed to find logical volume "vg_one/lv-one-1-0"\n',
     (0, b"  Reading VG vg_one without a lock.\n")),
    (5, b"  Reading VG vg_one without a lock.\n", None),
])
def test_only_missing_named_lvs_is_a_successful_report(status, stderr, expected):
    proc = _Proc(status, stdout=b"{}", stderr=stderr)
    got = nodehelper.only_missing("lvs", ["vg_one", "lv-one-1-0", "lv-oneimg-7"], proc)
    assert got == (expected or (status, stderr))


def test_only_missing_applies_to_named_reports_only():
    proc = _Proc(5, stderr=b'  Failed to find logical volume "vg_one/lv-one-1-0"\n')
    assert nodehelper.only_missing("lvs", ["vg_one"], proc) == (5, proc.stderr)
    assert nodehelper.only_missing("remove", ["vg_one", "lv-one-1-0"], proc) == (5, proc.stderr)
