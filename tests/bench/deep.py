"""deep.py - a 30-deep mixed Python/C stack that spins at the bottom, for
the stop-time benchmark.

Each level is a Python function entered from C: even levels through
sorted(key=...), odd levels through map(). So every sample's stack
alternates Python frames and C frames (the interpreter re-entered from a
builtin) 30 times, which is what the attacher must snapshot while the
thread is stopped. At the bottom the thread spins (pure Python with a
little native work) for --seconds, then the process exits.
"""
import argparse
import hashlib
import time


def spin(seconds):
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        for i in range(200):
            x += i * i
        hashlib.sha256(b"x" * 256).digest()
    return x


def level(n):
    if n == 0:
        return spin(ARGS.seconds)
    if n % 2:
        return list(map(level, [n - 1]))[0]
    return sorted([n - 1], key=level)[0]


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--wait-tracer", action="store_true",
                    help="as workload.py: wait for an attacher (-p) before the work")
    ARGS = ap.parse_args()
    if ARGS.wait_tracer:
        from workload import wait_for_tracer
        wait_for_tracer()
    level(ARGS.depth)


ARGS = None

if __name__ == "__main__":
    main()
