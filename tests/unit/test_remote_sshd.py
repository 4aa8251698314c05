"""one_gfs2clvm.remote against a real sshd on 127.0.0.1 (see testkit/sshd.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from one_gfs2clvm import remote
from one_gfs2clvm.config import HostAddress
from one_gfs2clvm.errors import ConnectError, HostKeyError, RemoteCommandFailed, RemoteTimeout
from one_gfs2clvm.remote import CommandResult, Pipe, Remote, ShellFragment, get_remote
from testkit.sshd import free_port

HOST = "worker1"
ROOT = Path(__file__).resolve().parents[2]
# Prints each argument's exact bytes (hex), independent of the remote locale.
ARGV_DUMP = ["python3", "-c",
             "import sys, os, json; print(json.dumps([os.fsencode(a).hex() for a in sys.argv[1:]]))"]


@pytest.fixture
def rem(sshd):
    """A private (non-pooled) Remote to worker1, closed after the test."""
    r = Remote(HOST, sshd.config)
    yield r
    r.close()


def _hostile(tmp: Path) -> list[str]:
    return [
        "two words", "it's", 'say "hi"', "a;b", f"$(touch {tmp}/pwned1)", f"`touch {tmp}/pwned2`",
        f"true && touch {tmp}/pwned3", f"x | touch {tmp}/pwned4", "*", "/*", "~", "$HOME", "${PATH}",
        "line1\nline2", "\n", "tab\there", "-rf", "--", "-", "", " ", "\\", "'", '"', "'\"'\"'",
        "héllo wörld 日本語 🚀", "%s%n", "!!", "#comment", "a=b", "<in", ">out", "2>&1", "\x1b[31m",
    ]


def test_import_does_not_load_paramiko():
    code = "import one_gfs2clvm.remote, sys; assert 'paramiko' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_echo_round_trip(rem):
    result = rem.run(["echo", "hello", "world"])
    assert result == CommandResult(0, "hello world\n", "", b"hello world\n", b"")


def test_hostile_arguments_arrive_byte_exact(rem, tmp_path):
    args = _hostile(tmp_path)
    result = rem.run(ARGV_DUMP + args)
    got = [bytes.fromhex(h) for h in json.loads(result.stdout)]
    assert got == [a.encode("utf-8") for a in args]
    assert list(tmp_path.iterdir()) == [], "a hostile argument was interpreted by a shell"


def test_hostile_arguments_in_run_script(rem, tmp_path):
    args = _hostile(tmp_path)
    result = rem.run_script([["true"], ARGV_DUMP + args, ARGV_DUMP + args[::-1]])
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert [bytes.fromhex(h) for h in first] == [a.encode() for a in args]
    assert [bytes.fromhex(h) for h in second] == [a.encode() for a in args[::-1]]
    assert list(tmp_path.iterdir()) == []


def test_failure_surfaces_exit_status_and_stderr(rem):
    argv = ["sh", "-c", "echo partial; echo 'disk on fire' >&2; exit 3"]
    with pytest.raises(RemoteCommandFailed) as info:
        rem.run(argv)
    exc = info.value
    assert (exc.host, exc.command, exc.exit_status) == (HOST, shlex.join(argv), 3)
    assert exc.stderr == "disk on fire\n" and exc.stdout == "partial\n"
    assert str(exc) == f"{HOST}: {shlex.join(argv)}: disk on fire"
    assert exc.exit_code == 3  # RemoteError's process exit code


def test_stdout_is_seen_while_it_arrives_and_labeled_steps_run(rem):
    from one_gfs2clvm.remote import Labeled
    seen: list[bytes] = []
    step = Labeled(("sh", "-c", "printf 'a\\r'; sleep 0.3; printf 'b\\r'"), "two dots")
    result = rem.run_script([step], on_stdout=seen.append)
    assert result.stdout == "a\rb\r" and b"".join(seen) == b"a\rb\r"
    with pytest.raises(RemoteCommandFailed) as info:
        rem.run_script([Labeled(("sh", "-c", "exit 3"), "short label")])
    assert info.value.command == "short label"          # errors show the label only
    broken = rem.run_script([["echo", "x"]], on_stdout=lambda data: 1 / 0)
    assert broken.stdout == "x\n"                        # a failing watcher is dropped


def test_check_false_returns_result(rem):
    result = rem.run(["sh", "-c", "echo out; echo err >&2; exit 5"], check=False)
    assert (result.exit_status, result.stdout, result.stderr) == (5, "out\n", "err\n")


def test_invalid_utf8_is_replaced_but_raw_bytes_kept(rem):
    result = rem.run(["printf", "\\377ok"])
    assert result.stdout == "\ufffdok" and result.stdout_bytes == b"\xffok"


def test_empty_argv_is_refused(rem):
    with pytest.raises(ValueError):
        rem.run([])
    with pytest.raises(ValueError):
        rem.run_script([])
    with pytest.raises(ValueError):
        rem.run_script(["echo hi"])  # a bare string is not an argv list


def test_timeout_is_honoured_and_connection_survives(rem):
    start = time.monotonic()
    with pytest.raises(RemoteTimeout) as info:
        rem.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - start < 20
    assert str(info.value) == f"{HOST}: sleep 30: timed out after 1 s"
    assert rem.run(["echo", "still", "here"]).stdout == "still here\n"


def test_command_timeout_from_config_and_script_step_named(sshd):
    r = Remote(HOST, sshd.ssh_config(command_timeout=1.0))
    try:
        with pytest.raises(RemoteTimeout) as info:
            r.run_script([["true"], ["sleep", "30"], ["true"]])
        assert "sleep 30: timed out after 1 s (step 2 of 3)" in str(info.value)
    finally:
        r.close()


def test_connect_timeout_when_no_banner(sshd):
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever speaks
    port = silent.getsockname()[1]
    try:
        ssh = sshd.ssh_config(connect_timeout=1.0,
                              hosts={HOST: HostAddress("127.0.0.1", port)})
        start = time.monotonic()
        with pytest.raises((ConnectError, RemoteTimeout)) as info:
            Remote(HOST, ssh).run(["true"])
        assert time.monotonic() - start < 20
        assert HOST in str(info.value) and f"127.0.0.1:{port}" in str(info.value)
    finally:
        silent.close()


def test_connection_refused_names_host_and_address(sshd):
    port = free_port()  # nothing listens there
    ssh = sshd.ssh_config(hosts={HOST: HostAddress("127.0.0.1", port)})
    with pytest.raises(ConnectError) as info:
        Remote(HOST, ssh).run(["true"])
    assert str(info.value).startswith(f"{HOST}: cannot connect to 127.0.0.1:{port}: ")


def test_host_key_mismatch_refused_and_nothing_runs(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(sshd.other_pub))
    marker = tmp_path / "ran"
    with pytest.raises(HostKeyError) as info:
        Remote(HOST, sshd.ssh_config(known_hosts=str(known))).run(["touch", str(marker)])
    assert str(info.value) == (f"{HOST}: host key for 127.0.0.1:{sshd.port} does not match "
                               f"known_hosts {known}: refusing to connect")
    assert not marker.exists()
    assert known.read_text() == sshd.known_hosts_line(sshd.other_pub)  # never rewritten


def test_unknown_host_key_refused(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    marker = tmp_path / "ran"
    with pytest.raises(HostKeyError) as info:
        Remote(HOST, sshd.ssh_config(known_hosts=str(known))).run(["touch", str(marker)])
    assert "not in known_hosts" in str(info.value) and "ssh-ed25519 SHA256:" in str(info.value)
    assert not marker.exists() and known.read_text() == ""


def test_key_for_other_port_is_not_accepted(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"127.0.0.1 {sshd.host_pub}\n")  # right key, but for port 22
    with pytest.raises(HostKeyError, match="not in known_hosts"):
        Remote(HOST, sshd.ssh_config(known_hosts=str(known))).run(["true"])


def test_missing_known_hosts_file(sshd, tmp_path):
    missing = tmp_path / "nope" / "known_hosts"
    with pytest.raises(HostKeyError) as info:
        Remote(HOST, sshd.ssh_config(known_hosts=str(missing))).run(["true"])
    assert f"known_hosts file {missing} does not exist" in str(info.value)


# --- known_hosts lines paramiko's own loader cannot read (issue 8 §2) ---------

def _connect_with(sshd, tmp_path, text: str | bytes) -> Path:
    """known_hosts file with `text`; connect and run `touch <marker>`; the marker."""
    known = tmp_path / "known_hosts"
    known.write_bytes(text if isinstance(text, bytes) else text.encode())
    marker = tmp_path / "ran"
    remote_ = Remote(HOST, sshd.ssh_config(known_hosts=str(known)))
    try:
        remote_.run(["touch", str(marker)])
    finally:
        remote_.close()
    return marker


def _revoked_message(sshd, tmp_path) -> str:
    fingerprint = remote_key_fingerprint(sshd)
    return (f"{HOST}: host key for 127.0.0.1:{sshd.port} (ssh-ed25519 {fingerprint}) is "
            f"marked @revoked in known_hosts {tmp_path / 'known_hosts'}: refusing to connect")


def remote_key_fingerprint(sshd) -> str:
    import paramiko
    kind, blob = sshd.host_pub.split()
    return paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(blob)).fingerprint


@pytest.mark.parametrize("lines", [
    ["{good}", "@revoked * {host_pub}"],                      # listed AND revoked
    ["@revoked [127.0.0.1]:{port} {host_pub}", "{good}"],      # order does not matter
    ["@revoked [127.0.0.1]:{port} {host_pub}"],               # revoked only
    ["[127.0.0.1]:{port} {other_pub}", "@revoked otherhost {host_pub}"],  # any host name
    ["{good}", "  @revoked\t* {host_pub} old key, a comment"],
], ids=["listed-and-revoked", "revoked-first", "revoked-only", "other-key-listed",
        "with-comment"])
def test_revoked_host_key_is_refused(sshd, tmp_path, lines):
    text = "\n".join(lines).format(good=sshd.known_hosts_line(sshd.host_pub).strip(),
                                   host_pub=sshd.host_pub, other_pub=sshd.other_pub,
                                   port=sshd.port) + "\n"
    with pytest.raises(HostKeyError) as info:
        _connect_with(sshd, tmp_path, text)
    assert str(info.value) == _revoked_message(sshd, tmp_path)
    assert not (tmp_path / "ran").exists()


def test_revoked_other_key_and_cert_authority_lines_do_not_matter(sshd, tmp_path):
    text = (f"@cert-authority * {sshd.host_pub}\n"
            f"@revoked * {sshd.other_pub}\n"
            f"@cert-authority *.example.com {sshd.other_pub} comment\n"
            + sshd.known_hosts_line(sshd.host_pub))
    assert _connect_with(sshd, tmp_path, text).exists()


def test_cert_authority_grants_nothing(sshd, tmp_path):
    # paramiko verifies no host certificates: the server's plain key stays unknown
    with pytest.raises(HostKeyError, match=r"\(ssh-ed25519 SHA256:.*\) is not in known_hosts"):
        _connect_with(sshd, tmp_path, f"@cert-authority [127.0.0.1]:{sshd.port} "
                                      f"{sshd.host_pub}\n")


GARBAGE = [b"garbage", b"host ssh-ed25519 AAAA!!!", b"host ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
           b"h\xff\xfe ssh-ed25519 AAAA", b"@unknown-marker host ssh-ed25519 AAAA",
           b"host ssh-ed25519 Zm9v", b"host sk-new-key-type@example.com AAAA"]


def test_unusable_lines_are_skipped(sshd, tmp_path):
    good = sshd.known_hosts_line(sshd.host_pub).encode()
    assert _connect_with(sshd, tmp_path, b"\n".join(GARBAGE) + b"\n# comment\n" + good).exists()


def test_unusable_lines_are_named_when_the_host_is_not_found(sshd, tmp_path):
    with pytest.raises(HostKeyError) as info:
        _connect_with(sshd, tmp_path, b"\n".join(GARBAGE) + b"\n")
    message = str(info.value)
    assert message.startswith(f"{HOST}: host key for 127.0.0.1:{sshd.port} (ssh-ed25519 SHA256:")
    assert message.endswith(f"is not in known_hosts {tmp_path / 'known_hosts'}: refusing to "
                            f"connect (unusable lines skipped: 1, 2, 3, 4, 5, ...)")
    with pytest.raises(HostKeyError) as info:
        _connect_with(sshd, tmp_path, b"garbage\n" + sshd.known_hosts_line(sshd.other_pub).encode())
    assert str(info.value) == (f"{HOST}: host key for 127.0.0.1:{sshd.port} does not match "
                               f"known_hosts {tmp_path / 'known_hosts'}: refusing to connect "
                               f"(unusable lines skipped: 1)")


@pytest.mark.parametrize("line", [
    "@revoked * ssh-ed25519 AAAA!!!", "@revoked *", "@revoked * ssh-ed25519",
    "@revoked * ssh-rsa {blob}",                   # the blob is an ed25519 key
], ids=["bad-base64", "no-key", "no-base64", "type-mismatch"])
def test_unreadable_revoked_line_refuses_every_connection(sshd, tmp_path, line):
    line = line.format(blob=sshd.host_pub.split()[1])
    with pytest.raises(HostKeyError) as info:
        _connect_with(sshd, tmp_path, sshd.known_hosts_line(sshd.host_pub) + line + "\n")
    assert str(info.value) == (f"{HOST}: known_hosts {tmp_path / 'known_hosts'} line 2: "
                               f"unreadable @revoked line: refusing to connect to any host "
                               f"until it is fixed")
    assert not (tmp_path / "ran").exists()


def test_hashed_host_names_still_work(sshd, tmp_path):
    import paramiko
    hashed = paramiko.HostKeys.hash_host(f"[127.0.0.1]:{sshd.port}")
    assert _connect_with(sshd, tmp_path, f"{hashed} {sshd.host_pub}\n").exists()


def test_fields_separated_by_several_blanks(sshd, tmp_path):
    kind, blob = sshd.host_pub.split()
    assert _connect_with(sshd, tmp_path, f"  [127.0.0.1]:{sshd.port} \t {kind}   {blob}  "
                                         f"a comment\r\n").exists()


def test_unreadable_known_hosts_file(sshd, tmp_path):
    (tmp_path / "known_hosts").mkdir()
    with pytest.raises(HostKeyError) as info:
        Remote(HOST, sshd.ssh_config(known_hosts=str(tmp_path / "known_hosts"))).run(["true"])
    assert str(info.value) == (f"{HOST}: cannot read known_hosts {tmp_path / 'known_hosts'}: "
                               f"Is a directory")


def test_authentication_failure_is_connect_error(sshd):
    with pytest.raises(ConnectError) as info:
        Remote(HOST, sshd.ssh_config(identity_file=str(sshd.other_key))).run(["true"])
    assert not isinstance(info.value, HostKeyError)
    assert "authentication" in str(info.value)


def test_missing_identity_file_is_connect_error(sshd, tmp_path):
    with pytest.raises(ConnectError, match="identity file .* missing or not readable"):
        Remote(HOST, sshd.ssh_config(identity_file=str(tmp_path / "no_key"))).run(["true"])


def test_run_script_one_round_trip_and_clean_stderr(rem):
    step = ["sh", "-c", 'echo "$PPID"; echo "note $1" >&2', "sh"]
    result = rem.run_script([step + ["a"], step + ["b"], step + ["c"]])
    parents = result.stdout.split()
    assert len(parents) == 3 and len(set(parents)) == 1  # all children of one script shell
    assert result.stderr == "note a\nnote b\nnote c\n"
    assert result.stderr_bytes == result.stderr.encode()


def test_run_script_failure_names_step(rem, tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    failing = ["sh", "-c", "echo step-out; echo 'lvcreate: VG is locked' >&2; exit 5"]
    steps = [["touch", str(before)], ["sh", "-c", "echo early-warning >&2"], failing,
             ["touch", str(after)]]
    with pytest.raises(RemoteCommandFailed) as info:
        rem.run_script(steps)
    exc = info.value
    assert exc.command == shlex.join(failing) and exc.exit_status == 5
    assert exc.stderr == "lvcreate: VG is locked\n"
    assert "step-out" in exc.stdout
    assert str(exc) == f"{HOST}: {shlex.join(failing)}: lvcreate: VG is locked"
    assert before.exists() and not after.exists()
    result = rem.run_script(steps, check=False)
    assert result.exit_status == 5 and result.stderr == "early-warning\nlvcreate: VG is locked\n"


def test_run_script_stderr_without_trailing_newline(rem):
    steps = [["printf", "no-newline"], ["sh", "-c", "printf abc >&2"], ["sh", "-c", "printf def >&2"]]
    assert rem.run_script(steps).stderr == "abcdef"


def test_run_script_pipe_and_fragment(rem, tmp_path):
    out = rem.run_script([Pipe([["printf", "a\\nb\\n"], ["tr", "a-z", "A-Z"]]),
                          ShellFragment("echo fragment | tr a-z A-Z")])
    assert out.stdout == "A\nB\nFRAGMENT\n"
    after = tmp_path / "after"
    for stages, status in (([["sh", "-c", "echo x; exit 3"], ["cat"]], 3),
                           ([["echo", "x"], ["sh", "-c", "cat; exit 4"]], 4),
                           ([["echo", "x"], ["sh", "-c", "exit 6"], ["cat"]], 6)):
        pipe = Pipe(stages)
        with pytest.raises(RemoteCommandFailed) as info:
            rem.run_script([["true"], pipe, ["touch", str(after)]])
        assert info.value.exit_status == status and info.value.command == str(pipe)
        assert not after.exists()


def test_run_script_stdin_reaches_a_step(rem):
    result = rem.run_script([["true"], Pipe([["cat"], ["wc", "-c"]])], stdin=b"12345")
    assert result.stdout.strip() == "5"


def test_stdin_streaming_sha256(rem):
    data = os.urandom(20 * 1024 * 1024)
    expected = hashlib.sha256(data).hexdigest()
    assert rem.run(["sha256sum"], stdin=data).stdout.split()[0] == expected
    assert rem.run(["sha256sum"], stdin=io.BytesIO(data)).stdout.split()[0] == expected


def test_large_stdout_and_stderr_together(rem):
    code = ("import sys\n"
            "for i in range(160):\n"
            "    sys.stdout.buffer.write(b'o' * 65536); sys.stderr.buffer.write(b'e' * 65536)\n")
    result = rem.run(["python3", "-c", code])
    assert result.stdout_bytes == b"o" * (10 * 1024 * 1024)
    assert result.stderr_bytes == b"e" * (10 * 1024 * 1024)


def test_large_stdin_and_stdout_both_ways(rem):
    data = os.urandom(10 * 1024 * 1024)
    assert rem.run(["cat"], stdin=data).stdout_bytes == data


def test_remote_exiting_without_reading_stdin(rem):
    result = rem.run(["sh", "-c", "exit 2"], stdin=b"x" * (8 * 1024 * 1024), check=False)
    assert result.exit_status == 2


def test_failing_local_stdin_stream_is_reported(rem):
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, size=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError("local disk read error")
            return b"x" * 1000

    with pytest.raises(OSError, match="local disk read error"):
        rem.run(["cat"], stdin=Broken(), timeout=30)
    assert rem.run(["echo", "ok"]).stdout == "ok\n"


def test_pool_reuses_one_connection(sshd):
    remote.close_all()
    first = get_remote(HOST, sshd.config)
    assert get_remote(HOST, sshd.config) is first
    first.run(["true"])
    transport = first.transport()
    first.run(["echo", "again"])
    assert first.transport() is transport
    results = []
    threads = [threading.Thread(target=lambda: results.append(get_remote(HOST, sshd.config)
                                                              .run(["echo", "x"]).stdout))
               for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["x\n"] * 5 and first.transport() is transport
    remote.close_all()
    second = get_remote(HOST, sshd.config)
    assert second is not first
    assert second.run(["echo", "new"]).stdout == "new\n"
    remote.close_all()


def test_reconnects_after_connection_dropped(rem):
    rem.run(["true"])
    rem.transport().close()
    assert rem.run(["echo", "back"]).stdout == "back\n"
