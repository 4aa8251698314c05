"""Lab fixtures: boot the qemu cluster once per session (or reuse a running one).

LAB_NODES (3) and LAB_LOCK (dlm | sanlock | none) choose the lab; LAB_KEEP=1
leaves a lab this session started running for the next one.  Only processes
the fixture started are stopped, by PID.
"""

from __future__ import annotations

import os

import pytest

from lab.vmlab import lab_session
from one_gfs2clvm import config as config_mod


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)
    # Labs of other shapes (module fixtures) first: each is stopped before the
    # session's main lab boots, so on 2 cores no two labs compete for CPU.
    # Tests that crash a node of the session lab go last.
    items.sort(key=lambda item: 0 if item.get_closest_marker("own_lab")
               else 2 if item.get_closest_marker("disruptive") else 1)


@pytest.fixture(scope="session")
def lab():
    with lab_session(int(os.environ.get("LAB_NODES", "3")),
                     os.environ.get("LAB_LOCK", "dlm")) as running:
        yield running


@pytest.fixture(scope="session")
def driver_config(lab):
    """The front-end configuration the driver uses against this lab."""
    return config_mod.load(str(lab.driver_conf))


@pytest.fixture
def vm_ids(fe):
    """VM ids a TM test uses (`fe` is its module's FrontEnd); their LVs and VM
    directories are removed afterwards, by exact name."""
    used: list[int] = []
    yield used
    fe.cleanup_vms(used)
