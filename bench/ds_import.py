"""Datastore import throughput against a plain `dd` of the same bytes, in the
same lab run.

    python -m bench.ds_import [--size-mib 128] [--rounds 3] [--zero-share 0.5]

  baseline  the management node pipes the raw file over ONE ssh session into
            root `dd of=/dev/<vg>/<lv> bs=4M oflag=direct` on a worker (LV
            created and activated beforehand, not timed): the least any
            streamed import can cost
  cp        the datastore action `cp` of the same file as oned runs it
            (create LV, stream with zero runs skipped, checksum, release); its
            streaming phase alone is reported too (from cp's progress line)

The file is `--zero-share` zeroes (in 4 MiB runs) and the rest non-zero data,
like a typical OS image.  Reports MiB/s medians and cp/baseline time ratios;
no thresholds (software-emulated lab: ratios are what to watch).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.vmlab import VG, lab_session

MiB = 1 << 20
IMAGE = 4950


def make_file(path: Path, size_mib: int, zero_share: float) -> bytes:
    from testkit.frontend import pattern
    chunks = []
    zero_every = round(1 / zero_share) if zero_share > 0 else 0
    for index in range(size_mib // 4):
        zero = zero_every and index % zero_every == 0
        chunks.append(bytes(4 * MiB) if zero else pattern(index, 4 * MiB))
    data = b"".join(chunks)
    path.write_bytes(data)
    return data


def main() -> int:
    from testkit import oneclient
    from testkit.fakeoned import datastore_doc, driver_action_b64, image_doc
    from testkit.frontend import IMAGE_DS, FrontEnd
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--zero-share", type=float, default=0.5)
    args = parser.parse_args()
    with lab_session(3, "dlm") as lab, tempfile.TemporaryDirectory() as scratch:
        fe = FrontEnd(lab, Path(scratch))
        node = lab.node_names[0]
        source = Path(scratch) / "image.raw"
        data = make_file(source, args.size_mib, args.zero_share)
        md5 = hashlib.md5(data).hexdigest()
        lv = f"lv-oneimg-{IMAGE}"
        payload = driver_action_b64(
            image=image_doc(IMAGE, source="", path=str(source), template={"MD5": md5}),
            datastore=datastore_doc(IMAGE_DS, template={
                "BRIDGE_LIST": node, "VG_NAME": VG, "SAFE_DIRS": scratch}))
        times: dict[str, list[float]] = {"dd": [], "cp": [], "stream": []}
        lvm = fe.cluster.lvm(node)
        for _ in range(args.rounds):
            if lvm.lv(VG, lv) is not None:
                lvm.deactivate(VG, lv)
                lvm.remove(VG, lv)
            lvm.create(VG, lv, len(data))
            lvm.activate(VG, lv, "exclusive")
            with open(source, "rb") as stream:
                started = time.monotonic()
                lab.sh(node, f"dd of=/dev/{VG}/{lv} bs=4M iflag=fullblock oflag=direct "
                             f"status=none", stdin=stream)
                times["dd"].append(time.monotonic() - started)
            lvm.deactivate(VG, lv)
            lvm.remove(VG, lv)
            started = time.monotonic()
            result = oneclient.run_ds(str(fe.remotes), "gfs2clvm", "cp", IMAGE, payload,
                                      env=fe.env, cwd=str(fe.var_lib_one), timeout=1800)
            times["cp"].append(time.monotonic() - started)
            if not result.success:
                print(result.stderr, file=sys.stderr)
                return 1
            # the streaming phase alone, from cp's own final progress line
            phase = re.search(r"import of .* in ([0-9.]+) s$", result.stderr, re.M)
            times["stream"].append(float(phase.group(1)) if phase else float("nan"))
        lvm.remove(VG, lv)
        fe.close()
    size = args.size_mib
    dd, cp = statistics.median(times["dd"]), statistics.median(times["cp"])
    print(f"import of {size} MiB ({args.zero_share:.0%} zeroes), {args.rounds} rounds, "
          f"medians:")
    print(f"  plain dd over ssh : {dd:7.2f} s  {size / dd:7.1f} MiB/s")
    print(f"  datastore cp      : {cp:7.2f} s  {size / cp:7.1f} MiB/s")
    stream = statistics.median(times["stream"])
    print(f"  cp streaming phase: {stream:7.2f} s  {size / stream:7.1f} MiB/s "
          f"(the rest: LV create/activate/tag/release, checksum)")
    print(f"  ratio cp/dd       : {cp / dd:7.2f}   streaming phase/dd: {stream / dd:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
