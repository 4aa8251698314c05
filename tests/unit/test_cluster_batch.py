"""Cluster.run_steps joins consecutive node-helper steps into one helper batch,
and a failing batch step still raises the typed error naming its own LV.
Run through the recording worker (testkit/recording.py), whose helper runs a
batch step by step like the real one (nodehelper.batch_steps / run_batch)."""

from __future__ import annotations

import shlex

import pytest

from one_gfs2clvm.cluster import Cluster
from one_gfs2clvm.config import Config
from one_gfs2clvm.errors import HelperRefused, LockContention, NotFound
from testkit.recording import GiB, RecordingWorker, ScriptedWorker, installed

CONFIG = Config(volume_groups=("vg_one",))
SUDO = [CONFIG.sudo, "-n", CONFIG.node_helper]


def helper(*words) -> list[str]:
    return [*SUDO, *map(str, words)]


def test_consecutive_helper_steps_become_one_batch_others_stay():
    cluster = Cluster(CONFIG)
    steps = [helper("activate", "vg_one", "lv-one-1-0", "ey"),
             helper("activate", "vg_one", "lv-oneimg-5", "sy"),
             ["qemu-img", "convert", "a", "b"],
             helper("activate", "vg_one", "lv-oneimg-5", "n"),
             ["mkdir", "-p", "/x"],
             helper("lvs", "vg_one"),                      # reports are never batched
             helper("activate", "vg_one", "lv-one-1-0", "n")]
    assert cluster.batched(steps) == [
        helper("batch", "activate", "vg_one", "lv-one-1-0", "ey", ";",
               "activate", "vg_one", "lv-oneimg-5", "sy"),
        ["qemu-img", "convert", "a", "b"],
        helper("activate", "vg_one", "lv-oneimg-5", "n"),   # alone: no batch needed
        ["mkdir", "-p", "/x"],
        helper("lvs", "vg_one"),
        helper("activate", "vg_one", "lv-one-1-0", "n")]


def test_a_batch_runs_every_step_in_one_helper_run():
    worker = RecordingWorker(CONFIG)
    worker.vg.add("vg_one", "lv-one-1-0", GiB, ["one-incomplete"])
    with installed(worker):
        Cluster(CONFIG).run_steps("node1", [
            helper("activate", "vg_one", "lv-one-1-0", "ey"),
            helper("deltag", "vg_one", "lv-one-1-0", "one-incomplete"),
            helper("addtag", "vg_one", "lv-one-1-0", "one-use=1:0:node1")])
    assert worker.helper_runs() == 1
    assert [argv for _, argv in worker.helper_calls()] == [
        ("activate", "vg_one", "lv-one-1-0", "ey"),
        ("deltag", "vg_one", "lv-one-1-0", "one-incomplete"),
        ("addtag", "vg_one", "lv-one-1-0", "one-use=1:0:node1")]
    lv = worker.vg.lvs[("vg_one", "lv-one-1-0")]
    assert lv.tags == ["one-use=1:0:node1"] and lv.active == {"node1": "ey"}


def test_a_failing_batch_step_raises_its_typed_error_for_its_own_lv():
    worker = ScriptedWorker(CONFIG)
    worker.vg.add("vg_one", "lv-one-1-0", GiB)
    worker.vg.add("vg_one", "lv-oneimg-5", GiB, active={"node2": "ey"})
    with installed(worker), pytest.raises(LockContention) as info:
        Cluster(CONFIG).run_steps("node1", [
            helper("activate", "vg_one", "lv-one-1-0", "ey"),
            helper("activate", "vg_one", "lv-oneimg-5", "ey"),     # exclusive on node2
            helper("remove", "vg_one", "lv-one-1-0")])
    assert "node1: vg_one/lv-oneimg-5:" in info.value.one_line()
    assert "lv-one-1-0" not in info.value.one_line()
    assert ("vg_one", "lv-one-1-0") in worker.vg.lvs              # the step after: not run


def test_a_missing_lv_in_the_middle_of_a_batch_is_not_found_for_that_lv():
    worker = RecordingWorker(CONFIG)
    worker.vg.add("vg_one", "lv-one-1-0", GiB)
    with installed(worker), pytest.raises(NotFound, match="vg_one/lv-one-1-1"):
        Cluster(CONFIG).run_steps("node1", [
            helper("activate", "vg_one", "lv-one-1-0", "n"),
            helper("activate", "vg_one", "lv-one-1-1", "n")])


def test_a_refused_batch_names_the_refused_step():
    worker = RecordingWorker(CONFIG)
    # built by hand: the driver's own helper_argv would refuse this before any ssh
    batch = helper("batch", "activate", "vg_one", "lv-one-1-0", "n", ";",
                   "activate", "vg_other", "lv-one-1-0", "n")
    with installed(worker), pytest.raises(HelperRefused) as info:
        Cluster(CONFIG).run_steps("node1", [batch])
    assert "vg_other/lv-one-1-0" in info.value.one_line()
    assert "batch step 2" in info.value.one_line()
    assert worker.helper_calls() == []                            # nothing ran
    assert shlex.join(batch) in [shlex.join(c.argv) for c in worker.calls]


def test_a_failure_names_the_callers_step_index():
    """failed_step counts in the caller's list, batches unfolded: every step before
    it ran, none after."""
    worker = ScriptedWorker(CONFIG)
    worker.vg.add("vg_one", "lv-one-1-0", GiB)
    steps = [["mkdir", "-p", "/x"],
             helper("activate", "vg_one", "lv-one-1-0", "ey"),
             helper("activate", "vg_one", "lv-one-1-9", "ey"),        # missing: fails
             helper("remove", "vg_one", "lv-one-1-0"),
             ["qemu-img", "convert", "a", "b"]]
    with installed(worker), pytest.raises(NotFound) as info:
        Cluster(CONFIG).run_steps("node1", steps)
    assert info.value.failed_step == 2
    worker.fail("qemu-img", "convert")
    with installed(worker), pytest.raises(Exception) as info:
        Cluster(CONFIG).run_steps("node1", steps[:2] + steps[4:])
    assert info.value.failed_step == 2                      # the convert, third in that list


def test_a_refused_batch_failed_at_its_first_step():
    worker = RecordingWorker(CONFIG)
    batch = helper("batch", "activate", "vg_one", "lv-one-1-0", "n", ";",
                   "activate", "vg_other", "lv-one-1-0", "n")
    with installed(worker), pytest.raises(HelperRefused) as info:
        Cluster(CONFIG).run_steps("node1", [["true"], batch])
    assert info.value.failed_step == 1                      # nothing of the batch ran
