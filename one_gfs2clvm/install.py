"""`one-gfs2clvm install`: copy the directory-mapping folders to their system paths.

The repository keeps every file an admin installs in a folder named after its
destination (`etc-one/` -> `/etc/one/`, ...).  FOLDERS below is the one table of
those names; RULES decides, per file, which role and layout get it and how
(mode, keep-existing config, shebang rewrite, root ownership).

The folders are found in the checkout (parent of the package directory: git
clone, `pip install -e`) or, for a non-editable `pip install .`, in
`one_gfs2clvm/_payload/`, where the build step in setup.py copies them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from .errors import DriverError

# Directory-mapping folder -> system path.  Missing folders are skipped quietly
# (var-lib-one-remotes-datastore-gfs2clvm/ arrives with the datastore actions).
FOLDERS: dict[str, str] = {
    "etc-one": "/etc/one",
    "etc-sudoers-d": "/etc/sudoers.d",
    "etc-udev-rules-d": "/etc/udev/rules.d",
    "etc-cron-d": "/etc/cron.d",
    "usr-lib-one-tm_commands": "/usr/lib/one/tm_commands",
    "var-lib-one-remotes-image-fs": "/var/lib/one/remotes/image/fs",
    "var-lib-one-remotes-tm-gfs2clvm": "/var/lib/one/remotes/tm/gfs2clvm",
    "var-lib-one-remotes-datastore-gfs2clvm": "/var/lib/one/remotes/datastore/gfs2clvm",
    "etc-libvirt": "/etc/libvirt",
    "etc-polkit-1-localauthority-50-local.d": "/etc/polkit-1/localauthority/50-local.d",
    "etc-polkit-1-rules-d": "/etc/polkit-1/rules.d",
}

# The node helper is a module of the package, not a folder.
HELPER_SOURCE = "nodehelper.py"
HELPER_TARGET = "/usr/sbin/one-gfs2clvm-helper"

ROLES = ("frontend", "node", "all")
LAYOUTS = ("modern", "3.x", "all")

FRONTEND = frozenset({"frontend"})
NODE = frozenset({"node"})
BOTH_ROLES = frozenset({"frontend", "node"})
MODERN = frozenset({"modern"})
LEGACY = frozenset({"3.x"})
BOTH_LAYOUTS = frozenset({"modern", "3.x"})

# How a file is installed:
#   script  - 0755 if it starts with "#!" else 0644; Python shebangs rewritten
#   config  - 0644; an existing file is kept, the new version goes to <file>.new
#   sudoers - 0440, checked with `visudo -c` when visudo exists
#   settings - `key = value` lines set in the EXISTING target (libvirt's
#             qemu.conf): every other line, the mode and the owner kept; a
#             missing target is skipped (that software is not installed yet)
#   mode:NNNN - that mode
# Node files are chowned root:root when installing as root into /.


@dataclass(frozen=True)
class Rule:
    prefix: str            # path in the source tree; a folder ends with "/"
    roles: frozenset
    layouts: frozenset
    how: str


# First matching prefix wins.
RULES: tuple[Rule, ...] = (
    Rule("var-lib-one-remotes-tm-gfs2clvm/", FRONTEND, MODERN, "script"),
    # datastore remotes exist from 3.4 on; remotes/image/fs is the 3.2 image manager
    Rule("var-lib-one-remotes-datastore-gfs2clvm/", FRONTEND, MODERN, "script"),
    Rule("var-lib-one-remotes-image-fs/", FRONTEND, LEGACY, "script"),
    Rule("usr-lib-one-tm_commands/", FRONTEND, LEGACY, "script"),
    Rule("etc-one/tm_gfs2clvm/", FRONTEND, LEGACY, "config"),
    Rule("etc-one/gfs2clvm.conf", BOTH_ROLES, BOTH_LAYOUTS, "config"),
    Rule("etc-one/", FRONTEND, BOTH_LAYOUTS, "config"),
    Rule("etc-sudoers-d/", NODE, BOTH_LAYOUTS, "sudoers"),
    Rule("etc-udev-rules-d/", NODE, BOTH_LAYOUTS, "mode:0644"),
    Rule("etc-cron-d/", NODE, BOTH_LAYOUTS, "mode:0644"),
    # libvirt on the workers: qemu as oneadmin, no dynamic ownership; polkit lets
    # oneadmin manage qemu:///system (legacy .pkla and current rules.d)
    Rule("etc-libvirt/qemu.conf", NODE, BOTH_LAYOUTS, "settings"),
    Rule("etc-polkit-1-localauthority-50-local.d/", NODE, BOTH_LAYOUTS, "mode:0644"),
    Rule("etc-polkit-1-rules-d/", NODE, BOTH_LAYOUTS, "mode:0644"),
)
# Copied byte for byte (not "script"): it keeps its `#!/usr/bin/python3 -IS`,
# the system interpreter, isolated, whatever --python says.
HELPER_RULE = Rule(HELPER_SOURCE, NODE, BOTH_LAYOUTS, "mode:0755")

DIR_MODE = 0o755
_SKIP_NAMES = re.compile(r"(^\.|~$|\.pyc$|\.swp$|^__pycache__$|\.new$|\.orig$|\.rej$)")
_PYTHON_SHEBANG = re.compile(rb"#![ \t]*(?:/usr/bin/env[ \t]+)?\S*python[0-9.]*(?:[ \t].*)?")
_SHEBANG_MAX = 127  # kernels before 5.1 cut the #! line at 127 bytes


class InstallError(DriverError):
    """The files to install were not found, or one could not be written."""

    exit_code = 1


@dataclass(frozen=True)
class Step:
    """One file of the installation plan and what happened to it."""

    source: Path
    target: PurePosixPath     # system path ("/etc/one/gfs2clvm.conf")
    dest: Path                # target under the root
    mode: int
    how: str
    chown_root: bool
    outcome: str = ""         # installed | kept | unchanged | updated | skipped
    detail: str = ""          # settings: the keys set, or why skipped

    def line(self, dry_run: bool = False) -> str:
        verb = {"installed": "install", "kept": "keep", "unchanged": "leave unchanged",
                "updated": "update", "skipped": "skip"}
        word = f"would {verb[self.outcome]}" if dry_run else self.outcome
        if self.outcome == "kept":
            return f"{word} {self.dest} (new version in .new)"
        return f"{word} {self.dest}" + (f" ({self.detail})" if self.detail else "")


# -- locating the source tree -------------------------------------------------

def package_dir() -> Path:
    return Path(__file__).resolve().parent


def find_source(explicit: str | os.PathLike | None = None) -> Path:
    """The directory holding the mapping folders: checkout first, then _payload."""
    if explicit is not None:
        candidates = [Path(explicit)]
    else:
        candidates = [package_dir().parent, package_dir() / "_payload"]
    for candidate in candidates:
        if (candidate / "etc-one" / "gfs2clvm.conf").is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise InstallError(f"driver files not found (looked for etc-one/gfs2clvm.conf in {tried}); "
                       "install from a checkout or a package built with setup.py's build step")


# -- planning -----------------------------------------------------------------

def _expand(choice: str, allowed: tuple[str, ...], what: str) -> frozenset:
    if choice not in allowed:
        raise InstallError(f"unknown {what} {choice!r} (one of {', '.join(allowed)})")
    return frozenset(allowed[:-1]) if choice == "all" else frozenset({choice})


def _rule_for(rel: str) -> Rule | None:
    for rule in RULES:
        if rel == rule.prefix or (rule.prefix.endswith("/") and rel.startswith(rule.prefix)):
            return rule
    return None


def _walk(folder: Path):
    """Regular files under folder, sorted, without editor/VCS/bytecode litter."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _SKIP_NAMES.search(d))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not _SKIP_NAMES.search(name) and path.is_file():
                yield path


