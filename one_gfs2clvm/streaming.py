"""Front-end side of streamed imports: format sniffing, sparse-aware framing,
checksums and progress.

A file on the management node (a Sunstone upload) or an http(s) download is
streamed over SSH to a worker, which writes it with stream_receiver.py.  The
stream is framed so zero runs travel as a few bytes: holes of a sparse file
(SEEK_DATA/SEEK_HOLE) and all-zero chunks alike.  Checksums are computed over
every byte of the image, zeroes included, exactly as `md5sum` would.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from .errors import InvalidArgument
from .qemuimg import SUPPORTED_FORMATS

CHUNK = 4 << 20
_ZEROES = bytes(CHUNK)


# ----------------------------------------------------------------- formats

def sniff_format(header: bytes) -> str:
    """The image format from its first bytes (>= 512 wanted): raw, qcow2,
    vmdk or vdi; anything qemu-img would read but we do not is refused."""
    if header.startswith(b"QFI\xfb"):
        return "qcow2"
    if header.startswith(b"KDMV"):
        return "vmdk"                               # hosted sparse extent
    if header.startswith(b"# Disk DescriptorFile"):
        raise InvalidArgument("a VMDK descriptor file refers to other files: import the "
                              "monolithic VMDK (or convert it to one) instead")
    if len(header) >= 0x44 and header[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    for magic, name in ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"),
                        (b"(\xb5/\xfd", "zstd")):
        if header.startswith(magic):
            raise InvalidArgument(f"the image is {name}-compressed: decompress it first")
    for magic, name in ((b"QED\x00", "qed"), (b"vhdxfile", "vhdx"), (b"conectix", "vpc")):
        if header.startswith(magic):
            raise InvalidArgument(f"unsupported image format {name} "
                                  f"(supported: {', '.join(SUPPORTED_FORMATS)})")
    return "raw"


def header_virtual_size(header: bytes, fmt: str) -> int | None:
    """Virtual size recorded in a qcow2/vmdk/vdi header (None: not found, or raw)."""
    try:
        if fmt == "qcow2":
            return struct.unpack_from(">Q", header, 24)[0]
        if fmt == "vmdk":                                  # capacity in sectors
            return struct.unpack_from("<Q", header, 12)[0] * 512
        if fmt == "vdi":
            major = struct.unpack_from("<H", header, 0x46)[0]
            if major == 1:                                 # VDI 1.1 header
                return struct.unpack_from("<Q", header, 0x170)[0]
    except struct.error:
        return None
    return None


def check_restricted(path: str, restricted: list[str], safe: list[str]) -> None:
    """OpenNebula's RESTRICTED_DIRS / SAFE_DIRS rule for image paths: a path
    under a restricted directory is refused unless it is under a safe one.
    `path` must already be resolved (symlinks and `..`)."""
    def under(directory: str) -> bool:
        directory = directory.rstrip("/") or "/"
        return directory == "/" or path == directory or path.startswith(directory + "/")

    blocked = [d for d in restricted if d and under(d)]
    if blocked and not any(under(d) for d in safe if d):
        raise InvalidArgument(f"{path}: not allowed to import from {blocked[0]} "
                              f"(RESTRICTED_DIRS); allowed: {' '.join(safe) or 'nothing'} "
                              f"(SAFE_DIRS)")


# ----------------------------------------------------------------- progress

class Progress:
    """Log lines at intervals: bytes done, share of the total, rate."""

    def __init__(self, log: Callable[[str], None], what: str, total: int | None,
                 interval: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 callback: Callable[[int, int | None], None] | None = None):
        self.log, self.what, self.total = log, what, total
        self.interval, self.clock, self.callback = interval, clock, callback
        self.started = self.last = clock()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        if self.callback is not None:
            self.callback(done, self.total)
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.log(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now if now is not None else self.clock()) - self.started, 1e-6)
        rate = self.done / elapsed / (1 << 20)
        share = f" of {self.total / (1 << 20):.1f} MiB ({100 * self.done // self.total}%)" \
            if self.total else ""
        return f"{self.what}: {self.done / (1 << 20):.1f} MiB{share}, {rate:.1f} MiB/s"

    def finish(self) -> str:
        line = self.line() + f" in {self.clock() - self.started:.1f} s"
        self.log(line)
        return line


# ----------------------------------------------------------------- checksums

class Checksums:
    """MD5 / SHA1 the template asked for, over every byte of the image."""

    def __init__(self, md5: str | None = None, sha1: str | None = None):
        self.expected = {name: value.strip().lower() for name, value in
                         (("md5", md5), ("sha1", sha1)) if value and value.strip()}
        for name, value in self.expected.items():
            width = 32 if name == "md5" else 40
            if len(value) != width or any(c not in "0123456789abcdef" for c in value):
                raise InvalidArgument(f"{name.upper()} {value!r} is not a hex digest")
        self.hashes = {name: hashlib.new(name) for name in self.expected}

    def __bool__(self) -> bool:
        return bool(self.expected)

    def update(self, data: bytes | memoryview) -> None:
        for digest in self.hashes.values():
            digest.update(data)

    def update_zeroes(self, length: int) -> None:
        if not self.hashes:
            return
        while length:
            step = min(length, CHUNK)
            self.update(_ZEROES[:step])
            length -= step

    def verify(self, actual: dict[str, str] | None = None) -> None:
        """Compare with what was computed here, or with `actual` (computed on a worker)."""
        got = actual if actual is not None else \
            {name: digest.hexdigest() for name, digest in self.hashes.items()}
        for name, value in self.expected.items():
            if got.get(name) != value:
                raise InvalidArgument(f"{name.upper()} mismatch: the template says {value}, "
                                      f"the image has {got.get(name)}")


# ----------------------------------------------------------------- framing

Segment = tuple[int, bytes | None, int]     # (offset, data or None for zeroes, length)


def file_segments(stream: BinaryIO) -> Iterator[Segment]:
    """Data extents of a local file (holes skipped via SEEK_DATA/SEEK_HOLE)."""
    fd = stream.fileno()
    size = os.fstat(fd).st_size
    offset = 0
    while offset < size:
        try:
            data_start = os.lseek(fd, offset, os.SEEK_DATA)
            hole_start = os.lseek(fd, data_start, os.SEEK_HOLE)
        except OSError:           # ENXIO: only a hole is left; or no SEEK_DATA support
            if offset == 0 and not _has_seek_data(fd):
                data_start, hole_start = 0, size
            else:
                data_start = hole_start = size
        if data_start > offset:
            yield offset, None, data_start - offset
        position = data_start
        os.lseek(fd, position, os.SEEK_SET)
        while position < hole_start:
            chunk = stream.read(min(CHUNK, hole_start - position))
            if not chunk:
                raise InvalidArgument("the file shrank while it was read")
            yield position, chunk, len(chunk)
            position += len(chunk)
        offset = hole_start


def _has_seek_data(fd: int) -> bool:
    try:
        os.lseek(fd, 0, os.SEEK_HOLE)
        return True
    except OSError:
        return False


def stream_segments(stream: BinaryIO, first: bytes = b"") -> Iterator[Segment]:
    """Sequential CHUNK-sized pieces of a non-seekable stream (an http
    response); `first` is what was already read from it (the sniffed header)."""
    offset = 0
    buffer = bytearray(first)
    ended = False
    while True:
        while not ended and len(buffer) < CHUNK:
            more = stream.read(CHUNK - len(buffer))
            if more:
                buffer += more
            else:
                ended = True
        if not buffer:
            return
        chunk = bytes(buffer[:CHUNK])
        del buffer[:CHUNK]
        yield offset, chunk, len(chunk)
        offset += len(chunk)


class Framer:
    """A readable stream of frames for the receiver, built from segments;
    all-zero data chunks are sent as zero runs.  `read(n)` is what the SSH
    transport pulls; checksums and progress follow what was read."""

    def __init__(self, segments: Iterator[Segment], checksums: Checksums | None = None,
                 progress: Progress | None = None):
        self._segments = segments
        self._checksums = checksums
        self._progress = progress
        self._buffer = bytearray()
        self._end = 0
        self._finished = False
        self.data_bytes = 0
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        while not self._finished and (size < 0 or len(self._buffer) < size):
            self._next_frame()
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def _next_frame(self) -> None:
        segment = next(self._segments, None)
        if segment is None:
            self._buffer += b"E" + struct.pack(">Q", self._end)
            self.total = self._end
            self._finished = True
            return
        offset, data, length = segment
        if data is not None and data == _ZEROES[:length]:
            data = None
        if data is None:
            self._buffer += b"Z" + struct.pack(">QQ", offset, length)
            if self._checksums:
                self._checksums.update_zeroes(length)
        else:
            self._buffer += b"D" + struct.pack(">QI", offset, length) + data
            self.data_bytes += length
            if self._checksums:
                self._checksums.update(data)
        self._end = offset + length
        if self._progress is not None:
            self._progress.update(self._end)


def receiver_step(mode: str, path: str, known_zero: bool, python: str = "/usr/bin/python3"):
    """The worker-side command: the receiver's own source as `python3 -c`,
    shown in errors as `stream_receiver MODE PATH`."""
    from importlib.resources import files
    from .remote import Labeled
    source = files("one_gfs2clvm").joinpath("stream_receiver.py").read_text()
    return Labeled((python, "-c", source, mode, path, "1" if known_zero else "0"),
                   f"stream_receiver {mode} {path}")
