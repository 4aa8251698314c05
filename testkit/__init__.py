"""What the tests, the main job (`python -m lab demo`) and the benchmarks share.

Stand-ins for what cannot run on this machine, each saying how far it
behaves like the real one: `fakeoned` (oned's XML-RPC API, documents checked
against OpenNebula's XSD), `oneclient` (OpenNebula's driver programs:
one_tm.rb / one_datastore.rb / the 3.x tm_common.sh framing), `recording`
(a worker that records what an action sends, for unit tests; `actionkit`
holds what the per-action unit tests built on it share).  Real parts:
`sshd` (a real OpenSSH server on 127.0.0.1 for the transport tests) and
`frontend` (this host as the management node of a running lab: the driver
installed by its installer, actions run through `oneclient`).

Importable from the project root (pytest.ini `pythonpath = .`, or
`python -m ...` from the root); not shipped in the wheel.
"""
