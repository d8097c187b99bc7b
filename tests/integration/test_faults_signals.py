"""Never harm the target, part 2: the target's own signals. Every signal
sent to the target while it is traced is delivered exactly as it would be
without us (a signal-delivery-stop is resumed with its signal); someone
else's SIGSTOP keeps the target stopped until their SIGCONT; a target
that uses SIGPROF itself (setitimer, vmprof in-process) keeps its ticks."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ATTACH, attach, read_vmprof, target, thread_states, tracer_pid
from test_faults import error_lines, faults, names_in, stats_of, wait_released


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_sigterm_handler_runs_exactly_once(tmp_path, targets):
    t = targets(faults("sigterm", 6))
    out = tmp_path / "term.prof"
    a = subprocess.Popen([ATTACH, "-p", str(t.pid), "-o", str(out), "-i", "0.0005",
                          "--stats"], stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    os.kill(t.pid, signal.SIGTERM)
    assert t.wait(timeout=10) == 0
    assert t.p.stdout.read().strip() == "done 1"
    assert a.wait(timeout=10) == 0
    err = a.stderr.read()
    assert stats_of(err)["signals_passed"] >= 1
    assert error_lines(err) == [], err


def _wait_state(pid, letters, timeout=3.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = thread_states(pid)
        if st and all(s in letters for s in st.values()):
            return st
        time.sleep(0.01)
    return thread_states(pid)


def test_sigstop_by_someone_else_holds_until_sigcont(tmp_path, targets):
    t = targets(faults("counter", 2.5))
    out = tmp_path / "stop.prof"
    a = subprocess.Popen([ATTACH, "-p", str(t.pid), "-o", str(out), "-i", "0.001",
                          "--mode", "wall", "--stats"], stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    os.kill(t.pid, signal.SIGSTOP)
    # Stopped: 't' while we trace it (a LISTENed group-stop), never running.
    st = _wait_state(t.pid, "tT")
    assert set(st.values()) <= {"t", "T"}, st
    c0 = cpu_ticks(t.pid)
    time.sleep(0.6)
    assert cpu_ticks(t.pid) == c0, "the attacher let a stopped target run"
    assert set(thread_states(t.pid).values()) <= {"t", "T"}
    os.kill(t.pid, signal.SIGCONT)
    assert t.wait(timeout=10) == 0
    assert t.p.stdout.read().strip().splitlines()[-1] == "done"
    assert a.wait(timeout=10) == 0
    err = a.stderr.read()
    assert error_lines(err) == [], err
    assert read_vmprof(str(out))[1]


def test_detach_leaves_a_stopped_target_stopped(tmp_path, targets):
    t = targets(faults("spin", 3, 2))
    out = tmp_path / "stopdetach.prof"
    a = subprocess.Popen([ATTACH, "-p", str(t.pid), "-o", str(out), "-i", "0.001",
                          "-d", "1.0", "-q"], stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    os.kill(t.pid, signal.SIGSTOP)
    assert a.wait(timeout=10) == 0, a.stderr.read()
    # After our detach: a plain job-control stop ('T'), untraced.
    st = _wait_state(t.pid, "T")
    assert set(st.values()) == {"T"}, st
    assert tracer_pid(t.pid) == 0
    c0 = cpu_ticks(t.pid)
    time.sleep(0.3)
    assert cpu_ticks(t.pid) == c0
    os.kill(t.pid, signal.SIGCONT)
    assert t.wait(timeout=10) == 0
    assert t.p.stdout.read().strip() == "done"


def test_attach_to_an_already_stopped_target(tmp_path, targets):
    t = targets(faults("spin", 1.5, 2))
    os.kill(t.pid, signal.SIGSTOP)
    assert set(_wait_state(t.pid, "T").values()) == {"T"}
    out = tmp_path / "prestopped.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-d", "0.5", "-i", "0.001"], timeout=20)
    assert r.returncode == 0, r.stderr
    st = _wait_state(t.pid, "T")
    assert set(st.values()) == {"T"}, st
    assert tracer_pid(t.pid) == 0
    os.kill(t.pid, signal.SIGCONT)
    assert t.wait(timeout=10) == 0
    assert t.p.stdout.read().strip() == "done"


def test_sigchld_storm(tmp_path, targets):
    t = targets(faults("sigchld", 400))
    out = tmp_path / "chld.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.0005", "--stats"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert t.wait(timeout=10) == 0
    last = t.p.stdout.read().strip()
    assert re.match(r"done reaped=400 handler=\d+ bad=0", last), last
    assert stats_of(r.stderr)["signals_passed"] >= 1
    assert error_lines(r.stderr) == [], r.stderr


def test_target_using_sigprof_gets_every_tick(tmp_path, targets):
    # ITIMER_PROF at 10 ms with a counting handler over 1.5 s of CPU, the
    # timer started once we trace the target: every SIGPROF the kernel
    # generates goes through a signal-delivery-stop, so the handler's count
    # must equal the signals we passed on: none swallowed, none doubled.
    #
    # The count itself is not compared with an unprofiled run: on this
    # class of machine the unprofiled count alone ranged 155-208 for a
    # nominal 150, and under 1 kHz sampling the kernel generated 10-40%
    # fewer, once 80% fewer (the same with the first attacher; each one
    # generated was delivered). Only a loose floor is checked.
    t = targets(faults("sigprof", 1.5, 10000, "traced"))
    out = tmp_path / "sigprof.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "-i", "0.001", "--stats"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert t.wait(timeout=10) == 0
    m = re.match(r"done ticks=(\d+) cpu=([0-9.]+)", t.p.stdout.read().strip())
    assert m
    ticks, cpu = int(m.group(1)), float(m.group(2))
    passed = stats_of(r.stderr)["signals_passed"]
    assert passed == ticks, f"handler ran {ticks} times, {passed} signals passed on"
    assert ticks >= 0.1 * cpu / 0.01, f"only {ticks} ticks in {cpu} s of CPU"
    assert read_vmprof(str(out))[1]


VMPROF_INPROC = r"""
import os, sys, time, vmprof
def work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def busy(cpu):
    end = time.process_time() + cpu
    while time.process_time() < end:
        work(2000)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
