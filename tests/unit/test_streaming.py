"""Streamed imports: format sniffing on images qemu-img makes, the framing and
the real receiver program (run here as a subprocess exactly as a worker runs
it), checksums, restricted directories and progress lines."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from one_gfs2clvm.errors import InvalidArgument
from one_gfs2clvm.qemuimg import check_info as check_image_info
from one_gfs2clvm.streaming import (CHUNK, Checksums, Framer, Progress,
                                    check_restricted, file_segments, header_virtual_size,
                                    receiver_step, sniff_format, stream_segments)

MiB = 1 << 20
needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="qemu-img (qemu-utils) is installed by ./run")


def qemu_img(*args):
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True)


def info(path):
    return json.loads(qemu_img("info", "--output", "json", str(path)).stdout)


@needs_qemu_img
@pytest.mark.parametrize("fmt,opts", [("qcow2", []), ("vmdk", []), ("vdi", []),
                                      ("vmdk", ["-o", "subformat=streamOptimized"])])
def test_formats_and_virtual_sizes_match_qemu_img(tmp_path, fmt, opts):
    path = tmp_path / f"disk.{fmt}"
    qemu_img("create", "-q", "-f", fmt, *opts, str(path), "37M")
    header = path.read_bytes()[:65536]
    assert sniff_format(header) == fmt
    reported = info(path)
    assert header_virtual_size(header, fmt) == reported["virtual-size"] == 37 * MiB
    assert check_image_info(reported, str(path)) == (fmt, 37 * MiB)


def test_raw_and_refused_formats():
    assert sniff_format(b"\0" * 512) == "raw"
    assert sniff_format(b"CD001" + b"\0" * 600) == "raw"      # an ISO is raw bytes
    assert header_virtual_size(b"\0" * 512, "raw") is None
    for header, word in ((b"\x1f\x8b\x08\0", "gzip"), (b"\xfd7zXZ\x00", "xz"),
                         (b"QED\x00" + b"\0" * 60, "qed"), (b"vhdxfile", "vhdx"),
                         (b"# Disk DescriptorFile\n", "descriptor")):
        with pytest.raises(InvalidArgument, match=word):
            sniff_format(header)


@needs_qemu_img
def test_images_that_read_other_files_are_refused(tmp_path):
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    child = tmp_path / "child.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(child))
    with pytest.raises(InvalidArgument, match="backing file"):
        check_image_info(info(child), str(child))
    flat = tmp_path / "flat.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(flat), "8M")
    with pytest.raises(InvalidArgument, match="monolithicFlat"):
        check_image_info(info(flat), str(flat))
    with pytest.raises(InvalidArgument, match="unsupported image format qed"):
        check_image_info({"format": "qed", "virtual-size": 1}, "x")


def test_restricted_and_safe_dirs():
    check_restricted("/var/tmp/upload1", ["/"], ["/var/tmp"])
    check_restricted("/srv/images/a.img", ["/etc", "/var/lib/one/.one"], [])
    with pytest.raises(InvalidArgument, match="RESTRICTED_DIRS"):
        check_restricted("/var/lib/one/.one/one_auth", ["/"], ["/var/tmp"])
    with pytest.raises(InvalidArgument, match="RESTRICTED_DIRS"):
        check_restricted("/etc/shadow", ["/etc"], ["/etc-other"])   # prefix is not a parent
    check_restricted("/etcetera/x", ["/etc"], [])
    with pytest.raises(InvalidArgument):
        check_restricted("/var/tmpfoo/x", ["/"], ["/var/tmp"])


def test_checksums():
    sums = Checksums(md5=hashlib.md5(b"abc" + bytes(10)).hexdigest().upper(),
                     sha1=hashlib.sha1(b"abc" + bytes(10)).hexdigest())
    sums.update(b"abc")
    sums.update_zeroes(10)
    sums.verify()
    wrong = Checksums(md5="0" * 32)
    wrong.update(b"abc")
    with pytest.raises(InvalidArgument, match="MD5 mismatch"):
        wrong.verify()
    with pytest.raises(InvalidArgument, match="not a hex digest"):
        Checksums(sha1="xyz")
    assert not Checksums(None, "  ")


def test_progress_lines_at_intervals():
    now = [100.0]
    lines, seen = [], []
    progress = Progress(lines.append, "import of x", 100 * MiB, interval=5.0,
                        clock=lambda: now[0], callback=lambda d, t: seen.append((d, t)))
    progress.update(10 * MiB)                  # too early for a line
    now[0] = 106.0
    progress.update(30 * MiB)
    now[0] = 108.0
    progress.update(50 * MiB)
    now[0] = 110.0
    final = progress.finish()
    assert lines[0] == "import of x: 30.0 MiB of 100.0 MiB (30%), 5.0 MiB/s"
    assert len(lines) == 2 and final == lines[-1] and final.endswith("in 10.0 s")
    assert seen == [(10 * MiB, 100 * MiB), (30 * MiB, 100 * MiB), (50 * MiB, 100 * MiB)]


def test_qemu_img_progress_output_feeds_progress():
    from one_gfs2clvm.qemuimg import ConvertProgress as QemuImgProgress
    seen = []
    progress = Progress(lambda line: None, "copy", 200 * MiB, callback=lambda d, t: seen.append(d))
    watch = QemuImgProgress(progress)
    watch(b"    (0.00/100%)\r    (25.")                # split across chunks
    watch(b"50/100%)\r")
    watch(b"    (100.00/100%)\r")
    assert seen == [0, 51 * MiB, 200 * MiB]


def test_stream_segments_are_whole_chunks_from_small_reads():
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.data = data

        def read(self, n=-1):
            piece, self.data = self.data[:1000], self.data[1000:]
            return piece
    data = os.urandom(CHUNK + 5000)
    segments = list(stream_segments(Trickle(data[100:]), first=data[:100]))
    assert [(o, n) for o, _, n in segments] == [(0, CHUNK), (CHUNK, 5000)]
    assert b"".join(d for _, d, _ in segments) == data


def sparse_file(path):
    """Data, a hole, an all-zero written chunk, data, and a trailing hole."""
    with open(path, "wb") as f:
        f.write(b"A" * 3 * MiB)
        f.seek(8 * MiB)
        f.write(bytes(CHUNK))            # written zeroes: no hole, but zero
        f.write(os.urandom(MiB + 123))
        f.truncate(20 * MiB)
    return path.read_bytes()


def run_receiver(mode, target, stream_bytes, known_zero):
    argv = list(receiver_step(mode, str(target), known_zero, python=sys.executable).argv)
    return subprocess.run(argv, input=stream_bytes, capture_output=True)


def frames_of(path, checksums=None):
    with open(path, "rb") as f:
        framer = Framer(file_segments(f), checksums)
        out = bytearray()
        while chunk := framer.read(65536):
            out += chunk
    return framer, bytes(out)


def test_sparse_file_round_trip_through_the_receiver(tmp_path):
    data = sparse_file(tmp_path / "src.img")
    sums = Checksums(md5=hashlib.md5(data).hexdigest())
    framer, stream = frames_of(tmp_path / "src.img", sums)
    sums.verify()                                   # zeroes of holes are hashed too
    assert framer.total == len(data) == 20 * MiB
    nonzero = 3 * MiB + MiB + 123                   # only non-zero data travels
    assert nonzero <= framer.data_bytes < nonzero + 4096     # (up to a block's tail)
    assert len(stream) < framer.data_bytes + 4096
    out = tmp_path / "staged.img"
    result = run_receiver("file", out, stream, known_zero=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"received {len(data)} bytes, {framer.data_bytes} data\n"
    assert out.read_bytes() == data
    assert os.stat(out).st_blocks * 512 < len(data)  # written sparse


def test_device_mode_zeroes_runs_unless_known_zero(tmp_path):
    data = sparse_file(tmp_path / "src.img")
    _, stream = frames_of(tmp_path / "src.img")
    for known_zero, expect in ((False, data), (True, None)):
        device = tmp_path / f"dev-{known_zero}"
        device.write_bytes(b"\xff" * 24 * MiB)      # stale data of an earlier tenant
        result = run_receiver("device", device, stream, known_zero)
        assert result.returncode == 0, result.stderr
        got = device.read_bytes()
        if expect is not None:
            assert got[:len(data)] == data          # zero runs really zeroed
        else:
            assert got[:3 * MiB] == data[:3 * MiB]
            assert got[3 * MiB:8 * MiB] == b"\xff" * 5 * MiB   # trusted to be zero: skipped
        assert got[len(data):] == b"\xff" * 4 * MiB


def test_receiver_refuses_truncated_or_oversized_streams(tmp_path):
    sparse_file(tmp_path / "src.img")
    _, stream = frames_of(tmp_path / "src.img")
    device = tmp_path / "dev"
    device.write_bytes(bytes(24 * MiB))
    cut = run_receiver("device", device, stream[:len(stream) // 2], False)
    assert cut.returncode == 1 and b"ended early" in cut.stderr
    small = tmp_path / "small"
    small.write_bytes(bytes(MiB))
    over = run_receiver("device", small, stream, False)
    assert over.returncode == 1 and b"beyond the end" in over.stderr
    assert run_receiver("bogus", small, stream, False).returncode != 0


def test_receiver_step_is_shown_by_its_label():
    step = receiver_step("device", "/dev/vg/lv-oneimg-1", True)
    assert str(step) == "stream_receiver device /dev/vg/lv-oneimg-1"
    assert step.argv[0] == "/usr/bin/python3" and step.argv[1] == "-c"
    assert step.argv[3:] == ("device", "/dev/vg/lv-oneimg-1", "1")
    compile(step.argv[2], "stream_receiver", "exec")
