"""A stand-in for the parts of oned and its KVM driver that turn our datastore
templates into libvirt <disk> elements.

oned cannot run here, so this module re-implements, in our own Python, the rules
OpenNebula release-7.4.0 (OpenNebula/one, commit fe684f0c431aacf574504fc297c9fced09cdd955)
follows, read from these files of that revision:

* src/datastore/Datastore.cc: Datastore::insert, set_ds_mad, set_tm_mad and
  set_ds_disk_type (what a datastore template becomes at `onedatastore create`),
  Datastore::disk_attribute and get_ds_driver (what a VM disk takes from its
  datastore), Datastore::context_disk_type.
* src/image/Image.cc: Image::insert (TYPE, PERSISTENT, DEV_PREFIX, FORMAT at
  registration) and Image::disk_attribute (what a VM disk takes from its image);
  src/rm/api/ImageAPI.cc: an image keeps its datastore's disk type.
* src/image/ImagePool.cc: ImagePool::acquire_disk (volatile disks).
* src/vm/VirtualMachineDisk.cc: VirtualMachineDisk::is_volatile,
  VirtualMachineDisks::get_images and assign_disk_targets (DISK_ID, TARGET).
* src/vmm/LibVirtDriverKVM.cc: LibVirtDriver::deployment_description_kvm, the
  disk loop and the context device (the deployment file oned hands libvirt).
* share/etc/oned.conf and src/vmm_mad/exec/x86_64/vmm_exec_kvm.conf: the stock
  defaults below.

Modelled: image and system datastores created with a TM_MAD_CONF without
TM_MAD_SYSTEM; OS, DATABLOCK and CDROM images; volatile fs/swap disks; the
context CD-ROM; disk types FILE and BLOCK in the renderer; the <disk> child
elements source, target, boot, readonly, shareable and driver.

Not modelled (NotModelled is raised where an input needs it): TM_MAD_SYSTEM
deployment modes, `onedatastore update` (post_update_template), BACKUP
datastores, KERNEL/RAMDISK/CONTEXT/FILESYSTEM/BACKUP images, network disks
(RBD, iSCSI, Gluster, Sheepdog) and virtio-fs.  Silently left out: quotas,
image sizes and snapshots, DEFAULT_IMAGE_PERSISTENT(_NEW) and PERSISTENT_ONLY,
secret encryption, vector attributes in INHERIT_*_ATTR, the disk attributes
the renderer does not read (IMAGE_ID, DATASTORE_ID, CLUSTER_ID, ...), and in
the XML: <serial>, <encryption>, <iotune>, iothread and queues, the <address>
elements and SATA controllers oned writes for sd* targets (libvirt assigns
addresses itself), the RHEL/ARM bus variants, and all of the domain but
what `virsh create` needs (see domain_xml).
"""

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lxml import etree

# share/etc/oned.conf (7.4)
DEFAULT_DEVICE_PREFIX = "sd"
DEFAULT_IMAGE_TYPE = "OS"
DATASTORE_LOCATION = "/var/lib/one/datastores"     # commented out there: the default
INHERIT_DATASTORE_ATTR = (
    "CEPH_HOST", "CEPH_SECRET", "CEPH_KEY", "CEPH_USER", "CEPH_CONF", "CEPH_TRASH", "POOL_NAME",
    "ISCSI_USER", "ISCSI_USAGE", "ISCSI_HOST", "GLUSTER_HOST", "GLUSTER_VOLUME", "DISK_TYPE",
    "ALLOW_ORPHANS", "QCOW2_STANDALONE", "SPARSE", "LVM_THIN_ENABLE", "PERSISTENT_SNAPSHOTS")
INHERIT_IMAGE_ATTR = ("ISCSI_USER", "ISCSI_USAGE", "ISCSI_HOST", "ISCSI_IQN", "LUKS_SECRET",
                      "DISK_TYPE", "SERIAL", "MOUNT_POINT", "MOUNT_TAG")

# src/vmm_mad/exec/x86_64/vmm_exec_kvm.conf (7.4): OS/MACHINE and the DISK defaults
VMM_MACHINE = "q35"
VMM_DISK_DEFAULTS = {"DRIVER": "raw", "CACHE": "none", "DISCARD": "unmap"}

