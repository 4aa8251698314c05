"""Driver configuration: one commented INI file (etc-one/gfs2clvm.conf).

The same file is read on the OpenNebula front-end (by the driver) and on every
worker (by the node helper, which only looks at [storage]).  Location:
$ONE_GFS2CLVM_CONF, else /etc/one/gfs2clvm.conf.
"""

from __future__ import annotations

import configparser
import math
import os
import re
from dataclasses import dataclass, field

from .errors import ConfigError
from .names import HOST_RE
from .nodehelper import DELAY_RE, RETRIES_RE, VG_RE

DEFAULT_PATH = "/etc/one/gfs2clvm.conf"
ENV_VAR = "ONE_GFS2CLVM_CONF"

LOCK_MODES = ("lvmlockd", "clvmd", "none")
ZEROING_POLICIES = ("never", "on_create", "on_delete", "always")



@dataclass(frozen=True)
class HostAddress:
    address: str
    port: int


@dataclass(frozen=True)
class SshConfig:
    user: str = "oneadmin"
    port: int = 22
    identity_file: str | None = None
    known_hosts: str = "/var/lib/one/.ssh/known_hosts"
    connect_timeout: float = 10.0
    command_timeout: float = 3600.0
    # OpenNebula host name -> where to reach its sshd (default: name, port).
    hosts: dict[str, HostAddress] = field(default_factory=dict)
    # Where the connection keeper's private directory lives (keeper.py);
    # None = every action connects by itself.  The INI default turns it on.
    keeper_dir: str | None = None
    keeper_idle: float = 60.0

    def address_of(self, host: str) -> HostAddress:
        return self.hosts.get(host) or HostAddress(host, self.port)


@dataclass(frozen=True)
class Config:
    volume_groups: tuple[str, ...]
    lock_mode: str = "lvmlockd"
    gfs2_mount: str = "/var/lib/one"
    zeroing: str = "on_delete"
    bridge_hosts: tuple[str, ...] = ()
    ssh: SshConfig = field(default_factory=SshConfig)
    node_helper: str = "/usr/sbin/one-gfs2clvm-helper"
    sudo: str = "/usr/bin/sudo"
    lock_dir: str = "/var/lock/one"
    lock_timeout: float = 120.0
    lvm_retries: int = 6
    lvm_retry_delay: float = 0.5
    source: str = "<defaults>"

    @property
    def default_vg(self) -> str:
        return self.volume_groups[0]

    @property
    def zero_on_create(self) -> bool:
        return self.zeroing in ("on_create", "always")

    @property
    def zero_on_delete(self) -> bool:
        return self.zeroing in ("on_delete", "always")

    def check_vg(self, vg: str) -> str:
        if vg not in self.volume_groups:
            raise ConfigError(
                f"volume group {vg!r} is not configured in {self.source} "
                f"(volume_groups = {', '.join(self.volume_groups)})")
        return vg


def config_path() -> str:
    return os.environ.get(ENV_VAR) or DEFAULT_PATH


def load(path: str | None = None) -> Config:
    """Read and validate the configuration file; ConfigError on any problem."""
    path = path or config_path()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found "
                          f"(set {ENV_VAR} or install etc-one/gfs2clvm.conf)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    return parse(text, source=path)


def parse(text: str, source: str = "<string>") -> Config:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    parser.optionxform = str  # keep host names' case in [ssh.hosts]
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: {' '.join(str(exc).split())}") from None
    reader = _Reader(parser, source)

    vgs = reader.list("storage", "volume_groups", required=True)
    for vg in vgs:
        if not VG_RE.fullmatch(vg) or vg in (".", ".."):
            raise ConfigError(f"{source}: [storage] volume_groups: invalid VG name {vg!r}")
    bridges = reader.list("storage", "bridge_hosts")
    for host in bridges:
        _check_host(host, source, "[storage] bridge_hosts")

    hosts: dict[str, HostAddress] = {}
    default_port = reader.integer("ssh", "port", 22, low=1, high=65535)
    if parser.has_section("ssh.hosts"):
        for name, value in parser.items("ssh.hosts"):
            _check_host(name, source, "[ssh.hosts]")
            hosts[name] = _parse_address(value, default_port, source, name)

    ssh = SshConfig(
        user=reader.string("ssh", "user", "oneadmin", pattern=r"^[a-z_][a-z0-9_.-]*$"),
        port=default_port,
        identity_file=reader.string("ssh", "identity_file", None),
        known_hosts=reader.string("ssh", "known_hosts", SshConfig.known_hosts),
        connect_timeout=reader.number("ssh", "connect_timeout", 10.0, low=0.1),
        command_timeout=reader.number("ssh", "command_timeout", 3600.0, low=0.1),
        hosts=hosts,
        keeper_dir=(reader.abspath("ssh", "keeper_dir", "/run/one")
                    if reader.choice("ssh", "keeper", "on", ("on", "off")) == "on" else None),
        keeper_idle=reader.number("ssh", "keeper_idle", 60.0, low=1.0),
    )
    config = Config(
        volume_groups=tuple(vgs),
        lock_mode=reader.choice("storage", "lock_mode", "lvmlockd", LOCK_MODES),
        gfs2_mount=reader.abspath("storage", "gfs2_mount", "/var/lib/one"),
        zeroing=reader.choice("storage", "zeroing", "on_delete", ZEROING_POLICIES),
        bridge_hosts=tuple(bridges),
        ssh=ssh,
        node_helper=reader.abspath("node", "helper", Config.node_helper),
        sudo=reader.abspath("node", "sudo", Config.sudo),
        lock_dir=reader.abspath("locking", "lock_dir", Config.lock_dir),
        lock_timeout=reader.number("locking", "lock_timeout", 120.0, low=0.0),
        # the node helper reads these too, with the same patterns
        lvm_retries=int(reader.string("locking", "lvm_retries", "6", pattern=RETRIES_RE,
                                         expected="an integer 0..99")),
        lvm_retry_delay=float(reader.string("locking", "lvm_retry_delay", "0.5",
                                            pattern=DELAY_RE,
                                            expected="seconds, e.g. 0.5")),
        source=source,
    )
    reader.reject_unknown()
    return config


