# Target for the CPython decoder tests: parks the interpreter in a known
# stack, spinning forever, after writing "PID RUNTIME_ADDR HEXVERSION" to
# the file named on the command line. Usage: stacks.py MODE INFO_FILE.
# Markers in comments ("# SPIN", "# CALL-...") let the tests find the
# lines they expect by reading this file; no line number is hard-coded.
import ctypes
import functools
import json
import os
import sys
import threading
import time


def spin():
    n = 0
    while True: n += 1  # SPIN


def c():
    spin()  # CALL-SPIN-C


def b():
    c()  # CALL-C


def a():
    b()  # CALL-B


class Widget:
    def run(self):
        spin()  # CALL-SPIN-METHOD


def run_method():
    Widget().run()  # CALL-METHOD


def run_lambda():
    f = lambda: spin()  # CALL-SPIN-LAMBDA
    f()  # CALL-LAMBDA


def run_genexpr():
    return sum(spin() for x in range(3))  # CALL-GENEXPR


def keyfn(x):
    spin()  # CALL-SPIN-KEY


def run_sorted():
    return sorted([3, 1, 2], key=keyfn)  # CALL-SORTED


def cb(x):
    spin()  # CALL-SPIN-MAP


def run_map():
    return list(map(cb, [1]))  # CALL-MAP


def inner_cb(x):
    spin()  # CALL-SPIN-INNER


def outer_key(x):
    return list(map(inner_cb, [x]))  # CALL-INNER-MAP


def run_nested():
    return sorted([1], key=outer_key)  # CALL-NESTED


def größe():
    spin()  # CALL-SPIN-LATIN


class 函数:
    def 𐐀(self):
        größe()  # CALL-LATIN


def run_unicode():
    函数().𐐀()  # CALL-UNICODE


def worker_a():
    spin()  # CALL-SPIN-A


def worker_b():
    spin()  # CALL-SPIN-B


def run_threads():
    ts = [threading.Thread(target=worker_a, daemon=True),
          threading.Thread(target=worker_b, daemon=True)]
    for t in ts:
        t.start()
    time.sleep(0.2)
    return "ready"


def d0(n):
    if n == 0:
        spin()
    d1(n - 1)


def d1(n):
    d2(n)


def d2(n):
    d3(n)


def d3(n):
    d0(n)


def run_deep():
    d0(7)  # CALL-DEEP: 28 frames under run_deep, 31 with main, <module>


def mixed(n):
    if n == 0:
        spin()
    elif n % 2:
        list(map(mixed, [n - 1]))
    else:
        sorted([n - 1], key=mixed)


def run_mixed():
    mixed(30)  # 31 eval calls, C (map, sorted) between each: for benchmarks


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def key7(x):
    return (x * 7919) % 10007


def fold(acc, x):
    return acc + (x & 7)


def churn_once(data):
    fib(16)
    sorted(data, key=key7)
    functools.reduce(fold, data, 0)
    json.dumps({"k%d" % i: [i, str(i)] for i in range(300)})


def run_churn():
    data = list(range(3000))
    while True:
        churn_once(data)  # a stack that changes all the time: for benchmarks


MODES = {
    "abc": a, "method": run_method, "lambda": run_lambda,
    "genexpr": run_genexpr, "sorted": run_sorted, "map": run_map,
    "nested": run_nested, "unicode": run_unicode, "deep": run_deep,
    "mixed": run_mixed, "churn": run_churn,
}


def main():
    mode, info = sys.argv[1], sys.argv[2]
    rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
    if mode == "threads":
        run_threads()
    with open(info + ".tmp", "w") as f:
        f.write("%d %#x %#x\n" % (os.getpid(), rt, sys.hexversion))
    os.rename(info + ".tmp", info)  # INFO-WRITTEN
    if mode == "threads":  # TO-THREADS-LOOP
        while True:  # LOOP-SLEEP
            time.sleep(1)  # CALL-SLEEP
    MODES[mode]()  # CALL-MODE


main()  # CALL-MAIN
