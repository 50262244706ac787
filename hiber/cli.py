"""The hiber command line: criu-compatible verbs plus crit's decode/encode/show.

Each verb is a function taking the parsed arguments and returning an exit
code; any HiberError becomes one line on stderr and exit code 1.
"""

import argparse
import json
import os
import sys

from .errors import HiberError, ImageError
from .images.framing import read_image
from .images.jsonimg import image_to_json, json_to_bytes
from .images.summary import summarise


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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hiber",
        description="Checkpoint/restore of live Linux process trees, in CRIU's image format.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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

    p = sub.add_parser("show", help="summarise an image dir, or show one image file readably")
    p.add_argument("path", help="image directory or image file")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
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
