"""The exact merge of Python and native frames, sample by sample:
f1 -> c_outer -> f2 -> c_middle -> f3 -> c_inner (a C extension built here
against the interpreter's own headers), with Debian's statically linked
python3.11 and with a CPython whose libpython is a shared library."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "cpython"))
from conftest import attach  # noqa: E402
import pyprof  # noqa: E402
from pyprof import DEBIAN_PY, MODE_NATIVE, names  # noqa: E402

CHAIN = ["f1", "c_outer", "f2", "c_middle", "f3", "c_inner"]
PY_CHAIN = ["f1", "f2", "f3"]
MIXED = pyprof.script("mixed.py")

PYTHONS = [pytest.param(DEBIAN_PY, id="debian-static-libpython"),
           pytest.param("shared", id="shared-libpython")]


@pytest.fixture(scope="module", params=PYTHONS)
def python_ext(request, tmp_path_factory):
    """(interpreter, directory holding nestext built for it)."""
    py = request.param
    if py == "shared":
        py = pyprof.shared_python()
        if not py:
            pytest.skip("no CPython 3.11 with a shared libpython on PATH as python3")
    elif not os.path.exists(py):
        pytest.fail(f"{py} missing: tests/setup installs python3.11 and python3.11-dev")
    return py, pyprof.build_ext(py, str(tmp_path_factory.mktemp("nestext")))


def profile_mixed(tmp_path, python_ext, native, seconds="2"):
    py, ext = python_ext
    out = tmp_path / f"mixed-{native}.prof"
    r = attach(["-o", str(out), "-i", "0.002", "--native", native, "--stats", "--",
                py, MIXED, seconds, ext],
               timeout=120)
    assert r.returncode == 0, r.stderr
    assert "done" in r.stdout, r.stdout
    pyprof.log_report(f"stop times merge {os.path.basename(py)} --native={native}",
                      r.stderr.splitlines()[-1])
    _, samples = pyprof.read_samples(str(out))
    return out, samples


def in_chain(samples):
    return [s for s in samples if "f1" in names(s[0])]


def test_native_ext_exact_order(tmp_path, python_ext):
    out, samples = profile_mixed(tmp_path, python_ext, "ext")
    mode, interp = pyprof.header(str(out))
    assert interp == "cpython" and mode & MODE_NATIVE
    work = in_chain(samples)
    leaf = [s for s in work if s[0][-1][1] == "c_inner"]
    # c_inner spins ~1 ms per call, the rest of a call is microseconds
    assert len(leaf) > 0.8 * len(work) and len(leaf) > 100, (len(leaf), len(work))
    for frames, _ in leaf:
        got = names(frames)
        py = [f for f in frames if f[0] == "py"]
        # outermost Python frames are the script's own; before them only
        # native start-up frames (hidden by default) could appear
        assert [f[1] for f in py] == ["<module>", "main"] + PY_CHAIN, got
        first_py = got.index("<module>")
        assert all(f[0] == "n" for f in frames[:first_py]), got
        assert got[first_py:] == ["<module>", "main"] + CHAIN, got
    # names carry the right file and first line (from the sources)
    frames = leaf[0][0]
    for f in frames:
        if f[1] in PY_CHAIN:
            assert f[3] == MIXED and f[2] == pyprof.def_line(MIXED, f[1]), f
        if f[1] in ("c_outer", "c_middle", "c_inner"):
            assert f[0] == "n" and f[3].endswith("nestext.c"), f


def test_native_all_keeps_interpreter_frames_in_between(tmp_path, python_ext):
    out, samples = profile_mixed(tmp_path, python_ext, "all")
    leaf = [s for s in in_chain(samples) if s[0][-1][1] == "c_inner"]
    assert len(leaf) > 100, len(leaf)
    for frames, _ in leaf:
        got = names(frames)
        assert [n for n in got if n in CHAIN] == CHAIN, got
        pos = [got.index(n) for n in CHAIN]
        # between two chain frames only native frames; a C -> Python call
        # goes through the interpreter, whose eval function holds the
        # Python frames (3.11: _PyEval_EvalFrameDefault runs every entry
        # into Python); a Python -> C call may come straight from it
        for i in range(1, len(CHAIN)):
            between = frames[pos[i - 1] + 1:pos[i]]
            assert all(f[0] == "n" for f in between), (CHAIN, got)
            if CHAIN[i] in PY_CHAIN:
                assert between and between[-1][1] == "_PyEval_EvalFrameDefault", got
        assert got[got.index("<module>") - 1] == "_PyEval_EvalFrameDefault", got
        # start-up frames are kept: native frames outside <module>
        assert frames[0][0] == "n" and got.index("<module>") > 0, got


def test_native_none_only_python_frames(tmp_path, python_ext):
    out, samples = profile_mixed(tmp_path, python_ext, "none")
    mode, _ = pyprof.header(str(out))
    assert not mode & MODE_NATIVE
    assert samples
    for frames, _ in samples:
        assert all(f[0] == "py" for f in frames), names(frames)
    work = in_chain(samples)
    full = 0
    for frames, _ in work:
        got = names(frames)
        tail = got[got.index("main") + 1:]
        assert tail == PY_CHAIN[:len(tail)], got
        full += tail == PY_CHAIN
    assert full > 0.8 * len(work) and full > 100, (full, len(work))
