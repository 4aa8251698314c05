"""The OpenNebula-protocol test client (testkit/oneclient.py) against throwaway scripts."""

import base64
import json
import os
import sys
import time
from pathlib import Path

import pytest

from testkit import oneclient
from testkit.oneclient import (NotRepresentable, parse_tm3_conf, read_rc, run_ds,
                               run_tm, run_tm3, run_transfer, run_transfer_file, shellwords_escape)

REPO = Path(__file__).resolve().parents[2]


def script(path: Path, body: str, shebang: str = "#!/bin/sh") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{shebang}\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def remotes(tmp_path):
    root = tmp_path / "remotes"
    (root / "tm" / "gfs2clvm").mkdir(parents=True)
    (root / "datastore" / "gfs2clvm").mkdir(parents=True)
    return root


def tm(remotes, name, body, **kw):
    return script(remotes / "tm" / "gfs2clvm" / name, body, **kw)


# -- running one action -----------------------------------------------------------

def test_success_gets_each_argument_as_one_argv_element(remotes):
    tm(remotes, "clone", 'printf "%s|" "$@"')
    args = ["fe:/var/lib/one/datastores/1/abc", "node1:/var/lib/one/datastores/0/7/disk.0",
            "7", "1"]
    result = run_tm(remotes, "gfs2clvm", "clone", args)
    assert result.success and result.exit_code == 0
    assert result.stdout == "|".join(args) + "|"
    assert result.failure_message == "-"
    assert result.protocol_reply("TRANSFER", 7) == "TRANSFER SUCCESS 7 -"


def test_failure_message_and_log_lines_follow_the_driver_rules(remotes):
    stderr_lines = [
        "INFO: clone: creating lv-one-7-0",
        "ERROR: 7 lvcreate failed",
        "  WARN:   12   spaced out   ",
        "DEBUG: 010 octal like Ruby's Integer()",
        "DEBUG: 09 not octal",
        "ERROR:no blank after the colon",
        "",
        "  the real reason  ",
        "INFO:",
    ]
    body = "cat >&2 <<'EOF'\n" + "\n".join(stderr_lines) + "\nEOF\nexit 3"
    tm(remotes, "clone", body)
    result = run_tm(remotes, "gfs2clvm", "clone", ["a:b", "c:d", "7", "1"])
    assert not result.success and result.exit_code == 3
    # oned's text: the non-log lines, each stripped, concatenated as they are
    assert result.failure_lines == ["ERROR:no blank after the colon", "the real reason", "INFO:"]
    assert result.failure_message == "ERROR:no blank after the colonthe real reasonINFO:"
    assert result.log_lines == [
        ("I", -1, "clone: creating lv-one-7-0"),
        ("E", 7, "lvcreate failed"),
        ("W", 12, "spaced out"),
        ("D", 8, "octal like Ruby's Integer()"),
        ("D", -1, "not octal"),
    ]
    assert result.protocol_reply("TRANSFER", 7) == \
        "TRANSFER FAILURE 7 ERROR:no blank after the colonthe real reasonINFO:"


def test_failure_with_only_log_lines_reports_a_dash(remotes):
    tm(remotes, "delete", "echo 'ERROR: delete: it broke' >&2; exit 1")
    result = run_tm(remotes, "gfs2clvm", "delete", ["h:/p", "7", "0"])
    assert result.failure_message == "-"
    assert result.protocol_reply("TRANSFER", 7) == "TRANSFER FAILURE 7 -"
    assert result.log_lines == [("E", -1, "delete: it broke")]


def test_stdin_is_written_then_closed(remotes):
    tm(remotes, "premigrate", 'cat; echo "args=$*"')
    xml = base64.b64encode(b"<VM><ID>7</ID></VM>")
    result = run_tm(remotes, "gfs2clvm", "premigrate",
                    ["node1", "node2", "/var/lib/one/datastores/0/7", "7", "0"], stdin=xml)
    assert result.success
    assert result.stdout == xml.decode() + "args=node1 node2 /var/lib/one/datastores/0/7 7 0\n"


def test_stdin_is_closed_when_none_is_given(remotes):
    tm(remotes, "mv", "cat; echo done")
    started = time.monotonic()
    result = run_tm(remotes, "gfs2clvm", "mv", ["a:/x", "b:/x", "7", "0"], timeout=20)
    assert result.success and not result.timed_out
    assert result.stdout == "done\n"
    assert time.monotonic() - started < 10


