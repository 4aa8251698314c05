"""Datastore `cp`: import an image into `lv-oneimg-<image id>`.

PATH forms and where the bytes travel:
  * a file on the management node (a Sunstone upload, a CLI path): read here
    and streamed over SSH to a bridge worker, sparse-aware (holes and zero
    chunks travel as a few bytes); raw goes straight into the LV, qcow2 /
    vmdk / vdi are staged as a sparse file on GFS2 and converted there;
  * a file on GFS2 (not present on the management node): converted on a
    worker with qemu-img, never leaving the SAN;
  * http(s)://: downloaded by the management node (workers need no route to
    the web) and streamed like a local file;
  * lvm://VM/DISK and vol://IMAGE: copied LV to LV on a worker, after checking
    that the image's owner may use that VM / image (and that the VM is quiescent);
  * *.isox: no LVM; the ISO stays a file on GFS2 and its path becomes SOURCE
    (a management-node ISO is first copied to <datastore dir>/<image id>.isox).
Choices written down: a local file wins over a GFS2 file of the same path
(OpenNebula's PATH means the management node's); RESTRICTED_DIRS/SAFE_DIRS
apply to every path after symlinks are resolved, with OpenNebula's defaults
("/" and "/var/tmp") when the datastore sets neither; inputs are probed and
only raw, qcow2, monolithic vmdk and vdi without backing or data files are
converted, so an image cannot make qemu-img read another file.
A failed import removes the LV it made (from another bridge host if the
worker died); a re-run after success prints the same SOURCE.
"""

from __future__ import annotations

import os
import stat as stat_mod
import urllib.error
import urllib.request

from ..errors import DriverError, InvalidArgument, SourceNotFound
from ..names import (FileSource, IsoxSource, LvmSource, LvSource, UrlSource, VolSource,
                     image_lv, parse_source)
from ..qemuimg import ConvertProgress
from ..streaming import (Checksums, Framer, Progress, check_restricted, file_segments,
                         header_virtual_size, receiver_step, sniff_format, stream_segments)
from ..volumes.copies import copy_to_new_volume
from ..volumes.ops import INCOMPLETE_TAG, MiB, Disks, Volume, image_volume, made_tag
from . import paths
from .args import action_bridges, action_vg, reply
from .runtime import Action

HEADER_BYTES = 64 << 10
DEFAULT_RESTRICTED = ["/"]
DEFAULT_SAFE = ["/var/tmp"]


class DownloadError(DriverError):
    """An http(s) source could not be fetched."""

    exit_code = 3


