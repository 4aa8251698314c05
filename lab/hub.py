#!/usr/bin/env python3
"""Flooding L2 hub on a UNIX datagram socket for the lab's cluster network.

Each qemu guest runs `-netdev dgram` with its own socket and this hub as the
remote: one Ethernet frame per datagram.  The hub learns guests from sender
addresses and forwards every frame to every other guest, non-blocking (a full
queue drops the frame, as a switch would).  No IP traffic on the host at all.

    hub.py SOCKET PIDFILE     (pidfile is written once the socket is bound)
"""

import errno
import os
import signal
import socket
import sys


def main(sock_path: str, pidfile: str) -> int:
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind(sock_path)
    with open(pidfile + ".tmp", "w") as handle:
        handle.write(f"{os.getpid()}\n")
    os.rename(pidfile + ".tmp", pidfile)

    counters = {"in": 0, "out": 0, "dropped": 0}

    def stop(*_):
        sys.stderr.write(f"hub stopping: {counters}\n")
        for path in (sock_path, pidfile):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ports: set[str] = set()
    while True:
        frame, sender = sock.recvfrom(65536)
        counters["in"] += 1
        if sender and sender not in ports:
            ports.add(sender)
        for port in list(ports):
            if port == sender:
                continue
            try:
                sock.sendto(frame, socket.MSG_DONTWAIT, port)
                counters["out"] += 1
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                    counters["dropped"] += 1
                elif exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                    ports.discard(port)  # that guest is gone
                else:
                    raise


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
