#!/usr/bin/python3 -IS
"""one-gfs2clvm-helper: the only thing `oneadmin` may run as root on a worker.

Installed root-owned (mode 0755) as /usr/sbin/one-gfs2clvm-helper on every
worker; etc-sudoers-d/ lets oneadmin run exactly this file.  It is a single
standard-library file so a worker needs nothing but python3 and lvm2.  The
#! line runs the system python3 isolated (-I): no PYTHON* variables, no user
site-packages (.pth files under $HOME), no script directory on sys.path; -S
skips the site module too (the helper needs nothing outside the standard
library, and every run saves its start-up).

It accepts only the verbs below, only the volume groups named in the
root-owned /etc/one/gfs2clvm.conf, and only our LV name patterns, then runs
lvm with fixed options (argv, no shell).  Reports are JSON in bytes.

    vgs      VG
    lvs      VG [LV ...]              all LVs of VG, or exactly the named ones
                                      (vg/lv arguments; a named LV that does
                                      not exist is simply not in the report)
    create   VG LV SIZE_BYTES [TAG ...]   created inactive, not zeroed
    remove   VG LV
    extend   VG LV SIZE_BYTES         new total size
    activate VG LV MODE               MODE: ey (exclusive) sy (shared) y ly n ln
    addtag   VG LV TAG
    deltag   VG LV TAG
    retag    VG LV {deltag|addtag} TAG ...    several tag changes, one lvchange
                                      (one metadata commit)
    use      VG LV VM DISK HOST|- [readonly]
                                      make the LV's one-use tags for (VM, DISK)
                                      say HOST (-: not in use) by the one rule,
                                      use_tag_change(): reads the LV's tags,
                                      then one lvchange if anything changes
    version                           helper version, lock mode and VGs
    boot-activate [--wait S] [VG ...] activate the LVs whose one-use tags name
                                      this host (node boot; all VGs by default;
                                      --wait: retry the lock-start for S seconds)
    udev-owns VG LV                   no lvm call, no output: exit 0 if VG is
                                      configured and LV is one of our names,
                                      else 1 (etc-udev-rules-d/ asks this)
    batch STEP [; STEP ...]           several of create remove extend activate
                                      addtag deltag retag use, each `VERB ARGS...`, in one
                                      run (one sudo, one python start): every
                                      step is checked before the first runs;
                                      they run in order and the first failure
                                      stops the batch, with the line
                                      `one-gfs2clvm-helper: batch step K of N
                                      failed: VERB VG/LV` on stderr before lvm's
                                      own lines, and lvm's exit status

Exit status: lvm's own on an lvm failure; 64 when the request is refused or
anything else goes wrong (one stderr line, never a traceback).
Transient VG/global lock contention (another host is changing the VG) is
retried with back-off, bounded by [locking] lvm_retries.
"""

import configparser
import os
import re
import stat
import subprocess
import sys
import time

VERSION = "3"            # 2: the batch verb; 3: retag and use
CONFIG_PATH = "/etc/one/gfs2clvm.conf"
EXIT_REFUSED = 64

