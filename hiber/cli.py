"""The hiber command line: criu-compatible verbs plus crit's decode/encode/show.

Each verb is a function taking the parsed arguments and returning an exit
code; any HiberError becomes one line on stderr and exit code 1.
"""

import argparse
import json
import logging
import os
import sys

from .cli_options import (PERMISSIONS, REFUSED, add_common_options,  # noqa: F401 - tests
                          normalise_verbosity, options_from, refuse_unsupported_options)
from .errors import HiberError, ImageError, UsageError
from .images.framing import read_image
from .images.jsonimg import image_to_json, json_to_bytes
from .logs import command_logging
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
    refuse_unsupported_options(args)
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
    refuse_unsupported_options(args)
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
    refuse_unsupported_options(args)
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
    refuse_unsupported_options(args)
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
    refuse_unsupported_options(args)
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
    add_common_options(p)
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
    add_common_options(p)
    p.add_argument("-t", "--tree", type=int, required=True, help="root PID of the tree")
    p.add_argument("--timeout", type=int, help="accepted for compatibility (seconds)")
    p.set_defaults(func=cmd_pre_dump)

    p = sub.add_parser("page-server", help="receive a dump's pages over TCP into an images "
                                            "dir (as criu page-server)")
    add_common_options(p)
    p.add_argument("--daemon", action="store_true",
                   help="serve in the background; --pidfile gets its PID")
    p.add_argument("--status-fd", type=int,
                   help="write a zero byte to this fd once connections are accepted")
    p.set_defaults(func=cmd_page_server)

    p = sub.add_parser("dedup", help="free the pages an images dir holds in its parent "
                                      "images (as criu dedup)")
    add_common_options(p)
    p.set_defaults(func=cmd_dedup)

    p = sub.add_parser("lazy-pages", help="serve the lazy pages of a restore --lazy-pages "
                                           "(as criu lazy-pages)")
    add_common_options(p)
    p.add_argument("--daemon", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--status-fd", type=int,
                   help="write a zero byte to this fd once the restore may start")
    p.set_defaults(func=cmd_lazy_pages)

    p = sub.add_parser("restore", help="restore a process tree from images (as criu restore)",
                       epilog=RESTORE_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(p)
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
