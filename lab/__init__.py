"""The qemu lab the test suite boots: see lab/vmlab.py."""
