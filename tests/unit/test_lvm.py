from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from one_gfs2clvm.config import Config
from one_gfs2clvm.errors import (ActivationError, ConfigError, HelperRefused, InvalidArgument,
                                 LockContention, LockManagerDown, LvmError, NotFound)
from one_gfs2clvm.lvm import (ActivationPolicy, CommandResult, LogicalVolume, LvmClient,
                              VolumeGroup, helper_argv, last_error_line, parse_lvs_json,
                              parse_vgs_json, raise_for_result)
from one_gfs2clvm.nodehelper import LV_FIELDS, VG_FIELDS

FIXTURES = Path(__file__).parent / "fixtures"
SUDO = ["/usr/bin/sudo", "-n", "/usr/sbin/one-gfs2clvm-helper"]
CONFIG = Config(volume_groups=("vg_one", "vg_two"))


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- parsers -------------------------------------------------------------------

def test_fixture_fields_are_nodehelper_fields():
    # The canned reports carry exactly the columns the helper asks for.
    lv_rows = json.loads(fixture("lvs_vg_one_lvmlockd.json"))["report"][0]["lv"]
    vg_rows = json.loads(fixture("vgs_vg_one_lvmlockd.json"))["report"][0]["vg"]
    assert all(list(row) == LV_FIELDS.split(",") for row in lv_rows)
    assert list(vg_rows[0]) == VG_FIELDS.split(",")


def test_parse_lvs_lvmlockd():
    lvs = parse_lvs_json(fixture("lvs_vg_one_lvmlockd.json"))
    assert [lv.name for lv in lvs] == ["gfs2", "lv-one-12-0", "lv-one-12-1", "lv-oneimg-3"]
    assert lvs[1] == LogicalVolume(
        name="lv-one-12-0", vg="vg_one", uuid="c0S8fE-1mQx-Tz4a-7bUw-Hn2K-pD5r-V9eLgo",
        size_bytes=8589934592, attr="-wi-ao----", active=True, active_locally=True,
        active_exclusively=True, tags=("one:ds=100", "one:vm=12"), layout="linear",
        origin="", path="/dev/vg_one/lv-one-12-0",
        dm_path="/dev/mapper/vg_one-lv--one--12--0")
    # gfs2 is active shared: active here, not exclusively
    assert (lvs[0].active, lvs[0].active_locally, lvs[0].active_exclusively) == (
        True, True, False)
    assert (lvs[2].active, lvs[2].active_locally, lvs[2].active_exclusively) == (
        False, False, False)
    assert lvs[3].tags == ("one:image=3",)
    assert lvs[2].tags == ("one:vm=12",)
    assert not any(lv.is_snapshot or lv.is_thin or lv.is_cache or lv.is_raid for lv in lvs)


def test_parse_lvs_special_types():
    lvs = {lv.name: lv for lv in parse_lvs_json(fixture("lvs_vg_local_special.json"))}
    kinds = {name: (lv.is_origin, lv.is_snapshot, lv.is_thin, lv.is_cache, lv.is_raid)
             for name, lv in lvs.items()}
    assert kinds == {
        "lv-one-20-0": (True, False, False, False, False),   # snapshot origin
        "lv-one-20-1": (False, True, False, False, False),   # classic snapshot
        "lv-oneimg-5": (False, False, True, False, False),   # thin volume
        "lv-one-21-0": (False, True, True, False, False),    # thin snapshot
        "lv-one-22-0": (False, False, False, False, True),   # raid1
        "lv-one-23-0": (False, False, False, True, False),   # cache
        "pool0": (False, False, True, False, False),         # thin pool
    }
    assert lvs["lv-one-21-0"].origin == "lv-oneimg-5"
    assert lvs["pool0"].path == ""
    assert lvs["lv-oneimg-5"].size_bytes == 10737418240


def test_parse_lvs_empty():
    assert parse_lvs_json(fixture("lvs_empty.json")) == []


