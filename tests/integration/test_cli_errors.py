"""Every bad input gets one line naming the cause and the fix, and a distinct
exit code (2 usage, 1 runtime refusal); nothing is left attached."""
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from conftest import attach, target, tracer_pid


def one_line_error(r):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("vmprof-attach: ")
    return lines[0]


@pytest.mark.parametrize("args,words", [
    ([], ["nothing to profile", "-p PID"]),
    (["--bogus"], ["unknown option", "--bogus"]),
    (["-p"], ["needs a value"]),
    (["-p", "abc"], ["bad PID", "abc"]),
    (["-p", "-5"], ["bad PID"]),
    (["-p", "1", "-i", "0"], ["interval", "0.0001"]),
    (["-p", "1", "-i", "1"], ["interval", "not including"]),
    (["-p", "1", "-i", "0.00001"], ["interval"]),
    (["-p", "1", "-i", "nan"], ["interval"]),
    (["-p", "1", "-i", "4ms"], ["interval", "not a number"]),
    (["-p", "1", "-i", "1e-3x"], ["interval", "not a number"]),
    (["-p", "1", "-d", "-3"], ["duration", "positive"]),
    (["-p", "1", "-d", "x"], ["duration", "not a number"]),
    (["-p", "1", "-d", "1e300"], ["duration", "too long"]),
    (["-p", "1", "-d", "1e400"], ["duration", "too long"]),
    (["-p", "1", "-i", "1e-400"], ["interval", "out of range"]),
    (["-p", "1", "-i", "inf"], ["interval", "out of range"]),
    (["-p", "1", "--mode", "fast"], ["--mode", "cpu", "wall"]),
    (["-p", "1", "--native", "some"], ["--native", "ext"]),
    (["-p", "1", "--", "true"], ["both -p and a command"]),
])
def test_usage_errors_exit_2(args, words):
    r = attach(args)
    assert r.returncode == 2, r.stderr
    line = one_line_error(r)
    for w in words:
        assert w in line


def test_help_fits_a_screen():
    r = attach(["--help"])
    assert r.returncode == 0
    assert "usage: vmprof-attach" in r.stdout
    assert len(r.stdout.splitlines()) <= 25


def test_no_such_process(tmp_path):
    # A PID that is certainly free: above pid_max.
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) + 1
    r = attach(["-p", str(pid), "-o", str(tmp_path / "x.prof")])
    assert r.returncode == 1
    line = one_line_error(r)
    assert "no such process" in line and str(pid) in line


def test_output_not_writable_checked_before_attaching(targets, tmp_path):
    t = targets([target("cpu_split"), "5", "1"])
    r = attach(["-p", str(t.pid), "-o", "/nonexistent-dir/x.prof", "-d", "1"])
    assert r.returncode == 1
    line = one_line_error(r)
    assert "cannot write output" in line and "-o" in line
    assert tracer_pid(t.pid) == 0
    assert t.alive()


def test_already_traced_names_the_tracer(targets, tmp_path):
    t = targets([target("cpu_split"), "5", "1"])
    holder = targets([target("tracer_hold"), str(t.pid)], ready="tracing")
    r = attach(["-p", str(t.pid), "-o", str(tmp_path / "x.prof"), "-d", "1"])
    assert r.returncode == 1
    line = one_line_error(r)
    assert "already traced" in line
    assert str(holder.pid) in line and "tracer_hold" in line
    # the other tracer is undisturbed, the target runs on
    assert tracer_pid(t.pid) == holder.pid
    assert t.alive()
    assert not os.path.exists(tmp_path / "x.prof")


def test_permission_denied_names_ptrace_scope_and_capability(targets, tmp_path):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    if os.getuid() != 0:
        pytest.skip("needs root to switch to another user")
    t = targets([target("cpu_split"), "5", "1"])
    d = tempfile.mkdtemp(prefix="vmprof-nobody-")
    os.chmod(d, 0o777)
    out = os.path.join(d, "x.prof")

    def demote():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    r = subprocess.run([os.environ["VMPROF_ATTACH"], "-p", str(t.pid), "-o", str(out), "-d", "1"],
                       capture_output=True, text=True, timeout=30, preexec_fn=demote)
    assert r.returncode == 1
    line = one_line_error(r)
    assert "permission denied" in line
    assert "ptrace_scope" in line and "CAP_SYS_PTRACE" in line
    assert t.alive() and tracer_pid(t.pid) == 0
    shutil.rmtree(d)


def test_spawn_missing_command(tmp_path):
    r = attach(["-o", str(tmp_path / "x.prof"), "--", "/nonexistent/command"])
    assert r.returncode == 1
    line = one_line_error(r)
    assert "cannot run" in line and "/nonexistent/command" in line