class Import:
    """One import into lv-oneimg-<image_id>: where from, where to, which rules."""

    def __init__(self, action: Action, image_id: int, path: str, vg: str,
                 bridges: list[str], datastore_dir: str, checksums: Checksums,
                 restricted: list[str], safe: list[str], owner=None,
                 progress_callback=None):
        self.action = action
        self.image_id = image_id
        self.path = path
        self.disks = Disks(action)
        self.target = Volume(vg, image_lv(image_id))
        self.bridges = bridges
        self.datastore_dir = datastore_dir
        self.checksums = checksums
        self.restricted, self.safe = restricted, safe
        self.owner = owner              # the IMAGE (uid, uname) for vol:// and lvm:// checks
        self.progress_callback = progress_callback
        self.from_cli = False           # `one-gfs2clvm image import` sets it
        self._host: str | None = None

    @classmethod
    def from_driver_action(cls, action: Action, image_id: int, data) -> "Import":
        image, datastore = data.image, data.datastore
        ds_value = datastore.template_value if datastore is not None else (lambda name: None)
        restricted, safe = ds_value("RESTRICTED_DIRS"), ds_value("SAFE_DIRS")
        ds_id = datastore.id if datastore is not None else image.datastore_id
        if ds_id is None:
            raise InvalidArgument(f"{action.name}: DS_DRIVER_ACTION_DATA names no datastore")
        base = paths.datastore_dir(action.config, ds_id)
        return cls(action, image_id, image.path, action_vg(action.config, data),
                   action_bridges(action.config, data), base,
                   Checksums(image.template_value("MD5"), image.template_value("SHA1")),
                   restricted.split() if restricted is not None else DEFAULT_RESTRICTED,
                   safe.split() if safe is not None else DEFAULT_SAFE, owner=image)

    # -- where ---------------------------------------------------------------
    @property
    def host(self) -> str:
        """The first reachable bridge worker (host key checked on connect)."""
        if self._host is None:
            def reachable(host: str) -> str:
                self.action.cluster.remote(host).reach()
                return host
            self._host = self.action.cluster.on_bridge(reachable, self.bridges)
        return self._host

    def log(self, message: str) -> None:
        self.action.log(message)

    # -- entry -----------------------------------------------------------------
    def run(self) -> str:
        """Import; return the `SOURCE FORMAT` line."""
        source = parse_source(self.path)
        if isinstance(source, IsoxSource):
            return f"{self._isox(source.path)} raw"
        if isinstance(source, LvSource):
            raise InvalidArgument(f"cp: {self.path!r} names an LV directly; use "
                                  f"vol://<image id> or lvm://<vm id>/<disk id> (their "
                                  f"permissions are checked)")
        done = self._already_imported()
        if done:
            return done
        if isinstance(source, (LvmSource, VolSource)):
            self._from_volume(source)
        elif isinstance(source, UrlSource):
            self._from_url(source.url)
        elif isinstance(source, FileSource):
            if os.path.lexists(source.path):
                self._from_local_file(source.path)
            else:
                self._from_worker_file(source.path)
        else:
            raise InvalidArgument(f"cp: unsupported PATH {self.path!r}")
        return f"{self.target} raw"

    @property
    def made(self) -> str:
        """The made_tag of this import: `cli` for `one-gfs2clvm image import` (an
        admin-chosen id: the datastore's cp never takes such an LV, nor the CLI
        one of cp's), else `cp.<REGTIME>` of the image."""
        return made_tag("cli") if self.from_cli else made_tag("cp", self.owner)

    def _already_imported(self) -> str | None:
        existing = self.disks.lv(self.host, self.target)
        if self.disks.complete_or_cleared(self.host, self.target, existing, self.made):
            self.log(f"{self.target} already imported")
            return f"{self.target} raw"
        return None

    # -- LV targets ------------------------------------------------------------
    def _create_target(self, size_bytes: int) -> None:
        """The image LV, created only if the image fits what oned allocated (IMAGE
        SIZE, from stat) and the VG's free space."""
        if size_bytes <= 0:
            raise InvalidArgument(f"cp: {self.path}: the image is empty")
        allowed = getattr(self.owner, "size_mb", None)
        if allowed and size_bytes > allowed * MiB:
            raise InvalidArgument(f"cp: {self.path} holds {-(-size_bytes // MiB)} MB, more than "
                                  f"the image's SIZE of {allowed} MB: refusing it")
        free = self.action.cluster.lvm(self.host).vgs(self.target.vg).free_bytes
        if size_bytes > free:
            raise InvalidArgument(f"cp: {self.path} needs {-(-size_bytes // MiB)} MB, VG "
                                  f"{self.target.vg} has {free // MiB} MB free")
        self.disks.create(self.host, self.target, size_bytes, self._new_tags(),
                          undo_hosts=self.bridges)

    def _new_tags(self) -> list[str]:
        return [INCOMPLETE_TAG, self.made]

    def _finish_target(self) -> None:
        """Checksum verified (by the caller): LV released and its incomplete mark
        dropped in one round trip (a metadata change: under the VG lock)."""
        cluster = self.action.cluster
        with cluster.locked(self.target.vg):
            cluster.run_steps(self.host, [
                cluster.helper("activate", self.target.vg, self.target.lv, "n"),
                cluster.helper("deltag", self.target.vg, self.target.lv, INCOMPLETE_TAG)])

    def _activate_target(self) -> list:
        cluster = self.action.cluster
        steps = [cluster.helper("activate", self.target.vg, self.target.lv,
                                cluster.lvm(self.host).policy.flag("exclusive"))]
        if self.action.config.zero_on_create:
            steps.append(self.disks.zero_command(self.target.device))
        return steps

    # -- streamed sources (management node file, URL) ------------------------------
    def _stream(self, steps_before: list, receiver, segments, total: int | None,
                what: str) -> Framer:
        progress = Progress(self.log, what, total, callback=self.progress_callback)
        framer = Framer(segments, self.checksums, progress)
        self.action.cluster.run_steps(self.host, steps_before + [receiver], stdin=framer)
        progress.finish()
        self.log(f"{what}: {framer.data_bytes / MiB:.1f} MiB of data sent, "
                 f"{(framer.total - framer.data_bytes) / MiB:.1f} MiB of zeroes skipped")
        return framer

    def _stream_into_lv(self, segments, size: int, what: str) -> None:
        self._create_target(size)
        receiver = receiver_step("device", self.target.device,
                                 known_zero=self.disks.target_is_zero())
        framer = self._stream(self._activate_target(), receiver, segments, size, what)
        if framer.total != size:
            raise DownloadError(f"{what}: got {framer.total} bytes, expected {size}")
        self.checksums.verify()
        self._finish_target()

    def _stage(self, segments, total: int | None, what: str, fmt: str) -> str:
        """Stream into a sparse file on GFS2; removed when the import ends."""
        staged = f"{self.datastore_dir}/.import-{self.image_id}.{fmt}"
        self.action.undo.push(f"remove staging file {staged}",
                              lambda: self._remove_file(staged))
        self._stream([["mkdir", "-p", self.datastore_dir]],
                     receiver_step("file", staged, known_zero=True), segments, total,
                     what)
        self.checksums.verify()
        return staged

    def _remove_file(self, path: str) -> None:
        hosts = [self.host] + [h for h in self.bridges if h != self.host]
        self.action.cluster.on_bridge(
            lambda h: self.action.cluster.remote(h).run(["rm", "-f", path]), hosts)

    def _open_local(self, path: str):
        """(open file, its real path): RESTRICTED_DIRS/SAFE_DIRS and "a regular file"
        are checked on what was opened (the descriptor's own path), so a symlink
        switched after the check cannot redirect the read."""
        try:
            stream = open(path, "rb")
        except OSError as exc:
            raise InvalidArgument(f"{self.action.name}: cannot read {path}: "
                                  f"{exc.strerror}") from None
        try:
            real = os.readlink(f"/proc/self/fd/{stream.fileno()}")
            check_restricted(real, self.restricted, self.safe)
            if not stat_mod.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise InvalidArgument(f"{self.action.name}: {path} is not a regular file")
        except BaseException:
            stream.close()
            raise
        return stream, real

    def _from_local_file(self, path: str) -> None:
        stream, real = self._open_local(path)
        with stream:
            fmt = sniff_format(stream.read(HEADER_BYTES))
            stream.seek(0)
            size = os.fstat(stream.fileno()).st_size
            what = f"import of {path} ({fmt})"
            if fmt == "raw":
                self._stream_into_lv(file_segments(stream), size, what)
                return
            staged = self._stage(file_segments(stream), size, what, fmt)
        self._convert_staged(staged, fmt)

    def _from_url(self, url: str) -> None:
        response = _open_url(url, self.action.config.ssh.connect_timeout * 3)
        with response:
            length = response.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            header = _read_up_to(response, HEADER_BYTES, url)
            fmt = sniff_format(header)
            what = f"download of {url} ({fmt})"
            segments = _download_errors(stream_segments(response, header), url)
            if fmt == "raw" and size is not None:
                self._stream_into_lv(segments, size, what)
                return
            staged = self._stage(segments, size, what, fmt)
        self._convert_staged(staged, fmt)

    def _convert_staged(self, staged: str, sniffed: str) -> None:
        try:
            fmt, size = self._probe(staged)
            if fmt != sniffed:
                raise InvalidArgument(f"cp: qemu-img sees {fmt}, the header said {sniffed}")
            self._convert(staged, fmt, size)
        finally:
            self._remove_file(staged)

    # -- files on GFS2 ----------------------------------------------------------
    def _probe(self, path: str) -> tuple[str, int]:
        return self.disks.probe_image(self.host, path)

    def _on_worker(self, path: str) -> str:
        """The real path of a file on the workers' GFS2 (paths.check_worker_file
        before the worker is asked and on what it resolved), RESTRICTED_DIRS and
        SAFE_DIRS applied to the real path."""
        config = self.action.config
        paths.check_worker_file(config, path)
        real = self.disks.resolve(self.host, path)
        if real is None:
            raise SourceNotFound(f"{self.action.name}: {path} exists neither on the management "
                                 f"node nor on {self.host} (GFS2)")
        try:
            paths.check_worker_file(config, real)
        except InvalidArgument:
            raise InvalidArgument(f"{self.action.name}: {path} resolves to {real}, outside "
                                  f"the shared GFS2 or in a VM's directory") from None
        check_restricted(real, self.restricted, self.safe)
        return real

    def _from_worker_file(self, path: str) -> None:
        real = self._on_worker(path)
        fmt, size = self._probe(real)
        if self.checksums:
            self.checksums.verify(self._worker_digests(real))
        self._convert(real, fmt, size)

    def _worker_digests(self, path: str) -> dict[str, str]:
        found = {}
        for name in self.checksums.expected:
            out = self.action.cluster.remote(self.host).run([f"{name}sum", "--", path]).stdout
            found[name] = out.split()[0].lower() if out.split() else ""
        return found

    def _convert(self, path: str, fmt: str, size: int) -> None:
        """qemu-img convert of a file on GFS2 into the new LV, on the worker."""
        self._create_target(size)
        steps = self._activate_target() + [self.disks.copy_command(
            path, self.target.device, fmt, self.disks.target_is_zero(), progress=True)]
        progress = Progress(self.log, f"conversion of {path} ({fmt})", size,
                            callback=self.progress_callback)
        self.action.cluster.run_steps(self.host, steps, on_stdout=ConvertProgress(progress))
        progress.update(size)
        progress.finish()
        self._finish_target()

    # -- lvm:// and vol:// ----------------------------------------------------------
    def _from_volume(self, source) -> None:
        from .vmdisks import copy_source_volume
        if self.owner is None:
            raise InvalidArgument(f"{self.path}: lvm:// and vol:// sources are imported "
                                  f"through OpenNebula (their owner's rights are checked)")
        volume = copy_source_volume(self.action, source, f"image {self.image_id}", self.owner)
        copy_host, source_lv = self.disks.copy_site(self.host, volume)
        if copy_host != self.host:          # its activation there is what counts
            source_lv = self.disks.lv(copy_host, volume)
            if source_lv is None:
                raise SourceNotFound(f"{volume} does not exist")
        copy_to_new_volume(self.action, self.disks, copy_host, volume, source_lv, self.target,
                           self._new_tags()[1:], undo_hosts=self.bridges)

    # -- stat ------------------------------------------------------------------
    def source_size(self) -> int:
        """Bytes the image will take, for every PATH form (datastore `stat`)."""
        source = parse_source(self.path)
        if isinstance(source, VolSource):
            source = parse_source(self.action.api.image(source.image_id).source)
        volume = None
        if isinstance(source, LvmSource):
            from .vmdisks import lvm_source_volume
            volume = lvm_source_volume(self.action, self.action.api.vm(source.vm_id),
                                       source.disk_id)
        elif isinstance(source, LvSource):
            volume = image_volume(self.action.config, source, self.path)
        if volume is not None:
            lv = self.disks.lv(self.host, volume)
            if lv is None:
                raise SourceNotFound(f"{volume} does not exist")
            return lv.size_bytes
        if isinstance(source, UrlSource):
            return self._url_size(source.url)
        path = source.path
        if os.path.lexists(path):
            stream, _ = self._open_local(path)
            with stream:
                header = stream.read(HEADER_BYTES)
                size = os.fstat(stream.fileno()).st_size
            if isinstance(source, IsoxSource):
                return size
            fmt = sniff_format(header)
            return size if fmt == "raw" else _known(header_virtual_size(header, fmt), path)
        real = self._on_worker(path)
        remote = self.action.cluster.remote(self.host)
        if isinstance(source, IsoxSource):
            return int(remote.run(["stat", "-L", "-c", "%s", "--", real]).stdout.strip())
        return self._probe(real)[1]

    def _url_size(self, url: str) -> int:
        response = _open_url(url, self.action.config.ssh.connect_timeout * 3)
        with response:
            length = response.headers.get("Content-Length")
            header = _read_up_to(response, HEADER_BYTES, url)
            fmt = sniff_format(header)
            if fmt != "raw":
                return _known(header_virtual_size(header, fmt), url)
            if length and length.isdigit():
                return int(length)
        raise DownloadError(f"stat: {url}: the server sends no Content-Length")

    # -- ISO files -------------------------------------------------------------
    def _isox(self, path: str) -> str:
        mount = self.action.config.gfs2_mount.rstrip("/")
        if os.path.lexists(path):
            stream, real = self._open_local(path)
            with stream:
                # on this node's mount of the GFS2 too: registered in place below
                on_gfs2 = (real + "/").startswith(mount + "/") and not \
                    paths.in_vm_dir(self.action.config, real) and \
                    self.action.cluster.remote(self.host).run(
                        ["test", "-f", real], check=False).exit_status == 0
                if not on_gfs2:
                    return self._copy_iso(stream, real)
        real = self._on_worker(path)
        if self.checksums:
            self.checksums.verify(self._worker_digests(real))
        self.log(f"ISO {path} registered in place (no LVM)")
        return path

    def _copy_iso(self, stream, real: str) -> str:
        """A management-node ISO (`stream`, opened and checked by _open_local)
        copied to GFS2 as <datastore dir>/<image id>.isox."""
        target = f"{self.datastore_dir}/{self.image_id}.isox"
        partial = f"{target}.part"
        self.action.undo.push(f"remove {partial}", lambda: self._remove_file(partial))
        size = os.fstat(stream.fileno()).st_size
        self._stream([["mkdir", "-p", self.datastore_dir]],
                     receiver_step("file", partial, known_zero=True),
                     file_segments(stream), size, f"copy of ISO {real}")
        self.checksums.verify()
        self.action.cluster.remote(self.host).run(["mv", "-f", "--", partial, target])
        self.log(f"ISO {real} copied to {target} (no LVM)")
        return target


