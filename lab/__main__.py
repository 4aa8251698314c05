"""`python -m lab up|down|status|image|demo|ssh`: the lab's command line."""

from __future__ import annotations

import argparse
import os
import sys

from lab.demo import main as demo_main
from lab.vmlab import LOCK_MODES, Lab, ensure_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("--nodes", type=int, default=int(os.environ.get("LAB_NODES", "3")))
    up.add_argument("--lock", choices=LOCK_MODES, default=os.environ.get("LAB_LOCK", "dlm"))
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("image")
    demo = sub.add_parser("demo", help="the main job: drive a volume through the driver")
    demo.add_argument("--keep", action="store_true", help="leave a lab this run booted running")
    ssh = sub.add_parser("ssh")
    ssh.add_argument("node")
    ssh.add_argument("command", nargs="*")
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        return demo_main(keep=args.keep)
    if args.cmd == "image":
        print(ensure_image())
        return 0
    if args.cmd == "up":
        lab = Lab.attach(args.nodes, args.lock) or Lab(nodes=args.nodes, lock=args.lock).up()
        print(f"lab up: {lab.nodes} nodes, lock {lab.lock}, run dir {lab.run}")
        print(f"  ssh -F {lab.run}/ssh_config node1      driver config: {lab.driver_conf}")
        return 0
    if args.cmd == "down":
        for run in Lab.all_run_dirs():
            Lab(run=run).down()
        return 0
    lab = Lab.attach()
    if lab is None:
        print("no lab running")
        return 1
    if args.cmd == "status":
        for node in lab.members:
            print(f"{node.name}: pid {node.pid}, ssh 127.0.0.1:{node.ssh_port}")
        return 0
    result = lab.sh(args.node, " ".join(args.command) or "true", check=False)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_status


sys.exit(main())
