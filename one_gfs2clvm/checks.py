"""Validation of a worker, run from the front-end (`one-gfs2clvm check-node`).

What must hold for the privilege model to be what we claim: oneadmin's sudo
allows the node helper and nothing else, the helper is root-owned and not
writable by oneadmin, it answers with the configured VGs, and every
configured VG is visible there with the expected lock type.
"""

from __future__ import annotations

import json
import shlex

from .cluster import Cluster
from .config import Config
from .errors import DriverError

_EXPECTED_LOCK = {"lvmlockd": ("dlm", "sanlock"), "clvmd": ("clvm",), "none": ("",)}


def parse_sudo_listing(text: str) -> list[str]:
    """The command entries of `sudo -n -l` output (after 'may run ...' lines)."""
    commands, in_rules = [], False
    for line in text.splitlines():
        if " may run the following commands" in line:
            in_rules = True
            continue
        if in_rules and line.strip():
            commands.append(line.strip())
    return commands


def sudo_problems(listing: str, helper: str) -> list[str]:
    expected = f"(root) NOPASSWD: {helper}"
    entries = parse_sudo_listing(listing)
    problems = [f"sudo allows more than the node helper: {entry!r}"
                for entry in entries if entry != expected]
    if expected not in entries:
        problems.append(f"sudo does not allow {helper} (install etc-sudoers-d/one-gfs2clvm)")
    return problems


def check_node(config: Config, host: str) -> list[str]:
    cluster = Cluster(config)
    remote = cluster.remote(host)          # host key verified here
    problems: list[str] = []
    # Each fact is checked on its own so one failure does not hide the rest.
    stat = remote.run(["stat", "-c", "%U %a", config.node_helper], check=False)
    if stat.exit_status != 0:
        return [f"node helper {config.node_helper} missing: {stat.stderr.strip()}"]
    owner, mode = stat.stdout.split()
    if owner != "root" or int(mode, 8) & 0o022:
        problems.append(f"{config.node_helper} must be root-owned and not group/world-writable "
                        f"(is {owner} {mode})")
    listing = remote.run([config.sudo, "-n", "-l"], check=False)
    problems += sudo_problems(listing.stdout, config.node_helper)
    version = remote.run([config.sudo, "-n", config.node_helper, "version"], check=False)
    if version.exit_status != 0:
        problems.append(f"node helper failed: {version.stderr.strip()}")
        return problems
    info = json.loads(version.stdout)
    problems += helper_version_problems(info)
    if info.get("lock_mode") != config.lock_mode:
        problems.append(f"worker lock_mode {info.get('lock_mode')} != front-end {config.lock_mode}")
    for vg in config.volume_groups:
        if vg not in info.get("volume_groups", []):
            problems.append(f"VG {vg} is not allowed by the worker's /etc/one/gfs2clvm.conf")
            continue
        try:
            group = cluster.lvm(host).vgs(vg)
        except DriverError as exc:  # report, do not stop the check
            problems.append(exc.one_line())
            continue
        if group.lock_type not in _EXPECTED_LOCK[config.lock_mode]:
            problems.append(f"VG {vg} has lock type {group.lock_type or 'none'!r}, "
                            f"expected {' or '.join(_EXPECTED_LOCK[config.lock_mode])!r} "
                            f"for lock_mode {config.lock_mode} "
                            f"(try: {shlex.join(['vgchange', '--lock-start', vg])})")
    return problems


def helper_version_problems(info: dict) -> list[str]:
    """The worker's helper must be this driver's: an older one refuses requests
    the driver sends (helper 1 knows no `batch`)."""
    from .nodehelper import VERSION
    found = str(info.get("helper", "?"))
    if found == VERSION:
        return []
    return [f"the worker's node helper is version {found}, this driver needs {VERSION}: "
            f"install the helper of this release (one-gfs2clvm node-helper-path)"]
