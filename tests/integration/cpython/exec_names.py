"""exec_names.py - target for the name-reuse test: exec()s freshly
generated functions with unique names in a loop, calls each once and frees
it, so code objects (and their name strings) die and their addresses are
reused by the next ones.

Usage: exec_names.py SECONDS OUT_FILE

Function n is f_NNNNNN (six digits, so every name has the same length and
a new code object fits where an old one was), compiled from file name
<gen-NNNNNN>; it spins in a loop and in a generator expression
(f_NNNNNN.<locals>.<genexpr>, created and freed per call). Functions run
strictly one after another: n only grows with time.

Prints "ready" before the first one. At the end OUT_FILE holds one line
per generated function, "n name file firstline genexpr_line", then a last
line "distinct_code_addresses K" (how many different addresses the K
generated code objects used: reuse happened if it is small)."""
import sys
import time

TEMPLATE = """def {name}():
    acc = 0
    for i in range(2500):
        acc += i
    return acc + sum(x for x in range(2500))
"""
GENEXPR_LINE = 5            # line of the generator expression in TEMPLATE


def run(seconds, out):
    end = time.monotonic() + seconds
    addresses = set()
    n = 0
    while time.monotonic() < end:
        n += 1
        name = f"f_{n:06d}"
        file = f"<gen-{n:06d}>"
        ns = {}
        exec(compile(TEMPLATE.format(name=name), file, "exec"), ns)
        fn = ns.pop(name)
        addresses.add(id(fn.__code__))
        fn()
        out.append(f"{n} {name} {file} 1 {GENEXPR_LINE}")
        del fn, ns
    return addresses


def main():
    seconds = float(sys.argv[1])
    out = []
    print("ready", flush=True)
    addresses = run(seconds, out)
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")
        f.write(f"distinct_code_addresses {len(addresses)}\n")


if __name__ == "__main__":
    main()