def test_unread_stdin_does_not_block(remotes):
    tm(remotes, "monitor", "echo USED_MB=1")
    result = run_tm(remotes, "gfs2clvm", "monitor", ["0"], stdin=b"x" * (4 << 20), timeout=20)
    assert result.success and result.stdout == "USED_MB=1\n"


def test_sys_suffix_falls_back_to_the_plain_action(remotes):
    tm(remotes, "clone", "echo plain")
    result = run_tm(remotes, "gfs2clvm", "CLONE.ssh", ["a:b", "c:d", "7", "1"])
    assert result.success and result.stdout == "plain\n"
    tm(remotes, "clone.ssh", "echo suffixed")
    assert run_tm(remotes, "gfs2clvm", "clone.ssh", ["a:b", "c:d", "7", "1"]).stdout == "suffixed\n"


def test_missing_scripts_are_reported_like_one_tm(remotes):
    base = remotes / "tm" / "gfs2clvm"
    result = run_tm(remotes, "gfs2clvm", "mkimage", ["1", "raw", "h:/p", "7", "0"])
    assert not result.success and result.exit_code is None
    assert result.failure_message == f"Driver path '{base}/mkimage' does not exists"
    result = run_tm(remotes, "gfs2clvm", "mkimage.ssh", ["1", "raw", "h:/p", "7", "0"])
    assert result.failure_message == \
        f"Driver path '{base}/mkimage.ssh' nor '{base}/mkimage' exists"


def test_unknown_transfer_driver(remotes):
    result = run_tm(remotes, "nosuch", "clone", ["a:b", "c:d", "7", "1"])
    assert result.failure_message == "Transfer Driver 'nosuch' not available"
    assert result.protocol_reply("TRANSFER", 7) == \
        "TRANSFER FAILURE 7 Transfer Driver 'nosuch' not available"
    tm(remotes, "clone", "exit 0")
    result = run_tm(remotes, "gfs2clvm", "clone", ["a:b", "c:d", "7", "1"], enabled=["ssh"])
    assert result.failure_message == "Transfer Driver 'gfs2clvm' not available"


@pytest.mark.parametrize("bad", ["two words", "", "tab\there", "new\nline"])
def test_arguments_oned_cannot_produce_are_refused(remotes, bad):
    tm(remotes, "clone", "exit 0")
    with pytest.raises(NotRepresentable):
        run_tm(remotes, "gfs2clvm", "clone", ["a:b", bad, "7", "1"])


def test_cwd_env_session_and_niceness(remotes, tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_LOCATION", "/opt/one")       # must not leak into the script
    monkeypatch.setenv("SOMETHING_FROM_THE_TEST", "x")
    probe = (
        "import json, os\n"
        "env = dict(e.split('=', 1) for e in open('/proc/self/environ').read().split('\\0') if e)\n"
        "try:\n    open('/dev/tty'); tty = True\nexcept OSError:\n    tty = False\n"
        "print(json.dumps({'cwd': os.getcwd(), 'env': env, 'nice': os.nice(0),\n"
        "                  'own_group': os.getpgrp() == os.getpid(),\n"
        "                  'own_session': os.getsid(0) == os.getpid(), 'tty': tty}))\n")
    tm(remotes, "context", probe, shebang=f"#!{sys.executable}")
    var_lib_one = tmp_path / "var_lib_one"
    var_lib_one.mkdir()
    result = run_tm(remotes, "gfs2clvm", "context", ["/x/context.sh", "h:/p/disk.1", "7", "0"],
                    cwd=var_lib_one, env={"ONE_XMLRPC": "http://fe:2633/RPC2",
                                          "ONE_GFS2CLVM_CONF": "/etc/one/gfs2clvm.conf"})
    seen = json.loads(result.check().stdout)
    assert seen["cwd"] == str(var_lib_one.resolve())
    assert seen["env"] == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PRIORITY": "19", "HOME": str(var_lib_one), "USER": seen["env"]["USER"],
        "LOGNAME": seen["env"]["USER"], "ONE_XMLRPC": "http://fe:2633/RPC2",
        "ONE_GFS2CLVM_CONF": "/etc/one/gfs2clvm.conf"}
    assert seen["nice"] == min(os.nice(0) + 19, 19)
    assert seen["own_group"] and seen["own_session"] and not seen["tty"]


