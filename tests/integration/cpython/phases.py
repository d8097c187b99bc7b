"""phases.py - a workload that times its own phases, for the accuracy test.

Usage: phases.py SECONDS RESULT_JSON      (prints "ready" first)

run_phases() calls four phases in turn until SECONDS of its own thread
CPU time have passed, timing each call with time.thread_time():

  hot_loop      a pure-Python loop
  callback_sort sorted() (C) calling a Python key function per item
  native_hash   hashlib and zlib: native work under one Python frame
  gen_phase     generator expressions created and consumed per call

The call sizes differ (about 0.3 to 2.5 ms each) so the phases do not beat
with a 4 ms sampling interval. At the end it writes RESULT_JSON:
{"total": CPU seconds of run_phases, "phases": {name: CPU seconds}}, and
the share of each phase is phases[name] / total."""
import hashlib
import json
import sys
import time
import zlib

BLOB = bytes(range(256)) * 4096         # 1 MiB


def hot_loop(n):
    acc = 0
    i = 0
    while i < n:
        acc = (acc * 31 + i) & 0xFFFF
        i += 1
    return acc


def sort_key(v):
    return (v * 7919) % 1009


def callback_sort(n):
    return sorted(range(n), key=sort_key)[0]


def native_hash(rounds):
    h = hashlib.sha256()
    for _ in range(rounds):
        h.update(BLOB)
    return zlib.crc32(BLOB) ^ h.digest()[0]


def gen_phase(calls):
    total = 0
    for k in range(calls):
        total += sum(x * x for x in range(40 + k % 7))
    return total


PHASES = [
    (hot_loop, 30000),          # ~2.5 ms
    (callback_sort, 15000),     # ~2.5 ms
    (native_hash, 1),           # ~0.8 ms
    (gen_phase, 1500),          # ~2.5 ms
    (native_hash, 2),
    (hot_loop, 4000),
    (gen_phase, 300),
    (callback_sort, 2500),
]


def run_phases(seconds, spent):
    clock = time.thread_time
    start = clock()
    while clock() - start < seconds:
        for fn, arg in PHASES:
            t0 = clock()
            fn(arg)
            spent[fn.__name__] += clock() - t0
    return clock() - start


def main():
    seconds = float(sys.argv[1])
    spent = {fn.__name__: 0.0 for fn, _ in PHASES}
    print("ready", flush=True)
    total = run_phases(seconds, spent)
    with open(sys.argv[2], "w") as f:
        json.dump({"total": total, "phases": spent}, f)


if __name__ == "__main__":
    main()
