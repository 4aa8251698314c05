"""testkit/kvmdomain.py: the stand-in for oned and its KVM driver, rule by rule
(each rule as OpenNebula 7.4 has it; see the module's docstring for the sources)."""

import pytest
from lxml import etree

from testkit import kvmdomain as kd
from testkit.kvmdomain import NotModelled, OnedError, datastore_as_created

TM = {"NAME": "gfs2clvm", "LN_TARGET": "none", "CLONE_TARGET": "SELF", "SHARED": "YES",
      "DRIVER": "raw", "ALLOW_ORPHANS": "YES", "DS_MIGRATE": "NO"}
DS_CONF = {"NAME": "gfs2clvm", "REQUIRED_ATTRS": "BRIDGE_LIST", "PERSISTENT_ONLY": "NO"}
IMAGE_DS = {"NAME": "images", "TYPE": "IMAGE_DS", "DS_MAD": "gfs2clvm", "TM_MAD": "gfs2clvm",
            "BRIDGE_LIST": "node1 node2"}
SYSTEM_DS = {"NAME": "system", "TYPE": "SYSTEM_DS", "TM_MAD": "gfs2clvm"}
VM_DIR = "/var/lib/one/datastores/0/42"


def xml(element) -> str:
    return etree.tostring(element, encoding="unicode")


# --- datastore_as_created ---------------------------------------------------------------

def test_image_datastore_takes_the_tm_targets_and_driver():
    stored = datastore_as_created({**IMAGE_DS, "SHARED": "NO", "BASE_PATH": "/x",
                                   "DRIVER": "qcow2"}, TM)
    assert stored["LN_TARGET"] == "NONE"            # upper-cased as oned checks it
    assert stored["CLONE_TARGET"] == "SELF"
    assert stored["DRIVER"] == "raw"                # a non-empty TM DRIVER wins
    assert "SHARED" not in stored and "NAME" not in stored and "BASE_PATH" not in stored
    assert stored["ALLOW_ORPHANS"] == "YES" and stored["PERSISTENT_SNAPSHOTS"] == "YES"


@pytest.mark.parametrize("tm_disk_type, template_disk_type, stored", [
    (None, None, "FILE"),            # oned's default
    (None, "block", "BLOCK"),        # upper-cased
    (None, "FILE", "FILE"),
    ("BLOCK", None, "BLOCK"),
    ("BLOCK", "FILE", "BLOCK"),      # TM_MAD_CONF's replaces the template's ...
    ("", "FILE", "FILE"),            # ... only when it is non-empty
])
def test_image_datastore_disk_type(tm_disk_type, template_disk_type, stored):
    tm = TM if tm_disk_type is None else {**TM, "DISK_TYPE": tm_disk_type}
    tmpl = IMAGE_DS if template_disk_type is None else {**IMAGE_DS, "DISK_TYPE": template_disk_type}
    assert datastore_as_created(tmpl, tm)["DISK_TYPE"] == stored


@pytest.mark.parametrize("template_disk_type, stored", [(None, "FILE"), ("BLOCK", "BLOCK")])
def test_system_datastore_never_takes_the_tm_disk_type(template_disk_type, stored):
    tmpl = SYSTEM_DS if template_disk_type is None else {**SYSTEM_DS,
                                                         "DISK_TYPE": template_disk_type}
    assert datastore_as_created(tmpl, {**TM, "DISK_TYPE": "FILESYSTEM"})["DISK_TYPE"] == stored


def test_system_datastore_takes_shared_and_migration_flags():
    stored = datastore_as_created({**SYSTEM_DS, "LN_TARGET": "SELF", "CLONE_TARGET": "SELF"},
                                  {"NAME": "gfs2clvm", "SHARED": "yes", "DRIVER": "raw"})
    assert stored["SHARED"] == "YES"
    assert (stored["DS_MIGRATE"], stored["DS_LIVE_MIGRATE"], stored["DS_MIGRATE_SNAP"]) == \
        ("YES", "NO", "NO")                          # the defaults
    assert "LN_TARGET" not in stored and "CLONE_TARGET" not in stored
    assert "DRIVER" not in stored                    # only image datastores copy it
    assert stored["ALLOW_ORPHANS"] == "NO"


