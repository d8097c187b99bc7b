"""thread_churn.py - target for stacks around thread creation: for
SECONDS, the main thread starts one thread at a time (through glibc's
clone3), each burning MS ms of CPU, and joins it. Samples catch the main
thread inside clone3 and new threads at their first instruction, where
glibc has no unwind table on purpose.

Usage: thread_churn.py SECONDS MS"""
import sys
import threading
import time


def burn(ms):
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


def churn(seconds, ms):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        t = threading.Thread(target=burn, args=(ms,))
        t.start()
        t.join()
        n += 1
    return n


print("threads", churn(float(sys.argv[1]), float(sys.argv[2])), flush=True)