# Decimal ids without leading zeros, so one LV has exactly one spelling.
_ID = r"(?:0|[1-9][0-9]{0,9})"
LV_VM_DISK_RE = re.compile(r"^lv-one-(" + _ID + r")-(" + _ID + r")$")
LV_IMAGE_RE = re.compile(r"^lv-oneimg-(" + _ID + r")$")
# Disk snapshots are full copies in linear LVs of their own (lvmlockd cannot
# share-activate COW snapshots, so those would not survive a live migration).
LV_VM_SNAP_RE = re.compile(r"^lv-one-(" + _ID + r")-(" + _ID + r")-snap-(" + _ID + r")$")
LV_IMAGE_SNAP_RE = re.compile(r"^lv-oneimg-(" + _ID + r")-snap-(" + _ID + r")$")
LV_PATTERNS = (LV_VM_DISK_RE, LV_IMAGE_RE, LV_VM_SNAP_RE, LV_IMAGE_SNAP_RE)
# Where a disk is in use: one tag per use, one-use=<vm>:<disk>:<opennebula host>
_USE_HOST = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
USE_TAG_RE = re.compile(r"^one-use=(" + _ID + r"):(" + _ID + r"):(" + _USE_HOST + r")$")
READONLY_TAG = "one-readonly"
VG_RE = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$")
# LVM allows more tag characters; these are the ones our tags need.
TAG_RE = re.compile(r"^[A-Za-z0-9_+.:=-]{1,128}$")
SIZE_RE = re.compile(r"^[1-9][0-9]{0,19}$")
# Retry settings: small plain decimals (config.py applies the same patterns).
RETRIES_RE = re.compile(r"^[0-9]{1,2}$")
DELAY_RE = re.compile(r"^[0-9]{1,2}(\.[0-9]{1,3})?$")
WAIT_RE = re.compile(r"^[0-9]{1,4}$")
# Every pattern above is applied with fullmatch(): `$` alone also matches
# before a trailing newline, which would let "lv-one-1-0\n" through.
ACTIVATION_MODES = ("ey", "sy", "y", "ly", "n", "ln")
BATCH_VERBS = ("create", "remove", "extend", "activate", "addtag", "deltag", "retag", "use")
BATCH_SEPARATOR = ";"      # no VG, LV, tag, size or mode can be this word
# The one table from an activation intent to `lvchange -a` flags, per lock
# mode (the driver's ActivationPolicy and boot activation both read it):
#   exclusive / shared: a VM's use (shared only for live migration or
#     read-only disks; clvmd's plain 'y' activates on every node);
#   off: deactivate;
#   read / release: a copy source read on ONE host without excluding the
#     others, and undoing that on this host only (clvmd's -an is cluster-wide).
ACTIVATION_FLAGS = {
    "lvmlockd": {"exclusive": "ey", "shared": "sy", "off": "n", "read": "sy", "release": "n"},
    "clvmd": {"exclusive": "ey", "shared": "y", "off": "n", "read": "ly", "release": "ln"},
    "none": {"exclusive": "y", "shared": "y", "off": "n", "read": "y", "release": "n"},
}

REPORT_OPTIONS = ["--reportformat", "json", "--units", "b", "--nosuffix"]
LV_FIELDS = ("lv_name,vg_name,lv_uuid,lv_size,lv_attr,lv_active,lv_active_locally,"
             "lv_active_exclusively,lv_tags,lv_layout,origin,lv_path,lv_dm_path,lv_lock_args")
# LV-level fields only: a segment field (segtype, seg_*) makes lvs print one
# row per segment, so an extended LV would show up twice.
VG_FIELDS = ("vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_attr,vg_lock_type,"
             "vg_shared,lv_count,vg_tags")

# Scanned with search() in lvm's own stderr, never applied to requests.
# Another host holds the VG (or global) lock for a metadata change: worth a
# retry.  An LV lock held elsewhere is a state, not a transient: no retry.
TRANSIENT_LOCK_RE = re.compile(
    r"((VG \S+|Global) lock failed: (held by other host|error -11\b)|"
    r"VG lock busy|Retrying (ex|sh) lock)", re.I)
LV_LOCKED_RE = re.compile(r"(LV locked by other host|LV \S+ lock failed: held by other host|"
                          r"lock held by other host)", re.I)
NOT_FOUND_RE = re.compile(r"(Failed to find logical volume|Volume group \"?\S+?\"? not found|"
                          r"Logical volume \S+ not found)", re.I)


class Refused(Exception):
    pass


def is_our_lv(name):
    return isinstance(name, str) and any(pattern.fullmatch(name) for pattern in LV_PATTERNS)


def check_lv(name):
    if not is_our_lv(name):
        raise Refused("LV name %r is not one of ours (lv-one-<vm>-<disk>, lv-oneimg-<image>)"
                      % (name,))
    return name


def check_vg(name, allowed):
    if not isinstance(name, str) or not VG_RE.fullmatch(name) or name in (".", ".."):
        raise Refused("invalid VG name %r" % (name,))
    if name not in allowed:
        raise Refused("VG %r is not configured in %s" % (name, CONFIG_PATH))
    return name


def check_tag(tag):
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise Refused("invalid tag %r" % (tag,))
    return tag


def check_size(size):
    if not isinstance(size, str) or not SIZE_RE.fullmatch(size):
        raise Refused("invalid size %r (bytes, positive integer)" % (size,))
    return size