@pytest.mark.parametrize("name, expected", [
    ("vgs_vg_one_lvmlockd.json", VolumeGroup(
        name="vg_one", uuid="e8WkQ2-Rb4x-Ht0N-Lm7c-Pz3s-Ya9v-Gd6fJu",
        size_bytes=107369988096, free_bytes=41603301376, extent_size=4194304,
        attr="wz--ns", lock_type="dlm", shared=True, lv_count=4, tags=())),
    ("vgs_vg_one_clvmd.json", VolumeGroup(
        name="vg_one", uuid="e8WkQ2-Rb4x-Ht0N-Lm7c-Pz3s-Ya9v-Gd6fJu",
        size_bytes=107369988096, free_bytes=41603301376, extent_size=4194304,
        attr="wz--nc", lock_type="", shared=True, lv_count=4, tags=("one", "gfs2"))),
    ("vgs_vg_local_plain.json", VolumeGroup(
        name="vg_local", uuid="Tq2Ls9-Xn6d-Bw1E-Ka4r-Mh8y-Pc0z-Vf3jNo",
        size_bytes=53682896896, free_bytes=15032385536, extent_size=4194304,
        attr="wz--n-", lock_type="", shared=False, lv_count=7, tags=())),
])
def test_parse_vgs(name, expected):
    assert parse_vgs_json(fixture(name)) == [expected]


def _lv_row(**changes):
    row = json.loads(fixture("lvs_vg_one_lvmlockd.json"))["report"][0]["lv"][1]
    row.update(changes)
    return row


def _lvs_doc(*rows):
    return json.dumps({"report": [{"lv": list(rows)}]})


@pytest.mark.parametrize("value, expected", [
    ("active", True), ("", False), ("active locally", True), ("1", True), ("0", False),
    ("inactive", False), ("local exclusive", True),
])
def test_active_fields_are_read_liberally(value, expected):
    (lv,) = parse_lvs_json(_lvs_doc(_lv_row(lv_active=value, lv_active_locally=value,
                                            lv_active_exclusively=value)))
    assert (lv.active, lv.active_locally, lv.active_exclusively) == (expected,) * 3


@pytest.mark.parametrize("text, why", [
    ("", "invalid JSON"),
    ("not json", "invalid JSON"),
    ("[]", 'no "report" list'),
    ('{"report": {}}', 'no "report" list'),
    ('{"report": [{"vg": []}]}', 'report entry without a "lv" list'),
    ('{"report": [[]]}', 'report entry without a "lv" list'),
    ('{"report": [{"lv": [1]}]}', "lv row is not an object"),
    (_lvs_doc({"lv_name": "x"}), "lv row without string field 'vg_name'"),
    (_lvs_doc(_lv_row(lv_size=1024)), "lv row without string field 'lv_size'"),
    (_lvs_doc(_lv_row(lv_size="8.00g")), "lv_size '8.00g' is not a byte count"),
    (_lvs_doc(_lv_row(lv_size="<8.00")), "lv_size '<8.00' is not a byte count"),
    (_lvs_doc(_lv_row(lv_size="")), "lv_size '' is not a byte count"),
    (_lvs_doc(_lv_row(lv_size="-1")), "lv_size '-1' is not a byte count"),
    (_lvs_doc(_lv_row(lv_size="\u0661")), "lv_size '\u0661' is not a byte count"),
])
def test_parse_lvs_malformed(text, why):
    with pytest.raises(LvmError) as info:
        parse_lvs_json(text)
    assert type(info.value) is LvmError
    assert str(info.value).startswith("cannot parse lvs output: ")
    assert why in str(info.value)


def test_parse_vgs_malformed():
    doc = json.loads(fixture("vgs_vg_one_lvmlockd.json"))
    doc["report"][0]["vg"][0]["vg_free"] = "38.75g"
    with pytest.raises(LvmError, match=r"^cannot parse vgs output: vg_free '38.75g' is not"):
        parse_vgs_json(json.dumps(doc))
    with pytest.raises(LvmError, match=r'^cannot parse vgs output: report entry without a "vg"'):
        parse_vgs_json(fixture("lvs_empty.json"))