def test_file_datastore_has_no_disk_type():
    tmpl = {**IMAGE_DS, "TYPE": "FILE_DS", "DISK_TYPE": "BLOCK"}
    stored = datastore_as_created(tmpl, TM)
    assert "DISK_TYPE" not in stored
    assert kd.datastore_disk_type(stored) == "FILE"


@pytest.mark.parametrize("tmpl, tm, message", [
    ({**IMAGE_DS, "DISK_TYPE": "CDROM"}, TM, "Invalid DISK_TYPE for an Image Datastore."),
    ({**SYSTEM_DS, "DISK_TYPE": "ISCSI"}, TM, "Invalid DISK_TYPE for a System Datastore."),
    ({**IMAGE_DS, "DISK_TYPE": "LV"}, TM, "Unknown DISK_TYPE in template."),
    ({**SYSTEM_DS, "DS_MAD": "gfs2clvm"}, TM, "SYSTEM datastores cannot have DS_MAD"),
    ({**IMAGE_DS, "DS_MAD": ""}, TM, "No DS_MAD in template."),
    ({**IMAGE_DS, "TM_MAD": ""}, TM, "No TM_MAD in template."),
    ({**IMAGE_DS, "TM_MAD": "other"}, TM, 'TM_MAD named "other" is not defined'),
    (IMAGE_DS, {**TM, "LN_TARGET": "HOST"}, "ln_target or clone_target"),
    (IMAGE_DS, {key: v for key, v in TM.items() if key != "CLONE_TARGET"}, "clone_target"),
    (SYSTEM_DS, {key: v for key, v in TM.items() if key != "SHARED"}, "shared"),
])
def test_datastore_refused(tmpl, tm, message):
    with pytest.raises(OnedError, match=message):
        datastore_as_created(tmpl, tm)


def test_ds_mad_conf_required_attrs_and_capacity_check():
    conf = {**DS_CONF, "DATASTORE_CAPACITY_CHECK": "no"}
    assert datastore_as_created(IMAGE_DS, TM, conf)["DATASTORE_CAPACITY_CHECK"] == "NO"
    assert "DATASTORE_CAPACITY_CHECK" not in datastore_as_created(IMAGE_DS, TM, DS_CONF)
    # checked on the template as given, before TM_MAD_CONF is applied
    with pytest.raises(OnedError, match='missing the "BRIDGE_LIST"'):
        datastore_as_created({**IMAGE_DS, "BRIDGE_LIST": ""}, TM, DS_CONF)
    with pytest.raises(OnedError, match='missing the "DISK_TYPE"'):
        datastore_as_created(IMAGE_DS, {**TM, "DISK_TYPE": "BLOCK"},
                             {**DS_CONF, "REQUIRED_ATTRS": "DISK_TYPE"})
    # a system datastore has no DS_MAD, so no DS_MAD_CONF
    datastore_as_created(SYSTEM_DS, TM, {**DS_CONF, "REQUIRED_ATTRS": "NOT_THERE"})


@pytest.mark.parametrize("given, stored", [
    ({}, ("/var/tmp", "/")),
    ({"SAFE_DIRS": "/srv"}, ("/srv", None)),
    ({"RESTRICTED_DIRS": "/"}, (None, "/")),
])
def test_safe_and_restricted_dirs_default_only_together(given, stored):
    result = datastore_as_created({**IMAGE_DS, **given}, TM)
    assert (result.get("SAFE_DIRS"), result.get("RESTRICTED_DIRS")) == stored


def test_tm_mad_system_is_not_modelled():
    with pytest.raises(NotModelled):
        datastore_as_created(IMAGE_DS, {**TM, "TM_MAD_SYSTEM": "ssh"})


# --- image_as_registered ------------------------------------------------------------------

BLOCK_DS = datastore_as_created({**IMAGE_DS, "DISK_TYPE": "BLOCK"}, TM)
FILE_DS = datastore_as_created(IMAGE_DS, {**TM, "DRIVER": ""})


