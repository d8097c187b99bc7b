"""bench.py - the vmprof-attach benchmark: six measurements, side by side
with in-process vmprof and py-spy, as one markdown table of medians.

Run it through tests/bench/run (which installs and builds what it needs).
Machines are noisy and have few cores, so every comparison is made inside
one round, the configurations of a section are run one after the other in
a rotated order each round (alternated, never all runs of one config in a
row), and the table gives the median over the rounds of each per-round
ratio. A second bare run of the same interpreter is measured like a
profiled one: its "slowdown" is the noise floor of the row above it.

Sections (the issue's list):
 1 target slowdown: bare vs vmprof-attach (spawn and -p) vs py-spy (with
   and without --native) at 250 Hz and 1 kHz on Debian's python3.11, and
   bare vs in-process vmprof vs vmprof-attach on the venv's python (vmprof's
   wheel is built for that one);
 2 stop time per sample on a 30-deep mixed Python/C stack, next to the bare
   ptrace stop/continue cycle measured on the same machine; and the pause
   a sample costs the target as the target itself sees it (pause_probe.c,
   a native loop timing its own gaps, bare and profiled at 250 Hz, 1 kHz);
 3 1 busy + 100 / 1000 idle threads: attacher CPU and target slowdown;
 4 the highest rate one busy thread sustains with < 1% missed ticks;
 5 end of run: SIGINT to exit with >= 100k samples in the log;
 6 attacher peak memory over a 10-minute 1 kHz run, and bytes per sample.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as bl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SYS_PY = "/usr/bin/python3.11"
RATES = [(250, 0.004), (1000, 0.001)]
VMPROF_ATTEMPTS = 3
HALT_POLL = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"
HALT_POLL_DEFAULT = 200000      # the kernel's own default for cpuidle-haltpoll


class HaltPoll:
    """A KVM guest idles its vCPUs through cpuidle-haltpoll: poll up to
    guest_halt_poll_ns, then halt (exit to the host). Some cloud images set
    it to 0. Then the CPU of a thread we stop halts at once, and waking it
    at PTRACE_CONT goes through the host: measured here, ~40% of what a
    sample costs the target. Configurations marked "haltpoll" run with the
    kernel's default set for their run only, and the value is put back
    after each (the default is what stays if the benchmark is killed)."""

    def __init__(self):
        try:
            with open(HALT_POLL) as f:
                self.orig = int(f.read().strip())
        except (OSError, ValueError):
            self.orig = None
        self.usable = self.orig == 0 and os.access(HALT_POLL, os.W_OK)

    def describe(self):
        if self.orig is None:
            return "no cpuidle-haltpoll (not a KVM guest, or another idle driver)"
        if not self.usable:
            return f"cpuidle-haltpoll, guest_halt_poll_ns {self.orig}"
        return (f"cpuidle-haltpoll with guest_halt_poll_ns 0 (a stopped thread's vCPU halts "
                f"at once); rows marked \"halt polling\" ran with {HALT_POLL_DEFAULT}, the "
                "kernel's default, set for each of their runs")

    def _write(self, v):
        with open(HALT_POLL, "w") as f:
            f.write(str(v))

    @contextlib.contextmanager
    def on(self):
        self._write(HALT_POLL_DEFAULT)
        try:
            yield
        finally:
            self._write(self.orig)


class Ctx:
    """Paths, mode, and the rows of the table being built."""

    def __init__(self, a):
        self.attach = os.path.join(a.build, "attacher", "vmprof-attach")
        self.shim = os.path.join(a.build, "target-shim", "libvmprof-shim.so")
        self.floor = a.floor
        self.probe = a.probe
        self.venv_py = os.path.join(a.venv, "bin", "python")
        self.pyspy = os.path.join(a.venv, "bin", "py-spy")
        self.workload = os.path.join(HERE, "workload.py")
        self.deep = os.path.join(HERE, "deep.py")
        self.quick = a.quick
        self.rounds = a.rounds or (3 if a.quick else 5)
        self.units = a.units
        self.tmp = tempfile.mkdtemp(prefix="vmprof-bench-")
        self.rows = []
        self.errors = []
        self.own_errors = 0
        self.raw = {}
        self.seq = 0
        self.nice = a.nice
        self.crashes = {}       # config name -> runs that died of a signal
        self.loads = []         # 1-minute load average after every round
        self.halt = HaltPoll()

    def out(self, tag):
        self.seq += 1
        return os.path.join(self.tmp, f"{self.seq:04d}-{tag}")

    def env(self, preload=False):
        e = dict(os.environ)
        e["PYTHONDONTWRITEBYTECODE"] = "1"
        for k in ("PYTHONPATH", "PYTHONHOME", "LD_PRELOAD", "VIRTUAL_ENV"):
            e.pop(k, None)
        if preload:
            e["LD_PRELOAD"] = self.shim
        return e

    def attach_argv(self, interval, out, extra=()):
        return [self.attach, "--stats", "-q", "-i", str(interval), "-o", out, *extra]

    def row(self, sec, measure, config, value, runs, note="", target="—", result="—",
            adj="—"):
        self.rows.append((sec, measure, config, value, adj, runs, note, target, result))

    def error(self, where, e, peer=False):
        """Record a failed run; peer: a failure of vmprof or py-spy, not
        ours (listed, but the exit status stays 0)."""
        msg = f"{where}: {e}"
        self.errors.append(msg)
        if not peer:
            self.own_errors += 1
        print(f"bench: ERROR {msg}", file=sys.stderr, flush=True)


def py_version(py):
    try:
        r = subprocess.run([py, "--version"], capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or "python"
    except (OSError, subprocess.SubprocessError):
        return "python"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def pct(x, digits=1):
    return "n/a" if x is None else f"{x * 100:+.{digits}f}%"


def frac(x):
    return "n/a" if x is None else f"{x * 100:.2f}%"


def us(x):
    return "n/a" if x is None else f"{x:.0f}"


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return ""
    return f"{min(xs) * 100:+.1f}..{max(xs) * 100:+.1f}%"


# ---- one run of each kind -------------------------------------------------

def run_workload(c, cfg, extra_args=()):
    """Runs one configuration of the workload; returns a dict with the
    target's time and, for vmprof-attach, its stats and CPU share."""
    py = cfg["py"]
    work = [py, c.workload, "--units", str(c.units), *extra_args]
    kind = cfg["kind"]
    out = c.out(kind)
    if kind == "bare":
        r = bl.run(work, env=c.env())
    elif kind == "attach":
        r = bl.run(c.attach_argv(cfg["interval"], out, ["--shim", c.shim]) + ["--"] + work,
                   env=c.env())
    elif kind == "pyspy":
        argv = [c.pyspy, "record", "--rate", str(cfg["rate"]), "-o", out, "--format", "raw"]
        if cfg.get("native"):
            argv.append("--native")
        r = bl.run(argv + ["--"] + work, env=c.env())
    elif kind == "vmprof":
        # In-process vmprof 0.6.0 on CPython 3.11 dies of SIGSEGV in a good
        # share of runs (with or without native frames): retry, count.
        for attempt in range(VMPROF_ATTEMPTS):
            r = bl.run([py, "-m", "vmprof", "--period", str(cfg["interval"]), "-o", out,
                        *work[1:]], env=c.env())
            if r["rc"] >= 0:
                break
            c.crashes[cfg["name"]] = c.crashes.get(cfg["name"], 0) + 1
    elif kind == "attach-p":
        return run_attached(c, work, cfg["interval"], out)
    else:
        raise ValueError(kind)
    res = bl.parse_bench(r["out"])
    if r["rc"] != 0 or res is None:
        raise bl.RunError(f"exit {r['rc']}: {bl.tail(r['err'])}")
    if kind == "attach":
        res["stats"] = bl.parse_stats(r["err"])
    return res


