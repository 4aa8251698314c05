from one_gfs2clvm.checks import helper_version_problems, parse_sudo_listing, sudo_problems
from one_gfs2clvm.nodehelper import VERSION

HELPER = "/usr/sbin/one-gfs2clvm-helper"
LISTING = """Matching Defaults entries for oneadmin on node1:
    env_reset, mail_badpass, secure_path=/usr/local/sbin\\:/usr/local/bin\\:/usr/sbin\\:/usr/bin\\:/sbin\\:/bin, use_pty

Runas and Command-specific defaults for oneadmin:
    Defaults!/usr/sbin/one-gfs2clvm-helper !requiretty, env_reset

User oneadmin may run the following commands on node1:
    (root) NOPASSWD: /usr/sbin/one-gfs2clvm-helper
"""


def test_listing_with_only_the_helper_is_clean():
    assert parse_sudo_listing(LISTING) == [f"(root) NOPASSWD: {HELPER}"]
    assert sudo_problems(LISTING, HELPER) == []


def test_extra_rules_and_missing_helper_are_reported():
    wider = LISTING + "    (ALL : ALL) ALL\n"
    assert sudo_problems(wider, HELPER) == ["sudo allows more than the node helper: '(ALL : ALL) ALL'"]
    assert sudo_problems("User oneadmin is not allowed to run sudo on node1.\n", HELPER) == [
        f"sudo does not allow {HELPER} (install etc-sudoers-d/one-gfs2clvm)"]


def test_an_older_node_helper_is_reported():
    assert helper_version_problems({"helper": VERSION, "lock_mode": "lvmlockd"}) == []
    assert helper_version_problems({"helper": "1"}) == [
        f"the worker's node helper is version 1, this driver needs {VERSION}: install the "
        f"helper of this release (one-gfs2clvm node-helper-path)"]
    assert "version ?" in helper_version_problems({})[0]
