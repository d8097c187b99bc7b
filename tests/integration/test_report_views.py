"""vmprof-report's views on every log of the shared corpus and on logs
vmprof-attach writes of the demo workload (with and without --lines):

- collapsed stacks: well-formed lines whose counts add up to the log's
  sample count (vmprof's own reader counts them; for the 2015 logs it
  cannot read, a walk of the records written here);
- speedscope JSON: the file format's structure, and the same stacks and
  counts as the collapsed view;
- the SVG flame graph: parses as XML, loads nothing from outside, one frame
  per stack prefix with a tooltip; headless Chromium renders it to a
  picture that is not blank, and its script zooms and searches;
- the text views print and the selections (--thread, --lines) behave.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from collections import Counter

import pytest

from conftest import ATTACH, REPORT, SRC

CORPUS = os.path.normpath(os.path.join(SRC, "..", "shared", "corpus"))
SVG = "{http://www.w3.org/2000/svg}"
DEMO = os.path.join(SRC, "tests", "targets", "demo.py")
SCHEMA = "https://www.speedscope.app/file-format-schema.json"


# ---- logs -------------------------------------------------------------------

def legacy_sample_count(path):
    """Stack records of a 2015 vmprof log (8-byte words, version 0), counted
    by walking its records: the legacy name record (0x04), stacks (0x01:
    count, depth, depth words), names (0x02), the trailer (0x03)."""
    data = open(path, "rb").read()
    pos, n = 40, 0
    word = lambda at: struct.unpack_from("<q", data, at)[0]
    while pos < len(data):
        m = data[pos]
        pos += 1
        if m == 0x03:
            break
        if m == 0x04:
            pos += 1 + data[pos]
        elif m == 0x01:
            depth = word(pos + 8)
            pos += 16 + 8 * depth
            n += 1
        elif m == 0x02:
            pos += 8
            pos += 8 + word(pos)
        else:
            raise AssertionError(f"{path}: marker {m:#x} at {pos - 1}")
    return n


def sample_count(path):
    try:
        import vmprof
        return len(vmprof.read_profile(path).profiles)
    except Exception:           # vmprof 0.4 cannot read the 2015 logs
        return legacy_sample_count(path)


def period_usec(path):
    with open(path, "rb") as f:
        return struct.unpack("<5q", f.read(40))[3]


@pytest.fixture(scope="module")
def demo_logs(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    logs = {}
    for name, extra in (("demo.prof", []), ("demo-lines.prof", ["--lines"])):
        path = str(d / name)
        r = subprocess.run([ATTACH, "-q", "-o", path] + extra +
                           ["--", "/usr/bin/python3.11", DEMO, "2"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        logs[name] = path
    return logs


LOGS = sorted(f for f in os.listdir(CORPUS) if f.endswith(".prof")) + \
    ["demo.prof", "demo-lines.prof"]


@pytest.fixture(params=LOGS)
def log(request):
    if request.param.startswith("demo"):
        return request.getfixturevalue("demo_logs")[request.param]
    return os.path.join(CORPUS, request.param)


def has_lines(path):
    return "lines" in os.path.basename(path)


def report(*args, ok=True):
    r = subprocess.run([REPORT] + list(args), capture_output=True, text=True,
                       timeout=120)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


# ---- collapsed and speedscope ---------------------------------------------------

def collapsed(*args):
    stacks = Counter()
    for line in report(*args, "--collapsed").stdout.splitlines():
        m = re.fullmatch(r"(\S.*) (\d+)", line)
        assert m, f"not a collapsed line: {line!r}"
        frames = m.group(1).split(";")
        assert all(frames), f"empty frame in {line!r}"
        stacks[tuple(frames)] += int(m.group(2))
    return stacks


def test_collapsed_counts_add_up(log):
    n = sample_count(log)
    stacks = collapsed(log)
    assert sum(stacks.values()) == n
    if has_lines(log):
        assert sum(collapsed(log, "--lines").values()) == n


def frame_display(fr, lines):
    """A speedscope frame as vmprof-report's display name."""
    name, file, line = fr["name"], fr.get("file", ""), fr.get("line", 0)
    if lines and line and name.endswith(f":{line}"):
        name = name[: -len(f":{line}")]
    if not file:
        return f"{name} (line {line})" if line else name
    return f"{name} ({file}:{line})" if line else f"{name} ({file})"


