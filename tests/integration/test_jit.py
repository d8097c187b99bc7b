"""JIT code (tests/targets/jit_target.c): frames in anonymous executable
memory are named from the target's perf map, every sample in one JIT
function uses one word of the log (the start of its perf map entry), and
the unwind goes through the JIT frames (frame pointers, no unwind tables)
down to their C caller. Spawned and -p; names resolved after the target
has exited; a target in its own PID namespace (the perf map is named by
the PID it sees) and in its own mount namespace (the map is only in its
/tmp)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import attach, func_name, read_vmprof, target

HOT = 70
JIT = ("jit_hot", "jit_cold")


def regions(text):
    """{name: (start, end)} from the target's "region START-END NAME" lines."""
    return {m.group(3): (int(m.group(1), 16), int(m.group(2), 16))
            for m in re.finditer(r"^region ([0-9a-f]+)-([0-9a-f]+) (\w+)$", text, re.M)}


def stats_of(stderr):
    line = [l for l in stderr.splitlines() if "stats:" in l][-1]
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def check_log(path, regs, hot=HOT):
    stats, samples = read_vmprof(path)
    jit = [names for names, _ in samples if any(func_name(n) in JIT for n in names)]
    assert len(jit) > 50 and len(jit) > 0.9 * len(samples), (len(jit), len(samples))

    # One word per JIT function: the start of its perf map entry (| 1, a
    # native frame), named "n:NAME:0:-" from the perf map.
    words = {}
    for trace, _count, _tid, _mem in stats.profiles:
        for a in trace:
            name = stats.adr_dict.get(int(a))
            if name and func_name(name) in JIT:
                words.setdefault(func_name(name), set()).add(int(a))
    for fn in JIT:
        assert words.get(fn) == {regs[fn][0] | 1}, (fn, words, regs)
        assert stats.adr_dict[regs[fn][0] | 1] == f"n:{fn}:0:-"

    # The unwind went through the JIT frame: its C caller is below it and
    # main below that; above it only the C callback it calls, if anything.
    for names in jit:
        fns = [func_name(n) for n in names]             # outermost first
        k = next(i for i, f in enumerate(fns) if f in JIT)
        assert k >= 2 and fns[k - 1] == "jit_driver" and "main" in fns[:k - 1], fns
        assert fns[k + 1:k + 2] in ([], ["jit_callback"]), fns
        assert not any(f in JIT for f in fns[k + 1:]), fns

    # Samples inside the generated code itself, and in C code it called.
    inside = sum(1 for names in jit if func_name(names[-1]) in JIT)
    called = sum(1 for names in jit if "jit_callback" in map(func_name, names))
    assert inside > 0 and called > 0, (inside, called)

    # The CPU split the target made between its two JIT functions.
    share = sum(1 for names in jit if "jit_hot" in map(func_name, names)) / len(jit)
    assert abs(share - hot / 100) < 0.08, share
    return stats, samples


def test_spawned_jit_named_after_exit(tmp_path):
    out = tmp_path / "jit.prof"
    r = attach(["-o", str(out), "--stats", "--", target("jit_target"), "3", str(HOT)])
    pid = int(re.search(r"^ready (\d+)$", r.stdout, re.M).group(1))
    try:
        assert r.returncode == 0, r.stderr
        # symbols are resolved once the target is gone: the perf map is
        # still found through the target's root
        assert "until it exited" in r.stderr
        check_log(str(out), regions(r.stdout))
        assert stats_of(r.stderr)["fp_steps"] > 0
    finally:
        os.unlink(f"/tmp/perf-{pid}.map")


def test_attached_jit_and_report(tmp_path, targets):
    t = targets([target("jit_target"), "30", str(HOT)])
    text = t.p.stdout.readline() + t.p.stdout.readline()
    try:
        out = tmp_path / "jit.prof"
        r = attach(["-p", str(t.pid), "-o", str(out), "-d", "3", "--stats"])
        assert r.returncode == 0, r.stderr
        assert t.alive()
        check_log(str(out), regions(text))
        # our own reader agrees: both JIT functions, with the split
        rep = subprocess.run([os.environ["VMPROF_REPORT"], str(out), "--top", "10"],
                             capture_output=True, text=True, timeout=60)
        assert rep.returncode == 0, rep.stderr
        tops = {m.group(3): float(m.group(2))
                for m in re.finditer(r"^\s*([\d.]+)%\s+([\d.]+)%\s+(\S+)", rep.stdout, re.M)}
        assert abs(tops["jit_hot"] / (tops["jit_hot"] + tops["jit_cold"]) - HOT / 100) < 0.08
    finally:
        t.kill()
        os.unlink(f"/tmp/perf-{t.pid}.map")


def unshare_or_skip(args):
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare"] + args + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make namespaces here: {probe.stderr.strip()}")


def inner_pid(t):
    """The host PID of the (first) child of t (a Target or a PID)."""
    pid = t if isinstance(t, int) else t.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return int(f.read().split()[0])


# PID 1 of the namespace: starts the target and ignores SIGCHLD, so the
# target is reaped the moment the attacher has seen its exit and its /proc
# entry is gone when symbols are resolved.
REAPER = """
import os, signal, sys, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
time.sleep(60)
"""


def test_jit_in_pid_namespace_named_after_exit(tmp_path, targets):
    # The target names its map by the PID it sees; names are resolved when
    # it is gone, so the attacher must have learnt that PID while it lived.
    unshare_or_skip(["--pid", "--fork"])
    t = targets(["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", REAPER,
                 target("jit_target"), "3", str(HOT)], ready=None)
    nspid = None
    try:
        nspid = int(re.match(r"ready (\d+)$", t.p.stdout.readline()).group(1))
        text = t.p.stdout.readline() + t.p.stdout.readline()
        init = inner_pid(t)
        pid = inner_pid(init)
        assert pid != nspid
        out = tmp_path / "jit.prof"
        r = attach(["-p", str(pid), "-o", str(out)])
        assert r.returncode == 0, r.stderr
        assert "until it exited" in r.stderr and not os.path.exists(f"/proc/{pid}")
        check_log(str(out), regions(text))
    finally:
        t.kill()
        if nspid and os.path.exists(f"/tmp/perf-{nspid}.map"):
            os.unlink(f"/tmp/perf-{nspid}.map")


def test_jit_in_container_namespaces(tmp_path, targets):
    # Own PID and mount namespaces, a private /tmp: the perf map exists
    # only as /proc/PID/root/tmp/perf-1.map. The binary is opened before
    # /tmp is covered (the build may live under /tmp).
    unshare_or_skip(["--pid", "--fork", "--mount", "--propagation", "private"])
    script = ('exec 3< "$0" && mount -t tmpfs vmprof-test /tmp && '
              'exec /proc/self/fd/3 30 %d' % HOT)
    t = targets(["unshare", "--pid", "--fork", "--kill-child", "--mount",
                 "--propagation", "private", "sh", "-c", script, target("jit_target")],
                ready="ready 1")
    try:
        text = t.p.stdout.readline() + t.p.stdout.readline()
        pid = inner_pid(t)
        assert os.path.exists(f"/proc/{pid}/root/tmp/perf-1.map")
        out = tmp_path / "jit.prof"
        r = attach(["-p", str(pid), "-o", str(out), "-d", "3"])
        assert r.returncode == 0, r.stderr
        check_log(str(out), regions(text))
    finally:
        t.kill()
