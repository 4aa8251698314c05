"""Property tests: malformed input gives the typed error, never anything else."""

from hypothesis import given, settings
from hypothesis import strategies as st

from one_gfs2clvm import config
from one_gfs2clvm.errors import ConfigError
from one_gfs2clvm.nodehelper import Refused, is_our_lv, lvm_argv

# rename is gone; udev-owns, version and boot-activate never reach lvm_argv
VERBS = ["vgs", "lvs", "create", "remove", "extend", "activate", "addtag", "deltag",
         "rename", "udev-owns", "version", "boot-activate", "format", ""]
WORDS = st.one_of(st.text(max_size=20), st.sampled_from(
    ["vg_one", "lv-one-1-0", "lv-oneimg-7", "lv-one-01-0", "1048576", "0", "ey", "sy", "n",
     "one-vm=1", "gfs2_one", "lv-one-1-0\n", "-f", "vg_one/lv-one-1-0"]))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VERBS), st.lists(WORDS, max_size=5))
def test_helper_requests_are_built_or_refused(verb, args):
    try:
        argv = lvm_argv(verb, args, ["vg_one"])
    except Refused:
        return
    # whatever got through: the configured VG, one of our LVs where an LV goes,
    # and no word that lvm could read as an option or that carries whitespace
    assert args[0] == "vg_one"
    if verb not in ("vgs", "lvs"):
        assert is_our_lv(args[1])
    for word in args:
        assert word and not word.startswith("-") and not any(c.isspace() for c in word)
    assert argv[0] in ("vgs", "lvs", "lvcreate", "lvremove", "lvextend", "lvchange")


SECTIONS = st.sampled_from(["storage", "ssh", "ssh.hosts", "node", "locking", "other"])
KEYS = st.sampled_from(["volume_groups", "lock_mode", "gfs2_mount", "zeroing", "bridge_hosts",
                        "user", "port", "known_hosts", "connect_timeout", "helper", "sudo",
                        "lock_dir", "lvm_retries", "lvm_retry_delay", "node1", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(SECTIONS, KEYS, st.text(max_size=15)), max_size=8))
def test_config_text_parses_or_gives_config_error(entries):
    text = "[storage]\nvolume_groups = vg_one\n"
    for section, key, value in entries:
        text += f"[{section}]\n{key} = {value}\n"
    try:
        loaded = config.parse(text, source="fuzz.conf")
    except ConfigError as exc:
        assert exc.one_line().startswith("fuzz.conf")
        return
    assert loaded.volume_groups and all(vg for vg in loaded.volume_groups)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_gives_config_error(text):
    try:
        config.parse(text, source="fuzz.conf")
    except ConfigError:
        pass
