"""epoll_callers.py - target for wall mode: one Python function waits in
selectors' epoll for SECONDS/2, then another one does, through the same
C call (same C stack depth, same epoll descriptor). A stop makes epoll_wait
fail with EINTR (CPython calls it again), so vmprof-attach does not stop a
thread found back at that place; it must still tell the two callers apart.

Usage: epoll_callers.py SECONDS"""
import os
import selectors
import sys
import time

sel = selectors.EpollSelector()
r, w = os.pipe()
sel.register(r, selectors.EVENT_READ)


def wait_first(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sel.select(0.1)


def wait_second(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sel.select(0.1)


half = float(sys.argv[1]) / 2
wait_first(half)
wait_second(half)
