"""threads.py - target for the thread and mode tests: three Python
threads, busy_a (spins all the time), busy_b (spins 10 ms, sleeps 10 ms)
and sleeper (sleeps), while the main thread waits in join().

Usage: threads.py SECONDS
Prints "ready PID a=TID b=TID s=TID main=TID" (OS thread ids) once all
threads run."""
import os
import sys
import threading
import time

started = threading.Barrier(4)


def spin(seconds):
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        for i in range(1000):
            n += i
    return n


def busy_a(until):
    started.wait()
    while time.monotonic() < until:
        spin(0.01)


def busy_b(until):
    started.wait()
    while time.monotonic() < until:
        spin(0.01)
        time.sleep(0.01)


def sleeper(until):
    started.wait()
    while time.monotonic() < until:
        time.sleep(0.05)


def main():
    until = time.monotonic() + float(sys.argv[1])
    tids = {}
    threads = []
    for key, fn in (("a", busy_a), ("b", busy_b), ("s", sleeper)):
        th = threading.Thread(target=fn, args=(until,), name=fn.__name__)
        th.start()
        threads.append(th)
    started.wait()
    for key, th in zip("abs", threads):
        tids[key] = th.native_id
    print("ready", os.getpid(), " ".join(f"{k}={v}" for k, v in tids.items()),
          f"main={threading.get_native_id()}", flush=True)
    for th in threads:
        th.join()


if __name__ == "__main__":
    main()
