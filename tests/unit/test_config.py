from __future__ import annotations

import re
from pathlib import Path

import pytest

from one_gfs2clvm import config
from one_gfs2clvm.config import Config, HostAddress, SshConfig
from one_gfs2clvm.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[2] / "etc-one" / "gfs2clvm.conf"


def edited(section: str, key: str, value: str) -> str:
    """The sample file with `key = value` set in [section] (added if absent)."""
    lines = SAMPLE.read_text().splitlines()
    start = lines.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")),
               len(lines))
    for i in range(start + 1, end):
        if re.match(rf"{re.escape(key)}\s*=", lines[i]):
            lines[i] = f"{key} = {value}"
            break
    else:
        lines.insert(start + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gfs2clvm.conf"
    path.write_text(text)
    return str(path)


def test_sample_file_loads():
    loaded = config.load(str(SAMPLE))
    assert loaded == Config(
        volume_groups=("vg_one",), lock_mode="lvmlockd", gfs2_mount="/var/lib/one",
        zeroing="on_delete", bridge_hosts=(),
        ssh=SshConfig(user="oneadmin", port=22, identity_file=None,
                      known_hosts="/var/lib/one/.ssh/known_hosts", connect_timeout=10.0,
                      command_timeout=3600.0, hosts={}, keeper_dir="/run/one",
                      keeper_idle=60.0),
        node_helper="/usr/sbin/one-gfs2clvm-helper", sudo="/usr/bin/sudo",
        lock_dir="/var/lock/one", lock_timeout=120.0, lvm_retries=6, lvm_retry_delay=0.5,
        source=str(SAMPLE))
    assert loaded.default_vg == "vg_one"
    assert (loaded.zero_on_create, loaded.zero_on_delete) == (False, True)
    assert loaded.check_vg("vg_one") == "vg_one"


def test_env_var_selects_file(tmp_path, monkeypatch):
    path = write(tmp_path, edited("storage", "volume_groups", "vg_a, vg_b"))
    monkeypatch.setenv(config.ENV_VAR, path)
    assert config.config_path() == path
    loaded = config.load()
    assert loaded.volume_groups == ("vg_a", "vg_b")
    assert loaded.default_vg == "vg_a"
    monkeypatch.delenv(config.ENV_VAR)
    assert config.config_path() == "/etc/one/gfs2clvm.conf"


def test_valid_variants():
    text = edited("ssh.hosts", "Node1", "192.0.2.11:2222")
    text = text.replace("# node1 = 192.0.2.11:22", "node2 = [2001:db8::2]:22\nnode3 = node3.lan")
    text = text.replace("bridge_hosts =", "bridge_hosts = node1, node2")
    text = text.replace("zeroing = on_delete", "zeroing = always")
    text = text.replace("gfs2_mount = /var/lib/one", "gfs2_mount = /srv/gfs2/")
    loaded = config.parse(text, source="x.conf")
    assert loaded.ssh.hosts == {"Node1": HostAddress("192.0.2.11", 2222),
                                "node2": HostAddress("2001:db8::2", 22),
                                "node3": HostAddress("node3.lan", 22)}
    assert loaded.ssh.address_of("Node1") == HostAddress("192.0.2.11", 2222)
    assert loaded.ssh.address_of("other") == HostAddress("other", 22)
    assert loaded.bridge_hosts == ("node1", "node2")
    assert (loaded.zero_on_create, loaded.zero_on_delete) == (True, True)
    assert loaded.gfs2_mount == "/srv/gfs2"


def test_check_vg_names_configured_groups():
    loaded = config.parse(edited("storage", "volume_groups", "vg_a,vg_b"), source="c.conf")
    with pytest.raises(ConfigError) as info:
        loaded.check_vg("vg_c")
    assert str(info.value) == ("volume group 'vg_c' is not configured in c.conf "
                               "(volume_groups = vg_a, vg_b)")


@pytest.mark.parametrize("section, key, value, why", [
    ("storage", "volume_groups", "", "missing (required)"),
    ("storage", "volume_groups", ", ,", "missing (required)"),
    ("storage", "volume_groups", "vg_one, -vg", "invalid VG name '-vg'"),
    ("storage", "volume_groups", "vg/one", "invalid VG name 'vg/one'"),
    ("storage", "lock_mode", "sanlock", "'sanlock' is not one of lvmlockd, clvmd, none"),
    ("storage", "gfs2_mount", "var/lib/one", "must be an absolute path, got 'var/lib/one'"),
    ("storage", "zeroing", "sometimes",
     "'sometimes' is not one of never, on_create, on_delete, always"),
    ("storage", "bridge_hosts", "node1, -x", "invalid host name '-x'"),
    ("ssh", "user", "Root", "invalid value 'Root'"),
    ("ssh", "port", "0", "must be an integer 1..65535, got '0'"),
    ("ssh", "port", "65536", "must be an integer 1..65535, got '65536'"),
    ("ssh", "port", "ssh", "must be an integer 1..65535, got 'ssh'"),
    ("ssh", "port", "-22", "must be an integer 1..65535, got '-22'"),
    ("ssh", "connect_timeout", "fast", "not a number: 'fast'"),
    ("ssh", "connect_timeout", "0.01", "must be >= 0.1, got '0.01'"),
    ("ssh", "connect_timeout", "nan", "must be >= 0.1, got 'nan'"),
    ("ssh", "command_timeout", "-1", "must be >= 0.1, got '-1'"),
    ("node", "helper", "one-gfs2clvm-helper",
     "must be an absolute path, got 'one-gfs2clvm-helper'"),
    ("node", "sudo", "sudo", "must be an absolute path, got 'sudo'"),
    ("locking", "lock_dir", "var/lock", "must be an absolute path, got 'var/lock'"),
    ("locking", "lock_timeout", "-5", "must be >= 0.0, got '-5'"),
    ("locking", "lvm_retries", "-1", "invalid value '-1' (expected an integer 0..99)"),
    ("locking", "lvm_retries", "many", "invalid value 'many' (expected an integer 0..99)"),
    ("locking", "lvm_retries", "2.7", "invalid value '2.7' (expected an integer 0..99)"),
    ("locking", "lvm_retries", "100", "invalid value '100' (expected an integer 0..99)"),
    ("locking", "lvm_retry_delay", "-0.5", "invalid value '-0.5' (expected seconds, e.g. 0.5)"),
    ("locking", "lvm_retry_delay", "1e-1", "invalid value '1e-1' (expected seconds, e.g. 0.5)"),
    ("ssh.hosts", "node1", "host:99999", "expected address[:port], got 'host:99999'"),
    ("ssh.hosts", "node1", "host:", "expected address[:port], got 'host:'"),
    # non-ASCII digits and infinities: ConfigError, not a stray ValueError/OverflowError
    ("ssh", "port", "\u00b2", "must be an integer 1..65535, got '\u00b2'"),
    ("ssh", "port", "\uff12\uff12", "must be an integer 1..65535, got '\uff12\uff12'"),
    ("ssh.hosts", "node1", "192.0.2.1:\u00b2", "expected address[:port], got '192.0.2.1:\u00b2'"),
    ("locking", "lvm_retries", "inf", "invalid value 'inf' (expected an integer 0..99)"),
    ("ssh.hosts", "node1", "::1", "write IPv6 addresses in brackets, e.g. [::1]:22"),
    ("locking", "lock_timeout", "inf", "must be >= 0.0, got 'inf'"),
])
def test_bad_values(tmp_path, section, key, value, why):
    path = write(tmp_path, edited(section, key, value))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert message == f"{path}: [{section}] {key}: {why}"
    assert info.value.one_line() == message


def test_bad_host_name_in_ssh_hosts(tmp_path):
    path = write(tmp_path, edited("ssh.hosts", "bad!host", "192.0.2.1"))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value) == f"{path}: [ssh.hosts]: invalid host name 'bad!host'"


