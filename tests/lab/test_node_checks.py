"""The driver's own validation of a worker (`one-gfs2clvm check-node`), on real guests."""

from __future__ import annotations

import subprocess
import sys

from one_gfs2clvm.checks import check_node


def test_all_lab_nodes_pass(lab, driver_config):
    for node in lab.node_names:
        assert check_node(driver_config, node) == []


def test_a_wider_sudo_rule_is_reported(lab, driver_config):
    node = lab.node_names[-1]
    extra = "/etc/sudoers.d/zz-test-extra"
    lab.sh(node, 'echo "oneadmin ALL=(root) NOPASSWD: /usr/sbin/lvremove" > "$1" && '
                 'chmod 0440 "$1"', extra)
    try:
        problems = check_node(driver_config, node)
    finally:
        lab.sh(node, 'rm -f "$1"', extra)
    assert problems == ["sudo allows more than the node helper: "
                        "'(root) NOPASSWD: /usr/sbin/lvremove'"]
    assert check_node(driver_config, node) == []


def test_a_helper_writable_by_others_is_reported(lab, driver_config):
    node = lab.node_names[-1]
    lab.sh(node, 'chmod 0777 "$1"', driver_config.node_helper)
    try:
        problems = check_node(driver_config, node)
    finally:
        lab.sh(node, 'chmod 0755 "$1"', driver_config.node_helper)
    assert any("must be root-owned and not group/world-writable" in p for p in problems)


def test_cli_check_node_exit_codes(lab):
    env_conf = ["--config", str(lab.driver_conf)]
    ok = subprocess.run([sys.executable, "-m", "one_gfs2clvm.cli", *env_conf, "check-node",
                         lab.node_names[0]], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{lab.node_names[0]}: OK"
    bad = subprocess.run([sys.executable, "-m", "one_gfs2clvm.cli", *env_conf, "check-node",
                          "no-such-node"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.startswith("no-such-node: ") and len(bad.stderr.splitlines()) == 1


def test_udev_gives_oneadmin_exactly_our_lvs(lab):
    """The shipped udev rule on a real udevd: oneadmin gets the device node of
    lv-one-<vm>-<disk> and lv-oneimg-<id> (and their -snap- copies), never of a
    look-alike name in the same VG (lv-one-0x-1root, lv-oneimg-9backup,
    lv-one-01-0) nor of the GFS2 LV.  The LVs are made as root, outside the
    driver, as another tool or an admin would."""
    from lab.vmlab import GFS2_LV, VG
    node = lab.node_names[0]
    ours = ["lv-one-97001-0", "lv-oneimg-97002", "lv-one-97001-0-snap-3"]
    others = ["lv-one-0x-1root", "lv-oneimg-9backup", "lv-one-097001-0"]
    script = r'''
vg=$1; shift
for lv in "$@"; do lvcreate -q -an -L 4M -n "$lv" "$vg" >/dev/null; done
for lv in "$@"; do lvchange -aey "$vg/$lv"; done
udevadm settle
for lv in "$@"; do echo "$lv $(stat -L -c %U "/dev/$vg/$lv")"; done
'''
    cleanup = 'vg=$1; shift; for lv in "$@"; do lvremove -q -f "$vg/$lv" >/dev/null 2>&1; done; true'
    try:
        out = lab.sh(node, script, VG, *ours, *others, timeout=300).stdout
    finally:
        lab.sh(node, cleanup, VG, *ours, *others, check=False, timeout=300)
    owners = dict(line.split() for line in out.splitlines())
    assert owners == {**{lv: "oneadmin" for lv in ours}, **{lv: "root" for lv in others}}
    gfs2 = lab.sh(node, 'stat -L -c %U "$1"', f"/dev/{VG}/{GFS2_LV}").stdout.strip()
    assert gfs2 == "root"
