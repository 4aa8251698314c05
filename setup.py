import os
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Directory-mapping folders shipped inside the package as one_gfs2clvm/_payload/,
# so `one-gfs2clvm install` also works after a non-editable `pip install .`:
# the one table of them is install.FOLDERS (install.py needs only the standard
# library and the package's errors module, so it imports before any dependency).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from one_gfs2clvm.install import FOLDERS  # noqa: E402

PAYLOAD = list(FOLDERS)


class BuildPyWithPayload(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return                      # editable installs read the checkout
        here = os.path.dirname(os.path.abspath(__file__))
        for name in PAYLOAD:
            if os.path.isdir(os.path.join(here, name)):
                self.copy_tree(os.path.join(here, name),
                               os.path.join(self.build_lib, "one_gfs2clvm", "_payload", name))


setup(
    name="one-gfs2clvm",
    version="0.1.0",
    description="OpenNebula storage driver: VM disks on a shared LVM VG (lvmlockd/clvmd), GFS2 VM dirs",
    python_requires=">=3.11",
    packages=find_packages(include=["one_gfs2clvm", "one_gfs2clvm.*"]),
    install_requires=["paramiko>=3.4", "lxml>=4.9", "click>=8.1"],
    extras_require={"test": ["pytest>=7.4", "hypothesis>=6.80"]},
    entry_points={"console_scripts": ["one-gfs2clvm = one_gfs2clvm.cli:main"]},
    cmdclass={"build_py": BuildPyWithPayload},
)
