"""forker.py - target for the fork test: forks two worker processes with
os.fork (as gunicorn and multiprocessing do), each running its own
function (child_one spins, child_two sleeps), while the parent spins in
parent_work.

Usage: forker.py SECONDS
Prints "ready PARENT CHILD1 CHILD2" once both children run."""
import os
import sys
import time


def spin(until):
    n = 0
    while time.monotonic() < until:
        for i in range(1000):
            n ^= i
    return n


def child_one(until):
    return spin(until)


def child_two(until):
    while time.monotonic() < until:     # sleeps: two busy processes are enough
        time.sleep(0.05)


def parent_work(until):
    return spin(until)


def start_child(fn, until, w):
    pid = os.fork()
    if pid == 0:
        os.close(w)         # the pipe end says "this child runs"
        try:
            fn(until)
        finally:
            os._exit(0)
    return pid


def main():
    until = time.monotonic() + float(sys.argv[1])
    r, w = os.pipe()
    pids = [start_child(child_one, until, w), start_child(child_two, until, w)]
    os.close(w)
    os.read(r, 1)           # EOF once both children closed their end
    print("ready", os.getpid(), *pids, flush=True)
    parent_work(until)
    for pid in pids:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