# Image::DiskType (include/Image.h): the number in DATASTORE/DISK_TYPE and IMAGE/DISK_TYPE
DISK_TYPE_IDS = {"FILE": 0, "CDROM": 1, "BLOCK": 2, "RBD": 3, "RBD_CDROM": 4, "GLUSTER": 5,
                 "GLUSTER_CDROM": 6, "SHEEPDOG": 7, "SHEEPDOG_CDROM": 8, "ISCSI": 9,
                 "FILESYSTEM": 10}
_VALID_DISK_TYPES = {
    "IMAGE_DS": {"FILE", "BLOCK", "ISCSI", "RBD", "GLUSTER", "SHEEPDOG", "FILESYSTEM"},
    "SYSTEM_DS": {"FILE", "RBD", "BLOCK", "FILESYSTEM"},
}
_CDROM_TYPE = {"RBD": "RBD_CDROM", "GLUSTER": "GLUSTER_CDROM", "SHEEPDOG": "SHEEPDOG_CDROM"}
_VOLATILE = ("FS", "SWAP")
_CDROM_KINDS = ("CDROM", "BLOCK_CDROM", "RBD_CDROM", "SHEEPDOG_CDROM", "GLUSTER_CDROM")
_NETWORK_KINDS = ("ISCSI", "RBD", "RBD_CDROM", "SHEEPDOG", "SHEEPDOG_CDROM", "GLUSTER",
                  "GLUSTER_CDROM")


class OnedError(ValueError):
    """What oned (or its KVM driver) refuses, with its message."""


class NotModelled(NotImplementedError):
    """An input this stand-in does not follow oned for."""


def _upper_keys(attrs: Mapping[str, object]) -> dict[str, str]:
    # oned upper-cases attribute names; values stay as given
    return {key.upper(): str(value) for key, value in attrs.items()}


def _yes_no(flag: bool) -> str:
    return "YES" if flag else "NO"


def _conf_bool(conf: Mapping[str, str], key: str) -> bool | None:
    """VectorAttribute::vector_value(name, bool&): absent or empty -> None."""
    value = conf.get(key, "")
    return value.upper() == "YES" if value else None


# --- datastores ---------------------------------------------------------------------

def datastore_as_created(template: Mapping[str, str], tm_mad_conf: Mapping[str, str],
                         ds_mad_conf: Mapping[str, str] | None = None) -> dict[str, str]:
    """The datastore's TEMPLATE as oned stores it after `onedatastore create`
    (Datastore::insert).  An image datastore takes LN_TARGET and CLONE_TARGET from
    TM_MAD_CONF, and its DRIVER and DISK_TYPE when those are non-empty there; a
    system datastore takes SHARED and DS_(LIVE_)MIGRATE(_SNAP) and never DISK_TYPE.
    DISK_TYPE then defaults to FILE.  ds_mad_conf (image datastores): its
    REQUIRED_ATTRS are checked and DATASTORE_CAPACITY_CHECK copied."""
    stored = _upper_keys(template)
    stored.pop("NAME", None)
    ds_type = stored.get("TYPE", "").upper() or "IMAGE_DS"
    if ds_type == "BACKUP_DS":
        raise NotModelled("BACKUP datastores")
    if ds_type not in ("SYSTEM_DS", "FILE_DS"):
        ds_type = "IMAGE_DS"             # Datastore::str_to_type's fallback
    ds_mad = stored.get("DS_MAD", "")
    if ds_type == "SYSTEM_DS":
        if ds_mad:
            raise OnedError("SYSTEM datastores cannot have DS_MAD defined.")
    elif not ds_mad:
        raise OnedError("No DS_MAD in template.")
    elif ds_mad_conf is not None:
        _apply_ds_mad_conf(stored, ds_mad, ds_mad_conf)
    _apply_tm_mad_conf(stored, ds_type, tm_mad_conf)
    stored.pop("BASE_PATH", None)
    _set_disk_type(stored, ds_type)
    if not stored.get("SAFE_DIRS") and not stored.get("RESTRICTED_DIRS"):
        stored.update(SAFE_DIRS="/var/tmp", RESTRICTED_DIRS="/")
    return stored


