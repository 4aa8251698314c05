"""The two calling conventions of datastore actions (6.8+ stdin, <= 6.6 argv)."""

import pytest

from testkit.fakeoned import datastore_doc, driver_action_b64, image_doc
from one_gfs2clvm.config import parse
from one_gfs2clvm.errors import InvalidArgument
from one_gfs2clvm.opennebula.args import driver_action as request
from one_gfs2clvm.opennebula.runtime import Action

CONFIG = parse("[storage]\nvolume_groups = vg_one\n")
PAYLOAD = driver_action_b64(image=image_doc(42, size=64), datastore=datastore_doc(100))


def action(stdin: bytes = b"") -> Action:
    return Action(name="mkfs", config=CONFIG, stdin=stdin)


def test_stdin_form():
    obj, data = request(action(PAYLOAD.encode() + b"\n"), ["42"])
    assert obj == 42 and data.image.id == 42 and data.image.size_mb == 64
    assert data.datastore.id == 100


def test_legacy_argv_form():
    obj, data = request(action(), [PAYLOAD, "42"])
    assert obj == 42 and data.datastore.vg_name == "vg_one"


@pytest.mark.parametrize("argv, stdin, message", [
    ([], b"", "usage: mkfs ID"),
    (["1", "2", "3"], b"", "usage: mkfs ID"),
    (["4x"], PAYLOAD.encode(), "invalid id '4x'"),
    (["42"], b"", "no DS_DRIVER_ACTION_DATA on stdin"),
    (["42"], b"not base64 !!", "base64"),
])
def test_bad_requests_are_one_clear_line(argv, stdin, message):
    with pytest.raises(InvalidArgument) as info:
        request(action(stdin), argv)
    assert message in str(info.value) and "\n" not in str(info.value)
