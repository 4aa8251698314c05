"""Run installed driver actions the way OpenNebula's driver programs do.

A test-side stand-in for `one_tm.rb` (TRANSFER files, and the TM steps
`one_vmm_exec.rb` runs with the same code), `one_datastore.rb`, and the 3.x
`one_tm` with its command map.  Written from the behaviour documented in
/work/shared/reference/opennebula-interface.md (sections 2.1, 5.1-5.4) and the
driver helpers it describes; no OpenNebula code is used.

What a script sees, as under OpenNebula:
  * argv: script path + the words of the transfer line, one argv element each
    (oned never puts a blank inside an argument: the transfer file is split on
    blanks, so an argument with whitespace is refused here as a test bug);
  * cwd /var/lib/one (default: a private `var_lib_one` temp dir, also $HOME,
    since that is oneadmin's home);
  * stdin a pipe that is written (base64 XML for pre/post/failmigrate, monitor
    and datastore actions) and closed, so `cat` sees EOF at once;
  * a fresh session: own process group, no controlling tty;
  * niceness raised by PRIORITY (defaultrc: 19), because the driver program
    runs under `nice -n $PRIORITY` and its children inherit it;
  * environment: PATH, PRIORITY, HOME, USER/LOGNAME, no ONE_LOCATION, plus
    what the caller adds (ONE_XMLRPC, ONE_AUTH, ONE_GFS2CLVM_CONF ...).

Result mapping (modern drivers): exit 0 = SUCCESS; stderr lines matching
LOG_LINE become LOG messages; on failure the *other* stderr lines, each
stripped, are the error text.  Note that the modern drivers concatenate those
lines without any separator ("a" + "b" -> "ab"): a script should put its
reason on ONE plain stderr line and prefix everything else with INFO:/ERROR:.
OpenNebula 3.x instead takes the text between the `ERROR MESSAGE --8<------`
and `ERROR MESSAGE ------>8--` marker lines (tm_common.sh's error_message),
"-" when there is none; run_tm3 results use that rule.
"""

from __future__ import annotations

import atexit
import base64
import getpass
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_PRIORITY = 19

# One stripped stderr line -> (severity word, optional id, text)
LOG_LINE = re.compile(r"^(ERROR|INFO|WARN|DEBUG):\s+(\d+)?\s*(.*)$", re.ASCII)
SEVERITY = {"ERROR": "E", "INFO": "I", "WARN": "W", "DEBUG": "D"}
# OpenNebula 3.x: the failure reason sits between these two stderr lines
ERROR_OPEN = "ERROR MESSAGE --8<------"
ERROR_CLOSE = "ERROR MESSAGE ------>8--"
LOG_LINE_3X = re.compile(r"^(ERROR|DEBUG|INFO):(.*)$")

_RUBY_BLANKS = " \t\r\n\f\v\0"   # what Ruby's String#strip removes
_READ_GRACE = 0.1                # readers get this long after the process exits
_KILL_GRACE = 5.0                # SIGTERM -> SIGKILL on a timeout


class NotRepresentable(AssertionError):
    """The test asked for something oned cannot produce (e.g. a blank in an argument)."""


# -- results --------------------------------------------------------------------