def _apply_ds_mad_conf(stored: dict[str, str], ds_mad: str, conf: Mapping[str, str]) -> None:
    if conf.get("NAME") != ds_mad:
        raise OnedError(f'DS_MAD named "{ds_mad}" is not defined in oned.conf')
    capacity_check = _conf_bool(conf, "DATASTORE_CAPACITY_CHECK")
    if capacity_check is not None:
        stored["DATASTORE_CAPACITY_CHECK"] = _yes_no(capacity_check)
    for required in filter(None, (a.strip().upper() for a in conf.get("REQUIRED_ATTRS", "")
                                  .split(","))):
        if not stored.get(required):
            raise OnedError(f'Datastore template is missing the "{required}" attribute '
                            "or it's empty.")


def _apply_tm_mad_conf(stored: dict[str, str], ds_type: str, conf: Mapping[str, str]) -> None:
    tm_mad = stored.get("TM_MAD", "")
    if not tm_mad:
        raise OnedError("No TM_MAD in template.")
    if conf.get("NAME") != tm_mad:
        raise OnedError(f'TM_MAD named "{tm_mad}" is not defined in oned.conf')
    bad_conf = OnedError(f"Attribute shared, ln_target or clone_target in TM_MAD_CONF for "
                         f"{tm_mad} is missing or has wrong value in oned.conf")
    if ds_type == "SYSTEM_DS":
        shared = _conf_bool(conf, "SHARED")
        if shared is None:
            raise bad_conf
        stored["SHARED"] = _yes_no(shared)
        for key, default in (("DS_MIGRATE", True), ("DS_LIVE_MIGRATE", False),
                             ("DS_MIGRATE_SNAP", False)):
            value = _conf_bool(conf, key)
            stored[key] = _yes_no(default if value is None else value)
        stored.pop("LN_TARGET", None)
        stored.pop("CLONE_TARGET", None)
    else:
        if conf.get("TM_MAD_SYSTEM"):
            raise NotModelled("TM_MAD_SYSTEM deployment modes")
        for key in ("LN_TARGET", "CLONE_TARGET"):
            target = conf.get(key, "").upper()
            if target not in ("NONE", "SELF", "SYSTEM"):
                raise bad_conf
            stored[key] = target
        # only a non-empty TM_MAD_CONF value replaces the template's
        for key in ("DRIVER", "DISK_TYPE"):
            if conf.get(key):
                stored[key] = conf[key]
        stored.pop("SHARED", None)
    stored["ALLOW_ORPHANS"] = conf.get("ALLOW_ORPHANS", "NO")
    stored["PERSISTENT_SNAPSHOTS"] = _yes_no(_conf_bool(conf, "PERSISTENT_SNAPSHOTS") is not False)


def _set_disk_type(stored: dict[str, str], ds_type: str) -> None:
    """Datastore::set_ds_disk_type: FILE when none, checked per datastore type."""
    disk_type = stored.pop("DISK_TYPE", "").upper() or "FILE"
    if ds_type == "FILE_DS":
        return                           # always FILE, and not written to the template
    if disk_type not in DISK_TYPE_IDS:
        raise OnedError("Unknown DISK_TYPE in template.")
    if disk_type not in _VALID_DISK_TYPES[ds_type]:
        kind = "an Image" if ds_type == "IMAGE_DS" else "a System"
        raise OnedError(f"Invalid DISK_TYPE for {kind} Datastore.")
    stored["DISK_TYPE"] = disk_type


def datastore_disk_type(stored: Mapping[str, str]) -> str:
    """The datastore's disk type (DATASTORE/DISK_TYPE) of a datastore_as_created result."""
    return stored.get("DISK_TYPE", "FILE")


def vm_dir(system_ds_id: int, vm_id: int, datastore_location: str = DATASTORE_LOCATION) -> str:
    """The VM directory on the host (History: <DATASTORE_LOCATION>/<system ds>/<vm>)."""
    return f"{datastore_location}/{system_ds_id}/{vm_id}"


# --- images -------------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    """An image as oned holds it after registration."""
    type: str                        # OS, DATABLOCK or CDROM
    persistent: bool
    source: str
    format: str
    disk_type: str                   # its datastore's DISK_TYPE when it was registered
    template: Mapping[str, str]      # what is left of its template (DEV_PREFIX, READONLY, ...)