def test_unknown_key_and_section(tmp_path):
    path = write(tmp_path, edited("storage", "volume_group", "vg_one"))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value) == f"{path}: [storage] unknown key 'volume_group'"

    path = write(tmp_path, SAMPLE.read_text() + "\n[nodes]\nnode1 = x\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value) == f"{path}: unknown section [nodes]"


def test_missing_required_section():
    with pytest.raises(ConfigError) as info:
        config.parse("[ssh]\nuser = oneadmin\n", source="c.conf")
    assert str(info.value) == "c.conf: [storage] volume_groups: missing (required)"


def test_syntax_errors_are_one_line(tmp_path):
    path = write(tmp_path, SAMPLE.read_text().replace("lock_mode = lvmlockd",
                                                      "lock_mode = lvmlockd\nlock_mode = none"))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "lock_mode" in str(info.value) and "\n" not in str(info.value)

    with pytest.raises(ConfigError) as info:
        config.parse("volume_groups = vg_one\n", source="c.conf")
    assert str(info.value).startswith("c.conf: File contains no section headers.")


def test_missing_and_unreadable_file(tmp_path):
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as info:
        config.load(str(missing))
    assert str(info.value) == (f"configuration file {missing} not found "
                               f"(set ONE_GFS2CLVM_CONF or install etc-one/gfs2clvm.conf)")
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path))  # a directory
    assert str(info.value) == f"cannot read configuration file {tmp_path}: Is a directory"




def test_host_names_are_checked_whole():
    """One host rule (names.HOST_RE, fullmatch) for bridge_hosts and [ssh.hosts]."""
    base = "[storage]\nvolume_groups = vg1\n"
    with pytest.raises(ConfigError, match="c.conf: \\[storage\\] bridge_hosts: invalid host "
                                          "name '-oProxyCommand=x'"):
        config.parse(base + "bridge_hosts = node1, -oProxyCommand=x\n", "c.conf")
    with pytest.raises(ConfigError, match="c.conf: \\[ssh.hosts\\]: invalid host name "
                                          "'node1;x'"):
        config.parse(base + "[ssh.hosts]\nnode1;x = 10.0.0.1\n", "c.conf")
    good = config.parse(base + "bridge_hosts = node-1.example.org\n"
                        "[ssh.hosts]\nnode-1.example.org = 10.0.0.1\n", "c.conf")
    assert good.bridge_hosts == ("node-1.example.org",)


def test_connection_keeper_settings():
    base = "[storage]\nvolume_groups = vg_one\n"
    on = config.parse(base)
    assert (on.ssh.keeper_dir, on.ssh.keeper_idle) == ("/run/one", 60.0)   # on by default
    assert config.parse(base + "[ssh]\nkeeper = off\nkeeper_dir = /x\n").ssh.keeper_dir is None
    placed = config.parse(base + "[ssh]\nkeeper_dir = /srv/k/\nkeeper_idle = 5\n").ssh
    assert (placed.keeper_dir, placed.keeper_idle) == ("/srv/k", 5.0)
    for bad, why in (("keeper = yes", "not one of on, off"),
                     ("keeper_dir = run/one", "must be an absolute path"),
                     ("keeper_idle = 0.5", "must be >= 1.0")):
        with pytest.raises(ConfigError, match=why):
            config.parse(base + "[ssh]\n" + bad + "\n")