def attached_run(c, target, env, interval, out, read, extra=()):
    """A target that follows workload.py's --wait-tracer protocol, under
    vmprof-attach -p; read(a) takes the target's figures while it runs
    (a: benchlib.Attached). Returns them with the attacher's "stats"."""
    a = bl.Attached(target, env, c.attach_argv(interval, out, extra), out + ".err")
    try:
        res = read(a)
        f = a.finish("target-exits")
    except Exception:
        a.kill()
        raise
    if f["rc"] != 0:
        raise bl.RunError(f"vmprof-attach exit {f['rc']}: {bl.tail(f['err'])}")
    res["stats"] = bl.parse_stats(f["err"])
    return res


def run_attached(c, work, interval, out, extra=()):
    return attached_run(c, work + ["--wait-tracer"], c.env(preload=True), interval, out,
                        lambda a: a.wait_target_time(), extra)


def alternate(c, section, configs, one_run):
    """Runs every config once per round, rotating the order each round
    (so no config always runs first, or always after the same one).
    Returns {config name: [result or None per round]}; each result holds
    "seq", its position in the whole sequence of runs."""
    res = {cfg["name"]: [] for cfg in configs}
    seq = 0
    for r in range(c.rounds):
        k = r % len(configs)
        for cfg in configs[k:] + configs[:k]:
            try:
                with c.halt.on() if cfg.get("haltpoll") else contextlib.nullcontext():
                    v = one_run(cfg)
                v["seq"] = seq
            except (bl.RunError, OSError) as e:
                c.error(f"section {section}, {cfg['name']}, round {r + 1}", e,
                        peer=cfg.get("kind") in ("vmprof", "pyspy"))
                v = None
            seq += 1
            res[cfg["name"]].append(v)
        c.loads.append(os.getloadavg()[0])
        log(f"section {section}: round {r + 1}/{c.rounds} done")
    c.raw[f"section{section}"] = res
    return res


