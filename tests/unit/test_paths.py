"""The one rule for what an action may touch (opennebula/paths.py), and the TM
actions refusing anything else before any remote call or oned query."""

from __future__ import annotations

import pytest

from one_gfs2clvm.config import parse
from one_gfs2clvm.errors import InvalidArgument
from one_gfs2clvm.opennebula import paths, tm, tm3
from one_gfs2clvm.opennebula.runtime import Action

CONFIG = parse("[storage]\nvolume_groups = vg_one\nbridge_hosts = node1\n", source="t.conf")


def test_modern_disk_and_dir_are_derived_from_the_ids():
    disk = paths.disk_arg(CONFIG, "node1:/var/lib/one//datastores/0/7/disk.2", 7)
    assert (disk.host, disk.path, disk.disk_id, disk.vm_id) == \
        ("node1", "/var/lib/one/datastores/0/7/disk.2", 2, 7)
    assert disk.sysdir == "/var/lib/one/datastores/0/7"
    assert paths.disk_arg(CONFIG, "node1:/var/lib/one/datastores/0/7/disk.2", 7, 0)
    assert paths.dir_arg(CONFIG, "node1:/var/lib/one/datastores/0/7", 7, 0).path == \
        "/var/lib/one/datastores/0/7"
    assert paths.vm_dir(CONFIG, 7, 0) == "/var/lib/one/datastores/0/7"


@pytest.mark.parametrize("text, vm_id, system_ds", [
    ("node1:/var/lib/one/datastores/0/555", 7110, 0),        # another VM's directory
    ("node1:/var/lib/one/victim", 7110, 0),
    ("node1:/var/lib/one", 7110, 0),
    ("node1:/", 7110, 0),
    ("node1:/var/lib/one/datastores/1/7110", 7110, 0),       # not this system datastore
    ("node1:/var/lib/one/datastores/0/7110/..", 7110, 0),
    ("node1:/var/lib/one/datastores/0/07110", 7110, 0),
    ("node1:/var/lib/one/datastores/00/7110", 7110, 0),
    ("node1:/srv/datastores/0/7110", 7110, 0),
    ("file:///var/lib/one/datastores/0/7110", 7110, 0),
    ("-oProxyCommand=x:/var/lib/one/datastores/0/7110", 7110, 0),
])
def test_directories_outside_the_rule_are_refused(text, vm_id, system_ds):
    with pytest.raises(InvalidArgument) as failed:
        paths.dir_arg(CONFIG, text, vm_id, system_ds)
    assert "\n" not in failed.value.one_line()


@pytest.mark.parametrize("text", [
    "node1:/var/lib/one/datastores/0/8/disk.0",              # VM 8, not 7
    "node1:/var/lib/one/datastores/0/7/disk.0/x",
    "node1:/var/lib/one/datastores/0/7/disk.00",
    "node1:/var/lib/one/datastores/0/7/disk.0.snap",
    "node1:/var/lib/one/datastores/0/7/kernel",
    "node1:/var/lib/one/datastores/x/7/disk.0",
    "node1:/var/lib/one/7/images/disk.0",                     # a 3.x path
    "node1:/etc/shadow",
])
def test_disks_outside_the_rule_are_refused(text):
    with pytest.raises(InvalidArgument, match="refusing|invalid"):
        paths.disk_arg(CONFIG, text, 7)


def test_the_system_datastore_must_match_where_the_argv_names_it():
    with pytest.raises(InvalidArgument, match="datastores/0/7/disk.<N>"):
        paths.disk_arg(CONFIG, "node1:/var/lib/one/datastores/1/7/disk.0", 7, 0)


def test_3x_paths():
    disk = paths.disk_arg3(CONFIG, "node1:/var/lib/one/42/images/disk.3")
    assert (disk.vm_id, disk.disk_id) == (42, 3)
    assert paths.disk_arg3(CONFIG, "fe:/var/lib/one/42/disk.3").vm_id == 42   # front-end side
    assert paths.dir_arg3(CONFIG, "node1:/var/lib/one/42/images").vm_id == 42
    assert paths.dir_arg3(CONFIG, "fe:/var/lib/one/42").vm_id == 42
    assert paths.disk_path3(CONFIG, "/var/lib/one/42/images/disk.0") == (42, 0)
    for bad in ("node1:/var/lib/one/images", "node1:/var/lib/one", "node1:/var/lib/one/x/images",
                "node1:/var/lib/one/42/images/sub", "node1:/tmp/42/images"):
        with pytest.raises(InvalidArgument, match="refusing"):
            paths.dir_arg3(CONFIG, bad)


@pytest.mark.parametrize("path, legacy, ok", [
    ("/var/lib/one/datastores/1/0a1b2c", False, True),
    ("/var/lib/one//datastores/1/image.qcow2", False, True),
    ("/var/lib/one/isos/debian.isox", False, True),
    ("/var/lib/one/images/0a1b2c", True, True),
    ("/etc/shadow", False, False),
    ("/var/lib/one/datastores/1/7", False, False),            # a VM directory
    ("/var/lib/one/datastores/0/7/disk.0", False, False),     # another VM's disk
    ("/var/lib/one/datastores/1/.export-5-ab.raw", False, False),
    ("/var/lib/one/datastores/1", False, False),
    ("/var/lib/one/images/0a1b2c", False, False),
    ("/var/lib/one/datastores/1/0a1b2c", True, False),
    ("/srv/x.isox", False, False),
    ("/var/lib/one/datastores/1/../../../etc/shadow", False, False),
])
def test_image_files(path, legacy, ok):
    if ok:
        assert paths.check_image_file(CONFIG, path, legacy)
    else:
        with pytest.raises(InvalidArgument):
            paths.check_image_file(CONFIG, path, legacy)


