"""mixed.py - target for the exact-merge tests: Python and C interleaved
three times, f1 -> c_outer -> f2 -> c_middle -> f3 -> c_inner (nestext.c),
where c_inner spins in C, so most samples are taken inside c_inner.

Usage: mixed.py SECONDS EXT_DIR   (EXT_DIR holds the built nestext module)
SECONDS of its own CPU time, so that a loaded machine gives as many samples.
Prints "ready PID" once the extension is imported, "done N" at the end."""
import os
import sys
import time

sys.path.insert(0, sys.argv[2])
import nestext  # noqa: E402

ITERS = 200000          # about 1 ms of C per call on this class of machine


def f3():
    return nestext.c_inner(ITERS)


def f2():
    return nestext.c_middle(f3)


def f1():
    return nestext.c_outer(f2)


def main():
    seconds = float(sys.argv[1])
    print("ready", os.getpid(), flush=True)
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        f1()
        n += 1
    print("done", n, flush=True)


if __name__ == "__main__":
    main()
