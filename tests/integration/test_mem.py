"""--mem (tests/targets/mem_target.c): every sample carries the target's
resident set size, read by vmprof's reader (mem_in_kb) as the values the
target itself saw in /proc/self/status, rising step by step; the growth
goes to the function that grows the heap, in vmprof-report --mem and in
an independent count from vmprof's reader; the overview draws the curve."""
import os
import re
import subprocess

from conftest import attach, func_name, read_vmprof, target

STEPS, STEP_MIB = 5, 8
TOL_KB = 1024           # statm and VmRSS are the same counter, read apart in time


def reported(text):
    """[(step, VmRSS KiB)] from the target's "step K rss=KIB" lines."""
    return [(int(k), int(v)) for k, v in re.findall(r"^step (\d+) rss=(\d+)$", text, re.M)]


def report(*args):
    r = subprocess.run([os.environ["VMPROF_REPORT"]] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def check_log(path, steps):
    assert [k for k, _ in steps] == list(range(STEPS + 1)), steps
    levels = [kb for _, kb in steps]
    stats, _ = read_vmprof(path)
    prof = [([func_name(stats.adr_dict.get(int(a), hex(int(a)))) for a in trace], mem)
            for trace, _count, _tid, mem in stats.profiles]     # trace outermost first
    assert len(prof) > 100
    assert all(mem > 0 for _, mem in prof)

    # While the target only computes, the log holds the RSS it reported.
    steady = [mem for fns, mem in prof if "steady_work" in fns]
    for mem in steady:
        assert min(abs(mem - kb) for kb in levels) <= TOL_KB, (mem, levels)
    for kb in levels:
        assert any(abs(mem - kb) <= TOL_KB for mem in steady), (kb, sorted(set(steady)))
    # It never falls while the target grows (it frees all only at the end).
    working = [mem for fns, mem in prof if "steady_work" in fns or "grow_step" in fns]
    assert all(b >= a - 256 for a, b in zip(working, working[1:]))
    assert abs(max(working) - steps[-1][1]) <= TOL_KB

    # The growth between consecutive samples goes to the innermost function
    # of the later one: grow_step, which touches the pages itself. (Not all
    # of it: when the attacher is kept off the CPU for a whole step, the
    # next sample finds the target in steady_work.)
    grown = {}
    for (_, before), (fns, now) in zip(prof, prof[1:]):
        if now > before:
            grown[fns[-1]] = grown.get(fns[-1], 0) + now - before
    total = sum(grown.values())
    assert total >= 0.9 * (levels[-1] - levels[0]), (total, levels)
    assert grown.get("grow_step", 0) >= 0.75 * total, grown
    return grown, total


def check_report(path):
    text = report(path, "--mem")
    rows = re.findall(r"^\s+([\d.]+ [KMG]iB)\s+([\d.]+)%\s+([\d.]+ [KMG]iB)\s+(\S+)", text, re.M)
    assert rows and rows[0][3] == "grow_step", text
    assert float(rows[0][1]) >= 75.0, text
    # the overview draws the curve: from the lowest block to the highest
    over = report(path)
    assert "memory (RSS by sample, log order)" in over
    curve = [l for l in over.splitlines() if "\u2581" in l]
    assert len(curve) == 1 and "\u2588" in curve[0], over
    assert "memory" in [l for l in over.splitlines() if l.strip().startswith("log:")][0]


def test_spawned_mem_steps(tmp_path):
    out = tmp_path / "mem.prof"
    r = attach(["--mem", "-o", str(out), "--", target("mem_target"), str(STEPS), str(STEP_MIB)])
    assert r.returncode == 0, r.stderr
    check_log(str(out), reported(r.stdout))
    check_report(str(out))


def test_attached_mem_steps(tmp_path, targets):
    t = targets([target("mem_target"), str(STEPS), str(STEP_MIB), "0.5"])
    out = tmp_path / "mem.prof"
    r = attach(["-p", str(t.pid), "--mem", "-o", str(out)])
    assert r.returncode == 0, r.stderr
    t.wait(30)
    check_log(str(out), reported(t.p.stdout.read()))
    check_report(str(out))


def test_no_memory_without_flag(tmp_path):
    out = tmp_path / "plain.prof"
    r = attach(["-o", str(out), "--", target("mem_target"), "1", "1", "0.1"])
    assert r.returncode == 0, r.stderr
    stats, _ = read_vmprof(str(out))
    assert all(mem == 0 for _t, _c, _tid, mem in stats.profiles)
    bad = subprocess.run([os.environ["VMPROF_REPORT"], str(out), "--mem"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "record with vmprof-attach --mem" in bad.stderr
    assert "memory (RSS" not in report(out)
