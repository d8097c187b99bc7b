"""Never harm the target, part 1: the attacher dies at random moments, the
target exits or loses its leader mid-sample, threads churn, the target
forks and execs. Every test checks what the target itself observed (its
output and exit status) and that nothing is left traced or stopped.

The random moments come from a seed printed on failure; set
VMPROF_FAULT_SEED to replay a run."""
import os
import random
import re
import signal
import subprocess
import time

import pytest

from conftest import ATTACH, attach, read_vmprof, target, thread_states, tracer_pid

FAULTS = target("faults")


def faults(mode, *args):
    return [FAULTS, mode] + [str(a) for a in args]


def wait_released(pid, timeout=3.0):
    """Wait until no tracer holds pid and none of its threads is in a
    tracing stop; returns (tracer, states) as last seen."""
    deadline = time.time() + timeout
    while True:
        tp, st = tracer_pid_or_gone(pid), thread_states(pid)
        if (tp in (0, None) and "t" not in st.values()) or time.time() > deadline:
            return tp, st
        time.sleep(0.01)


def leader_zombie(pid, timeout=5.0):
    """Waits until the leader has called pthread_exit (its state is Z
    while its threads run on): the target prints its ready line just
    before, and a leader sampled alive would be one more thread."""
    end = time.time() + timeout
    while time.time() < end:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.002)
    raise AssertionError(f"leader {pid} did not exit within {timeout} s")


def tracer_pid_or_gone(pid):
    try:
        return tracer_pid(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None


def stats_of(stderr):
    line = [l for l in stderr.splitlines() if "stats:" in l]
    assert line, stderr
    return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([0-9.]+)", line[-1])}


def error_lines(stderr):
    """stderr lines that are neither the summary, the stats, the report
    table, the native-only notice nor the late-ticks warning (these tests
    overload the attacher on purpose)."""
    keep = []
    for l in stderr.splitlines():
        s = l.strip()
        if not s or not s.startswith("vmprof-attach:"):
            continue
        if any(w in s for w in ("stats:", " samples in ", "wrote ", "no vmprof shim",
                                "ticks came late")):
            continue
        keep.append(s)
    return keep


def has_trailer(path):
    data = open(path, "rb").read()
    return len(data) > 25 and data[-25] == 0x03


def names_in(samples):
    out = set()
    for names, _tid in samples:
        for n in names:
            parts = str(n).split(":")
            out.add(parts[1] if len(parts) >= 4 else str(n))
    return out


# ---- SIGKILL of the attacher ---------------------------------------------

def _kill_once(tmp_path, rng, k, phase):
    """One run: start a target, attach, SIGKILL the attacher in `phase`.
    Returns a description of when the kill landed."""
    t = subprocess.Popen(faults("spin", 1.6, 12), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert t.stdout.readline().startswith("ready")
        out = tmp_path / f"kill{k}.prof"
        args = [ATTACH, "-p", str(t.pid), "-o", str(out), "-q",
                "-i", rng.choice(["0.0005", "0.001", "0.002"]),
                "--mode", rng.choice(["cpu", "wall"])]
        if phase == "symbols":
            args += ["-d", "0.3"]
        a = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        landed = phase
        if phase == "attach":
            time.sleep(rng.uniform(0, 0.004))
        elif phase == "sampling":
            time.sleep(rng.uniform(0.05, 1.2))
        else:
            # Detached but still running: the end-of-run symbol phase.
            deadline = time.time() + 5
            while time.time() < deadline and a.poll() is None:
                if tracer_pid_or_gone(t.pid) == 0:
                    break
                time.sleep(0.0005)
            if a.poll() is not None:
                landed = "symbols (missed: attacher had exited)"
        a.kill()
        a.wait()
        tp, st = wait_released(t.pid)
        assert tp in (0, None), f"kill {k} ({landed}): tracer still {tp}"
        assert "t" not in st.values(), f"kill {k} ({landed}): {st}"
        assert t.wait(timeout=20) == 0, f"kill {k} ({landed})"
        assert t.stdout.read().strip() == "done", f"kill {k} ({landed})"
        return landed
    finally:
        if t.poll() is None:
            t.kill()
            t.wait()


def test_sigkill_at_20_random_moments(tmp_path):
    seed = int(os.environ.get("VMPROF_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    phases = ["attach"] * 4 + ["sampling"] * 12 + ["symbols"] * 4
    landed = []
    for k, phase in enumerate(phases):
        try:
            landed.append(_kill_once(tmp_path, rng, k, phase))
        except AssertionError as e:
            raise AssertionError(f"seed {seed}: {e}") from e
    # The symbol-phase kills must mostly have landed there.
    hit = sum(1 for l in landed if l == "symbols")
    assert hit >= 2, f"seed {seed}: symbol phase hit {hit}/4 times: {landed}"


# ---- the target exits, or loses its leader, during a sample ----------------

@pytest.mark.parametrize("mode", ["cpu", "wall"])
def test_whole_group_exits_during_samples(tmp_path, targets, mode):
    # Every thread (the leader too) spins until exit() kills them all at
    # once, sampled at 5 kHz: some sample is always in flight.
    for k in range(4):
        t = targets(faults("exitall", 1.2, 8))
        out = tmp_path / f"exit{k}.prof"
        r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.0002", "--mode", mode,
                    "--stats"], timeout=30)
        assert r.returncode == 0, r.stderr
        assert "until it exited" in r.stderr
        assert error_lines(r.stderr) == [], r.stderr
        assert t.wait(timeout=5) == 0
        assert has_trailer(out)
        stats, samples = read_vmprof(str(out))
        assert samples and "spin_leaf" in names_in(samples), (len(samples), r.stderr[-600:])


def test_leader_pthread_exit_then_workers_finish(tmp_path, targets):
    # The leader is a zombie for the whole run: it cannot be stopped, and
    # its exit is reported only after the workers'.
    t = targets(faults("mainexit", 1.2, 3))
    leader_zombie(t.pid)
    out = tmp_path / "mainexit.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001", "--mode", "wall",
                "--stats"], timeout=30)
    assert r.returncode == 0, r.stderr
    assert "until it exited" in r.stderr
    assert t.wait(timeout=5) == 0
    stats, samples = read_vmprof(str(out))
    tids = {tid for _n, tid in samples}
    assert len(tids) == 3, ("the three workers", sorted(tids), len(samples), r.stderr)


