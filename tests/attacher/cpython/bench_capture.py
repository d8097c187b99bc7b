#!/usr/bin/env python3
"""bench_capture.py - cost of vm_cpython's capture() on live interpreters.

A benchmark, not a test: it prints medians and checks nothing but that the
tools ran. For each interpreter and stack shape it starts stacks.py once,
then runs each tool given RUNS times, alternating the tools, and prints
the median over runs of each tool's per-run figures.

  bench_capture.py [--probe LABEL=PATH[,ARG...]]...
                   [--attacher LABEL=PATH[,ARG...]]... [--shim PATH]
                   [--interp system|trixie|forky]... [--mode deep|mixed|churn]...
                   [--runs 5] [--count 1000] [--interval-ms 1] [--seconds 5]
                   [--lines] [--stack-copy KB]

--probe: tests/attacher/cpython_probe --bench (default $CPYTHON_PROBE):
process_vm_readv calls per capture, capture time, and the stop the probe
saw (interrupt .. continue, no unwinding). --stack-copy lends the decoder
a copy of the stack taken in the stop, as the attacher's snapshot does
(outside the capture time, inside the stop).
--attacher: vmprof-attach --stats -p PID for --seconds (the target runs
with the shim preloaded: --shim, default next to the attacher): the whole
stop time, interrupt to continue, p50 and p99.

Modes (stacks.py): deep = 33 Python frames of 8 functions in one eval
call; mixed = 31 eval calls with map or sorted (C) between each, like
tests/bench/deep.py; churn = a stack that changes all the time
(recursion, callbacks from C, native work), like tests/bench/workload.py.
The trixie (3.13) and forky (3.14) roots come from tests/roots/make-root's
cache.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STACKS = os.path.join(HERE, "stacks.py")
ROOTS = os.environ.get("VMPROF_ROOTS", "/var/cache/vmprof-attach/roots")
PROBE_FIELDS = ["reads_p50", "reads_p99", "kb_p50", "us_p50", "us_p99",
                "stop_us_p50", "stop_us_p99"]
ATTACH_FIELDS = ["stop_us_p50", "stop_us_p99", "samples", "vm_capture_failures"]


class Target:
    def __init__(self, interp, mode, shim):
        env = []
        if interp == "system":
            self.work = tempfile.mkdtemp(prefix="cpy-bench-")
            inner = self.work
            argv = ["/usr/bin/python3.11"]
            if shim:
                argv = ["env", "LD_PRELOAD=" + shim] + argv
        else:
            root = os.path.join(ROOTS, interp)
            if not os.path.isdir(root):
                sys.exit("no root %s: run tests/roots/make-root %s" % (root, interp))
            self.work = tempfile.mkdtemp(prefix="cpy-bench-", dir=root + "/tmp")
            inner = "/tmp/" + os.path.basename(self.work)
            if shim:
                shutil.copy(shim, self.work + "/libvmprof-shim.so")
                env = ["LD_PRELOAD=" + inner + "/libvmprof-shim.so"]
            argv = ["chroot", root, "env", "-i", "PATH=/usr/bin:/bin"] + env + ["python3"]
        shutil.copy(STACKS, self.work)
        argv += [inner + "/stacks.py", mode, inner + "/info"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        info = self.work + "/info"
        deadline = time.time() + 30
        while not os.path.exists(info):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                sys.exit("target %s %s did not start" % (interp, mode))
            time.sleep(0.02)
        with open(info) as f:
            self.pid, self.runtime, self.version = f.read().split()
        time.sleep(0.2)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def run_probe(tool, t, a):
    path, *extra = tool.split(",")
    argv = [path, t.pid, t.runtime, t.version, "--bench", "--count", str(a.count),
            "--interval-ms", str(a.interval_ms)] + (["--lines"] if a.lines else []) + \
        (["--stack-copy", str(a.stack_copy)] if a.stack_copy else []) + extra
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit("probe %s failed: %s" % (path, r.stderr.strip()))
    for line in r.stdout.splitlines():
        if line.startswith("#bench "):
            return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    sys.exit("probe %s printed no #bench line" % path)


def run_attacher(tool, t, a):
    path, *extra = tool.split(",")
    with tempfile.TemporaryDirectory(prefix="cpy-bench-out-") as d:
        argv = [path, "--stats", "-q", "-p", t.pid, "-d", str(a.seconds),
                "-o", d + "/x.prof"] + (["--lines"] if a.lines else []) + extra
        r = subprocess.run(argv, capture_output=True, text=True, timeout=a.seconds + 120)
    if r.returncode != 0:
        sys.exit("attacher %s failed: %s" % (path, r.stderr.strip()))
    for line in r.stderr.splitlines():
        if "stats:" in line:
            kv = dict(x.split("=", 1) for x in line.split("stats:", 1)[1].split() if "=" in x)
            return {k: float(kv.get(k, "nan")) for k in ATTACH_FIELDS}
    sys.exit("attacher %s printed no stats" % path)


def tools(specs):
    return [s.split("=", 1) if "=" in s else [os.path.basename(s), s] for s in specs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", action="append", default=[])
    ap.add_argument("--attacher", action="append", default=[])
    ap.add_argument("--shim", default="")
    ap.add_argument("--interp", action="append", default=[])
    ap.add_argument("--mode", action="append", default=[])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--interval-ms", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--lines", action="store_true")
    ap.add_argument("--stack-copy", type=int, default=0)
    a = ap.parse_args()
    probes, attachers = tools(a.probe), tools(a.attacher)
    if not probes and not attachers:
        probes = [["probe", os.environ.get("CPYTHON_PROBE", "cpython_probe")]]
    shim = a.shim
    if attachers and not shim:
        shim = os.path.join(os.path.dirname(attachers[0][1].split(",")[0]), "..",
                            "target-shim", "libvmprof-shim.so")
    runs = [(label, tool, run_probe, PROBE_FIELDS) for label, tool in probes] + \
           [(label, tool, run_attacher, ATTACH_FIELDS) for label, tool in attachers]
    print("uptime:", open("/proc/loadavg").read().strip(), flush=True)
    for interp in a.interp or ["system", "trixie", "forky"]:
        for mode in a.mode or ["deep", "mixed"]:
            t = Target(interp, mode, shim if attachers else "")
            try:
                res = {label: [] for label, _, _, _ in runs}
                for _ in range(a.runs):
                    for label, tool, fn, _ in runs:
                        res[label].append(fn(tool, t, a))
            finally:
                t.close()
            for label, _, _, fields in runs:
                med = {k: statistics.median(r[k] for r in res[label]) for k in fields}
                print("%-7s %-6s %-10s %s" % (interp, mode, label, " ".join(
                    "%s=%.1f" % (k, med[k]) for k in fields)), flush=True)


if __name__ == "__main__":
    main()
