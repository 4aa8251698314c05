"""Import decisions that need no worker: which rules a datastore sets, where
staging goes, which ISO files rm may delete, refusals made before any SSH,
the 3.x image argument conventions, and the CLI's import command."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from testkit.fakeoned import datastore_doc, driver_action_b64, image_doc
from one_gfs2clvm.cli import main as cli
from one_gfs2clvm.config import parse
from one_gfs2clvm.errors import InvalidArgument
from one_gfs2clvm.opennebula import image3
from one_gfs2clvm.opennebula.args import driver_action as request
from one_gfs2clvm.opennebula.imports import Import, owned_iso_path
from one_gfs2clvm.opennebula.runtime import Action

CONFIG = parse("[storage]\nvolume_groups = vg_one, vg_two\nbridge_hosts = n1, n2\n")


def job(template=None, image_template=None, path="/var/tmp/x.raw", base_path=None):
    payload = driver_action_b64(
        image=image_doc(42, source="", path=path, template=image_template),
        datastore=datastore_doc(100, base_path=base_path, template=template or {}))
    action = Action(name="cp", config=CONFIG, stdin=payload.encode())
    image_id, data = request(action, ["42"])
    return Import.from_driver_action(action, image_id, data)


def test_datastore_rules_and_defaults():
    plain = job(template={"VG_NAME": "vg_two", "BRIDGE_LIST": "n2 n1"})
    assert str(plain.target) == "vg_two/lv-oneimg-42" and plain.bridges == ["n2", "n1"]
    assert plain.restricted == ["/"] and plain.safe == ["/var/tmp"]     # OpenNebula's defaults
    assert plain.datastore_dir == "/var/lib/one/datastores/100"
    own = job(template={"RESTRICTED_DIRS": "/etc /root", "SAFE_DIRS": "", "BRIDGE_LIST": None})
    assert own.restricted == ["/etc", "/root"] and own.safe == []
    assert own.bridges == ["n1", "n2"]                                  # config fallback


def test_staging_dir_is_on_gfs2():
    assert job(base_path="/var/lib/one//datastores/100").datastore_dir == \
        "/var/lib/one/datastores/100"                                   # oned's double slash
    assert job(base_path="/srv/one/datastores/100").datastore_dir == \
        "/var/lib/one/datastores/100"                                   # not on GFS2: ours
    assert job(base_path="/var/lib/one/datastores/0/555").datastore_dir == \
        "/var/lib/one/datastores/100"                                   # never a VM's dir


def test_checksums_come_from_the_image_template():
    with pytest.raises(InvalidArgument, match="not a hex digest"):
        job(image_template={"MD5": "abc"})
    assert job(image_template={"SHA1": "a" * 40}).checksums.expected == {"sha1": "a" * 40}


def test_refusals_before_any_ssh():
    with pytest.raises(InvalidArgument, match="use vol://"):
        job(path="vg_one/lv-oneimg-7").run()
    with pytest.raises(InvalidArgument, match="invalid image source"):
        job(path="relative/file.img").run()


def test_only_our_iso_copies_may_be_removed():
    own = "/var/lib/one/datastores/100"
    assert owned_iso_path(42, "/var/lib/one/datastores/100/42.isox", own)
    assert owned_iso_path(42, "/var/lib/one/images/42.isox", "/var/lib/one/images")   # 3.x
    assert not owned_iso_path(42, "/var/lib/one/images/42.isox", own)
    assert not owned_iso_path(42, "/var/lib/one/datastores/100/420.isox", own)
    assert not owned_iso_path(42, "/var/lib/one/isos/42.isox", own)   # registered in place
    assert not owned_iso_path(42, "/var/lib/one/datastores/0/42.isox", own)  # another DS


@pytest.mark.parametrize("name, argv, message", [
    ("cp", ["/var/tmp/a"], "usage: cp PATH ID"),
    ("cp", ["/var/tmp/a", "7", "8"], "given twice and different"),
    ("mkfs", ["ext4", "x", "7"], "invalid size 'x'"),
    ("mkfs", ["ext4", "8", "7", "7", "7"], "usage: mkfs"),
    ("mv", ["relative", "-", "7"], "invalid disk path 'relative'"),
    ("mv", ["/var/lib/one/victim", "-", "7"], "refusing disk path '/var/lib/one/victim'"),
    ("mv", ["/etc/7/images/disk.0", "-", "7"], "refusing disk path"),
    ("rm", ["vg_one/lv-one-1-0", "7"], "not an image LV"),     # never a VM's disk
    ("rm", ["vg_one/lv-oneimg-1-snap-0", "7"], "invalid image source"),
])
def test_3x_image_arguments(name, argv, message, capsys, monkeypatch):
    monkeypatch.setenv("ONE_GFS2CLVM_CONF", "/nonexistent")
    from one_gfs2clvm.opennebula import runtime
    action = Action(name=name, config=CONFIG)
    function = image3.COMMANDS[name]
    if name in ("mv",):
        # SRC is checked before any remote call: a bridge host is never reached
        with pytest.raises(InvalidArgument, match=message):
            action.cluster.on_bridge = lambda work, hosts: work("n1")   # no SSH reached
            function(action, argv)
        return
    if name == "rm":
        with pytest.raises(InvalidArgument, match=message):
            function(action, argv)
        return
    with pytest.raises(InvalidArgument, match=message):
        function(action, argv)
    assert runtime  # the module the shims run through


def test_3x_unknown_action_and_error_framing(capsys):
    assert image3.main("bogus", []) == 2
    code = image3.main("mkfs", ["ext4"])
    err = capsys.readouterr().err
    assert code != 0 and "ERROR MESSAGE --8<------" in err


def test_cli_image_import_options():
    result = CliRunner().invoke(cli, ["image", "import", "--help"])
    assert result.exit_code == 0 and "--image-id" in result.output and "FILE|URL" in result.output
    result = CliRunner().invoke(cli, ["image", "import", "/var/tmp/x.raw"])
    assert result.exit_code != 0 and "--image-id" in result.output