def busy_time(v):
    """Wall time of the work minus the time it waited, runnable, for a
    CPU: what is left when other processes on a shared machine are taken
    out (tracer stops are kept: a stopped thread is not runnable)."""
    if not v or v.get("runq") is None:
        return None
    return v["time"] - v["runq"]


def slowdowns(res, name, bases, measure=lambda v: v["time"] if v else None):
    """profiled / baseline - 1 for every run of config name, on measure
    (wall time by default). The baseline is local in time: the mean of the
    nearest run of any config in bases before it and the nearest after it
    (load on a shared machine drifts over minutes; a bare run from the far
    end of a round would carry that drift into the ratio)."""
    base = sorted((v["seq"], measure(v)) for b in bases for v in res[b]
                  if v and measure(v) is not None)
    out = []
    for v in res[name]:
        if not v or not base or measure(v) is None:
            out.append(None)
            continue
        before = [t for s, t in base if s < v["seq"]]
        after = [t for s, t in base if s > v["seq"]]
        near = before[-1:] + after[:1]
        out.append(measure(v) / (sum(near) / len(near)) - 1)
    return out


def stat_median(runs, key):
    return bl.median([v["stats"].get(key) for v in runs if v and "stats" in v])


def missed_frac(v):
    """Missed share of the scheduled ticks. --stats counts the ticks that
    ran (ticks) and those skipped for lateness (missed_ticks) apart, so
    the scheduled ticks are their sum."""
    s = v.get("stats") if v else None
    if not s or not s.get("ticks"):
        return None
    missed = s.get("missed_ticks", 0)
    return missed / (s["ticks"] + missed)


def failures(runs):
    bad = sum(v is None for v in runs)
    return f"; {bad} of {len(runs)} runs failed (see Errors)" if bad else ""


# ---- sections ---------------------------------------------------------------

def section1(c):
    """Two groups, each alternated on its own: Debian's python3.11 (our
    attacher in both modes, py-spy with and without --native) and the
    venv's python (in-process vmprof, whose wheel is built for it, next to
    our attacher on the same interpreter). Each group runs its bare
    baseline twice per round, half a round apart, so every profiled run
    has a bare run close by; the second bare, measured against the first,
    is the noise floor."""
    log("section 1: target slowdown")
    sysc, venvc = [], []
    for hz, iv in RATES:
        sysc += [{"name": "bare" if hz == 250 else "bare-again", "py": SYS_PY, "kind": "bare"},
                 {"name": f"attach-{hz}", "py": SYS_PY, "kind": "attach", "interval": iv},
                 {"name": f"attach-p-{hz}", "py": SYS_PY, "kind": "attach-p", "interval": iv},
                 *([{"name": f"attach-p-{hz}-poll", "py": SYS_PY, "kind": "attach-p",
                     "interval": iv, "haltpoll": True}] if c.halt.usable else []),
                 {"name": f"pyspy-{hz}", "py": SYS_PY, "kind": "pyspy", "rate": hz},
                 {"name": f"pyspy-native-{hz}", "py": SYS_PY, "kind": "pyspy", "rate": hz,
                  "native": True}]
        venvc += [{"name": "v-bare" if hz == 250 else "v-bare-again", "py": c.venv_py,
                   "kind": "bare"},
                  {"name": f"v-vmprof-{hz}", "py": c.venv_py, "kind": "vmprof", "interval": iv},
                  {"name": f"v-attach-{hz}", "py": c.venv_py, "kind": "attach", "interval": iv}]
    if c.halt.usable:
        sysc.append({"name": "bare-poll", "py": SYS_PY, "kind": "bare", "haltpoll": True})
    res = alternate(c, "1 (Debian python)", sysc, lambda cfg: run_workload(c, cfg))
    res.update(alternate(c, "1 (venv python)", venvc, lambda cfg: run_workload(c, cfg)))

    def add(name, bases, label, target=None, limit=None):
        sd = slowdowns(res, name, bases)
        m = bl.median(sd)
        adj = bl.median(slowdowns(res, name, bases, busy_time))
        n = sum(x is not None for x in sd)
        note = f"range {spread(sd)}"
        runs = res[name]
        if any(v and "stats" in v for v in runs):
            note += (f"; stop p50/p99 {us(stat_median(runs, 'stop_us_p50'))}/"
                     f"{us(stat_median(runs, 'stop_us_p99'))} us; missed ticks "
                     f"{frac(bl.median([missed_frac(v) for v in runs]))}")
        share = bl.median([v.get("cpu_share") for v in runs if v])
        if share is not None:
            note += f"; attacher CPU {share * 100:.1f}% of a core"
        note += failures(runs)
        if c.crashes.get(name):
            note += (f"; crashed (signal) in {c.crashes[name]} runs, retried up to "
                     f"{VMPROF_ATTEMPTS} times")
        ok = None if limit is None or m is None else m <= limit
        c.row(1, "target slowdown", label, pct(m), n, note, target or "—",
              verdict(ok) if limit is not None else "—", adj=pct(adj))
        return m, n, adj

    def bare_median(*names):
        return bl.median([v["time"] for nm in names for v in res[nm] if v]) or 0

    sp, bases = f"Debian {py_version(SYS_PY)}", ["bare", "bare-again"]
    add("bare-again", ["bare"], f"{sp}: bare vs bare (noise floor; bare median "
        f"{bare_median(*bases):.2f} s)")
    if c.halt.usable:
        add("bare-poll", bases, f"{sp}: bare, guest halt polling on, vs bare")
    for hz, _ in RATES:
        lim = 0.01 if hz == 250 else 0.03
        tgt = f"<= {lim * 100:.0f}%"
        ours, n1, ours_adj = add(f"attach-{hz}", bases, f"{sp}: vmprof-attach {hz} Hz (spawn)",
                                 tgt, lim)
        add(f"attach-p-{hz}", bases, f"{sp}: vmprof-attach -p {hz} Hz", tgt, lim)
        if c.halt.usable:
            add(f"attach-p-{hz}-poll", bases,
                f"{sp}: vmprof-attach -p {hz} Hz, guest halt polling on")
        add(f"pyspy-{hz}", bases, f"{sp}: py-spy record {hz} Hz")
        theirs, n2, theirs_adj = add(f"pyspy-native-{hz}", bases,
                                     f"{sp}: py-spy record --native {hz} Hz")
        ok = None if ours is None or theirs is None else ours < theirs
        c.row(1, "below py-spy --native", f"{sp}: vmprof-attach vs py-spy --native, {hz} Hz",
              f"{pct(ours)} vs {pct(theirs)}", min(n1, n2), "", "attach < py-spy --native",
              verdict(ok), adj=f"{pct(ours_adj)} vs {pct(theirs_adj)}")
    vp, vbases = f"venv {py_version(c.venv_py)}", ["v-bare", "v-bare-again"]
    add("v-bare-again", ["v-bare"], f"{vp}: bare vs bare (noise floor; bare median "
        f"{bare_median(*vbases):.2f} s)")
    for hz, _ in RATES:
        lim = 0.01 if hz == 250 else 0.03
        add(f"v-vmprof-{hz}", vbases, f"{vp}: vmprof in-process (its default, native on) {hz} Hz")
        add(f"v-attach-{hz}", vbases, f"{vp}: vmprof-attach {hz} Hz (spawn)",
            f"<= {lim * 100:.0f}%", lim)


