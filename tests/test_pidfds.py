"""pidfds come back: of processes of the tree (signals reach them), of the
process itself, of a process gone (it still reads as exited, and several
holders still share one inode); one of a process outside the tree is
refused in one line, leaving the tree running."""

import os
import subprocess
import sys

from conftest import Target, dump, restore, run_hiber, written

HOLDER = """
import os, select, signal, sys, time
out = sys.argv[1]
gone = os.fork()
if gone == 0:
    os._exit(0)
gone_fd = os.pidfd_open(gone)      # then reaped: a pidfd of a process gone
os.waitpid(gone, 0)
got = []
child = os.fork()
if child == 0:
    signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
    while not got:
        time.sleep(0.01)
    # the pidfd inherited from the parent: the same inode as the parent's
    open(out + ".child", "w").write(str(os.fstat(gone_fd).st_ino))
    os._exit(0)
child_fd = os.pidfd_open(child)
self_fd = os.pidfd_open(os.getpid(), os.O_NONBLOCK)
signal.signal(signal.SIGUSR2, lambda *a: got.append(2))
print("READY", flush=True)
while not got:
    time.sleep(0.01)
signal.pidfd_send_signal(child_fd, signal.SIGUSR1)    # through the restored pidfd
select.select([child_fd], [], [], 10)                 # readable once it exits
os.waitpid(child, 0)
gone_exited = select.select([gone_fd], [], [], 0)[0] == [gone_fd]
nonblock = os.get_blocking(self_fd) is False
with open(out, "w") as f:
    f.write(f"{os.fstat(gone_fd).st_ino} {gone_exited} {nonblock}")
time.sleep(60)
"""


def test_pidfds_come_back(tmp_path):
    out = tmp_path / "report"
    t = Target(sys.executable, ["-c", HOLDER, out], tmp_path)
    try:
        t.wait_ready()
        dump(t, tmp_path / "images")
        restore(tmp_path / "images")
        os.kill(t.pid, 12)  # SIGUSR2: go on
        ino, exited, nonblock = written(out, 20).split()
        assert exited == "True" and nonblock == "True"
        assert (tmp_path / "report.child").read_text() == ino
    finally:
        t.stop()


def test_a_pidfd_of_a_process_outside_the_tree_is_refused(tmp_path):
    outsider = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL)
    code = (f"import os, time; fd = os.pidfd_open({outsider.pid}); print('READY', flush=True); "
            "time.sleep(60)")
    t = Target(sys.executable, ["-c", code], tmp_path)
    try:
        t.wait_ready()
        result = run_hiber("dump", "-t", t.pid, "-D", tmp_path / "images")
        message = result.stderr.decode()
        assert result.returncode == 1 and message.count("\n") == 1, message
        assert f"pidfd of PID {outsider.pid}, which is not in the tree" in message
        assert t.alive()
    finally:
        t.stop()
        outsider.kill()
        outsider.wait(10)
