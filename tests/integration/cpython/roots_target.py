"""roots_target.py - target for the CPython 3.13 / 3.14 tests, run inside a
Debian root (chroot, optionally in its own PID namespace). Only the
standard library: a -> b -> c nesting in Python, and sorted() (C) calling
a Python key function.

Usage: roots_target.py SECONDS
Prints "ready PID HEXVERSION" (PID as the target sees it)."""
import os
import sys
import time


def c(n):
    acc = 0
    for i in range(n):
        acc = (acc + i * i) & 0xFFFFF
    return acc


def b(n):
    return c(n) + 1


def a(n):
    return b(n) + 1


def keyfn(v):
    acc = v
    for i in range(30):
        acc = (acc * 31 + i) & 0xFFFF
    return acc


def sort_phase(n):
    return sorted(range(n), key=keyfn)[0]


def main():
    until = time.monotonic() + float(sys.argv[1])
    print("ready", os.getpid(), hex(sys.hexversion), flush=True)
    while time.monotonic() < until:
        a(30000)
        sort_phase(1500)


if __name__ == "__main__":
    main()
