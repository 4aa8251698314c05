"""gfs2clvm: OpenNebula storage driver for VM disks on a shared LVM volume group."""

__version__ = "0.1.0"