def lvm_argv(verb, args, allowed_vgs):
    """Validate one request and build the lvm argv for it (pure, testable)."""
    def need(low, high=None):
        high = low if high is None else high
        if not low <= len(args) <= high:
            raise Refused("%s: expected %s arguments, got %d"
                          % (verb, low if low == high else "%d..%s" % (low, high), len(args)))

    if verb == "vgs":
        need(1)
        vg = check_vg(args[0], allowed_vgs)
        return ["vgs"] + REPORT_OPTIONS + ["-o", VG_FIELDS, vg]
    if verb == "lvs":
        need(1, 1 + 64)
        vg = check_vg(args[0], allowed_vgs)
        argv = ["lvs"] + REPORT_OPTIONS + ["-o", LV_FIELDS]
        if len(args) > 1:
            # exactly the named LVs (vg/lv arguments: lvm looks at no other LV,
            # so the cost does not grow with the VG); each name once
            names = [check_lv(name) for name in args[1:]]
            return argv + ["%s/%s" % (vg, name) for name in dict.fromkeys(names)]
        return argv + [vg]
    if verb == "create":
        if len(args) < 3:
            need(3)
        vg, lv = check_vg(args[0], allowed_vgs), check_lv(args[1])
        size = check_size(args[2])
        argv = ["lvcreate", "--yes", "--activate", "n", "--zero", "n",
                "--wipesignatures", "n", "--size", size + "b", "--name", lv]
        for tag in args[3:]:
            argv += ["--addtag", check_tag(tag)]
        return argv + [vg]
    if verb == "remove":
        need(2)
        vg, lv = check_vg(args[0], allowed_vgs), check_lv(args[1])
        return ["lvremove", "--yes", vg + "/" + lv]
    if verb == "extend":
        need(3)
        vg, lv = check_vg(args[0], allowed_vgs), check_lv(args[1])
        return ["lvextend", "--yes", "--size", check_size(args[2]) + "b", vg + "/" + lv]
    if verb == "activate":
        need(3)
        vg, lv = check_vg(args[0], allowed_vgs), check_lv(args[1])
        if args[2] not in ACTIVATION_MODES:
            raise Refused("activation mode %r is not one of %s"
                          % (args[2], " ".join(ACTIVATION_MODES)))
        return ["lvchange", "--activate", args[2], vg + "/" + lv]
    if verb in ("addtag", "deltag"):
        need(3)
        vg, lv, tag = check_vg(args[0], allowed_vgs), check_lv(args[1]), check_tag(args[2])
        return ["lvchange", "--" + verb, tag, vg + "/" + lv]
    if verb == "retag":
        if len(args) < 4 or len(args) % 2:
            raise Refused("retag: expected VG LV and {deltag|addtag} TAG pairs, got %d "
                          "arguments" % len(args))
        vg, lv = check_vg(args[0], allowed_vgs), check_lv(args[1])
        argv = ["lvchange"]
        for change, tag in zip(args[2::2], args[3::2]):
            if change not in ("deltag", "addtag"):
                raise Refused("retag: %r is not deltag or addtag" % (change,))
            argv += ["--" + change, check_tag(tag)]
        return argv + [vg + "/" + lv]
    if verb == "use":
        need(5, 6)
        vg, lv = check_vg(args[0], allowed_vgs), check_lv(args[1])
        use_request(args[2:])
        # what runs first: the LV's tags (run_step then makes the one change)
        return ["lvs"] + REPORT_OPTIONS + ["-o", "lv_name,lv_tags", vg + "/" + lv]
    raise Refused("unknown verb %r" % (verb,))


def use_request(words):
    """VM DISK HOST|- [readonly] -> (vm, disk, host or None, readonly), checked."""
    if len(words) not in (3, 4) or (len(words) == 4 and words[3] != "readonly"):
        raise Refused("use: expected VM DISK HOST|- [readonly]")
    vm, disk, host = words[:3]
    for value, what in ((vm, "VM id"), (disk, "disk id")):
        if not isinstance(value, str) or not re.fullmatch(_ID, value):
            raise Refused("use: invalid %s %r" % (what, value))
    if host != "-" and not (isinstance(host, str) and re.fullmatch(_USE_HOST, host)
                            and TAG_RE.fullmatch("one-use=%s:%s:%s" % (vm, disk, host))):
        raise Refused("use: invalid host %r" % (host,))
    return int(vm), int(disk), None if host == "-" else host, len(words) == 4


