"""`one-gfs2clvm install`: file sets per role/layout, modes, shebangs, kept configs."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from one_gfs2clvm import install as inst
from one_gfs2clvm.cli import main

REPO = Path(__file__).resolve().parents[2]
PY = "/opt/one-venv/bin/python3"

TM_ACTIONS = ("clone ln mkimage mkswap context mv mvds cpds delete premigrate postmigrate "
              "failmigrate resize snap_create snap_delete snap_revert monitor").split()
TM3_COMMANDS = "clone ln mkswap mkimage mv delete context".split()

MODERN_TM = {f"/var/lib/one/remotes/tm/gfs2clvm/{a}" for a in TM_ACTIONS + ["activate"]}
LEGACY_TM = {f"/usr/lib/one/tm_commands/gfs2clvm/tm_{c}.sh" for c in TM3_COMMANDS}
LEGACY_ETC = {"/etc/one/tm_gfs2clvm/tm_gfs2clvm.conf", "/etc/one/tm_gfs2clvm/tm_gfs2clvmrc"}
CONF = {"/etc/one/gfs2clvm.conf"}
NODE = {"/etc/sudoers.d/one-gfs2clvm", "/etc/udev/rules.d/99-one-gfs2clvm.rules",
        "/etc/cron.d/one-gfs2clvm", "/usr/sbin/one-gfs2clvm-helper",
        "/etc/polkit-1/localauthority/50-local.d/50-one-gfs2clvm-libvirt.pkla",
        "/etc/polkit-1/rules.d/50-one-gfs2clvm-libvirt.rules"}
# set in the node's existing qemu.conf; skipped where libvirt is not installed
QEMU_CONF = "/etc/libvirt/qemu.conf"


def shipped(folder: str, system_path: str) -> set[str]:
    """Whatever the (maybe not yet existing) folder holds, at its system path."""
    base = REPO / folder
    if not base.is_dir():
        return set()
    return {f"{system_path}/{p.relative_to(base).as_posix()}" for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


FRONTEND_BOTH = shipped("etc-one", "/etc/one") - LEGACY_ETC
# datastore remotes exist from 3.4 on; remotes/image/fs is the 3.2 image manager
MODERN_DS = shipped("var-lib-one-remotes-datastore-gfs2clvm", "/var/lib/one/remotes/datastore/gfs2clvm")
LEGACY_IMAGE = shipped("var-lib-one-remotes-image-fs", "/var/lib/one/remotes/image/fs")


def expected(role: str, layout: str) -> set[str]:
    files: set[str] = set()
    if role in ("frontend", "all"):
        files |= FRONTEND_BOTH
        if layout in ("modern", "all"):
            files |= MODERN_TM | MODERN_DS
        if layout in ("3.x", "all"):
            files |= LEGACY_TM | LEGACY_ETC | LEGACY_IMAGE
    if role in ("node", "all"):
        files |= NODE | CONF
    return files


def installed(root: Path) -> set[str]:
    return {"/" + p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def lines():
    out: list[str] = []
    return out


ROLES = ["frontend", "node", "all"]
LAYOUTS = ["modern", "3.x", "all"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_file_set_per_role_and_layout(tmp_path, role, layout, lines):
    steps = inst.install(tmp_path, role=role, layout=layout, python=PY, echo=lines.append)
    want = expected(role, layout)
    node = role in ("node", "all")
    assert installed(tmp_path) == want
    assert {str(s.target) for s in steps} == want | ({QEMU_CONF} if node else set())
    assert [line for line in lines if QEMU_CONF not in line] == \
        [f"installed {tmp_path}{s.target}" for s in steps if str(s.target) != QEMU_CONF]
    assert [line for line in lines if QEMU_CONF in line] == ([
        f"skipped {tmp_path}{QEMU_CONF} (not there: install that software first, then run "
        f"install again)"] if node else [])


def test_modes_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        inst.install(tmp_path, python=PY)
    finally:
        os.umask(old)
    for path in tmp_path.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        system = "/" + path.relative_to(tmp_path).as_posix()
        if path.is_dir():
            want = 0o755
        elif system in MODERN_TM | LEGACY_TM or system == "/usr/sbin/one-gfs2clvm-helper":
            want = 0o755
        elif system == "/etc/sudoers.d/one-gfs2clvm":
            want = 0o440
        elif system.startswith(("/etc/one/", "/etc/udev/", "/etc/cron.d/", "/etc/polkit-1/")):
            want = 0o644
        elif system.startswith("/var/lib/one/remotes/"):
            want = 0o755 if path.read_bytes().startswith(b"#!") else 0o644
        else:
            raise AssertionError(f"unexpected file {system}")
        assert mode == want, f"{system}: {oct(mode)} != {oct(want)}"
    assert not list(tmp_path.rglob(".*.tmp")), "temporary files left behind"


def test_python_shims_get_the_installing_interpreter(tmp_path):
    inst.install(tmp_path, python=PY)
    for action in TM_ACTIONS:
        source = (REPO / "var-lib-one-remotes-tm-gfs2clvm" / action).read_text()
        target = (tmp_path / f"var/lib/one/remotes/tm/gfs2clvm/{action}").read_text()
        assert target == f"#!{PY}\n" + source.split("\n", 1)[1]
    for command in TM3_COMMANDS:
        target = (tmp_path / f"usr/lib/one/tm_commands/gfs2clvm/tm_{command}.sh").read_text()
        assert target.startswith(f"#!{PY}\n") and "one_gfs2clvm.opennebula.tm3" in target
    # the sh script and the node helper keep theirs: they run without the package
    assert (tmp_path / "var/lib/one/remotes/tm/gfs2clvm/activate").read_bytes() == \
        (REPO / "var-lib-one-remotes-tm-gfs2clvm/activate").read_bytes()
    assert (tmp_path / "usr/sbin/one-gfs2clvm-helper").read_bytes() == \
        (REPO / "one_gfs2clvm/nodehelper.py").read_bytes()


SYSTEM_PYTHON = "/usr/bin/python3"


def test_installed_helper_runs_the_system_python_isolated(tmp_path):
    inst.install(tmp_path, role="node", python=PY)
    helper = tmp_path / "usr/sbin/one-gfs2clvm-helper"
    assert helper.read_bytes().split(b"\n", 1)[0] == b"#!/usr/bin/python3 -IS"


@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="no /usr/bin/python3")
def test_installed_helper_ignores_pythonpath_and_user_site(tmp_path):
    """Code planted through the environment or $HOME never runs in the helper."""
    inst.install(tmp_path / "root", role="node", python=PY)
    helper = tmp_path / "root/usr/sbin/one-gfs2clvm-helper"
    home, planted = tmp_path / "home", tmp_path / "planted"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(planted)}
    user_site = subprocess.run([SYSTEM_PYTHON, "-c", "import site; print(site.getusersitepackages())"],
                               env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert user_site.startswith(str(home))
    os.makedirs(user_site)
    os.makedirs(planted)
    ran = tmp_path / "ran"
    (Path(user_site) / "evil.pth").write_text(f"import os; os.mkdir({str(ran / 'pth')!r})\n")
    (planted / "sitecustomize.py").write_text(f"import os; os.mkdir({str(ran / 'path')!r})\n")
    ran.mkdir()
    # the planting works for a plain interpreter ...
    subprocess.run([SYSTEM_PYTHON, "-c", "pass"], env=env, check=True)
    assert sorted(p.name for p in ran.iterdir()) == ["path", "pth"]
    for p in ran.iterdir():
        p.rmdir()
    # ... and not for the helper, whatever it answers (refused: no verb / not root)
    result = subprocess.run([str(helper)], env=env, capture_output=True, text=True)
    assert result.returncode == 64 and len(result.stderr.splitlines()) == 1, result
    assert list(ran.iterdir()) == []


def test_default_interpreter_is_the_running_one(tmp_path):
    inst.install(tmp_path, role="frontend", layout="modern")
    first = (tmp_path / "var/lib/one/remotes/tm/gfs2clvm/clone").read_text().split("\n")[0]
    assert first == f"#!{sys.executable}"


@pytest.mark.parametrize("python", ["python3", "/opt/my venv/bin/python", "/" + "x" * 130])
def test_interpreters_that_cannot_go_on_a_shebang_line(tmp_path, python):
    with pytest.raises(inst.InstallError):
        inst.install(tmp_path, python=python)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("role", ["frontend", "node", "all"])
def test_existing_config_is_kept_and_the_new_one_written_beside(tmp_path, role, lines):
    conf = tmp_path / "etc/one/gfs2clvm.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("# the admin's\n[storage]\nvolume_groups = vg_san\n")
    conf.chmod(0o600)
    inst.install(tmp_path, role=role, layout="all", python=PY, echo=lines.append)
    assert conf.read_text() == "# the admin's\n[storage]\nvolume_groups = vg_san\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    new = conf.with_name("gfs2clvm.conf.new")
    assert new.read_bytes() == (REPO / "etc-one/gfs2clvm.conf").read_bytes()
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    assert f"kept {conf} (new version in .new)" in lines


def test_every_etc_one_file_is_kept_and_identical_ones_left_alone(tmp_path, lines):
    inst.install(tmp_path, python=PY)
    rc = tmp_path / "etc/one/tm_gfs2clvm/tm_gfs2clvmrc"
    rc.write_text("ONE_GFS2CLVM_CONF=/srv/gfs2clvm.conf\n")
    shim = tmp_path / "var/lib/one/remotes/tm/gfs2clvm/clone"
    shim.write_text("stale\n")
    inst.install(tmp_path, python=PY, echo=lines.append)
    assert rc.read_text() == "ONE_GFS2CLVM_CONF=/srv/gfs2clvm.conf\n"
    assert f"kept {rc} (new version in .new)" in lines
    assert f"unchanged {tmp_path}/etc/one/gfs2clvm.conf" in lines
    assert not (tmp_path / "etc/one/gfs2clvm.conf.new").exists()
    # files outside /etc/one are replaced
    assert shim.read_text().startswith(f"#!{PY}\n")
    assert f"installed {shim}" in lines


def test_dry_run_writes_nothing(tmp_path, lines):
    root = tmp_path / "root"
    steps = inst.install(root, python=PY, dry_run=True, echo=lines.append)
    assert not root.exists()
    assert {str(s.target) for s in steps} == expected("all", "all") | {QEMU_CONF}
    assert all(line.startswith("would install ") for line in lines if QEMU_CONF not in line)
    conf = root / "etc/one/gfs2clvm.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("mine\n")
    lines.clear()
    inst.install(root, python=PY, dry_run=True, echo=lines.append)
    assert installed(root) == {"/etc/one/gfs2clvm.conf"}
    assert f"would keep {conf} (new version in .new)" in lines


def test_root_ownership_only_for_node_files_in_the_real_root():
    steps = inst.plan("/", role="all", layout="all", euid=0)
    owned = {str(s.target) for s in steps if s.chown_root}
    assert owned == NODE | CONF | {QEMU_CONF}
    assert not any(s.chown_root for s in inst.plan("/", role="frontend", euid=0))
    assert not any(s.chown_root for s in inst.plan("/", role="all", euid=1000))
    assert not any(s.chown_root for s in inst.plan("/tmp/staging", role="all", euid=0))


def test_source_lookup_payload_and_missing_folders(tmp_path):
    assert inst.find_source() == REPO
    payload = tmp_path / "_payload"
    for folder in ("etc-one", "var-lib-one-remotes-tm-gfs2clvm"):   # others missing
        shutil.copytree(REPO / folder, payload / folder)
    (payload / "var-lib-one-remotes-tm-gfs2clvm" / "__pycache__").mkdir()
    (payload / "var-lib-one-remotes-tm-gfs2clvm" / "__pycache__" / "x.pyc").write_bytes(b"")
    (payload / "var-lib-one-remotes-tm-gfs2clvm" / ".clone.swp").write_bytes(b"")
    root = tmp_path / "root"
    inst.install(root, role="all", layout="all", python=PY, source=payload)
    assert installed(root) == (MODERN_TM | LEGACY_ETC | (FRONTEND_BOTH & shipped("etc-one", "/etc/one"))
                               | CONF | {"/usr/sbin/one-gfs2clvm-helper"})
    with pytest.raises(inst.InstallError, match="driver files not found"):
        inst.find_source(tmp_path / "nothing-here")


def test_unknown_role_or_layout(tmp_path):
    with pytest.raises(inst.InstallError):
        inst.plan(tmp_path, role="worker")
    with pytest.raises(inst.InstallError):
        inst.plan(tmp_path, layout="4.x")


def test_every_path_has_a_rule_and_the_table_covers_the_checkout():
    for folder in inst.FOLDERS:
        base = REPO / folder
        for path in (base.rglob("*") if base.is_dir() else []):
            if path.is_file():
                assert inst._rule_for(path.relative_to(REPO).as_posix()), path
    mapping_dirs = {p.name for p in REPO.iterdir()
                    if p.is_dir() and p.name.startswith(("etc-", "usr-", "var-"))}
    assert mapping_dirs <= set(inst.FOLDERS)


def test_shims_in_the_checkout():
    for action in TM_ACTIONS:
        path = REPO / "var-lib-one-remotes-tm-gfs2clvm" / action
        text = path.read_text()
        assert os.access(path, os.X_OK)
        assert text.startswith("#!/usr/bin/env python3\n")
        assert "from one_gfs2clvm.opennebula.tm import main\n" in text
        assert text.endswith(f'sys.exit(main("{action}", sys.argv[1:]))\n')
        compile(text, str(path), "exec")
    for command in TM3_COMMANDS:
        path = REPO / "usr-lib-one-tm_commands" / "gfs2clvm" / f"tm_{command}.sh"
        text = path.read_text()
        assert os.access(path, os.X_OK)
        assert "from one_gfs2clvm.opennebula.tm3 import main\n" in text
        assert text.endswith(f'sys.exit(main("{command}", sys.argv[1:]))\n')
        compile(text, str(path), "exec")
    activate = REPO / "var-lib-one-remotes-tm-gfs2clvm" / "activate"
    assert os.access(activate, os.X_OK)
    assert activate.read_text().startswith("#!/bin/sh\n")
    assert 'exec sudo -n /usr/sbin/one-gfs2clvm-helper boot-activate "$@"\n' in \
        activate.read_text()


def test_cli_install(tmp_path):
    result = CliRunner().invoke(main, ["install", "--root", str(tmp_path), "--layout", "modern",
                                       "--role", "frontend", "--python", PY])
    assert result.exit_code == 0, result.output
    assert f"installed {tmp_path}/var/lib/one/remotes/tm/gfs2clvm/clone\n" in result.output
    assert installed(tmp_path) == expected("frontend", "modern")
    dry = CliRunner().invoke(main, ["install", "--root", str(tmp_path / "x"), "--dry-run"])
    assert dry.exit_code == 0 and not (tmp_path / "x").exists()
    assert CliRunner().invoke(main, ["install", "--root", str(tmp_path),
                                     "--role", "worker"]).exit_code == 2
    assert CliRunner().invoke(main, ["install"]).exit_code == 2        # --root is required
    bad = CliRunner().invoke(main, ["install", "--root", str(tmp_path), "--python", "python3"])
    assert bad.exit_code == 1 and "not an absolute path" in bad.output


# --- libvirt's qemu.conf: settings set in place -------------------------------------

# The shape of Debian 12's /etc/libvirt/qemu.conf around our keys: prose with
# indented examples, then `#key = default` lines.
DEBIAN_QEMU_CONF = """\
# Master configuration file for the QEMU driver.
#vnc_listen = "0.0.0.0"
# Some examples of valid values are:
#
#       user = "qemu"   # A user named "qemu"
#       user = "+0"     # Super user (uid=0)
#
#user = "libvirt-qemu"
#group = "libvirt-qemu"

