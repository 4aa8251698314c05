#!/usr/bin/env python3
"""gfs2clvm OpenNebula 3.x TM command `CLONE` (tm_clone.sh, the name tm_gfs2clvm.conf maps it to):
a Python shim despite the .sh name; the logic is in one_gfs2clvm.opennebula.tm3."""
import sys
from one_gfs2clvm.opennebula.tm3 import main
sys.exit(main("clone", sys.argv[1:]))
