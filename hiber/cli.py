"""The hiber command line: criu-compatible verbs plus crit's decode/encode/show.

Each verb is a function taking the parsed arguments and returning an exit
code; any HiberError becomes one line on stderr and exit code 1.
"""

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import time

from .errors import HiberError, ImageError, UsageError
from .images.framing import read_image
from .images.jsonimg import image_to_json, json_to_bytes
from .options import Options
from .show import summarise


def _read_input(path):
    if path in (None, "-"):
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except OSError as e:
        raise ImageError(path, None, f"cannot open: {e.strerror}") from None


def _write_output(path, data):
    if path in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise ImageError(path, None, f"cannot write: {e.strerror}") from None


def _read_image_arg(path):
    if path in (None, "-"):
        # read_image wants a path; spool stdin through a temporary file
        import tempfile
        data, _ = _read_input(path)
        with tempfile.NamedTemporaryFile(prefix="hiber-stdin-") as tmp:
            tmp.write(data)
            tmp.flush()
            return read_image(tmp.name)
    return read_image(path)


def cmd_decode(args):
    image = _read_image_arg(args.input)
    text = json.dumps(image_to_json(image, args.pretty), indent=4 if args.pretty else None)
    _write_output(args.output, (text + "\n").encode())
    return 0


def cmd_encode(args):
    data, source = _read_input(args.input)
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ImageError(source, getattr(e, "pos", None), f"not valid JSON: {e}") from None
    _write_output(args.output, json_to_bytes(parsed, source))
    return 0


def _layout(value, indent, out):
    pad = "  " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:")
                _layout(v, indent + 1, out)
            else:
                out.append(f"{pad}{k}: {'{}' if v == {} else '[]' if v == [] else v}")
    elif isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            # numbers side by side, eight to a row
            for i in range(0, len(value), 8):
                out.append(pad + " ".join(str(v) for v in value[i:i + 8]))
        else:
            for i, v in enumerate(value):
                out.append(f"{pad}[{i}]")
                _layout(v, indent + 1, out)
    else:
        out.append(f"{pad}{value}")


def show_file(path):
    image = read_image(path)
    decoded = image_to_json(image, pretty=True)
    n = len(decoded["entries"])
    out = [f"{os.path.basename(path)}: {decoded['magic']} image, {n} entr{'y' if n == 1 else 'ies'}"]
    for i, entry in enumerate(decoded["entries"]):
        out.append(f"entry {i}:")
        _layout(entry, 1, out)
    return "\n".join(out)


def cmd_show(args):
    text = summarise(args.path) if os.path.isdir(args.path) else show_file(args.path)
    _write_output(None, (text + "\n").encode())
    return 0


# ---- logging, criu style ------------------------------------------------

VERBOSITY_LEVELS = {0: logging.CRITICAL + 10, 1: logging.ERROR, 2: logging.WARNING,
                    3: logging.INFO, 4: logging.DEBUG}


class CriuStyleFormatter(logging.Formatter):
    """(seconds since start) Level (module:line): message, as CRIU logs."""

    def __init__(self):
        super().__init__()
        self.start = time.monotonic()

    def format(self, record):
        level = {"WARNING": "Warn", "CRITICAL": "Error"}.get(record.levelname,
                                                             record.levelname.title())
        elapsed = record.created - (time.time() - (time.monotonic() - self.start))
        # a package's own code (hiber/restore/__init__.py) goes by the package's name
        module = record.name.rsplit(".", 1)[-1] if record.module == "__init__" else record.module
        line = (f"({max(elapsed, 0):012.6f}) {level} ({module}:{record.lineno}): "
                f"{record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


@contextlib.contextmanager
def command_logging(args):
    """For the time of one command, the `hiber` logger writes to --log-file
    (relative: inside the images dir, or --work-dir), or to stderr; then it
    is given back as it was, so main() can run in-process again (the RPC
    service will) without stacking or leaking handlers."""
    level = VERBOSITY_LEVELS.get(min(args.verbosity, 4), logging.DEBUG)
    if args.log_file and args.log_file != "-":
        base = args.work_dir or args.images_dir or "."
        path = args.log_file if os.path.isabs(args.log_file) else os.path.join(base, args.log_file)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        handler = logging.FileHandler(path, mode="w")
        if not args.verbosity_given:
            level = min(level, logging.INFO)  # a log file is for reading later: say more
    else:
        handler = logging.StreamHandler(sys.stderr)
        if not args.verbosity_given:
            # the reason of a failure is printed once, as the last line of
            # stderr, by main(); a log on stderr only comes when asked for
            level = VERBOSITY_LEVELS[0]
    handler.setFormatter(CriuStyleFormatter())
    handler.setLevel(level)
    logger = logging.getLogger("hiber")
    before = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the command's log goes where the user said, only there
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]
        handler.close()


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


