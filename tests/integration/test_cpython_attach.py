"""Ways to get Python frames: `vmprof-attach -- python3 app.py` preloads
the shim itself; -p on a process without the shim gives native frames only
and says once how to get Python frames; -p on a process started with the
shim preloaded gives Python frames. And fork: a child has its own registry
and its own profile."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "cpython"))
from conftest import attach  # noqa: E402
import pyprof  # noqa: E402
from pyprof import DEBIAN_PY  # noqa: E402

APP = pyprof.script("app.py")
FORKER = pyprof.script("forker.py")


def clean_env():
    """No shim anywhere in the environment: vmprof-attach must find its
    own (next to the executable, as installed)."""
    env = dict(os.environ)
    env.pop("VMPROF_SHIM", None)
    env.pop("LD_PRELOAD", None)
    return env


def shim_notices(stderr):
    """vmprof-attach's own lines about the shim, leaving out the summary
    lines (they quote the command and the output path, which may contain
    the word) and the top-functions table (a sample may fall in the shim's
    own code: code_dealloc_counted (shim.c))."""
    return [l for l in stderr.splitlines() if l.startswith("vmprof-attach: ") and "shim" in l
            and " samples in " not in l and not l.startswith("vmprof-attach: wrote ")]


def all_names(stats):
    return set(stats.adr_dict.values())


# A wrapper that takes its time before it execs the interpreter (pyenv's
# python3 shim, env, poetry run, a shell script): the log still names the
# VM it ends up running.
WRAPPED = ["sh", "-c", f'sleep 0.5; exec {DEBIAN_PY} "$0" "$@"']


@pytest.mark.parametrize("python", [[DEBIAN_PY], ["python3"], WRAPPED],
                         ids=["python3.11", "python3-on-path", "slow-wrapper"])
def test_spawn_preloads_the_shim(tmp_path, python):
    if python == ["python3"] and not shutil.which("python3"):
        pytest.skip("no python3 on PATH")
    out = tmp_path / "spawn.prof"
    # `python3` on PATH may be a wrapper (pyenv) that execs the interpreter
    r = attach(["-o", str(out), "--"] + python + [APP, "1.5"], env=clean_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "done" in r.stdout, r.stdout
    assert not shim_notices(r.stderr), r.stderr
    stats, samples = pyprof.read_samples(str(out))
    in_work = [s for s in samples if pyprof.contains(s[0], "work")]
    assert len(in_work) > 0.5 * len(samples), (len(in_work), len(samples))
    for frames, _ in in_work:
        assert pyprof.py_names(frames)[-3:] == ["<module>", "main", "work"], frames
    mode, interp = pyprof.header(str(out))
    assert interp == "cpython", interp


def test_pid_without_shim_gives_native_frames_and_one_notice(tmp_path, targets):
    t = targets([DEBIAN_PY, APP, "5"], env=clean_env())
    out = tmp_path / "noshim.prof"
    r = attach(["-p", str(t.pid), "-d", "1.5", "-o", str(out)])
    assert r.returncode == 0, r.stderr
    notices = shim_notices(r.stderr)
    assert len(notices) == 1, r.stderr
    stats, samples = pyprof.read_samples(str(out))
    assert len(samples) > 40, len(samples)
    names = all_names(stats)
    assert not any(n.startswith("py:") for n in names), sorted(names)[:10]
    # the interpreter is sampled natively: its eval loop is there
    assert any(pyprof.split_name(n)[1] == "_PyEval_EvalFrameDefault" for n in names)
    assert t.alive()


def test_pid_with_preloaded_shim_gives_python_frames(tmp_path, targets):
    t = targets([DEBIAN_PY, APP, "5"], env=pyprof.shim_env())
    out = tmp_path / "shim.prof"
    r = attach(["-p", str(t.pid), "-d", "1.5", "-o", str(out)])
    assert r.returncode == 0, r.stderr
    assert not shim_notices(r.stderr), r.stderr
    mode, interp = pyprof.header(str(out))
    assert interp == "cpython"
    stats, samples = pyprof.read_samples(str(out))
    assert len(samples) > 40, len(samples)
    in_work = [s for s in samples if pyprof.contains(s[0], "work")]
    assert len(in_work) > 0.9 * len(samples), (len(in_work), len(samples))
    for frames, _ in in_work:
        assert pyprof.py_names(frames) == ["<module>", "main", "work"], frames


def registry_inodes(pid):
    """Inodes of the shim's registry mappings in pid."""
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[4] for line in f if "vmprof-registry" in line}


