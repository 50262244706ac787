import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# shared/ lies beside the repository, in a developer's tree and in CI alike
SHARED = pathlib.Path(os.environ.get("HIBER_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden" / "criu-4.2"


def golden_image_files():
    """Every decodable golden image (no logs, no raw pages)."""
    files = []
    for path in sorted(GOLDEN.glob("*/images/*")):
        if path.suffix == ".log" or path.name.startswith("pages-"):
            continue
        files.append(path)
    return files


def decoded_json_of(image_path):
    return image_path.parent.parent / "decoded" / (image_path.name + ".json")


def run_hiber(*args, input=None, check=False, timeout=120):
    """Run the hiber command line as a user would, in its own process."""
    result = subprocess.run([sys.executable, "-m", "hiber", *map(str, args)],
                            input=input, capture_output=True, timeout=timeout,
                            cwd=REPO, stdin=None if input is not None else subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"hiber {' '.join(map(str, args))} failed:\n"
                             f"{result.stderr.decode(errors='replace')}")
    return result


@pytest.fixture(scope="session")
def crit():
    """Debian's crit (criu package); the test setup script installs it."""
    path = shutil.which("crit")
    if path is None:
        pytest.fail("crit is not installed: run scripts/setup.sh (apt-get install criu)")
    return path
