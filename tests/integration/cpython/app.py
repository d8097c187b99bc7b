"""app.py - a plain Python program for the spawn / -p tests: work() spins
under main() until SECONDS have passed.

Usage: app.py SECONDS    Prints "ready PID", then "done" at the end."""
import os
import sys
import time


def work(n):
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1000003
    return acc


def main():
    seconds = float(sys.argv[1])
    print("ready", os.getpid(), flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        work(20000)
    print("done", flush=True)


if __name__ == "__main__":
    main()