def test_forked_workers_have_their_own_registry_and_profile(tmp_path, targets):
    t = targets([DEBIAN_PY, FORKER, "10"], env=pyprof.shim_env(), ready=None)
    line = t.p.stdout.readline().split()
    assert line and line[0] == "ready", line
    parent, child1, child2 = (int(x) for x in line[1:4])
    try:
        regs = [registry_inodes(p) for p in (parent, child1, child2)]
        assert all(len(r) == 1 for r in regs), regs
        assert len(set.union(*regs)) == 3, regs      # three different memfds
        logs = {}
        for who, pid in (("parent", parent), ("child1", child1)):
            out = tmp_path / f"{who}.prof"
            r = attach(["-p", str(pid), "-d", "2", "-o", str(out)])
            assert r.returncode == 0, r.stderr
            assert not shim_notices(r.stderr), r.stderr
            logs[who] = pyprof.read_samples(str(out))
    finally:
        for pid in (child1, child2):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    own = {"parent": "parent_work", "child1": "child_one"}
    others = {"parent_work", "child_one", "child_two"}
    for who, (stats, samples) in logs.items():
        assert len(samples) > 30, (who, len(samples))
        names = {pyprof.split_name(n)[1] for n in all_names(stats)}
        assert own[who] in names, (who, sorted(names))
        assert not (others - {own[who]}) & names, (who, sorted(names))
        busy = [fr for fr, _ in samples if pyprof.contains(fr, own[who])]
        assert len(busy) > 0.9 * len(samples), (who, len(busy), len(samples))
        for fr in busy:
            py = pyprof.py_names(fr)
            want = ["<module>", "main", "parent_work"] if who == "parent" else \
                ["<module>", "main", "start_child", "child_one"]
            assert py[:len(want)] == want, (who, py)


def test_stacks_deeper_than_kept_are_said_cut(tmp_path):
    # 1500 Python frames: each sample keeps the innermost 1024 (vmprof's
    # own depth limit is of the same order); the cut used to be silent.
    # It is counted (vm_truncated) and said in one warning line; a stack
    # that fits is whole, down from main.
    for depth, cut in ((1500, True), (300, False)):
        out = tmp_path / f"deep{depth}.prof"
        r = attach(["--stats", "-o", str(out), "--", DEBIAN_PY,
                    pyprof.script("deep_recursion.py"), "1.5", str(depth)], timeout=60)
        assert r.returncode == 0, r.stderr
        kv = pyprof.stats_kv(r.stderr)
        _, samples = pyprof.read_samples(str(out))
        deep = [pyprof.py_names(fr) for fr, _ in samples
                if pyprof.py_names(fr).count("rec") >= min(depth, 1000)]
        assert len(deep) > 50, (len(deep), len(samples))
        warned = [ln for ln in r.stderr.splitlines() if "more than 1024 cpython frames" in ln]
        if cut:
            assert int(kv["vm_truncated"]) >= 50, kv     # stops, not samples
            assert len(warned) == 1, r.stderr
            assert all(len(p) == 1024 and p[0] == "rec" for p in deep), \
                {len(p) for p in deep}
        else:
            assert int(kv["vm_truncated"]) == 0 and not warned, r.stderr
            assert all(p[:2] == ["<module>", "main"] for p in deep), deep[0][:3]