_KNOWN = {
    "storage": {"volume_groups", "lock_mode", "gfs2_mount", "zeroing", "bridge_hosts"},
    "ssh": {"user", "port", "identity_file", "known_hosts", "connect_timeout", "command_timeout",
            "keeper", "keeper_dir", "keeper_idle"},
    "ssh.hosts": None,  # free-form
    "node": {"helper", "sudo"},
    "locking": {"lock_dir", "lock_timeout", "lvm_retries", "lvm_retry_delay"},
}


class _Reader:
    def __init__(self, parser: configparser.ConfigParser, source: str):
        self.parser = parser
        self.source = source

    def _raw(self, section: str, key: str) -> str | None:
        if not self.parser.has_option(section, key):
            return None
        value = self.parser.get(section, key).strip()
        return value or None

    def _bad(self, section: str, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{section}] {key}: {why}")

    def string(self, section, key, default, pattern=None, expected=None):
        value = self._raw(section, key)
        if value is None:
            return default
        if pattern and not re.fullmatch(pattern, value):
            hint = f" (expected {expected})" if expected else ""
            raise self._bad(section, key, f"invalid value {value!r}{hint}")
        return value

    def abspath(self, section, key, default):
        value = self._raw(section, key) or default
        if not value.startswith("/"):
            raise self._bad(section, key, f"must be an absolute path, got {value!r}")
        return value.rstrip("/") or "/"

    def list(self, section, key, required=False):
        value = self._raw(section, key)
        if value is None:
            if required:
                raise self._bad(section, key, "missing (required)")
            return []
        items = [item.strip() for item in value.split(",") if item.strip()]
        if required and not items:
            raise self._bad(section, key, "missing (required)")
        return items

    def choice(self, section, key, default, choices):
        value = self._raw(section, key) or default
        if value not in choices:
            raise self._bad(section, key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def number(self, section, key, default, low=None):
        value = self._raw(section, key)
        if value is None:
            return float(default)
        try:
            number = float(value)
        except ValueError:
            raise self._bad(section, key, f"not a number: {value!r}") from None
        if not math.isfinite(number) or (low is not None and number < low):
            raise self._bad(section, key, f"must be >= {low}, got {value!r}")
        return number

    def integer(self, section, key, default, low, high):
        value = self._raw(section, key)
        if value is None:
            return default
        # not str.isdigit(): it accepts '²' and other non-ASCII digits
        if not re.fullmatch(r"[0-9]{1,5}", value) or not low <= int(value) <= high:
            raise self._bad(section, key, f"must be an integer {low}..{high}, got {value!r}")
        return int(value)

    def reject_unknown(self):
        for section in self.parser.sections():
            if section not in _KNOWN:
                raise ConfigError(f"{self.source}: unknown section [{section}]")
            known = _KNOWN[section]
            if known is None:
                continue
            for key in self.parser.options(section):
                if key not in known:
                    raise ConfigError(f"{self.source}: [{section}] unknown key {key!r}")


def _check_host(host: str, source: str, where: str) -> None:
    if not HOST_RE.fullmatch(host):   # names' rule; fullmatch: no trailing newline
        raise ConfigError(f"{source}: {where}: invalid host name {host!r}")


def _parse_address(value: str, default_port: int, source: str, name: str) -> HostAddress:
    value = value.strip()
    if value.startswith("["):                      # [v6addr] or [v6addr]:port
        address, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (str(default_port) if not rest else "")
    elif value.count(":") > 1:
        raise ConfigError(f"{source}: [ssh.hosts] {name}: write IPv6 addresses in brackets, "
                          f"e.g. [{value}]:22")
    else:
        address, sep, port = value.rpartition(":")
        if not sep:
            address, port = value, str(default_port)
    if not address or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{source}: [ssh.hosts] {name}: expected address[:port], got {value!r}")
    return HostAddress(address, int(port))