def _add_common_options(p):
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


def _refuse_unsupported_options(args):
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


def _logged(args, doing, finished, what, work, verb):
    """Run a dump or a restore: its outcome is the last line of the log, and
    anything unforeseen (a bug, an odd kernel answer) becomes one line for the
    user that says where the traceback is, or how to get one."""
    log = logging.getLogger("hiber.cli")
    with command_logging(args) as handler:
        try:
            result = work(options_from(args))
        except HiberError as e:
            log.error("%s FAILED: %s", doing, e)
            raise
        except Exception as e:
            # the traceback first: the log's last line is the outcome, as criu's
            log.error("%s hit an error hiber did not foresee:", doing, exc_info=True)
            log.error("%s FAILED: %s", doing, e)
            if isinstance(handler, logging.FileHandler):
                where = f"the traceback is in {handler.baseFilename}"
            else:
                where = f"re-run with -o {verb}.log -v4 for a log with the traceback"
            raise HiberError(f"{what} failed unexpectedly ({type(e).__name__}: {e}); {where}, "
                             "and please report it") from None
        log.info("%s", finished)  # criu's own last lines
    return result


def cmd_dump(args):
    from .dump import dump
    from .inject.interrupts import deferring
    _refuse_unsupported_options(args)
    if args.status_fd is not None and not args.lazy_pages:
        raise UsageError("--status-fd is not supported on a dump without --lazy-pages: only "
                         "a dump serving lazy pages has a moment to announce")
    os.makedirs(args.images_dir, exist_ok=True)
    # SIGTERM, SIGINT & co. end the dump at a safe point (inject/interrupts.py)
    result = _logged(args, "Dumping", "Dumping finished successfully",
                     f"dump of PID {args.tree}",
                     lambda options: deferring(
                         lambda: dump(args.tree, args.images_dir, options=options))(),
                     "dump")
    if args.display_stats:
        print(f"Dumped {len(result.pids)} process(es), {result.threads} thread(s), "
              f"{result.pages_written} page(s) in {result.times.get('frozen', 0):.3f} s",
              file=sys.stderr)
    return 0


def cmd_pre_dump(args):
    from .dump import pre_dump
    from .inject.interrupts import deferring
    _refuse_unsupported_options(args)
    os.makedirs(args.images_dir, exist_ok=True)
    result = _logged(args, "Pre-dumping", "Pre-dumping finished successfully",
                     f"pre-dump of PID {args.tree}",
                     lambda options: deferring(
                         lambda: pre_dump(args.tree, args.images_dir, options=options))(),
                     "pre-dump")
    if args.display_stats:
        print(f"Pre-dumped {len(result.pids)} process(es), {result.pages_written} page(s) "
              f"in {result.times.get('frozen', 0):.3f} s", file=sys.stderr)
    return 0


def cmd_page_server(args):
    from .images.imagedir import ImageDir
    from .pages import server
    _refuse_unsupported_options(args)
    if not args.port:
        raise UsageError("page-server needs --port")
    if args.auto_dedup and args.daemon:
        raise UsageError("page-server --auto-dedup runs after the pages are in: not with "
                         "--daemon (run `hiber dedup -D DIR` then)")
    images = ImageDir(args.images_dir, create=True)
    _logged(args, "Serving pages", "Page server finished successfully",
            f"page server on port {args.port}",
            lambda options: server.run(images, args.address, args.port, daemon=args.daemon,
                                       status_fd=args.status_fd, pidfile=args.pidfile),
            "page-server")
    if args.auto_dedup and not args.daemon:
        from .pages.dedup import dedup
        dedup(images.path)
    return 0


