"""Worker side of a streamed import: writes a framed byte stream from stdin.

Runs on a worker as the SSH user (not root), stdlib only, sent as
`python3 -c <this file's source> MODE PATH KNOWN_ZERO` -- the source is a
constant of the package, the arguments are names the driver built; nothing
from the user is interpreted.  Nothing has to be installed on workers.

Frames (big-endian), written by one_gfs2clvm.streaming.Framer:
    b"D" offset:Q length:I data     data at offset
    b"Z" offset:Q length:Q          a run of zero bytes
    b"E" total:Q                    end; total = size of the image in bytes
MODE `device`: an existing block device (an LV); zero runs are skipped when
KNOWN_ZERO is 1 (the driver zeroed the LV), else zeroed with BLKZEROOUT
(offloaded by SAN arrays), falling back to writing zeroes.
MODE `file`: a new sparse file (staging on GFS2): zero runs become holes.
Prints `received <total> bytes, <data> data` on success; a stream without
its end frame (the sender died) is an error, so a half copy never passes.
"""

import os
import struct
import sys

BLKZEROOUT = 0x127F          # _IO(0x12, 127)
ZEROES = bytes(1 << 20)
CHUNK = 4 << 20              # the sender's largest data frame
ALIGN = 4096                 # O_DIRECT: offsets, lengths and memory aligned to this


def _read_exact(stream, count):
    parts = []
    while count:
        chunk = stream.read(count)
        if not chunk:
            raise EOFError("the stream ended early (sender gone?)")
        parts.append(chunk)
        count -= len(chunk)
    return b"".join(parts)


def _pwrite_all(fd, buffer, length, offset):
    done = 0
    with memoryview(buffer) as view:
        while done < length:
            with view[done:length] as part:
                done += os.pwrite(fd, part, offset + done)


def _zero(fd, offset, length, state):
    if state["ioctl"]:
        try:
            import fcntl
            fcntl.ioctl(fd, BLKZEROOUT, struct.pack("=QQ", offset, length))
            return
        except OSError:
            state["ioctl"] = False       # not a block device, or not supported
    end = offset + length
    while offset < end:
        step = min(len(ZEROES), end - offset)
        os.pwrite(fd, ZEROES[:step], offset)
        offset += step


def _direct_writer(path):
    """(fd opened O_DIRECT, page-aligned 4 MiB buffer) for aligned data on a
    device -- the page cache would only slow a one-pass copy down -- or None."""
    import mmap
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_DIRECT", 0))
    except OSError:
        return None
    return fd, mmap.mmap(-1, CHUNK)


def receive(stream, mode, path, known_zero):
    direct = None
    if mode == "device":
        fd = os.open(path, os.O_WRONLY)
        capacity = os.lseek(fd, 0, os.SEEK_END)
        direct = _direct_writer(path)
    elif mode == "file":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        capacity = None
    else:
        raise SystemExit("stream_receiver: MODE must be device or file")
    state = {"ioctl": mode == "device"}
    data_bytes = 0
    try:
        while True:
            kind = _read_exact(stream, 1)
            if kind == b"D":
                offset, length = struct.unpack(">QI", _read_exact(stream, 12))
                end = offset + length
                if capacity is not None and end > capacity:
                    raise ValueError(f"data beyond the end of {path} ({end} > {capacity})")
                data = _read_exact(stream, length)
                if direct is not None and offset % ALIGN == 0 and length % ALIGN == 0 \
                        and length <= CHUNK:
                    direct[1][:length] = data
                    _pwrite_all(direct[0], direct[1], length, offset)
                else:
                    _pwrite_all(fd, data, length, offset)
                data_bytes += length
            elif kind == b"Z":
                offset, length = struct.unpack(">QQ", _read_exact(stream, 16))
                if capacity is not None and offset + length > capacity:
                    raise ValueError(f"zero run beyond the end of {path}")
                if mode == "device" and not known_zero:
                    _zero(fd, offset, length, state)
            elif kind == b"E":
                (total,) = struct.unpack(">Q", _read_exact(stream, 8))
                if capacity is not None and total > capacity:
                    raise ValueError(f"image of {total} bytes does not fit {path} ({capacity})")
                if mode == "file":
                    os.ftruncate(fd, total)
                os.fsync(fd)
                return total, data_bytes
            else:
                raise ValueError(f"bad frame type {kind!r}")
    finally:
        os.close(fd)
        if direct is not None:
            os.close(direct[0])
            direct[1].close()


def main(argv):
    if len(argv) != 4:
        sys.stderr.write("usage: stream_receiver MODE PATH KNOWN_ZERO\n")
        return 2
    try:
        total, data_bytes = receive(sys.stdin.buffer, argv[1], argv[2], argv[3] == "1")
    except (OSError, ValueError, EOFError) as exc:
        sys.stderr.write(f"stream_receiver: {argv[2]}: {exc}\n")
        return 1
    sys.stdout.write(f"received {total} bytes, {data_bytes} data\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
