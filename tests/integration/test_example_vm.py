"""The example VM (tests/targets/example_vm.c), which links the shim and
uses its C API (vmprof_shim.h): its profile, taken from outside with -p,
has the VM's own interpreter name and code names, the CPU shares the VM
measures itself (within 3 points), and the exact order of a VM -> C -> VM
callback, sample by sample."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "cpython"))
from conftest import SRC, attach, target  # noqa: E402
import pyprof  # noqa: E402
from pyprof import names  # noqa: E402

SOURCE = os.path.join(SRC, "tests/targets/example_vm.c")


def vm_facts():
    """From the VM's source: its name, its code names, the recursion depth."""
    src = open(SOURCE).read()
    vm_name = re.search(r'vmprof_shim_init\("([^"]+)"', src).group(1)
    codes = set(re.findall(r'\.name = "([^"]+)"', src))
    depth = int(re.search(r"#define DEPTH\s+(\d+)", src).group(1))
    assert vm_name and len(codes) >= 5 and depth > 0
    return vm_name, codes, depth


def run_vm(tmp_path, targets, seconds, extra=()):
    t = targets([target("example_vm"), str(seconds)], ready="example_vm pid=")
    out = tmp_path / "vm.prof"
    r = attach(["-p", str(t.pid), "-o", str(out), "--stats"] + list(extra), timeout=120)
    assert r.returncode == 0, r.stderr
    assert t.wait(timeout=30) == 0
    printed = {}
    for line in t.p.stdout.read().splitlines():
        if line.startswith("example_vm share "):
            printed = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    assert set(printed) == {"hot", "cold", "cold_native"}, printed
    return out, r, printed


def test_shares_names_and_callback_order(tmp_path, targets):
    vm_name, codes, depth = vm_facts()
    out, r, printed = run_vm(tmp_path, targets, 6, ["-i", "0.002"])
    mode, interp = pyprof.header(str(out))
    assert interp == vm_name
    stats, samples = pyprof.read_samples(str(out))
    vm_lang = {c.split(":")[0] for c in codes}
    registered = {v for v in stats.adr_dict.values() if v.split(":")[0] in vm_lang}
    assert registered and registered <= codes, (registered, codes)

    pool = [s for s in samples if pyprof.contains(s[0], "round")]
    assert len(pool) > 0.95 * len(samples) and len(pool) > 400, (len(pool), len(samples))
    # the VM's shares are fractions of the time in hot + cold
    timed = [s for s in pool if pyprof.contains(s[0], "hot") or pyprof.contains(s[0], "cold")]
    got = {
        "hot": pyprof.share(timed, "hot"),
        "cold": pyprof.share(timed, "cold"),
        # the bridge's own native work, not its callback into the VM
        "cold_native": sum(1 for fr, _ in timed if pyprof.contains(fr, "cold")
                           and fr[-1][0] == "n") / len(timed),
    }
    pyprof.log_report("example_vm accuracy", " ".join(
        f"{k} profile={got[k]:.3f} vm={printed[k]:.3f}" for k in got))
    pyprof.log_report("stop times example_vm", r.stderr.splitlines()[-1])
    for k in got:
        assert abs(got[k] - printed[k]) <= 0.03, (k, got[k], printed[k])

    # VM -> C -> VM, exactly: the bridge sits between cold and its callback.
    # The innermost cold_cb does all the work; a sample can still land in
    # an outer one for the few instructions of its call (rare, but a
    # correct sample): the chain is then shorter, never in another order.
    bridge = ["main", "round", "cold", "example_bridge"]
    in_cb = [fr for fr, _ in pool if pyprof.contains(fr, "cold_cb")]
    assert len(in_cb) > 50, len(in_cb)
    full = 0
    for fr in in_cb:
        k = len(fr) - len(bridge)
        assert 1 <= k <= depth + 1 and names(fr) == bridge + ["cold_cb"] * k, names(fr)
        assert fr[3][0] == "n" and fr[3][3].endswith("example_vm_ext.c"), fr[3]
        full += k == depth + 1
    assert full >= 0.9 * len(in_cb), (full, len(in_cb))
    native = [fr for fr, _ in pool if pyprof.contains(fr, "cold") and fr[-1][0] == "n"]
    for fr in native:
        assert names(fr)[:4] == ["main", "round", "cold", "example_bridge"], names(fr)
        assert not any(f[0] != "n" for f in fr[4:]), names(fr)
    for fr, _ in pool:
        if pyprof.contains(fr, "hot"):
            assert names(fr) == ["main", "round", "hot"], names(fr)
