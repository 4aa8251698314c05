"""The volume engine: operations on volumes of the shared VG (ops) and copies
between them (copies).  No OpenNebula in it: callers pass a context with
config, cluster, log, undo list and VM id (volumes.ops.Context)."""