attr_chars = st.sampled_from("-mMoOrRsSpvVitTeCdD")
lv_strategy = st.builds(
    LogicalVolume,
    name=st.from_regex(r"\A[A-Za-z0-9+_.-]{1,20}\Z"), vg=st.just("vg_one"),
    uuid=st.from_regex(r"\A[A-Za-z0-9]{6}(-[A-Za-z0-9]{4}){5}-[A-Za-z0-9]{6}\Z"),
    size_bytes=st.integers(min_value=0, max_value=2 ** 63), attr=attr_chars.map(
        lambda c: c + "wi-a-----"),
    active=st.booleans(), active_locally=st.booleans(), active_exclusively=st.booleans(),
    tags=st.lists(st.from_regex(r"\A[A-Za-z0-9_+.:=-]{1,12}\Z"), max_size=3).map(tuple),
    layout=st.sampled_from(["linear", "striped", "thin,sparse", "raid,raid1", "cache"]),
    origin=st.sampled_from(["", "lv-oneimg-1"]), path=st.text(max_size=20),
    dm_path=st.text(max_size=20))


def _render(lv: LogicalVolume) -> dict:
    # How LVM 2.03.16 prints it: all strings, "" for unset/false.
    return {"lv_name": lv.name, "vg_name": lv.vg, "lv_uuid": lv.uuid,
            "lv_size": str(lv.size_bytes), "lv_attr": lv.attr,
            "lv_active": "active" if lv.active else "",
            "lv_active_locally": "active locally" if lv.active_locally else "",
            "lv_active_exclusively": "active exclusively" if lv.active_exclusively else "",
            "lv_tags": ",".join(lv.tags), "lv_layout": lv.layout, "origin": lv.origin,
            "lv_path": lv.path, "lv_dm_path": lv.dm_path, "lv_lock_args": ""}


@given(st.lists(lv_strategy, max_size=5, unique_by=lambda lv: lv.name))
def test_lvs_round_trip(lvs):
    assert parse_lvs_json(_lvs_doc(*map(_render, lvs))) == lvs


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["report", "lv", "vg", "lv_name", "lv_size", "x"]), inner,
        max_size=3),
    max_leaves=10)


@given(st.one_of(st.text(), json_values.map(json.dumps)))
def test_parsers_never_raise_untyped(text):
    for parser in (parse_lvs_json, parse_vgs_json):
        try:
            parser(text)
        except LvmError:
            pass


# --- activation policy ---------------------------------------------------------------

@pytest.mark.parametrize("mode, flags", [
    ("lvmlockd", ("ey", "sy", "n")),
    ("clvmd", ("ey", "y", "n")),
    ("none", ("y", "y", "n")),
])
def test_activation_flags(mode, flags):
    policy = ActivationPolicy(mode)
    assert (policy.flag("exclusive"), policy.flag("shared"), policy.flag("off")) == flags
    with pytest.raises(InvalidArgument, match="^invalid activation intent 'ey'"):
        policy.flag("ey")


def test_activation_policy_unknown_mode():
    with pytest.raises(InvalidArgument, match="^unknown lock mode 'sanlock'$"):
        ActivationPolicy("sanlock")


def test_check_shared_allowed():
    lvs = {lv.name: lv for lv in parse_lvs_json(fixture("lvs_vg_local_special.json"))}
    plain = parse_lvs_json(fixture("lvs_vg_one_lvmlockd.json"))[2]
    lockd = ActivationPolicy("lvmlockd")
    lockd.check_shared_allowed(plain)
    expected = {"lv-one-20-0": "snapshot origin", "lv-one-20-1": "snapshot",
                "lv-oneimg-5": "thin", "lv-one-21-0": "thin", "lv-one-22-0": "raid/mirror",
                "lv-one-23-0": "cache"}
    for name, kind in expected.items():
        with pytest.raises(ActivationError) as info:
            lockd.check_shared_allowed(lvs[name])
        assert str(info.value) == (f"vg_local/{name} is a {kind} LV: lvmlockd allows "
                                   f"only exclusive activation for it")
    for mode in ("clvmd", "none"):
        for lv in lvs.values():
            ActivationPolicy(mode).check_shared_allowed(lv)


