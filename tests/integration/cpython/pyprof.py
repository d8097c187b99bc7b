"""pyprof.py - helpers shared by the CPython integration tests
(tests/integration/test_cpython_*.py): which interpreters exist, building
the nestext C extension for one of them, reading logs with vmprof's reader
(PyPI) including LINES mode, the log header, and source markers.

Expectations in the tests come from the targets (their own timings, their
source, the names they generated), never from the profiler's output."""
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEBIAN_PY = "/usr/bin/python3.11"          # statically linked libpython

MODE_MEMORY, MODE_LINES, MODE_NATIVE, MODE_RPYTHON, MODE_REAL_TIME = 1, 2, 4, 8, 16


def script(name):
    return os.path.join(HERE, name)


def shared_python():
    """The real executable of `python3` on PATH when its libpython is a
    shared library (pyenv's 3.11 here), else None."""
    exe = shutil.which("python3")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "-c", "import sys, sysconfig; print(sys.executable); "
             "print(sysconfig.get_config_var('LDLIBRARY') or ''); "
             "print(sysconfig.get_config_var('LIBDIR') or ''); print(sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) < 4 or not out[1].endswith(".so") or out[3] != "(3, 11)":
        return None
    real = os.path.realpath(out[0])
    # shared only if the executable really needs libpython (Debian's
    # python3.11 says LDLIBRARY=libpython3.11.so but is static).
    r = subprocess.run(["ldd", real], capture_output=True, text=True, timeout=60)
    if "libpython3.11" not in r.stdout:
        return None
    return real


def build_ext(python, outdir):
    """Compiles nestext.c for `python` (its own headers and suffix) into
    outdir; returns outdir. -fno-inline and no sibling calls: each C
    function keeps its own native frame."""
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['include']); "
         "print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        capture_output=True, text=True, timeout=60, check=True).stdout.split()
    inc, suffix = out[0], out[1]
    os.makedirs(outdir, exist_ok=True)
    so = os.path.join(outdir, "nestext" + suffix)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-inline",
                    "-fno-optimize-sibling-calls", "-Wall", "-Werror", "-I", inc,
                    script("nestext.c"), "-o", so], check=True, timeout=120)
    return outdir


def header(path):
    """(mode flags, interpreter name) of a log: the HEADER record follows
    the 5-word static header."""
    with open(path, "rb") as f:
        data = f.read(64 + 255)
    assert data[40] == 0x05, data[:48]
    assert int.from_bytes(data[41:43], "big") == 6
    n = data[44]
    return data[43], data[45:45 + n].decode()


def split_name(entry):
    """'py:f:3:x.py' -> ('py', 'f', 3, 'x.py'); anything else (an id
    without a name) -> ('?', str, 0, '')."""
    parts = str(entry).split(":", 3)
    if len(parts) != 4 or not parts[2].lstrip("-").isdigit():
        return ("?", str(entry), 0, "")
    return (parts[0], parts[1], int(parts[2]), parts[3])


def read_samples(path):
    """Reads a log with vmprof's reader. Returns (stats, samples): each
    sample is (frames, tid) with frames outermost first, each frame a
    tuple (lang, name, firstline, file, line). In LINES mode vmprof's
    reader gives, after reversing, [id, -line, id, -line, ...]: the line
    of a frame follows it, negated; elsewhere line is None."""
    import vmprof
    stats = vmprof.read_profile(path)
    table = stats.adr_dict
    samples = []
    for trace, _count, tid, _mem in stats.profiles:
        frames = []
        if stats.profile_lines:
            assert len(trace) % 2 == 0, trace
            pairs = [(trace[i], trace[i + 1]) for i in range(0, len(trace), 2)]
        else:
            pairs = [(a, None) for a in trace]
        for addr, neg_line in pairs:
            lang, name, first, file = split_name(table.get(int(addr), hex(int(addr))))
            line = None if neg_line is None else -int(neg_line)
            frames.append((lang, name, first, file, line))
        samples.append((frames, tid))
    return stats, samples


def py_names(frames):
    return [f[1] for f in frames if f[0] == "py"]


def names(frames):
    return [f[1] for f in frames]


def contains(frames, name):
    return any(f[1] == name for f in frames)


def share(samples, name, within=None):
    """Fraction of samples (optionally only those containing `within`)
    whose stack contains `name`."""
    pool = [s for s in samples if within is None or contains(s[0], within)]
    if not pool:
        return 0.0
    return sum(1 for fr, _ in pool if contains(fr, name)) / len(pool)


def marker_line(path, marker):
    """1-based line of the only source line containing `marker`."""
    with open(path) as f:
        hits = [i + 1 for i, l in enumerate(f) if marker in l]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def def_line(path, func):
    """1-based line of `def func(` in a source file."""
    pat = re.compile(r"^\s*(async\s+)?def\s+" + re.escape(func) + r"\s*\(")
    with open(path) as f:
        hits = [i + 1 for i, l in enumerate(f) if pat.match(l)]
    assert len(hits) == 1, (func, hits)
    return hits[0]


def stats_kv(stderr):
    """The --stats line of vmprof-attach as a dict of floats."""
    lines = [l for l in stderr.splitlines() if "stats:" in l]
    assert len(lines) == 1, stderr
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", lines[0])}


def vmprof_show_tree(path):
    """Runs `python -m vmprof.show FILE tree` with the test interpreter
    (the venv's, which has vmprof); returns its stdout. vmprof.show exits
    0 even when it fails, so callers must check the output."""
    r = subprocess.run([sys.executable, "-m", "vmprof.show", str(path), "tree"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr
    return r.stdout


def log_report(name, text):
    """Appends a measured figure to $VMPROF_ITEST_REPORT (if set), for the
    closing note; pytest's -q output hides prints."""
    path = os.environ.get("VMPROF_ITEST_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(f"{name}: {text}\n")


def shim_env(extra=None):
    """The environment for a target that -p attaches to: the shim
    preloaded (VMPROF_SHIM, as meson sets it)."""
    shim = os.environ.get("VMPROF_SHIM", "")
    assert shim and os.path.exists(shim), "VMPROF_SHIM must name the built shim"
    env = dict(os.environ, LD_PRELOAD=shim)
    env.update(extra or {})
    return env
