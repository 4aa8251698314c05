"""How an OpenNebula action runs: logging, undo, one error line, exit code.

OpenNebula's driver programs turn an action's stderr into the failure reason,
except lines starting `INFO:`/`ERROR:`/`WARN:`/`DEBUG:`, which become log
entries (`INFO: <vmid> text` lands in that VM's log).  So progress goes out
as `INFO:` lines and a failure as exactly one bare line.

How run() ends an action that fails (undo steps are rolled back first):
  * DriverError: its one line, its exit code;
  * any other exception (a bug, or input no check caught): one line
    `gfs2clvm <action>: internal error: <Type>: <message>`, exit code 70;
  * SIGINT (KeyboardInterrupt) or SIGTERM (run() makes it raise Terminated
    while the action runs): `gfs2clvm <action>: interrupted by SIGTERM`, exit
    code 128 + signal number;
  * SystemExit (actions do not raise it): undo, then it propagates unchanged.
Once an action has failed, SIGINT/SIGTERM are only noted (an INFO line) until
the undo is done and the line is out (SIGKILL still ends it at once).
No traceback reaches stderr unless the environment has ONE_GFS2CLVM_DEBUG=1
(any value but empty or 0): then every failure's traceback is written first
as `DEBUG:` lines, which OpenNebula logs but does not show as the reason.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from ..config import Config
from ..config import load as load_config
from ..errors import DriverError, Terminated

DEBUG_ENV = "ONE_GFS2CLVM_DEBUG"
INTERNAL_ERROR = 70
MAX_INTERNAL_TEXT = 400   # characters of an unexpected exception's message shown


@dataclass
class Action:
    """The context every action function receives."""

    name: str
    config: Config
    vm_id: int | None = None
    stdin: bytes = b""
    _api: object = None
    _cluster: object = None
    undo: "Undo" = field(default_factory=lambda: Undo())
    _held: ExitStack = field(default_factory=ExitStack)

    def bind_vm(self, vm_id: int) -> None:
        """This action works on VM `vm_id`: its log lines name the VM, and it holds
        that VM's front-end lock until it has ended (undo included), so two
        actions of one VM -- a delete racing a clone -- never interleave.
        Called once the argv is checked, before any remote call."""
        if self.vm_id is not None and self.vm_id != vm_id:
            raise ValueError(f"action already bound to VM {self.vm_id}, not {vm_id}")
        if self.vm_id is None:
            from ..locking import named_lock
            self._held.enter_context(named_lock(self.config, f"vm-{vm_id}"))
        self.vm_id = vm_id

    def release(self) -> None:
        """Drop what bind_vm holds (run() calls it when the action has ended)."""
        self._held.close()

    def log(self, message: str) -> None:
        who = f"{self.vm_id} " if self.vm_id is not None else ""
        for line in str(message).splitlines() or [""]:  # every line a log line
            sys.stderr.write(f"INFO: {who}gfs2clvm {self.name}: {line}\n")
        sys.stderr.flush()

    @property
    def cluster(self):
        if self._cluster is None:
            from ..cluster import Cluster
            self._cluster = Cluster(self.config)
        return self._cluster

    @property
    def api(self):
        if self._api is None:
            from .api import CachedApi, api_from_env
            self._api = CachedApi(api_from_env(self.config))
        return self._api


class Undo:
    """Undo steps of a multi-step action, run in reverse order if it fails."""

    def __init__(self):
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, description: str, step: Callable[[], object]) -> None:
        self._steps.append((description, step))

    def commit(self) -> None:
        self._steps.clear()

    def rollback(self, log: Callable[[str], None]) -> None:
        while self._steps:
            description, step = self._steps.pop()
            try:
                step()
                log(f"undone: {description}")
            except Exception as exc:  # keep undoing the rest; report what stayed
                detail = exc.one_line() if isinstance(exc, DriverError) else repr(exc)
                log(f"could not undo ({description}): {detail}")


# OpenNebula 3.x shows only the text between these two stderr lines as the
# failure reason (its scripts_common.sh error_message); later versions take
# every stderr line that is not a log line.
ERROR_OPEN_3X = "ERROR MESSAGE --8<------"
ERROR_CLOSE_3X = "ERROR MESSAGE ------>8--"


def _error_line(text: str, legacy: bool) -> None:
    try:
        if legacy:
            sys.stderr.write(f"{ERROR_OPEN_3X}\n{text}\n{ERROR_CLOSE_3X}\n")
        else:
            sys.stderr.write(f"{text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the exit code still tells
        pass


def run(name: str, function: Callable[[Action, list[str]], None], argv: list[str],
        config: Config | None = None, stdin: bytes | None = None,
        legacy: bool = False) -> int:
    """Run one action; return its exit code (0 = success).  `legacy`: 3.x error framing."""
    started = time.monotonic()
    action = None
    with _sigterm_raises():
        try:
            action = Action(name=name, config=config or load_config())
            if stdin is not None:
                action.stdin = stdin
            function(action, argv)
            action.undo.commit()
            action.log(f"done in {time.monotonic() - started:.1f} s")
            return 0
        except BaseException as exc:  # every way out of an action: see the docstring
            return _failed(name, action, exc, legacy)
        finally:
            if action is not None:
                action.release()


def _failed(name: str, action: Action | None, exc: BaseException, legacy: bool) -> int:
    """Undo, then one line on stderr; the exit code."""
    log = action.log if action is not None else _log_without_action(name)
    with _signals_noted(log):  # until the line is out
        if action is not None:
            action.undo.rollback(action.log)
        if isinstance(exc, SystemExit):
            raise exc
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            _debug_traceback(name, exc)
        if isinstance(exc, DriverError):
            _error_line(exc.one_line(), legacy)
            return exc.exit_code
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
            _error_line(f"gfs2clvm {name}: interrupted by {signal.Signals(signum).name}",
                        legacy)
            return 128 + signum
        _error_line(f"gfs2clvm {name}: internal error: {type(exc).__name__}: "
                    f"{_exception_text(exc)}", legacy)
        return INTERNAL_ERROR


def _exception_text(exc: BaseException) -> str:
    try:
        text = " ".join(str(exc).split())
    except Exception:  # a broken __str__ must not hide the failure
        text = ""
    if len(text) > MAX_INTERNAL_TEXT:
        text = text[:MAX_INTERNAL_TEXT - 3] + "..."
    return text or "(no message)"


def _debug_traceback(name: str, exc: BaseException) -> None:
    try:
        for chunk in traceback.format_exception(type(exc), exc, exc.__traceback__):
            for line in chunk.splitlines():
                sys.stderr.write(f"DEBUG: gfs2clvm {name}: {line}\n")
    except Exception:  # debugging output must not change the outcome
        pass


def _log_without_action(name: str) -> Callable[[str], None]:
    def log(message: str) -> None:
        sys.stderr.write(f"INFO: gfs2clvm {name}: {message}\n")
    return log


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


@contextmanager
def _handlers(handlers: dict) -> Iterator[None]:
    """Install signal handlers (main thread only) and restore the previous ones."""
    if not _in_main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _sigterm_raises():
    """SIGTERM raises Terminated in the action (SIGINT already raises KeyboardInterrupt)."""
    return _handlers({signal.SIGTERM: _terminate})


def _signals_noted(log: Callable[[str], None]):
    def note(signum, frame) -> None:
        try:
            log(f"{signal.Signals(signum).name} received: finishing the undo first")
        except Exception:
            pass
    return _handlers({signal.SIGINT: note, signal.SIGTERM: note})


def read_stdin() -> bytes:
    """OpenNebula always closes stdin; never block on a terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        return b""
    return sys.stdin.buffer.read()