def use_tag_change(tags, vm, disk, host=None, readonly=False):
    """(tags to add, tags to drop) so that an LV tagged `tags` records that disk
    `disk` of VM `vm` uses it on `host` (None: does not use it), the one rule
    for use tags (the driver's Disks.set_use sends it here):
      * one one-use=<vm>:<disk>:<host> tag per use; another host's tag for the
        same (vm, disk) goes;
      * `readonly` adds the read-only mark (shared activation at boot);
      * the mark goes with the last use."""
    uses = [match for match in map(USE_TAG_RE.fullmatch, tags) if match]
    new = "one-use=%d:%d:%s" % (vm, disk, host) if host is not None else None
    drop = [use[0] for use in uses
            if (int(use[1]), int(use[2])) == (vm, disk) and use[0] != new]
    add = [new] if new is not None and new not in tags else []
    if readonly and READONLY_TAG not in tags:
        add.append(READONLY_TAG)
    if new is None and READONLY_TAG in tags and len(uses) == len(drop):
        drop.append(READONLY_TAG)
    return add, drop


def run_step(verb, args, command, run):
    """Run one checked request (its lvm argv `command`); `use` then makes the
    change its report asks for, in one lvchange (none if nothing changes).
    Returns what run() returns (stdout empty for `use`)."""
    proc = run(command)
    if verb != "use" or proc.returncode != 0:
        return proc
    import json
    reported = json.loads(proc.stdout.decode("utf-8"))["report"][0]["lv"]
    tags = [tag for tag in reported[0].get("lv_tags", "").split(",") if tag] if reported else []
    add, drop = use_tag_change(tags, *use_request(args[2:]))
    if not add and not drop:
        return subprocess.CompletedProcess(command, 0, b"", proc.stderr)
    change = ["lvchange"] + [word for tag in drop for word in ("--deltag", tag)] + \
        [word for tag in add for word in ("--addtag", tag)] + [args[0] + "/" + args[1]]
    done = run(change)
    return subprocess.CompletedProcess(change, done.returncode, b"", proc.stderr + done.stderr)


def split_batch(args):
    """`VERB ARGS... ; VERB ARGS...` -> [[VERB, ARGS...], ...] (words only, unchecked)."""
    steps, current = [], []
    for word in list(args) + [BATCH_SEPARATOR]:
        if word == BATCH_SEPARATOR:
            steps.append(current)
            current = []
        else:
            current.append(word)
    return steps


def batch_steps(args, allowed_vgs):
    """`VERB ARGS... ; VERB ARGS...` -> [(verb, args, lvm argv)], every step
    checked (pure, testable); a refusal names the step."""
    steps = []
    for number, words in enumerate(split_batch(args), 1):
        if not words:
            raise Refused("batch step %d is empty" % number)
        if words[0] not in BATCH_VERBS:
            raise Refused("batch step %d: verb %r cannot be batched (only %s)"
                          % (number, words[0], " ".join(BATCH_VERBS)))
        try:
            steps.append((words[0], words[1:], lvm_argv(words[0], words[1:], allowed_vgs)))
        except Refused as exc:
            raise Refused("batch step %d: %s" % (number, exc))
    return steps


