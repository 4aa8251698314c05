from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from one_gfs2clvm.errors import InvalidArgument
from one_gfs2clvm.names import (shown, Use, parse_use_tag, MAX_ID, DiskPath, FileSource, HostPath, IsoxSource,
                                LvmSource, LvName, LvSource, UrlSource, VolSource,
                                check_tag, check_vg, disk_id_from_path, image_lv,
                                lv_device_path, parse_disk_path, parse_host_path,
                                parse_lv_name, parse_source, vm_disk_lv)

ids = st.integers(min_value=0, max_value=MAX_ID)
bad_ids = st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_ID + 1),
                    st.booleans(), st.floats(), st.text(), st.none())
host_names = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}\Z")
# no '.'-only parts, no leading/trailing blanks (a source refuses those)
path_parts = st.from_regex(
    r"\A[A-Za-z0-9_+=,@-]([A-Za-z0-9_.+=,@ -]{0,14}[A-Za-z0-9_.+=,@-])?\Z")
norm_paths = st.lists(path_parts, min_size=1, max_size=6).map(lambda p: "/" + "/".join(p))


# --- LV names -------------------------------------------------------------------

def test_lv_name_builders():
    assert vm_disk_lv(12, 0) == "lv-one-12-0"
    assert vm_disk_lv(0, 0) == "lv-one-0-0"
    assert vm_disk_lv(MAX_ID, MAX_ID) == "lv-one-9999999999-9999999999"
    assert image_lv(3) == "lv-oneimg-3"


@pytest.mark.parametrize("args", [(-1, 0), (0, -1), (MAX_ID + 1, 0), (True, 0), (0, False),
                                  ("1", 0), (1.0, 0), (None, 0)])
def test_vm_disk_lv_rejects_bad_ids(args):
    with pytest.raises(InvalidArgument, match=r"^invalid (VM|disk) id "):
        vm_disk_lv(*args)


@pytest.mark.parametrize("value", [-1, MAX_ID + 1, True, "3", 3.0])
def test_image_lv_rejects_bad_ids(value):
    with pytest.raises(InvalidArgument) as info:
        image_lv(value)
    assert str(info.value) == f"invalid image id {value!r}: expected an integer 0..{MAX_ID}"


def test_parse_lv_name():
    assert parse_lv_name("lv-one-12-3") == LvName("vm_disk", vm_id=12, disk_id=3)
    assert parse_lv_name("lv-oneimg-0") == LvName("image", image_id=0)
    assert parse_lv_name("lv-one-12-3").name == "lv-one-12-3"


@pytest.mark.parametrize("name", [
    "lv-one-01-0", "lv-one-1-00", "lv-one-1-0x", "lv-one-1", "lv-one--1-0", "lv-one-1-0-0",
    " lv-one-1-0", "lv-one-1-0 ", "lv-one-1-0\n", "lv-one-\u0661-0", "lv-one-1-\uff10",
    "LV-ONE-1-0", "lv-oneimg-", "lv-oneimg-01", "lv-oneimg-12345678901",
    "lv-one-12345678901-0", "gfs2", "", "lv-one-1-2;rm", "vg_one/lv-one-1-0", None, 7,
])
def test_parse_lv_name_rejects(name):
    with pytest.raises(InvalidArgument) as info:
        parse_lv_name(name)
    assert str(info.value) == (f"invalid LV name {name!r}: expected lv-one-<vm>-<disk> "
                               f"or lv-oneimg-<image> (or their -snap-<id> snapshots)")
    assert "\n" not in str(info.value)


@given(ids, ids, ids)
def test_snapshot_names_round_trip(vm_id, disk_id, snap_id):
    disk = parse_lv_name(vm_disk_lv(vm_id, disk_id))
    snap = parse_lv_name(disk.snapshot(snap_id))
    assert snap == LvName("vm_snap", vm_id, disk_id, snap_id=snap_id)
    assert snap.name == f"lv-one-{vm_id}-{disk_id}-snap-{snap_id}"
    image = parse_lv_name(image_lv(vm_id))
    assert parse_lv_name(image.snapshot(snap_id)) == LvName("image_snap", image_id=vm_id,
                                                              snap_id=snap_id)
    with pytest.raises(InvalidArgument):
        snap.snapshot(1)


@pytest.mark.parametrize("tag, use", [
    ("one-use=7:0:node1", Use(7, 0, "node1")),
    ("one-use=10:3:node-2.example.org", Use(10, 3, "node-2.example.org")),
    ("one-use=07:0:node1", None), ("one-use=7:0:", None), ("one-use=7:0:-n", None),
    ("one-use=7:0:node1\n", None), ("one-vm=7", None),
])
def test_use_tags(tag, use):
    assert parse_use_tag(tag) == use
    if use:
        assert use.tag == tag


