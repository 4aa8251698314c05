"""opennebula/api.py against the stand-in oned (testkit/fakeoned.py), and the
stand-in's own guarantees (schema-valid documents, oned-like answers)."""

from __future__ import annotations

import socket
import threading
import xmlrpc.client

import pytest
from lxml import etree

from testkit import fakeoned as fo
from one_gfs2clvm.errors import DriverError, InvalidArgument
from one_gfs2clvm.opennebula import xml as onexml
from one_gfs2clvm.opennebula.api import (NO_EXISTS, CachedApi, OneApi, OpenNebulaError,
                                         XmlRpcApi, api_from_env, read_session)


@pytest.fixture
def oned(fake_oned):
    fake_oned.put_vm(fo.vm_doc(7, uid=5, gid=100, permissions="600",
                               disks=[dict(image_id=3, persistent=True), dict(type="swap")],
                               history=[dict(hostname="node1", ds_id=0)], context=True))
    fake_oned.put_image(fo.image_doc(3, uid=5, gid=100, persistent=True, vms=[7], state=8))
    fake_oned.put_datastore(fo.datastore_doc(101, name="lvm_images"))
    fake_oned.add_user(5, "alice", "alice-pw", gid=100)
    fake_oned.add_user(6, "bob", "bob-pw", gid=1)
    return fake_oned


@pytest.fixture
def api(oned):
    return XmlRpcApi(oned.endpoint, oned.session, timeout=5)


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]   # closed on exit: nothing listens there


# --- found --------------------------------------------------------------------------------

def test_found(api):
    assert isinstance(api, OneApi)
    vm = api.vm(7)
    assert isinstance(vm, onexml.Vm)
    assert (vm.id, vm.uid, vm.state, vm.disk(0).image_id) == (7, 5, onexml.ACTIVE, 3)
    assert vm.last_history.hostname == "node1" and vm.context_disk_id == 2
    image = api.image(3)
    assert (image.id, image.persistent, image.vm_ids) == (3, True, [7])
    ds = api.datastore(101)
    assert (ds.name, ds.vg_name, ds.bridge_list) == ("lvm_images", "vg_one", ["node1", "node2"])
    user = api.user(5)
    assert (user.name, user.gid, user.group_ids) == ("alice", 100, [100])


def test_state_changes_are_seen(oned, api):
    oned.set_vm_state(7, onexml.POWEROFF, 0)
    vm = api.vm(7)
    assert (vm.state, vm.lcm_state) == (onexml.POWEROFF, 0)
    assert onexml.vm_is_quiescent(vm)
    assert vm.text("PREV_STATE") == str(onexml.ACTIVE)


# --- errors ---------------------------------------------------------------------------------

def test_unknown_id(api):
    with pytest.raises(OpenNebulaError) as info:
        api.vm(8)
    assert info.value.one_line() == \
        "OpenNebula API: VM 8: [one.vm.info] Error getting virtual machine [8]."
    assert info.value.code == NO_EXISTS and info.value.not_found
    assert info.value.exit_code == 7 and isinstance(info.value, DriverError)
    with pytest.raises(OpenNebulaError, match=r"^OpenNebula API: IMAGE 9: \[one\.image\.info\] "
                                              r"Error getting image \[9\]\.$"):
        api.image(9)
    with pytest.raises(OpenNebulaError, match=r"Error getting datastore \[9\]\.$"):
        api.datastore(9)
    with pytest.raises(OpenNebulaError, match=r"Error getting user \[9\]\.$"):
        api.user(9)


@pytest.mark.parametrize("session", ["oneadmin:wrong", "nobody:x", "no-colon", ""])
def test_bad_credentials(oned, session):
    with pytest.raises(OpenNebulaError) as info:
        XmlRpcApi(oned.endpoint, session).vm(7)
    assert info.value.one_line() == ("OpenNebula API: VM 7: [one.vm.info] User couldn't be "
                                     "authenticated, aborting call.")
    assert info.value.denied and info.value.code == 0x100
    assert "wrong" not in info.value.one_line()


def test_disabled_user_cannot_authenticate(oned):
    oned.add_user(9, "carol", "carol-pw", enabled=False)
    with pytest.raises(OpenNebulaError, match="couldn't be authenticated"):
        XmlRpcApi(oned.endpoint, oned.session_of("carol")).user(9)


def test_authorization_follows_permission_bits(oned):
    bob = XmlRpcApi(oned.endpoint, oned.session_of("bob"))
    with pytest.raises(OpenNebulaError) as info:
        bob.vm(7)
    assert info.value.one_line() == ("OpenNebula API: VM 7: [one.vm.info] User [6] : "
                                     "Not authorized to perform USE VM [7].")
    assert info.value.code == 0x200 and info.value.denied
    assert XmlRpcApi(oned.endpoint, oned.session_of("alice")).vm(7).id == 7   # owner
    assert bob.user(6).name == "bob"                                          # itself
    with pytest.raises(OpenNebulaError, match=r"Not authorized to perform USE USER \[5\]"):
        bob.user(5)
    oned.edit("vm", 7, PERMISSIONS__OTHER_U=1)
    assert bob.vm(7).id == 7


