"""lines.py - target for the --lines test: two functions whose loops each
sit on one line, marked with a comment, called from marked lines.

Usage: lines.py SECONDS    Prints "ready", then runs until SECONDS pass."""
import sys
import time


def hot(n):
    i = 0
    while i < n: i += 1  # noqa: E701 MARK-HOT-LOOP
    return i


def warm(n):
    j = 0
    k = 0
    while j < n: j += 1; k ^= j  # noqa: E701,E702 MARK-WARM-LOOP
    return k


def main():
    seconds = float(sys.argv[1])
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hot(200000)  # MARK-CALL-HOT
        warm(100000)  # MARK-CALL-WARM


if __name__ == "__main__":
    main()
