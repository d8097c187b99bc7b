"""workload.py - the benchmark's CPU-bound target: a fixed amount of mixed
work that times itself.

One unit of work mixes the three kinds of frames a profiler must handle:
pure-Python recursion (fib), C calling back into Python (sorted with a
key function, functools.reduce) and native work with no Python frame on
top (zlib, sha256, json encoding in C). The amount of work is fixed by
--units, so two runs are comparable however they are profiled; the wall
time of the work alone (not start-up, not waiting for a profiler) is
printed as "bench-time SECONDS", and the part of it this thread spent
waiting for a CPU as "bench-runq SECONDS".

Options (used by tests/bench/bench.py):
  --units N        units of work (default 300: 3-5 s on a 2-core cloud VM)
  --seconds S      instead of a fixed amount, work until S seconds passed
  --forever        work until SIGINT/SIGTERM
  --idle N         start N threads blocked on an Event before the work
  --wait-tracer    print "ready PID", then wait until every thread of this
                   process is traced (an attacher ran with -p), settle,
                   print "go" and only then start the clock
"""
import argparse
import functools
import hashlib
import json
import os
import random
import signal
import sys
import threading
import time
import zlib


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def sort_key(x):
    return (x * 7919) % 10007


def fold(acc, x):
    return acc + (x & 7)


RND = random.Random(1)
BLOB = bytes(RND.getrandbits(8) for _ in range(1 << 16))
DATA = list(range(20000))
DOC = {"k%d" % i: [i, str(i), i * 0.5] for i in range(3000)}


def python_part():
    for _ in range(4):
        fib(20)


def callback_part():
    sorted(DATA, key=sort_key)
    functools.reduce(fold, DATA, 0)
    functools.reduce(fold, DATA, 0)


def native_part():
    zlib.compress(BLOB * 2, 6)
    for _ in range(5):
        hashlib.sha256(BLOB * 4).digest()
    json.dumps(DOC)


def unit():
    python_part()
    callback_part()
    native_part()


STOP = threading.Event()


def traced_everywhere():
    """True when every thread of this process has a tracer."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return False
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("TracerPid:"):
                        if int(line.split()[1]) == 0:
                            return False
                        break
        except OSError:
            continue            # a thread that just went away
    return True


def wait_for_tracer(limit=120.0):
    print(f"ready {os.getpid()}", flush=True)
    end = time.monotonic() + limit
    while not traced_everywhere():
        if time.monotonic() > end:
            sys.exit("workload: no tracer attached in time")
        time.sleep(0.005)
    time.sleep(0.3)             # let the attacher finish its first ticks
    print("go", flush=True)


def runqueue_wait():
    """Seconds this thread has waited, runnable, for a CPU (schedstat's
    run_delay). Time stopped by a tracer is not in it; time lost to other
    processes on a busy machine is, so the benchmark can take it out."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def idle_thread(ev):
    ev.wait()


def work(args):
    if args.forever or args.seconds:
        end = None if args.forever else time.monotonic() + args.seconds
        n = 0
        while not STOP.is_set() and (end is None or time.monotonic() < end):
            unit()
            n += 1
        return n
    for _ in range(args.units):
        unit()
    return args.units


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=0.0)
    ap.add_argument("--forever", action="store_true")
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--wait-tracer", action="store_true")
    args = ap.parse_args()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: STOP.set())
    release = threading.Event()
    idle = [threading.Thread(target=idle_thread, args=(release,), daemon=True)
            for _ in range(args.idle)]
    for t in idle:
        t.start()
    if args.wait_tracer:
        wait_for_tracer()

    q0 = runqueue_wait()
    t0 = time.perf_counter()
    work(args)
    elapsed = time.perf_counter() - t0
    q1 = runqueue_wait()
    print(f"bench-time {elapsed:.6f}", flush=True)
    if q0 is not None and q1 is not None:
        print(f"bench-runq {q1 - q0:.6f}", flush=True)
    release.set()
    for t in idle:
        t.join()


if __name__ == "__main__":
    main()