def floor_run(c):
    if not c.floor or not os.path.exists(c.floor):
        raise bl.RunError("ptrace_floor not built")
    r = bl.run([c.floor, "1000" if c.quick else "2000"])
    if r["rc"] != 0:
        raise bl.RunError(bl.tail(r["err"]))
    return {"stats": bl.parse_stats(r["out"], "floor_us_p50=")}


def probe_run(c, interval):
    """pause_probe bare (interval None) or under vmprof-attach -p: the time
    it lost in gaps, its gap count, and for the profiled run the stops
    made while it measured (the run's stops scaled to its measuring
    window: the attacher also stops it before it says "go")."""
    if not c.probe or not os.path.exists(c.probe):
        raise bl.RunError("pause_probe not built")
    secs = 3 if c.quick else 6

    def parse(line):
        f = line.split()
        if len(f) < 5:
            raise bl.RunError(f"bad probe line: {line!r}")
        return {"lost_ns": float(f[1]), "gaps": float(f[2]), "secs": secs}
    if interval is None:
        r = bl.run([c.probe, str(secs)])
        line = next((x for x in r["out"].splitlines() if x.startswith("probe-lost")), "")
        if r["rc"] != 0 or not line:
            raise bl.RunError(f"exit {r['rc']}: {bl.tail(r['err'])}")
        return parse(line)
    t0 = time.monotonic()

    def read(a):
        got = parse(a.lines.until("probe-lost", secs + 60))
        t_end = time.monotonic()
        got["window"] = (t_end - a.go) / max(t_end - t0, 1e-9)
        return got
    got = attached_run(c, [c.probe, str(secs), "--wait-tracer"], c.env(), interval,
                       c.out("probe"), read)
    got["stops"] = got["stats"].get("stops", 0) * got.pop("window")
    return got


def probe_rows(c):
    """Section 2's second half: the pause per sample as the target sees it,
    and (where the platform allows) the same with guest halt polling on."""
    polls = ["", "-poll"] if c.halt.usable else [""]
    configs = [{"name": f"probe-{round(1 / iv) if iv else 'bare'}{p}", "interval": iv,
                "haltpoll": p != ""}
               for p in polls for iv in [None] + [iv for _, iv in RATES]]
    res = alternate(c, "2 (pause probe)", configs, lambda cfg: probe_run(c, cfg["interval"]))
    for p in polls:
        for hz, _ in RATES:
            probe_row(c, res, hz, p)