@given(ids, ids)
def test_vm_disk_lv_round_trip(vm_id, disk_id):
    assert parse_lv_name(vm_disk_lv(vm_id, disk_id)) == LvName("vm_disk", vm_id, disk_id)


@given(ids)
def test_image_lv_round_trip(image_id):
    assert parse_lv_name(image_lv(image_id)) == LvName("image", image_id=image_id)


@given(bad_ids)
def test_bad_ids_raise_invalid_argument(value):
    with pytest.raises(InvalidArgument):
        image_lv(value)
    with pytest.raises(InvalidArgument):
        vm_disk_lv(value, 0)


@given(st.text())
def test_parse_lv_name_any_text(text):
    # Either exactly one spelling round-trips, or the typed error.
    try:
        parsed = parse_lv_name(text)
    except InvalidArgument:
        return
    assert parsed.name == text


def test_vg_and_tag_checks():
    assert check_vg("vg_one") == "vg_one"
    assert check_tag("one:vm=12") == "one:vm=12"
    for vg in (".", "..", "-vg", "vg/x", "vg one", "vg\n", "", "a" * 128):
        with pytest.raises(InvalidArgument, match="^invalid VG name "):
            check_vg(vg)
    for tag in ("", "a b", "x;y", "t\n", "a" * 129, "é"):
        with pytest.raises(InvalidArgument, match="^invalid LV tag "):
            check_tag(tag)


def test_lv_device_path():
    assert lv_device_path("vg_one", "lv-one-7-2") == "/dev/vg_one/lv-one-7-2"
    assert lv_device_path("vg_one", "lv-oneimg-7") == "/dev/vg_one/lv-oneimg-7"
    for vg, lv in (("..", "lv-one-7-2"), ("vg_one", "gfs2"), ("vg_one", "../lv-one-7-2"),
                   ("vg/one", "lv-one-7-2")):
        with pytest.raises(InvalidArgument):
            lv_device_path(vg, lv)


# --- host:path ---------------------------------------------------------------------

def test_parse_host_path():
    assert parse_host_path("node1:/var/lib/one/datastores/0/7/disk.0") == HostPath(
        "node1", "/var/lib/one/datastores/0/7/disk.0")
    # OpenNebula's doubled slashes are normalised away
    assert parse_host_path("node-2.example.org:/var/lib/one//datastores/0/7/") == HostPath(
        "node-2.example.org", "/var/lib/one/datastores/0/7")
    # split at the first colon: the path may hold colons
    assert parse_host_path("n_1:/a/b:c/./d") == HostPath("n_1", "/a/b:c/d")
    assert str(parse_host_path("n:/x")) == "n:/x"


@pytest.mark.parametrize("text", [
    "", "node1", ":/var/lib/one", "node1:", "node1:relative/path", "node1:/a/../b",
    "node1:/a/..", "node1:/a\x00b", "node1:/a\nb", "-oProxyCommand=x:/a", "no de:/a",
    "node\u0661:/a", "nodé:/a", "host!:/a", None,
])
def test_parse_host_path_rejects(text):
    with pytest.raises(InvalidArgument) as info:
        parse_host_path(text)
    assert repr(text) in str(info.value)


@given(host_names, norm_paths)
def test_host_path_round_trip(host, path):
    parsed = parse_host_path(f"{host}:{path}")
    assert parsed == HostPath(host, path)
    assert parse_host_path(str(parsed)) == parsed


@given(st.text())
def test_parse_host_path_any_text(text):
    try:
        parsed = parse_host_path(text)
    except InvalidArgument:
        return
    assert parsed.path.startswith("/") and ".." not in parsed.path.split("/")
    assert text.startswith(parsed.host + ":")


# --- disk paths -------------------------------------------------------------------

def test_disk_paths():
    assert disk_id_from_path("/var/lib/one/datastores/0/7/disk.3") == 3
    assert disk_id_from_path("disk.0") == 0
    assert parse_disk_path("/var/lib/one/datastores/0/7/disk.3") == DiskPath(0, 7, 3)
    assert parse_disk_path("/var/lib/one//datastores/100/12345/disk.10") == (100, 12345, 10)


