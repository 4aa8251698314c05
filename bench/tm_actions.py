"""TM action cost against bare baselines, in the same lab run.

    python -m bench.tm_actions [--size-mib 256] [--rounds 3]

  clone        vs  root `dd` of the same image LV into a fresh LV on the same host
               (ssh in, activate both, copy, done: the least any copy can cost)
  mv (cold)    vs  root `lvchange -an` on the source + `lvchange -aey` on the
               destination over two ssh commands

Reports medians and the ratio driver/baseline; no thresholds (the lab is
software-emulated, absolute numbers mean little, ratios are what to watch).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.vmlab import VG, lab_session

MiB = 1 << 20
VM = 4900


def timed(function) -> float:
    started = time.monotonic()
    function()
    return time.monotonic() - started


def main() -> int:
    from testkit.frontend import FE, IMAGE_DS, FrontEnd, pattern
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MiB
    with lab_session(3, "dlm") as lab, tempfile.TemporaryDirectory() as scratch:
        fe = FrontEnd(lab, Path(scratch))
        a, b = lab.node_names[0], lab.node_names[1]
        image = fe.make_image_lv(4900, args.size_mib, pattern(4900, 16 * MiB) * (size // (16 * MiB)))
        fe.image(4900, size=args.size_mib)
        fe.vm(VM, [{"image_id": 4900, "size": args.size_mib}], host=a)
        results: dict[str, list[float]] = {k: [] for k in
                                           ("dd", "clone", "lvchange", "mv")}
        for _ in range(args.rounds):
            fe.cleanup_vms([VM])
            lvm = fe.cluster.lvm(a)
            lvm.create(VG, "lv-one-4901-0", size)

            def baseline_copy():
                lab.sh(a, f"lvchange -aey {VG}/{image} && lvchange -aey {VG}/lv-one-4901-0 && "
                          f"dd if=/dev/{VG}/{image} of=/dev/{VG}/lv-one-4901-0 bs=4M "
                          f"iflag=direct oflag=direct status=none && "
                          f"lvchange -an {VG}/{image}")
            results["dd"].append(timed(baseline_copy))
            lab.sh(a, f"lvchange -an {VG}/lv-one-4901-0 && lvremove -qy {VG}/lv-one-4901-0")
            results["clone"].append(timed(lambda: fe.tm(
                "clone", f"{FE}:{VG}/{image}", f"{a}:{fe.disk_path(VM, 0)}", VM, IMAGE_DS)))
            results["lvchange"].append(timed(lambda: (
                lab.sh(a, f"lvchange -an {VG}/lv-one-{VM}-0"),
                lab.sh(b, f"lvchange -aey {VG}/lv-one-{VM}-0"),
                lab.sh(b, f"lvchange -an {VG}/lv-one-{VM}-0"),
                lab.sh(a, f"lvchange -aey {VG}/lv-one-{VM}-0"))) / 2)   # one hand-over
            results["mv"].append(timed(lambda: fe.tm(
                "mv", f"{a}:{fe.disk_path(VM, 0)}", f"{b}:{fe.disk_path(VM, 0)}", VM, IMAGE_DS)))
        fe.cleanup_vms([VM])
        fe.cluster.lvm(a).remove(VG, image)
        fe.close()
    median = {key: statistics.median(values) for key, values in results.items()}
    print(f"{'what':<34}{'median s':>10}{'ratio':>8}")
    for label, driver, base in ((f"clone {args.size_mib} MiB vs dd", "clone", "dd"),
                                ("cold migrate (mv) vs lvchange x2", "mv", "lvchange")):
        print(f"{label:<34}{median[driver]:>10.2f}{median[driver] / median[base]:>8.2f}")
        print(f"{'  baseline ' + base:<34}{median[base]:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
