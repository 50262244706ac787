"""Time to decode every image of the largest golden dir to crit's JSON.

    python3 bench/decode_golden.py

Prints the best of several warm runs, next to the time Python takes just to
read the same bytes from disk, so the ratio tells the cost of decoding.
"""

import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hiber.images.framing import read_image  # noqa: E402
from hiber.images.jsonimg import image_to_json  # noqa: E402

GOLDEN = REPO / "tests" / "data" / "golden" / "criu-4.2"


def decodable(d):
    return [p for p in sorted(d.iterdir())
            if p.suffix != ".log" and not p.name.startswith("pages-")]


def best_of(fn, runs=7):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    dirs = [d / "images" for d in GOLDEN.iterdir() if (d / "images").is_dir()]
    largest = max(dirs, key=lambda d: sum(p.stat().st_size for p in decodable(d)))
    files = decodable(largest)
    size = sum(p.stat().st_size for p in files)
    decode = best_of(lambda: [json.dumps(image_to_json(read_image(p)), indent=4) for p in files])
    raw = best_of(lambda: [p.read_bytes() for p in files])
    print(f"dir: {largest} ({len(files)} images, {size} bytes)")
    print(f"decode to pretty JSON: {decode * 1000:.1f} ms   (read only: {raw * 1000:.2f} ms, "
          f"ratio {decode / raw:.0f}x)")


if __name__ == "__main__":
    main()
