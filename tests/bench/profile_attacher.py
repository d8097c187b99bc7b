"""profile_attacher.py - where the attacher's own time goes, for the
closing note of a missed target: one benchmark scenario with perf record
on the vmprof-attach process (not on the target), then perf's flat
profile of it (kernel and user symbols) and the attacher's --stats.

    bash tests/bench/run --profile SCENARIO [--seconds S] [--call-graph]

Scenarios (each as in the benchmark's table):
  idle1000   1 busy + 1000 idle threads, 250 Hz        (section 3)
  deep       30-deep mixed Python/C stack, 250 Hz      (section 2)
  rate10k    1 busy thread, 10 kHz                     (section 4)
  mixed1k    1 busy thread, mixed workload, 1 kHz      (section 1)
Needs perf (Debian: linux-perf) and perf_event_paranoid <= 2 (or root).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as bl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SYS_PY = "/usr/bin/python3.11"

SCENARIOS = {
    "idle1000": (["workload.py", "--forever", "--idle", "1000"], 0.004),
    "deep": (["deep.py", "--seconds", "600"], 0.004),
    "rate10k": (["workload.py", "--forever"], 0.0001),
    "mixed1k": (["workload.py", "--forever"], 0.001),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--call-graph", action="store_true",
                    help="record DWARF call graphs (bigger, slower)")
    a = ap.parse_args()
    perf = shutil.which("perf")
    if not perf:
        sys.exit("profile: perf not found (Debian: apt-get install linux-perf)")
    attach = os.path.join(a.build, "attacher", "vmprof-attach")
    shim = os.path.join(a.build, "target-shim", "libvmprof-shim.so")
    args, interval = SCENARIOS[a.scenario]
    tmp = tempfile.mkdtemp(prefix="vmprof-profile-")
    out, data = os.path.join(tmp, "x.prof"), os.path.join(tmp, "perf.data")
    env = dict(os.environ, LD_PRELOAD=shim, PYTHONDONTWRITEBYTECODE="1")
    target = [SYS_PY, os.path.join(HERE, args[0]), *args[1:], "--wait-tracer"]
    att = bl.Attached(target, env, [attach, "--stats", "-q", "-i", str(interval), "-o", out,
                                    "-d", str(a.seconds + 2)], out + ".err",
                      timeout=a.seconds + 120)
    rec = [perf, "record", "-q", "-F", "997", "-o", data, "-p", str(att.attacher.pid)]
    if a.call_graph:
        rec += ["--call-graph", "dwarf,16384"]
    try:
        subprocess.run(rec + ["--", "sleep", str(a.seconds)], check=True,
                       stdout=subprocess.DEVNULL)
        f = att.finish("duration")
    except Exception:
        att.kill()
        raise
    print(f"## vmprof-attach profile: {a.scenario}, {a.seconds:g} s, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f}")
    print(bl.tail(f["err"], 1))
    report = [perf, "report", "-i", data, "--stdio", "--percent-limit", "1",
              "--sort", "dso,sym"]
    report += ["--children"] if a.call_graph else ["--no-children"]
    subprocess.run(report, check=False)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if f["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
