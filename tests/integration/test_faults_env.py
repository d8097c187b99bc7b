"""Never harm the target, part 3: where the target lives and where the log
goes. A target in its own PID namespace and one in a chroot are profiled
with their functions named; a full filesystem under the output gives one
clear error, exit 1, an untouched target and a log readable up to its last
whole record; bad command lines and refused targets get one line each; a
spawned command starts with the signal state of a normal child."""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ATTACH, attach, read_vmprof, target, tracer_pid
from test_faults import FAULTS, error_lines, faults, names_in, wait_released


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def children_of(pid):
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    return kids


# ---- PID namespace, chroot -----------------------------------------------

def test_target_in_its_own_pid_namespace(tmp_path):
    needs_root()
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    u = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child"] + faults("spin", 1.5, 2),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = u.stdout.readline()
        if not line.startswith("ready"):
            pytest.skip("unshare --pid refused here: " + u.stderr.read().strip())
        assert line.split()[1] == "1", "PID 1 in its namespace"
        kids = children_of(u.pid)
        assert len(kids) == 1, kids
        pid = kids[0]
        out = tmp_path / "ns.prof"
        r = attach(["-p", str(pid), "-o", str(out), "-i", "0.001", "-d", "0.6"], timeout=30)
        assert r.returncode == 0, r.stderr
        assert error_lines(r.stderr) == [], r.stderr
        assert tracer_pid(pid) == 0
        samples = read_vmprof(str(out))[1]
        assert len({tid for _n, tid in samples}) >= 2
        assert "spin_leaf" in names_in(samples) and "spin_until" in names_in(samples)
        assert u.wait(timeout=10) == 0
        assert u.stdout.read().strip() == "done"
    finally:
        if u.poll() is None:
            u.kill()
            u.wait()


def make_chroot(root):
    """A minimal root holding the faults target and the libraries ldd names."""
    out = subprocess.run(["ldd", FAULTS], capture_output=True, text=True, check=True).stdout
    libs = []
    for l in out.splitlines():
        parts = l.split()
        for p in parts:
            if p.startswith("/"):
                libs.append(p)
    for lib in libs:
        dst = os.path.join(root, lib.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.realpath(lib), dst)
    shutil.copy2(FAULTS, os.path.join(root, "faults"))


