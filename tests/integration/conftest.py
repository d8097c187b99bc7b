"""Shared helpers for the integration tests: where the built programs are,
starting targets, running vmprof-attach, and reading logs with vmprof's own
reader (PyPI) so that compatibility is checked on every test."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest

ATTACH = os.environ.get("VMPROF_ATTACH", "")
REPORT = os.environ.get("VMPROF_REPORT", "")
SHIM = os.environ.get("VMPROF_SHIM", "")
TARGETS = os.environ.get("VMPROF_TARGETS", "")
SRC = os.environ.get("VMPROF_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))


def target(name):
    return os.path.join(TARGETS, name)


class Target:
    """A target process started by a test; killed at the end if still alive."""

    def __init__(self, argv, env=None, ready="ready"):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env)
        self.pid = self.p.pid
        if ready:
            line = self.p.stdout.readline()
            assert line.startswith(ready), f"target did not start: {line!r}"

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout):
        return self.p.wait(timeout=timeout)

    def kill(self):
        if self.alive():
            self.p.kill()
            self.p.wait()


@pytest.fixture
def targets():
    started = []

    def start(argv, **kw):
        t = Target(argv, **kw)
        started.append(t)
        return t

    yield start
    # Reverse order: a tracer started after its tracee must go first, or
    # the tracee's exit is never reported to us (its tracer reaps first).
    for t in reversed(started):
        t.kill()


def attach(args, timeout=60, **kw):
    """Run vmprof-attach with args; returns the CompletedProcess."""
    return subprocess.run([ATTACH] + args, capture_output=True, text=True,
                          timeout=timeout, **kw)


def thread_states(pid):
    """State letter of every thread of pid ('t' = stopped by a tracer)."""
    states = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return states
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            states[int(tid)] = stat[stat.rindex(")") + 2]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return states


def cpu_seconds(pid):
    """utime + stime of the whole process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuRecorder:
    """Records a process's CPU time every few ms in a background thread, so a
    test can ask how much CPU it used between two wall-clock instants (the
    start and end times a vmprof log carries)."""

    def __init__(self, pid, period=0.005):
        import threading
        self.pid, self.period, self.points = pid, period, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.points.append((time.time(), cpu_seconds(self.pid)))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                return
            time.sleep(self.period)

    def stop(self):
        self._stop.set()
        self._t.join()

    def at(self, when):
        """CPU seconds at wall time `when`, interpolated."""
        pts = self.points
        assert pts and pts[0][0] <= when <= pts[-1][0], "instant outside the recording"
        for (t0, c0), (t1, c1) in zip(pts, pts[1:]):
            if t0 <= when <= t1:
                return c0 + (c1 - c0) * ((when - t0) / (t1 - t0) if t1 > t0 else 0)
        return pts[-1][1]

    def between(self, start, end):
        return self.at(end) - self.at(start)


def tracer_pid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return -1


def read_vmprof(path):
    """Read a log with vmprof's own reader; returns (stats, samples) where
    samples is a list of (full names "lang:name:line:file", outermost
    first; thread id). Unknown ids appear as hex."""
    import vmprof
    stats = vmprof.read_profile(path)
    names = stats.adr_dict
    samples = []
    for trace, _count, tid, _mem in stats.profiles:
        out = []
        for addr in trace:
            key = int(addr)
            out.append(names.get(key, hex(key)))
        samples.append((out, tid))
    return stats, samples


def func_name(entry):
    """'n:split_hot:12:file.c' or 'py:f:3:x.py' -> 'split_hot' / 'f'."""
    parts = str(entry).split(":")
    return parts[1] if len(parts) >= 4 else str(entry)


def share(samples, name):
    """Fraction of samples whose stack contains function `name`."""
    if not samples:
        return 0.0
    hit = sum(1 for names, _ in samples if any(func_name(n) == name for n in names))
    return hit / len(samples)


def leaf_counts(samples):
    return Counter(func_name(names[-1]) for names, _ in samples if names)


# ---- services (test_service, test_children) --------------------------------

def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    """(status, body) of a GET."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


WSGI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wsgi")


@contextlib.contextmanager
def running_gunicorn(workers, env):
    """gunicorn serving wsgi/app.py with `workers` sync workers on a free
    port, started with env (the shim preloaded by the caller): yields
    (url, master Popen) once it answers and all workers exist; SIGTERM at
    the end (SIGKILL if it does not stop in 15 s)."""
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        pytest.fail("gunicorn is not installed in the test venv (tests/setup installs it)")
    port = free_port()
    master = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(workers), "-b",
                               f"127.0.0.1:{port}", "--chdir", WSGI_DIR, "app:application"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 20
    while True:
        try:
            with open(f"/proc/{master.pid}/task/{master.pid}/children") as f:
                have = len(f.read().split())
            if http_get(url, timeout=2)[0] == 200 and have == workers:
                break
        except OSError:
            pass
        assert time.time() < deadline, f"gunicorn did not start answering with {workers} workers"
        assert master.poll() is None, master.stderr.read()
        time.sleep(0.1)
    try:
        yield url, master
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(timeout=15)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
