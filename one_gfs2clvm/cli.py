"""one-gfs2clvm: the admin's command line.

Imports stay lazy so `--help` does not load paramiko.
"""

from __future__ import annotations

import sys

import click


class _Context:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._config = None

    @property
    def config(self):
        if self._config is None:
            from .config import load
            self._config = load(self.config_path)
        return self._config


def _fail(exc) -> None:
    click.echo(exc.one_line(), err=True)
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ONE_GFS2CLVM_CONF", metavar="PATH",
              help="Driver configuration (default /etc/one/gfs2clvm.conf).")
@click.pass_context
def main(ctx, config_path):
    """gfs2clvm: OpenNebula VM disks on a shared LVM VG (lvmlockd/clvmd) with GFS2."""
    ctx.obj = _Context(config_path)


@main.command("check-config")
@click.pass_obj
def check_config(obj):
    """Load and validate the configuration file; print what it says."""
    from .errors import DriverError
    try:
        config = obj.config
    except DriverError as exc:
        _fail(exc)
    click.echo(f"{config.source}: OK")
    click.echo(f"  volume groups: {', '.join(config.volume_groups)} (lock mode {config.lock_mode})")
    click.echo(f"  bridge hosts:  {', '.join(config.bridge_hosts) or '-'}")
    click.echo(f"  ssh:           {config.ssh.user}@host:{config.ssh.port}, "
               f"known_hosts {config.ssh.known_hosts}")


@main.command("check-node")
@click.argument("hosts", nargs=-1, required=True)
@click.pass_obj
def check_node(obj, hosts):
    """Check workers: host key, node helper, sudo limited to the helper, VGs."""
    from .checks import check_node as run_check
    from .errors import DriverError
    failed = False
    for host in hosts:
        try:
            problems = run_check(obj.config, host)
        except DriverError as exc:
            problems = [exc.one_line()]
        for line in problems:
            click.echo(f"{host}: {line}", err=True)
        if problems:
            failed = True
        else:
            click.echo(f"{host}: OK")
    sys.exit(1 if failed else 0)


@main.command("lvs")
@click.option("--host", help="Worker to ask (default: first reachable bridge host).")
@click.argument("vg", required=False)
@click.pass_obj
def lvs(obj, host, vg):
    """List the driver's LVs in a VG as the workers see them."""
    from .cluster import Cluster
    from .errors import DriverError
    from .nodehelper import is_our_lv
    try:
        cluster = Cluster(obj.config)
        vg = vg or obj.config.default_vg
        volumes = cluster.on_bridge(lambda h: cluster.lvm(h).lvs(vg), [host] if host else [])
    except DriverError as exc:
        _fail(exc)
    for lv in volumes:
        if is_our_lv(lv.name):
            click.echo(f"{lv.vg}/{lv.name}\t{lv.size_bytes >> 20} MiB\t{lv.attr}\t"
                       f"{','.join(lv.tags)}")


@main.command("install")
@click.option("--root", required=True, metavar="DIR",
              help="Install under DIR (`/` for the real system, or a staging directory).")
@click.option("--layout", type=click.Choice(["modern", "3.x", "all"]), default="all",
              show_default=True,
              help="modern: remotes/tm/gfs2clvm; 3.x: tm_commands + /etc/one/tm_gfs2clvm.")
@click.option("--role", type=click.Choice(["frontend", "node", "all"]), default="all",
              show_default=True,
              help="frontend: TM/datastore/image remotes and /etc/one; node: sudoers, "
                   "udev rules, node helper, /etc/one/gfs2clvm.conf.")
@click.option("--dry-run", is_flag=True, help="List what would be installed; write nothing.")
@click.option("--python", "python", metavar="PATH",
              help="Interpreter for the Python shims' #! line (default: this one).")
def install_cmd(root, layout, role, dry_run, python):
    """Copy the driver's files to their system paths under --root.

    Existing files under /etc/one are never overwritten: the new version is
    written beside them as <file>.new.  On a node, libvirt's existing
    /etc/libvirt/qemu.conf gets only the keys in etc-libvirt/qemu.conf set.
    """
    from .install import InstallError, install
    try:
        steps = install(root, role=role, layout=layout, dry_run=dry_run, python=python,
                        echo=click.echo)
    except InstallError as exc:
        _fail(exc)
    if any(step.how == "settings" and step.outcome == "updated" for step in steps):
        click.echo("restart libvirtd for the qemu.conf settings to take effect "
                   "(running VMs keep running)")


@main.group("image")
def image():
    """Image volumes (lv-oneimg-<id>)."""


@image.command("import")
@click.argument("source", metavar="FILE|URL")
@click.option("--image-id", type=click.IntRange(0), required=True,
              help="Id N of the volume lv-oneimg-N to create.")
@click.option("--vg", help="Volume group (default: the first configured).")
@click.option("--bridge", "bridges", multiple=True, metavar="HOST",
              help="Worker(s) to write through (default: [storage] bridge_hosts).")
@click.option("--datastore-dir", metavar="DIR",
              help="GFS2 directory for staging qcow2/vmdk/vdi (default <gfs2>/datastores/import).")
@click.option("--md5", help="Expected MD5 of the image file.")
@click.option("--sha1", help="Expected SHA1 of the image file.")
@click.pass_obj
def image_import(obj, source, image_id, vg, bridges, datastore_dir, md5, sha1):
    """Import FILE (on this machine or on GFS2) or an http(s) URL into a new
    raw volume lv-oneimg-N, with a progress bar; prints `SOURCE FORMAT`.

    Register it afterwards with `oneimage create ... --source SOURCE`.  The
    volume is tagged as CLI-made, so the datastore never mistakes it for the
    import of its own image N.  No RESTRICTED_DIRS here: you are the admin."""
    from .errors import DriverError
    from .opennebula.imports import Import
    from .opennebula.runtime import Action
    from .streaming import Checksums
    bar = None
    try:
        config = obj.config
        action = Action(name="image import", config=config)
        mount = config.gfs2_mount.rstrip("/")

        def progress(done, total):
            nonlocal bar
            if bar is None:
                bar = click.progressbar(length=total or 0, label="importing", file=sys.stderr,
                                        show_pos=False, show_percent=bool(total))
                bar.__enter__()
            bar.update(done - bar.pos)
        job = Import(action, image_id, source, config.check_vg(vg or config.default_vg),
                     list(bridges) or list(config.bridge_hosts),
                     datastore_dir or f"{mount}/datastores/import", Checksums(md5, sha1),
                     restricted=[], safe=[], progress_callback=progress)
        job.from_cli = True
        try:
            line = job.run()
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        action.undo.commit()
    except DriverError as exc:
        action_ = locals().get("action")
        if action_ is not None:
            action_.undo.rollback(action_.log)
        _fail(exc)
    click.echo(line)


@main.command("node-helper-path")
def node_helper_path():
    """Print the path of the node helper source to install on workers."""
    from . import nodehelper
    click.echo(nodehelper.__file__)


if __name__ == "__main__":
    main()