def image_as_registered(template: Mapping[str, str], datastore: Mapping[str, str], *,
                        source: str = "", cp_format: str = "raw") -> Image:
    """Image::insert for an image of `datastore` (as datastore_as_created stores it).
    source: the SOURCE the datastore's cp or mkfs replied (unused when the template
    gives SOURCE); cp_format: the FORMAT cp replied (ours always says raw).  An
    image made by mkfs (no PATH, no SOURCE) gets the datastore's DRIVER as FORMAT,
    which for an image datastore is TM_MAD_CONF's DRIVER."""
    if datastore.get("TYPE", "").upper() in ("SYSTEM_DS", "BACKUP_DS"):
        raise OnedError("New images can only be allocated in a files or image datastore.")
    tmpl = _upper_keys(template)
    tmpl.pop("NAME", None)
    image_type = (tmpl.pop("TYPE", "") or DEFAULT_IMAGE_TYPE).upper()
    if image_type not in ("OS", "DATABLOCK", "CDROM"):
        raise NotModelled(f"{image_type} images")
    persistent = tmpl.pop("PERSISTENT", "").upper() == "YES" and image_type != "CDROM"
    if image_type == "CDROM":
        tmpl.pop("DEV_PREFIX", None)     # a CD-ROM's prefix is chosen per VM
    elif not tmpl.get("DEV_PREFIX"):
        tmpl["DEV_PREFIX"] = DEFAULT_DEVICE_PREFIX
    tmpl.pop("DRIVER", None)             # generated, never the user's
    path, given_source, given_format = (tmpl.pop(key, "") for key in ("PATH", "SOURCE", "FORMAT"))
    tmpl.pop("TM_MAD", None)
    if given_source:
        if path:
            raise OnedError("PATH and SOURCE cannot be both set.")
        if not given_format:
            raise OnedError("SOURCE needs FORMAT to be set.")
        source, image_format = given_source, given_format
    elif path:
        image_format = cp_format
    elif image_type in ("OS", "DATABLOCK"):
        ds_driver = datastore.get("DRIVER", "")
        if ds_driver:
            tmpl["DRIVER"] = ds_driver
        image_format = ds_driver or given_format or "raw"
    else:
        raise OnedError("No PATH nor SOURCE in template.")
    if not source:
        raise ValueError("source: the SOURCE the datastore action replied is needed")
    return Image(image_type, persistent, source, image_format, datastore_disk_type(datastore),
                 tmpl)


# --- VM disks -----------------------------------------------------------------------

def is_volatile(disk: Mapping[str, str]) -> bool:
    return disk.get("TYPE", "").upper() in _VOLATILE


def vm_disk(disk: Mapping[str, str], datastore: Mapping[str, str], *,
            image: Image | None = None, tm_mad_conf: Mapping[str, str] | None = None,
            inherit_datastore_attrs: Sequence[str] = INHERIT_DATASTORE_ATTR,
            inherit_image_attrs: Sequence[str] = INHERIT_IMAGE_ATTR) -> dict[str, str]:
    """The VM's DISK as oned completes it from the VM template's DISK.

    An image disk (`image` given; `datastore`: the image's datastore as stored):
    Image::disk_attribute, then Datastore::disk_attribute.  A volatile disk (DISK
    TYPE fs or swap; `datastore`: the system datastore the VM is deployed on,
    `tm_mad_conf`: its TM's, whose DRIVER an fs disk takes): ImagePool::acquire_disk,
    then Datastore::disk_attribute.  DISK_ID and TARGET: assign_ids_and_targets."""
    out = _upper_keys(disk)
    if image is not None:
        _image_disk_attribute(out, image, inherit_image_attrs)
    elif not is_volatile(out):
        raise OnedError(f"Unknown disk type {out.get('TYPE', '').upper()}")
    else:
        if tm_mad_conf is None:
            raise ValueError("a volatile disk needs the system datastore's TM_MAD_CONF")
        if not out.get("SIZE", "").isdigit() or int(out["SIZE"]) <= 0:
            raise OnedError("SIZE attribute must be a positive integer value.")
        if not out.get("DEV_PREFIX"):
            out["DEV_PREFIX"] = DEFAULT_DEVICE_PREFIX
    _datastore_disk_attribute(out, datastore, tm_mad_conf or {}, inherit_datastore_attrs)
    return out