@dataclass
class ActionResult:
    """What one script run produced, and how OpenNebula would report it."""

    command: list[str]                 # argv run (script path first)
    command_line: str                  # as the driver builds it (path + escaped args)
    exit_code: int | None              # None: nothing was run (driver_error)
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    cwd: str = ""
    env: dict = field(default_factory=dict)
    timed_out: bool = False
    driver_error: str | None = None    # refused by the driver program itself
    flavour: str = "modern"            # "modern" | "3.x" (result mapping rules)
    duration: float = 0.0

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def success(self) -> bool:
        return self.driver_error is None and not self.timed_out and self.exit_code == 0

    def _stderr_lines(self) -> list[str]:
        return [line.strip(_RUBY_BLANKS) for line in self.stderr.split("\n")]

    @property
    def failure_lines(self) -> list[str]:
        """The non-empty stderr lines that are not log lines (modern rule)."""
        return [line for line in self._stderr_lines() if line and not LOG_LINE.match(line)]

    @property
    def failure_message(self) -> str:
        """The error text oned shows for this run ("-" when there is none)."""
        if self.driver_error is not None:
            return self.driver_error
        if self.timed_out:
            return f"Timeout executing {self.command_line}".strip(_RUBY_BLANKS)
        if self.flavour == "3.x":
            match = re.search(rf"^{re.escape(ERROR_OPEN)}\n(.*?){re.escape(ERROR_CLOSE)}$",
                              self.stderr, re.M | re.S)
            return match.group(1).strip(_RUBY_BLANKS) if match else "-"
        text = "".join(self.failure_lines)   # sic: no separator, see module doc
        return text.strip(_RUBY_BLANKS) or "-"

    @property
    def log_lines(self) -> list[tuple[str, int, str]]:
        """(severity letter, id or -1, text) for each LOG message the run produces.

        Modern drivers: stderr lines matching LOG_LINE, id from the number after
        the colon.  3.x: every stdout line (and on failure every stderr line),
        severity from an ERROR:/DEBUG:/INFO: prefix else I, id -1 (3.x sends
        them to the VM's log).
        """
        if self.flavour == "3.x":
            out = []
            texts = [self.stdout] + ([] if self.success else [self.stderr])
            for text in texts:
                for line in text.strip(_RUBY_BLANKS).split("\n"):
                    if not line.strip(_RUBY_BLANKS):
                        continue
                    m = LOG_LINE_3X.match(line)
                    level, body = (SEVERITY[m.group(1)], m.group(2)) if m else ("I", line)
                    out.append((level, -1, body.strip(_RUBY_BLANKS)))
            return out
        out = []
        for line in self._stderr_lines():
            m = LOG_LINE.match(line)
            if m:
                out.append((SEVERITY[m.group(1)], _ruby_integer(m.group(2)),
                            m.group(3).strip(_RUBY_BLANKS)))
        return out

    def protocol_reply(self, action_name: str, obj_id: int | str) -> str:
        """The reply line(s) the driver program writes to oned, without the final newline.

        TM ("TRANSFER", and 3.x): success info is always "-" (stdout dropped).
        Datastore actions: success info is stdout verbatim (a second stdout line
        therefore leaks out as a stray protocol line); MONITOR's is base64.
        """
        action = action_name.upper()
        if not self.success:
            line = f"{action} FAILURE {obj_id} {self.failure_message}"
        elif action == "TRANSFER" or self.flavour == "3.x":
            line = f"{action} SUCCESS {obj_id} -"
        else:
            info = self.stdout
            if action == "MONITOR":
                info = base64.b64encode(self.stdout_bytes).decode()
            line = f"{action} SUCCESS {obj_id} {info or '-'}"
        return line[:-1] if line.endswith("\n") else line

    def single_line_stdout(self) -> str:
        """stdout without its final newline; AssertionError if it has several lines."""
        text = self.stdout
        body = text[:-1] if text.endswith("\n") else text
        if "\n" in body:
            raise AssertionError(f"stdout has {body.count(chr(10)) + 1} lines, "
                                 f"oned expects one: {text!r}")
        return body

    def check(self) -> "ActionResult":
        """Raise AssertionError with the details unless the run succeeded."""
        if not self.success:
            raise AssertionError(f"{self.command_line}: exit {self.exit_code}: "
                                 f"{self.failure_message}\nstderr:\n{self.stderr}")
        return self


@dataclass
class TransferResult:
    """A whole TRANSFER file: the reply line and the result of each line run."""

    vm_id: int | str
    reply: str
    results: list[ActionResult]

    @property
    def success(self) -> bool:
        return self.reply.startswith("TRANSFER SUCCESS ")


# -- helpers --------------------------------------------------------------------