def probe_row(c, res, hz, p):
    """One rate's row; p "-poll": runs with guest halt polling on, against
    bare runs with it on."""
    bare = bl.median([v["lost_ns"] / v["secs"] for v in res[f"probe-bare{p}"] if v])
    runs = [v for v in res[f"probe-{hz}{p}"] if v]
    pause = None if bare is None else bl.median(
        [(v["lost_ns"] / v["secs"] - bare) * v["secs"] / v["stops"] / 1e3
         for v in runs if v["stops"] > 0])
    lost = bl.median([v["lost_ns"] / v["secs"] / 1e7 for v in runs])
    note = ("as the target sees it: a native loop's time lost in gaps > 2 us, less "
            "its bare runs', per stop (the stop the attacher times plus the trap into "
            "it, the CPU's wake-up after it and the clock-read interrupts)")
    note += f"; attacher's stop p50 {us(stat_median(runs, 'stop_us_p50'))} us"
    if lost is not None and bare is not None:
        note += f"; the loop lost {lost:.2f}% of its time ({bare / 1e7:.2f}% bare)"
    note += failures(res[f"probe-{hz}{p}"])
    where = ", guest halt polling on" if p else ""
    c.row(2, "target's pause per sample", f"native loop, -p, {hz} Hz{where}",
          "n/a" if pause is None else f"{pause:.0f} us", len(runs), note)


def section2(c):
    log("section 2: stop time, 30-deep mixed stack")
    secs = 4 if c.quick else 8

    def one(cfg):
        if cfg["kind"] == "floor":
            return floor_run(c)
        out = c.out("deep")
        r = bl.run(c.attach_argv(0.004, out, ["--shim", c.shim]) +
                   ["--", SYS_PY, c.deep, "--depth", "30", "--seconds", str(secs)], env=c.env())
        if r["rc"] != 0:
            raise bl.RunError(f"exit {r['rc']}: {bl.tail(r['err'])}")
        return {"stats": bl.parse_stats(r["err"])}

    configs = [{"name": "deep", "kind": "deep"}, {"name": "floor", "kind": "floor"}]
    if c.halt.usable:
        configs.append({"name": "deep-poll", "kind": "deep", "haltpoll": True})
    res = alternate(c, 2, configs, one)
    d, f = res["deep"], res["floor"]
    n = sum(v is not None for v in d)
    p50, p99 = stat_median(d, "stop_us_p50"), stat_median(d, "stop_us_p99")
    mx = stat_median(d, "stop_us_max")
    stops = stat_median(d, "stops")
    fp50, fp99 = stat_median(f, "floor_us_p50"), stat_median(f, "floor_us_p99")
    pp50, pp99 = stat_median(f, "polled_us_p50"), stat_median(f, "polled_us_p99")

    def floor_note(v, pv):
        # the bare cycle, sleeping in waitpid and (as vmprof-attach) polling
        if v is None:
            return ""
        return f"bare ptrace cycle here: {v:.0f} us" + ("" if pv is None else
                                                       f" ({pv:.0f} us polling)")
    fnote = floor_note(fp50, pp50)
    fail = failures(d)
    # where a stop's time goes: the phases' medians (of each run's p50)
    ph = [(k, stat_median(d, f"{k}_us_p50")) for k in ("wait", "copy", "vm", "resume")]
    pnote = "" if any(v is None for _, v in ph) else \
        "phases p50 " + ", ".join(f"{k} {v:.0f}" for k, v in ph) + " us"
    c.row(2, "stop time p50", f"30-deep Python/C stack, 250 Hz, {secs} s",
          "n/a" if p50 is None else f"{p50:.0f} us", n,
          "; ".join(x for x in (fnote, pnote, f"median stops/run {stops or 0:.0f}") if x) + fail,
          "<= 40 us", verdict(None if p50 is None else p50 <= 40))
    c.row(2, "stop time p99", f"30-deep Python/C stack, 250 Hz, {secs} s",
          "n/a" if p99 is None else f"{p99:.0f} us", n,
          "; ".join(x for x in (floor_note(fp99, pp99),
                                "" if mx is None else f"median max {mx:.0f} us") if x) + fail,
          "<= 150 us", verdict(None if p99 is None else p99 <= 150))
    if c.halt.usable:
        dp = res["deep-poll"]
        ph = [(k, stat_median(dp, f"{k}_us_p50")) for k in ("wait", "copy", "vm", "resume")]
        pp50, pp99 = stat_median(dp, "stop_us_p50"), stat_median(dp, "stop_us_p99")
        c.row(2, "stop time p50/p99", f"30-deep Python/C stack, 250 Hz, {secs} s, guest halt "
              "polling on", "n/a" if pp50 is None or pp99 is None else
              f"{pp50:.0f}/{pp99:.0f} us", sum(v is not None for v in dp),
              ("" if any(v is None for _, v in ph) else "phases p50 " +
               ", ".join(f"{k} {v:.0f}" for k, v in ph) + " us") + failures(dp))
    probe_rows(c)