def test_image_defaults():
    image = kd.image_as_registered({"NAME": "a", "PATH": "/var/tmp/a", "PERSISTENT": "yes"},
                                   BLOCK_DS, source="vg_one/lv-oneimg-1")
    assert (image.type, image.persistent, image.disk_type) == ("OS", True, "BLOCK")
    assert image.template["DEV_PREFIX"] == "sd"
    assert (image.source, image.format) == ("vg_one/lv-oneimg-1", "raw")   # cp's reply


def test_cdrom_image_is_never_persistent_and_has_no_prefix():
    image = kd.image_as_registered({"TYPE": "cdrom", "PATH": "/x.isox", "PERSISTENT": "YES",
                                    "DEV_PREFIX": "vd"}, BLOCK_DS, source="/x.isox")
    assert (image.type, image.persistent) == ("CDROM", False)
    assert "DEV_PREFIX" not in image.template


@pytest.mark.parametrize("datastore, given_format, image_format", [
    (BLOCK_DS, "", "raw"),           # the datastore's DRIVER (TM_MAD_CONF's) ...
    (BLOCK_DS, "qcow2", "raw"),      # ... wins over the template's FORMAT
    (FILE_DS, "qcow2", "qcow2"),
    (FILE_DS, "", "raw"),
])
def test_mkfs_image_format(datastore, given_format, image_format):
    tmpl = {"TYPE": "DATABLOCK", "SIZE": "10", "FORMAT": given_format, "DRIVER": "vmdk"}
    image = kd.image_as_registered(tmpl, datastore, source="vg_one/lv-oneimg-2")
    assert image.format == image_format
    assert image.template.get("DRIVER") == datastore.get("DRIVER")   # the user's is dropped


def test_image_with_source_needs_format():
    image = kd.image_as_registered({"SOURCE": "vg/lv", "FORMAT": "RAW"}, BLOCK_DS)
    assert (image.source, image.format) == ("vg/lv", "RAW")


@pytest.mark.parametrize("tmpl, message", [
    ({"SOURCE": "vg/lv", "FORMAT": "raw", "PATH": "/p"}, "PATH and SOURCE cannot be both set"),
    ({"SOURCE": "vg/lv"}, "SOURCE needs FORMAT"),
    ({"TYPE": "CDROM"}, "No PATH nor SOURCE"),
])
def test_image_refused(tmpl, message):
    with pytest.raises(OnedError, match=message):
        kd.image_as_registered(tmpl, BLOCK_DS, source="x")


def test_no_image_in_a_system_datastore():
    with pytest.raises(OnedError, match="files or image datastore"):
        kd.image_as_registered({"PATH": "/p"}, datastore_as_created(SYSTEM_DS, TM), source="x")


# --- vm_disk ------------------------------------------------------------------------------

def image(image_type="OS", *, disk_type="BLOCK", persistent=False, image_format="raw", **tmpl):
    return kd.Image(image_type, persistent, "vg_one/lv-oneimg-3", image_format, disk_type,
                    {"DEV_PREFIX": "vd", **tmpl})


@pytest.mark.parametrize("image_type, image_disk_type, disk_type", [
    ("OS", "BLOCK", "BLOCK"), ("DATABLOCK", "FILE", "FILE"),
    ("CDROM", "BLOCK", "CDROM"), ("CDROM", "FILE", "CDROM"),   # whatever the disk type
    ("CDROM", "RBD", "RBD_CDROM"),
])
def test_disk_type_attribute_comes_from_the_image(image_type, image_disk_type, disk_type):
    disk = kd.vm_disk({}, BLOCK_DS, image=image(image_type, disk_type=image_disk_type))
    assert disk["TYPE"] == disk_type


@pytest.mark.parametrize("given, inherit, disk_type", [
    ({}, kd.INHERIT_DATASTORE_ATTR, "BLOCK"),    # the stock INHERIT_DATASTORE_ATTR
    ({"DISK_TYPE": "FILE"}, kd.INHERIT_DATASTORE_ATTR, "FILE"),   # the disk's own wins
    ({}, (), None),
])
def test_disk_inherits_the_datastore_disk_type(given, inherit, disk_type):
    disk = kd.vm_disk(given, BLOCK_DS, image=image("CDROM"), inherit_datastore_attrs=inherit)
    assert disk.get("DISK_TYPE") == disk_type