def _ruby_integer(digits: str | None) -> int:
    """Ruby's Integer(): leading 0 means octal, and invalid octal means no id (-1)."""
    if digits is None:
        return -1
    if len(digits) > 1 and digits.startswith("0"):
        try:
            return int(digits, 8)
        except ValueError:
            return -1
    return int(digits)


def shellwords_escape(word: str) -> str:
    """Ruby Shellwords.escape: how the driver quotes each argument on its command line."""
    if word == "":
        return "''"
    escaped = re.sub(r"([^A-Za-z0-9_\-.,:+/@\n])", r"\\\1", word)
    return escaped.replace("\n", "'\n'")


def b64(xml: str | bytes) -> str:
    """Base64 the way oned sends driver XML: one line, no newline."""
    data = xml.encode() if isinstance(xml, str) else xml
    return base64.b64encode(data).decode()


_default_dirs: dict[str, str] = {}


def default_var_lib_one() -> str:
    """A private stand-in for /var/lib/one (cwd and $HOME of the runs), one per process."""
    if "var_lib_one" not in _default_dirs:
        base = tempfile.mkdtemp(prefix="oneclient-")
        path = os.path.join(base, "var_lib_one")
        os.mkdir(path)
        _default_dirs["var_lib_one"] = path
        atexit.register(shutil.rmtree, base, True)
    return _default_dirs["var_lib_one"]


