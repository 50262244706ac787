"""Every option of a dump or a restore, in one object.

The command line builds one ``Options`` from argv, and a later RPC service
will build one from criu's protobuf fields: field names are criu's option
names with ``_`` (``--leave-running`` is ``leave_running``, rpc.proto's
``shell_job`` is ``shell_job``), so the two front ends cannot drift apart.
The library reads nothing else: no environment, no global state.
"""

from dataclasses import dataclass, fields, replace

from .errors import UsageError


@dataclass(frozen=True)
class Options:
    # dump: what becomes of the tree once the images are complete; neither
    # means killed, criu's default (leave_running wins when both are set)
    leave_running: bool = False
    leave_stopped: bool = False
    # the tree is a job of a shell: dump its terminal fds as files, restore
    # it into hiber's session, group and terminal (criu -j)
    shell_job: bool = False
    # dump: skip [uprobes] mappings; restore: accept images dumped so
    allow_uprobes: bool = False
    # restore: return once the tree runs (criu -d). The library, like criu's
    # RPC service, restores detached unless told otherwise; the command line
    # sets it from -d, whose absence means "wait for the root and report"
    restore_detached: bool = True
    # restore: write the restored root's PID here (criu --pidfile)
    pidfile: str | None = None
    # a progress bar on stderr when it is a terminal and the work takes a second
    show_progress: bool = False
    # restore: a proxy for every dumped vdso, even one the kernel's would
    # replace in place (what criu's fault injection 127 forces)
    force_vdso_proxy: bool = False
    # criu --action-script: executables run at pre-dump, post-dump,
    # pre-restore, post-restore, pre-resume and post-resume (actions.py)
    action_scripts: tuple = ()
    # dump: leave the tree's memory tracked after the dump, so that a dump
    # naming this one as its parent copies only the pages written since
    # (criu --track-mem; a pre-dump always tracks)
    track_mem: bool = False
    # dump, pre-dump: the previous (pre-)dump's images dir, relative to the
    # images dir as with criu; its unchanged pages are referred to, not copied
    prev_images_dir: str | None = None
    # pre-dump: how criu reads memory ("splice" or "read"); hiber reads it the
    # same way in both and records the mode in the inventory, as criu does
    pre_dump_mode: str = "splice"
    # dump, pre-dump: once the images are written, free the pages they hold
    # in the parent images (criu --auto-dedup; pages/dedup.py)
    auto_dedup: bool = False
    # dump, pre-dump: send the pages to a page server at address:port
    # instead of the images dir (criu --page-server --address --port)
    page_server: bool = False
    address: str | None = None
    port: int | None = None
    # restore: leave private anonymous memory to the lazy-pages daemon, which
    # brings it in on fault and in the background (criu --lazy-pages);
    # dump: keep those pages back and serve them on --port once the tree is
    # gone, for a restore elsewhere with a lazy-pages daemon (lazy migration)
    lazy_pages: bool = False
    # a dump serving lazy pages writes a zero byte here once it listens
    status_fd: int | None = None
    # dump: a unix datagram socket connected to a named one outside the tree
    # is dumped, and restore connects it to that name again (criu
    # --ext-unix-sk, bare)
    ext_unix_sk: bool = False
    # cgroups (resources/cgroups): criu --manage-cgroups's mode (ignore,
    # none, props, soft, full, strict; soft, as criu's default),
    # --cgroup-root as (controller or None, path) pairs, --cgroup-yard,
    # --cgroup-dump-controller
    manage_cgroups: str = "soft"
    cgroup_roots: tuple = ()
    cgroup_yard: str | None = None
    cgroup_dump_controllers: tuple = ()
    # dump and restore the tree's file locks (criu --file-locks; without it
    # a tree holding one, or images holding some, are refused)
    file_locks: bool = False
    # dump: the largest deleted file whose contents go into the images
    # (criu --ghost-limit; bytes on disk)
    ghost_limit: int = 1 << 20
    # inet sockets (resources/sockets/inet.py, tcp.py, netlock.py): dump and
    # restore established TCP connections through TCP_REPAIR (criu
    # --tcp-established), or dump them and bring them back closed
    # (--tcp-close); a listener's connections not accepted yet are dropped
    # (--tcp-skip-in-flight); how connections are kept from the network
    # meanwhile ("nftables", the default here, or "skip"; criu --network-lock)
    tcp_established: bool = False
    tcp_close: bool = False
    tcp_skip_in_flight: bool = False
    network_lock: str | None = None
    # the RPC service's NOTIFY dialogue: (action, root pid or None) -> whether
    # the client's hook went well, called at each action-script moment
    notify: object = None
    # tests of the failure paths: the phase at which to fail on purpose
    # (see faults.py); None in any real use
    fault: str | None = None


# the Python API's older spellings, still accepted
ALIASES = {"detach": "restore_detached", "force_proxy": "force_vdso_proxy"}


class UnknownOption(UsageError, TypeError):
    """A keyword that is no option: a UsageError for front ends, and the
    TypeError any Python function raises for a keyword it does not take."""


def build_options(caller, options=None, **given):
    """``options`` (default: all defaults) with the keyword arguments of a
    call such as ``hiber.dump(pid, dir, leave_running=True)`` on top."""
    known = {f.name for f in fields(Options)}
    values = {}
    for name, value in given.items():
        field = ALIASES.get(name, name)
        if field not in known:
            raise UnknownOption(f"{caller}() got an unknown option {name!r}; the options are: "
                                + ", ".join(sorted(known)))
        values[field] = value
    if options is None:
        options = Options()
    elif not isinstance(options, Options):
        raise UnknownOption(f"{caller}(): options= takes a hiber.Options, not "
                            f"{type(options).__name__}")
    return replace(options, **values) if values else options
