"""deep_recursion.py - target for stacks deeper than the attacher keeps
(MAX_VM_FRAMES, 1024): main() calls rec() DEPTH deep, and the innermost
rec spins for SECONDS.

Usage: deep_recursion.py SECONDS DEPTH"""
import sys
import time

sys.setrecursionlimit(10000)


def rec(n, seconds):
    if n == 0:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return 0
    return rec(n - 1, seconds) + 1


def main():
    rec(int(sys.argv[2]), float(sys.argv[1]))


main()