def speedscope_stacks(log, *args, lines=False, tmp):
    out = str(tmp / "profile.json")
    report(log, "--speedscope", out, *args)
    with open(out) as f:
        doc = json.load(f)
    assert doc["$schema"] == SCHEMA
    frames = doc["shared"]["frames"]
    assert all(isinstance(fr["name"], str) and fr["name"] for fr in frames)
    assert doc["profiles"] and doc["activeProfileIndex"] == 0
    period = period_usec(log)
    stacks = Counter()
    for prof in doc["profiles"]:
        assert prof["type"] == "sampled"
        assert prof["unit"] in ("microseconds", "none")
        each = period if prof["unit"] == "microseconds" else 1
        assert len(prof["samples"]) == len(prof["weights"])
        assert sum(prof["weights"]) == prof["endValue"] - prof["startValue"]
        for stack, w in zip(prof["samples"], prof["weights"]):
            assert w > 0 and w % each == 0
            assert all(0 <= i < len(frames) for i in stack)
            names = tuple(frame_display(frames[i], lines) for i in stack)
            stacks[names] += w // each
    return stacks


def test_speedscope_matches_collapsed(log, tmp_path):
    want = collapsed(log)
    assert speedscope_stacks(log, tmp=tmp_path) == want
    if has_lines(log):
        assert speedscope_stacks(log, "--lines", lines=True, tmp=tmp_path) == \
            collapsed(log, "--lines")


# ---- the flame graph ----------------------------------------------------------

def flamegraph(log, tmp, *args):
    out = str(tmp / "flame.svg")
    report(log, "--flamegraph", out, *args)
    return out


def test_flamegraph_is_self_contained_xml(log, tmp_path):
    path = flamegraph(log, tmp_path)
    root = ET.parse(path).getroot()          # raises if not well-formed
    assert root.tag == SVG + "svg"
    for el in root.iter():
        for k, v in el.attrib.items():
            assert "href" not in k, f"{el.tag} links {v}"
            assert "url(" not in v and "http" not in v, f"{el.tag} {k}={v}"
    assert len(root.findall(SVG + "script")) == 1
    text = open(path, encoding="utf-8").read()
    assert "@import" not in text and "src=" not in text
    frames = [g for g in root.iter(SVG + "g") if "f" in g.get("class", "").split()]
    rootf = [g for g in frames if "root" in g.get("class").split()]
    assert len(rootf) == 1 and int(rootf[0].get("data-n")) == sample_count(log)
    for g in frames:
        title = g.find(SVG + "title").text
        name, counts = title.split("\n", 1)
        assert name and re.match(r"\d+ samples?, \d+\.\d\d%", counts), title
        assert g.find(SVG + "rect") is not None and g.find(SVG + "text") is not None
    # every collapsed stack prefix wide enough is a frame: at least the
    # outermost callers are all there
    outer = {s[0] for s in collapsed(log)}
    names = {g.find(SVG + "title").text.split("\n")[0] for g in frames}
    assert len(frames) > 1 and outer & names


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("chromium is not installed (tests/setup installs it)")


