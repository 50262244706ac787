"""Logging of a command: criu's log format, --log-file and --verbosity
(shared by the command line and the RPC service)."""

import contextlib
import logging
import os
import sys
import time


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