def _inherit(disk: dict[str, str], source: Mapping[str, str], names: Sequence[str]) -> None:
    # a value already in the disk wins; an empty one is not inherited
    for name in names:
        if source.get(name) and not disk.get(name):
            disk[name] = source[name]


def _image_disk_attribute(disk: dict[str, str], image: Image,
                          inherit_attrs: Sequence[str]) -> None:
    tmpl = image.template
    if not disk.get("DEV_PREFIX") and image.type != "CDROM":
        disk["DEV_PREFIX"] = tmpl.get("DEV_PREFIX") or DEFAULT_DEVICE_PREFIX
    disk["SOURCE"] = image.source
    if image.format:
        disk["DRIVER"] = disk["FORMAT"] = image.format.lower()
    else:
        disk.pop("DRIVER", None)
        disk.pop("FORMAT", None)
    persistent_type = tmpl.get("PERSISTENT_TYPE", "").upper()
    if image.type == "CDROM" or persistent_type == "IMMUTABLE":
        disk.update(SAVE="NO", CLONE="NO", READONLY="YES")
    else:
        if not disk.get("READONLY"):
            disk["READONLY"] = _yes_no(tmpl.get("READONLY", "").upper() == "YES")
        if image.persistent:
            disk.update(PERSISTENT="YES", CLONE="NO", SAVE="YES")
            if persistent_type == "SHAREABLE" and image.format in ("raw", "dir"):
                disk["SHAREABLE"] = "YES"
        else:
            disk.update(CLONE="YES", SAVE="NO")
    # a CD-ROM is TYPE CDROM whatever its datastore's disk type (but for network ones)
    if image.type == "CDROM":
        disk["TYPE"] = _CDROM_TYPE.get(image.disk_type, "CDROM")
    else:
        disk["TYPE"] = image.disk_type
    if not disk.get("TARGET") and tmpl.get("TARGET"):
        disk["TARGET"] = tmpl["TARGET"]
    _inherit(disk, tmpl, inherit_attrs)


def _datastore_disk_attribute(disk: dict[str, str], datastore: Mapping[str, str],
                              tm_mad_conf: Mapping[str, str],
                              inherit_attrs: Sequence[str]) -> None:
    disk["TM_MAD"] = datastore["TM_MAD"]
    _inherit(disk, datastore, ("CLONE_TARGET", "LN_TARGET"))
    # INHERIT_DATASTORE_ATTR = "DISK_TYPE" (stock): every disk gets its datastore's
    _inherit(disk, datastore, inherit_attrs)
    if not is_volatile(disk):
        return
    if not disk.get("DISK_TYPE"):
        disk["DISK_TYPE"] = datastore_disk_type(datastore)
    if disk["TYPE"].upper() == "FS":
        # get_ds_driver: TM_MAD_CONF's DRIVER, else the system datastore's
        driver = tm_mad_conf.get("DRIVER") or datastore.get("DRIVER")
        if driver:
            disk["DRIVER"] = disk["FORMAT"] = driver
        elif disk.get("FORMAT"):
            disk["DRIVER"] = disk["FORMAT"]
        else:
            disk["DRIVER"] = disk["FORMAT"] = "raw"
    else:
        disk["DRIVER"] = disk["FORMAT"] = "raw"


def _is_q35(machine: str) -> bool:
    return "q35" in machine or "virt" in machine