def run_batch(steps, run, out=None, err=None):
    """Run checked batch steps in order; stop at the first failure. Returns the
    exit status (0, or the failing lvm's)."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    for number, (verb, args, command) in enumerate(steps, 1):
        proc = run_step(verb, args, command, run)
        out.write(proc.stdout)
        if proc.returncode != 0:
            err.write(("one-gfs2clvm-helper: batch step %d of %d failed: %s %s/%s\n"
                       % (number, len(steps), verb, args[0], args[1])).encode())
            err.write(proc.stderr)
            return proc.returncode
        err.write(proc.stderr)
    return 0


MISSING_LV_RE = re.compile(r'\s*Failed to find logical volume "([^"]+)"\s*')
# lvs still reads a VG whose lockspace is not started here, and says so; the
# change that follows is what fails, with lvmlockd's own reason
UNLOCKED_READ_RE = re.compile(r"\s*Reading VG \S+ without a lock\.\s*")


def only_missing(verb, args, proc):
    """A named `lvs` whose only complaint is that some of the named LVs do not
    exist: its JSON still lists the others.  Absent LVs are an answer, not an
    error, so that run counts as a success (their lines dropped, an unlocked-
    read notice kept).  Returns the (status, stderr) to report."""
    if verb != "lvs" or len(args) < 2 or proc.returncode == 0:
        return proc.returncode, proc.stderr
    asked = {"%s/%s" % (args[0], name) for name in args[1:]}
    lines = [line for line in proc.stderr.decode("utf-8", "replace").splitlines()
             if line.strip()]
    missing = [MISSING_LV_RE.fullmatch(line) for line in lines]
    notices = [line for line, match in zip(lines, missing) if not match]
    if any(missing) and all(match[1] in asked for match in missing if match) and \
            all(UNLOCKED_READ_RE.fullmatch(line) for line in notices):
        return 0, "".join(line + "\n" for line in notices).encode()
    return proc.returncode, proc.stderr


def read_config(path=CONFIG_PATH):
    """[storage] volume_groups and lock_mode, [locking] retries from a root-owned file."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise Refused("cannot read %s: %s" % (path, exc.strerror))
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Refused("%s must be owned by root and not group/world-writable" % path)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        parser.read(path, encoding="utf-8")
        vgs = [v.strip() for v in parser.get("storage", "volume_groups").split(",") if v.strip()]
        lock_mode = parser.get("storage", "lock_mode", fallback="lvmlockd").strip()
        retries = parser.get("locking", "lvm_retries", fallback="6").strip()
        delay = parser.get("locking", "lvm_retry_delay", fallback="0.5").strip()
    except configparser.Error as exc:
        raise Refused("%s: %s" % (path, " ".join(str(exc).split())))
    # bounded on purpose: a huge value would make a lock wait look like a hang
    if not RETRIES_RE.fullmatch(retries) or not DELAY_RE.fullmatch(delay):
        raise Refused("%s: [locking] lvm_retries/lvm_retry_delay must be small numbers" % path)
    retries, delay = int(retries), float(delay)
    if not vgs:
        raise Refused("%s: [storage] volume_groups is empty" % path)
    return {"vgs": vgs, "lock_mode": lock_mode, "retries": retries, "delay": delay}


def udev_owns(vg, lv, allowed_vgs):
    """Whether the udev rule may give oneadmin the device of vg/lv.

    Only answers yes or no from the names and the config: it runs nothing
    and changes nothing, so it is harmless that sudo lets oneadmin call it.
    """
    try:
        check_vg(vg, allowed_vgs)
    except Refused:
        return False
    return is_our_lv(lv)


def boot_activate_request(args, allowed_vgs):
    """[--wait S] [VG ...] -> (VGs, seconds); all configured VGs by default."""
    wait = 0.0
    if args[:1] == ["--wait"]:
        if len(args) < 2 or not WAIT_RE.fullmatch(args[1]):
            raise Refused("boot-activate --wait takes seconds (0..9999)")
        args, wait = args[2:], float(args[1])
    vgs = [check_vg(vg, allowed_vgs) for vg in args]
    return vgs or list(allowed_vgs), wait


def lvm_binary():
    for candidate in ("/usr/sbin/lvm", "/sbin/lvm"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise Refused("lvm binary not found in /usr/sbin or /sbin")


def run_lvm(argv, retries, delay, sleep=time.sleep):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C",
           "LVM_SUPPRESS_FD_WARNINGS": "1"}
    command = [lvm_binary()] + argv
    attempt = 0
    while True:
        proc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, close_fds=True)
        if proc.returncode == 0 or attempt >= retries:
            return proc
        text = proc.stderr.decode("utf-8", "replace")
        if not TRANSIENT_LOCK_RE.search(text) or LV_LOCKED_RE.search(text):
            return proc
        sleep(min(delay * (2 ** attempt), 5.0))
        attempt += 1


def this_host_names():
    import socket
    names = {socket.gethostname(), socket.getfqdn()}
    names |= {name.split(".")[0] for name in names}
    return {name for name in names if name}


