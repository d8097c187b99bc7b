"""--lines: the current line of every Python frame, from the instruction
pointer and the code's line table, checked against marked source lines."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "cpython"))
from conftest import attach  # noqa: E402
import pyprof  # noqa: E402
from pyprof import DEBIAN_PY, MODE_LINES  # noqa: E402

SCRIPT = pyprof.script("lines.py")


def test_lines_of_hot_loops_and_callers(tmp_path, targets):
    t = targets([DEBIAN_PY, SCRIPT, "4"], env=pyprof.shim_env())
    out = tmp_path / "lines.prof"
    r = attach(["-p", str(t.pid), "--lines", "-i", "0.002", "-d", "2.5", "-o", str(out)])
    assert r.returncode == 0, r.stderr
    mode, _ = pyprof.header(str(out))
    assert mode & MODE_LINES
    stats, samples = pyprof.read_samples(str(out))
    assert stats.profile_lines
    loop = {"hot": pyprof.marker_line(SCRIPT, "MARK-HOT-LOOP"),
            "warm": pyprof.marker_line(SCRIPT, "MARK-WARM-LOOP")}
    call = {"hot": pyprof.marker_line(SCRIPT, "MARK-CALL-HOT"),
            "warm": pyprof.marker_line(SCRIPT, "MARK-CALL-WARM")}
    for fn in ("hot", "warm"):
        mine = []
        for frames, _ in samples:
            py = [f for f in frames if f[0] == "py"]
            if py and py[-1][1] == fn:
                mine.append(py)
        assert len(mine) > 40, (fn, len(mine))
        on_loop = sum(1 for py in mine if py[-1][4] == loop[fn])
        assert on_loop > 0.9 * len(mine), (fn, on_loop, len(mine),
                                            sorted({py[-1][4] for py in mine}))
        for py in mine:
            # the first line stays the def line; the caller is at its call
            assert py[-1][2] == pyprof.def_line(SCRIPT, fn), py[-1]
            assert py[-2][1] == "main" and py[-2][4] == call[fn], py[-2:]
            assert py[-2][2] == pyprof.def_line(SCRIPT, "main"), py[-2]
            # every line of a frame lies within its file's lines
            assert all(f[4] >= f[2] for f in py), py
