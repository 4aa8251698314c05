"""The 3.x layout (tm_commands + tm_gfs2clvm.conf), run as OpenNebula 3.x's
one_tm runs it, against the lab.  3.x paths: /var/lib/one/<vid>/images/disk.N.

Not here: live migration.  OpenNebula 3.x calls no TM command for it, so with
lvmlockd's exclusive activation the destination cannot open the disk; the
3.x layout supports live migration only with lock_mode = clvmd (cluster-wide
activation, as the 2012 driver relied on).
"""

from __future__ import annotations

import pytest

from testkit.frontend import FE, MiB, FrontEnd, digest, pattern
from lab.vmlab import VG
from one_gfs2clvm.names import lv_device_path

DATA = pattern(21, 4 * MiB)


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend3"))
    frontend.make_image_lv(520, 16, DATA)
    yield frontend
    frontend.close()


def images_dir(vm_id: int) -> str:
    return f"/var/lib/one/{vm_id}/images"




def deploy3(fe, vm_id, host):
    d = images_dir(vm_id)
    fe.tm3("clone", f"{FE}:{VG}/lv-oneimg-520", f"{host}:{d}/disk.0", 24)
    fe.tm3("mkimage", 8, "ext3", f"{host}:{d}/disk.1")
    fe.tm3("mkswap", 8, f"{host}:{d}/disk.2")


def test_instantiate_shutdown_3x(fe, vm_ids, lab, tmp_path):
    vm_ids.append(7501)
    node = lab.node_names[0]
    deploy3(fe, 7501, node)
    context = tmp_path / "context.sh"
    context.write_text("ONE=1\n")
    fe.tm3("context", str(context), f"{node}:{images_dir(7501)}/disk.3")
    for disk_id in range(3):
        lv = f"lv-one-7501-{disk_id}"
        assert fe.active_on(lv) == [node]
        assert fe.link(f"{images_dir(7501)}/disk.{disk_id}") == lv_device_path(VG, lv)
    assert fe.lv("lv-one-7501-0").size_bytes == 24 * MiB
    assert fe.sha(node, "lv-one-7501-0", len(DATA)) == digest(DATA)
    assert fe.exists(f"{images_dir(7501)}/disk.3")
    fe.tm3("delete", f"{node}:{images_dir(7501)}")
    for disk_id in range(3):
        assert fe.lv(f"lv-one-7501-{disk_id}") is None
    assert not fe.exists(images_dir(7501))
    fe.tm3("delete", f"{node}:{images_dir(7501)}")            # idempotent


def test_delete_vm_1_leaves_10_and_100_3x(fe, vm_ids, lab):
    node = lab.node_names[1]
    for vm_id in (1, 10, 100):
        vm_ids.append(vm_id)
        fe.tm3("clone", f"{FE}:{VG}/lv-oneimg-520", f"{node}:{images_dir(vm_id)}/disk.0")
    fe.tm3("delete", f"{node}:{images_dir(1)}")
    assert fe.lv("lv-one-1-0") is None
    for vm_id in (10, 100):
        assert fe.active_on(f"lv-one-{vm_id}-0") == [node]


def test_stop_resume_and_migrate_3x(fe, vm_ids, lab):
    vm_ids.append(7502)
    first, second, third = (lab.node_names * 3)[:3]
    deploy3(fe, 7502, first)
    fe.write(first, "lv-one-7502-0", pattern(22, MiB))
    # stop: MV host:<vid>/images fe:/var/lib/one/<vid>
    fe.tm3("mv", f"{first}:{images_dir(7502)}", f"{FE}:/var/lib/one/7502")
    for disk_id in range(3):
        assert fe.active_on(f"lv-one-7502-{disk_id}") == []
    # resume on another host: MV fe:/var/lib/one/<vid>/images host:<vid>/images
    fe.tm3("mv", f"{FE}:/var/lib/one/7502/images", f"{second}:{images_dir(7502)}")
    for disk_id in range(3):
        assert fe.active_on(f"lv-one-7502-{disk_id}") == [second]
    # cold migration: MV prevhost:<vid>/images host:<vid>/images
    fe.tm3("mv", f"{second}:{images_dir(7502)}", f"{third}:{images_dir(7502)}")
    for disk_id in range(3):
        assert fe.active_on(f"lv-one-7502-{disk_id}") == [third]
    assert fe.sha(third, "lv-one-7502-0", MiB) == digest(pattern(22, MiB))


def test_persistent_image_3x(fe, vm_ids, lab):
    vm_ids.append(7503)
    image = fe.make_image_lv(521, 16, DATA)
    node = lab.node_names[-1]
    disk = f"{images_dir(7503)}/disk.0"
    fe.tm3("ln", f"{FE}:{VG}/{image}", f"{node}:{disk}")
    assert fe.active_on(image) == [node]
    fe.write(node, image, pattern(23, MiB))
    # epilog of a SAVE=YES disk: MV host:<dir>/disk.0 fe:<ldir>/disk.0, then DELETE
    fe.tm3("mv", f"{node}:{disk}", f"{FE}:/var/lib/one/7503/disk.0")
    fe.tm3("delete", f"{node}:{images_dir(7503)}")
    assert fe.lv(image) is not None and fe.active_on(image) == [] and fe.lv(image).tags == ()
    fe.tm3("ln", f"{FE}:{VG}/{image}", f"{lab.node_names[0]}:{disk}")
    assert fe.sha(lab.node_names[0], image, MiB) == digest(pattern(23, MiB))
    fe.tm3("delete", f"{lab.node_names[0]}:{images_dir(7503)}")
    assert fe.lv(image) is not None                          # an image is never deleted


def test_errors_use_the_3x_framing(fe, lab):
    result = fe.tm3("clone", f"{FE}:{VG}/lv-oneimg-99999", f"{lab.node_names[0]}:"
                    f"{images_dir(7504)}/disk.0", expect_ok=False)
    assert "lv-oneimg-99999" in result.failure_message       # what 3.x oned would show
    assert result.failure_message != "-"


def test_resubmit_and_cancel_3x(fe, vm_ids, lab):
    """resubmit = DELETE then CLONE again (maybe elsewhere); cancel = DELETE."""
    vm_ids.append(7505)
    first, second = lab.node_names[0], lab.node_names[1]
    fe.tm3("clone", f"{FE}:{VG}/lv-oneimg-520", f"{first}:{images_dir(7505)}/disk.0")
    fe.write(first, "lv-one-7505-0", pattern(25, MiB))
    fe.tm3("delete", f"{first}:{images_dir(7505)}")
    fe.tm3("clone", f"{FE}:{VG}/lv-oneimg-520", f"{second}:{images_dir(7505)}/disk.0")
    assert fe.active_on("lv-one-7505-0") == [second]
    assert fe.sha(second, "lv-one-7505-0", len(DATA)) == digest(DATA)     # a fresh copy
    fe.tm3("delete", f"{second}:{images_dir(7505)}")                        # cancel
    assert fe.lv("lv-one-7505-0") is None and not fe.exists(images_dir(7505))
