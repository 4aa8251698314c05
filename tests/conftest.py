"""Shared pytest setup (keep small: others add here)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # make one_gfs2clvm importable under plain `pytest` too
    sys.path.insert(0, str(ROOT))

from sshd_fixture import sshd  # noqa: E402,F401  (session fixture: real sshd on 127.0.0.1)
from fakeoned import fake_oned  # noqa: E402,F401  (function fixture: stand-in oned XML-RPC)


def pytest_terminal_summary(terminalreporter):
    """One line of fuzz statistics when tests/unit/test_fuzz_actions.py ran:
    how many cases were generated, in how long, by how many tests."""
    module = sys.modules.get("test_fuzz_actions")
    if module is not None and getattr(module, "STATS", None):
        terminalreporter.write_line(module.summary())
