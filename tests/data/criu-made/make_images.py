"""Make this directory's images with a real CRIU 4.2 (run as root, by hand:
CI cannot build CRIU). Usage: python3 make_images.py /path/to/criu

Builds ticker.c to BINARY, starts it with fixed PIDs (ns_last_pid), in its
own session, with a clean environment, stdin /dev/null and stdout appended
to OUTPUT; after a second of running, CRIU dumps it (and kills it). The
images go to images/, the output it had written by then to ticker.out.
"""

import ctypes
import os
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
WORKDIR = pathlib.Path("/tmp/hiber-criu-made")
BINARY = WORKDIR / "ticker"
OUTPUT = WORKDIR / "ticker.out"
FIRST_PID = 31400  # below the smallest pid_max (32768), far from the usual PIDs
BUILD = ["gcc", "-O2", "-o", str(BINARY), "ticker.c"]  # run in this directory


def start_with_pid(pid):
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    out = open(OUTPUT, "ab")
    proc = subprocess.Popen([str(BINARY)], env={}, cwd=WORKDIR, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    return proc


def main(criu):
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: reap the child too
    WORKDIR.mkdir(exist_ok=True)
    subprocess.run(BUILD, cwd=HERE, check=True)
    OUTPUT.unlink(missing_ok=True)
    proc = start_with_pid(FIRST_PID)
    if proc.pid != FIRST_PID:
        proc.kill()
        sys.exit(f"got PID {proc.pid}, not {FIRST_PID}: something else forked; try again")
    time.sleep(1)
    images = HERE / "images"
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir()
    subprocess.run([criu, "dump", "-t", str(proc.pid), "-D", str(images), "-v4",
                    "-o", "dump.log"], check=True)
    proc.wait()
    while True:  # the child, reparented to us
        try:
            if os.waitpid(-1, 0)[0] <= 0:
                break
        except ChildProcessError:
            break
    shutil.copy(OUTPUT, HERE / "ticker.out")


if __name__ == "__main__":
    main(sys.argv[1])