def entries(parse: Callable[[Action, str, list[str]], object],
            functions: dict[str, Callable[[Action, object], None]]
            ) -> dict[str, Callable[[Action, list[str]], None]]:
    """Each action's argv-level entry, the same for every front door: its
    layout's one parser turns the argv into the typed request (every check
    before any remote call), the action is bound to the request's VM (its log
    lines, its per-VM lock), then the action runs on the request."""
    def entry_for(name: str, function):
        def entry(action: Action, argv: list[str]) -> None:
            request = parse(action, name, argv)
            if request.vm_id is not None:
                action.bind_vm(request.vm_id)
            function(action, request)
        entry.__name__, entry.__doc__ = function.__name__, function.__doc__
        return entry
    return {name: entry_for(name, function) for name, function in functions.items()}


@dataclass(frozen=True)
class FrontDoor:
    """One calling convention's entry point: the installed scripts call
    `main(action name, argv)`; every front door dispatches the same way."""

    kind: str                                     # "TM action", ... (for the unknown-name line)
    actions: dict[str, Callable[[Action, list[str]], None]]
    label: str = "{}"                             # the action's name in its lines
    stdin: Callable[[str, list[str]], bool] = lambda name, argv: False
    strip_stdin: bool = False
    legacy: bool = False                          # 3.x error framing

    def main(self, name: str, argv: list[str]) -> int:
        function = self.actions.get(name)
        if function is None:
            sys.stderr.write(f"gfs2clvm: unknown {self.kind} {name!r}\n")
            return 2
        stdin = None
        if self.stdin(name, argv):
            stdin = read_stdin()
            if self.strip_stdin:
                stdin = stdin.strip()
        return run(self.label.format(name), function, argv, stdin=stdin, legacy=self.legacy)
