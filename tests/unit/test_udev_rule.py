"""The udev rule gives oneadmin exactly the helper's LVs in the configured VGs.

udev globs cannot say "digits only", so the rule asks the node helper
(`udev-owns VG LV`, the same patterns as every other verb).  These tests read
the shipped rule, evaluate it the way udev does (match keys left to right,
globs with `|` alternatives, $env{} substitution, PROGRAM true on exit 0)
and run the helper for real.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from one_gfs2clvm import install, nodehelper

RULE_FILE = Path(__file__).resolve().parents[2] / "etc-udev-rules-d" / "99-one-gfs2clvm.rules"
HELPER = Path(nodehelper.__file__)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs a root-owned config file")

OWNED = ["lv-one-1-0", "lv-oneimg-7", "lv-one-1-0-snap-2", "lv-oneimg-5-snap-1",
         "lv-one-0-0", "lv-one-9999999999-12"]
NOT_OWNED = ["lv-one-0x-1root", "lv-oneimg-9backup", "lv-one-1-0_rimage_0", "lv-one-01-0",
             "lv-oneimg-07", "lv-one-1-0-snap-02", "lv-one-1-0_rmeta_0", "lv-one-1-0_tdata",
             "lv-one-1", "lv-one-1-0-snap-", "lv-oneimg-", "lv-one-12345678901-0",
             "gfs2_one", "lv-one"]

# One `KEY{attr}OP"value"` per comma-separated field.
_FIELD = re.compile(r'\s*([A-Z_]+(?:\{[A-Za-z0-9_]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*')
MATCH_OPS = ("==", "!=")


def rule_lines() -> list[str]:
    return [line for line in RULE_FILE.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def fields(line: str) -> list[tuple[str, str, str]]:
    out, pos = [], 0
    while pos < len(line):
        found = _FIELD.match(line, pos)
        assert found, f"cannot parse the rule at {line[pos:]!r}"
        out.append(found.groups())
        pos = found.end()
        if pos < len(line):
            assert line[pos] == ",", f"expected ',' at {line[pos:]!r}"
            pos += 1
    return out


def the_rule() -> list[tuple[str, str, str]]:
    lines = rule_lines()
    assert len(lines) == 1, "one rule, on one line"
    return fields(lines[0])


RUNNER = """\
import importlib.util, sys
path, config = sys.argv[1:3]
spec = importlib.util.spec_from_file_location("helper", path)
helper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helper)
helper.CONFIG_PATH = config
def no_lvm():
    raise SystemExit("lvm must not run")
helper.lvm_binary = no_lvm
sys.exit(helper.main(sys.argv[3:]))
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "gfs2clvm.conf"
    path.write_text("[storage]\nvolume_groups = vg_one, vg_two\nlock_mode = none\n")
    path.chmod(0o644)
    return str(path)


def run_program(program: str, env: dict, config: str) -> subprocess.CompletedProcess:
    """PROGRAM as udev runs it: $env{} substituted, split on blanks; our helper
    file (isolated interpreter) with a test config stands in for the installed one."""
    words = re.sub(r"\$env\{([A-Za-z0-9_]+)\}", lambda m: env.get(m.group(1), ""),
                   program).split()
    assert words[0] == install.HELPER_TARGET
    argv = [sys.executable, "-I", "-c", RUNNER, str(HELPER), config] + words[1:]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def udev_glob(pattern: str, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, alt) for alt in pattern.split("|"))


def rule_applies(env: dict, config: str) -> bool:
    """Evaluate the match keys left to right; True if the assignments are reached."""
    for key, op, value in the_rule():
        if op not in MATCH_OPS:
            return True
        if key == "PROGRAM":
            result = run_program(value, env, config)
            assert result.stdout == "" and result.stderr == "", result
            hit = result.returncode == 0
        else:
            name = key[4:-1] if key.startswith("ENV{") else key
            hit = udev_glob(value, env.get(name, ""))
        if hit != (op == "=="):
            return False
    raise AssertionError("the rule assigns nothing")


def device(vg: str, lv: str, layer: str = "") -> dict:
    return {"SUBSYSTEM": "block", "KERNEL": "dm-3", "ACTION": "add", "DM_VG_NAME": vg,
            "DM_LV_NAME": lv, "DM_LV_LAYER": layer}