def base_env(cwd: str, priority: int | None = DEFAULT_PRIORITY,
             extra: dict | None = None) -> dict:
    """The environment a driver script gets: oned's (small, no ONE_LOCATION) + defaultrc."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    env = {"PATH": DEFAULT_PATH, "HOME": cwd, "USER": user, "LOGNAME": user}
    if priority is not None:
        env["PRIORITY"] = str(priority)
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def _check_args(args) -> list[str]:
    words = [str(a) for a in args]
    for word in words:
        if word == "" or re.search(r"\s", word):
            raise NotRepresentable(f"argument {word!r}: oned splits transfer lines on "
                                   "blanks, so an argument cannot be empty or contain one")
    return words


def run_script(path: str | os.PathLike, args, stdin: bytes | str | None = None,
               env: dict | None = None, cwd: str | os.PathLike | None = None,
               timeout: float | None = None, priority: int | None = DEFAULT_PRIORITY,
               flavour: str = "modern") -> ActionResult:
    """Run one action script like LocalCommand.run does, and collect the result."""
    cwd = os.fspath(cwd) if cwd is not None else default_var_lib_one()
    path = os.fspath(path)
    words = [str(a) for a in args]
    command = [path, *words]
    command_line = path + " " + " ".join(shellwords_escape(w) for w in words)
    full_env = base_env(cwd, priority, env)
    data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")

    def niced():
        if priority:
            os.nice(priority)

    started = time.monotonic()
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd, env=full_env,
                                start_new_session=True, preexec_fn=niced, close_fds=True)
    except OSError as exc:
        # Ruby raises on a failed spawn; GenericCommand turns that into code 255
        # and the message "Internal error <exception>".
        return ActionResult(command, command_line, 255, cwd=cwd, env=full_env,
                            driver_error=f"Internal error {exc.strerror} - {path}",
                            flavour=flavour, duration=time.monotonic() - started)

    out, err, timed_out = _communicate(proc, data, timeout)
    return ActionResult(command, command_line, proc.returncode, out, err, cwd=cwd,
                        env=full_env, timed_out=timed_out, flavour=flavour,
                        duration=time.monotonic() - started)


def _communicate(proc: subprocess.Popen, data: bytes, timeout: float | None):
    """Write stdin then close it; read both pipes until the process exits.

    Like the Ruby drivers, stop reading shortly after the process has exited
    even if a background child still holds the pipes.  On timeout the process
    group gets SIGTERM (then SIGKILL if it lingers).
    """
    chunks = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    sel = selectors.DefaultSelector()
    for pipe in (proc.stdout, proc.stderr):
        os.set_blocking(pipe.fileno(), False)
        sel.register(pipe.fileno(), selectors.EVENT_READ)
    view = memoryview(data)
    if data:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
    else:
        proc.stdin.close()

    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    exited_at = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _READ_GRACE:
                break
            if deadline is not None and not timed_out and now > deadline:
                timed_out = True
                _kill_group(proc)
                exited_at = time.monotonic()
                continue
            wait = 0.05
            if deadline is not None and not timed_out:
                wait = max(0.0, min(wait, deadline - now))
            for key, _ in sel.select(wait):
                fd = key.fd
                if not proc.stdin.closed and fd == proc.stdin.fileno():
                    try:
                        written = os.write(fd, view[:65536])
                        view = view[written:]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:   # the script does not read stdin
                        view = view[len(view):]
                    if not view:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    sel.unregister(fd)
    finally:
        sel.close()
        if not proc.stdin.closed:
            proc.stdin.close()
        out = b"".join(chunks[proc.stdout.fileno()])
        err = b"".join(chunks[proc.stderr.fileno()])
        proc.stdout.close()
        proc.stderr.close()
    if timed_out:
        try:
            proc.wait(_KILL_GRACE)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    else:
        proc.wait()
    return out, err, timed_out


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)      # start_new_session: pgid == pid
    except ProcessLookupError:
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    _signal_group(proc, signal.SIGTERM)


# -- modern TM (one_tm.rb / one_vmm_exec.rb) ------------------------------------

def _enabled(base: Path, enabled) -> list[str]:
    if enabled is not None:
        return [e.strip() for e in enabled]
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def _refused(command: list[str], message: str, flavour: str = "modern") -> ActionResult:
    return ActionResult(command, " ".join(command), None, driver_error=message,
                        flavour=flavour)


def tm_script_path(remotes_dir, tm_name: str, action: str, enabled=None) -> tuple[str | None, str | None]:
    """(script path, None) or (None, driver error) for one TM action, like one_tm.rb."""
    base = Path(remotes_dir) / "tm"
    if tm_name not in _enabled(base, enabled):
        return None, f"Transfer Driver '{tm_name}' not available"
    cmd = action.lower()
    path = os.path.join(base, tm_name, cmd)
    if os.path.exists(path):
        return path, None
    if "." not in cmd:
        return None, f"Driver path '{path}' does not exists"
    shortened = os.path.join(base, tm_name, cmd.rsplit(".", 1)[0])
    if not os.path.exists(shortened):
        return None, f"Driver path '{path}' nor '{shortened}' exists"
    return shortened, None


def run_tm(remotes_dir, tm_name: str, action: str, args, stdin: bytes | str | None = None,
           env: dict | None = None, timeout: float | None = None, cwd=None,
           enabled=None, priority: int | None = DEFAULT_PRIORITY) -> ActionResult:
    """Run `<remotes_dir>/tm/<tm_name>/<action> args...` like one_tm.rb's do_transfer_action.

    `action` may carry the `.<sys>` suffix (`clone.ssh`): the suffixed script is
    used if it exists, else the plain one.  `enabled` is one_tm's `-d` list
    (default: every directory under remotes/tm).  `timeout` is the test's own
    guard: one_tm applies none to TM scripts.
    """
    words = _check_args(args)
    path, error = tm_script_path(remotes_dir, tm_name, action, enabled)
    if error:
        return _refused([action.lower(), tm_name, *words], error)
    return run_script(path, words, stdin=stdin, env=env, cwd=cwd, timeout=timeout,
                      priority=priority)


def run_transfer(remotes_dir, vm_id: int | str, lines, env: dict | None = None,
                 timeout: float | None = None, cwd=None, enabled=None,
                 priority: int | None = DEFAULT_PRIORITY) -> TransferResult:
    """Execute a transfer file's lines in order like one_tm.rb's TRANSFER action.

    Each line is `ACTION tm args...`; blank and `#` lines are skipped; the first
    failing line ends the file.  Returns the reply and the per-line results.
    """
    results: list[ActionResult] = []
    for line in lines:
        if re.match(r"\s*#", line) or re.fullmatch(r"\s*", line):
            continue
        words = line.split()
        if len(words) < 2:
            result = _refused(words, "Transfer Driver '' not available")
        else:
            path, error = tm_script_path(remotes_dir, words[1], words[0], enabled)
            if error:
                result = _refused(words, error)
            else:
                result = run_script(path, words[2:], env=env, cwd=cwd, timeout=timeout,
                                    priority=priority)
        results.append(result)
        if not result.success:
            return TransferResult(vm_id, result.protocol_reply("TRANSFER", vm_id), results)
    return TransferResult(vm_id, f"TRANSFER SUCCESS {vm_id} -", results)


def run_transfer_file(remotes_dir, vm_id: int | str, transfer_file, **kwargs) -> TransferResult:
    """TRANSFER <vm_id> <file>: like run_transfer, reading the lines from a file."""
    if not os.path.exists(transfer_file):
        return TransferResult(vm_id, f"TRANSFER FAILURE {vm_id} Transfer file "
                                     f"'{transfer_file}' does not exist", [])
    text = Path(transfer_file).read_text()
    return run_transfer(remotes_dir, vm_id, text.split("\n"), **kwargs)


# -- datastore (one_datastore.rb) -----------------------------------------------

def run_ds(remotes_dir, ds_mad: str, action: str, obj_id: int | str, xml_b64: str,
           env: dict | None = None, timeout: float | None = None, cwd=None,
           enabled=None, legacy_argv: bool = False, system_tm: str | None = None,
           enabled_system=("shared", "ssh", "ceph"),
           priority: int | None = DEFAULT_PRIORITY) -> ActionResult:
    """Run a datastore action like one_datastore.rb.

    Default (OpenNebula >= 6.8): `<remotes>/datastore/<ds_mad>/<action> <id>`
    with the base64 XML on stdin.  legacy_argv=True (<= 6.6): the base64 in
    argv[1], the id in argv[2], nothing on stdin.  system_tm: a MONITOR of a
    system datastore (DATASTORE/TYPE 1) runs `<remotes>/tm/<system_tm>/monitor`
    instead, if system_tm is in enabled_system (one_datastore's -s list).
    `timeout` stands for one_datastore's -w.
    """
    cmd = action.lower()
    if system_tm is not None:
        if system_tm not in list(enabled_system):
            return _refused([cmd, str(obj_id)],
                            f"System datastore driver '{system_tm}' not available")
        path = os.path.join(remotes_dir, "tm", system_tm, cmd)
    else:
        if ds_mad not in _enabled(Path(remotes_dir) / "datastore", enabled):
            return _refused([cmd, str(obj_id)], f"Datastore driver '{ds_mad}' not available")
        path = os.path.join(remotes_dir, "datastore", ds_mad, cmd)
    if legacy_argv:
        args, stdin = _check_args([xml_b64, obj_id]), None
    else:
        args, stdin = _check_args([obj_id]), xml_b64
    return run_script(path, args, stdin=stdin, env=env, cwd=cwd, timeout=timeout,
                      priority=priority)


# -- OpenNebula 3.x (one_tm with a command map) ---------------------------------

def parse_tm3_conf(conf_path, tm_commands_dir) -> dict[str, str]:
    """COMMAND -> script from a 3.x tm_<x>.conf; relative scripts are under tm_commands_dir."""
    commands: dict[str, str] = {}
    for line in Path(conf_path).read_text().split("\n"):
        if re.fullmatch(r"\s*(#.*)?", line):
            continue
        m = re.fullmatch(r"\s*(\w+)\s*=\s*(.*?)\s*", line)
        if not m:
            raise AssertionError(f"{conf_path}: cannot parse line {line!r}")
        path = m.group(2)
        if not path.startswith("/"):
            path = os.path.join(os.fspath(tm_commands_dir), path)
        commands[m.group(1).upper()] = path
    return commands


def read_rc(rc_path) -> dict[str, str]:
    """The variables the 3.x one_tm wrapper exports from an rc file.

    Like its export_rc_vars: the file is sourced by sh, then the names that
    appear as `NAME=` at the start of a line are exported.  A missing file
    exports nothing.
    """
    if rc_path is None or not os.path.exists(rc_path):
        return {}
    text = Path(rc_path).read_text()
    names = [n for n in re.findall(r"^([A-Za-z0-9_-]*)=", text, re.M)
             if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
    if not names:
        return {}
    script = '. "$1" >/dev/null || exit 1; shift; export "$@"; exec env -0'
    result = subprocess.run(["/bin/sh", "-c", script, "sh", os.fspath(rc_path), *names],
                            capture_output=True, env={"PATH": DEFAULT_PATH}, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{rc_path}: sourcing failed: {result.stderr.decode().strip()}")
    exported = {}
    for item in result.stdout.split(b"\0"):
        name, sep, value = item.decode().partition("=")
        if sep and name in names:
            exported[name] = value
    return exported


def default_rc_path(conf_path) -> Path:
    """tm_<x>/tm_<x>.conf -> tm_<x>/tm_<x>rc (where 3.x one_tm looks for it)."""
    conf = Path(conf_path)
    return conf.with_name(conf.name.split(".")[0] + "rc")


def run_tm3(tm_commands_dir, conf_path, cmd: str, args, rc_path=None,
            env: dict | None = None, timeout: float | None = None, cwd=None,
            stdin: bytes | str | None = None,
            priority: int | None = DEFAULT_PRIORITY) -> ActionResult:
    """Run one 3.x TM command (`CLONE src dst`) through the tm_<x>.conf map.

    The rc file (default: beside the conf, tm_<x>rc) is exported into the
    environment first, caller env on top.  Unknown command -> the 3.x failure
    "COMMAND not found: <line>.".
    """
    words = _check_args(args)
    command = cmd.upper()
    commands = parse_tm3_conf(conf_path, tm_commands_dir)
    if command not in commands:
        line = " ".join([command, *words])
        return _refused([command, *words], f"COMMAND not found: {line}.", flavour="3.x")
    rc = default_rc_path(conf_path) if rc_path is None else rc_path
    merged = {**read_rc(rc), **(env or {})}
    return run_script(commands[command], words, stdin=stdin, env=merged, cwd=cwd,
                      timeout=timeout, priority=priority, flavour="3.x")


def run_transfer3(tm_commands_dir, conf_path, vm_id: int | str, lines, **kwargs) -> TransferResult:
    """A 3.x transfer file (`CLONE src dst` lines, no TM name) through run_tm3."""
    results: list[ActionResult] = []
    for line in lines:
        if re.match(r"\s*#", line) or re.fullmatch(r"\s*", line):
            continue
        words = line.split()
        result = run_tm3(tm_commands_dir, conf_path, words[0], words[1:], **kwargs)
        results.append(result)
        if not result.success:
            return TransferResult(vm_id, result.protocol_reply("TRANSFER", vm_id), results)
    return TransferResult(vm_id, f"TRANSFER SUCCESS {vm_id} -", results)


# -- OpenNebula 3.2 image manager (one_image.rb, "fs" remotes) --------------------

def run_image3(remotes_dir, action: str, image_id: int | str, args, env: dict | None = None,
               timeout: float | None = None, cwd=None,
               priority: int | None = DEFAULT_PRIORITY) -> ActionResult:
    """Run a 3.2 image manager action like one_image.rb: locally,
    `<remotes>/image/fs/<action> <args...> <id>` -- the message's own
    arguments already end with the id for cp/mkfs/mv/rm, and the driver
    appends it once more.  On success oned takes stdout as `SOURCE SIZE_MB`
    (reply `<ACTION> SUCCESS <id> <stdout>`); a failure's reason is the
    3.x-framed stderr block (failure_message)."""
    path = os.path.join(remotes_dir, "image", "fs", action.lower())
    return run_script(path, _check_args([*args, image_id]), env=env, cwd=cwd,
                      timeout=timeout, priority=priority, flavour="3.x")