def section3(c):
    log("section 3: idle threads")
    configs = []
    for idle in (100, 1000):
        configs += [{"name": f"bare-{idle}", "py": SYS_PY, "kind": "bare", "idle": idle},
                    {"name": f"attach-p-{idle}", "py": SYS_PY, "kind": "attach-p",
                     "interval": 0.004, "idle": idle}]
    if c.halt.usable:
        configs.append({"name": "attach-p-1000-poll", "py": SYS_PY, "kind": "attach-p",
                        "interval": 0.004, "idle": 1000, "haltpoll": True})
    res = alternate(c, 3, configs,
                    lambda cfg: run_workload(c, cfg, ["--idle", str(cfg["idle"])]))
    for idle in (100, 1000):
        runs = res[f"attach-p-{idle}"]
        sd = slowdowns(res, f"attach-p-{idle}", [f"bare-{idle}"])
        adj = bl.median(slowdowns(res, f"attach-p-{idle}", [f"bare-{idle}"], busy_time))
        share = bl.median([v["cpu_share"] for v in runs if v])
        m = bl.median(sd)
        n = sum(x is not None for x in sd)
        strict = idle == 1000
        c.row(3, "attacher CPU", f"1 busy + {idle} idle threads, -p, 250 Hz",
              "n/a" if share is None else f"{share * 100:.1f}% of a core", n,
              "during the timed work (schedstat)", "<= 5%" if strict else "—",
              verdict(None if share is None else share <= 0.05) if strict else "—")
        c.row(3, "target slowdown", f"1 busy + {idle} idle threads, -p, 250 Hz", pct(m), n,
              f"range {spread(sd)}{failures(runs)}", "<= 1%" if strict else "—",
              verdict(None if m is None else m <= 0.01) if strict else "—", adj=pct(adj))
    if c.halt.usable:
        name = "attach-p-1000-poll"
        sd = slowdowns(res, name, ["bare-1000"])
        share = bl.median([v["cpu_share"] for v in res[name] if v])
        c.row(3, "target slowdown", "1 busy + 1000 idle threads, -p, 250 Hz, guest halt "
              "polling on", pct(bl.median(sd)), sum(x is not None for x in sd),
              f"range {spread(sd)}; attacher CPU "
              f"{'n/a' if share is None else f'{share * 100:.1f}%'} of a core"
              f"{failures(res[name])}",
              adj=pct(bl.median(slowdowns(res, name, ["bare-1000"], busy_time))))


def section4(c):
    log("section 4: highest sustained rate")
    rates = [(1000, 0.001), (2000, 0.0005), (5000, 0.0002), (10000, 0.0001)]
    configs = [{"name": f"attach-{hz}", "py": SYS_PY, "kind": "attach", "interval": iv}
               for hz, iv in rates]
    configs.insert(0, {"name": "bare", "py": SYS_PY, "kind": "bare"})
    configs.insert(3, {"name": "bare-again", "py": SYS_PY, "kind": "bare"})
    res = alternate(c, 4, configs, lambda cfg: run_workload(c, cfg))
    best = None
    for hz, _ in rates:
        runs = res[f"attach-{hz}"]
        mf = bl.median([missed_frac(v) for v in runs])
        sd = bl.median(slowdowns(res, f"attach-{hz}", ["bare", "bare-again"]))
        sd_adj = bl.median(slowdowns(res, f"attach-{hz}", ["bare", "bare-again"], busy_time))
        rate = bl.median([v["stats"]["samples"] / v["time"] for v in runs
                          if v and v.get("stats", {}).get("samples")])
        n = sum(v is not None for v in runs)
        ok = None if mf is None else mf < 0.01
        if ok and best is None or ok and hz > best:
            best = hz
        raw = bl.median([v["stats"]["missed_ticks"] / v["stats"]["ticks"] for v in runs
                         if v and v.get("stats", {}).get("ticks")])
        note = (f"missed_ticks/ticks {frac(raw)}; stop p50/p99 "
                f"{us(stat_median(runs, 'stop_us_p50'))}/{us(stat_median(runs, 'stop_us_p99'))}"
                f" us; ~{rate or 0:.0f} samples/s; target slowdown {pct(sd)} ({pct(sd_adj)} "
                f"excluding CPU wait){failures(runs)}")
        c.row(4, "missed ticks (of scheduled)", f"1 busy thread, {hz} Hz (-i {1 / hz:g})",
              frac(mf), n, note, "< 1%", verdict(ok))
    c.row(4, "highest sustained rate", "1 busy thread, < 1% missed ticks",
          "none" if best is None else f"{best} Hz", c.rounds, "tried 1, 2, 5, 10 kHz",
          "10 kHz", verdict(best is not None and best >= 10000))


