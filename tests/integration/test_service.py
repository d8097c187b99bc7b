"""Profiling a running service, as a CI job would: a WSGI app under gunicorn
(PyPI) with the shim preloaded in the master, real HTTP load on loopback,
vmprof-attach on the worker for a few seconds; the request handler must
dominate the worker's profile and the service must answer normally after
the profiler detached."""
import json
import os
import threading

import pytest

from collections import Counter

from conftest import SHIM, attach, func_name, http_get, read_vmprof, running_gunicorn, share


@pytest.fixture
def service():
    with running_gunicorn(1, dict(os.environ, LD_PRELOAD=SHIM)) as (url, master):
        with open(f"/proc/{master.pid}/task/{master.pid}/children") as f:
            workers = [int(p) for p in f.read().split()]
        assert len(workers) == 1
        yield url, master, workers[0]


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
