import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from one_gfs2clvm.cli import main

SHIPPED = Path(__file__).resolve().parents[2] / "etc-one" / "gfs2clvm.conf"


def test_help_lists_commands_without_loading_paramiko():
    probe = ("import sys; from click.testing import CliRunner; from one_gfs2clvm.cli import main; "
             "r = CliRunner().invoke(main, ['--help']); "
             "assert r.exit_code == 0, r.output; assert 'check-node' in r.output; "
             "assert 'paramiko' not in sys.modules, 'paramiko imported by --help'")
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_check_config_on_the_shipped_file():
    result = CliRunner().invoke(main, ["--config", str(SHIPPED), "check-config"])
    assert result.exit_code == 0
    assert "volume groups: vg_one (lock mode lvmlockd)" in result.output


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[storage]\nvolume_groups = vg_one\nlock_mode = sometimes\n")
    result = subprocess.run([sys.executable, "-m", "one_gfs2clvm.cli", "--config", str(bad),
                             "check-config"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == (f"{bad}: [storage] lock_mode: 'sometimes' is not one of "
                             "lvmlockd, clvmd, none\n")
    assert result.stdout == ""