def test_zombie_leader_frames_are_named(tmp_path, targets):
    # Memory and maps are read through the sampled thread (sampler.c).
    t = targets(faults("mainexit", 1.0, 2))
    leader_zombie(t.pid)
    out = tmp_path / "zname.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001"], timeout=30)
    assert r.returncode == 0, r.stderr
    samples = read_vmprof(str(out))[1]
    assert "spin_leaf" in names_in(samples)
    assert max(len(n) for n, _tid in samples) >= 3, "worker -> spin_until -> spin_leaf"


def test_detach_while_leader_is_a_zombie(tmp_path, targets):
    t = targets(faults("mainexit", 3, 2))
    leader_zombie(t.pid)
    out = tmp_path / "zdetach.prof"
    start = time.time()
    r = attach(["-p", str(t.pid), "-o", str(out), "-d", "0.5", "-i", "0.001"], timeout=30)
    assert r.returncode == 0, r.stderr
    assert time.time() - start < 4
    tp, st = wait_released(t.pid)
    assert tp == 0 and "t" not in st.values(), (tp, st)
    assert t.wait(timeout=10) == 0
    assert t.p.stdout.read().strip() == "done"
    assert read_vmprof(str(out))[1]


def test_thread_that_cannot_stop_does_not_hold_up_the_run(tmp_path, targets):
    # The leader sits in vfork() (state D) for 5 s: it cannot be stopped
    # before its child exits. Sampling goes on with the worker and the
    # detach gives up on the leader after a bounded wait.
    t = targets(faults("vfork", 5))
    out = tmp_path / "vfork.prof"
    start = time.time()
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001", "--mode", "wall",
                "-d", "1", "--stats"], timeout=30)
    took = time.time() - start
    assert r.returncode == 0, r.stderr
    assert took < 4.5, took
    assert t.wait(timeout=15) == 0
    assert t.p.stdout.read().strip() == "done"
    tp, st = wait_released(t.pid) if t.alive() else (0, {})
    assert tp in (0, None)
    samples = read_vmprof(str(out))[1]
    assert "spin_leaf" in names_in(samples)


# ---- thread churn ---------------------------------------------------------

def test_thread_churn_10000_threads(tmp_path, targets):
    t = targets(faults("churn", 10))
    out = tmp_path / "churn.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001", "--stats"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert t.wait(timeout=10) == 0
    made = int(t.p.stdout.read().split()[-1])
    assert made >= 10000, f"only {made} threads in 10 s"
    st = stats_of(r.stderr)
    assert "threads_vanished" in st
    assert st["threads_seen"] >= made * 0.9, st
    assert st["unwind_failures"] == 0, st
    assert error_lines(r.stderr) == [], r.stderr
    assert has_trailer(out)
    stats, samples = read_vmprof(str(out))
    assert samples