def section5(c):
    """SIGINT to exit with >= 100k samples in the log. Wall mode makes the
    sample count depend on ticks, not on how much CPU a loaded machine
    gives the target: 1 busy + 4 idle threads at 2 kHz, about 10k samples
    a second. The run is stopped when the log has grown to the size of
    100k samples (bytes per sample learned from the run before; a generous
    guess for the first)."""
    log("section 5: end of run")
    want, hz, idle, cap_s = 100_000, 2000, 4, 600
    bps = [150.0]               # log bytes per sample, learned

    def one(cfg):
        out = c.out("end")
        work = [SYS_PY, c.workload, "--forever", "--idle", str(idle), "--wait-tracer"]
        a = bl.Attached(work, c.env(preload=True),
                        c.attach_argv(1 / hz, out, ["--mode", "wall"]), out + ".err")
        try:
            goal, t0 = want * 1.1 * bps[0], time.monotonic()
            while os.path.getsize(out) < goal and time.monotonic() - t0 < cap_s:
                if a.attacher.poll() is not None:
                    break
                time.sleep(0.25)
            ran = time.monotonic() - t0
            f = a.finish("sigint")
        except Exception:
            a.kill()
            raise
        if f["rc"] != 0:
            raise bl.RunError(f"vmprof-attach exit {f['rc']}: {bl.tail(f['err'])}")
        st = bl.parse_stats(f["err"])
        got = st.get("samples", 0)
        size = os.path.getsize(out)
        if got:
            bps[0] = size / got
        return {"end_s": f["end_s"], "samples": got, "bytes": size, "ran_s": ran,
                "stats": st}

    res = alternate(c, 5, [{"name": "end"}], one)["end"]
    ok_runs = [v for v in res if v and v["samples"] >= want]
    m = bl.median([v["end_s"] for v in ok_runs])
    allm = bl.median([v["end_s"] for v in res if v])
    samples = bl.median([v["samples"] for v in res if v])
    size = bl.median([v["bytes"] for v in res if v])
    ran = bl.median([v["ran_s"] for v in res if v])
    note = (f"wall mode, 1 busy + {idle} idle threads, {hz} Hz, median run {ran or 0:.0f} s, "
            f"{samples or 0:.0f} samples, {(size or 0) / 1e6:.1f} MB log")
    if len(ok_runs) < len([v for v in res if v]):
        note += f"; {len(ok_runs)} runs reached {want} samples (all runs: {allm or 0:.2f} s)"
    c.row(5, "end of run", "SIGINT to exit, log with >= 100k samples",
          "n/a" if m is None else f"{m:.2f} s", len(ok_runs), note, "<= 1 s",
          verdict(None if m is None else m <= 1.0))


def section6(c):
    dur = 60 if c.quick else 600
    log(f"section 6: memory, {dur} s at 1 kHz")
    out = c.out("mem")
    work = [SYS_PY, c.workload, "--forever", "--wait-tracer"]
    hwm = {}                # VmHWM polled while sampling: at 10% and last seen

    def poll(pid):
        v = bl.rss_kib(pid, "VmHWM")
        if v is None:
            return
        if time.monotonic() - t0 <= dur * 0.1 + 1:
            hwm["early"] = v
        hwm["last"] = v

    try:
        a = bl.Attached(work, c.env(preload=True),
                        c.attach_argv(0.001, out, ["-d", str(dur)]), out + ".err",
                        timeout=dur + 300)
        t0 = time.monotonic()
        try:
            f = a.finish("duration", poll_rss=poll)
        except Exception:
            a.kill()
            raise
        if f["rc"] != 0:
            raise bl.RunError(f"vmprof-attach exit {f['rc']}: {bl.tail(f['err'])}")
    except (bl.RunError, OSError) as e:
        c.error("section 6", e)
        c.row(6, "attacher peak memory", f"1 kHz, {dur} s", "ERROR", 0)
        return
    st = bl.parse_stats(f["err"])
    ru = f["ru"]
    size = os.path.getsize(out)
    samples = st.get("samples", 0)
    cpu = (ru.ru_utime + ru.ru_stime) / dur
    c.raw["section6"] = {"stats": st, "maxrss_kib": ru.ru_maxrss, "hwm_kib": hwm,
                         "bytes": size, "cpu_s": ru.ru_utime + ru.ru_stime}
    label = f"1 busy thread, 1 kHz, {dur} s" + (" (--quick: 60 s, not 10 min)" if c.quick else "")
    c.row(6, "attacher peak memory", label, f"{ru.ru_maxrss / 1024:.1f} MiB", 1,
          f"peak while sampling: {hwm.get('early', 0) / 1024:.1f} MiB after 10% of the run, "
          f"{hwm.get('last', 0) / 1024:.1f} MiB at its end (the rest is the end of run: "
          f"symbols); attacher CPU "
          f"{cpu * 100:.1f}% of a core; {samples:.0f} samples; missed ticks "
          f"{frac(missed_frac({'stats': st}))}")
    c.row(6, "log bytes per sample", label,
          "n/a" if not samples else f"{size / samples:.1f} B", 1,
          f"{size / 1e6:.1f} MB log")


