"""family.py - target for the --children tests (tests/integration/
test_children.py): a Python process that creates other processes in the
ways real programs do, each process burning CPU in a function of its own
so that every log can be told apart by name.

Usage: family.py MODE ARGS...
  fork SECS [GOFILE]   prints "ready PID"; (once GOFILE exists) forks two
                       children that print "child alpha PID" / "child beta
                       PID" and burn SECS in child_alpha / child_beta, while
                       the parent burns SECS in parent_burn and waits.
  exec HOW SECS        starts `family.py execed SECS` (HOW: subprocess =
                       subprocess.Popen, vfork path; posix_spawn =
                       os.posix_spawn; fork-work-exec = os.fork, 0.4 s in
                       pre_exec_work, then os.execv) and burns SECS in
                       parent_burn. The new program prints "execed PID"
                       and burns in exec_work.
  pool SECS            multiprocessing.Pool (fork context) of 2 workers,
                       2 tasks of SECS each in pool_task; prints
                       "pool PID PID" (the workers that ran them).
  early SHORT SECS     one child burns SHORT in short_lived and exits
                       ("short PID"); the parent burns SECS in parent_burn.
  tree SECS            forks a child (tree_child) that forks a grandchild
                       (tree_grandchild); all three burn until SECS after
                       start; prints "ready PARENT CHILD GRANDCHILD" once
                       all run.
Every mode ends with "done" when every process it created exited with
status 0 (a harmed child makes the parent say "failed ..." and exit 1)."""
import os
import sys
import time


def parent_burn(until):
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return n


def child_alpha(until):
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return n


def child_beta(until):
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return n


def exec_work(until):
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return n


def pre_exec_work(until):
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return n


def pool_task(seconds):
    until = time.monotonic() + seconds
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return os.getpid()


def short_lived(until):
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return n


def tree_child(until):
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return n


def tree_grandchild(until):
    n = 0
    while time.monotonic() < until:
        for i in range(2000):
            n ^= i
    return n


def say(*words):
    """One line in one write(): the processes share the pipe (and
    PYTHONUNBUFFERED would split a print() into pieces)."""
    sys.stdout.flush()
    os.write(1, (" ".join(str(w) for w in words) + "\n").encode())


def fork_child(fn, until, label=None):
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            if label:
                say(label, os.getpid())
            fn(until)
            status = 0
        finally:
            sys.stdout.flush()
            os._exit(status)
    return pid


def reap(pids):
    """Waits for pids; True when all exited with status 0."""
    ok = True
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        if not (os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0):
            say("failed", pid, st)
            ok = False
    return ok


def mode_fork(secs, gofile=None):
    say("ready", os.getpid())
    if gofile:
        while not os.path.exists(gofile):
            time.sleep(0.01)
    until = time.monotonic() + secs
    pids = [fork_child(child_alpha, until, "child alpha"),
            fork_child(child_beta, until, "child beta")]
    parent_burn(until)
    return reap(pids)


def execed(secs):
    say("execed", os.getpid())
    exec_work(time.monotonic() + secs)
    return True


def mode_exec(how, secs):
    argv = [sys.executable, os.path.abspath(__file__), "execed", str(secs)]
    until = time.monotonic() + secs
    if how == "subprocess":
        import subprocess
        p = subprocess.Popen(argv)
        say("launched", p.pid)
        parent_burn(until)
        st = p.wait()
        ok = st == 0
    elif how == "posix_spawn":
        pid = os.posix_spawn(sys.executable, argv, os.environ)
        say("launched", pid)
        parent_burn(until)
        ok = reap([pid])
    elif how == "fork-work-exec":
        # a CPython child that runs Python (its own registry) before it
        # execs a new program
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                pre_exec_work(time.monotonic() + 0.4)
                os.execv(sys.executable, argv)
            finally:
                os._exit(1)
        say("launched", pid)
        parent_burn(until + 0.4)
        ok = reap([pid])
    else:
        raise SystemExit(f"unknown launch method {how}")
    return ok


def mode_pool(secs):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(2)
    pids = pool.map(pool_task, [secs, secs], chunksize=1)
    pool.close()
    pool.join()
    say("pool", *pids)
    return all(p.exitcode == 0 for p in pool._pool)


def mode_early(short, secs):
    now = time.monotonic()
    pid = fork_child(short_lived, now + short, "short")
    parent_burn(now + secs)
    return reap([pid])


def mode_tree(secs):
    until = time.monotonic() + secs
    r, w = os.pipe()
    sys.stdout.flush()
    child = os.fork()
    if child == 0:
        os.close(r)
        status = 1
        try:
            grandchild = os.fork()
            if grandchild == 0:
                os.close(w)
                try:
                    tree_grandchild(until)
                    status = 0
                finally:
                    os._exit(status)
            os.write(w, f"{grandchild}\n".encode())
            os.close(w)
            tree_child(until)
            status = 0 if reap([grandchild]) else 1
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r) as f:
        grandchild = int(f.readline())
    say("ready", os.getpid(), child, grandchild)
    parent_burn(until)
    return reap([child])


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "fork":
        ok = mode_fork(float(args[0]), args[1] if len(args) > 1 else None)
    elif mode == "exec":
        ok = mode_exec(args[0], float(args[1]))
    elif mode == "execed":
        ok = execed(float(args[0]))
    elif mode == "pool":
        ok = mode_pool(float(args[0]))
    elif mode == "early":
        ok = mode_early(float(args[0]), float(args[1]))
    elif mode == "tree":
        ok = mode_tree(float(args[0]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    say("done" if ok else "failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