def test_image_attribute_inherited_before_the_datastore():
    disk = kd.vm_disk({}, BLOCK_DS, image=image(DISK_TYPE="FILE"))
    assert disk["DISK_TYPE"] == "FILE"


@pytest.mark.parametrize("img, given, readonly", [
    (image("CDROM"), {"READONLY": "NO"}, "YES"),
    (image(PERSISTENT_TYPE="immutable"), {}, "YES"),
    (image(READONLY="yes"), {}, "YES"),
    (image(READONLY="YES"), {"READONLY": "NO"}, "NO"),    # the disk's own wins
    (image(), {}, "NO"),
])
def test_readonly(img, given, readonly):
    assert kd.vm_disk(given, BLOCK_DS, image=img)["READONLY"] == readonly


@pytest.mark.parametrize("img, expected", [
    (image(), {"CLONE": "YES", "SAVE": "NO"}),
    (image(persistent=True), {"PERSISTENT": "YES", "CLONE": "NO", "SAVE": "YES"}),
    (image(persistent=True, PERSISTENT_TYPE="SHAREABLE"),
     {"PERSISTENT": "YES", "CLONE": "NO", "SAVE": "YES", "SHAREABLE": "YES"}),
    (image(persistent=True, image_format="qcow2", PERSISTENT_TYPE="SHAREABLE"),
     {"PERSISTENT": "YES", "CLONE": "NO", "SAVE": "YES"}),
    (image("CDROM"), {"CLONE": "NO", "SAVE": "NO"}),
])
def test_clone_save_persistent(img, expected):
    disk = kd.vm_disk({}, BLOCK_DS, image=img)
    keys = ("PERSISTENT", "CLONE", "SAVE", "SHAREABLE")
    assert {key: disk[key] for key in keys if key in disk} == expected


def test_image_disk_source_driver_targets():
    disk = kd.vm_disk({"DRIVER": "qcow2"}, BLOCK_DS, image=image(image_format="RAW"))
    assert (disk["SOURCE"], disk["DRIVER"], disk["FORMAT"]) == ("vg_one/lv-oneimg-3", "raw", "raw")
    assert (disk["TM_MAD"], disk["LN_TARGET"], disk["CLONE_TARGET"]) == \
        ("gfs2clvm", "NONE", "SELF")
    assert "DRIVER" not in kd.vm_disk({"DRIVER": "qcow2"}, BLOCK_DS, image=image(image_format=""))


@pytest.mark.parametrize("img, given, prefix", [
    (image(), {}, "vd"),
    (image(), {"DEV_PREFIX": "hd"}, "hd"),
    (kd.Image("OS", False, "s", "raw", "BLOCK", {}), {}, "sd"),   # removed from the image
    (image("CDROM"), {}, None),                                   # chosen per VM
])
def test_dev_prefix(img, given, prefix):
    assert kd.vm_disk(given, BLOCK_DS, image=img).get("DEV_PREFIX") == prefix


def test_image_target_unless_the_disk_has_one():
    assert kd.vm_disk({}, BLOCK_DS, image=image(TARGET="vdz"))["TARGET"] == "vdz"
    assert kd.vm_disk({"TARGET": "vdb"}, BLOCK_DS, image=image(TARGET="vdz"))["TARGET"] == "vdb"


SYSTEM_BLOCK = datastore_as_created({**SYSTEM_DS, "DISK_TYPE": "BLOCK", "DRIVER": "qcow2"}, TM)


