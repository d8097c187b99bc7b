#!/usr/bin/env python3
"""tests/tap_summary.py - count every test case that ran, from meson's
testlog.json files: each TAP line "ok"/"not ok" is one case (cmocka and
pytest both speak TAP here); a test program that failed without reporting
a failing case (a crash, a timeout) counts as one failed case. Prints
"N passed, N failed, N skipped" last, alone on its line; exits 1 when
anything failed or nothing ran."""
import json
import re
import sys

OK = re.compile(r"^\s*ok\b")
NOT_OK = re.compile(r"^\s*not ok\b")
SKIP = re.compile(r"#\s*skip", re.I)
TODO = re.compile(r"#\s*todo", re.I)


def count(path):
    passed = failed = skipped = 0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            p = fl = s = 0
            for l in (t.get("stdout") or "").splitlines():
                if NOT_OK.match(l):
                    if TODO.search(l):
                        s += 1      # an expected failure (xfail): a known bug, not a new one
                    else:
                        fl += 1
                        # named here, next to the total: a CI log's tail shows it
                        print(f"summary: FAILED {t.get('name')}: {l.strip()}", file=sys.stderr)
                elif OK.match(l):
                    if SKIP.search(l):
                        s += 1
                    else:
                        p += 1
            result = t.get("result", "")
            if result not in ("OK", "SKIP", "EXPECTEDFAIL") and fl == 0:
                fl = 1
                print(f"summary: {t.get('name')}: {result} without a failing case "
                      "(crash or timeout?)", file=sys.stderr)
            if result == "SKIP" and p + fl + s == 0:
                s = 1
            passed += p
            failed += fl
            skipped += s
    return passed, failed, skipped


def main():
    tp = tf = ts = 0
    args = sys.argv[1:]
    if args[:1] == ["--failed"]:
        # failures outside any test log (a build that did not complete)
        tf += int(args[1])
        args = args[2:]
    for path in args:
        try:
            p, f, s = count(path)
        except OSError as e:
            print(f"summary: cannot read {path}: {e}", file=sys.stderr)
            tf += 1
            continue
        print(f"summary: {path}: {p} passed, {f} failed, {s} skipped", file=sys.stderr)
        tp, tf, ts = tp + p, tf + f, ts + s
    print(f"{tp} passed, {tf} failed, {ts} skipped")
    return 1 if tf or tp == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