def _mode_for(how: str, source: Path) -> int:
    if how == "script":
        with open(source, "rb") as f:
            return 0o755 if f.read(2) == b"#!" else 0o644
    if how == "config":
        return 0o644
    if how == "sudoers":
        return 0o440
    if how == "settings":
        return 0o600            # only for a target that has no mode yet (never written)
    return int(how.split(":", 1)[1], 8)


def plan(root: str | os.PathLike, role: str = "all", layout: str = "all",
         source: str | os.PathLike | None = None, euid: int | None = None) -> list[Step]:
    """The files to install for role/layout under root, in a stable order."""
    roles = _expand(role, ROLES, "role")
    layouts = _expand(layout, LAYOUTS, "layout")
    src = find_source(source)
    root = Path(root)
    euid = os.geteuid() if euid is None else euid
    owner_root = euid == 0 and root.resolve() == Path("/")

    candidates: list[tuple[Path, PurePosixPath, Rule]] = []
    for folder, system_path in FOLDERS.items():
        base = src / folder
        if not base.is_dir():
            continue
        for path in _walk(base):
            rel = path.relative_to(src).as_posix()
            rule = _rule_for(rel)
            if rule is None:
                continue
            target = PurePosixPath(system_path) / path.relative_to(base).as_posix()
            candidates.append((path, target, rule))
    candidates.append((package_dir() / HELPER_SOURCE, PurePosixPath(HELPER_TARGET), HELPER_RULE))

    steps: list[Step] = []
    seen: set[PurePosixPath] = set()
    for path, target, rule in candidates:
        if not (rule.roles & roles and rule.layouts & layouts) or target in seen:
            continue
        seen.add(target)
        steps.append(Step(source=path, target=target,
                          dest=root / target.relative_to("/"),
                          mode=_mode_for(rule.how, path), how=rule.how,
                          chown_root=owner_root and bool(rule.roles & NODE & roles)))
    return steps