# --- argv building ------------------------------------------------------------------

def test_helper_argv():
    assert helper_argv(CONFIG, "create", "vg_one", "lv-one-1-0", 1024, "one:vm=1") == [
        *SUDO, "create", "vg_one", "lv-one-1-0", "1024", "one:vm=1"]
    assert helper_argv(CONFIG, "version") == [*SUDO, "version"]
    custom = dataclasses.replace(CONFIG, sudo="/bin/sudo", node_helper="/opt/h")
    assert helper_argv(custom, "vgs", "vg_two") == ["/bin/sudo", "-n", "/opt/h", "vgs", "vg_two"]
    # safe to join into a remote script
    assert shlex.join(helper_argv(CONFIG, "activate", "vg_one", "lv-oneimg-4", "ey")) == (
        "/usr/bin/sudo -n /usr/sbin/one-gfs2clvm-helper activate vg_one lv-oneimg-4 ey")


@pytest.mark.parametrize("verb, args, message", [
    ("remove", ("vg_one", "lv-one-1-0\n"), "remove: invalid argument 'lv-one-1-0\\n'"),
    ("remove", ("vg_one", "lv-one-1-0;rm"), "remove: invalid argument 'lv-one-1-0;rm'"),
    ("remove", ("vg_one", ""), "remove: invalid argument ''"),
    ("remove", ("vg_x", "lv-one-1-0"),
     "remove: VG 'vg_x' is not configured in /etc/one/gfs2clvm.conf"),
    ("remove", ("vg_one", "gfs2"), "remove: LV name 'gfs2' is not one of ours "
                                   "(lv-one-<vm>-<disk>, lv-oneimg-<image>)"),
    ("remove", ("vg_one",), "remove: remove: expected 2 arguments, got 1"),
    ("activate", ("vg_one", "lv-one-1-0", "ay"),
     "activate: activation mode 'ay' is not one of ey sy y ly n ln"),
    ("frobnicate", ("vg_one",), "frobnicate: unknown verb 'frobnicate'"),
    ("version", ("vg_one",), "version: takes no arguments"),
])
def test_helper_argv_refuses(verb, args, message):
    with pytest.raises(InvalidArgument) as info:
        helper_argv(CONFIG, verb, *args)
    assert str(info.value) == message


# --- error mapping ------------------------------------------------------------------

def test_last_error_line():
    stderr = ("  WARNING: Device /dev/sdc has size of 0 sectors.\n"
              "  Insufficient free space: 2560 extents needed, but only 9 available\n"
              "  WARNING: lvmetad is being updated.\n\n")
    assert last_error_line(stderr) == (
        "Insufficient free space: 2560 extents needed, but only 9 available")
    assert last_error_line("  WARNING: only noise\n") == "WARNING: only noise"
    assert last_error_line("") == ""


