"""The error types (one_gfs2clvm.errors): the hierarchy and exit codes, one_line(),
and that the engine raises the type that says what happened -- InUse (a VM
holds the volume, or it is open), NotOurs (an LV of that name another maker
made), SourceNotFound (a copy's or import's source is missing) -- while a
volume that must exist but is not a source stays a plain NotFound.

The call sites run through a door's argv-level entry against the recording
worker (testkit.recording, built with testkit.actionkit like the per-action
tests): the action function is wrapped so the test sees the exception itself,
and runtime.run still turns it into one line and exit 4.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

from one_gfs2clvm import errors
from one_gfs2clvm.errors import (DriverError, InUse, LockContention, LvmError, NotFound, NotOurs,
                                 SourceNotFound)
from one_gfs2clvm.opennebula import datastore, image3, runtime
from one_gfs2clvm.opennebula.vmdisks import existing_file
from one_gfs2clvm.volumes.ops import Disks, Volume, check_snapshot, refuse_if_open
from testkit.actionkit import (ALICE, M, REGTIME, failed, h, made, make_config, on, users_api,
                               world_of)
from testkit.fakeoned import datastore_doc, image_doc, vm_doc
from testkit.recording import GiB, FakeApi, ScriptedWorker, installed, run_action

DS_DIR = f"{M}/datastores/100"


# ----------------------------------------------------------------- the hierarchy

@pytest.mark.parametrize("cls, parents", [
    (InUse, (LockContention, LvmError, DriverError)),
    (NotOurs, (LockContention, LvmError, DriverError)),
    (SourceNotFound, (NotFound, LvmError, DriverError)),
])
def test_new_types_sit_under_what_they_refine_and_keep_exit_4(cls, parents):
    assert all(issubclass(cls, parent) for parent in parents)
    assert cls.exit_code == LockContention.exit_code == NotFound.exit_code == 4
    assert cls.__doc__ and cls.__module__ == errors.__name__


def test_the_new_types_are_distinct():
    assert not issubclass(InUse, NotOurs) and not issubclass(NotOurs, InUse)
    assert not issubclass(SourceNotFound, LockContention)
    assert not issubclass(InUse, NotFound) and not issubclass(NotOurs, NotFound)


def test_existing_handlers_still_catch_them():
    """pytest.raises(LockContention / NotFound) and `except` clauses written for
    the parents catch the new types."""
    with pytest.raises(LockContention):
        raise InUse("x")
    with pytest.raises(LockContention):
        raise NotOurs("x")
    with pytest.raises(NotFound):
        raise SourceNotFound("x")


@pytest.mark.parametrize("cls", [InUse, NotOurs, SourceNotFound])
def test_one_line(cls):
    assert cls("vg_one/lv-oneimg-5 is in use\n  by VM 7 on node1").one_line() == \
        "vg_one/lv-oneimg-5 is in use by VM 7 on node1"
    assert cls("").one_line() == cls.__name__
    assert cls(" \n\t").one_line() == cls.__name__


@pytest.mark.parametrize("cls", [InUse, NotOurs, SourceNotFound])
def test_runtime_reports_one_line_and_exit_4(tmp_path, cls):
    config = make_config(tmp_path, "test_errors.conf")

    def action(action, argv):
        raise cls("vg_one/lv-oneimg-5: said\non two lines")
    outcome = run_action(action, "datastore rm", [], config)
    assert (outcome.code, outcome.stderr) == (4, "vg_one/lv-oneimg-5: said on two lines\n")


# ----------------------------------------------------------------- the engine's helpers

def test_refuse_if_open_is_in_use():
    with pytest.raises(InUse, match=r"^vg_one/lv-one-7-0 is in use on node1 \(open by its VM"):
        refuse_if_open("node1", Volume("vg_one", "lv-one-7-0"), SimpleNamespace(open_locally=True))
    refuse_if_open("node1", Volume("vg_one", "lv-one-7-0"), SimpleNamespace(open_locally=False))


def test_check_snapshot_of_a_copy_source_is_source_not_found():
    snapshot = Volume("vg_one", "lv-oneimg-5-snap-1")
    with pytest.raises(SourceNotFound, match="snapshot vg_one/lv-oneimg-5-snap-1 does not exist"):
        check_snapshot(snapshot, None)
    with pytest.raises(SourceNotFound, match="is incomplete"):
        check_snapshot(snapshot, SimpleNamespace(tags=["one-incomplete"]))


def test_a_missing_image_file_is_source_not_found(tmp_path):
    """vmdisks.existing_file (a clone's or ln's image file SOURCE), resolved on the
    recording worker, where the file is absent."""
    config = make_config(tmp_path, "test_errors.conf")
    worker = ScriptedWorker(config)
    path = f"{M}/datastores/1/gone.img"
    worker.gfs.missing.add(path)
    with installed(worker):
        action = runtime.Action(name="clone", config=config)
        with pytest.raises(SourceNotFound) as info:
            existing_file(action, Disks(action), "node1", path, legacy=False)
    assert str(info.value) == f"image file {path} does not exist on node1"
    assert worker.sent() == on("node1", ("readlink", "-e", "--", path))


# ----------------------------------------------------------------- call sites, through a door

def build_worker(config) -> ScriptedWorker:
    """Image 5 with snapshot 0; image 12 in use by VM 7 on node1; VM 7's disk 0
    released (inactive, linked for the 3.x layout)."""
    worker = ScriptedWorker(config)
    worker.vg.add("vg_one", "lv-oneimg-5", GiB)
    worker.vg.add("vg_one", "lv-oneimg-5-snap-0", GiB)
    worker.vg.add("vg_one", "lv-oneimg-12", GiB, ["one-use=7:2:node1"], {"node1": "ey"})
    worker.gfs.links[f"{M}/7/images/disk.0"] = "/dev/vg_one/lv-one-7-0"
    return worker


def build_api() -> FakeApi:
    """alice owns images 5 and 42 and VM 8 (powered off on node2, disk 0 a clone)."""
    api = users_api()
    for image_id in (5, 42):
        api.add_image(image_doc(image_id, uid=ALICE, gid=1, uname="alice", datastore_id=100))
    api.add_datastore(datastore_doc(100, type=0))
    api.add_vm(vm_doc(8, uid=ALICE, gid=1, uname="alice", gname="users", state=8, lcm_state=0,
                      history=[{"hostname": "node2", "ds_id": 0}],
                      disks=[{"image_id": 5}, {"fs": "raw", "size": 256}]))
    api.add_vm(vm_doc(7, uid=ALICE, gid=1, uname="alice", gname="users", state=8, lcm_state=0,
                      history=[{"hostname": "node1", "ds_id": 0}],
                      disks=[{"image_id": 5}, {"fs": "raw", "size": 256}]))
    return api


def door_world(tmp_path, actions: dict, program: str, legacy: bool = False):
    """A world whose .run goes through `actions` (a door's table); every
    exception an action function raises is kept in .caught."""
    config = make_config(tmp_path, "test_errors.conf")
    caught: list[BaseException] = []

    def entry(name: str):
        function = actions[name]

        def recorded(action, argv):
            try:
                return function(action, argv)
            except BaseException as exc:
                caught.append(exc)
                raise
        return recorded, program.format(name)
    return world_of(config, build_worker(config), build_api(), entry, legacy=legacy,
                    caught=caught)


@pytest.fixture
def ds(tmp_path):
    return door_world(tmp_path, datastore.ACTIONS, "datastore {}")


def ds_input(image_id: int, snapshot: int | None = None, ds_template=None, **fields) -> bytes:
    image = image_doc(image_id, uid=ALICE, gid=1, datastore_id=100, **fields)
    if snapshot is not None:
        image = image.replace("<TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT>",
                              f"<TARGET_SNAPSHOT>{snapshot}</TARGET_SNAPSHOT>")
    ds = datastore_doc(100, type=0, template=ds_template)
    return base64.b64encode(f"<DS_DRIVER_ACTION_DATA>{image}{ds}</DS_DRIVER_ACTION_DATA>"
                            .encode())


def raised(world, name: str, *argv: str, stdin: bytes | None = None, code: int = 4):
    """Run the action; the one exception it raised (its exit code `code`, one line)."""
    outcome = world.run(name, *argv, stdin=stdin)
    failed(outcome, code)
    (exc,) = world.caught
    return exc


def test_rm_of_an_image_a_vm_uses_raises_in_use(ds):
    """datastore.remove_image -> ops.refuse_if_used."""
    exc = raised(ds, "rm", "12", stdin=ds_input(12, source="vg_one/lv-oneimg-12"))
    assert type(exc) is InUse
    assert str(exc) == "vg_one/lv-oneimg-12 is in use by VM 7 on node1: not removing it"


def test_export_of_an_image_a_vm_writes_raises_in_use(ds):
    """datastore.export -> ops.refuse_if_used (writers)."""
    exc = raised(ds, "export", "12", stdin=ds_input(12, source="vg_one/lv-oneimg-12"))
    assert type(exc) is InUse and "not exporting it" in str(exc)


def test_cp_over_an_lv_another_action_made_raises_not_ours(ds):
    """imports.Import._already_imported -> ops.Disks.complete_or_cleared."""
    ds.worker.vg.add("vg_one", "lv-oneimg-42", GiB, [made("mkfs")])
    exc = raised(ds, "cp", "42", stdin=ds_input(42, path="vol://5"))
    assert type(exc) is NotOurs
    assert str(exc) == (f"vg_one/lv-oneimg-42 already exists, made by mkfs.{REGTIME}, not by "
                        f"this cp.{REGTIME}: neither reusing nor removing it")
    assert ds.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-42"))


@pytest.mark.parametrize("action, path, message", [
    # datastore.clone: the source image LV
    ("clone", "vg_one/lv-oneimg-77", "source image vg_one/lv-oneimg-77 does not exist"),
    # imports.Import._from_volume -> ops.Disks.copy_site: lvm://8/0 whose LV is gone
    ("cp", "lvm://8/0", "vg_one/lv-one-8-0 does not exist"),
    # imports.Import.source_size: the LV an lvm:// PATH names
    ("stat", "lvm://8/0", "vg_one/lv-one-8-0 does not exist"),
])
def test_a_missing_copy_source_raises_source_not_found(ds, action, path, message):
    exc = raised(ds, action, "42", stdin=ds_input(42, path=path))
    assert type(exc) is SourceNotFound and str(exc) == message


def test_cp_of_a_file_on_neither_side_raises_source_not_found(ds, tmp_path):
    """imports.Import._on_worker: a PATH absent here and on the worker's GFS2."""
    path = f"{DS_DIR}/gone.img"
    ds.worker.gfs.missing.add(path)
    exc = raised(ds, "cp", "42", stdin=ds_input(42, path=path,
                                                ds_template={"SAFE_DIRS": M}))
    assert type(exc) is SourceNotFound
    assert str(exc) == (f"datastore cp: {path} exists neither on the management node nor on "
                        f"node1 (GFS2)")


def test_snap_revert_of_a_missing_snapshot_raises_source_not_found(ds):
    """datastore.snap_revert -> ops.check_snapshot: the snapshot is the copy's source."""
    exc = raised(ds, "snap_revert", "5", stdin=ds_input(5, snapshot=3,
                                                        source="vg_one/lv-oneimg-5"))
    assert type(exc) is SourceNotFound
    assert str(exc) == "snapshot vg_one/lv-oneimg-5-snap-3 does not exist"


def test_snap_revert_of_a_missing_image_lv_stays_not_found(ds):
    """datastore.snap_revert: the image LV is the copy's target, not its source."""
    ds.worker.vg.lvs.pop(("vg_one", "lv-oneimg-5"))
    exc = raised(ds, "snap_revert", "5", stdin=ds_input(5, snapshot=0,
                                                        source="vg_one/lv-oneimg-5"))
    assert type(exc) is NotFound
    assert str(exc) == "image LV vg_one/lv-oneimg-5 does not exist"


def test_export_of_a_missing_image_lv_raises_source_not_found(ds):
    """datastore.export: the image LV is what the export copies."""
    exc = raised(ds, "export", "42", stdin=ds_input(42, source="vg_one/lv-oneimg-42"))
    assert type(exc) is SourceNotFound
    assert str(exc) == "image LV vg_one/lv-oneimg-42 does not exist"


def test_image3_saveas_of_a_missing_disk_lv_raises_source_not_found(tmp_path):
    """image3.mv3 (saveas): the VM disk's LV the link names is gone."""
    world = door_world(tmp_path, image3.COMMANDS, "image {}", legacy=True)
    outcome = world.run("mv", f"{M}/7/images/disk.0", "-", "42")
    failed(outcome, 4, "vg_one/lv-one-7-0 does not exist", framed=True)
    (exc,) = world.caught
    assert type(exc) is SourceNotFound