def test_connection_refused():
    endpoint = f"http://127.0.0.1:{_refused_port()}/RPC2"
    with pytest.raises(OpenNebulaError) as info:
        XmlRpcApi(endpoint, "oneadmin:x").vm(7)
    assert info.value.one_line() == (f"OpenNebula API: VM 7: [one.vm.info] cannot connect to "
                                     f"{endpoint}: connection refused (is oned running?)")
    assert info.value.code is None and not info.value.not_found


def test_timeout(oned):
    oned.delay = 1.0
    api = XmlRpcApi(oned.endpoint, oned.session, timeout=0.2)
    with pytest.raises(OpenNebulaError) as info:
        api.vm(7)
    assert info.value.one_line() == (f"OpenNebula API: VM 7: [one.vm.info] no answer from "
                                     f"{oned.endpoint} within 0.2 s")
    oned.delay = 0
    assert api.vm(7).id == 7        # the connection is usable again after a timeout


def test_wrong_path_is_an_http_error(oned):
    endpoint = oned.endpoint.replace("/RPC2", "/nope")
    with pytest.raises(OpenNebulaError, match=r"\[one\.vm\.info\] HTTP 404 "):
        XmlRpcApi(endpoint, oned.session).vm(7)


def _read_request(conn) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += conn.recv(65536)
    return body


def test_not_an_xmlrpc_server():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/RPC2"

        def answer():
            conn, _ = listener.accept()
            with conn:
                _read_request(conn)    # all of it: unread bytes would make close() a reset
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<html>hi</html>")
        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with pytest.raises(OpenNebulaError, match=r"^OpenNebula API: VM 7: \[one\.vm\.info\] "
                                                  r"malformed XML-RPC answer from "):
            XmlRpcApi(endpoint, "a:b", timeout=5).vm(7)
        thread.join(5)


def test_invalid_arguments(api):
    for bad in (-1, True, "7", 2**31):
        with pytest.raises(InvalidArgument):
            api.vm(bad)
    with pytest.raises(OpenNebulaError, match="invalid endpoint"):
        XmlRpcApi("localhost:2633", "a:b")


def test_session_is_never_shown(oned):
    api = XmlRpcApi(oned.endpoint, "oneadmin:sup3rs3cret")
    assert "sup3rs3cret" not in repr(api)
    with pytest.raises(OpenNebulaError) as info:
        api.vm(7)
    assert "sup3rs3cret" not in info.value.one_line()


# --- configuration ------------------------------------------------------------------------------

def test_api_from_env(oned):
    api = api_from_env(None, environ=oned.env())
    assert isinstance(api, XmlRpcApi) and api.endpoint == oned.endpoint
    assert api.timeout == 10.0
    assert api.vm(7).id == 7
    assert api_from_env(environ=oned.env("alice")).vm(7).uid == 5


def test_api_from_env_defaults(tmp_path):
    (tmp_path / ".one").mkdir()
    (tmp_path / ".one" / "one_auth").write_text("oneadmin:pw\n")
    api = api_from_env(environ={"HOME": str(tmp_path)})
    assert api.endpoint == "http://localhost:2633/RPC2"


def test_missing_auth_file(tmp_path):
    missing = tmp_path / "one_auth"
    with pytest.raises(OpenNebulaError) as info:
        api_from_env(environ={"ONE_AUTH": str(missing)})
    assert info.value.one_line() == (f"OpenNebula API: auth file {missing} not found "
                                     f"(set ONE_AUTH or write user:password into it)")
    assert info.value.exit_code == 7


@pytest.mark.parametrize("content", ["", "\n\n", "justauser\n", ":password\n"])
def test_malformed_auth_file(tmp_path, content):
    path = tmp_path / "one_auth"
    path.write_text(content)
    with pytest.raises(OpenNebulaError, match=r"expected one line user:password$"):
        read_session(path)


def test_auth_file_first_line_stripped(tmp_path):
    path = tmp_path / "one_auth"
    path.write_text("\n  oneadmin:pa:ss  \nsecond:line\n")
    assert read_session(path) == "oneadmin:pa:ss"


# --- cache -------------------------------------------------------------------------------------

def test_cached_api_calls_server_once_per_object(oned, api):
    cached = CachedApi(api)
    assert isinstance(cached, OneApi)
    for _ in range(3):
        assert cached.vm(7).id == 7
        assert cached.image(3).id == 3
        assert cached.datastore(101).id == 101
        assert cached.user(5).id == 5
    assert cached.vm(7) is cached.vm(7)
    assert oned.calls_to("one.vm.info") == [7]
    assert oned.calls_to("one.image.info") == [3]
    assert oned.calls_to("one.datastore.info") == [101]
    assert oned.calls_to("one.user.info") == [5]


