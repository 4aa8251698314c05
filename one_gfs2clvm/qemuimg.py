"""qemu-img: the one place its command lines are built and its output read.

Every copy into an LV, every restore and export and every image probe goes
through here, so the rules (which formats, no backing or data files, how a
device is written) exist once.
"""

from __future__ import annotations

import json
import re

from .errors import InvalidArgument

SUPPORTED_FORMATS = ("raw", "qcow2", "vmdk", "vdi")


def convert_argv(source: str, target: str, source_format: str = "raw", *,
                 into_device: bool = True, target_is_zero: bool = False,
                 progress: bool = False) -> list[str]:
    """`qemu-img convert` to raw.  `into_device`: the target is an existing block
    device (-n: do not create it; -W: out-of-order writes); otherwise a new
    sparse file.  `target_is_zero`: skip zero runs (only when the device is
    known to read as zeroes).  `progress`: -p (percentages on stdout) instead
    of -q.  -t none: no host page cache on the target."""
    argv = ["qemu-img", "convert", "-p" if progress else "-q"]
    if into_device:
        argv.append("-n")
    argv += ["-f", source_format, "-O", "raw", "-t", "none"]
    if into_device:
        argv.append("-W")
    if target_is_zero:
        argv.append("--target-is-zero")
    return argv + [source, target]


def info_argv(path: str) -> list[str]:
    return ["qemu-img", "info", "--output", "json", path]


def parse_info(stdout: str, where: str, path: str) -> tuple[str, int]:
    """(format, virtual size) from `qemu-img info --output json` run on `where`,
    with the checks of check_info."""
    try:
        info = json.loads(stdout)
    except ValueError:
        raise InvalidArgument(f"{where}: cannot read image {path}") from None
    if not isinstance(info, dict):
        raise InvalidArgument(f"{where}: cannot read image {path}")
    return check_info(info, path)


def check_info(info: dict, path: str) -> tuple[str, int]:
    """(format, virtual size) from `qemu-img info --output json`, refusing what
    could make qemu-img read files other than this one: backing files,
    external data files, multi-file VMDKs."""
    fmt = str(info.get("format", ""))
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidArgument(f"{path}: unsupported image format {fmt or '?'} "
                              f"(supported: {', '.join(SUPPORTED_FORMATS)})")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise InvalidArgument(f"{path}: has a backing file ({info.get('backing-filename')}); "
                              f"import a standalone image (qemu-img convert it first)")
    specific = (info.get("format-specific") or {}).get("data") or {}
    if fmt == "qcow2" and specific.get("data-file"):
        raise InvalidArgument(f"{path}: qcow2 with an external data file is not supported")
    if fmt == "vmdk":
        create_type = specific.get("create-type", "")
        if create_type not in ("monolithicSparse", "streamOptimized"):
            raise InvalidArgument(f"{path}: VMDK type {create_type or '?'} refers to other "
                                  f"files; only monolithicSparse/streamOptimized are imported")
    try:
        size = int(info["virtual-size"])
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument(f"{path}: qemu-img reports no virtual size") from None
    if size <= 0:
        raise InvalidArgument(f"{path}: the image is empty")
    return fmt, size


class ConvertProgress:
    """Feeds `qemu-img convert -p` output ("    (12.50/100%)\r") into a Progress."""

    _PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")

    def __init__(self, progress):
        self.progress = progress
        self._tail = b""

    def __call__(self, data: bytes) -> None:
        text = self._tail + data
        found = self._PERCENT.findall(text)
        self._tail = text[-32:]
        if found and self.progress.total:
            share = min(float(found[-1]), 100.0) / 100.0
            self.progress.update(int(self.progress.total * share))