# --- shape of the shipped rule --------------------------------------------------------

def test_rule_shape():
    rule = the_rule()
    keys = [(key, op) for key, op, _ in rule]
    matches = [(key, value) for key, op, value in rule if op in MATCH_OPS]
    assigns = {key: value for key, op, value in rule if op not in MATCH_OPS}
    # every match key comes before the first assignment (udev stops at a failed match)
    first_assign = next(i for i, (_, op) in enumerate(keys) if op not in MATCH_OPS)
    assert all(op in MATCH_OPS for _, op in keys[:first_assign])
    assert all(op == "=" for _, op in keys[first_assign:])
    assert all(op == "==" for _, op in keys[:first_assign])
    assert matches == [
        ("SUBSYSTEM", "block"), ("KERNEL", "dm-*"), ("ACTION", "add|change"),
        ("ENV{DM_LV_LAYER}", ""), ("ENV{DM_VG_NAME}", "?*"), ("ENV{DM_LV_NAME}", "lv-one*"),
        ("PROGRAM", f"{install.HELPER_TARGET} udev-owns $env{{DM_VG_NAME}} $env{{DM_LV_NAME}}"),
    ]
    assert assigns == {"OWNER": "oneadmin", "GROUP": "oneadmin", "MODE": "0660"}


# --- the rule, evaluated with the real helper -----------------------------------------

@as_root
@pytest.mark.parametrize("lv", OWNED)
def test_rule_gives_our_lvs_to_oneadmin(config, lv):
    assert rule_applies(device("vg_one", lv), config)
    assert rule_applies(device("vg_two", lv), config)


@as_root
@pytest.mark.parametrize("lv", NOT_OWNED)
def test_rule_leaves_other_lvs_to_root(config, lv):
    assert not rule_applies(device("vg_one", lv), config)


@as_root
@pytest.mark.parametrize("vg", ["vg_other", "vg_one0", "vg", "vg_one,vg_two", "-vg_one"])
def test_rule_leaves_lvs_of_other_vgs_to_root(config, vg):
    assert not rule_applies(device(vg, "lv-one-1-0"), config)


@as_root
@pytest.mark.parametrize("env", [
    device("vg_one", "lv-one-1-0", layer="real"),     # snapshot origin's inner device
    device("vg_one", "lv-one-1-0", layer="cow"),
    {**device("vg_one", "lv-one-1-0"), "SUBSYSTEM": "net"},
    {**device("vg_one", "lv-one-1-0"), "KERNEL": "sda1"},
    {**device("vg_one", "lv-one-1-0"), "ACTION": "remove"},
])
def test_rule_prefilters(config, env):
    assert not rule_applies(env, config)


# --- the verb itself --------------------------------------------------------------------

@pytest.mark.parametrize("lv", OWNED)
def test_udev_owns_accepts(lv):
    assert nodehelper.udev_owns("vg_one", lv, ["vg_one"])


@pytest.mark.parametrize("vg, lv", [("vg_one", lv) for lv in NOT_OWNED] + [
    ("vg_two", "lv-one-1-0"), ("", "lv-one-1-0"), ("vg_one\n", "lv-one-1-0"),
    ("vg_one", "lv-one-1-0\n"), ("vg_one", ""), ("vg_one", "lv-one-1-0 x"),
])
def test_udev_owns_refuses(vg, lv):
    assert not nodehelper.udev_owns(vg, lv, ["vg_one"])


@as_root
def test_udev_owns_is_silent_and_never_runs_lvm(config):
    program = f"{install.HELPER_TARGET} udev-owns vg_one lv-one-1-0"
    yes = run_program(program, {}, config)
    no = run_program(program.replace("lv-one-1-0", "lv-one-01-0"), {}, config)
    assert (yes.returncode, yes.stdout, yes.stderr) == (0, "", "")
    assert (no.returncode, no.stdout, no.stderr) == (1, "", "")


@as_root
@pytest.mark.parametrize("args", [[], ["vg_one"], ["vg_one", "lv-one-1-0", "x"]])
def test_udev_owns_wrong_arity_is_refused(config, args):
    result = subprocess.run([sys.executable, "-I", "-c", RUNNER, str(HELPER), config,
                             "udev-owns", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == nodehelper.EXIT_REFUSED
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("one-gfs2clvm-helper: refused: udev-owns: expected 2")
