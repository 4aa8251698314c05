from setuptools import find_packages, setup

setup(
    name="one-gfs2clvm",
    version="0.1.0",
    description="OpenNebula storage driver: VM disks on a shared LVM VG (lvmlockd/clvmd), GFS2 VM dirs",
    python_requires=">=3.11",
    packages=find_packages(include=["one_gfs2clvm", "one_gfs2clvm.*"]),
    install_requires=["paramiko>=3.4", "lxml>=4.9", "click>=8.1"],
    extras_require={"test": ["pytest>=7.4", "hypothesis>=6.80"]},
    entry_points={"console_scripts": ["one-gfs2clvm = one_gfs2clvm.cli:main"]},
)