def cmd_dedup(args):
    from .pages.dedup import dedup
    freed = _logged(args, "Deduplicating", "Deduplication finished successfully",
                    "dedup", lambda options: dedup(args.images_dir), "dedup")
    print(f"{freed} page(s) freed in the parent images", file=sys.stderr)
    return 0


def cmd_lazy_pages(args):
    from .images.imagedir import ImageDir
    from .pages import lazy
    _refuse_unsupported_options(args)
    if args.page_server and not args.port:
        raise UsageError("lazy-pages --page-server needs --port (and --address)")
    images = ImageDir(args.images_dir)
    remote = (args.address, args.port) if args.page_server else None
    _logged(args, "Serving lazy pages", "Lazy pages finished successfully",
            "lazy-pages", lambda options: lazy.serve(images, status_fd=args.status_fd,
                                                     remote=remote),
            "lazy-pages")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """Bad command lines get one line on stderr and exit code 1, as any
    other bad input does."""

    def error(self, message):
        self.exit(1, f"{self.prog}: {message} (see {self.prog.split()[0]} --help)\n")


def cmd_restore(args):
    from .restore import restore
    _refuse_unsupported_options(args)
    if not os.path.isdir(args.images_dir):
        raise UsageError(f"{args.images_dir}: no such images directory")
    result = _logged(args, "Restoring", "Restore finished successfully",
                     f"restore from {args.images_dir}",
                     lambda options: restore(args.images_dir, options=options), "restore")
    if result.exit_status is None:
        return 0
    # not detached: hiber exits as the restored root did (signals as 128+N)
    status = result.exit_status
    return 128 - status if status < 0 else status


def cmd_swrk(args):
    from .service import protocol
    return protocol.swrk(args.fd)


def cmd_service(args):
    from .service import protocol
    return protocol.service(args.address, daemon=args.daemon, pidfile=args.pidfile)


def cmd_check(args):
    from .kernel import probes
    if args.feature:
        unknown = [f for f in args.feature if f not in probes.BY_NAME]
        if unknown:
            raise UsageError(f"unknown feature {unknown[0]!r}; known: "
                             + ", ".join(sorted(probes.BY_NAME)))
    results = probes.run(args.feature)
    for probe, ok, detail in results:
        if ok:
            print(f"{probe.name:<26} ok       {detail}")
        else:
            print(f"{probe.name:<26} MISSING  {detail} -> {probe.consequence}")
    if args.feature:
        return 0 if all(ok for _, ok, _ in results) else 1
    essential = ("ptrace_seize", "clone3_set_tid", "pr_set_mm_map", "xstate")
    missing = [p.name for p, ok, _ in results if not ok and p.name in essential]
    print("Looks good." if not missing else f"hiber cannot work here: {', '.join(missing)}")
    return 0 if not missing else 1


RESTORE_EPILOG = """vdso: when the dumped vdso differs from this kernel's (images from another
kernel), the dumped one stays as a proxy that jumps into this kernel's vdso.
CRIU_FAULT=127 in the environment forces the proxy, as it does for criu.

uprobes: images dumped with --allow-uprobes hold code pages with the uprobes'
breakpoint instructions (int3) in them. Restoring them needs --allow-uprobes
again. The breakpoints are not written back: the kernel arms the probes that
are active at restore; those gone since the dump are gone from the code too
(the log names each one). See docs/uprobes-and-vdso.md.
"""


def version_text():
    """criu's first line, which tools parse, then what hiber really is."""
    from . import CRIU_VERSION, __version__
    major, minor = CRIU_VERSION
    return f"Version: {major}.{minor}\nhiber {__version__}"


