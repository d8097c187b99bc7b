"""demo.py - the bundled demo workload: a small service-like loop with a
few distinct phases (pure Python recursion, JSON encoding in C, hashing in
C, sorting with a Python key callback), for `bash tests/demo`."""
import hashlib
import json
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def encode(n):
    return json.dumps({"k%d" % i: [i, str(i)] for i in range(n)})


def digest(n):
    h = hashlib.sha256()
    for _ in range(n):
        h.update(b"x" * 4096)
    return h.hexdigest()


def by_key(item):
    return (item % 7, -item)


def rank(n):
    return sorted(range(n), key=by_key)


def handle_request(i):
    fib(20)
    encode(20000)
    digest(3000)
    rank(100000)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        handle_request(i)
        i += 1
    print(f"demo: {i} requests in {seconds:.0f} s")


if __name__ == "__main__":
    main()
