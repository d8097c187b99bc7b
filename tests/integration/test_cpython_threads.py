"""Python threads and sampling modes: --mode cpu samples threads in
proportion to the CPU time they used (measured from
/proc/PID/task/TID/schedstat around the run) and leaves a sleeping thread
alone; --mode wall samples every thread every tick."""
import os
import re
import sys
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "cpython"))
from conftest import attach  # noqa: E402
import pyprof  # noqa: E402
from pyprof import DEBIAN_PY, MODE_REAL_TIME  # noqa: E402

SCRIPT = pyprof.script("threads.py")
FUNC = {"a": "busy_a", "b": "busy_b", "s": "sleeper", "main": "main"}


def start(targets):
    t = targets([DEBIAN_PY, SCRIPT, "8"], env=pyprof.shim_env(), ready=None)
    line = t.p.stdout.readline().split()
    assert line and line[0] == "ready", line
    tids = {k: int(v) for k, v in (kv.split("=") for kv in line[2:])}
    return t, tids


def cpu_ns(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def by_thread(samples):
    return Counter(tid for _, tid in samples)


def check_own_frames(samples, tids):
    """Each thread's samples show that thread's own function."""
    for key, tid in tids.items():
        mine = [fr for fr, t in samples if t == tid]
        if not mine:
            continue
        own = sum(1 for fr in mine if pyprof.contains(fr, FUNC[key]))
        assert own >= 0.95 * len(mine), (key, own, len(mine))


def test_cpu_mode_follows_cpu_time(tmp_path, targets):
    t, tids = start(targets)
    out = tmp_path / "cpu.prof"
    before = {k: cpu_ns(t.pid, v) for k, v in tids.items()}
    r = attach(["-p", str(t.pid), "-d", "3", "-o", str(out), "--stats"])
    after = {k: cpu_ns(t.pid, v) for k, v in tids.items()}
    assert r.returncode == 0, r.stderr
    used = {k: (after[k] - before[k]) / 1e9 for k in tids}
    _, samples = pyprof.read_samples(str(out))
    count = by_thread(samples)
    n = {k: count.get(tid, 0) for k, tid in tids.items()}
    assert set(count) <= set(tids.values()), (count, tids)
    # the sleeping thread and the joining main thread hardly run
    assert used["s"] < 0.05 and used["main"] < 0.05, used
    assert n["s"] <= 2 and n["main"] <= 2, n
    # busy threads: one sample per 4 ms of CPU, shares as their CPU times
    for k in "ab":
        assert abs(n[k] - used[k] / 0.004) < 0.15 * used[k] / 0.004 + 5, (k, n, used)
    want = used["a"] / (used["a"] + used["b"])
    got = n["a"] / (n["a"] + n["b"])
    assert abs(got - want) < 0.05, (got, want, n, used)
    assert used["a"] > 1.3 * used["b"], used   # the premise: different shares
    check_own_frames(samples, tids)
    pyprof.log_report("threads cpu mode", f"cpu={used} samples={n}; {r.stderr.splitlines()[-1]}")


def test_wall_mode_samples_every_thread(tmp_path, targets):
    t, tids = start(targets)
    out = tmp_path / "wall.prof"
    r = attach(["-p", str(t.pid), "--mode", "wall", "-d", "2", "-o", str(out), "--stats"])
    assert r.returncode == 0, r.stderr
    mode, interp = pyprof.header(str(out))
    assert mode & MODE_REAL_TIME and interp == "cpython"
    _, samples = pyprof.read_samples(str(out))
    count = by_thread(samples)
    n = {k: count.get(tid, 0) for k, tid in tids.items()}
    assert set(count) == set(tids.values()), (count, tids)
    assert min(n.values()) > 0.85 * max(n.values()), n
    assert min(n.values()) > 150, n
    check_own_frames(samples, tids)
    # a sleeping thread is shown where it sleeps: in time.sleep, under
    # sleeper (the first few samples may still find it leaving the start
    # barrier: "ready" is printed when the main thread has passed it)
    sleeping = [fr for fr, tid in samples if tid == tids["s"]]
    in_sleep = sum(1 for fr in sleeping if pyprof.py_names(fr)[-1] == "sleeper"
                   and fr[-1][0] == "n")
    pyprof.log_report("threads wall mode", f"samples={n}; {r.stderr.splitlines()[-1]}")
    # Seen in 2 of 4 CI runs before sampler.c's "Wall mode" rules: woken from
    # the barrier, the sleeper waits for the GIL, is sampled there, then
    # walks to its sleep on less CPU than our stops cost it, and the barrier
    # was repeated for all its samples.
    assert in_sleep > 0.95 * len(sleeping), (in_sleep, len(sleeping), sleeping[:2])


def test_wall_mode_tells_apart_two_python_callers_of_one_blocking_call(tmp_path):
    # Two Python functions wait in turn in the same epoll_wait, reached at
    # the same C depth. Our stop makes that call fail once; the thread is
    # then not stopped again there while its Python frames (read without a
    # stop) are unchanged, but the second caller must be seen (sampler.c,
    # "Wall mode"). A review found the first caller's stack repeated for
    # the whole second half (755 vs 0 samples).
    out = tmp_path / "epoll.prof"
    r = attach(["--mode", "wall", "-o", str(out), "--stats", "--", DEBIAN_PY,
                pyprof.script("epoll_callers.py"), "3"], timeout=60)
    assert r.returncode == 0, r.stderr
    _, samples = pyprof.read_samples(str(out))
    first = sum(1 for fr, _ in samples if pyprof.contains(fr, "wait_first"))
    second = sum(1 for fr, _ in samples if pyprof.contains(fr, "wait_second"))
    assert first > 250 and second > 250, (first, second, r.stderr)
    assert abs(first - second) < 0.15 * (first + second), (first, second)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", r.stderr.split("stats:")[1]))
    assert int(kv["calls_failed"]) <= 6, kv     # about one per caller


def times_run(pid, tid):
    """How many times the thread was put on a CPU (schedstat field 3)."""
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[2])


