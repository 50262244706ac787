"""The command line's options: criu's flags, those hiber refuses, and the
Options object they become (hiber/options.py)."""

import argparse
import os
import re

from .errors import UsageError
from .options import Options


def normalise_verbosity(argv):
    """criu accepts -v4, -vvvv, -v and --verbosity=N; argparse wants one form."""
    out, count, given = [], None, False
    for arg in argv:
        m = re.fullmatch(r"-v(\d)", arg)
        if m:
            count, given = int(m.group(1)), True
        elif re.fullmatch(r"-v+", arg):
            count, given = (count if count is not None else 2) + len(arg) - 1, True
        else:
            if arg.startswith("--verbosity"):
                given = True
            out.append(arg)
    if count is not None:
        out.append(f"--verbosity={count}")
    return out, given


def add_common_options(p):
    p.add_argument("--no-default-config", action="store_true",
                   help="accepted: hiber reads no configuration files anyway")
    p.add_argument("-D", "--images-dir", required=True, help="image directory")
    p.add_argument("-W", "--work-dir", help="where logs and stats go (default: images dir)")
    p.add_argument("-o", "--log-file", help="log file; relative to the images dir")
    p.add_argument("--verbosity", type=int, default=2, help="0 (silent) to 4 (debug)")
    p.add_argument("-j", "--shell-job", action="store_true",
                   help="the tree is a shell job: allow its terminal and foreign session")
    p.add_argument("--allow-uprobes", action="store_true",
                   help="dump: skip [uprobes] mappings; restore: accept images dumped so, "
                        "arming the uprobes active now (see below)")
    p.add_argument("--pidfile", help="restore: write the restored root PID here; dump: "
                                     "accepted, as criu does (only its daemons write one)")
    p.add_argument("--log-pid", action="store_true",
                   help="accepted: hiber is one process, its log is one file")
    p.add_argument("--display-stats", action="store_true", help="print the statistics")
    p.add_argument("--action-script", action="append", default=[], metavar="SCRIPT",
                   help="run SCRIPT at pre-dump, post-dump, pre-restore, post-restore, "
                        "pre-resume and post-resume, with criu's CRTOOLS_* variables")
    p.add_argument("--network-lock", choices=["iptables", "nftables", "skip"],
                   help="how TCP connections are kept from the network between dump and "
                        "restore: nftables (default here; iptables is absent) or skip")
    # criu (and zdtm, on every dump) passes it; only a pre-dump reads it
    p.add_argument("--pre-dump-mode", choices=["splice", "read"], default="splice",
                   help="pre-dump: recorded in the inventory as criu does (hiber reads "
                        "memory the same way in both)")
    p.add_argument("--track-mem", action="store_true",
                   help="dump: keep tracking the memory of a tree left running, for a "
                        "next dump with --prev-images-dir")
    p.add_argument("--lazy-pages", action="store_true",
                   help="restore: leave private memory to `hiber lazy-pages`, which brings "
                        "it in on fault and in the background")
    p.add_argument("--page-server", action="store_true",
                   help="dump, pre-dump: send the pages to a page server (--address, --port)")
    p.add_argument("--auto-dedup", action="store_true",
                   help="dump, pre-dump, page-server: free the pages the new images hold "
                        "in their parent images")
    p.add_argument("--address", help="the page server's address (page-server: where to listen)")
    p.add_argument("--port", type=int, help="the page server's TCP port")
    p.add_argument("--prev-images-dir", metavar="DIR",
                   help="dump, pre-dump: the previous (pre-)dump, relative to -D; pages "
                        "unchanged since are referred to, not copied")
    for flag in PERMISSIONS:
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ext-unix-sk", nargs="?", const="", help=argparse.SUPPRESS)
    p.add_argument("--irmap-scan-path", action="append", metavar="PATH",
                   help="accepted for criu's sake: hiber finds the inodes inotify watches "
                        "by their file handles, with no path to scan")
    p.add_argument("--ghost-limit", type=_size, metavar="SIZE",
                   help="the largest deleted file kept in the images (default 1M; K, M, G)")
    p.add_argument("--ghost-fiemap", "--no-ghost-fiemap", action="store_true",
                   help="accepted for criu's sake: a deleted file's holes are always skipped "
                        "(SEEK_DATA/SEEK_HOLE)")
    p.add_argument("--file-locks", action="store_true",
                   help="dump and restore the file locks the tree holds")
    p.add_argument("--tcp-established", action="store_true",
                   help="dump and restore established TCP connections (TCP_REPAIR)")
    p.add_argument("--tcp-close", action="store_true",
                   help="dump established TCP connections, restore them closed")
    p.add_argument("--tcp-skip-in-flight", "--skip-in-flight", dest="tcp_skip_in_flight",
                   action="store_true",
                   help="drop a listener's connections not accepted yet, rather than refuse")
    p.add_argument("--manage-cgroups", nargs="?", const="soft", default="soft",
                   choices=["ignore", "none", "props", "soft", "full", "strict"],
                   help="what restore does with the dumped cgroups (criu's modes; "
                        "default soft: make the missing ones)")
    p.add_argument("--cgroup-root", action="append", default=[], metavar="[CONTROLLER:]PATH",
                   help="put the dumped cgroups of CONTROLLER (or all) under PATH")
    p.add_argument("--cgroup-yard", metavar="DIR",
                   help="a directory with the cgroup hierarchies mounted in it, to use "
                        "instead of mounts of hiber's own")
    p.add_argument("--cgroup-dump-controller", action="append", default=[],
                   metavar="NAME", help="dump the cgroups of these controllers only")
    for flag, (nargs, _) in REFUSED.items():
        if nargs == 0:
            p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
        else:
            p.add_argument(flag, action="append", help=argparse.SUPPRESS)


