"""A Python program with threads and a child process (multiprocessing) that
works for a few seconds and then writes its result; the tests checkpoint and
restore it in the middle of its work.

Usage: python3 pyprog.py OUTPUT_FILE
"""

import multiprocessing
import os
import sys
import threading
import time


def work(n, steps, pause):
    total = 0
    for i in range(steps):
        total += sum(range(n * i, n * (i + 1)))
        time.sleep(pause)
    return total


def child(write_fd):
    os.write(write_fd, str(work(1000, 40, 0.05)).encode())
    os.close(write_fd)


def main():
    out = open(sys.argv[1], "w", buffering=1)
    read_fd, write_fd = os.pipe()
    # plain pipes, not multiprocessing.Queue: its semaphores live in deleted
    # /dev/shm files, which hiber cannot dump yet
    proc = multiprocessing.get_context("fork").Process(target=child, args=(write_fd,))
    proc.start()
    os.close(write_fd)
    results = [None] * 4

    def thread(i):
        results[i] = work(100 + i, 40, 0.05)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    out.write(f"READY pid={os.getpid()} child={proc.pid}\n")
    for t in threads:
        t.join()
    child_total = int(os.read(read_fd, 100))
    proc.join()
    expected = [work(100 + i, 40, 0) for i in range(4)]
    ok = results == expected and child_total == work(1000, 40, 0) and proc.exitcode == 0
    out.write("PASS\n" if ok else f"FAIL {results} {child_total} {proc.exitcode}\n")


if __name__ == "__main__":
    main()
