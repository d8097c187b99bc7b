"""Names of Python frames: code objects that are freed and whose addresses
are reused never lend their names to new ones; generator expressions,
lambdas and comprehensions created and freed per call, methods and nested
classes get their qualified names, first lines and files. Expectations come
from the targets: the names they generated, and their source parsed with
ast."""
import ast
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "cpython"))
from conftest import attach  # noqa: E402
import pyprof  # noqa: E402
from pyprof import DEBIAN_PY  # noqa: E402

EXEC = pyprof.script("exec_names.py")
NAMES = pyprof.script("names.py")
NAMES_MOD = pyprof.script("names_mod.py")

SCOPES = {ast.GeneratorExp: "<genexpr>", ast.ListComp: "<listcomp>",
          ast.SetComp: "<setcomp>", ast.DictComp: "<dictcomp>", ast.Lambda: "<lambda>"}


def source_names(path):
    """{(qualname, first line)} of every code object CPython 3.11 makes
    from this file, computed from its source with ast."""
    out = {("<module>", 1)}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                q = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out.add((q, first))
                visit(child, q + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                q = prefix + child.name
                out.add((q, child.lineno))
                visit(child, q + ".")
            elif type(child) in SCOPES:
                q = prefix + SCOPES[type(child)]
                out.add((q, child.lineno))
                visit(child, q + ".<locals>.")
            else:
                visit(child, prefix)

    visit(ast.parse(open(path).read()), "")
    return out


def test_exec_fresh_functions_never_borrow_names(tmp_path, targets):
    listing = tmp_path / "generated.txt"
    t = targets([DEBIAN_PY, EXEC, "5", str(listing)], env=pyprof.shim_env())
    out = tmp_path / "exec.prof"
    r = attach(["-p", str(t.pid), "-i", "0.001", "-d", "2.5", "-o", str(out), "--stats"])
    assert r.returncode == 0, r.stderr
    assert t.wait(timeout=60) == 0, t.p.stderr.read()
    lines = listing.read_text().split("\n")
    distinct = int(lines[-2].split()[1])
    generated = {}
    for l in lines[:-2]:
        n, name, file, first, gen_line = l.split()
        generated[int(n)] = (name, file, int(first), int(gen_line))
    # the premise: addresses were reused (else the test shows nothing)
    assert len(generated) > 1000 and distinct * 10 < len(generated), (len(generated), distinct)

    own = source_names(EXEC)
    _, samples = pyprof.read_samples(str(out))
    if "until it exited" in r.stderr:
        # the run outlasted the script (a slow start on a busy machine):
        # the interpreter's finalization, after its last Python frame, is
        # sampled too (seen in CI: __libc_start_main only)
        while samples and not any(f[0] == "py" for f in samples[-1][0]):
            samples.pop()
    assert len(samples) > 150, len(samples)
    order = []
    for frames, _ in samples:
        py = [f for f in frames if f[0] == "py"]
        assert py, frames
        for i, (_, name, first, file, _) in enumerate(py):
            if file == EXEC:
                assert (name, first) in own, (name, first, file)
                continue
            m = re.fullmatch(r"<gen-(\d{6})>", file)
            assert m, (name, first, file)
            n = int(m.group(1))
            assert n in generated, (name, file)
            fname, _, ffirst, gline = generated[n]
            if name == fname or name == "<module>":
                # the function, or the exec'd code that defines it
                assert first == (ffirst if name == fname else 1), (name, first)
                order.append(n)
            else:
                # the generator expression of the same function, under it
                assert name == fname + ".<locals>.<genexpr>" and first == gline, (name, first, file)
                assert i > 0 and py[i - 1][1] == fname and py[i - 1][3] == file, py
    # functions ran one after another: in sample order n never goes back
    # (a stale name would show an older function after a newer one)
    assert len(order) > 100, len(order)
    back = [(a, b) for a, b in zip(order, order[1:]) if b < a]
    assert not back, back[:10]
    assert len(set(order)) > 50, len(set(order))


def test_qualified_names_lines_and_files(tmp_path, targets):
    t = targets([DEBIAN_PY, NAMES, "4"], env=pyprof.shim_env())
    out = tmp_path / "names.prof"
    r = attach(["-p", str(t.pid), "-i", "0.002", "-d", "2.5", "-o", str(out)])
    assert r.returncode == 0, r.stderr
    expected = {NAMES: source_names(NAMES), NAMES_MOD: source_names(NAMES_MOD)}
    _, samples = pyprof.read_samples(str(out))
    assert len(samples) > 100, len(samples)
    seen = set()
    for frames, _ in samples:
        py = [f for f in frames if f[0] == "py"]
        for _, name, first, file, _ in py:
            # only the target's own code runs after "ready"
            assert file in expected, (name, first, file)
            assert (name, first) in expected[file], (name, first, file)
            seen.add((name, file))
    # every shape is sampled, each under its caller
    parent = {
        ("Shape.area", NAMES): "main",
        ("Outer.Inner.method", NAMES): "main",
        ("outer.<locals>.<genexpr>", NAMES): "outer",
        ("with_lambda.<locals>.<lambda>", NAMES): "with_lambda",
        ("<lambda>", NAMES): "main",
        ("<lambda>.<locals>.<listcomp>", NAMES): "<lambda>",
        ("other.<locals>.<genexpr>", NAMES_MOD): "other",
    }
    for key, caller in parent.items():
        assert key in seen, (key, sorted(seen))
    for frames, _ in samples:
        py = [f for f in frames if f[0] == "py"]
        for i, f in enumerate(py):
            caller = parent.get((f[1], f[3]))
            if caller:
                assert i > 0 and py[i - 1][1] == caller, [(g[1], g[3]) for g in py]