def test_cached_api_does_not_cache_failures_and_can_forget(oned, api):
    cached = CachedApi(api)
    with pytest.raises(OpenNebulaError):
        cached.vm(8)
    oned.put_vm(fo.vm_doc(8))
    assert cached.vm(8).id == 8
    assert oned.calls_to("one.vm.info") == [8, 8]
    oned.set_vm_state(8, onexml.POWEROFF)
    assert cached.vm(8).state == onexml.ACTIVE           # cached view
    cached.forget("vm", 8)
    assert cached.vm(8).state == onexml.POWEROFF
    cached.clear()
    cached.vm(8)
    assert oned.calls_to("one.vm.info") == [8, 8, 8, 8]


# --- the stand-in itself --------------------------------------------------------------------------

BUILDERS = {
    "vm-running": lambda: fo.vm_doc(7, disks=[dict(image_id=1), dict(image_id=2, persistent=True,
                                                                      snapshots=[0, 1, 2]),
                                              dict(type="swap", size=256),
                                              dict(type="fs", fs="xfs")],
                                    history=[dict(hostname="a", ds_id=0),
                                             dict(hostname="b", ds_id=0, action=2)],
                                    context={"network": "YES", "ssh_public_key": "ssh-ed25519 x"},
                                    user_template={"LABELS": "x", "SCHED": {"A": "1"}}),
    "vm-pending": lambda: fo.vm_doc(1, state=onexml.PENDING, lcm_state=0),
    "image-os": lambda: fo.image_doc(1, type=0, path="/srv/x.qcow2", format="qcow2"),
    "image-cdrom": lambda: fo.image_doc(2, type=1, source="/var/lib/one/isos/a.isox"),
    "image-persistent": lambda: fo.image_doc(3, persistent=True, vms=[1, 2], state=8),
    "ds-image": lambda: fo.datastore_doc(100),
    "ds-system": lambda: fo.datastore_doc(0, type=1, images=[]),
    "ds-file": lambda: fo.datastore_doc(2, type=2, ds_mad="fs", tm_mad="ssh"),
    "user": lambda: fo.user_doc(5, groups=[1, 100]),
    "user-oneadmin": lambda: fo.user_doc(0, name="oneadmin", gid=0),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_validates(name):
    fo.validate(BUILDERS[name]())


@pytest.mark.parametrize("mutate", [
    lambda root: root.remove(root.find("STATE")),                      # mandatory element gone
    lambda root: setattr(root.find("LCM_STATE"), "text", "running"),   # not an integer
    lambda root: root.append(etree.Element("BOGUS")),                  # unknown element
    lambda root: root.find("TEMPLATE").remove(root.find("TEMPLATE/VMID")),
    lambda root: root.insert(0, root.find("NAME")),                    # wrong order
])
def test_broken_document_does_not_validate(mutate):
    root = etree.fromstring(BUILDERS["vm-running"]())
    mutate(root)
    with pytest.raises(fo.SchemaError, match="does not validate against vm.xsd"):
        fo.validate(root)


def test_server_refuses_to_store_invalid_document(fake_oned):
    broken = fo.image_doc(3).replace("<SIZE>1024</SIZE>", "")
    with pytest.raises(fo.SchemaError):
        fake_oned.put_image(broken)
    with pytest.raises(fo.SchemaError):
        fake_oned.put_vm(fo.image_doc(3))          # valid, but not a VM
    fake_oned.put_vm(fo.vm_doc(7))
    with pytest.raises(fo.SchemaError):
        fake_oned.set_vm_state(7, "x")                # STATE must be an integer
    assert XmlRpcApi(fake_oned.endpoint, fake_oned.session).vm(7).state == onexml.ACTIVE


def test_server_validates_what_it_serves(tmp_path):
    server = fo.FakeOned(tmp_path).start()
    try:
        server.put_vm(fo.vm_doc(7))
        server._docs["vm"][7].remove(server._docs["vm"][7].find("STATE"))   # corrupt it
        with pytest.raises(OpenNebulaError, match=r"XML-RPC fault .*invalid document"):
            XmlRpcApi(server.endpoint, server.session).vm(7)
        assert server.errors and "vm.xsd" in server.errors[0]
    finally:
        server.stop()


def test_server_answers_like_oned(oned):
    proxy = xmlrpc.client.ServerProxy(oned.endpoint)
    ok = proxy.one.vm.info(oned.session, 7, False)
    assert ok[0] is True and ok[1].startswith("<VM>") and ok[2] == 0 and len(ok) == 3
    missing = proxy.one.vm.info(oned.session, 99, False)
    assert missing == [False, "[one.vm.info] Error getting virtual machine [99].", 0x400, 99, 0]
    denied = proxy.one.image.info("x:y", 3, False)
    assert denied[:3] == [False, "[one.image.info] User couldn't be authenticated, "
                                 "aborting call.", 0x100]


def test_missing_xsds_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(fo, "xsd_candidates", lambda: [tmp_path / "nowhere"])
    with pytest.raises(RuntimeError, match=r"OpenNebula XSD directory not found .*ONE_XSD_DIR"):
        fo.FakeOned(tmp_path)


def test_env_points_at_the_server(oned):
    env = oned.env()
    assert env["ONE_XMLRPC"] == oned.endpoint
    assert open(env["ONE_AUTH"]).read().strip() == oned.session
