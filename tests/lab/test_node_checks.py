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
