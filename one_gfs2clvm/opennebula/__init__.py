"""OpenNebula-facing parts: TM and datastore actions, API access."""
