"""opennebula/xml.py on schema-valid documents built by testkit/fakeoned.py."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from testkit import fakeoned as fo
from one_gfs2clvm.errors import InvalidArgument
from one_gfs2clvm.opennebula import xml as onexml
from one_gfs2clvm.opennebula.xml import (LCM_STATES, Permissions, may_use, parse_datastore,
                                         parse_driver_action, parse_image, parse_user,
                                         parse_vm, parse_vm_base64, vm_is_quiescent)


def _vm(**kwargs):
    doc = fo.vm_doc(**kwargs)
    fo.validate(doc)
    return parse_vm(doc)


@pytest.fixture
def vm7():
    return _vm(
        id=7, uid=5, gid=100, uname="alice", permissions="640",
        state=3, lcm_state=3, tm_mad_system="",
        disks=[
            dict(image_id=3, persistent=True, size=2048, original_size=1024,
                 datastore_id=101),
            dict(image_id=4, snapshots=[0, 1], format=None, driver="qcow2"),
            dict(type="swap", size=512),
            dict(type="fs", fs="ext4", size=4096, format="raw"),
        ],
        history=[dict(hostname="node2", ds_id=0, seq=1, action=1),
                 dict(hostname="node1", ds_id=0, seq=0)],
        context=True,
    )


# --- VM -------------------------------------------------------------------------------

def test_vm_scalars(vm7):
    assert (vm7.id, vm7.uid, vm7.gid, vm7.uname, vm7.name) == (7, 5, 100, "alice", "vm-7")
    assert (vm7.state, vm7.lcm_state) == (onexml.ACTIVE, LCM_STATES["RUNNING"])
    assert vm7.state_name == "RUNNING"
    assert vm7.deploy_id == "one-7"
    assert vm7.tm_mad_system == ""
    assert vm7.permissions == Permissions(owner_u=True, owner_m=True, group_u=True)
    assert vm7.permissions.octal() == "640"


def test_vm_disks(vm7):
    assert [disk.disk_id for disk in vm7.disks] == [0, 1, 2, 3]
    persistent = vm7.disk(0)
    assert persistent.persistent and persistent.save and not persistent.clone
    assert (persistent.image_id, persistent.datastore_id) == (3, 101)
    assert persistent.source == "vg_one/lv-oneimg-3"
    assert (persistent.size_mb, persistent.original_size_mb) == (2048, 1024)
    assert (persistent.type, persistent.disk_type, persistent.format) == ("block", "BLOCK", "raw")
    assert (persistent.tm_mad, persistent.tm_mad_system) == ("gfs2clvm", "")
    assert persistent.target == "vda" and not persistent.readonly
    assert not persistent.is_volatile

    clone = vm7.disk(1)
    assert clone.clone and not clone.persistent and not clone.save
    assert clone.format == "qcow2"          # no FORMAT: DRIVER
    assert clone.snapshots == [0, 1]
    assert persistent.snapshots == []

    swap = vm7.disk(2)
    assert (swap.type, swap.size_mb, swap.image_id, swap.datastore_id) == ("swap", 512, None, None)
    assert swap.is_volatile and swap.source == ""

    volatile = vm7.disk(3)
    assert (volatile.type, volatile.fs, volatile.format) == ("fs", "ext4", "raw")


def test_vm_missing_disk_is_one_clear_line(vm7):
    with pytest.raises(InvalidArgument) as info:
        vm7.disk(9)
    assert str(info.value) == "VM 7 has no DISK with DISK_ID 9"
    assert info.value.exit_code == 2


def test_clone_defaults_when_clone_attribute_absent():
    vm = _vm(id=1, disks=[dict(image_id=1, persistent=True, clone=None),
                          dict(image_id=2, clone=None)])
    assert vm.disk(0).clone is False
    assert vm.disk(1).clone is True


def test_vm_context_and_history(vm7):
    assert vm7.context_disk_id == 4
    assert [h.seq for h in vm7.history] == [0, 1]            # sorted by SEQ
    assert vm7.last_history.hostname == "node2"
    assert vm7.last_history.action == 1
    assert (vm7.last_history.ds_id, vm7.last_history.tm_mad,
            vm7.last_history.vm_mad) == (0, "gfs2clvm", "kvm")
    assert vm7.previous_history.hostname == "node1"
    assert vm7.previous_history.etime > 0


def test_vm_without_history_or_context():
    vm = _vm(id=2, state=onexml.PENDING, lcm_state=0)
    assert vm.history == [] and vm.last_history is None and vm.previous_history is None
    assert vm.context_disk_id is None and vm.disks == []
    assert vm.state_name == "PENDING"
    one = _vm(id=3, history=[dict(hostname="node1", ds_id=0)])
    assert one.last_history.hostname == "node1" and one.previous_history is None


@pytest.mark.parametrize("state,lcm,quiet", [
    (onexml.POWEROFF, 0, True), (onexml.SUSPENDED, 0, True), (onexml.STOPPED, 0, True),
    (onexml.UNDEPLOYED, 0, True), (onexml.ACTIVE, LCM_STATES["RUNNING"], False),
    (onexml.ACTIVE, LCM_STATES["DISK_SNAPSHOT_POWEROFF"], False),
    (onexml.ACTIVE, LCM_STATES["HOTPLUG_SAVEAS_POWEROFF"], False),
    (onexml.PENDING, 0, False), (onexml.HOLD, 0, False), (onexml.DONE, 0, False),
    (onexml.POWEROFF, LCM_STATES["PROLOG"], False),   # impossible in oned: refuse anyway
])
def test_vm_is_quiescent(state, lcm, quiet):
    assert vm_is_quiescent(_vm(id=4, state=state, lcm_state=lcm)) is quiet


def test_lcm_state_numbers():
    # spot checks against OpenNebula/one include/VirtualMachine.h
    assert LCM_STATES["CLEANUP_RESUBMIT"] == 15 and LCM_STATES["UNKNOWN"] == 16
    assert LCM_STATES["DISK_SNAPSHOT"] == 57 and LCM_STATES["DISK_SNAPSHOT_DELETE"] == 59
    assert LCM_STATES["PROLOG_MIGRATE_UNKNOWN"] == 60
    assert (LCM_STATES["BACKUP"], LCM_STATES["BACKUP_POWEROFF"], LCM_STATES["RESTORE"]) == \
        (69, 70, 71)
    numbers = list(LCM_STATES.values())
    assert len(set(numbers)) == len(numbers)
    assert not {13, 14, 58} & set(numbers)                 # retired numbers
    assert set(numbers) == set(range(72)) - {13, 14, 58}
    assert onexml.VM_STATES["POWEROFF"] == 8 and onexml.VM_STATES["UNDEPLOYED"] == 9


# --- IMAGE / DATASTORE / USER ----------------------------------------------------------------

def test_image_accessors():
    doc = fo.image_doc(3, uid=5, gid=100, uname="alice", name="db", permissions="604",
                       type=2, persistent=True, path="/tmp/db.raw", format="raw",
                       fs="ext4", size=2048, state=8, datastore_id=101, vms=[7, 9],
                       template={"MD5": "0123abcd"})
    image = parse_image(fo.validate(doc) is not None and doc)
    assert (image.id, image.uid, image.gid, image.uname, image.name) == (3, 5, 100, "alice", "db")
    assert image.permissions == Permissions(owner_u=True, owner_m=True, other_u=True)
    assert (image.type, image.persistent, image.state) == (2, True, 8)
    assert (image.source, image.path, image.format, image.fs) == \
        ("vg_one/lv-oneimg-3", "/tmp/db.raw", "raw", "ext4")
    assert (image.size_mb, image.datastore_id) == (2048, 101)
    assert (image.running_vms, image.vm_ids) == (2, [7, 9])
    assert image.template_value("MD5") == "0123abcd"
    assert image.template_value("SHA1") is None
    assert parse_image(fo.image_doc(4)).persistent is False


def test_datastore_accessors():
    doc = fo.datastore_doc(101, name="lvm_images", type=0,
                           template={"BRIDGE_LIST": "node1, node2  node3,node4",
                                     "VG_NAME": "vg_one", "RESTRICTED_DIRS": "/"})
    fo.validate(doc)
    ds = parse_datastore(doc)
    assert (ds.id, ds.name, ds.type, ds.ds_mad, ds.tm_mad) == \
        (101, "lvm_images", 0, "gfs2clvm", "gfs2clvm")
    assert ds.base_path == "/var/lib/one//datastores/101"
    assert ds.bridge_list == ["node1", "node2", "node3", "node4"]
    assert ds.vg_name == "vg_one"
    assert ds.template_value("RESTRICTED_DIRS") == "/"
    assert ds.template_value("NO_SUCH") is None
    assert ds.cluster_ids == [0]
    bare = parse_datastore(fo.datastore_doc(0, type=1, template={"BRIDGE_LIST": None,
                                                                 "VG_NAME": None}))
    assert bare.type == onexml.SYSTEM_DS and bare.bridge_list == [] and bare.vg_name is None
    with pytest.raises(InvalidArgument):
        ds.template_value("A/B")


def test_user_group_ids_always_include_gid():
    user = parse_user(fo.user_doc(5, name="alice", gid=100, groups=[1, 101]))
    assert (user.id, user.gid, user.name) == (5, 100, "alice")
    assert sorted(user.group_ids) == [1, 100, 101]
    # a document whose GROUPS lacks the primary group (not from oned, but be safe)
    root = etree.fromstring(fo.user_doc(6, gid=100))
    root.find("GROUPS/ID").text = "1"
    assert parse_user(etree.tostring(root)).group_ids == [100, 1]


# --- permission rule ----------------------------------------------------------------------

def _user(uid, gid, groups=()):
    return parse_user(fo.user_doc(uid, gid=gid, groups=groups))


@pytest.mark.parametrize("user,owner_uid,owner_gid,perms,allowed", [
    (_user(0, 0), 5, 100, "000", True),                    # oneadmin
    (_user(2, 0), 5, 100, "000", True),                    # oneadmin group (primary)
    (_user(3, 1, groups=[0]), 5, 100, "000", True),        # oneadmin group (secondary)
    (_user(5, 1), 5, 100, "400", True),                    # owner with OWNER_U
    (_user(5, 1), 5, 100, "300", False),                   # owner without OWNER_U
    (_user(6, 100), 5, 100, "040", True),                  # group member, GROUP_U
    (_user(6, 1, groups=[100]), 5, 100, "040", True),      # secondary group member
    (_user(6, 100), 5, 100, "400", False),                 # group member, no GROUP_U
    (_user(7, 1), 5, 100, "004", True),                    # anyone with OTHER_U
    (_user(7, 1), 5, 100, "640", False),                   # stranger: denied
    (_user(7, 1), 5, 100, "733", False),                   # M and A bits are not USE
])
def test_may_use(user, owner_uid, owner_gid, perms, allowed):
    assert may_use(user, owner_uid, owner_gid, Permissions.from_octal(perms)) is allowed


def test_may_use_object():
    image = parse_image(fo.image_doc(3, uid=5, gid=100, permissions="600"))
    assert onexml.may_use_object(_user(5, 1), image)
    assert not onexml.may_use_object(_user(6, 100), image)


# --- base64 payloads ----------------------------------------------------------------------

def _ruby_encode64(text: str) -> str:
    """Base64 with a newline every 60 characters, like Ruby's Base64.encode64."""
    raw = base64.b64encode(text.encode()).decode()
    return "".join(raw[i:i + 60] + "\n" for i in range(0, len(raw), 60))