@pytest.mark.parametrize("given, tm, disk_type, driver", [
    ({"TYPE": "fs"}, TM, "BLOCK", "raw"),                         # TM_MAD_CONF's DRIVER
    ({"TYPE": "FS", "FORMAT": "qcow2"}, TM, "BLOCK", "raw"),
    ({"TYPE": "fs"}, {}, "BLOCK", "qcow2"),                       # the system datastore's
    ({"TYPE": "swap", "FORMAT": "qcow2"}, TM, "BLOCK", "raw"),    # swap: always raw
    ({"TYPE": "fs", "DISK_TYPE": "FILE"}, TM, "FILE", "raw"),     # the disk's own wins
])
def test_volatile_disk(given, tm, disk_type, driver):
    disk = kd.vm_disk({**given, "SIZE": "10"}, SYSTEM_BLOCK, tm_mad_conf=tm)
    assert (disk["DISK_TYPE"], disk["DRIVER"], disk["FORMAT"]) == (disk_type, driver, driver)
    assert disk["TYPE"] == given["TYPE"]                 # kept as given
    assert disk["DEV_PREFIX"] == "sd"


@pytest.mark.parametrize("system_ds, given, driver", [
    (datastore_as_created(SYSTEM_DS, TM), {"FORMAT": "qcow2"}, "qcow2"),    # the disk's FORMAT
    (datastore_as_created(SYSTEM_DS, TM), {}, "raw"),
])
def test_volatile_driver_without_any_configured(system_ds, given, driver):
    disk = kd.vm_disk({"TYPE": "fs", "SIZE": "1", **given}, system_ds, tm_mad_conf={})
    assert disk["DRIVER"] == driver
    assert disk["DISK_TYPE"] == "FILE"                  # the system datastore's default


@pytest.mark.parametrize("given, message", [
    ({"TYPE": "block", "SIZE": "1"}, "Unknown disk type BLOCK"),
    ({"TYPE": "fs"}, "SIZE attribute must be a positive integer"),
    ({"TYPE": "fs", "SIZE": "0"}, "SIZE attribute must be a positive integer"),
])
def test_volatile_disk_refused(given, message):
    with pytest.raises(OnedError, match=message):
        kd.vm_disk(given, SYSTEM_BLOCK, tm_mad_conf=TM)


# --- assign_ids_and_targets -----------------------------------------------------------------

@pytest.mark.parametrize("vm_machine, cdrom_targets", [
    ("", ["hda", "hdb"]), ("pc-i440fx", ["hda", "hdb"]),
    ("q35", ["sdb", "sdc"]), ("pc-q35-8.2", ["sdb", "sdc"]), ("virt", ["sdb", "sdc"]),
])
def test_targets_in_oned_order(vm_machine, cdrom_targets):
    disks = [("DATABLOCK", {"DEV_PREFIX": "sd"}), ("CDROM", {}), ("OS", {"DEV_PREFIX": "sd"}),
             ("OS", {"DEV_PREFIX": "sd"})]
    context: dict[str, str] = {}
    kd.assign_ids_and_targets(disks, context, vm_machine=vm_machine)
    targets = [disk["TARGET"] for _, disk in disks]
    # the first OS disk first, then CD-ROMs and the context, then DATABLOCKs and other OS
    assert targets[2] == "sda"
    assert [targets[1], context["TARGET"]] == cdrom_targets
    assert [targets[0], targets[3]] == (["sdb", "sdc"] if cdrom_targets[0] == "hda"
                                        else ["sdd", "sde"])
    assert [disk["DISK_ID"] for _, disk in disks] == ["0", "1", "2", "3"]
    assert context["DISK_ID"] == "4"


def test_given_targets_are_kept_and_skipped():
    disks = [("OS", {"DEV_PREFIX": "vd", "TARGET": "vda"}), ("DATABLOCK", {"DEV_PREFIX": "vd"}),
             ("CDROM", {"DEV_PREFIX": "sd"})]
    context = {"TARGET": "hdc"}
    kd.assign_ids_and_targets(disks, context)
    assert [disk["TARGET"] for _, disk in disks] == ["vda", "vdb", "sda"]
    assert context["TARGET"] == "hdc"


def test_targets_after_z():
    disks = [("DATABLOCK", {"DEV_PREFIX": "vd"}) for _ in range(28)]
    kd.assign_ids_and_targets(disks)
    assert [disk["TARGET"] for _, disk in disks[24:]] == ["vdy", "vdz", "vdaa", "vdab"]


