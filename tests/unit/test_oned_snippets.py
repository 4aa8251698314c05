"""etc-one/gfs2clvm/: the oned.conf snippets and datastore templates an admin pastes,
checked against what the driver's actions and its XML model expect."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from lxml import etree

from testkit import fakeoned as fo
from testkit import kvmdomain as kd
from testkit.kvmdomain import datastore_as_created
from testkit.onetemplate import (DRIVER, SNIPPETS, TemplateSyntaxError, conf, load, one,
                                 parse_template, shipped_datastores, template)
from one_gfs2clvm import config, install
from one_gfs2clvm.errors import InvalidArgument
from one_gfs2clvm.opennebula import datastore as ds_actions
from one_gfs2clvm.opennebula import tm as tm_actions
from one_gfs2clvm.opennebula.xml import parse_datastore
from one_gfs2clvm.streaming import check_restricted

REPO = Path(__file__).resolve().parents[2]
TM_DIR = REPO / "var-lib-one-remotes-tm-gfs2clvm"
DS_DIR = REPO / "var-lib-one-remotes-datastore-gfs2clvm"

# Every TM action oned (or the VMM driver) calls on a TM (reference 3.3) and the
# datastore actions of an image datastore with export (reference 3.4).
TM_ACTIONS = ("clone ln mkimage mkswap context mv mvds cpds delete premigrate postmigrate "
              "failmigrate resize snap_create snap_delete snap_revert monitor").split()
DS_ACTIONS = "cp mkfs rm stat clone monitor export snap_delete snap_revert snap_flatten".split()

TEMPLATES = ("datastore-system.tmpl", "datastore-image.tmpl", "datastore-iso.tmpl")
IMAGE_TEMPLATES = ("datastore-image.tmpl", "datastore-iso.tmpl")


def mad_lists(arguments: str) -> dict[str, list[str]]:
    """-d / -s driver lists of a one_tm / one_datastore ARGUMENTS string."""
    words = arguments.split()
    lists = {}
    for flag, value in zip(words, words[1:]):
        if flag in ("-d", "-s"):
            lists[flag] = [item.strip() for item in value.split(",")]
    return lists


# --- the reader itself --------------------------------------------------------------

def test_reader_handles_vectors_comments_and_quotes():
    text = ('# comment = "x"\nA = "one # not a comment" # trailing\nb=bare\n'
            'V = [\n  n = "x", # inside\n  M = "a \\"q\\"",\n  K = y ]\nV = [ N = "z" ]\n')
    assert parse_template(text) == [
        ("A", "one # not a comment"), ("B", "bare"),
        ("V", {"N": "x", "M": 'a "q"', "K": "y"}), ("V", {"N": "z"})]
    for bad in ('A = "open', "A = [ B = \"x\"", "A B", "= \"x\"", 'A = [ B = "x" C = "y" ]',
                'A = [ B = "x", B = "y" ]'):
        with pytest.raises(TemplateSyntaxError):
            parse_template(bad)


@pytest.mark.parametrize("name", ["oned.conf", "oned-3.x.conf", *TEMPLATES])
def test_every_snippet_parses(name):
    assert load(name), f"{name} holds no attribute"


# --- oned.conf (6.10 - 7.4) ----------------------------------------------------------

def test_driver_name_is_the_remotes_folder_name():
    assert install.FOLDERS[f"var-lib-one-remotes-tm-{DRIVER}"] == \
        f"/var/lib/one/remotes/tm/{DRIVER}"
    assert install.FOLDERS[f"var-lib-one-remotes-datastore-{DRIVER}"] == \
        f"/var/lib/one/remotes/datastore/{DRIVER}"
    attrs = load("oned.conf")
    assert conf(attrs, "TM_MAD_CONF")["NAME"] == TM_DIR.name.rsplit("-", 1)[1]
    assert conf(attrs, "DS_MAD_CONF")["NAME"] == DS_DIR.name.rsplit("-", 1)[1]
    for name in TEMPLATES:
        tmpl = template(name)
        assert tmpl["TM_MAD"] == DRIVER, name
        if tmpl["TYPE"] != "SYSTEM_DS":
            assert tmpl["DS_MAD"] == DRIVER, name


def test_driver_lists_name_the_driver():
    attrs = load("oned.conf")
    tm_mad, ds_mad = one(attrs, "TM_MAD"), one(attrs, "DATASTORE_MAD")
    assert tm_mad["EXECUTABLE"] == "one_tm"
    assert ds_mad["EXECUTABLE"] == "one_datastore"
    assert DRIVER in mad_lists(tm_mad["ARGUMENTS"]).get("-d", []), \
        "one_tm answers 'not available' for a TM missing from its -d list"
    lists = mad_lists(ds_mad["ARGUMENTS"])
    assert DRIVER in lists.get("-d", []), "one_datastore runs only DS_MADs in -d"
    assert DRIVER in lists.get("-s", []), \
        "the system datastore is monitored by remotes/tm/gfs2clvm/monitor, run only for -s TMs"
    assert (TM_DIR / "monitor").is_file()


def test_tm_mad_conf_values_the_driver_relies_on():
    tm = conf(load("oned.conf"), "TM_MAD_CONF")
    # oned copies a TM_MAD_CONF DISK_TYPE into every image datastore of the TM, over the
    # template's, and VM disks inherit it: BLOCK would make the .isox CD-ROMs block devices
    assert "DISK_TYPE" not in tm, \
        "DISK_TYPE belongs in the datastore templates (BLOCK for LVs, FILE for .isox files)"
    why = {
        "LN_TARGET": ("NONE", "ln hands the VM the image LV itself (no copy)"),
        "CLONE_TARGET": ("SELF", "clone makes the copy as an LV in the image datastore's VG"),
        "SHARED": ("YES", "all hosts see the VG and the GFS2 VM dirs; monitored centrally"),
        "DS_MIGRATE": ("NO", "mv never copies LVs between VGs"),
        "DS_LIVE_MIGRATE": ("NO", "mv never copies LVs between VGs"),
        "DS_MIGRATE_SNAP": ("NO", "mv never copies LVs between VGs"),
        "DRIVER": ("raw", "LVs hold raw data: mkfs images and volatile fs disks take it"),
        "ALLOW_ORPHANS": ("YES", "snapshots are independent full-copy LVs"),
    }
    for key, (want, reason) in why.items():
        assert tm.get(key, "").upper() == want.upper(), \
            f"TM_MAD_CONF {key} must be {want}: {reason}"


def test_ds_mad_conf():
    ds = conf(load("oned.conf"), "DS_MAD_CONF")
    assert ds["PERSISTENT_ONLY"].upper() == "NO"
    assert [a.strip() for a in ds["REQUIRED_ATTRS"].split(",")] == ["BRIDGE_LIST"]
    actions = [a.strip() for a in ds["MARKETPLACE_ACTIONS"].split(",") if a.strip()]
    assert actions, "MARKETPLACE_ACTIONS is empty"
    for action in actions:
        assert _executable(DS_DIR / action), \
            f"MARKETPLACE_ACTIONS names {action}, but {DS_DIR.name}/{action} does not exist"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK) and path.read_bytes().startswith(b"#!")


def _shim_action(path: Path) -> str | None:
    """The action name a Python shim passes to main()."""
    match = re.search(r'\bmain\(\s*"([a-z_]+)"', path.read_text())
    return match.group(1) if match else None


@pytest.mark.parametrize("action", TM_ACTIONS)
def test_every_tm_action_exists(action):
    path = TM_DIR / action
    assert _executable(path), f"oned calls tm/{DRIVER}/{action}: missing or not executable"
    assert _shim_action(path) == action, f"{path.name} dispatches to {_shim_action(path)!r}"
    assert action in tm_actions.ACTIONS, f"tm.main does not know {action!r}"


@pytest.mark.parametrize("action", DS_ACTIONS)
def test_every_datastore_action_exists(action):
    path = DS_DIR / action
    assert _executable(path), f"oned calls datastore/{DRIVER}/{action}: missing or not executable"
    assert _shim_action(path) == action, f"{path.name} dispatches to {_shim_action(path)!r}"
    assert action in ds_actions.ACTIONS, \
        f"datastore.main answers 'not implemented yet' for {action!r}"


# --- datastore templates --------------------------------------------------------------

DS_TYPES = {"IMAGE_DS": 0, "SYSTEM_DS": 1, "FILE_DS": 2}
# what every disk of a datastore gets: LVs are block devices, .isox files are files
STORED_DISK_TYPE = {"datastore-system.tmpl": "BLOCK", "datastore-image.tmpl": "BLOCK",
                    "datastore-iso.tmpl": "FILE"}


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_through_the_driver_xml_model(name):
    tmpl = template(name)
    attrs = load("oned.conf")
    stored = datastore_as_created(tmpl, conf(attrs, "TM_MAD_CONF"), conf(attrs, "DS_MAD_CONF"))
    ds_type = DS_TYPES[tmpl["TYPE"]]
    values = {"BRIDGE_LIST": None, "VG_NAME": None, "ALLOW_ORPHANS": None,
              "DISK_TYPE": None, "SHARED": None, **stored}
    doc = fo.datastore_doc(
        100 + TEMPLATES.index(name), name=tmpl["NAME"], type=ds_type,
        ds_mad=tmpl.get("DS_MAD", "-"), tm_mad=tmpl["TM_MAD"],
        disk_type=kd.DISK_TYPE_IDS[kd.datastore_disk_type(stored)], template=values)
    fo.validate(doc)
    ds = parse_datastore(doc)

    assert ds.tm_mad == DRIVER
    assert ds.type == ds_type
    assert stored["DISK_TYPE"] == STORED_DISK_TYPE[name], \
        "disk.N links to an LV (BLOCK) or, for an .isox CD-ROM, to a file (FILE)"
    assert ds.ds_mad == ("-" if ds_type == 1 else DRIVER)
    assert ds.name == tmpl["NAME"]
    assert ds.bridge_list == tmpl["BRIDGE_LIST"].split()
    assert len(ds.bridge_list) >= 2, "one bridge host is a single point of failure"
    assert ds.vg_name == tmpl["VG_NAME"]
    # what the TM actions make of this datastore with the shipped gfs2clvm.conf
    cfg = config.load(str(REPO / "etc-one" / "gfs2clvm.conf"))
    assert tmpl["VG_NAME"] in cfg.volume_groups
    action = SimpleNamespace(config=cfg, api=SimpleNamespace(
        datastore=lambda ds_id: ds if ds_id == ds.id else pytest.fail(f"asked for {ds_id}")))
    assert tm_actions.datastore_vg(action, ds.id) == tmpl["VG_NAME"]
    assert tm_actions.bridges(action, ds.id) == tmpl["BRIDGE_LIST"].split()


@pytest.mark.parametrize("name", IMAGE_TEMPLATES)
def test_required_attrs_are_set(name):
    tmpl = template(name)
    ds = conf(load("oned.conf"), "DS_MAD_CONF")
    for attr in (a.strip().upper() for a in ds["REQUIRED_ATTRS"].split(",")):
        assert tmpl.get(attr, "").strip(), f"{name}: oned refuses the datastore without {attr}"


def test_system_template():
    tmpl = template("datastore-system.tmpl")
    assert tmpl["TYPE"] == "SYSTEM_DS"
    assert "DS_MAD" not in tmpl, "oned refuses a SYSTEM_DS with a DS_MAD"
    # oned gives a volatile disk the system datastore's DISK_TYPE; mkimage/mkswap make LVs
    assert tmpl.get("DISK_TYPE") == "BLOCK"


# Files oneadmin can read that no user may register as an image (management node:
# oneadmin's home, oned's config; GFS2: the VM directories with their context ISOs).
SECRETS = ["/var/lib/one/.one/one_auth", "/var/lib/one/.ssh/id_rsa", "/etc/one/oned.conf",
           "/etc/one/gfs2clvm.conf", "/etc/shadow", "/var/lib/one/datastores/0/7/disk.2",
           "/var/lib/one/vms/7/context.sh", "/var/lib/one/isosX/a.isox", "/var/tmpx/a.img"]
ALLOWED = {"datastore-image.tmpl": ["/var/tmp/upload-1234.qcow2"],
           "datastore-iso.tmpl": ["/var/tmp/upload-1234.isox", "/var/lib/one/isos/debian.isox"]}


@pytest.mark.parametrize("name", IMAGE_TEMPLATES)
def test_image_templates(name):
    tmpl = template(name)
    tm_conf = conf(load("oned.conf"), "TM_MAD_CONF")
    assert tmpl["TYPE"] == "IMAGE_DS"
    # the template sets DISK_TYPE, and it must survive creation: a non-empty TM_MAD_CONF
    # DISK_TYPE replaces an image datastore's (Datastore::set_tm_mad)
    assert tmpl.get("DISK_TYPE") == STORED_DISK_TYPE[name]
    assert datastore_as_created(tmpl, tm_conf)["DISK_TYPE"] == tmpl["DISK_TYPE"]
    restricted, safe = tmpl["RESTRICTED_DIRS"].split(), tmpl["SAFE_DIRS"].split()
    assert restricted == ["/"], "cp must refuse every path not under SAFE_DIRS"
    assert safe and all(os.path.isabs(d) for d in safe)
    # the driver's own rule (cp and stat apply it to resolved paths, local and on GFS2)
    for secret in SECRETS:
        with pytest.raises(InvalidArgument, match="RESTRICTED_DIRS"):
            check_restricted(secret, restricted, safe)
    for allowed in ALLOWED[name]:
        check_restricted(allowed, restricted, safe)


# --- what libvirt gets for each kind of disk ------------------------------------------

VM_DIR = kd.vm_dir(0, 42)


def _deployed_disks() -> dict[str, etree._Element]:
    """Every kind of disk the driver links, as OpenNebula's KVM driver would hand it to
    libvirt: the shipped oned.conf snippet and datastore templates through the stand-in
    of oned (testkit/kvmdomain.py), one VM using them all."""
    tm_conf, image_ds, iso_ds, system_ds = shipped_datastores()

    def image_disk(image_id: int, tmpl: dict[str, str], datastore, source: str):
        image = kd.image_as_registered(tmpl, datastore, source=source)
        return kd.vm_disk({"IMAGE_ID": str(image_id)}, datastore, image=image)

    iso = "/var/lib/one/isos/debian.isox"
    disks = {
        "OS image": ("OS", image_disk(5, {"PATH": "/var/tmp/debian.qcow2"}, image_ds,
                                      "vg_one/lv-oneimg-5")),
        "persistent image": ("DATABLOCK", image_disk(
            6, {"TYPE": "DATABLOCK", "PERSISTENT": "YES", "PATH": "/var/tmp/data.raw"},
            image_ds, "vg_one/lv-oneimg-6")),
        "read-only datablock": ("DATABLOCK", image_disk(     # made by mkfs
            7, {"TYPE": "DATABLOCK", "SIZE": "1024", "READONLY": "YES"}, image_ds,
            "vg_one/lv-oneimg-7")),
        "volatile fs": ("DATABLOCK", kd.vm_disk({"TYPE": "fs", "SIZE": "512"}, system_ds,
                                                tm_mad_conf=tm_conf)),
        "volatile swap": ("DATABLOCK", kd.vm_disk({"TYPE": "swap", "SIZE": "512"}, system_ds,
                                                  tm_mad_conf=tm_conf)),
        ".isox CD-ROM": ("CDROM", image_disk(9, {"TYPE": "CDROM", "PATH": iso}, iso_ds, iso)),
    }
    context: dict[str, str] = {}
    kd.assign_ids_and_targets(list(disks.values()), context)
    rendered = {kind: kd.render_disk(disk, VM_DIR) for kind, (_, disk) in disks.items()}
    rendered["context CD-ROM"] = kd.render_context(context, VM_DIR, system_ds)
    return rendered


# kind: disk id, libvirt disk type and device, source attribute, read-only
RENDERED = {
    "OS image": (0, "block", "disk", "dev", False),
    "persistent image": (1, "block", "disk", "dev", False),
    "read-only datablock": (2, "block", "disk", "dev", True),
    "volatile fs": (3, "block", "disk", "dev", False),
    "volatile swap": (4, "block", "disk", "dev", False),
    ".isox CD-ROM": (5, "file", "cdrom", "file", True),
    "context CD-ROM": (6, "file", "cdrom", "file", True),
}


@pytest.mark.parametrize("kind", RENDERED)
def test_rendered_disks_per_kind(kind):
    disk_id, disk_type, device, source_attr, readonly = RENDERED[kind]
    element = _deployed_disks()[kind]
    shown = etree.tostring(element, encoding="unicode")
    # disk.N links to an LV (a block device) or to a file (.isox, the context ISO)
    assert (element.get("type"), element.get("device")) == (disk_type, device), shown
    assert element.find("source").attrib == {source_attr: f"{VM_DIR}/disk.{disk_id}"}, shown
    assert element.find("driver").get("type") == "raw", shown
    assert (element.find("readonly") is not None) == readonly, shown


# --- oned.conf (3.x layout) ----------------------------------------------------------

def test_3x_snippet_names_files_that_exist():
    attrs = load("oned-3.x.conf")
    tm = one(attrs, "TM_MAD")
    assert tm["EXECUTABLE"] == "one_tm"
    conf_rel = tm["ARGUMENTS"]               # relative to /etc/one/
    conf_path = REPO / "etc-one" / conf_rel
    assert conf_path.is_file(), f"TM_MAD arguments name etc-one/{conf_rel}, which is missing"
    assert tm["NAME"] == conf_path.parent.name == conf_path.stem
    # one_tm exports the rc beside the conf
    assert (conf_path.parent / f"{conf_path.stem}rc").is_file()
    # every command of the map is an executable under usr-lib-one-tm_commands/
    commands = {}
    for line in conf_path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            command, _, script = (part.strip() for part in line.partition("="))
            commands[command.upper()] = script
    assert set(commands) == {"CLONE", "LN", "MKSWAP", "MKIMAGE", "DELETE", "MV", "CONTEXT"}
    for command, script in commands.items():
        assert not script.startswith("/")
        assert _executable(REPO / "usr-lib-one-tm_commands" / script), f"{command} -> {script}"

    image = one(attrs, "IMAGE_MAD")
    assert image["EXECUTABLE"] == "one_image"
    words = image["ARGUMENTS"].split()
    assert words[0] == "fs"
    # the driver's image remotes are installed over remotes/image/<that name>
    # (name only: the folder's scripts are still being written)
    assert install.FOLDERS[f"var-lib-one-remotes-image-{words[0]}"] == \
        f"/var/lib/one/remotes/image/{words[0]}"


# --- installation ---------------------------------------------------------------------

def test_snippets_are_installed_on_the_frontend_only(tmp_path):
    names = {"oned.conf", "oned-3.x.conf", *TEMPLATES}
    assert {p.name for p in SNIPPETS.iterdir() if p.is_file()} == names
    for layout in ("modern", "3.x"):
        targets = {str(s.target) for s in install.plan(tmp_path, role="frontend", layout=layout)}
        assert {f"/etc/one/gfs2clvm/{n}" for n in names} <= targets, layout
        steps = [s for s in install.plan(tmp_path, role="frontend", layout=layout)
                 if str(s.target).startswith("/etc/one/gfs2clvm/")]
        assert all(s.how == "config" and s.mode == 0o644 for s in steps)
    node = {str(s.target) for s in install.plan(tmp_path, role="node", layout="all")}
    assert not any(t.startswith("/etc/one/gfs2clvm/") for t in node)