def owned_iso_path(image_id: int, source: str, own_dir: str) -> bool:
    """Is this .isox SOURCE the copy cp made (so rm may delete it)?  Exactly
    <own_dir>/<id>.isox, own_dir being the image's datastore directory
    (paths.datastore_dir; 3.x: paths.images_dir3)."""
    return source == f"{own_dir}/{image_id}.isox"


def _open_url(url: str, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "one-gfs2clvm"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}") from None


def _known(size: int | None, where: str) -> int:
    if not size:
        raise InvalidArgument(f"stat: {where}: the image header gives no virtual size")
    return size


def _read_up_to(stream, count: int, url: str) -> bytes:
    parts, have = [], 0
    try:
        while have < count:
            chunk = stream.read(count - have)
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
    except OSError as exc:
        raise DownloadError(f"cp: {url}: {exc}") from None
    return b"".join(parts)


def _download_errors(segments, url: str):
    """Network failures while reading become one clear DownloadError."""
    try:
        yield from segments
    except (OSError, urllib.error.URLError) as exc:
        raise DownloadError(f"cp: {url}: download interrupted: {exc}") from None


def cp(action: Action, image_id: int, data) -> str:
    """The datastore's cp: import IMAGE/PATH into image `image_id`; replies `SOURCE FORMAT`."""
    if data.image is None or not data.image.path:
        raise InvalidArgument("cp: the IMAGE has no PATH")
    line = Import.from_driver_action(action, image_id, data).run()
    reply(line)
    return line


