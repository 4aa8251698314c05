"""Exception hierarchy.

Every error the driver raises on purpose is a DriverError: it carries one
human line (what OpenNebula shows as the failure reason) and an exit code.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base class: one clear line for the admin, plus a process exit code.

    `failed_step`: when a multi-step remote script (cluster.run_steps) failed,
    the index of the step that failed in the caller's list -- every step
    before it ran, none after it -- so an undo knows exactly what exists;
    None when that is not known (timeout, lost connection)."""

    exit_code = 1
    failed_step: int | None = None

    def one_line(self) -> str:
        text = " ".join(str(self).split())
        return text or self.__class__.__name__


class ConfigError(DriverError):
    """The configuration file is missing, unreadable or holds an invalid value."""

    exit_code = 2


class InvalidArgument(DriverError):
    """An argument (LV name, host:path, source URL, size...) is malformed."""

    exit_code = 2


class RemoteError(DriverError):
    """Base for failures reaching or running something on a worker."""

    exit_code = 3

    def __init__(self, message: str, host: str | None = None):
        super().__init__(message)
        self.host = host


class ConnectError(RemoteError):
    """TCP/SSH connection or authentication to a worker failed."""


class HostKeyError(ConnectError):
    """The worker's host key is unknown or differs from known_hosts."""


class RemoteTimeout(RemoteError):
    """A remote command did not finish within its timeout."""


class RemoteCommandFailed(RemoteError):
    """A remote command exited non-zero."""

    def __init__(self, host: str, command: str, exit_status: int, stderr: str,
                 stdout: str = "", step_index: int | None = None):
        self.command = command
        self.step_index = step_index          # which step of a script failed
        self.exit_status = exit_status
        self.stderr = stderr
        self.stdout = stdout
        last = _last_line(stderr) or f"exit status {exit_status}"
        super().__init__(f"{host}: {command}: {last}", host=host)


class LvmError(DriverError):
    """An LVM command failed (the message is LVM's own last error line)."""

    exit_code = 4


class LockContention(LvmError):
    """An LV or VG lock is held elsewhere (lvmlockd/clvmd) and retries ran out."""


class InUse(LockContention):
    """A volume is in use: a VM holds it, or it is open on a host."""


class NotOurs(LockContention):
    """An LV with the name an action would create exists but another maker made
    it (its tags say so): it is never taken over."""


class ActivationError(LvmError):
    """An LV could not be activated/deactivated as the policy requires."""


class LockManagerDown(LvmError):
    """The host cannot take cluster locks on the VG: lvmlockd is not running
    there, or the VG's lockspace is not started (vgchange --lock-start)."""


class NotFound(LvmError):
    """An LV or VG that must exist does not."""


class SourceNotFound(NotFound):
    """The source of a copy or import (image LV, snapshot, image file, lvm:// or
    vol:// volume) does not exist."""


class LockTimeout(DriverError):
    """The management-side per-VG lock could not be taken in time."""

    exit_code = 5


class HelperRefused(DriverError):
    """The node helper refused a request (verb, VG or LV outside policy)."""

    exit_code = 6


class Terminated(BaseException):
    """SIGTERM arrived while an action ran (raised by the handler that
    opennebula.runtime.run installs).  Not an Exception, so `except Exception`
    inside an action does not swallow it; run() undoes and reports one line."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