class Untouchable:
    """A cluster and an oned that fail the test if an action reaches them."""

    def __getattr__(self, name):
        raise AssertionError(f"an action reached the worker/oned ({name}) before refusing")


def _run(module, name, argv):
    action = Action(name=name, config=CONFIG)
    action._cluster = action._api = Untouchable()
    with pytest.raises(InvalidArgument) as failed:
        module(action, argv)
    return failed.value.one_line()


@pytest.mark.parametrize("action, argv, refused", [
    ("delete", ["node1:/var/lib/one/datastores/0/555", "7110", "0"], "datastores/0/555"),
    ("delete", ["node1:/var/lib/one/victim", "7110", "0"], "/var/lib/one/victim"),
    ("delete", ["node1:/var/lib/one", "7110", "0"], "/var/lib/one"),
    ("delete", ["node1:/", "7110", "0"], "node1:/"),
    ("delete", ["node1:/var/lib/one/datastores/0/555/disk.0", "7110", "0"], "555/disk.0"),
    ("mv", ["node1:/var/lib/one/datastores/0/555", "node2:/var/lib/one/datastores/0/555",
            "7110", "0"], "555"),
    ("mv", ["node1:/var/lib/one/datastores/0/7110/disk.0",
            "node2:/var/lib/one/datastores/0/7110/disk.1", "7110", "1"], "not the same disk"),
    ("mvds", ["node1:/var/lib/one/datastores/0/1/disk.0", "vg_one/lv-oneimg-3", "7110", "1"],
     "datastores/0/1/disk.0"),
    ("cpds", ["node1:/tmp/disk.0", "vg_one/lv-oneimg-3", "-1", "7110", "1"], "/tmp/disk.0"),
    ("resize", ["node1:/var/lib/one/datastores/0/1/disk.0", "100", "7110", "1"], "0/1/disk.0"),
    ("snap_create", ["node1:/x/disk.0", "0", "7110", "1"], "/x/disk.0"),
    ("snap_delete", ["node1:/x/disk.0", "0", "7110", "1"], "/x/disk.0"),
    ("snap_revert", ["node1:/x/disk.0", "0", "7110", "1"], "/x/disk.0"),
    ("mkimage", ["10", "raw", "node1:/var/lib/one/datastores/1/7110/disk.1", "7110", "0"],
     "datastores/1/7110"),
    ("mkswap", ["10", "node1:/var/lib/one/datastores/0/1/disk.1", "7110", "0"], "0/1/disk.1"),
    ("context", ["/tmp/c.sh", "node1:/var/lib/one/disk.3", "7110", "0"], "/var/lib/one/disk.3"),
    ("clone", ["fe:vg_one/lv-oneimg-3", "node1:/var/lib/one/datastores/0/1/disk.0", "7110",
               "1"], "datastores/0/1/disk.0"),
    ("clone", ["fe:/etc/shadow", "node1:/var/lib/one/datastores/0/7110/disk.0", "7110", "1"],
     "/etc/shadow"),
    ("clone", ["file:///etc/shadow", "node1:/var/lib/one/datastores/0/7110/disk.0", "7110",
               "1"], "unsupported scheme"),
    ("clone", ["-oProxyCommand=x:/var/lib/one/datastores/1/abc",
               "node1:/var/lib/one/datastores/0/7110/disk.0", "7110", "1"], "not a host name"),
    ("clone", ["fe:vg_one/lv-one-555-0", "node1:/var/lib/one/datastores/0/7110/disk.0",
               "7110", "1"], "image LV"),
    ("ln", ["fe:/etc/shadow", "node1:/var/lib/one/datastores/0/7110/disk.0", "7110", "1"],
     "/etc/shadow"),
    ("ln", ["fe:/var/lib/one/datastores/0/555/disk.0",
            "node1:/var/lib/one/datastores/0/7110/disk.0", "7110", "1"], "555/disk.0"),
    ("premigrate", ["node1", "node2", "/var/lib/one/datastores/0/555", "7110", "0"], "555"),
    ("delete", ["node1:/var/lib/one/datastores/0/7110", "9" * 5000, "0"], "invalid VM id"),
])
def test_tm_refuses_before_any_remote_call(action, argv, refused):
    line = _run(tm.ACTIONS[action], action, argv)
    assert refused in line and len(line) < 600


@pytest.mark.parametrize("command, argv, refused", [
    ("delete", ["node1:/var/lib/one/victim"], "victim"),
    ("delete", ["node1:/var/lib/one/555"], "/var/lib/one/555"),       # the front-end form
    ("delete", ["node1:/var/lib/one"], "/var/lib/one"),
    ("mv", ["node1:/var/lib/one/5/images", "node2:/var/lib/one/6/images"], "two different VMs"),
    ("mv", ["node1:/var/lib/one/5/images", "node2:/tmp"], "/tmp"),
    ("clone", ["fe:/etc/shadow", "node1:/var/lib/one/5/images/disk.0"], "/etc/shadow"),
    ("clone", ["fe:vg_one/lv-oneimg-3", "node1:/var/lib/one/5/disk.0"], "5/disk.0"),
    ("ln", ["fe:/var/lib/one/datastores/1/abc", "node1:/var/lib/one/5/images/disk.0"],
     "datastores/1/abc"),
    ("mkswap", ["10", "node1:/var/lib/one/5/images/x/disk.1"], "x/disk.1"),
    ("context", ["/tmp/c.sh", "node1:/var/lib/one/5/images/../6/images/disk.1"], "'..'"),
])
def test_3x_refuses_before_any_remote_call(command, argv, refused):
    line = _run(tm3.COMMANDS[command], command, argv)
    assert refused in line
