"""Profiling a running service, as a CI job would: a WSGI app under gunicorn
(PyPI) with the shim preloaded in the master, real HTTP load on loopback,
vmprof-attach on the worker for a few seconds; the request handler must
dominate the worker's profile and the service must answer normally after
the profiler detached."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from collections import Counter

from conftest import SHIM, attach, free_port, func_name, http_get, read_vmprof, share

APP_DIR = os.path.join(os.path.dirname(__file__), "wsgi")




@pytest.fixture
def service():
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        pytest.fail("gunicorn is not installed in the test venv (tests/setup installs it)")
    port = free_port()
    env = dict(os.environ, LD_PRELOAD=SHIM)
    master = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "1", "-b",
                               f"127.0.0.1:{port}", "--chdir", APP_DIR, "app:application"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 20
    while True:
        try:
            if http_get(url, timeout=2)[0] == 200:
                break
        except OSError:
            pass
        assert time.time() < deadline, "gunicorn did not start answering"
        assert master.poll() is None, master.stderr.read()
        time.sleep(0.1)
    with open(f"/proc/{master.pid}/task/{master.pid}/children") as f:
        workers = [int(p) for p in f.read().split()]
    assert len(workers) == 1
    yield url, master, workers[0]
    master.send_signal(signal.SIGTERM)
    try:
        master.wait(timeout=15)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()


def test_profile_a_gunicorn_worker_under_load(service, tmp_path):
    url, master, worker = service
    stop = threading.Event()
    answered, failed = [0], [0]

    def load():
        while not stop.is_set():
            try:
                status, body = http_get(url)
                ok = status == 200 and "digest" in json.loads(body)
                answered[0] += ok
                failed[0] += not ok
            except OSError:
                failed[0] += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    out = tmp_path / "worker.prof"
    try:
        r = attach(["-p", str(worker), "-d", "3", "-o", str(out)], timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert r.returncode == 0, r.stderr
    assert failed[0] == 0, (answered[0], failed[0])
    assert answered[0] > 10
    stats, samples = read_vmprof(str(out))
    assert stats.interp == "cpython"
    assert len(samples) > 100
    # The handler dominates: it holds a large share, and no function outside
    # it (gunicorn's loop, sockets, HTTP parsing) comes close.
    hr = share(samples, "handle_request")
    assert hr > 0.35, hr
    outside = [names for names, _ in samples
               if not any(func_name(n) == "handle_request" for n in names)]
    others = Counter(func_name(n) for names in outside for n in set(names))
    top_other = max(others.values()) / len(samples) if others else 0
    assert top_other < hr, (hr, others.most_common(5))
    # the service answers normally after detach, from the same worker
    for _ in range(5):
        status, body = http_get(url)
        assert status == 200 and "digest" in json.loads(body)
    with open(f"/proc/{master.pid}/task/{master.pid}/children") as f:
        assert [int(p) for p in f.read().split()] == [worker]
    with open(f"/proc/{worker}/status") as f:
        assert "TracerPid:\t0" in f.read()
