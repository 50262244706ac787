"""criu's RPC service: what runc, podman, libcriu and pycriu speak to a
criu binary (`criu swrk FD`, `criu service`).  A thin front end: each
request's criu_opts become the same hiber.Options the command line builds
(opts.py), and the same hiber.dump / hiber.restore / pre_dump / page server
/ check run them (protocol.py); notify.py is the NOTIFY dialogue through
which the client runs its hooks at the action-script moments."""
