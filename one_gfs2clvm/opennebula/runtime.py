"""How an OpenNebula action runs: logging, undo, one error line, exit code.

OpenNebula's driver programs turn an action's stderr into the failure reason,
except lines starting `INFO:`/`ERROR:`/`WARN:`/`DEBUG:`, which become log
entries (`INFO: <vmid> text` lands in that VM's log).  So progress goes out
as `INFO:` lines and a failure as exactly one bare line.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import Config
from ..config import load as load_config
from ..errors import DriverError


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

    def log(self, message: str) -> None:
        who = f"{self.vm_id} " if self.vm_id is not None else ""
        sys.stderr.write(f"INFO: {who}gfs2clvm {self.name}: {message}\n")
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
    if legacy:
        sys.stderr.write(f"{ERROR_OPEN_3X}\n{text}\n{ERROR_CLOSE_3X}\n")
    else:
        sys.stderr.write(f"{text}\n")


def run(name: str, function: Callable[[Action, list[str]], None], argv: list[str],
        config: Config | None = None, stdin: bytes | None = None,
        legacy: bool = False) -> int:
    """Run one action; return its exit code (0 = success).  `legacy`: 3.x error framing."""
    started = time.monotonic()
    action = None
    try:
        action = Action(name=name, config=config or load_config())
        if stdin is not None:
            action.stdin = stdin
        function(action, argv)
        action.undo.commit()
        action.log(f"done in {time.monotonic() - started:.1f} s")
        return 0
    except DriverError as exc:
        if action is not None:
            action.undo.rollback(action.log)
        _error_line(exc.one_line(), legacy)
        return exc.exit_code
    except Exception as exc:  # a bug: keep the traceback in the log, one line as the reason
        if action is not None:
            action.undo.rollback(action.log)
        for line in traceback.format_exc().splitlines():
            sys.stderr.write(f"ERROR: gfs2clvm {name}: {line}\n")
        _error_line(f"gfs2clvm {name}: internal error: {type(exc).__name__}: {exc}", legacy)
        return 70


def read_stdin() -> bytes:
    """OpenNebula always closes stdin; never block on a terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        return b""
    return sys.stdin.buffer.read()