@pytest.mark.parametrize("path", [
    "/var/lib/one/datastores/0/7/disk.3.snap", "/var/lib/one/datastores/0/7/disk.03",
    "/var/lib/one/datastores/0/7/disk.", "/var/lib/one/datastores/0/7/disk.3/",
    "/var/lib/one/datastores/0/7/disk.x", "/var/lib/one/datastores/0/7/disk.\u0663",
    "/var/lib/one/datastores/0/7/disk.3\n", "/var/lib/one/datastores/0/7/disk-3", "",
])
def test_disk_id_from_path_rejects(path):
    with pytest.raises(InvalidArgument):
        disk_id_from_path(path)
    with pytest.raises(InvalidArgument):
        parse_disk_path(path)


@pytest.mark.parametrize("path", [
    "/var/lib/one/datastores/0/07/disk.3", "/var/lib/one/datastores/x/7/disk.3",
    "/7/disk.3", "datastores/0/7/disk.3", "/var/lib/one/datastores/0/../7/disk.3",
])
def test_parse_disk_path_rejects(path):
    with pytest.raises(InvalidArgument) as info:
        parse_disk_path(path)
    assert repr(path) in str(info.value)


@given(ids, ids, ids, st.lists(path_parts, max_size=3))
def test_disk_path_round_trip(ds, vm, disk, prefix):
    path = "/" + "/".join(prefix + [str(ds), str(vm), f"disk.{disk}"])
    assert parse_disk_path(path) == DiskPath(ds, vm, disk)
    assert disk_id_from_path(path) == disk


@given(st.text())
def test_disk_path_any_text(text):
    for parser in (parse_disk_path, disk_id_from_path):
        try:
            parser(text)
        except InvalidArgument:
            pass


# --- image sources ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("lvm://12/0", LvmSource(12, 0)),
    ("vol://3", VolSource(3)),
    ("/var/lib/one/datastores/1/ctx.isox", IsoxSource("/var/lib/one/datastores/1/ctx.isox")),
    ("vg_one/lv-oneimg-3", LvSource("vg_one", "lv-oneimg-3")),
    ("vg_one/lv-one-12-0", LvSource("vg_one", "lv-one-12-0")),
    ("/var/tmp/upload/alpine.qcow2", FileSource("/var/tmp/upload/alpine.qcow2")),
    ("/var/lib/one//datastores/1/abc", FileSource("/var/lib/one/datastores/1/abc")),
    ("http://example.org/alpine.qcow2", UrlSource("http://example.org/alpine.qcow2")),
    ("https://example.org:8443/i?x=1", UrlSource("https://example.org:8443/i?x=1")),
    ("HTTPS://example.org/i", UrlSource("HTTPS://example.org/i")),
])
def test_parse_source(text, expected):
    assert parse_source(text) == expected


@pytest.mark.parametrize("text", [
    "", "lvm://1/2/3", "lvm://a/b", "lvm://1", "lvm://01/2", "lvm://1/2 ", "lvm:// 1/2",
    "vol://", "vol://1x", "vol://-1", "vol://\u0661", "relative/path.img", "disk.img",
    "vg_one/gfs2", "vg_one/lv-one-1", "../vg/lv-oneimg-1", "vg/one/lv-oneimg-1",
    "ftp://example.org/x", "http://", "http:// example.org", "https://exa mple.org/x",
    "/var/tmp/a\nb", "/var/tmp/../etc/shadow", " /var/tmp/x", "/var/tmp/x ", "/",
    "file:///var/tmp/x", None,
])
def test_parse_source_rejects(text):
    with pytest.raises(InvalidArgument) as info:
        parse_source(text)
    message = str(info.value)
    assert repr(text) in message
    assert "\n" not in message


def test_parse_source_message():
    with pytest.raises(InvalidArgument) as info:
        parse_source("lvm://1/2/3")
    assert str(info.value) == "invalid image source 'lvm://1/2/3': expected lvm://<VMID>/<DISKID>"


@given(ids, ids)
def test_source_round_trips(a, b):
    assert parse_source(f"lvm://{a}/{b}") == LvmSource(a, b)
    assert parse_source(f"vol://{a}") == VolSource(a)
    assert parse_source(f"vg_one/{vm_disk_lv(a, b)}") == LvSource("vg_one", vm_disk_lv(a, b))
    assert parse_source(f"vg_one/{image_lv(a)}") == LvSource("vg_one", image_lv(a))


@given(norm_paths)
def test_file_source_round_trip(path):
    expected = IsoxSource(path) if path.endswith(".isox") else FileSource(path)
    assert parse_source(path) == expected


@given(st.text())
def test_parse_source_any_text(text):
    try:
        parse_source(text)
    except InvalidArgument as exc:
        # named as the shared shown() renders it: whole when short, cut when long
        assert shown(text) in str(exc)
        assert "\n" not in str(exc)