def run_chromium(args, tmp, timeout=120):
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium'}"] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def png_pixels(path):
    """(width, height, list of pixel byte strings) of an 8-bit RGB(A) PNG,
    decoded with zlib and the PNG filters (no imaging library needed)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8: pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, hdr
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, pixels = bytearray(stride), []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1: (y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        pixels += [bytes(line[i:i + 3]) for i in range(0, stride, bpp)]
        prev = line
    return w, h, pixels


def test_flamegraph_renders_in_chromium(demo_logs, tmp_path):
    svg = flamegraph(demo_logs["demo.prof"], tmp_path)
    png = tmp_path / "shot.png"
    r = run_chromium([f"--screenshot={png}", "--window-size=1200,800",
                      "file://" + svg], tmp_path)
    assert png.exists(), r.stderr[-2000:]
    w, h, px = png_pixels(str(png))
    assert (w, h) == (1200, 800)
    colours = Counter(px)
    background, most = colours.most_common(1)[0]
    # frames in many shades of the two palettes, and a real share of the
    # picture that is not the background
    assert len(colours) >= 20, f"{len(colours)} colours"
    assert len(px) - most >= 0.10 * len(px), f"{most} of {len(px)} background"
    warm = sum(c for p, c in colours.items() if p[0] > 200 and p[2] < 150)
    assert warm >= 0.05 * len(px), "no flame-coloured frames"


PROBE = """<script type="text/ecmascript"><![CDATA[
(function () {
  var gs = document.getElementById('frames').getElementsByTagName('g'), t = null;
  for (var i = 0; i < gs.length; i++)
    if (gs[i].getElementsByTagName('title')[0].textContent.indexOf('rank (') === 0)
      t = gs[i];
  t.dispatchEvent(new MouseEvent('click', { bubbles: true }));
  var hidden = 0;
  for (i = 0; i < gs.length; i++) if (gs[i].style.display === 'none') hidden++;
  var s = document.getElementById('search');
  s.value = 'by_key'; s.dispatchEvent(new Event('input'));
  var hl = document.getElementsByClassName('hl').length;
  document.documentElement.setAttribute('data-probe', [
    t.getElementsByTagName('rect')[0].getAttribute('width'), hidden, hl,
    document.getElementById('matched').textContent].join('|'));
})();
]]></script>
</svg>"""


def test_flamegraph_script_zooms_and_searches(demo_logs, tmp_path):
    svg = flamegraph(demo_logs["demo.prof"], tmp_path)
    text = open(svg, encoding="utf-8").read()
    assert text.endswith("</svg>\n")
    probe = tmp_path / "probe.svg"
    probe.write_text(text[: -len("</svg>\n")] + PROBE, encoding="utf-8")
    r = run_chromium(["--dump-dom", "file://" + str(probe)], tmp_path)
    m = re.search(r'data-probe="([^"]*)"', r.stdout)
    assert m, r.stderr[-2000:]
    width, hidden, hl, matched = m.group(1).split("|")
    assert width == "1180.00"                 # zoomed to the full width
    assert int(hidden) > 0                    # frames outside rank hidden
    assert int(hl) >= 1 and re.match(r"\d+ frames?, \d+ samples \(\d+\.\d%\)",
                                      matched), matched


# ---- text views and selections ----------------------------------------------------

def test_text_views(log):
    out = report(log).stdout
    assert "self%" in out and "call tree" in out
    assert len(out.splitlines()) <= 45, "the overview is one screen"
    out = report(log, "--top", "5", "--tree", "--threshold", "5").stdout
    assert "cut below 5.0%" in out
    r = report(log, "--lines", ok=False)
    if has_lines(log):
        assert r.returncode == 0 and "function:line" in r.stdout
    else:
        assert r.returncode == 1 and "--lines" in r.stderr


def test_thread_selection(demo_logs, tmp_path):
    log = demo_logs["demo.prof"]
    out = str(tmp_path / "p.json")
    report(log, "--speedscope", out)
    tid = json.load(open(out))["profiles"][0]["name"].split()[-1]
    assert sum(collapsed(log, "--thread", tid).values()) == sample_count(log)
    r = report(log, "--thread", "1", "--thread", "2", ok=False)
    assert r.returncode == 1
    assert f"threads (samples): {tid} (" in r.stderr


def test_unwritable_outputs(demo_logs, tmp_path):
    log = demo_logs["demo.prof"]
    r = report(log, "--flamegraph", str(tmp_path / "no" / "x.svg"), ok=False)
    assert r.returncode == 1 and "cannot write" in r.stderr
    if os.path.exists("/dev/full"):
        r = report(log, "--speedscope", "/dev/full", ok=False)
        assert r.returncode == 1 and "writing /dev/full failed" in r.stderr
        assert os.path.exists("/dev/full")   # a failed write removes nothing
    # a complete file replaces the old one, or the old one stays
    out = tmp_path / "keep.svg"
    out.write_text("old")
    report(log, "--flamegraph", str(out))
    assert out.read_text(encoding="utf-8").endswith("</svg>\n")
    assert not [f for f in os.listdir(tmp_path) if f.startswith("keep.svg.")]
