"""Datastore image snapshots (snap_delete/snap_revert/snap_flatten) and export:
input parsing in both calling conventions, exact snapshot names, the
IMPORT_INFO line, and the remote scripts the actions compose (against a canned
worker that serves `lvs` reports and records every script; what LVM does with
those scripts is the lab's job: tests/lab/test_ds_image_snapshots.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lxml import etree

from testkit.fakeoned import datastore_doc, driver_action_b64, image_doc
from one_gfs2clvm.cluster import Cluster
from one_gfs2clvm.config import parse
from one_gfs2clvm.errors import (ConfigError, DriverError, InvalidArgument, LockContention,
                                 NotFound)
from one_gfs2clvm.names import Use, image_snap_lv, parse_lv_name
from one_gfs2clvm.opennebula.args import parse_datastore
from one_gfs2clvm.opennebula import datastore
from one_gfs2clvm.opennebula.datastore import (ACTIONS, ImageRequest, dispose_command,
                                               export_dir, export_file, export_source,
                                               image_request, import_info_xml, parse_md5sum)
from one_gfs2clvm.opennebula.xml import parse_driver_action
from one_gfs2clvm.volumes.ops import Volume, snapshot_volume, snapshots_of, writers
from one_gfs2clvm.opennebula.runtime import Action
from one_gfs2clvm.remote import CommandResult, Pipe

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
NEW_ACTIONS = ("snap_delete", "snap_revert", "snap_flatten", "export")
HELPER = ["/usr/bin/sudo", "-n", "/usr/sbin/one-gfs2clvm-helper"]


def config(tmp_path, lock_mode="lvmlockd", zeroing="on_delete"):
    return parse(f"[storage]\nvolume_groups = vg_one, vg_two\nlock_mode = {lock_mode}\n"
                 f"zeroing = {zeroing}\nbridge_hosts = cfg1\n"
                 f"[locking]\nlock_dir = {tmp_path}\n")


def image_xml(image_id=56, target=None, **kwargs) -> str:
    doc = image_doc(image_id, **kwargs)
    if target is not None:         # image_doc always writes TARGET_SNAPSHOT -1
        doc = doc.replace("<TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT>",
                          f"<TARGET_SNAPSHOT>{target}</TARGET_SNAPSHOT>")
    return doc


def payload(image_id=56, target=None, ds_template=None, **kwargs) -> str:
    return driver_action_b64(image=image_xml(image_id, target, **kwargs),
                             datastore=datastore_doc(100, template=ds_template))


def act(tmp_path, name, stdin=b"", cluster=None, **cfg):
    action = Action(name=name, config=config(tmp_path, **cfg), stdin=stdin)
    action._cluster = cluster
    return action


# --- input: both calling conventions ------------------------------------------------

def request(action, argv, snapshot=False):
    """The datastore door's parse, then the image actions' own checks."""
    return image_request(action, parse_datastore(action, action.name, argv), snapshot)


@pytest.mark.parametrize("name", NEW_ACTIONS)
def test_both_calling_conventions_give_the_same_request(tmp_path, name):
    needs_snapshot = name != "export"
    text = payload(56, target=1 if needs_snapshot else None)
    modern = request(act(tmp_path, name, text.encode() + b"\n"), ["56"], needs_snapshot)
    legacy = request(act(tmp_path, name), [text, "56"], needs_snapshot)   # <= 6.6, and
    assert modern == legacy                                  # one_market.rb calls export so
    assert modern.image_id == 56 and modern.volume == Volume("vg_one", "lv-oneimg-56")
    assert modern.bridges == ("node1", "node2")              # the datastore's BRIDGE_LIST
    if needs_snapshot:
        assert (modern.snap_id, modern.snapshot) == (1, Volume("vg_one", "lv-oneimg-56-snap-1"))
    else:
        assert (modern.snap_id, modern.snapshot) == (None, None)


def test_bridges_fall_back_to_the_configuration(tmp_path):
    text = payload(56, target=0, ds_template={"BRIDGE_LIST": None})
    req = request(act(tmp_path, "snap_delete"), [text, "56"], snapshot=True)
    assert req.bridges == ("cfg1",) and req.snap_id == 0


def test_vg_comes_from_the_source_and_must_be_configured(tmp_path):
    req = request(act(tmp_path, "export"), [payload(7, source="vg_two/lv-oneimg-7"), "7"])
    assert req.volume == Volume("vg_two", "lv-oneimg-7")
    with pytest.raises(ConfigError, match="'vg_other' is not configured"):
        request(act(tmp_path, "export"), [payload(7, source="vg_other/lv-oneimg-7"), "7"])


@pytest.mark.parametrize("argv_extra, kwargs, message", [
    ([], {}, "has no TARGET_SNAPSHOT"),                              # -1: none given
    ([], {"source": "/var/lib/one/x.img"}, "SOURCE is not its own LV"),
    ([], {"source": "lvm://7/0"}, "SOURCE is not its own LV"),
    ([], {"source": "vg_one/lv-oneimg-6"}, "SOURCE is not its own LV"),       # another image's
    ([], {"source": "vg_one/lv-one-7-0"}, "SOURCE is not its own LV"),        # a VM's disk
    ([], {"source": "vg_one/lv-oneimg-5-snap-1"}, "invalid image source"),  # a snapshot
    ([], {"source": ""}, "SOURCE is not its own LV"),
])
def test_bad_snapshot_input_is_one_clear_line(tmp_path, argv_extra, kwargs, message):
    with pytest.raises(InvalidArgument) as info:
        request(act(tmp_path, "snap_revert"), [payload(56, **kwargs), "56"], True)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_huge_snapshot_id_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="snapshot id"):
        request(act(tmp_path, "snap_delete"), [payload(56, target=10 ** 11), "56"], True)


def test_usage_errors_through_main(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "gfs2clvm.conf"
    conf.write_text("[storage]\nvolume_groups = vg_one\n")
    monkeypatch.setenv("ONE_GFS2CLVM_CONF", str(conf))
    assert datastore.main("snap_flatten", ["1", "2", "3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if not line.startswith("INFO:")] == [
        "usage: datastore snap_flatten ID (base64 XML on stdin), "
        "or datastore snap_flatten BASE64_XML ID"]
    # legacy argv form, no TARGET_SNAPSHOT: refused before any SSH connection
    assert datastore.main("snap_revert", [payload(56), "56"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if not line.startswith("INFO:")] == [
        "datastore snap_revert: IMAGE 56 has no TARGET_SNAPSHOT"]


def test_actions_are_registered_and_shipped():
    for name in NEW_ACTIONS:
        assert ACTIONS[name].__name__ == name
        shim = REPO / "var-lib-one-remotes-datastore-gfs2clvm" / name
        assert os.access(shim, os.X_OK)
        assert f'sys.exit(main("{name}", sys.argv[1:]))' in shim.read_text()


# --- exact snapshot names ------------------------------------------------------------

def test_snapshot_names_are_the_tm_names():
    image = Volume("vg_one", "lv-oneimg-5")
    assert snapshot_volume(image, 1) == Volume("vg_one", "lv-oneimg-5-snap-1")
    assert snapshot_volume(image, 10).lv == image_snap_lv(5, 10)
    # what tm.snap_create names a persistent image disk's snapshot
    assert snapshot_volume(image, 3).lv == parse_lv_name("lv-oneimg-5").snapshot(3)
    with pytest.raises(InvalidArgument):
        snapshot_volume(Volume("vg_one", "lv-oneimg-5-snap-1"), 2)   # no snapshot of one


def test_snapshots_of_selects_exact_parents_in_id_order():
    names = ["lv-oneimg-5-snap-11", "lv-oneimg-5-snap-1", "lv-oneimg-5-snap-10",
             "lv-oneimg-5-snap-2", "lv-oneimg-5", "lv-oneimg-51-snap-1", "lv-oneimg-55-snap-1",
             "lv-one-5-0-snap-1", "lv-oneimg-5-snap-01", "lv-oneimg-5-snap-1x",
             "xlv-oneimg-5-snap-3", "lv-oneimg-5-snap-", "gfs2_one"]
    found = snapshots_of(Volume("vg_one", "lv-oneimg-5"), names)
    assert [v.lv for v in found] == ["lv-oneimg-5-snap-1", "lv-oneimg-5-snap-2",
                                     "lv-oneimg-5-snap-10", "lv-oneimg-5-snap-11"]
    assert {v.vg for v in found} == {"vg_one"}
    assert snapshots_of(Volume("vg_one", "lv-oneimg-51"), names) == [
        Volume("vg_one", "lv-oneimg-51-snap-1")]


def test_writers_ignore_read_only_attachments():
    lv = canned_lv("lv-oneimg-5", tags=("one-use=7:0:node1", "one-use=8:1:node2",
                                        "one-readonly"))
    assert writers(lv) == []
    lv = canned_lv("lv-oneimg-5", tags=("one-use=7:0:node1", "other"))
    assert writers(lv) == [Use(7, 0, "node1")]
    assert writers(canned_lv("lv-oneimg-5")) == []


# --- IMPORT_INFO ---------------------------------------------------------------------

MD5 = "0123456789abcdef0123456789abcdef"


def test_import_info_is_one_line_of_xml():
    line = import_info_xml("ssh://node1:/dev/vg_one/lv-oneimg-5", MD5, 24)
    assert "\n" not in line
    assert line == ("<IMPORT_INFO><IMPORT_SOURCE>ssh://node1:/dev/vg_one/lv-oneimg-5"
                    "</IMPORT_SOURCE><MD5>0123456789abcdef0123456789abcdef</MD5>"
                    "<SIZE>24</SIZE><FORMAT>raw</FORMAT><DISPOSE>NO</DISPOSE></IMPORT_INFO>")


def test_import_info_with_dispose_cmd():
    line = import_info_xml("ssh://node1:/var/lib/one/datastores/100/.export-5.raw", MD5, 24,
                           "ssh node1 rm -f /var/lib/one/datastores/100/.export-5.raw")
    assert line == ("<IMPORT_INFO><IMPORT_SOURCE>ssh://node1:/var/lib/one/datastores/100/"
                    ".export-5.raw</IMPORT_SOURCE><MD5>0123456789abcdef0123456789abcdef</MD5>"
                    "<SIZE>24</SIZE><FORMAT>raw</FORMAT><DISPOSE>YES</DISPOSE><DISPOSE_CMD>"
                    "ssh node1 rm -f /var/lib/one/datastores/100/.export-5.raw</DISPOSE_CMD>"
                    "</IMPORT_INFO>")


def test_import_info_escapes_text():
    line = import_info_xml("ssh://h:/a&b<c>]]>", MD5, 1, "rm '/a&b<c>]]>'")
    root = etree.fromstring(line)
    assert root.findtext("IMPORT_SOURCE") == "ssh://h:/a&b<c>]]>"
    assert root.findtext("DISPOSE_CMD") == "rm '/a&b<c>]]>'"
    assert [child.tag for child in root] == ["IMPORT_SOURCE", "MD5", "SIZE", "FORMAT",
                                              "DISPOSE", "DISPOSE_CMD"]


@pytest.mark.parametrize("source, md5, size", [
    ("ssh://h:/x", "0123", 1),                      # not an md5
    ("ssh://h:/x", MD5.upper(), 1),                 # md5sum prints lower case
    ("ssh://h:/x", MD5, -1),
    ("ssh://h:/x", MD5, True),
    ("ssh://h:/x", MD5, "24"),
    ("ssh://h:/x\n<X/>", MD5, 1),                   # would be a second line
    ("ssh://h:/x\x01", MD5, 1),                     # not XML text
    ("", MD5, 1),
])
def test_import_info_refuses_bad_values(source, md5, size):
    with pytest.raises(InvalidArgument):
        import_info_xml(source, md5, size)


@pytest.mark.parametrize("dispose_cmd", ["", "rm -f /x\nrm -rf /", "rm\x01"])
def test_import_info_refuses_a_bad_dispose_cmd(dispose_cmd):
    with pytest.raises(InvalidArgument, match="DISPOSE_CMD"):
        import_info_xml("ssh://h:/x", MD5, 1, dispose_cmd)


FILE = "/var/lib/one/datastores/100/.export-5-ab12cd34.raw"


@pytest.fixture(autouse=True)
def fixed_export_token(monkeypatch):
    """Export files carry a random token; these tests pin it."""
    import secrets
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: "ab12cd34")


def test_export_source_is_what_downloader_sh_splits():
    source = export_source("node2", FILE)
    assert source == f"ssh://node2:{FILE}"
    host, path = source.removeprefix("ssh://").split(":", 1)   # downloader.sh's split
    assert (host, path) == ("node2", FILE)
    with pytest.raises(InvalidArgument):
        export_source("-oProxyCommand=x", FILE)


def test_dispose_command_survives_the_market_drivers_unquoted_expansion():
    import shlex
    command = dispose_command("node2", FILE)
    assert command == shlex.join(["ssh", "node2", "rm", "-f", FILE])
    assert command.split() == ["ssh", "node2", "rm", "-f", FILE]     # `$DISPOSE_CMD`
    with pytest.raises(InvalidArgument):
        dispose_command("-oProxyCommand=x", FILE)


@pytest.mark.parametrize("path", ["/gfs/a b/.export-5.raw", "/gfs/*/.export-5.raw",
                                  "/gfs/a'b/.export-5.raw", "/gfs/$HOME/.export-5.raw",
                                  "/gfs/a;b/.export-5.raw", "relative/.export-5.raw", ""])
def test_paths_needing_shell_quoting_are_refused(path):
    with pytest.raises(InvalidArgument):
        export_source("node2", path)
    with pytest.raises(InvalidArgument):
        dispose_command("node2", path)


def driver_data(base_path=None, ds_id=100):
    return parse_driver_action(driver_action_b64(
        image=image_xml(5), datastore=datastore_doc(ds_id, base_path=base_path)))


@pytest.mark.parametrize("mount, base_path, expected", [
    ("/var/lib/one", None, "/var/lib/one/datastores/100"),         # oned's //datastores/100
    # BASE_PATH never steers where the driver writes (paths.datastore_dir)
    ("/var/lib/one", "/var/lib/one/images", "/var/lib/one/datastores/100"),
    ("/var/lib/one/", "/var/lib/one", "/var/lib/one/datastores/100"),
    ("/var/lib/one", "/var/lib/one/datastores/0/555", "/var/lib/one/datastores/100"),
    ("/var/lib/one", "/srv/images", "/var/lib/one/datastores/100"),   # not on the GFS2
    ("/gfs2", "/var/lib/one//datastores/100", "/gfs2/datastores/100"),
])
def test_export_dir_is_the_imports_rule(tmp_path, mount, base_path, expected):
    conf = parse(f"[storage]\nvolume_groups = vg_one\ngfs2_mount = {mount}\n"
                 f"[locking]\nlock_dir = {tmp_path}\n")
    action = Action(name="export", config=conf, stdin=b"")
    assert export_dir(action, driver_data(base_path)) == expected
    assert export_file(action, driver_data(base_path), 5, "ab12") == \
        f"{expected}/.export-5-ab12.raw"



def test_each_export_gets_its_own_file(tmp_path, monkeypatch):
    monkeypatch.undo()                          # the real random token
    action = act(tmp_path, "export")
    first, second = (export_file(action, driver_data(None), 5) for _ in range(2))
    assert first != second and first.startswith("/var/lib/one/datastores/100/.export-5-")


def test_export_dir_ignores_a_hostile_base_path(tmp_path):
    action = act(tmp_path, "export")
    assert export_dir(action, driver_data("/var/lib/one/../../etc")) == \
        "/var/lib/one/datastores/100"
    assert export_file(action, driver_data("/var/lib/one/my images"), 5, "ab12") == \
        "/var/lib/one/datastores/100/.export-5-ab12.raw"


def test_parse_md5sum():
    assert parse_md5sum(f"{MD5}  -\n") == MD5
    assert parse_md5sum(f"  Logical volume activated\n{MD5}  -\n") == MD5
    assert parse_md5sum(f"x\n{MD5}  {FILE}.part\n", f"{FILE}.part") == MD5
    with pytest.raises(DriverError, match="no checksum"):
        parse_md5sum("")
    with pytest.raises(DriverError):
        parse_md5sum(f"{MD5}  /dev/vg_one/lv-oneimg-5\n")    # not the stream we piped
    with pytest.raises(DriverError):
        parse_md5sum(f"{MD5}  {FILE}\n", f"{FILE}.part")     # not the file we summed


# --- the scripts the actions compose, against a canned worker --------------------------

def canned_lv(name, size=16 * MiB, tags=(), active_here=False, vg="vg_one"):
    from one_gfs2clvm.lvm import LogicalVolume
    return LogicalVolume(name=name, vg=vg, uuid="u", size_bytes=size, attr="-wi-------",
                         active=active_here, active_locally=active_here,
                         active_exclusively=False, tags=tuple(tags), layout="linear",
                         origin="", path=f"/dev/{vg}/{name}", dm_path="")


def _row(lv):
    return {"lv_name": lv.name, "vg_name": lv.vg, "lv_uuid": lv.uuid,
            "lv_size": str(lv.size_bytes), "lv_attr": lv.attr,
            "lv_active": "active" if lv.active else "",
            "lv_active_locally": "active locally" if lv.active_locally else "",
            "lv_active_exclusively": "", "lv_tags": ",".join(lv.tags),
            "lv_layout": lv.layout, "origin": "", "lv_path": lv.path, "lv_dm_path": ""}


class CannedWorker(Cluster):
    """A Cluster whose workers answer `lvs` from a fixed list (helper JSON, parsed by
    the real LvmClient) and record every other command and script.  The list
    never changes: the tests look at what the action asked for, not at LVM."""

    def __init__(self, config, lvs, stdout=""):
        super().__init__(config)
        self.lvs = list(lvs)
        self.stdout = stdout
        self.calls: list[tuple[str, object]] = []

    def run(self, host, argv, timeout=None):
        assert argv[:3] == HELPER, argv
        if argv[3] == "lvs":
            vg, names = argv[4], argv[5:]
            rows = [_row(lv) for lv in self.lvs if lv.vg == vg and (not names or lv.name in names)]
            return CommandResult(0, json.dumps({"report": [{"lv": rows}]}), "")
        self.calls.append((host, argv[3:]))
        return CommandResult(0, "", "")

    def run_steps(self, host, steps, stdin=None, timeout=None, on_stdout=None):
        self.calls.append((host, [s if isinstance(s, Pipe) else
                                  (s[3:] if list(s[:3]) == HELPER else list(s)) for s in steps]))
        return CommandResult(0, self.stdout, "")


def run_action(tmp_path, name, lvs, target=None, stdout="", **cfg):
    worker = CannedWorker(config(tmp_path, **cfg), lvs, stdout)
    text = payload(5, target=target).encode()
    ACTIONS[name](act(tmp_path, name, text, worker, **cfg), ["5"])
    return worker.calls


IMG, SNAP1 = "lv-oneimg-5", "lv-oneimg-5-snap-1"


def test_snap_revert_script(tmp_path):
    calls = run_action(tmp_path, "snap_revert", [canned_lv(IMG), canned_lv(SNAP1),
                                                 canned_lv("lv-oneimg-5-snap-10")], target=1)
    assert calls == [("node1", [
        ["activate", "vg_one", SNAP1, "sy"],
        ["activate", "vg_one", IMG, "ey"],
        ["qemu-img", "convert", "-q", "-n", "-f", "raw", "-O", "raw", "-t", "none", "-W",
         f"/dev/vg_one/{SNAP1}", f"/dev/vg_one/{IMG}"],
        ["activate", "vg_one", SNAP1, "n"],
        ["activate", "vg_one", IMG, "n"]])]


def test_snap_revert_zeroes_the_tail_of_a_grown_image_and_uses_local_flags(tmp_path):
    calls = run_action(tmp_path, "snap_revert", [canned_lv(IMG, size=40 * MiB),
                                                 canned_lv(SNAP1, size=16 * MiB)],
                       target=1, lock_mode="clvmd")
    steps = calls[0][1]
    assert steps[0] == ["activate", "vg_one", SNAP1, "ly"]
    assert steps[2] == ["/sbin/blkdiscard", "--zeroout", "--offset", str(16 * MiB),
                        "--length", str(24 * MiB), f"/dev/vg_one/{IMG}"]
    assert steps[-2:] == [["activate", "vg_one", SNAP1, "ln"], ["activate", "vg_one", IMG, "n"]]


def test_snap_revert_grows_an_image_smaller_than_its_snapshot(tmp_path):
    calls = run_action(tmp_path, "snap_revert", [canned_lv(IMG, size=8 * MiB),
                                                 canned_lv(SNAP1, size=16 * MiB)], target=1)
    assert calls[0] == ("node1", ["extend", "vg_one", IMG, str(16 * MiB)])
    assert not any("blkdiscard" in step[0] for step in calls[1][1] if isinstance(step, list))


def test_snap_revert_refusals_run_no_script(tmp_path):
    used = canned_lv(IMG, tags=("one-use=7801:0:node2",))
    with pytest.raises(LockContention) as info:
        run_action(tmp_path, "snap_revert", [used, canned_lv(SNAP1)], target=1)
    assert str(info.value) == "vg_one/lv-oneimg-5 is in use by VM 7801 on node2: not reverting it"
    with pytest.raises(NotFound, match="snapshot vg_one/lv-oneimg-5-snap-1 does not exist"):
        run_action(tmp_path, "snap_revert", [canned_lv(IMG), canned_lv("lv-oneimg-5-snap-10")],
                   target=1)
    with pytest.raises(NotFound, match="incomplete"):
        run_action(tmp_path, "snap_revert",
                   [canned_lv(IMG), canned_lv(SNAP1, tags=("one-incomplete",))], target=1)
    with pytest.raises(NotFound, match="image LV vg_one/lv-oneimg-5 does not exist"):
        run_action(tmp_path, "snap_revert", [canned_lv(SNAP1)], target=1)


def test_snap_delete_exact_name_and_idempotent(tmp_path):
    lvs = [canned_lv(IMG), canned_lv(SNAP1), canned_lv("lv-oneimg-5-snap-10"),
           canned_lv("lv-oneimg-5-snap-11"), canned_lv("lv-oneimg-51-snap-1")]
    calls = run_action(tmp_path, "snap_delete", lvs, target=1)
    assert calls == [("node1", [["activate", "vg_one", SNAP1, "n"],
                                ["remove", "vg_one", SNAP1]])]
    assert run_action(tmp_path, "snap_delete", lvs[2:], target=1) == []      # already gone


def test_snap_flatten_copies_then_removes_all_snapshots_target_last(tmp_path):
    snaps = ["lv-oneimg-5-snap-0", SNAP1, "lv-oneimg-5-snap-10", "lv-oneimg-5-snap-11"]
    lvs = [canned_lv(IMG)] + [canned_lv(n) for n in snaps] + [
        canned_lv("lv-oneimg-51-snap-1"), canned_lv("lv-one-5-0-snap-1")]
    calls = run_action(tmp_path, "snap_flatten", lvs, target=10)
    copy, removal = calls
    assert copy[1][0] == ["activate", "vg_one", "lv-oneimg-5-snap-10", "sy"]
    assert copy[1][2][-2:] == ["/dev/vg_one/lv-oneimg-5-snap-10", f"/dev/vg_one/{IMG}"]
    removed = [step[2] for step in removal[1] if step[0] == "remove"]
    assert removed == ["lv-oneimg-5-snap-0", SNAP1, "lv-oneimg-5-snap-11",
                       "lv-oneimg-5-snap-10"]


def test_snap_flatten_rerun_and_refusals(tmp_path):
    # everything already done (a re-run after the last removal): nothing to do
    assert run_action(tmp_path, "snap_flatten", [canned_lv(IMG)], target=1) == []
    # target gone but other snapshots left: not a state flatten leaves; touch nothing
    with pytest.raises(NotFound, match=r"still has lv-oneimg-5-snap-10\): not flattening$"):
        run_action(tmp_path, "snap_flatten", [canned_lv(IMG), canned_lv("lv-oneimg-5-snap-10")],
                   target=1)
    used = canned_lv(IMG, tags=("one-use=7801:0:node2", "one-readonly"))
    with pytest.raises(LockContention, match="in use by VM 7801 on node2: not flattening it"):
        run_action(tmp_path, "snap_flatten", [used, canned_lv(SNAP1)], target=1)


PART = f"{FILE}.part"
COPY = ["qemu-img", "convert", "-q", "-f", "raw", "-O", "raw", "-t", "none",
        f"/dev/vg_one/{IMG}", PART]


def test_export_copies_to_a_file_on_a_bridge_and_prints_one_line(tmp_path, capsys):
    calls = run_action(tmp_path, "export", [canned_lv(IMG, size=24 * MiB + 1)],
                       stdout=f"  Logical volume activated\n{MD5}  {PART}\n")
    (host, steps), = calls                                   # ONE remote script
    assert host == "node1"
    assert steps == [["mkdir", "-p", "/var/lib/one/datastores/100"],
                     ["activate", "vg_one", IMG, "sy"],
                     COPY,
                     ["md5sum", PART],
                     ["activate", "vg_one", IMG, "n"],     # released before the file appears
                     ["mv", "-f", PART, FILE]]
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    root = etree.fromstring(out)
    assert [child.tag for child in root] == ["IMPORT_SOURCE", "MD5", "SIZE", "FORMAT",
                                              "DISPOSE", "DISPOSE_CMD"]
    assert root.findtext("IMPORT_SOURCE") == f"ssh://node1:{FILE}"
    assert (root.findtext("MD5"), root.findtext("SIZE")) == (MD5, "25")     # MB rounded up
    assert (root.findtext("FORMAT"), root.findtext("DISPOSE")) == ("raw", "YES")
    assert root.findtext("DISPOSE_CMD") == f"ssh node1 rm -f {FILE}"


def test_export_uses_local_flags_under_clvmd(tmp_path, capsys):
    (host, steps), = run_action(tmp_path, "export", [canned_lv(IMG)], lock_mode="clvmd",
                                stdout=f"{MD5}  {PART}\n")
    assert steps[1] == ["activate", "vg_one", IMG, "ly"]
    assert steps[4] == ["activate", "vg_one", IMG, "ln"]


def test_export_of_an_image_active_here_leaves_it_active(tmp_path, capsys):
    lv = canned_lv(IMG, tags=("one-use=7801:0:node1", "one-readonly"), active_here=True)
    (host, steps), = run_action(tmp_path, "export", [lv], stdout=f"{MD5}  {PART}\n")
    assert steps == [["mkdir", "-p", "/var/lib/one/datastores/100"], COPY,
                     ["md5sum", PART], ["mv", "-f", PART, FILE]]
    assert "<SIZE>16</SIZE>" in capsys.readouterr().out


class FailingWorker(CannedWorker):
    """Its first script fails at step `failing` (as run_steps reports it)."""

    def __init__(self, config, lvs, failing, cleanup_fails=False):
        super().__init__(config, lvs)
        self.failing, self.cleanup_fails = failing, cleanup_fails

    def run_steps(self, host, steps, stdin=None, timeout=None, on_stdout=None):
        from one_gfs2clvm.errors import RemoteCommandFailed
        super().run_steps(host, steps, stdin, timeout)
        if len(self.calls) == 1:
            raise RemoteCommandFailed(host, " ".join(steps[self.failing]), 1, "boom", "")
        if self.cleanup_fails:
            raise RemoteCommandFailed(host, " ".join(steps[0]), 5, "cleanup failed", "")
        return CommandResult(0, "", "")


@pytest.mark.parametrize("active_here, failing", [(False, 2), (True, 1)])
def test_a_failed_export_releases_the_lv_and_removes_the_part_file(tmp_path, capsys,
                                                                    active_here, failing):
    worker = FailingWorker(config(tmp_path), [canned_lv(IMG, active_here=active_here)],
                           failing)
    with pytest.raises(DriverError, match="boom"):
        datastore.ACTIONS["export"](act(tmp_path, "export", payload(5).encode(), worker), ["5"])
    assert worker.calls[0][1][failing] == COPY
    cleanup = [steps for _, steps in worker.calls[1:]]
    release = [] if active_here else [[["activate", "vg_one", IMG, "n"]]]
    assert cleanup == release + [[["rm", "-f", PART]]]      # one by one, best effort
    assert capsys.readouterr().out == ""


def test_a_failed_release_still_removes_the_part_file_and_keeps_the_first_error(tmp_path,
                                                                               capsys):
    worker = FailingWorker(config(tmp_path), [canned_lv(IMG)], 3, cleanup_fails=True)
    with pytest.raises(DriverError, match="md5sum .*: boom"):
        datastore.ACTIONS["export"](act(tmp_path, "export", payload(5).encode(), worker), ["5"])
    assert [steps for _, steps in worker.calls[1:]] == [
        [["activate", "vg_one", IMG, "n"]], [["rm", "-f", PART]]]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("could not clean up after reading vg_one/lv-oneimg-5 on node1") == 2


def test_export_refuses_a_written_image(tmp_path, capsys):
    with pytest.raises(LockContention, match="in use by VM 7801 on node2: not exporting it"):
        run_action(tmp_path, "export", [canned_lv(IMG, tags=("one-use=7801:0:node2",))])
    with pytest.raises(NotFound, match="incomplete"):
        run_action(tmp_path, "export", [canned_lv(IMG, tags=("one-incomplete",))])
    with pytest.raises(NotFound, match="does not exist"):
        run_action(tmp_path, "export", [])
    assert capsys.readouterr().out == ""


def test_image_request_is_a_value():
    req = ImageRequest(1, Volume("vg_one", "lv-oneimg-1"), ("h",))
    assert req == ImageRequest(1, Volume("vg_one", "lv-oneimg-1"), ("h",))