def test_default_cwd_is_a_private_var_lib_one(remotes):
    tm(remotes, "mv", "pwd")
    result = run_tm(remotes, "gfs2clvm", "mv", ["a:/x", "b:/x", "7", "0"])
    cwd = result.stdout.strip()
    assert os.path.basename(cwd) == "var_lib_one" and os.path.isdir(cwd)
    assert result.env["HOME"] == cwd == oneclient.default_var_lib_one()


def test_timeout_kills_the_process_group(remotes):
    tm(remotes, "clone", "sleep 60 & sleep 60")
    started = time.monotonic()
    result = run_tm(remotes, "gfs2clvm", "clone", ["a:b", "c:d", "7", "1"], timeout=0.5)
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.success
    assert result.failure_message == \
        f"Timeout executing {remotes}/tm/gfs2clvm/clone a:b c:d 7 1"


def test_a_background_child_holding_stdout_does_not_block(remotes):
    tm(remotes, "ln", "sleep 30 & echo $!")
    started = time.monotonic()
    result = run_tm(remotes, "gfs2clvm", "ln", ["a:b", "c:d", "7", "1"], timeout=20)
    try:
        assert result.success and time.monotonic() - started < 10
    finally:
        os.kill(int(result.stdout.split()[0]), 9)


def test_shellwords_escape_for_the_command_line():
    assert shellwords_escape("node1:/var/lib/one/0/7/disk.0") == "node1:/var/lib/one/0/7/disk.0"
    assert shellwords_escape("/x/context.sh:'name'") == "/x/context.sh:\\'name\\'"
    assert shellwords_escape("") == "''"


# -- transfer files ---------------------------------------------------------------

def test_transfer_runs_lines_in_order_and_stops_at_the_first_failure(remotes, tmp_path):
    log = tmp_path / "order"
    tm(remotes, "mkimage", f'echo "mkimage $*" >> {log}')
    tm(remotes, "clone", f'echo "clone $*" >> {log}; echo "INFO: 5 copying" >&2; '
                         'echo "lvcreate: VG vg_one lock failed" >&2; exit 1')
    tm(remotes, "delete", f'echo "delete $*" >> {log}')
    lines = [
        "# prolog for VM 5",
        "",
        "MKIMAGE gfs2clvm 1024 raw node1:/var/lib/one/datastores/0/5/disk.1 5 0",
        "   ",
        "CLONE gfs2clvm fe:/images/abc node1:/var/lib/one/datastores/0/5/disk.0 5 1",
        "DELETE gfs2clvm node1:/var/lib/one/datastores/0/5 5 0",
    ]
    out = run_transfer(remotes, 5, lines)
    assert out.reply == "TRANSFER FAILURE 5 lvcreate: VG vg_one lock failed"
    assert not out.success and len(out.results) == 2
    assert out.results[1].log_lines == [("I", 5, "copying")]
    assert log.read_text().splitlines() == [
        "mkimage 1024 raw node1:/var/lib/one/datastores/0/5/disk.1 5 0",
        "clone fe:/images/abc node1:/var/lib/one/datastores/0/5/disk.0 5 1"]


def test_transfer_success_and_driver_errors(remotes, tmp_path):
    tm(remotes, "mv", "exit 0")
    ok = run_transfer(remotes, 9, ["MV gfs2clvm a:/x b:/x 9 0", "MV.ssh gfs2clvm a:/x b:/x 9 0"])
    assert ok.success and ok.reply == "TRANSFER SUCCESS 9 -" and len(ok.results) == 2
    bad = run_transfer(remotes, 9, ["MV ceph a:/x b:/x 9 0", "MV gfs2clvm a:/x b:/x 9 0"])
    assert bad.reply == "TRANSFER FAILURE 9 Transfer Driver 'ceph' not available"
    assert len(bad.results) == 1
    missing = run_transfer_file(remotes, 9, tmp_path / "transfer.0.prolog")
    assert missing.reply == \
        f"TRANSFER FAILURE 9 Transfer file '{tmp_path}/transfer.0.prolog' does not exist"
    (tmp_path / "transfer.1.migrate").write_text("MV gfs2clvm a:/x b:/x 9 0\n")
    assert run_transfer_file(remotes, 9, tmp_path / "transfer.1.migrate").success