def test_threads_exiting_as_soon_as_let_go(tmp_path, targets):
    # Every thread runs on a stack at an address the tracer does not know
    # (it re-reads the memory map through that thread after the stop) and
    # exits as soon as it is let go, the last one ending the process: the
    # re-read races the thread's exit, whose map may read empty or cut
    # short. Such a read is dropped (maps_kept) and the frames keep their
    # names. (The end-of-run case this guards, a reload through the exiting
    # thread that replaced every mapping with none, showed in 3 of 80 runs
    # of test_cpython_merge's mixed stack; here the drop itself is seen.)
    t = targets(faults("stopexit", 1))
    out = tmp_path / "stopexit.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001", "--stats"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert t.wait(timeout=10) == 0
    made = int(t.p.stdout.read().split()[-1])
    st = stats_of(r.stderr)
    assert made >= 100 and st["threads_seen"] >= 0.9 * made, (made, st)
    assert st["maps_kept"] > 0, st
    assert error_lines(r.stderr) == [], r.stderr
    samples = read_vmprof(str(out))[1]
    assert "spin_until_stopped" in names_in(samples), sorted(names_in(samples))[:20]


# ---- fork, clone, exec ----------------------------------------------------

def test_forked_and_cloned_children_are_not_traced(tmp_path, targets):
    # Each child checks its own TracerPid; the parent checks each exit.
    t = targets(faults("fork", 2))
    out = tmp_path / "fork.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001", "--stats"], timeout=30)
    assert r.returncode == 0, r.stderr
    assert t.wait(timeout=5) == 0
    last = t.p.stdout.read().strip()
    m = re.match(r"done forks=(\d+) clones=(\d+) bad=(\d+)", last)
    assert m and int(m.group(1)) > 5 and int(m.group(3)) == 0, last
    assert stats_of(r.stderr)["threads_seen"] == 1


def test_sampling_goes_on_across_exec(tmp_path, targets):
    # Decision: tracing continues in the new image (exec keeps the process;
    # a spawned "sh -c 'exec python ...'" needs it). The log covers both
    # images and the run ends when the exec'd program exits.
    t = targets(faults("exec", 0.8))
    out = tmp_path / "exec.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001", "--stats"], timeout=30)
    assert r.returncode == 0, r.stderr
    assert "until it exited" in r.stderr
    assert t.wait(timeout=5) == 0
    assert t.p.stdout.read().strip() == "done"
    stats, samples = read_vmprof(str(out))
    assert "after_exec" in names_in(samples)


def test_frames_before_exec_keep_their_names(tmp_path, targets):
    # The old image's addresses are named at the exec, while its mappings
    # are known; the new image's are keyed apart (profile.c).
    t = targets(faults("exec", 0.8))
    out = tmp_path / "exec.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001"], timeout=30)
    assert r.returncode == 0, r.stderr
    stats, samples = read_vmprof(str(out))
    names = names_in(samples)
    assert "before_exec" in names and "after_exec" in names
    unnamed = [n for n in names if n.startswith("0x")]
    assert not unnamed, unnamed[:5]


def test_exec_by_a_non_leader_thread(tmp_path):
    # A worker thread execs: the kernel reports the exec on the leader's
    # tid, the worker's tid vanishes without an exit status.
    py = (
        "import os, sys, threading, time\n"
        "print('ready', flush=True)\n"
        "def spin():\n"
        "    end = time.time() + 0.6\n"
        "    while time.time() < end: pass\n"
        "    os.execv(sys.argv[1], [sys.argv[1], 'spin', '0.6', '1'])\n"
        "th = threading.Thread(target=spin); th.start()\n"
        "end = time.time() + 5\n"
        "while time.time() < end: pass\n"
    )
    import sys
    t = subprocess.Popen([sys.executable, "-c", py, FAULTS], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert t.stdout.readline().startswith("ready")
        out = tmp_path / "tidexec.prof"
        r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001", "--stats"], timeout=30)
        assert r.returncode == 0, r.stderr
        assert t.wait(timeout=5) == 0
        assert t.stdout.read().split()[-1] == "done"
        assert "spin_leaf" in names_in(read_vmprof(str(out))[1])
    finally:
        if t.poll() is None:
            t.kill()
            t.wait()