def test_target_errors():
    with pytest.raises(OnedError, match="same target vda"):
        kd.assign_ids_and_targets([("OS", {"TARGET": "vda"}), ("OS", {"TARGET": "vda"})])
    with pytest.raises(OnedError, match="same target hda"):
        kd.assign_ids_and_targets([("CDROM", {"TARGET": "hda"})], {"TARGET": "hda"})
    five_hd = [("DATABLOCK", {"DEV_PREFIX": "hd"}) for _ in range(5)]
    with pytest.raises(OnedError, match="more than 4 hd disks"):
        kd.assign_ids_and_targets(five_hd)
    kd.assign_ids_and_targets(five_hd, vm_machine="q35")


# --- render_disk ----------------------------------------------------------------------------

def disk(**attrs):
    return {"DISK_ID": "3", "TARGET": "sdc", "DRIVER": "raw", **attrs}


DEV = f"{VM_DIR}/disk.3"
DRIVER = "<driver name=\"qemu\" type=\"raw\" cache=\"none\" discard=\"unmap\"/>"


@pytest.mark.parametrize("attrs, expected", [
    ({"TYPE": "BLOCK", "DISK_TYPE": "BLOCK"},
     f'<disk type="block" device="disk"><source dev="{DEV}"/>'),
    ({"TYPE": "FILE", "DISK_TYPE": "BLOCK"},        # TYPE decides for an image disk
     f'<disk type="file" device="disk"><source file="{DEV}"/>'),
    ({"TYPE": "fs", "DISK_TYPE": "BLOCK"},          # DISK_TYPE for a volatile one
     f'<disk type="block" device="disk"><source dev="{DEV}"/>'),
    ({"TYPE": "swap", "DISK_TYPE": "FILE"},
     f'<disk type="file" device="disk"><source file="{DEV}"/>'),
    ({"TYPE": "BLOCK_CDROM"},
     f'<disk type="block" device="cdrom"><source dev="{DEV}"/>'),
    ({"TYPE": "CDROM", "DISK_TYPE": "FILE"},
     f'<disk type="file" device="cdrom"><source file="{DEV}"/>'),
    ({"TYPE": "CDROM"},
     f'<disk type="file" device="cdrom"><source file="{DEV}"/>'),
    ({"TYPE": "CDROM", "DISK_TYPE": "BLOCK"},       # the .isox defect: a file as a block device
     f'<disk type="block" device="cdrom"><source dev="{DEV}"/>'),
])
def test_disk_element_type_and_source(attrs, expected):
    shown = xml(kd.render_disk(disk(**attrs), VM_DIR))
    assert shown.startswith(expected), shown


def test_whole_disk_element():
    element = kd.render_disk(disk(TYPE="BLOCK", READONLY="yes", SHAREABLE="YES", ORDER="2"),
                             VM_DIR)
    assert xml(element) == (f'<disk type="block" device="disk"><source dev="{DEV}"/>'
                            '<target dev="sdc"/><boot order="2"/><readonly/><shareable/>'
                            f'{DRIVER}</disk>')


@pytest.mark.parametrize("attrs, vmm, driver", [
    ({"TYPE": "CDROM", "DRIVER": "qcow2"}, kd.VMM_DISK_DEFAULTS, ("raw", "none")),  # CD: raw
    ({"TYPE": "BLOCK", "DRIVER": "qcow2", "CACHE": "writeback"}, kd.VMM_DISK_DEFAULTS,
     ("qcow2", "writeback")),
    ({"TYPE": "BLOCK", "DRIVER": ""}, {"DRIVER": "qcow2", "CACHE": "unsafe"}, ("qcow2", "unsafe")),
    ({"TYPE": "BLOCK", "DRIVER": ""}, {}, ("raw", "default")),
])
def test_driver_type_and_cache(attrs, vmm, driver):
    element = kd.render_disk(disk(**attrs), VM_DIR, vmm_disk=vmm)
    assert (element.find("driver").get("type"), element.find("driver").get("cache")) == driver