# Whether libvirt should dynamically change file ownership
#dynamic_ownership = 1
security_driver = "none"
"""


def shipped_settings() -> dict[str, str]:
    return inst.wanted_settings((REPO / "etc-libvirt" / "qemu.conf").read_text())


def test_shipped_qemu_settings():
    assert shipped_settings() == {"user": 'user = "oneadmin"', "group": 'group = "oneadmin"',
                                  "dynamic_ownership": "dynamic_ownership = 0"}


def test_settings_go_after_their_commented_defaults_and_nothing_else_changes():
    merged = inst.merge_settings(DEBIAN_QEMU_CONF, shipped_settings())
    assert merged == DEBIAN_QEMU_CONF.replace(
        '#user = "libvirt-qemu"\n', '#user = "libvirt-qemu"\nuser = "oneadmin"\n').replace(
        '#group = "libvirt-qemu"\n', '#group = "libvirt-qemu"\ngroup = "oneadmin"\n').replace(
        "#dynamic_ownership = 1\n", "#dynamic_ownership = 1\ndynamic_ownership = 0\n")
    assert inst.merge_settings(merged, shipped_settings()) == merged       # idempotent


def test_an_admins_active_setting_is_replaced_once_and_duplicates_dropped():
    current = 'user = "root"\nvnc_listen = "::"\n  user="qemu"\ngroup = "kvm"'
    merged = inst.merge_settings(current, shipped_settings())
    assert merged == ('user = "oneadmin"\nvnc_listen = "::"\ngroup = "oneadmin"\n'
                      "# set by one-gfs2clvm install (etc-libvirt/)\ndynamic_ownership = 0\n")


def test_qemu_conf_is_updated_in_place_keeping_mode_and_owner(tmp_path, lines):
    conf = tmp_path / "etc/libvirt/qemu.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(DEBIAN_QEMU_CONF)
    conf.chmod(0o600)
    dry = inst.install(tmp_path, role="node", python=PY, dry_run=True, echo=lines.append)
    assert f"would update {conf} (set user, group, dynamic_ownership)" in lines
    assert conf.read_text() == DEBIAN_QEMU_CONF and len(dry) > 1
    lines.clear()
    inst.install(tmp_path, role="node", python=PY, echo=lines.append)
    assert f"updated {conf} (set user, group, dynamic_ownership)" in lines
    assert conf.read_text() == inst.merge_settings(DEBIAN_QEMU_CONF, shipped_settings())
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert (conf.stat().st_uid, conf.stat().st_gid) == (os.geteuid(), os.getegid())
    lines.clear()
    inst.install(tmp_path, role="node", python=PY, echo=lines.append)
    assert f"unchanged {conf}" in lines


def test_cli_install_says_to_restart_libvirtd_when_qemu_conf_changed(tmp_path):
    conf = tmp_path / "etc/libvirt/qemu.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(DEBIAN_QEMU_CONF)
    args = ["install", "--root", str(tmp_path), "--role", "node", "--python", PY]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert first.output.endswith("restart libvirtd for the qemu.conf settings to take effect "
                                 "(running VMs keep running)\n")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "restart libvirtd" not in again.output