def boot_activate(config, vgs, run=None, host_names=None, wait=0.0, clock=time.monotonic,
                  sleep=time.sleep):
    """Re-activate, after a reboot, the disks the tags say run on this host.

    Exclusive for a disk used once; shared when several VMs use it or it is
    tagged read-only.  With `wait`, keep trying the VG lock-start for that
    many seconds (at boot lvmlockd and the cluster may still be coming up).
    Returns (exit status, report lines).
    """
    import json
    run = run or (lambda argv: run_lvm(argv, config["retries"], config["delay"]))
    host_names = host_names if host_names is not None else this_host_names()
    status, lines = 0, []
    deadline = clock() + wait
    for vg in vgs:
        check_vg(vg, config["vgs"])
        if config["lock_mode"] == "lvmlockd":
            # idempotent: a no-op once the VG's lockspace is started
            while run(["vgchange", "--lock-start", vg]).returncode != 0 and clock() < deadline:
                sleep(5)
        proc = run(lvm_argv("lvs", [vg], config["vgs"]))
        if proc.returncode != 0:
            lines.append("%s: lvs failed: %s" % (vg, proc.stderr.decode("utf-8", "replace").strip()))
            status = 1
            continue
        for lv in json.loads(proc.stdout.decode("utf-8"))["report"][0]["lv"]:
            if not is_our_lv(lv["lv_name"]):
                continue
            tags = [tag for tag in lv.get("lv_tags", "").split(",") if tag]
            uses = [USE_TAG_RE.fullmatch(tag) for tag in tags]
            uses = [use for use in uses if use]
            if not any(use.group(3) in host_names for use in uses):
                continue
            if lv.get("lv_active", "") == "active":
                lines.append("%s/%s: already active" % (vg, lv["lv_name"]))
                continue
            shared = len(uses) > 1 or READONLY_TAG in tags
            flags = ACTIVATION_FLAGS.get(config["lock_mode"], ACTIVATION_FLAGS["lvmlockd"])
            mode = flags["shared" if shared else "exclusive"]
            result = run(lvm_argv("activate", [vg, lv["lv_name"], mode], config["vgs"]))
            if result.returncode == 0:
                lines.append("%s/%s: activated (-a%s)" % (vg, lv["lv_name"], mode))
            else:
                status = 1
                lines.append("%s/%s: activation failed: %s" % (
                    vg, lv["lv_name"], result.stderr.decode("utf-8", "replace").strip()))
    return status, lines


def _one_line(text):
    return " ".join(str(text).split())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        status = _main(argv)
        sys.stdout.flush()  # a write error here is reported like any other
        return status
    except Refused as exc:
        sys.stderr.write("one-gfs2clvm-helper: refused: %s\n" % _one_line(exc))
    except Exception as exc:
        # a missing lvm binary, a bad lvm report, a bug: one line, no traceback
        sys.stderr.write("one-gfs2clvm-helper: error: %s: %s\n"
                         % (type(exc).__name__, _one_line(exc)))
    return EXIT_REFUSED


def _main(argv):
    if os.geteuid() != 0:
        raise Refused("must run as root (through sudo)")
    if not argv:
        raise Refused("no verb given")
    config = read_config(CONFIG_PATH)
    if argv[0] == "udev-owns":
        if len(argv) != 3:
            raise Refused("udev-owns: expected 2 arguments, got %d" % (len(argv) - 1))
        return 0 if udev_owns(argv[1], argv[2], config["vgs"]) else 1
    if argv[0] == "boot-activate":
        vgs, wait = boot_activate_request(argv[1:], config["vgs"])
        status, lines = boot_activate(config, vgs, wait=wait)
        for line in lines:
            print(line)
        return status
    if argv[0] == "version":
        import json
        print(json.dumps({"helper": VERSION, "lock_mode": config["lock_mode"],
                          "volume_groups": config["vgs"]}))
        return 0
    if argv[0] == "batch":
        steps = batch_steps(argv[1:], config["vgs"])
        return run_batch(steps, lambda command: run_lvm(command, config["retries"],
                                                        config["delay"]))
    command = lvm_argv(argv[0], argv[1:], config["vgs"])
    proc = run_step(argv[0], argv[1:], command,
                    lambda each: run_lvm(each, config["retries"], config["delay"]))
    status, stderr = only_missing(argv[0], argv[1:], proc)
    sys.stdout.buffer.write(proc.stdout)
    sys.stderr.buffer.write(stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
