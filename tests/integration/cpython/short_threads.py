"""short_threads.py - target for test_cpython_short_threads: starts one
Python thread at a time, each spinning MS ms of its own CPU time in burn(),
and joins it, for SECONDS; then prints "burned SECONDS threads N": the CPU
time the threads measured themselves (time.thread_time) in burn().

Usage: short_threads.py SECONDS MS"""
import sys
import threading
import time

burned = []


def burn(seconds):
    start = time.thread_time()
    end = start + seconds
    n = 0
    while time.thread_time() < end:
        for i in range(100):
            n += i
    burned.append(time.thread_time() - start)


def main():
    until = time.monotonic() + float(sys.argv[1])
    ms = float(sys.argv[2])
    while time.monotonic() < until:
        th = threading.Thread(target=burn, args=(ms / 1000,))
        th.start()
        th.join()
    print("burned", sum(burned), "threads", len(burned), flush=True)


main()