# -- writing ------------------------------------------------------------------

def check_interpreter(python: str) -> str:
    """The interpreter for rewritten shebangs: absolute, no blanks, short enough."""
    if not os.path.isabs(python):
        raise InstallError(f"interpreter {python!r} is not an absolute path")
    if re.search(r"\s", python) or len(python) + 2 > _SHEBANG_MAX:
        raise InstallError(f"interpreter {python!r} cannot go on a #! line "
                           f"(blanks, or longer than {_SHEBANG_MAX - 2} characters); "
                           "use --python with a shorter path")
    return python


def content_for(step: Step, python: str) -> bytes:
    data = step.source.read_bytes()
    if step.how != "script":
        return data
    first, sep, rest = data.partition(b"\n")
    if _PYTHON_SHEBANG.fullmatch(first.rstrip(b"\r")):
        return b"#!" + os.fsencode(python) + sep + rest
    return data


def _makedirs(path: Path) -> None:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        os.mkdir(directory, DIR_MODE)
        os.chmod(directory, DIR_MODE)  # whatever the umask


def _check_sudoers(path: str) -> None:
    visudo = shutil.which("visudo") or next(
        (p for p in ("/usr/sbin/visudo", "/sbin/visudo") if os.access(p, os.X_OK)), None)
    if visudo is None:
        return
    result = subprocess.run([visudo, "-cqf", path], capture_output=True, text=True)
    if result.returncode != 0:
        detail = " ".join((result.stderr or result.stdout).split())
        raise InstallError(f"visudo rejects the sudoers file: {detail}")