# -- datastore actions ------------------------------------------------------------

DS_ECHO = 'echo "argc=$# 1=$1 2=$2"; echo "stdin=$(cat)"'


def test_datastore_gets_base64_on_stdin_and_the_id_as_argument(remotes):
    script(remotes / "datastore" / "gfs2clvm" / "cp", DS_ECHO)
    xml64 = oneclient.b64("<DS_DRIVER_ACTION_DATA><IMAGE><ID>3</ID></IMAGE>"
                          "</DS_DRIVER_ACTION_DATA>")
    result = run_ds(remotes, "gfs2clvm", "cp", 3, xml64)
    assert result.stdout == f"argc=1 1=3 2=\nstdin={xml64}\n"


def test_datastore_legacy_argv(remotes):
    script(remotes / "datastore" / "gfs2clvm" / "cp", DS_ECHO)
    xml64 = oneclient.b64("<DS_DRIVER_ACTION_DATA/>")
    result = run_ds(remotes, "gfs2clvm", "cp", 3, xml64, legacy_argv=True)
    assert result.stdout == f"argc=2 1={xml64} 2=3\nstdin=\n"


def test_datastore_replies_and_the_one_line_rule(remotes):
    ds = remotes / "datastore" / "gfs2clvm"
    script(ds / "cp", "echo 'lvm://vg_one/lv-oneimg-3 raw'")
    script(ds / "mkfs", "echo lvm://vg_one/lv-oneimg-4; echo oops")
    script(ds / "monitor", "printf 'USED_MB=1\\nFREE_MB=2\\nTOTAL_MB=3\\n'")
    cp = run_ds(remotes, "gfs2clvm", "cp", 3, "PA==")
    assert cp.single_line_stdout() == "lvm://vg_one/lv-oneimg-3 raw"
    assert cp.protocol_reply("CP", 3) == "CP SUCCESS 3 lvm://vg_one/lv-oneimg-3 raw"
    mkfs = run_ds(remotes, "gfs2clvm", "mkfs", 4, "PA==")
    with pytest.raises(AssertionError, match="2 lines"):
        mkfs.single_line_stdout()
    assert mkfs.protocol_reply("MKFS", 4).split("\n") == \
        ["MKFS SUCCESS 4 lvm://vg_one/lv-oneimg-4", "oops"]
    monitor = run_ds(remotes, "gfs2clvm", "monitor", 100, "PA==")
    assert monitor.protocol_reply("MONITOR", 100) == \
        "MONITOR SUCCESS 100 " + base64.b64encode(b"USED_MB=1\nFREE_MB=2\nTOTAL_MB=3\n").decode()


def test_datastore_driver_errors(remotes):
    result = run_ds(remotes, "fs", "cp", 3, "PA==")
    assert result.protocol_reply("CP", 3) == "CP FAILURE 3 Datastore driver 'fs' not available"
    result = run_ds(remotes, "gfs2clvm", "stat", 3, "PA==")
    assert result.failure_message == \
        f"Internal error No such file or directory - {remotes}/datastore/gfs2clvm/stat"
    tm(remotes, "monitor", "echo USED_MB=5")
    system = run_ds(remotes, "gfs2clvm", "monitor", 0, "PA==", system_tm="gfs2clvm",
                    enabled_system=["gfs2clvm"])
    assert system.success and system.stdout == "USED_MB=5\n"
    refused = run_ds(remotes, "gfs2clvm", "monitor", 0, "PA==", system_tm="gfs2clvm")
    assert refused.failure_message == "System datastore driver 'gfs2clvm' not available"


# -- OpenNebula 3.x ---------------------------------------------------------------

@pytest.fixture
def tm3(tmp_path):
    commands = tmp_path / "tm_commands"
    conf_dir = tmp_path / "etc" / "tm_test"
    conf_dir.mkdir(parents=True)
    conf = conf_dir / "tm_test.conf"
    conf.write_text("# map\n\n  clone = test/tm_clone.sh  \nMV=/abs/tm_mv.sh\n"
                    "DELETE = test/tm_delete.sh\n")
    (conf_dir / "tm_testrc").write_text(
        '# rc\nVG_NAME=vg_cloudstorage\nDEFAULT_LV_SIZE="1G"\n'
        'get_vid() {\n    echo "$1" | sed -e "s%.*/\\([0-9]*\\)/images/.*%\\1%"\n}\n'
        "  INDENTED=not-exported\nDERIVED=${VG_NAME}-x\n")
    return commands, conf