# criu options that only allow state hiber refuses anyway (deleted files,
# devices): with nothing of the kind in the tree they change nothing; with
# something, the dump is refused naming it, flag or not
PERMISSIONS = ("--link-remap", "--evasive-devices", "--force-irmap", "--unprivileged")
_MOUNTS = "hiber has no mount namespace support yet"
_CGROUPS = ("hiber saves the properties criu saves by default, and takes no other list "
            "of them")
_PAGES = "hiber has no image streaming, and its page server no inherited socket, yet"
# criu options hiber cannot honour: refused with one line each, rather than
# accepted and silently ignored.  flag -> (0 for a switch, else 1; why)
REFUSED = {
    "--config": (1, "hiber reads no configuration files: give the options on the command "
                    "line"),
    "--external": (1, "hiber cannot map external resources (mounts, devices, files, "
                      "links) yet"),
    "--ext-mount-map": (1, _MOUNTS), "--skip-mnt": (1, _MOUNTS), "--enable-fs": (1, _MOUNTS),
    "--enable-external-sharing": (0, _MOUNTS), "--enable-external-masters": (0, _MOUNTS),
    "--mntns-compat-mode": (0, _MOUNTS),
    "--root": (1, "hiber restores into its own root (/) only"),
    "--inherit-fd": (1, "hiber cannot give a restored process a descriptor of its caller "
                        "yet"),
    "--lsm-profile": (1, "hiber restores the dumped LSM label only"),
    "--cgroup-props": (1, _CGROUPS), "--cgroup-props-file": (1, _CGROUPS),
    "--freeze-cgroup": (1, "hiber freezes with ptrace, not with a cgroup freezer"),
    "--stream": (0, _PAGES), "--ps-socket": (1, _PAGES),
}


def refuse_unsupported_options(args):
    if getattr(args, "root", None) and all(os.path.realpath(r) == "/" for r in args.root):
        args.root = None  # the root hiber restores into anyway
    for flag, (_, why) in REFUSED.items():
        if getattr(args, flag.lstrip("-").replace("-", "_"), None):
            raise UsageError(f"{flag} is not supported: {why}")
    if getattr(args, "ext_unix_sk", None):  # bare, it sets Options.ext_unix_sk
        raise UsageError("--ext-unix-sk with a socket id is not supported: give it bare, "
                         "for every named datagram peer outside the tree")
    if getattr(args, "restore_sibling", False):
        raise UsageError("--restore-sibling is not supported: hiber restores the tree as its "
                         "own child (or detached, with -d)")


def options_from(args):
    """One Options from the parsed command line. The environment is read here,
    in the front end, as criu's own binary reads it: CRIU_FAULT=127 (criu's
    FI_VDSO_TRAMPOLINES) forces the vdso proxy, HIBER_FAULT names the phase
    at which the tests make hiber fail."""
    return Options(
        leave_running=getattr(args, "leave_running", False),
        leave_stopped=getattr(args, "leave_stopped", False),
        shell_job=args.shell_job,
        allow_uprobes=args.allow_uprobes,
        restore_detached=getattr(args, "restore_detached", False),
        pidfile=args.pidfile if args.command == "restore" else None,
        show_progress=True,
        action_scripts=tuple(args.action_script),
        track_mem=getattr(args, "track_mem", False),
        page_server=getattr(args, "page_server", False),
        auto_dedup=getattr(args, "auto_dedup", False),
        lazy_pages=getattr(args, "lazy_pages", False),
        status_fd=getattr(args, "status_fd", None) if args.command == "dump" else None,
        address=getattr(args, "address", None),
        port=getattr(args, "port", None),
        prev_images_dir=getattr(args, "prev_images_dir", None),
        pre_dump_mode=getattr(args, "pre_dump_mode", None) or "splice",
        force_vdso_proxy=os.environ.get("CRIU_FAULT") == "127",
        ext_unix_sk=getattr(args, "ext_unix_sk", None) is not None,
        manage_cgroups=getattr(args, "manage_cgroups", "soft"),
        file_locks=getattr(args, "file_locks", False),
        ghost_limit=getattr(args, "ghost_limit", None) or (1 << 20),
        cgroup_roots=tuple(_cgroup_root(r) for r in getattr(args, "cgroup_root", [])),
        cgroup_yard=_in_work_dir(args, getattr(args, "cgroup_yard", None)),
        cgroup_dump_controllers=tuple(getattr(args, "cgroup_dump_controller", [])),
        tcp_established=getattr(args, "tcp_established", False),
        tcp_close=getattr(args, "tcp_close", False),
        tcp_skip_in_flight=getattr(args, "tcp_skip_in_flight", False),
        network_lock=getattr(args, "network_lock", None),
        fault=os.environ.get("HIBER_FAULT"))


def _size(text):
    """criu's sizes: a number of bytes, or with K, M or G."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        if text[-1:].lower() in units:
            return int(text[:-1]) * units[text[-1].lower()]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (bytes, or with K, M, G)")


def _in_work_dir(args, path):
    """criu works in its work dir (-W, else the images dir): a relative path
    given to it is relative to that dir, not to where criu was started."""
    if path is None or os.path.isabs(path):
        return path
    return os.path.join(args.work_dir or getattr(args, "images_dir", None) or ".", path)


def _cgroup_root(value):
    """criu --cgroup-root: "[CONTROLLER:]PATH"; a controller may be named
    ("name=zdtmtst:/prefix"), so the last colon before the path splits."""
    controller, sep, path = value.rpartition(":")
    if not path.startswith("/"):
        raise UsageError(f"--cgroup-root {value}: the path must be absolute")
    return (controller if sep else None, path)
