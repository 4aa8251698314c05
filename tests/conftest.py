"""Shared pytest setup (keep small: others add here)."""

import sys

import pytest

# The per-action tests' outcome checks live in testkit.actionkit: rewrite its
# asserts like a test module's (registered before anything imports it).
pytest.register_assert_rewrite("testkit.actionkit")

# pytest.ini's `pythonpath = .` makes one_gfs2clvm, testkit and lab importable
from testkit.sshd import sshd  # noqa: F401  (session fixture: real sshd on 127.0.0.1)
from testkit.fakeoned import fake_oned  # noqa: F401  (function fixture: stand-in oned XML-RPC)


_MODULE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Add each phase's time (setup, call, teardown) to its test module's total."""
    module = report.nodeid.split("::", 1)[0]
    _MODULE_SECONDS[module] = _MODULE_SECONDS.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """One line of fuzz statistics when tests/unit/test_fuzz_actions.py ran (how
    many cases were generated, in how long, by how many tests); then the time
    each test module took, setup and teardown included (a session lab's boot
    counts where it happened: the first lab module), slowest first."""
    module = sys.modules.get("test_fuzz_actions")
    if module is not None and getattr(module, "STATS", None):
        terminalreporter.write_line(module.summary())
    if _MODULE_SECONDS:
        terminalreporter.write_sep("-", "seconds per test module")
        for name, seconds in sorted(_MODULE_SECONDS.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{seconds:8.1f}  {name}")
