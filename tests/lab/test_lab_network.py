"""The lab keeps the network rule: no host packet leaves 127.0.0.0/8.

The cluster net is UNIX datagram sockets through lab/hub.py; the only inet
sockets the lab's qemu processes may hold are the ssh hostfwd listeners on
127.0.0.1 (and connections on them).
"""

from __future__ import annotations

import re
import subprocess

from lab.vmlab import pid_alive


def inet_sockets_of(pids: set[int]) -> list[tuple[str, str, str]]:
    """(protocol, local address, peer address) of every inet socket these pids hold."""
    listing = subprocess.run(["ss", "-H", "-tuanp"], capture_output=True, text=True,
                             check=True).stdout
    found = []
    for line in listing.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            fields = line.split()
            found.append((fields[0], fields[4], fields[5]))
    return found


def test_qemu_holds_only_loopback_inet_sockets(lab):
    pids = {node.pid for node in lab.members}
    assert all(pid_alive(pid, str(lab.run)) for pid in pids)
    sockets = inet_sockets_of(pids)
    listeners = {local for proto, local, _ in sockets if proto == "tcp"}
    # the positive control: every node's ssh forward is there ...
    assert {f"127.0.0.1:{node.ssh_port}" for node in lab.members} <= listeners
    # ... and nothing else: no UDP, nothing bound or connected beyond loopback
    for proto, local, peer in sockets:
        assert proto == "tcp", (proto, local, peer)
        assert local.startswith("127.0.0.1:"), (local, peer)
        assert peer.startswith("127.0.0.1:") or peer in ("0.0.0.0:*", "*:*"), (local, peer)


def test_cluster_traffic_goes_through_the_unix_hub(lab):
    """Guests reach each other on the cluster net, and the hub saw their frames."""
    first, last = lab.node_names[0], lab.node_names[-1]
    lab.sh(first, f"ping -c 2 -W 5 -q {last}")
    uds = subprocess.run(["ss", "-H", "-xap"], capture_output=True, text=True,
                         check=True).stdout
    hub_lines = [line for line in uds.splitlines() if f"pid={lab.hub_pid}," in line]
    assert any(str(lab.run / "hub.sock") in line for line in hub_lines)