def test_wall_mode_leaves_blocked_threads_blocked(tmp_path, targets):
    # DESIGN 3: in wall mode a thread whose CPU time shows it has not run
    # is not stopped; its last stack is repeated. The main thread waits in
    # join() the whole run: it may be stopped for its first sample, not
    # woken at every tick (500 ticks here). Each stop puts it on a CPU
    # twice (to stop, to go back to its wait): the attach and the first
    # sample make 4. A few more re-checks are allowed: on a loaded machine
    # a stop can cost the blocked thread more CPU than the idle allowance
    # (STOP_CPU_NOISE_NS), which counts as a run and earns it another stop
    # (seen: 20 wake-ups in a sanitizer build under load). Woken at every
    # tick would be ~1000.
    t, tids = start(targets)
    out = tmp_path / "wall.prof"
    before = times_run(t.pid, tids["main"])
    r = attach(["-p", str(t.pid), "--mode", "wall", "-d", "2", "-o", str(out),
                "--stats"])
    after = times_run(t.pid, tids["main"])
    assert r.returncode == 0, r.stderr
    _, samples = pyprof.read_samples(str(out))
    n_main = sum(1 for _, tid in samples if tid == tids["main"])
    assert n_main > 200, n_main
    assert after - before < 50, ("main thread woken", after - before, "times for",
                                 n_main, "samples", r.stderr)


def test_stacks_around_thread_creation_are_whole_and_in_order(tmp_path):
    # One short thread after another. Two places have no unwind table on
    # purpose (glibc's clone3 after its system call): the main thread
    # inside clone3 was written with clone3 outermost, above its Python
    # frames (the merge let the last native frame, whose end is unknown,
    # hold every VM frame); a new thread at its first instruction gave
    # clone3 then one heap address ~117 times (the unwind went on past a
    # return address that is not code). Both seen by QA, every run.
    out = tmp_path / "churn.prof"
    r = attach(["--mode", "wall", "--native", "all", "-o", str(out), "--stats", "--",
                DEBIAN_PY, pyprof.script("thread_churn.py"), "3", "2"], timeout=60)
    assert r.returncode == 0, r.stderr
    _, samples = pyprof.read_samples(str(out))
    in_start = 0
    for frames, _tid in samples:
        names = pyprof.names(frames)
        # no unnamed address repeated over and over (marshal's r_object
        # recurses legitimately, at import)
        runs = [i for i in range(len(names) - 2)
                if names[i].startswith("0x") and len(set(names[i:i + 3])) == 1]
        assert not runs, (names[runs[0]], len(names), names[-12:]) if runs else None
        if "clone3" in names and "churn" in names:
            in_start += 1
            # the main thread creating a thread: clone3 is called by it
            assert names.index("clone3") > names.index("churn"), names
    assert in_start > 0, (len(samples), r.stderr)
