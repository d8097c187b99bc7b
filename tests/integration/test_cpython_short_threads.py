"""Short-lived threads in --mode cpu: a thread started during the run
earns its CPU time from its birth, and the CPU it used after its last
read is read from its task clock at its exit (sampler.c,
baseline_at_birth and settle_exit). Before, a thread's first read only
set a baseline and its last stretch was never read: threads burning
8 ms one at a time got about a quarter of the samples their CPU earned."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "cpython"))
from conftest import attach  # noqa: E402
import pyprof  # noqa: E402
from pyprof import DEBIAN_PY  # noqa: E402

SCRIPT = pyprof.script("short_threads.py")
INTERVAL = 0.004        # the default


def test_short_threads_earn_their_cpu(tmp_path):
    # Threads of 12 ms, three intervals: each lives through a few ticks,
    # so the sampler can stop it running at least once. Measured on a
    # noisy 2-core machine, 10 runs each: before, 46-52% of the samples
    # the threads' own CPU time earned; now 87-99%.
    out = tmp_path / "short.prof"
    r = attach(["-o", str(out), "--stats", "--", DEBIAN_PY, SCRIPT, "3", "12"],
               timeout=60)
    assert r.returncode == 0, r.stderr
    m = re.search(r"burned ([\d.]+) threads (\d+)", r.stdout)
    assert m, (r.stdout, r.stderr)
    burned, threads = float(m.group(1)), int(m.group(2))
    assert threads >= 20, (threads, r.stderr)   # the premise: many short threads
    _, samples = pyprof.read_samples(str(out))
    in_burn = sum(1 for fr, _ in samples if pyprof.contains(fr, "burn"))
    earned = burned / INTERVAL
    pyprof.log_report("short threads", f"burned={burned:.2f}s threads={threads} "
                      f"earned={earned:.0f} in_burn={in_burn} of {len(samples)}; "
                      f"{r.stderr.splitlines()[-1]}")
    assert in_burn >= 0.7 * earned, (in_burn, earned, threads, r.stderr)
    assert in_burn <= 1.15 * earned + 5, (in_burn, earned, threads, r.stderr)
