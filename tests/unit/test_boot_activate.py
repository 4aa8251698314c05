"""boot-activate picks exactly this host's disks from the one-use tags (canned lvm)."""

import json
import subprocess

from one_gfs2clvm.nodehelper import boot_activate

CONFIG = {"vgs": ["vg_one"], "lock_mode": "lvmlockd", "retries": 0, "delay": 0.0}


def lv(name, tags="", active=""):
    return {"lv_name": name, "lv_tags": tags, "lv_active": active}


class FakeLvm:
    def __init__(self, lvs, lock_start_failures=0):
        self.lvs, self.failures, self.calls = lvs, lock_start_failures, []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[:2] == ["vgchange", "--lock-start"]:
            ok = self.failures == 0
            self.failures = max(0, self.failures - 1)
            return subprocess.CompletedProcess(argv, 0 if ok else 5, b"", b"" if ok else b"busy")
        if argv[0] == "lvs":
            body = json.dumps({"report": [{"lv": self.lvs}]}).encode()
            return subprocess.CompletedProcess(argv, 0, body, b"")
        return subprocess.CompletedProcess(argv, 0, b"", b"")


def activations(fake):
    return [argv[-1] + " " + argv[2] for argv in fake.calls if argv[0] == "lvchange"]


def test_only_this_hosts_disks_exclusive_or_shared():
    fake = FakeLvm([
        lv("lv-one-7-0", "one-use=7:0:node2"),
        lv("lv-one-8-0", "one-use=8:0:node3"),                         # another host's
        lv("lv-oneimg-5", "one-use=9:1:node2,one-use=10:1:node3,one-readonly"),
        lv("lv-oneimg-6", "one-use=11:0:node2", active="active"),      # already active
        lv("gfs2_one", "one-use=7:0:node2"),                           # not ours: never
        lv("lv-one-12-0", "one-use=12:0:node2x"),                      # exact host match
    ])
    status, lines = boot_activate(CONFIG, ["vg_one"], run=fake, host_names={"node2"})
    assert status == 0
    assert activations(fake) == ["vg_one/lv-one-7-0 ey", "vg_one/lv-oneimg-5 sy"]
    assert "vg_one/lv-oneimg-6: already active" in lines


def test_waits_for_the_lock_start_within_the_bound():
    now = [0.0]
    fake = FakeLvm([lv("lv-one-7-0", "one-use=7:0:node2")], lock_start_failures=3)
    status, _ = boot_activate(CONFIG, ["vg_one"], run=fake, host_names={"node2"}, wait=60,
                              clock=lambda: now[0],
                              sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert status == 0 and now[0] == 15                     # three 5 s waits
    assert activations(fake) == ["vg_one/lv-one-7-0 ey"]


def test_gives_up_waiting_after_the_bound():
    now = [0.0]
    fake = FakeLvm([], lock_start_failures=1000)
    boot_activate(CONFIG, ["vg_one"], run=fake, host_names={"node2"}, wait=20,
                  clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert now[0] == 20
    starts = [argv for argv in fake.calls if argv[0] == "vgchange"]
    assert len(starts) == 5                                 # t = 0, 5, 10, 15, 20