def test_driver_action_cp_payload():
    image = fo.image_doc(12, uid=5, path="lvm://7/0", size=2048, persistent=False)
    datastore = fo.datastore_doc(101, template={"BRIDGE_LIST": "node1 node2"})
    action = parse_driver_action(_ruby_encode64(fo.driver_action_xml(image, datastore)))
    assert (action.image.id, action.image.uid, action.image.path) == (12, 5, "lvm://7/0")
    assert action.image.size_mb == 2048
    assert (action.datastore.id, action.datastore.bridge_list) == (101, ["node1", "node2"])
    assert action.extra("SOURCE_BRIDGE_LIST") is None


def test_driver_action_monitor_payload():
    payload = fo.driver_action_b64(
        datastore=fo.datastore_doc(0, type=1),
        extra={"DATASTORE_LOCATION": "/var/lib/one/datastores", "MONITOR_VM_DISKS": 1})
    action = parse_driver_action(payload)
    assert action.image is None
    assert action.datastore.type == onexml.SYSTEM_DS
    assert action.extra("DATASTORE_LOCATION") == "/var/lib/one/datastores"
    assert action.extra("MONITOR_VM_DISKS") == "1"
    assert action.extra("count(DATASTORE)") == "1"
    assert action.extra("NOPE") is None
    with pytest.raises(InvalidArgument):
        action.extra("((")