@pytest.mark.parametrize("status, stderr, error, message", [
    (64, "one-gfs2clvm-helper: refused: VG 'vg_x' is not configured in /etc/one/gfs2clvm.conf\n",
     HelperRefused, "node1: node helper refused the request for vg_one/lv-one-1-0: "
                    "one-gfs2clvm-helper: refused: VG 'vg_x' is not configured in "
                    "/etc/one/gfs2clvm.conf"),
    (5, "  LV locked by other host: vg_one/lv-one-1-0\n"
        "  Failed to lock logical volume vg_one/lv-one-1-0.\n",
     LockContention, "node1: vg_one/lv-one-1-0: the LV lock is held by another host "
                     "(active there?): Failed to lock logical volume vg_one/lv-one-1-0."),
    (5, "  VG vg_one lock failed: held by other host.\n",
     LockContention, "node1: vg_one/lv-one-1-0: the VG lock is held by another host and "
                     "retries ran out: VG vg_one lock failed: held by other host."),
    # what lvm says on a host whose lvmlockd is stopped / whose lockspace is stopped
    (5, "  WARNING: lvmlockd process is not running.\n  Reading VG vg_one without a lock.\n"
        "  Cannot access VG vg_one due to failed lock.\n",
     LockManagerDown, "node1: vg_one/lv-one-1-0: lvmlockd is not running on node1 (start "
                      "it, then vgchange --lock-start): Cannot access VG vg_one due to "
                      "failed lock."),
    (5, "  Cannot access VG vg_one due to failed lock.\n",
     LockManagerDown, "node1: vg_one/lv-one-1-0: the VG's lockspace is not started on node1 "
                      "(vgchange --lock-start there): Cannot access VG vg_one due to failed "
                      "lock."),
    (5, '  Failed to find logical volume "vg_one/lv-one-1-0"\n',
     NotFound, 'node1: vg_one/lv-one-1-0: Failed to find logical volume "vg_one/lv-one-1-0"'),
    (5, '  Volume group "vg_one" not found\n  Cannot process volume group vg_one\n',
     NotFound, "node1: vg_one/lv-one-1-0: Cannot process volume group vg_one"),
    (5, "  WARNING: x\n  Insufficient free space: 2 extents needed, but only 1 available\n"
        "  WARNING: y\n",
     LvmError, "node1: vg_one/lv-one-1-0: Insufficient free space: 2 extents needed, "
               "but only 1 available"),
    (1, "sudo: a password is required\n",
     LvmError, "node1: vg_one/lv-one-1-0: sudo: a password is required"),
    (3, "", LvmError, "node1: vg_one/lv-one-1-0: exit status 3"),
])
def test_raise_for_result(status, stderr, error, message):
    with pytest.raises(error) as info:
        raise_for_result("node1", CommandResult(status, "", stderr), "vg_one/lv-one-1-0")
    assert type(info.value) is error
    assert str(info.value) == message


def test_raise_for_result_success():
    raise_for_result("node1", CommandResult(0, "", "  WARNING: x\n"), "VG vg_one")


# --- client ---------------------------------------------------------------------------

class FakeRunner:
    def __init__(self, *results: CommandResult):
        self.results = list(results)
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, host, argv):
        self.calls.append((host, list(argv)))
        return self.results.pop(0) if self.results else CommandResult(0, "", "")


def client(*results, config=CONFIG):
    runner = FakeRunner(*results)
    return LvmClient(config, runner, "node1"), runner


def test_client_vgs():
    lvm, runner = client(CommandResult(0, fixture("vgs_vg_one_lvmlockd.json"), ""))
    vg = lvm.vgs("vg_one")
    assert (vg.name, vg.free_bytes, vg.shared) == ("vg_one", 41603301376, True)
    assert runner.calls == [("node1", [*SUDO, "vgs", "vg_one"])]


def test_client_vgs_missing_from_report():
    lvm, _ = client(CommandResult(0, fixture("vgs_vg_local_plain.json"), ""))
    with pytest.raises(NotFound, match="^node1: VG vg_one is not in the vgs report$"):
        lvm.vgs("vg_one")


