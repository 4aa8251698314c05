"""Read access to OpenNebula's XML-RPC API: VM, IMAGE, DATASTORE, USER documents.

The driver needs four calls, each answered by oned with `[success, body,
error code, ...]`, body being the object's XML on success or oned's one-line
message on failure:

    one.vm.info(session, id, False)         one.image.info(session, id, False)
    one.datastore.info(session, id, False)  one.user.info(session, id, False)

`OneApi` is the interface the actions use; `XmlRpcApi` talks to oned;
`CachedApi` memoises per process (an action reads the same VM several
times).  Every failure (connection refused, timeout, HTTP error, oned saying
no) is an `OpenNebulaError`: one line, exit code 7.

Why the standard library's xmlrpc.client and not pyone (the official Python
bindings; 7.3.80 examined):

* pyone turns every XML answer into generateDS objects inside a private
  method (`OneServerXRPC.__response` -> `bindings.parseString`, a 2 MB
  generated module); there is no option to get the document back.  Raw XML
  is reachable only through the private `_do_request()`, which also skips
  pyone's error mapping - i.e. plain xmlrpc.client with extra dependencies.
* Its `timeout` is applied with `socket.setdefaulttimeout()`, a process-wide
  side effect on every socket, including the driver's paramiko connections,
  and its transport calls `requests.post()` without a timeout of its own.
* It pulls in dict2xml, xmltodict, six, tblib, requests (+ urllib3, idna,
  charset-normalizer, certifi) and grpcio (a large native wheel) - 12
  packages besides lxml for four read-only calls.
* Its LCM_STATE enum stops at 68 (no BACKUP 69, BACKUP_POWEROFF 70,
  RESTORE 71), so its constants would not help either.

So: xmlrpc.client with a transport that sets a per-connection timeout, and
the documents parsed by our own xml.py.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import xml.parsers.expat
import xmlrpc.client
from pathlib import Path
from typing import Callable, Mapping, Protocol, TypeVar, runtime_checkable

from ..errors import DriverError, InvalidArgument
from .xml import (Datastore, Image, User, Vm, parse_datastore, parse_image, parse_user,
                  parse_vm)

DEFAULT_ENDPOINT = "http://localhost:2633/RPC2"
DEFAULT_TIMEOUT = 10.0
AUTH_FILE_DEFAULT = "~/.one/one_auth"

# oned's error codes (the third element of a failed answer)
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000

T = TypeVar("T")


class OpenNebulaError(DriverError):
    """oned could not be reached, refused the call, or answered nonsense."""

    exit_code = 7

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code  # oned's error code when oned answered, else None

    @property
    def not_found(self) -> bool:
        return self.code == NO_EXISTS

    @property
    def denied(self) -> bool:
        return self.code in (AUTHENTICATION, AUTHORIZATION)


@runtime_checkable
class OneApi(Protocol):
    """What the actions may ask OpenNebula.  All raise OpenNebulaError."""

    def vm(self, vm_id: int) -> Vm: ...

    def image(self, image_id: int) -> Image: ...

    def datastore(self, ds_id: int) -> Datastore: ...

    def user(self, user_id: int) -> User: ...


def _check_id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidArgument(f"invalid {what} id {value!r}: expected an integer 0..2147483647")
    return value


# --- XML-RPC ---------------------------------------------------------------------------

class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = self.timeout  # used by connect() and every socket op
        return connection


class _TimeoutSafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


class XmlRpcApi(OneApi):
    """oned over XML-RPC with `session` ("user:password") and a socket timeout."""

    def __init__(self, endpoint: str, session: str, timeout: float = DEFAULT_TIMEOUT):
        scheme = endpoint.partition("://")[0].lower()
        if scheme not in ("http", "https"):
            raise OpenNebulaError(f"OpenNebula API: invalid endpoint {endpoint!r}: "
                                  f"expected http(s)://host:port/RPC2")
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self._session = session
        transport = (_TimeoutSafeTransport if scheme == "https" else _TimeoutTransport)(
            self.timeout)
        self._proxy = xmlrpc.client.ServerProxy(endpoint, transport=transport)
        self._lock = threading.Lock()  # a ServerProxy is not thread-safe

    def __repr__(self) -> str:  # never show the session
        return f"XmlRpcApi({self.endpoint!r}, timeout={self.timeout:g})"

    def close(self) -> None:
        self._proxy("close")()

    def vm(self, vm_id: int) -> Vm:
        return self._info("one.vm.info", f"VM {_check_id(vm_id, 'VM')}", vm_id, parse_vm)

    def image(self, image_id: int) -> Image:
        return self._info("one.image.info", f"IMAGE {_check_id(image_id, 'image')}",
                          image_id, parse_image)

    def datastore(self, ds_id: int) -> Datastore:
        return self._info("one.datastore.info", f"DATASTORE {_check_id(ds_id, 'datastore')}",
                          ds_id, parse_datastore)

    def user(self, user_id: int) -> User:
        return self._info("one.user.info", f"USER {_check_id(user_id, 'user')}",
                          user_id, parse_user)

    # --
    def _info(self, method: str, label: str, ident: int, parse: Callable[[str], T]) -> T:
        def fail(why: str, code: int | None = None) -> OpenNebulaError:
            return OpenNebulaError(f"OpenNebula API: {label}: {why}", code)

        answer = self._call(method, ident, fail)
        if not isinstance(answer, (list, tuple)) or len(answer) < 2 \
                or not isinstance(answer[0], bool):
            raise fail(f"[{method}] unexpected answer from {self.endpoint}")
        if not answer[0]:
            code = answer[2] if len(answer) > 2 and isinstance(answer[2], int) else None
            message = " ".join(str(answer[1]).split()) or f"[{method}] failed"
            raise fail(message, code)
        if not isinstance(answer[1], str):
            raise fail(f"[{method}] answer carries no XML document")
        try:
            document = parse(answer[1])
        except InvalidArgument as exc:
            raise fail(f"[{method}] {exc.one_line()}") from None
        try:
            returned_id = document.id
        except InvalidArgument as exc:
            raise fail(f"[{method}] {exc.one_line()}") from None
        if returned_id != ident:
            raise fail(f"[{method}] answered with the document of id {returned_id}")
        return document

    def _call(self, method: str, ident: int, fail):
        try:
            with self._lock:
                try:
                    return getattr(self._proxy, method)(self._session, ident, False)
                except BaseException:
                    self._proxy("close")()  # never reuse a half-used connection
                    raise
        except xmlrpc.client.Fault as exc:
            raise fail(f"[{method}] XML-RPC fault {exc.faultCode}: "
                       f"{' '.join(str(exc.faultString).split())}") from None
        except xmlrpc.client.ProtocolError as exc:
            raise fail(f"[{method}] HTTP {exc.errcode} {exc.errmsg} from "
                       f"{self.endpoint}") from None
        except (TimeoutError, socket.timeout):
            raise fail(f"[{method}] no answer from {self.endpoint} within "
                       f"{self.timeout:g} s") from None
        except ConnectionRefusedError:
            raise fail(f"[{method}] cannot connect to {self.endpoint}: "
                       f"connection refused (is oned running?)") from None
        except (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError, ValueError) as exc:
            raise fail(f"[{method}] malformed XML-RPC answer from {self.endpoint}: "
                       f"{' '.join(str(exc).split())}") from None
        except http.client.HTTPException as exc:
            raise fail(f"[{method}] bad HTTP answer from {self.endpoint}: "
                       f"{type(exc).__name__}") from None
        except OSError as exc:
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            raise fail(f"[{method}] cannot reach {self.endpoint}: {reason}") from None


# --- configuration ------------------------------------------------------------------------

def read_session(path: str | os.PathLike) -> str:
    """The first non-empty line of a one_auth file ("user:password")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OpenNebulaError(f"OpenNebula API: auth file {path} not found (set ONE_AUTH "
                              f"or write user:password into it)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise OpenNebulaError(f"OpenNebula API: cannot read auth file {path}: "
                              f"{reason}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or ":" not in lines[0] or lines[0].startswith(":"):
        raise OpenNebulaError(f"OpenNebula API: auth file {path}: expected one line "
                              f"user:password")
    return lines[0]


def api_from_env(config=None, *, environ: Mapping[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> XmlRpcApi:
    """XmlRpcApi configured the way OpenNebula's own tools are.

    Endpoint: $ONE_XMLRPC, default http://localhost:2633/RPC2.  Session: the
    first line of $ONE_AUTH, default ~/.one/one_auth (for oneadmin
    /var/lib/one/.one/one_auth).  `config` (the driver Config) is accepted
    for future settings; nothing in it concerns the API yet.  Not cached:
    wrap in CachedApi.
    """
    environ = os.environ if environ is None else environ
    endpoint = (environ.get("ONE_XMLRPC") or "").strip() or DEFAULT_ENDPOINT
    auth = (environ.get("ONE_AUTH") or "").strip()
    if not auth:
        home = environ.get("HOME") or str(Path.home())
        auth = str(Path(home) / ".one" / "one_auth")
    return XmlRpcApi(endpoint, read_session(auth), timeout=timeout)


# --- cache -------------------------------------------------------------------------------------

class CachedApi(OneApi):
    """Memoises documents per (kind, id) for the life of the object (one
    action = one process).  Failures are not cached.  clear()/forget() drop
    entries when an action needs a fresh view (e.g. after waiting for a state)."""

    def __init__(self, api: OneApi):
        self.inner = api
        self._cache: dict[tuple[str, int], object] = {}
        self._lock = threading.Lock()

    def _get(self, kind: str, ident: int, fetch: Callable[[int], T]) -> T:
        key = (kind, ident)
        with self._lock:
            if key in self._cache:
                return self._cache[key]  # type: ignore[return-value]
        value = fetch(ident)
        with self._lock:
            return self._cache.setdefault(key, value)  # type: ignore[return-value]

    def vm(self, vm_id: int) -> Vm:
        return self._get("vm", vm_id, self.inner.vm)

    def image(self, image_id: int) -> Image:
        return self._get("image", image_id, self.inner.image)

    def datastore(self, ds_id: int) -> Datastore:
        return self._get("datastore", ds_id, self.inner.datastore)

    def user(self, user_id: int) -> User:
        return self._get("user", user_id, self.inner.user)

    def forget(self, kind: str, ident: int) -> None:
        with self._lock:
            self._cache.pop((kind, ident), None)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
