"""Never harm the target: SIGKILL of the attacher mid-run, a target that
exits mid-run."""
import os
import signal
import subprocess
import time

from conftest import ATTACH, read_vmprof, target, thread_states, tracer_pid


def test_sigkill_of_attacher_leaves_target_running(tmp_path, targets):
    for i in range(5):
        t = targets([target("cpu_split"), "4", "3"])
        out = tmp_path / f"k{i}.prof"
        a = subprocess.Popen([ATTACH, "-p", str(t.pid), "-o", str(out), "-i", "0.001"],
                             stderr=subprocess.PIPE)
        time.sleep(0.3 + 0.17 * i)
        a.kill()
        a.wait()
        # no thread may stay in a tracing stop; the tracer is gone
        deadline = time.time() + 2
        while time.time() < deadline and (tracer_pid(t.pid) != 0 or
                                          "t" in thread_states(t.pid).values()):
            time.sleep(0.05)
        assert tracer_pid(t.pid) == 0
        assert "t" not in thread_states(t.pid).values(), thread_states(t.pid)
        assert t.wait(timeout=20) == 0
        assert t.p.stdout.read().startswith("done")


def test_target_exit_mid_run_ends_normally(tmp_path, targets):
    t = targets([target("cpu_split"), "1", "2"])
    out = tmp_path / "exit.prof"
    start = time.time()
    r = subprocess.run([ATTACH, "-p", str(t.pid), "-o", str(out), "-d", "30"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert time.time() - start < 10
    assert "until it exited" in r.stderr
    stats, samples = read_vmprof(str(out))
    assert len(samples) > 100
    # complete: ends with the trailer (marker 3 followed by 24 bytes)
    data = open(out, "rb").read()
    assert data[-25] == 0x03
    assert t.wait(timeout=5) == 0


def test_sigterm_stops_cleanly_and_detaches(tmp_path, targets):
    t = targets([target("cpu_split"), "6", "2"])
    out = tmp_path / "term.prof"
    a = subprocess.Popen([ATTACH, "-p", str(t.pid), "-o", str(out)], stderr=subprocess.PIPE,
                         text=True)
    time.sleep(1)
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=10) == 0, a.stderr.read()
    assert tracer_pid(t.pid) == 0
    assert t.alive()
    stats, samples = read_vmprof(str(out))
    assert len(samples) > 100


NAPPERS = """
import threading, time
def nap():
    while True:
        time.sleep(0.0005)
for _ in range(200):
    threading.Thread(target=nap, daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


def test_sigint_stops_a_run_that_is_behind_schedule(tmp_path, targets):
    # 200 threads that wake every 0.5 ms, wall mode at 1 kHz: every tick runs
    # late, so the loop never waits; SIGINT must still end the run.
    t = targets(["/usr/bin/python3.11", "-c", NAPPERS])
    out = tmp_path / "behind.prof"
    a = subprocess.Popen([ATTACH, "-p", str(t.pid), "-o", str(out), "--mode", "wall",
                          "-i", "0.001", "-q"], stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    a.send_signal(signal.SIGINT)
    assert a.wait(timeout=15) == 0, a.stderr.read()
    assert tracer_pid(t.pid) == 0
    assert t.alive()
    stats, samples = read_vmprof(str(out))
    assert len(samples) > 100
