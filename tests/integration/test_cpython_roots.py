"""CPython 3.13 (Debian trixie) and 3.14 (Debian forky) in debootstrap
roots (tests/roots/make-root builds them once and caches them): the target
runs in the root with the shim preloaded, under chroot and also in its own
PID namespace with its own /proc (the container case); vmprof-attach runs
outside and attaches with -p. Checked: Python names and nesting a -> b -> c,
and sorted() (C) calling a Python key function, sample by sample. Where
the kernel cannot confine lookups to the target's root (no openat2), the
attacher says so for a target in another root.

These tests must run in CI: a missing root is built here (about 40 s each,
network and root needed); failing to build it fails the test."""
import os
import shutil
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "cpython"))
from conftest import SHIM, SRC, attach, target  # noqa: E402
import pyprof  # noqa: E402
from pyprof import names  # noqa: E402

SUITES = {"trixie": (3, 13), "forky": (3, 14)}
SCRIPT = pyprof.script("roots_target.py")


@pytest.fixture(scope="module", params=sorted(SUITES))
def root(request):
    """(suite, root path, in-root directory holding the shim and script)."""
    suite = request.param
    if os.geteuid() != 0:
        pytest.fail("the Debian roots need root (debootstrap, chroot): run the tests as root")
    r = subprocess.run(["bash", os.path.join(SRC, "tests/roots/make-root"), suite],
                       capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        pytest.fail(f"make-root {suite} failed: {r.stderr.strip()[-2000:]}")
    path = r.stdout.strip()
    assert os.path.isfile(os.path.join(path, "usr/bin/python3")), path
    sub = f"/tmp/vmprof-itest-{uuid.uuid4().hex[:8]}"
    host_dir = path + sub
    os.makedirs(host_dir)
    shutil.copy(SHIM, os.path.join(host_dir, "libvmprof-shim.so"))
    shutil.copy(SCRIPT, os.path.join(host_dir, "roots_target.py"))
    yield suite, path, sub
    shutil.rmtree(host_dir, ignore_errors=True)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def start_in_root(targets, root, pidns):
    suite, path, sub = root
    inner = ["chroot", path, "env", "-i", "PATH=/usr/bin:/bin",
             f"LD_PRELOAD={sub}/libvmprof-shim.so", "python3", f"{sub}/roots_target.py", "12"]
    if pidns:
        inner = ["unshare", "--pid", "--fork", "--kill-child", f"--mount-proc={path}/proc"] + inner
    t = targets(inner, ready=None)
    line = t.p.stdout.readline().split()
    assert line and line[0] == "ready", (line, t.p.stderr.read() if not t.alive() else "")
    ns_pid, version = int(line[1]), int(line[2], 16)
    assert (version >> 24, (version >> 16) & 0xFF) == SUITES[suite], hex(version)
    pid = t.pid
    if pidns:
        assert ns_pid == 1, ns_pid          # PID 1 of its own namespace
        kids = children(t.pid)
        assert len(kids) == 1, kids
        pid = kids[0]
    exe = os.readlink(f"/proc/{pid}/exe")
    assert exe.startswith(path + "/usr/bin/python3."), exe
    return pid


def check_nesting(samples, native):
    abc = [fr for fr, _ in samples if pyprof.py_names(fr)[-1:] == ["c"]]
    key = [fr for fr, _ in samples if pyprof.py_names(fr)[-1:] == ["keyfn"]]
    assert len(abc) > 10 and len(key) > 10, (len(abc), len(key), len(samples))
    for fr in abc:
        assert pyprof.py_names(fr) == ["<module>", "main", "a", "b", "c"], names(fr)
        got = names(fr)
        # Python-to-Python calls run in the same eval call (3.11+): no
        # native frame between them, whatever --native says
        i = got.index("a")
        assert got[i:i + 3] == ["a", "b", "c"], got
    truncated = []
    for fr in key:
        assert pyprof.py_names(fr) == ["<module>", "main", "sort_phase", "keyfn"], names(fr)
        got = names(fr)
        between = fr[got.index("sort_phase") + 1:got.index("keyfn")]
        if native == "ext":
            # sorted() and the call machinery are the interpreter's own
            assert between == [], got
        elif not between:
            # Known, rare: the native unwind stopped early (seen once in
            # ~40 runs on 3.14 under ASan), so the C frames are missing;
            # the Python order is still exact (asserted above).
            truncated.append(got)
        else:
            # C between: sorted() calls back into the interpreter
            assert all(f[0] == "n" for f in between), got
    assert len(truncated) <= max(1, len(key) // 50), truncated[:3]


@pytest.mark.parametrize("pidns", [False, True], ids=["chroot", "pid-namespace"])
def test_python_frames_in_root(tmp_path, targets, root, pidns):
    pid = start_in_root(targets, root, pidns)
    for native in ("ext", "all"):
        out = tmp_path / f"{native}.prof"
        r = attach(["-p", str(pid), "-d", "2", "--native", native, "--stats", "-o", str(out)])
        assert r.returncode == 0, r.stderr
        assert "native frames only" not in r.stderr, r.stderr
        mode, interp = pyprof.header(str(out))
        assert interp == "cpython", interp
        _, samples = pyprof.read_samples(str(out))
        # sample thread ids are the host's (the target's own is 1 in a namespace)
        assert {tid for _, tid in samples} == {pid}, {tid for _, tid in samples}
        check_nesting(samples, native)
        pyprof.log_report(f"stop times {root[0]} {'pidns' if pidns else 'chroot'} {native}",
                          r.stderr.splitlines()[-1])


def test_unconfined_root_is_reported(targets, root):
    """Without openat2 (played by a preloaded library) a symbolic link in
    the target's root would be followed from ours: said in one line; with
    it, nothing is said."""
    pid = start_in_root(targets, root, False)
    env = dict(os.environ, LD_PRELOAD=target("libno_openat2.so"),
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    r = attach(["-p", str(pid), "-d", "0.5", "-o", "/dev/null"], env=env)
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines() if "cannot keep lookups inside" in ln]
    assert len(warned) == 1, r.stderr
    assert "Linux 5.6" in warned[0], warned
    r = attach(["-p", str(pid), "-d", "0.5", "-o", "/dev/null"])
    assert r.returncode == 0, r.stderr
    assert "cannot keep lookups" not in r.stderr, r.stderr