def _target_suffix(index: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa (assign_disk_targets)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def assign_ids_and_targets(disks: Sequence[tuple[str, dict[str, str]]],
                           context: dict[str, str] | None = None, *,
                           vm_machine: str = "") -> None:
    """VirtualMachineDisks::get_images, in place: DISK_ID is the position, the
    context's the number of disks; a disk without TARGET gets the first free
    <prefix><a..> in this order: the first OS disk, then CD-ROMs and the context,
    then DATABLOCKs (volatile disks count as DATABLOCK, further OS disks too).
    Each item: (image type "OS", "DATABLOCK" or "CDROM", vm_disk result).
    vm_machine is the VM template's OS/MACHINE (not the vmm_exec_kvm.conf
    default): q35/virt give CD-ROMs the prefix sd, anything else hd."""
    is_q35 = _is_q35(vm_machine)
    cdrom_prefix = "sd" if is_q35 else "hd"
    used: set[str] = set()
    first_os: list[tuple[str, dict[str, str]]] = []
    cdroms: list[tuple[str, dict[str, str]]] = []
    datablocks: list[tuple[str, dict[str, str]]] = []

    def claim(target: str) -> None:
        if target in used:
            raise OnedError(f"Two disks have defined the same target {target}")
        used.add(target)

    hd_disks = 0
    for disk_id, (image_type, disk) in enumerate(disks):
        if image_type not in ("OS", "DATABLOCK", "CDROM"):
            raise ValueError(f"image type {image_type!r}: OS, DATABLOCK or CDROM")
        disk["DISK_ID"] = str(disk_id)
        prefix = disk.get("DEV_PREFIX", "")
        if disk.get("TARGET"):
            claim(disk["TARGET"])
        elif image_type == "OS" and not first_os:
            first_os.append((prefix, disk))
        elif image_type == "CDROM":
            prefix = prefix or cdrom_prefix
            cdroms.append((prefix, disk))
        else:
            datablocks.append((prefix, disk))
        hd_disks += prefix == "hd"
    if hd_disks > 4 and not is_q35:
        raise OnedError("Non q35 or virt VM has more than 4 hd disks")
    if context is not None:
        context["DISK_ID"] = str(len(disks))
        if context.get("TARGET"):
            claim(context["TARGET"])
        else:
            cdroms.append((context.get("DEV_PREFIX") or cdrom_prefix, context))
    for queue in (first_os, cdroms, datablocks):
        for prefix, disk in queue:
            index = 0
            while f"{prefix}{_target_suffix(index)}" in used:
                index += 1
            disk["TARGET"] = f"{prefix}{_target_suffix(index)}"
            used.add(disk["TARGET"])


# --- libvirt XML --------------------------------------------------------------------

def _disk_bus(kind: str, is_q35: bool, target: str, sd_bus: str) -> str:
    """get_disk_bus (x86_64): CD-ROMs sata on q35/virt else ide; sd* SD_DISK_BUS,
    vd* virtio, hd* like CD-ROMs."""
    if kind in _CDROM_KINDS or target[0] not in "sv":
        return "sata" if is_q35 else "ide"
    return sd_bus if target[0] == "s" else "virtio"


def render_disk(disk: Mapping[str, str], vm_dir: str, *, machine: str = VMM_MACHINE,
                sd_bus: str = "",
                vmm_disk: Mapping[str, str] = VMM_DISK_DEFAULTS) -> etree._Element:
    """The <disk> LibVirtDriverKVM writes for a DISK.  disk.N is <vm_dir>/disk.<DISK_ID>.
    machine: the effective OS/MACHINE (the VM's, else vmm_exec_kvm.conf's); sd_bus: OS
    SD_DISK_BUS (unset in the stock conf: no bus= for sd* disks); vmm_disk: the
    vmm_exec_kvm.conf DISK defaults for DRIVER, CACHE, IO, DISCARD.

    The element's type comes from the disk's TYPE (for a volatile disk: DISK_TYPE):
    BLOCK -> block disk; CDROM -> a cdrom, block only if DISK_TYPE is BLOCK, else
    file; anything else -> file disk.  <driver type> is raw for a CDROM, else the
    disk's DRIVER, else the default; cache= is always written: the disk's CACHE,
    else the default's, else 'default'."""
    kind, disk_type = disk.get("TYPE", ""), disk.get("DISK_TYPE", "")
    if kind == "FILESYSTEM":
        raise NotModelled("virtio-fs disks")
    target = disk.get("TARGET", "")
    if not target:
        raise OnedError("Wrong target value in DISK.")
    if is_volatile(disk):
        kind = disk_type
    path = f"{vm_dir}/disk.{disk['DISK_ID']}"
    if kind in ("BLOCK", "BLOCK_CDROM"):
        element = _disk_element("block", "cdrom" if kind == "BLOCK_CDROM" else "disk",
                                "dev", path)
    elif kind in _NETWORK_KINDS or disk_type == "RBD":
        raise NotModelled(f"network disks ({kind})")
    elif kind == "CDROM":
        as_block = disk_type == "BLOCK"
        element = _disk_element("block" if as_block else "file", "cdrom",
                                "dev" if as_block else "file", path)
    else:
        element = _disk_element("file", "disk", "file", path)
    _target(element, target, _disk_bus(kind, _is_q35(machine), target, sd_bus))
    if disk.get("ORDER", "").isdigit():
        etree.SubElement(element, "boot", order=disk["ORDER"])
    if disk.get("READONLY", "").upper() == "YES":
        etree.SubElement(element, "readonly")
    if disk.get("SHAREABLE") == "YES":
        etree.SubElement(element, "shareable")
    driver = etree.SubElement(element, "driver", name="qemu")
    driver.set("type", "raw" if kind == "CDROM"
               else disk.get("DRIVER") or vmm_disk.get("DRIVER") or "raw")
    driver.set("cache", disk.get("CACHE") or vmm_disk.get("CACHE") or "default")
    for attr in ("IO", "DISCARD"):
        value = disk.get(attr) or vmm_disk.get(attr)
        if value:
            driver.set(attr.lower(), value)
    return element


def context_disk_type(system_ds: Mapping[str, str]) -> str:
    """Datastore::context_disk_type: CONTEXT_DISK_TYPE if FILE or BLOCK, else FILE."""
    wanted = system_ds.get("CONTEXT_DISK_TYPE", "").upper()
    return wanted if wanted in ("FILE", "BLOCK") else "FILE"


def render_context(context: Mapping[str, str], vm_dir: str, system_ds: Mapping[str, str], *,
                   machine: str = VMM_MACHINE) -> etree._Element | None:
    """The context CD-ROM: file (or block, per the system datastore's
    CONTEXT_DISK_TYPE) <vm_dir>/disk.<DISK_ID>, read-only, raw, cache='none'.
    None without a TARGET (oned logs a warning and deploys without it)."""
    target = context.get("TARGET", "")
    if not target:
        return None
    as_block = context_disk_type(system_ds) == "BLOCK"
    element = _disk_element("block" if as_block else "file", "cdrom",
                            "dev" if as_block else "file",
                            f"{vm_dir}/disk.{context['DISK_ID']}")
    _target(element, target, _disk_bus("CDROM", _is_q35(machine), target, ""))
    etree.SubElement(element, "readonly")
    etree.SubElement(element, "driver", name="qemu", type="raw", cache="none")
    return element


def _disk_element(disk_type: str, device: str, source_attr: str, path: str) -> etree._Element:
    element = etree.Element("disk", type=disk_type, device=device)
    etree.SubElement(element, "source", {source_attr: path})
    return element


def _target(element: etree._Element, target: str, bus: str) -> None:
    node = etree.SubElement(element, "target", dev=target)
    if bus:
        node.set("bus", bus)


def domain_xml(name: str, memory_mib: int, disk_elements: Sequence[etree._Element], *,
               machine: str = VMM_MACHINE, domain_type: str = "qemu",
               arch: str = "x86_64") -> str:
    """A minimal domain for `virsh create` around rendered disks: name, memory,
    one vCPU, hvm on `machine`, the disks, and the virtio-scsi controller oned
    always adds (sd* disks without bus= land on it).  No OS, NIC, graphics or
    <emulator> (libvirt's default is used); type='qemu' for the software-emulated
    lab, where oned writes kvm."""
    domain = etree.Element("domain", type=domain_type)
    etree.SubElement(domain, "name").text = name
    etree.SubElement(domain, "memory", unit="KiB").text = str(memory_mib * 1024)
    etree.SubElement(domain, "vcpu").text = "1"
    os_element = etree.SubElement(domain, "os")
    etree.SubElement(os_element, "type", arch=arch, machine=machine).text = "hvm"
    devices = etree.SubElement(domain, "devices")
    devices.extend([copy.deepcopy(element) for element in disk_elements])
    etree.SubElement(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    return etree.tostring(domain, pretty_print=True, encoding="unicode")