def test_tm3_conf_mapping(tm3):
    commands, conf = tm3
    assert parse_tm3_conf(conf, commands) == {
        "CLONE": f"{commands}/test/tm_clone.sh", "MV": "/abs/tm_mv.sh",
        "DELETE": f"{commands}/test/tm_delete.sh"}


def test_tm3_rc_export_and_run(tm3):
    commands, conf = tm3
    assert read_rc(conf.with_name("tm_testrc")) == {
        "VG_NAME": "vg_cloudstorage", "DEFAULT_LV_SIZE": "1G", "DERIVED": "vg_cloudstorage-x"}
    script(commands / "test" / "tm_clone.sh",
           'echo "$VG_NAME $DEFAULT_LV_SIZE $DERIVED ${INDENTED:-unset} $ONE_XMLRPC"; '
           'printf "%s|" "$@"')
    result = run_tm3(commands, conf, "clone", ["fe:/img/abc", "node1:/var/lib/one/7/images/disk.0"],
                     env={"ONE_XMLRPC": "http://fe:2633/RPC2"})
    assert result.success
    assert result.stdout == ("vg_cloudstorage 1G vg_cloudstorage-x unset http://fe:2633/RPC2\n"
                             "fe:/img/abc|node1:/var/lib/one/7/images/disk.0|")
    assert result.protocol_reply("TRANSFER", 7) == "TRANSFER SUCCESS 7 -"


def test_tm3_failure_message_uses_the_error_markers(tm3):
    commands, conf = tm3
    script(commands / "test" / "tm_delete.sh",
           "echo 'ERROR: tm_delete.sh: rm failed' >&2\n"
           "printf 'ERROR MESSAGE --8<------\\nlvremove failed\\nERROR MESSAGE ------>8--\\n' >&2\n"
           "exit 1")
    result = run_tm3(commands, conf, "DELETE", ["node1:/var/lib/one/7/images"])
    assert result.failure_message == "lvremove failed"
    assert result.protocol_reply("TRANSFER", 7) == "TRANSFER FAILURE 7 lvremove failed"
    script(commands / "test" / "tm_delete.sh", "echo 'plain stderr' >&2; exit 1")
    assert run_tm3(commands, conf, "DELETE", ["node1:/x"]).failure_message == "-"


def test_tm3_unknown_command_and_transfer(tm3, tmp_path):
    commands, conf = tm3
    result = run_tm3(commands, conf, "mkswap", ["512", "node1:/x/disk.1"])
    assert result.failure_message == "COMMAND not found: MKSWAP 512 node1:/x/disk.1."
    script(commands / "test" / "tm_clone.sh", "exit 0")
    out = oneclient.run_transfer3(commands, conf, 7, [
        "CLONE fe:/img/a node1:/var/lib/one/7/images/disk.0",
        "MKSWAP 512 node1:/var/lib/one/7/images/disk.1",
        "CLONE fe:/img/b node1:/var/lib/one/7/images/disk.2"])
    assert out.reply == \
        "TRANSFER FAILURE 7 COMMAND not found: MKSWAP 512 node1:/var/lib/one/7/images/disk.1."
    assert len(out.results) == 2


def test_the_shipped_3x_map_and_rc():
    conf = REPO / "etc-one" / "tm_gfs2clvm" / "tm_gfs2clvm.conf"
    commands = REPO / "usr-lib-one-tm_commands"
    mapping = parse_tm3_conf(conf, commands)
    assert sorted(mapping) == sorted(["CLONE", "LN", "MKSWAP", "MKIMAGE", "DELETE", "MV",
                                      "CONTEXT"])
    for command, path in mapping.items():
        assert path == f"{commands}/gfs2clvm/tm_{command.lower()}.sh"
        assert os.access(path, os.X_OK)
    assert read_rc(oneclient.default_rc_path(conf)) == \
        {"ONE_GFS2CLVM_CONF": "/etc/one/gfs2clvm.conf"}