def test_client_lvs_and_lv():
    report = fixture("lvs_vg_one_lvmlockd.json")
    lvm, runner = client(CommandResult(0, report, ""), CommandResult(0, report, ""),
                         CommandResult(0, fixture("lvs_empty.json"), ""))
    assert len(lvm.lvs("vg_one")) == 4
    # the report is filtered to the exact names asked for
    assert lvm.lv("vg_one", "lv-one-12-1").size_bytes == 1073741824
    assert lvm.lv("vg_one", "lv-one-12-7") is None
    assert runner.calls == [
        ("node1", [*SUDO, "lvs", "vg_one"]),
        ("node1", [*SUDO, "lvs", "vg_one", "lv-one-12-1"]),
        ("node1", [*SUDO, "lvs", "vg_one", "lv-one-12-7"]),
    ]


def test_client_bad_report_names_host():
    lvm, _ = client(CommandResult(0, "{", ""))
    with pytest.raises(LvmError, match="^node1: cannot parse lvs output: invalid JSON"):
        lvm.lvs("vg_one")


def test_client_changes_argv():
    lvm, runner = client()
    lvm.create("vg_one", "lv-one-12-0", 8589934592, ["one:vm=12", "one:ds=100"])
    lvm.create("vg_two", "lv-oneimg-3", 1)
    lvm.remove("vg_one", "lv-one-12-0")
    lvm.extend("vg_one", "lv-one-12-0", 10737418240)
    lvm.activate("vg_one", "lv-one-12-0")
    lvm.activate("vg_one", "lv-one-12-0", "exclusive")
    lvm.deactivate("vg_one", "lv-one-12-0")
    lvm.add_tag("vg_one", "lv-oneimg-9", "one:image=9")
    lvm.del_tag("vg_one", "lv-oneimg-9", "one:vm=12")
    assert [argv[len(SUDO):] for _, argv in runner.calls] == [
        ["create", "vg_one", "lv-one-12-0", "8589934592", "one:vm=12", "one:ds=100"],
        ["create", "vg_two", "lv-oneimg-3", "1"],
        ["remove", "vg_one", "lv-one-12-0"],
        ["extend", "vg_one", "lv-one-12-0", "10737418240"],
        ["activate", "vg_one", "lv-one-12-0", "ey"],
        ["activate", "vg_one", "lv-one-12-0", "ey"],
        ["activate", "vg_one", "lv-one-12-0", "n"],
        ["addtag", "vg_one", "lv-oneimg-9", "one:image=9"],
        ["deltag", "vg_one", "lv-oneimg-9", "one:vm=12"],
    ]
    assert {host for host, _ in runner.calls} == {"node1"}
    assert all(argv[:len(SUDO)] == SUDO for _, argv in runner.calls)


@pytest.mark.parametrize("mode, flag", [("clvmd", "y"), ("none", "y")])
def test_client_shared_activation_without_lvmlockd(mode, flag):
    lvm, runner = client(config=dataclasses.replace(CONFIG, lock_mode=mode))
    lvm.activate("vg_one", "lv-one-12-0", "shared")
    assert runner.calls == [("node1", [*SUDO, "activate", "vg_one", "lv-one-12-0", flag])]


def test_client_shared_activation_lvmlockd_checks_type():
    plain = fixture("lvs_vg_one_lvmlockd.json")
    lvm, runner = client(CommandResult(0, plain, ""))
    lvm.activate("vg_one", "lv-one-12-1", "shared")
    assert runner.calls[-1] == ("node1", [*SUDO, "activate", "vg_one", "lv-one-12-1", "sy"])

    special = json.loads(fixture("lvs_vg_local_special.json"))
    for row in special["report"][0]["lv"]:
        row["vg_name"] = "vg_one"
    lvm, runner = client(CommandResult(0, json.dumps(special), ""))
    with pytest.raises(ActivationError, match="^vg_one/lv-oneimg-5 is a thin LV"):
        lvm.activate("vg_one", "lv-oneimg-5", "shared")
    assert [argv[len(SUDO)] for _, argv in runner.calls] == ["lvs"]  # never activated

    lvm, _ = client(CommandResult(0, fixture("lvs_empty.json"), ""))
    with pytest.raises(NotFound, match="^node1: vg_one/lv-one-1-0: logical volume not found$"):
        lvm.activate("vg_one", "lv-one-1-0", "shared")


