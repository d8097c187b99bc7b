"""ab.py - two vmprof-attach binaries side by side on the benchmark's
attacher-side scenarios, for judging a change to the sampler: alternated
runs (A, B, B, A, ...) in one invocation, medians per binary.

    python3 tests/bench/ab.py --a OLD/vmprof-attach --b NEW/vmprof-attach \
        --shim build/target-shim/libvmprof-shim.so [--rounds 3] [--seconds 8]
        [--only idle1000,idle100,deep,rate1k,rate5k,rate10k]

Per run: the target (workload.py or deep.py, --wait-tracer) is started,
the binary attaches with -p --stats, the attacher's CPU (schedstat of its
threads) is measured over --seconds after the target said "go", then the
attacher gets SIGINT and its --stats line is read. Reported: attacher CPU
in % of a core, stop p50/p99 (us), missed ticks of scheduled. The load
average is printed with every round: on a shared machine only the ratio
of A and B measured in the same invocation means much.
"""
import argparse
import os
import signal
import sys
import tempfile
import time

sys.dont_write_bytecode = True
import benchlib as bl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SYS_PY = "/usr/bin/python3.11"

SCENARIOS = {
    "idle1000": (["workload.py", "--forever", "--idle", "1000"], 0.004),
    "idle100": (["workload.py", "--forever", "--idle", "100"], 0.004),
    "deep": (["deep.py", "--depth", "30", "--seconds", "600"], 0.004),
    "rate1k": (["workload.py", "--forever"], 0.001),
    "rate5k": (["workload.py", "--forever"], 0.0002),
    "rate10k": (["workload.py", "--forever"], 0.0001),
}


def one(binary, shim, scen, seconds, extra):
    args, interval = SCENARIOS[scen]
    tmp = tempfile.mkdtemp(prefix="vmprof-ab-")
    out = os.path.join(tmp, "x.prof")
    env = dict(os.environ, LD_PRELOAD=shim, PYTHONDONTWRITEBYTECODE="1")
    target = [SYS_PY, os.path.join(HERE, args[0]), *args[1:], "--wait-tracer"]
    att = bl.Attached(target, env, [binary, "--stats", "-q", "-i", str(interval), "-o", out,
                                    *extra], out + ".err", timeout=seconds + 120)
    try:
        c0, t0 = bl.task_cpu_ns(att.attacher.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = bl.task_cpu_ns(att.attacher.pid), time.monotonic()
        f = att.finish("sigint")
    except Exception:
        att.kill()
        raise
    finally:
        for n in os.listdir(tmp):
            os.unlink(os.path.join(tmp, n))
        os.rmdir(tmp)
    st = bl.parse_stats(f["err"])
    if not st:
        raise bl.RunError(f"no stats: {bl.tail(f['err'])}")
    missed = st.get("missed_ticks", 0)
    return {"cpu": (c1 - c0) / 1e9 / (t1 - t0) * 100 if c0 is not None and c1 is not None
            else None,
            "p50": st.get("stop_us_p50"), "p99": st.get("stop_us_p99"),
            "missed": missed / (st["ticks"] + missed) * 100 if st.get("ticks") else None,
            "samples": st.get("samples"),
            # CPU per tick that ran: less sensitive to other load than %
            "us_tick": None if c0 is None or c1 is None or not st.get("ticks") else
            (c1 - c0) / 1e3 / (t1 - t0) * interval / (st["ticks"] / (st["ticks"] + missed))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--only", default="idle1000,idle100,deep,rate1k,rate10k")
    ap.add_argument("--mode", default="cpu", choices=("cpu", "wall"))
    a = ap.parse_args()
    extra = ["--mode", a.mode]
    res = {}
    for scen in a.only.split(","):
        for r in range(a.rounds):
            order = ("a", "b") if r % 2 == 0 else ("b", "a")
            for which in order:
                binary = a.a if which == "a" else a.b
                try:
                    v = one(binary, a.shim, scen, a.seconds, extra)
                except bl.RunError as e:
                    print(f"# {scen} {which}: failed: {e}", file=sys.stderr)
                    v = None
                res.setdefault((scen, which), []).append(v)
                print(f"# {scen} round {r} {which}: {v} load {os.getloadavg()[0]:.2f}",
                      file=sys.stderr)
    print(f"| scenario | bin | attacher CPU % | CPU us/tick | stop p50 us | stop p99 us "
          f"| missed % | runs |  ({time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f})")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for scen in a.only.split(","):
        for which in ("a", "b"):
            runs = [v for v in res.get((scen, which), []) if v]
            med = {k: bl.median([v[k] for v in runs])
                   for k in ("cpu", "us_tick", "p50", "p99", "missed")}
            fmt = lambda x, d=1: "n/a" if x is None else f"{x:.{d}f}"  # noqa: E731
            print(f"| {scen} | {which} | {fmt(med['cpu'])} | {fmt(med['us_tick'], 0)} | "
                  f"{fmt(med['p50'], 0)} | "
                  f"{fmt(med['p99'], 0)} | {fmt(med['missed'], 2)} | {len(runs)} |")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