def test_driver_action_stat_payload_is_partial():
    xml = ("<DS_DRIVER_ACTION_DATA><IMAGE><PATH>vol://4</PATH><SIZE>0</SIZE></IMAGE>"
           + fo.datastore_doc(101) + "</DS_DRIVER_ACTION_DATA>")
    action = parse_driver_action(base64.b64encode(xml.encode()))
    assert action.image.path == "vol://4" and action.image.size_mb == 0
    with pytest.raises(InvalidArgument, match=r"^IMAGE XML has no <ID> element$"):
        action.image.id


def test_vm_base64_for_premigrate():
    doc = fo.vm_doc(7, history=[dict(hostname="node1", ds_id=0), dict(hostname="node2", ds_id=0)])
    vm = parse_vm_base64(base64.b64encode(doc.encode()).decode() + "\n")
    assert vm.id == 7 and vm.previous_history.hostname == "node1"


def test_namespaced_document_is_accepted():
    root = etree.fromstring(fo.vm_doc(7, disks=[dict(image_id=1)]))
    for el in root.iter():
        el.tag = f"{{{fo.NAMESPACE}}}{el.tag}"
    vm = parse_vm(etree.tostring(root))
    assert vm.id == 7 and vm.disk(0).image_id == 1


# --- malformed input ------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("", r"^VM XML: empty document$"),
    ("<VM><ID>7</ID>", r"^VM XML: malformed XML: "),
    ("not xml at all", r"^VM XML: malformed XML: "),
    ("<IMAGE><ID>1</ID></IMAGE>", r"^VM XML: expected a <VM> document, got <IMAGE>$"),
    ("<VM><UID>0</UID></VM>", r"^VM XML has no <ID> element$"),
])
def test_malformed_vm_xml(text, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        parse_vm(text)
    assert "\n" not in str(info.value)


def test_non_integer_field():
    root = etree.fromstring(fo.vm_doc(7))
    root.find("STATE").text = "three"
    vm = parse_vm(etree.tostring(root))
    with pytest.raises(InvalidArgument, match=r"^VM 7 XML: <STATE> is not an integer: 'three'$"):
        vm.state


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET")
    doc = (f'<?xml version="1.0"?><!DOCTYPE VM [<!ENTITY x SYSTEM "file://{secret}">]>'
           "<VM><ID>7</ID><UID>0</UID><GID>0</GID><NAME>&x;</NAME><STATE>3</STATE>"
           "<LCM_STATE>3</LCM_STATE><PERMISSIONS/></VM>")
    vm = parse_vm(doc)
    assert "TOPSECRET" not in vm.name


@pytest.mark.parametrize("payload,message", [
    ("", r"empty"),
    ("!!!!", r"not valid base64"),
    ("PERNX0RS", r"malformed XML"),                  # base64 of '<DS_DR' (truncated)
    ("çava", r"non-ASCII"),
    (base64.b64encode(b"<IMAGE/>").decode(), r"expected a <DS_DRIVER_ACTION_DATA>"),
])
def test_malformed_driver_action(payload, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        parse_driver_action(payload)
    assert "\n" not in str(info.value)


def test_malformed_vm_base64():
    with pytest.raises(InvalidArgument, match=r"^VM XML \(base64\): not valid base64"):
        parse_vm_base64("<VM>")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_garbage_gives_invalid_argument_only(data):
    for parse in (parse_vm, parse_image, parse_datastore, parse_user,
                  parse_driver_action, parse_vm_base64):
        try:
            parse(data)
        except InvalidArgument as exc:
            assert "\n" not in exc.one_line()