def test_client_maps_failures():
    lvm, _ = client(CommandResult(5, "", "  LV locked by other host: vg_one/lv-one-12-0\n"))
    with pytest.raises(LockContention, match="^node1: vg_one/lv-one-12-0: the LV lock is held"):
        lvm.activate("vg_one", "lv-one-12-0")
    lvm, _ = client(CommandResult(64, "", "one-gfs2clvm-helper: refused: x\n"))
    with pytest.raises(HelperRefused, match="^node1: node helper refused"):
        lvm.remove("vg_one", "lv-one-12-0")
    lvm, _ = client(CommandResult(5, "", '  Volume group "vg_one" not found\n'))
    with pytest.raises(NotFound, match='^node1: VG vg_one: Volume group "vg_one" not found$'):
        lvm.vgs("vg_one")


@pytest.mark.parametrize("call, error", [
    (lambda lvm: lvm.create("vg_x", "lv-one-1-0", 1), ConfigError),
    (lambda lvm: lvm.create("..", "lv-one-1-0", 1), InvalidArgument),
    (lambda lvm: lvm.create("vg_one", "gfs2", 1), InvalidArgument),
    (lambda lvm: lvm.create("vg_one", "lv-one-1-0", 0), InvalidArgument),
    (lambda lvm: lvm.create("vg_one", "lv-one-1-0", -5), InvalidArgument),
    (lambda lvm: lvm.create("vg_one", "lv-one-1-0", 1.5), InvalidArgument),
    (lambda lvm: lvm.create("vg_one", "lv-one-1-0", True), InvalidArgument),
    (lambda lvm: lvm.create("vg_one", "lv-one-1-0", "1024"), InvalidArgument),
    (lambda lvm: lvm.create("vg_one", "lv-one-1-0", 10 ** 20), InvalidArgument),
    (lambda lvm: lvm.create("vg_one", "lv-one-1-0", 1, ["bad tag"]), InvalidArgument),
    (lambda lvm: lvm.extend("vg_one", "lv-one-1-0", 0), InvalidArgument),
    (lambda lvm: lvm.remove("vg_one", "lv-one-1-0\n"), InvalidArgument),
    (lambda lvm: lvm.activate("vg_one", "lv-one-1-0", "ey"), InvalidArgument),
    (lambda lvm: lvm.add_tag("vg_one", "lv-one-1-0", "a;b"), InvalidArgument),
    (lambda lvm: lvm.del_tag("vg_one", "lv-one-1-0", ""), InvalidArgument),
    (lambda lvm: lvm.lvs("vg_one", ["lv-one-1"]), InvalidArgument),
    (lambda lvm: lvm.vgs("vg_two;x"), InvalidArgument),
])
def test_client_validates_before_running(call, error):
    lvm, runner = client()
    with pytest.raises(error):
        call(lvm)
    assert runner.calls == []


def test_client_rejects_bad_host():
    with pytest.raises(InvalidArgument, match="^invalid host name '-oProxyCommand=x'$"):
        LvmClient(CONFIG, FakeRunner(), "-oProxyCommand=x")


def test_an_lv_reported_twice_is_refused():
    """A segment field in the report gives one row per segment: never accept that."""
    row = {key: "" for key in _LV_KEYS_FOR_TEST}
    row.update(lv_name="lv-one-1-0", vg_name="vg_one", lv_size="8388608", lv_attr="-wi-------")
    text = json.dumps({"report": [{"lv": [row, dict(row)]}]})
    with pytest.raises(LvmError, match="reported twice"):
        parse_lvs_json(text)


_LV_KEYS_FOR_TEST = ("lv_name", "vg_name", "lv_uuid", "lv_size", "lv_attr", "lv_active",
                     "lv_active_locally", "lv_active_exclusively", "lv_tags", "lv_layout",
                     "origin", "lv_path", "lv_dm_path")