def build_parser():
    parser = OneLineParser(
        prog="hiber",
        description="Checkpoint/restore of live Linux process trees, in CRIU's image format.")
    parser.add_argument("-V", "--version", action="store_true",
                        help="print the CRIU version hiber speaks (as criu does), then hiber's")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=OneLineParser)

    p = sub.add_parser("decode", help="convert an image file to JSON (as crit decode)")
    p.add_argument("-i", "--in", dest="input", help="image file (default: stdin)")
    p.add_argument("-o", "--out", dest="output", help="output file (default: stdout)")
    p.add_argument("--pretty", action="store_true",
                   help="indent, and show addresses in hex and flags by name")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("encode", help="convert JSON back to an image file (as crit encode)")
    p.add_argument("-i", "--in", dest="input", help="JSON file (default: stdin)")
    p.add_argument("-o", "--out", dest="output", help="image file (default: stdout)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("dump", help="checkpoint a process tree (as criu dump)")
    _add_common_options(p)
    p.add_argument("-t", "--tree", type=int, required=True, help="root PID of the tree")
    p.add_argument("-R", "--leave-running", action="store_true",
                   help="let the tree run on after the dump (default: kill it)")
    p.add_argument("-s", "--leave-stopped", action="store_true",
                   help="leave the tree stopped after the dump")
    p.add_argument("--timeout", type=int, help="accepted for compatibility (seconds)")
    p.add_argument("--status-fd", type=int,
                   help="with --lazy-pages: a zero byte here once the pages are served")
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser("pre-dump", help="copy a running tree's memory and track its writes, "
                                         "for a later dump (as criu pre-dump)")
    _add_common_options(p)
    p.add_argument("-t", "--tree", type=int, required=True, help="root PID of the tree")
    p.add_argument("--timeout", type=int, help="accepted for compatibility (seconds)")
    p.set_defaults(func=cmd_pre_dump)

    p = sub.add_parser("page-server", help="receive a dump's pages over TCP into an images "
                                            "dir (as criu page-server)")
    _add_common_options(p)
    p.add_argument("--daemon", action="store_true",
                   help="serve in the background; --pidfile gets its PID")
    p.add_argument("--status-fd", type=int,
                   help="write a zero byte to this fd once connections are accepted")
    p.set_defaults(func=cmd_page_server)

    p = sub.add_parser("dedup", help="free the pages an images dir holds in its parent "
                                      "images (as criu dedup)")
    _add_common_options(p)
    p.set_defaults(func=cmd_dedup)

    p = sub.add_parser("lazy-pages", help="serve the lazy pages of a restore --lazy-pages "
                                           "(as criu lazy-pages)")
    _add_common_options(p)
    p.add_argument("--daemon", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--status-fd", type=int,
                   help="write a zero byte to this fd once the restore may start")
    p.set_defaults(func=cmd_lazy_pages)

    p = sub.add_parser("restore", help="restore a process tree from images (as criu restore)",
                       epilog=RESTORE_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common_options(p)
    p.add_argument("-d", "--restore-detached", action="store_true",
                   help="exit once the tree runs, leaving it reparented; without it, wait "
                        "for the root and exit with its status")
    p.add_argument("-S", "--restore-sibling", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("swrk", help="serve criu's RPC on an inherited socket (as runc, "
                                    "podman and libcriu start criu)")
    p.add_argument("fd", type=int, help="the SOCK_SEQPACKET socket's descriptor")
    p.set_defaults(func=cmd_swrk)
    p = sub.add_parser("service", help="serve criu's RPC on a unix socket (as criu service)")
    p.add_argument("--address", default="/var/run/criu_service.socket",
                   help="the socket's path")
    p.add_argument("--daemon", action="store_true", help="detach and run in the background")
    p.add_argument("--pidfile", help="write the service's PID here")
    p.set_defaults(func=cmd_service)

    p = sub.add_parser("check", help="check that this kernel has what hiber needs")
    p.add_argument("--feature", action="append",
                   help="check one feature (criu's names where they exist); exit 0 only "
                        "when it works here")
    p.add_argument("--no-default-config", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbosity", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("show", help="summarise an image dir, or show one image file readably")
    p.add_argument("path", help="image directory or image file")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv=None):
    parser = build_parser()
    argv, verbosity_given = normalise_verbosity(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.verbosity_given = verbosity_given
    if args.version:
        print(version_text())
        return 0
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 1
    try:
        return args.func(args)
    except HiberError as e:
        print(f"hiber: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        print("hiber: interrupted", file=sys.stderr)
        return 1