def test_target_in_a_chroot(tmp_path):
    needs_root()
    root = tmp_path / "root"
    root.mkdir()
    make_chroot(str(root))
    t = subprocess.Popen(["chroot", str(root), "/faults", "spin", "1.5", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = t.stdout.readline()
        assert line.startswith("ready"), t.stderr.read()
        pid = int(line.split()[1])
        # the maps name /faults: only the target's root has it
        assert not os.path.exists("/faults")
        out = tmp_path / "chroot.prof"
        r = attach(["-p", str(pid), "-o", str(out), "-i", "0.001", "-d", "0.6"], timeout=30)
        assert r.returncode == 0, r.stderr
        samples = read_vmprof(str(out))[1]
        assert "spin_leaf" in names_in(samples) and "spin_until" in names_in(samples)
        assert t.wait(timeout=10) == 0
        assert t.stdout.read().strip() == "done"
    finally:
        if t.poll() is None:
            t.kill()
            t.wait()


# ---- full filesystem ------------------------------------------------------

@pytest.fixture
def small_tmpfs():
    needs_root()
    d = tempfile.mkdtemp(prefix="vmprof-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.strip())
    try:
        yield d
    finally:
        subprocess.run(["umount", d], check=False)
        os.rmdir(d)


def fill_leaving(d, room):
    """Fill the filesystem at d but for about `room` bytes."""
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize
    with open(os.path.join(d, "filler"), "wb") as f:
        f.write(b"\0" * max(0, free - room))


def test_full_filesystem(small_tmpfs, targets):
    # tmpfs allocates whole pages: one page of room
    t = targets(faults("spin", 3, 4))
    fill_leaving(small_tmpfs, 4096)
    out = os.path.join(small_tmpfs, "full.prof")
    r = attach(["-p", str(t.pid), "-o", out, "-i", "0.0005", "-d", "1.5", "--mode", "wall"],
               timeout=30)
    assert r.returncode == 1, r.stderr
    errs = error_lines(r.stderr)
    assert len(errs) == 1, r.stderr
    assert "No space left" in errs[0] and "-o" in errs[0], errs
    # the target is untouched
    tp, st = wait_released(t.pid)
    assert tp == 0 and "t" not in st.values()
    assert t.wait(timeout=10) == 0
    assert t.p.stdout.read().strip() == "done"
    # the log holds whole records only: vmprof's reader takes all of it
    size = os.path.getsize(out)
    assert 40 < size <= 4096
    stats, samples = read_vmprof(out)
    assert samples


def test_full_filesystem_does_not_claim_success(small_tmpfs, targets):
    t = targets(faults("spin", 2, 1))
    fill_leaving(small_tmpfs, 4096)
    out = os.path.join(small_tmpfs, "full.prof")
    r = attach(["-p", str(t.pid), "-o", out, "-i", "0.0005", "-d", "1"], timeout=30)
    assert r.returncode == 1
    assert "wrote " not in r.stderr, r.stderr


# ---- command lines and refusals ---------------------------------------------

def one_line(r):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("vmprof-attach: ")
    return lines[0]


@pytest.mark.parametrize("args,words", [
    (["-p", "0"], ["bad PID", "'0'"]),
    (["-p", ""], ["bad PID"]),
    (["-p", "12abc"], ["bad PID", "12abc"]),
    (["-p", "99999999999"], ["bad PID"]),
    (["-p", "0x10"], ["bad PID"]),
    (["-p", "1", "-i", ""], ["interval"]),
    (["-p", "1", "-i", "inf"], ["interval"]),
    (["-p", "1", "-i", "-0.001"], ["interval"]),
    (["-p", "1", "-d", "0"], ["duration"]),
    (["-p", "1", "-d", "inf"], ["duration"]),
    (["-p", "1", "-d", "1e12"], ["duration"]),
    (["-p", "1", "-o", ""], ["empty output"]),
    (["-p", "1", "--mode"], ["needs a value"]),
    (["-p", "1", "-x"], ["unknown option", "-x"]),
    (["--"], ["nothing to profile"]),
])
def test_more_usage_errors_exit_2(args, words):
    r = attach(args)
    assert r.returncode == 2, r.stderr
    line = one_line(r)
    for w in words:
        assert w in line, line


def test_pid_1_as_nobody(tmp_path):
    needs_root()
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    d = tempfile.mkdtemp(prefix="vmprof-nobody-")
    os.chmod(d, 0o777)

    def demote():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    try:
        r = subprocess.run([ATTACH, "-p", "1", "-o", os.path.join(d, "x.prof"), "-d", "1"],
                           capture_output=True, text=True, timeout=30, preexec_fn=demote)
        assert r.returncode == 1, r.stderr
        line = one_line(r)
        assert "permission denied" in line and "CAP_SYS_PTRACE" in line, line
        assert not os.path.exists(os.path.join(d, "x.prof"))
    finally:
        shutil.rmtree(d)


def test_refuses_itself(tmp_path):
    # sh replaces itself with vmprof-attach: $$ is the attacher's own PID.
    r = subprocess.run(["sh", "-c", f'exec "$0" -p $$ -o {tmp_path}/x.prof', ATTACH],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert "itself" in one_line(r)


def test_refuses_a_thread_id(tmp_path, targets):
    t = targets(faults("spin", 3, 2))
    tids = sorted(int(x) for x in os.listdir(f"/proc/{t.pid}/task") if int(x) != t.pid)
    r = attach(["-p", str(tids[0]), "-o", str(tmp_path / "x.prof"), "-d", "1"])
    assert r.returncode == 1, r.stderr
    line = one_line(r)
    assert f"-p {t.pid}" in line, line
    assert tracer_pid(t.pid) == 0 and t.alive()


def test_refuses_a_zombie(tmp_path):
    # The child exits; its parent (sleep, exec'd by sh) never reaps it.
    p = subprocess.Popen(["sh", "-c", "true & exec sleep 5"])
    try:
        deadline = time.time() + 5
        zombie = None
        while zombie is None and time.time() < deadline:
            for k in children_of(p.pid):
                with open(f"/proc/{k}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        zombie = k
            time.sleep(0.02)
        assert zombie, "no zombie child appeared"
        r = attach(["-p", str(zombie), "-o", str(tmp_path / "x.prof")])
        assert r.returncode == 1, r.stderr
        assert "zombie" in one_line(r)
    finally:
        p.kill()
        p.wait()


def test_refuses_a_kernel_thread(tmp_path):
    kthread = None
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                flags = int(f.read().rsplit(")", 1)[1].split()[6])
        except (OSError, ValueError, IndexError):
            continue
        if flags & 0x00200000:
            kthread = int(d)
            break
    if kthread is None:
        pytest.skip("no kernel thread visible in this PID namespace")
    r = attach(["-p", str(kthread), "-o", str(tmp_path / "x.prof")])
    assert r.returncode == 1, r.stderr
    assert "kernel thread" in one_line(r)


def test_second_attacher_is_refused_first_undisturbed(tmp_path, targets):
    t = targets(faults("spin", 2, 2))
    first = subprocess.Popen([ATTACH, "-p", str(t.pid), "-o", str(tmp_path / "a.prof"),
                              "-i", "0.001", "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 5
    while tracer_pid(t.pid) != first.pid and time.time() < deadline:
        time.sleep(0.01)
    r = attach(["-p", str(t.pid), "-o", str(tmp_path / "b.prof")])
    assert r.returncode == 1, r.stderr
    line = one_line(r)
    assert "already traced" in line and str(first.pid) in line and "vmprof-attach" in line
    assert not os.path.exists(tmp_path / "b.prof")
    assert t.wait(timeout=10) == 0
    assert first.wait(timeout=10) == 0, first.stderr.read()
    assert "spin_leaf" in names_in(read_vmprof(str(tmp_path / "a.prof"))[1])


# ---- a spawned command starts like any child --------------------------------

SIGSTATE = ("import os\n"
            "st = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
            "import resource\n"
            "print(st['SigBlk'].strip(), st['SigIgn'].strip(), "
            "resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n")


def _low_fd_limit():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


def _plain_and_spawned(tmp_path):
    # Both started with a soft fd limit below the hard one, as on most
    # systems (1024 / 524288).
    plain = subprocess.run([sys.executable, "-c", SIGSTATE], capture_output=True, text=True,
                           timeout=30, preexec_fn=_low_fd_limit).stdout.split()
    r = attach(["-q", "-o", str(tmp_path / "spawn.prof"), "--", sys.executable, "-c", SIGSTATE],
               timeout=60, preexec_fn=_low_fd_limit)
    assert r.returncode == 0, r.stderr
    return plain, r.stdout.split()


def test_spawned_command_gets_a_normal_signal_state(tmp_path):
    plain, spawned = _plain_and_spawned(tmp_path)
    assert spawned[0] == plain[0], "blocked signals"
    assert spawned[1] == plain[1], "ignored signals"


def test_spawned_command_keeps_the_fd_limit(tmp_path):
    plain, spawned = _plain_and_spawned(tmp_path)
    assert spawned[2] == plain[2]


# ---- hostile targets ------------------------------------------------------

FIFO_REGISTRY = r"""
import os, sys, time
p = "/memfd:vmprof-registry"
os.mkfifo(p)
fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)    # a reader, never a writer
os.unlink(p)
print("ready", os.readlink(f"/proc/self/fd/{fd}"), flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    pass
print("done", flush=True)
"""


def attach_within(pid, out, seconds):
    """vmprof-attach -p pid for 0.5 s: (exit status or "hung", stderr)."""
    a = subprocess.Popen([ATTACH, "-p", str(pid), "-o", str(out), "-d", "0.5", "-q"],
                         stderr=subprocess.PIPE, text=True)
    try:
        rc = a.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        a.kill()
        a.wait()
        rc = "hung"
    return rc, a.stderr.read()


def test_fifo_posing_as_the_registry_does_not_hang_the_attacher(tmp_path):
    # Its fd link reads "/memfd:vmprof-registry (deleted)", like the shim's.
    needs_root()
    if os.path.exists("/memfd:vmprof-registry"):
        pytest.skip("/memfd:vmprof-registry exists")
    t = subprocess.Popen([sys.executable, "-c", FIFO_REGISTRY, "6"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = t.stdout.readline()
        assert line.startswith("ready") and "memfd:vmprof-registry" in line, line
        rc, _err = attach_within(t.pid, tmp_path / "f.prof", 5)
        assert wait_released(t.pid)[0] == 0
        assert t.wait(timeout=10) == 0
        assert rc == 0, rc
    finally:
        if t.poll() is None:
            t.kill()
            t.wait()
        if os.path.lexists("/memfd:vmprof-registry"):
            os.unlink("/memfd:vmprof-registry")


FIFO_PERFMAP = r"""
import os, sys, time
p = f"/tmp/perf-{os.getpid()}.map"
os.mkfifo(p)                     # no writer: an open for reading would block
print("ready", p, flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    pass
os.unlink(p)
print("done", flush=True)
"""


def test_fifo_at_the_perf_map_path_does_not_hang_the_attacher(tmp_path):
    # Anyone who can write /tmp can plant /tmp/perf-PID.map for a PID they
    # expect; the symbolizer looks for it at start and at the end.
    needs_root()
    t = subprocess.Popen([sys.executable, "-c", FIFO_PERFMAP, "6"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = t.stdout.readline()
        assert line.startswith("ready"), line
        rc, err = attach_within(t.pid, tmp_path / "p.prof", 5)
        assert rc == 0, (rc, err)
        assert wait_released(t.pid)[0] == 0
        assert t.wait(timeout=10) == 0
        assert read_vmprof(str(tmp_path / "p.prof"))[1], "samples"
    finally:
        if t.poll() is None:
            t.kill()
            t.wait()
        p = f"/tmp/perf-{t.pid}.map"
        if os.path.lexists(p):
            os.unlink(p)


def test_output_symlink_planted_in_a_sticky_dir(tmp_path):
    # A user plants out.prof -> a file of root's in a world-writable sticky
    # directory; root runs vmprof-attach -o there. The file behind the link
    # must survive. (The kernel refuses to follow the link when
    # fs.protected_symlinks=1; with 0 only the attacher can refuse.)
    needs_root()
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    with open("/proc/sys/fs/protected_symlinks") as f:
        protected = f.read().strip() == "1"
    sticky = tempfile.mkdtemp(prefix="vmprof-sticky-")
    os.chmod(sticky, 0o1777)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = os.path.join(sticky, "out.prof")
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.symlink(str(victim), str(link))
            os._exit(0)
        except BaseException:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    try:
        r = attach(["-o", link, "-q", "--", FAULTS, "spin", "0.2", "1"], timeout=30)
        assert victim.read_bytes() == b"precious\n"
        assert r.returncode == 1, r.stderr
    finally:
        shutil.rmtree(sticky)