def _write_atomic(dest: Path, data: bytes, mode: int, chown_root: bool, how: str,
                  owner: tuple[int, int] | None = None) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(f.fileno(), *owner)
            elif chown_root:
                os.fchown(f.fileno(), 0, 0)
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if how == "sudoers":
            _check_sudoers(tmp)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- settings files (libvirt's qemu.conf) ---------------------------------------

_SETTING = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")
# libvirt writes each default as `#key = value` at the start of a line; indented
# or spaced comments are prose and examples, not the default
_DEFAULT = re.compile(r"#([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")


def wanted_settings(text: str) -> dict[str, str]:
    """key -> its line, for each active one-line `key = value` of a settings file."""
    wanted = {}
    for line in text.splitlines():
        match = _SETTING.match(line)
        if match:
            wanted[match[1]] = line.strip()
    return wanted


def merge_settings(current: str, wanted: dict[str, str]) -> str:
    """`current` with each key of `wanted` set by its line: the first active
    setting replaced (later ones dropped: they would win), else the line put
    after the key's commented default, else appended.  Nothing else changes;
    merging again changes nothing.  Values are one line (our keys are scalars)."""
    lines = current.splitlines(keepends=True)
    merged, placed = [], set()
    for line in lines:
        match = _SETTING.match(line)
        if match and match[1] in wanted:
            if match[1] not in placed:
                merged.append(wanted[match[1]] + "\n")
                placed.add(match[1])
            continue
        merged.append(line)
    if merged and not merged[-1].endswith("\n"):
        merged[-1] += "\n"
    appended = []
    for key, setting in wanted.items():
        if key in placed:
            continue
        default = next((i for i, line in enumerate(merged)
                        if (m := _DEFAULT.match(line)) and m[1] == key), None)
        if default is None:
            appended.append(setting + "\n")
        else:
            merged.insert(default + 1, setting + "\n")
    if appended:
        merged += ["# set by one-gfs2clvm install (etc-libvirt/)\n", *appended]
    return "".join(merged)


def _settings_outcome(step: Step, data: bytes) -> tuple[str, str, bytes | None]:
    """(outcome, detail, new content or None) of a settings step."""
    if not step.dest.is_file():
        return "skipped", "not there: install that software first, then run install again", None
    current = step.dest.read_text(encoding="utf-8")
    wanted = wanted_settings(data.decode("utf-8"))
    merged = merge_settings(current, wanted)
    if merged == current:
        return "unchanged", "", None
    changed = [key for key in wanted
               if wanted_settings(current).get(key) != wanted[key]]
    return "updated", "set " + ", ".join(changed), merged.encode("utf-8")


def install(root: str | os.PathLike, role: str = "all", layout: str = "all",
            dry_run: bool = False, python: str | None = None,
            source: str | os.PathLike | None = None, euid: int | None = None,
            echo=None) -> list[Step]:
    """Install (or with dry_run only list) the files; returns the steps with outcomes.

    echo, when given, is called with one line per file as it is handled.
    """
    python = check_interpreter(python or sys.executable)
    done: list[Step] = []
    for step in plan(root, role, layout, source, euid):
        data = content_for(step, python)
        dest = step.dest
        outcome, detail, owner, mode = "installed", "", None, step.mode
        if step.how == "settings":
            outcome, detail, data = _settings_outcome(step, data)
            if data is not None:
                info = dest.stat()
                owner, mode = (info.st_uid, info.st_gid), info.st_mode & 0o7777
        elif step.how == "config" and (dest.exists() or dest.is_symlink()):
            try:
                same = dest.is_file() and dest.read_bytes() == data
            except OSError:
                same = False
            outcome = "unchanged" if same else "kept"
            dest = dest.with_name(dest.name + ".new")
        if not dry_run and outcome not in ("unchanged", "skipped"):
            try:
                _makedirs(dest.parent)
                _write_atomic(dest, data, mode, step.chown_root, step.how, owner)
            except OSError as exc:
                raise InstallError(f"{dest}: {exc.strerror or exc}") from exc
        step = replace(step, outcome=outcome, detail=detail)
        done.append(step)
        if echo is not None:
            echo(step.line(dry_run))
    return done
