"""benchlib.py - running one measured process for the benchmark, and the
small statistics it needs.

Every run is a child of this process, in its own session (so a stuck run
is killed as a group), with a time limit. A run returns what the table
needs: the target's own "bench-time", the attacher's --stats, its
resource usage from wait4 (its own, not its children's: an attacher with
-p has no children; a spawning tool's wait4 figures include the target,
so those are never used for CPU or memory), and the tail of stderr when
something failed.
"""
import os
import re
import select
import signal
import statistics
import subprocess
import time

SIGINT_LIMIT = 60               # seconds an attacher may take to exit on SIGINT
STATS_RE = re.compile(r"(\w+)=([0-9.]+)")


class RunError(Exception):
    pass


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def parse_stats(text, marker="stats:"):
    """The key=value pairs of the first line holding marker (by default
    vmprof-attach's --stats line), as floats."""
    for line in text.splitlines():
        if marker in line:
            return {k: float(v) for k, v in STATS_RE.findall(line)}
    return {}


def parse_bench(text):
    """The workload's own figures: {"time": wall seconds of the work,
    "runq": seconds of it spent waiting for a CPU (None if unknown)}, or
    None when the work did not finish."""
    got = {}
    for line in text.splitlines():
        for key in ("time", "runq"):
            if line.startswith(f"bench-{key} "):
                got[key] = float(line.split()[1])
    if "time" not in got:
        return None
    got.setdefault("runq", None)
    return got


def task_cpu_ns(pid):
    """CPU time of every thread of pid, in ns (schedstat), or None."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def start(argv, env=None, stdout=subprocess.PIPE):
    return subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=env,
                            text=True, start_new_session=True)


def wait4(p, timeout):
    """Reap p; returns (status, rusage). Kills its group on timeout."""
    end = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return status, ru
        if time.monotonic() > end:
            _kill_group(p)
            os.wait4(p.pid, 0)
            raise RunError(f"timed out after {timeout:.0f} s: {' '.join(p.args)}")
        time.sleep(0.01)


class Lines:
    """Lines of a child's stdout, read unbuffered so that select() never
    misses a line already sitting in a buffer."""

    def __init__(self, f):
        self.fd = f.fileno()
        self.buf = b""
        self.seen = []
        self.eof = False

    def _next(self, end):
        while b"\n" not in self.buf:
            if self.eof:
                break
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
        elif self.buf:
            line, self.buf = self.buf, b""
        else:
            return ""           # end of file
        text = line.decode(errors="replace")
        self.seen.append(text)
        return text

    def until(self, want, timeout):
        """Read until a line starting with want; returns it."""
        end = time.monotonic() + timeout
        while True:
            line = self._next(end)
            if line is None:
                raise RunError(f"no '{want}' line within {timeout:.0f} s (got {self.seen[-3:]})")
            if line == "" and self.eof:
                raise RunError(f"target ended before '{want}' (got {self.seen[-3:]})")
            if line.startswith(want):
                return line

    def drain(self, timeout):
        end = time.monotonic() + timeout
        while not self.eof and time.monotonic() < end:
            if self._next(end) is None:
                break


def run(argv, env=None, timeout=600):
    """Run argv to completion. Returns a dict: out, err, rc, ru, wall."""
    t0 = time.monotonic()
    p = start(argv, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        p.communicate()
        raise RunError(f"timed out after {timeout:.0f} s: {' '.join(argv)}")
    # communicate() reaped it already; rusage of a reaped child is gone,
    # so spawning runs report no rusage (it would include the target).
    return {"out": out, "err": err, "rc": p.returncode, "wall": time.monotonic() - t0}


def tail(text, n=4):
    return " | ".join(text.strip().splitlines()[-n:])


class Attached:
    """A target started here and a vmprof-attach -p on it.

    The target (workload.py --wait-tracer) prints "ready PID", waits until
    all its threads are traced, then prints "go" and starts its clock.
    The attacher's stderr goes to a file (no pipe to fill while it runs).
    """

    def __init__(self, target_argv, target_env, attach_argv, errfile, timeout=600):
        self.timeout = timeout
        self.errfile = errfile
        self.target = subprocess.Popen(target_argv, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, env=target_env,
                                       start_new_session=True)
        self.lines = Lines(self.target.stdout)
        self.attacher = None
        try:
            self.lines.until("ready", 120)
            with open(errfile, "w") as ef:
                self.attacher = subprocess.Popen(attach_argv + ["-p", str(self.target.pid)],
                                                 stdout=subprocess.DEVNULL, stderr=ef,
                                                 start_new_session=True)
            self.lines.until("go", 120)
        except Exception:
            self.kill()
            raise
        self.go = time.monotonic()
        self.cpu_go = task_cpu_ns(self.attacher.pid)

    def wait_target_time(self):
        """Wait for the target's figures (parse_bench); adds "cpu_share",
        the attacher's CPU over the timed work in cores."""
        line = self.lines.until("bench-time", self.timeout)
        wall = time.monotonic() - self.go
        cpu = task_cpu_ns(self.attacher.pid)
        got = {"time": float(line.split()[1]), "runq": None, "cpu_share": None}
        if cpu is not None and self.cpu_go is not None and wall > 0:
            got["cpu_share"] = (cpu - self.cpu_go) / 1e9 / wall
        try:
            got["runq"] = float(self.lines.until("bench-runq", 10).split()[1])
        except RunError:
            pass
        return got

    def finish(self, how="target-exits", poll_rss=None):
        """End both; how the attacher ends:
          target-exits  the target finishes its work, the attacher follows;
          sigint        SIGINT to the attacher now, then the target is stopped;
          duration      the attacher stops by itself (-d), then the target
                        is stopped; poll_rss(pid) is called every second
                        meanwhile.
        Returns a dict: rc, ru (the attacher's own rusage), err (its
        stderr), end_s (seconds from SIGINT to its exit, for sigint)."""
        end_s = None
        status = ru = None
        if how == "sigint":
            t0 = time.monotonic()
            self.attacher.send_signal(signal.SIGINT)
            try:
                status, ru = wait4(self.attacher, SIGINT_LIMIT)
            except RunError:
                self.kill()
                raise RunError(f"vmprof-attach still running {SIGINT_LIMIT} s after SIGINT "
                               "(killed)") from None
            end_s = time.monotonic() - t0
        elif how == "duration":
            end = time.monotonic() + self.timeout
            while True:
                pid, st, r = os.wait4(self.attacher.pid, os.WNOHANG)
                if pid == self.attacher.pid:
                    self.attacher.returncode = os.waitstatus_to_exitcode(st)
                    status, ru = st, r
                    break
                if time.monotonic() > end:
                    self.kill()
                    raise RunError("the attacher did not stop after its duration")
                if poll_rss:
                    poll_rss(self.attacher.pid)
                time.sleep(1.0)
        if how != "target-exits" and self.target.poll() is None:
            self.target.send_signal(signal.SIGTERM)
        self.lines.drain(60)
        try:
            self.target.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _kill_group(self.target)
            self.target.wait()
        if status is None:
            status, ru = wait4(self.attacher, self.timeout)
        with open(self.errfile) as ef:
            err = ef.read()
        return {"rc": os.waitstatus_to_exitcode(status), "ru": ru, "err": err,
                "end_s": end_s}

    def kill(self):
        for p in (self.attacher, self.target):
            if p is not None and p.returncode is None:
                _kill_group(p)
                try:
                    p.wait(timeout=10)
                except (subprocess.TimeoutExpired, ChildProcessError):
                    pass
