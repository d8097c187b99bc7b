"""names.py - target for the qualified-name test: methods, a nested class,
generator expressions and lambdas created and freed per call, in this
module and in names_mod.py. Each callee spins long enough to be sampled.

Usage: names.py SECONDS
Prints "ready" once names_mod is imported, "done" at the end."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import names_mod  # noqa: E402

N = 20000


class Shape:
    def area(self, n):
        acc = 0
        for i in range(n):
            acc += i * i
        return acc


class Outer:
    class Inner:
        def method(self, n):
            acc = 0
            for i in range(n):
                acc ^= i
            return acc


def outer(n):
    return sum(x * x for x in range(n))


def with_lambda(n):
    return sorted(range(n // 4), key=lambda v: (v * 7919) % 1009)


square_all = lambda n: [i * i for i in range(n)]  # noqa: E731


def main():
    seconds = float(sys.argv[1])
    shape, inner = Shape(), Outer.Inner()
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        shape.area(N)
        inner.method(N)
        outer(N)
        with_lambda(N)
        square_all(N)
        names_mod.other(N)
    print("done", flush=True)


if __name__ == "__main__":
    main()