# ---- output -----------------------------------------------------------------

def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return cpu, os.cpu_count()


def tool_versions(c):
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"
    vm = first([c.venv_py, "-c", "import importlib.metadata as m; print(m.version('vmprof'))"])
    git = first(["git", "-C", os.path.dirname(os.path.dirname(HERE)), "describe",
                 "--always", "--dirty"])
    return {"vmprof-attach": f"{first([c.attach, '--version']).split()[-1]} ({git})",
            "py-spy": first([c.pyspy, "--version"]).split()[-1], "vmprof": vm,
            "Debian python": first([SYS_PY, "--version"]),
            "venv python": first([c.venv_py, "--version"])}


def render(c, started, load0, elapsed):
    cpu, ncpu = machine()
    load1 = os.getloadavg()
    v = tool_versions(c)
    lines = [
        "## vmprof-attach benchmark",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; mode: {'quick' if c.quick else 'full'}; "
        f"{c.rounds} alternated rounds per section; took {elapsed / 60:.1f} min",
        f"- machine: {cpu}, {ncpu} cores; kernel {platform.release()}; idle: "
        f"{c.halt.describe()}",
        "- " + "; ".join(f"{k} {val}" for k, val in v.items()),
        f"- workload: tests/bench/workload.py --units {c.units} (mixed pure-Python recursion, "
        "C calling back into Python, native zlib/sha256/json), timing itself",
        "- slowdown = profiled time / mean of the nearest bare runs before and after - 1; "
        "medians over rounds, with their range. \"Excl. CPU wait\": the same on the time "
        "the target was not waiting, runnable, for a CPU (schedstat run_delay): other "
        "processes' load taken out, tracer stops kept. Result judges the wall-time median",
    ]
    if c.nice:
        lines.append(f"- every process of the benchmark ran at nice {c.nice}")
    loads = [load0[0], *c.loads, load1[0]]
    if loads:
        lines.append(f"- 1-minute load average during the run (after each round): min "
                     f"{min(loads):.2f}, median {bl.median(loads):.2f}, max {max(loads):.2f}")
    if bl.median(loads) > 0.5 * (ncpu or 1):
        lines.append(f"- WARNING: the machine was busy (median load {bl.median(loads):.1f} on "
                     f"{ncpu} cores): stop times, missed ticks and wall-time slowdowns include "
                     "waiting for a CPU; compare with a run on an idle machine")
    lines += [
        "",
        "| # | Measure | Configuration | Median | Excl. CPU wait | Runs | Notes | Target "
        "| Result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for sec, measure, config, value, adj, runs, note, target, result in c.rows:
        lines.append(f"| {sec} | {measure} | {config} | {value} | {adj} | {runs} | {note} | "
                     f"{target} | {result} |")
    if c.errors:
        lines += ["", "Errors during the run:", ""] + [f"- {e}" for e in c.errors]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--floor", default="")
    ap.add_argument("--probe", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="")
    ap.add_argument("--raw", default="", help="also write every run's numbers as JSON here")
    ap.add_argument("--rounds", type=int, default=0, help="override the number of rounds")
    ap.add_argument("--units", type=int, default=300, help="work units per workload run")
    ap.add_argument("--only", default="1,2,3,4,5,6", help="sections to run, e.g. 1,3")
    ap.add_argument("--nice", type=int, default=0,
                    help="run every process of the benchmark at this nice value (e.g. -5 "
                         "on a shared machine; negative needs root); said in the table")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the 1-minute load average to fall "
                         "below half the cores")
    a = ap.parse_args()
    c = Ctx(a)
    if a.nice:
        os.setpriority(os.PRIO_PROCESS, 0, a.nice)
    if a.wait_idle > 0:
        end = time.monotonic() + a.wait_idle
        while os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1) and time.monotonic() < end:
            log(f"waiting for an idle machine (load {os.getloadavg()[0]:.1f})")
            time.sleep(15)
    for p in (c.attach, c.shim, c.venv_py, c.pyspy, SYS_PY):
        if not os.path.exists(p):
            sys.exit(f"bench: missing {p}: run tests/bench/run (it builds and installs)")
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    sections = {"1": section1, "2": section2, "3": section3, "4": section4, "5": section5,
                "6": section6}
    try:
        for s in a.only.split(","):
            sections[s.strip()](c)
    except KeyboardInterrupt:
        c.error("interrupted", "table is partial")
    text = render(c, started, load0, time.monotonic() - t0)
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.raw:
        with open(a.raw, "w") as f:
            json.dump(c.raw, f, indent=1, default=str)
    shutil.rmtree(c.tmp, ignore_errors=True)
    return 1 if c.own_errors else 0


if __name__ == "__main__":
    sys.exit(main())