print("ready", os.getpid(), flush=True)
c0 = time.process_time()
vmprof.enable(fd, period=0.002)
busy(1.0)
vmprof.disable()
os.close(fd)
cpu = time.process_time() - c0
stats = vmprof.read_profile(sys.argv[1])
print("done samples=%d cpu=%.3f" % (len(stats.profiles), cpu), flush=True)
"""


def _inproc_run(tmp_path, name, profiled):
    prof = tmp_path / f"{name}.inproc"
    t = subprocess.Popen([sys.executable, "-c", VMPROF_INPROC, str(prof)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = t.stdout.readline()
        assert line.startswith("ready"), line + t.stderr.read()
        a = None
        if profiled:
            a = subprocess.Popen([ATTACH, "-p", str(t.pid), "-o", str(tmp_path / f"{name}.prof"),
                                  "-i", "0.001", "--stats"], stderr=subprocess.PIPE, text=True)
        assert t.wait(timeout=60) == 0, t.stderr.read()
        m = re.match(r"done samples=(\d+) cpu=([0-9.]+)", t.stdout.read().strip())
        assert m
        if a:
            assert a.wait(timeout=20) == 0
            assert read_vmprof(str(tmp_path / f"{name}.prof"))[1]
        return int(m.group(1)), float(m.group(2))
    finally:
        if t.poll() is None:
            t.kill()
            t.wait()


def test_vmprof_in_process_at_the_same_time(tmp_path):
    # vmprof's own SIGPROF sampler (2 ms) runs while we sample from
    # outside: both logs are whole and readable, the target runs to the
    # end. The in-process sample count gets the loose floor of the test
    # above (SIGPROF generation under sampling varies on this machine).
    pytest.importorskip("vmprof")
    base, base_cpu = _inproc_run(tmp_path, "base", False)
    got, cpu = _inproc_run(tmp_path, "both", True)
    assert base > 100, (base, base_cpu)
    assert got >= 0.1 * base * cpu / base_cpu, (base, base_cpu, got, cpu)