def test_driver_io_and_discard():
    element = kd.render_disk(disk(TYPE="BLOCK", IO="native", DISCARD="ignore"), VM_DIR,
                             vmm_disk={"IO": "threads"})
    assert dict(element.find("driver").attrib) == {
        "name": "qemu", "type": "raw", "cache": "default", "io": "native", "discard": "ignore"}
    element = kd.render_disk(disk(TYPE="BLOCK"), VM_DIR, vmm_disk={})
    assert "io" not in element.find("driver").attrib
    assert "discard" not in element.find("driver").attrib


@pytest.mark.parametrize("kind, target, machine, sd_bus, bus", [
    ("CDROM", "hda", "q35", "", "sata"), ("CDROM", "sda", "pc", "scsi", "ide"),
    ("BLOCK", "hda", "pc-q35-8.2", "", "sata"), ("BLOCK", "hda", "pc", "", "ide"),
    ("BLOCK", "sda", "q35", "", None), ("BLOCK", "sda", "q35", "scsi", "scsi"),
    ("BLOCK", "vda", "pc", "scsi", "virtio"),
])
def test_target_bus(kind, target, machine, sd_bus, bus):
    element = kd.render_disk(disk(TYPE=kind, TARGET=target), VM_DIR, machine=machine,
                             sd_bus=sd_bus)
    assert element.find("target").attrib == ({"dev": target} if bus is None
                                              else {"dev": target, "bus": bus})


@pytest.mark.parametrize("attrs, error", [
    ({"TYPE": "BLOCK", "TARGET": ""}, OnedError),
    ({"TYPE": "RBD"}, NotModelled), ({"TYPE": "ISCSI"}, NotModelled),
    ({"TYPE": "FILE", "DISK_TYPE": "RBD"}, NotModelled),
    ({"TYPE": "FILESYSTEM"}, NotModelled),
])
def test_disks_not_rendered(attrs, error):
    with pytest.raises(error):
        kd.render_disk(disk(**attrs), VM_DIR)


# --- render_context ---------------------------------------------------------------------------

@pytest.mark.parametrize("context_disk_type, disk_type, source", [
    (None, "file", "file"), ("block", "block", "dev"), ("RBD", "file", "file"),
])
def test_context_cdrom(context_disk_type, disk_type, source):
    system_ds = {} if context_disk_type is None else {"CONTEXT_DISK_TYPE": context_disk_type}
    element = kd.render_context({"TARGET": "hdb", "DISK_ID": "4"}, VM_DIR, system_ds)
    assert xml(element) == (
        f'<disk type="{disk_type}" device="cdrom"><source {source}="{VM_DIR}/disk.4"/>'
        '<target dev="hdb" bus="sata"/><readonly/>'
        '<driver name="qemu" type="raw" cache="none"/></disk>')


def test_context_without_target_is_left_out():
    assert kd.render_context({"DISK_ID": "4"}, VM_DIR, {}) is None


# --- domain_xml, vm_dir -------------------------------------------------------------------------

def test_domain_xml():
    disks = [kd.render_disk(disk(TYPE="BLOCK"), VM_DIR),
             kd.render_context({"TARGET": "hda", "DISK_ID": "4"}, VM_DIR, {})]
    without_indent = etree.XMLParser(remove_blank_text=True)
    domain = etree.fromstring(kd.domain_xml("one-42", 256, disks), without_indent)
    assert domain.get("type") == "qemu"
    assert domain.findtext("name") == "one-42"
    assert (domain.findtext("memory"), domain.find("memory").get("unit")) == ("262144", "KiB")
    assert domain.find("os/type").attrib == {"arch": "x86_64", "machine": "q35"}
    assert [xml(d) for d in domain.iterfind("devices/disk")] == [xml(d) for d in disks]
    assert domain.find("devices/controller").attrib == {
        "type": "scsi", "index": "0", "model": "virtio-scsi"}
    assert all(d.getparent() is None for d in disks)     # the caller's elements stay its own


def test_vm_dir():
    assert kd.vm_dir(0, 42) == "/var/lib/one/datastores/0/42"
    assert kd.vm_dir(101, 7, "/srv/ds") == "/srv/ds/101/7"
