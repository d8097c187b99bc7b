# Target for the CPython decoder's name-cache test: compiles and runs fresh
# functions in a loop, so code objects and their name strings are freed
# and their addresses reused (pymalloc hands memory back LIFO).
#
# Built to make reuse likely and misnaming visible:
#   - the templates' names have the same length and their bodies the same
#     shape, so a new code object lands where an old one was, and its
#     qualname and filename strings where the old strings were;
#   - no name string outlives its iteration: the templates are one string
#     constant split at run time, each function is reached through the
#     fixed name "entry", and its file name is built afresh;
#   - each template calls a marker function named after it, directly and
#     from a generator expression: a sample whose marker does not match
#     the frame under it shows a name lent by a dead code object.
# Usage: exec_loop.py INFO_FILE.
import ctypes
import os
import sys

SOURCE = """
def alpha():
    return sum(mark_alpha_g(x) for x in range(2)) + mark_alpha()
entry = alpha
---

def gamma():
    return sum(mark_gamma_g(x) for x in range(2)) + mark_gamma()
entry = gamma
---


def delta():
    return sum(mark_delta_g(x) for x in range(2)) + mark_delta()
entry = delta
---



def omega():
    return sum(mark_omega_g(x) for x in range(2)) + mark_omega()
entry = omega
---




def sigma():
    return sum(mark_sigma_g(x) for x in range(2)) + mark_sigma()
entry = sigma
"""


def busy():
    n = 0
    for _ in range(3000):
        n += 1
    return n


def mark_alpha(): return busy()
def mark_gamma(): return busy()
def mark_delta(): return busy()
def mark_omega(): return busy()
def mark_sigma(): return busy()
def mark_alpha_g(x): return busy()
def mark_gamma_g(x): return busy()
def mark_delta_g(x): return busy()
def mark_omega_g(x): return busy()
def mark_sigma_g(x): return busy()


def loop():
    templates = [t.lstrip("\n") for t in SOURCE.split("---\n")]
    i = 0
    while True:
        src = templates[i % len(templates)]
        i += 1
        fname = "<exec-" + src[4:src.index("(")] + ">"
        ns = dict(globals())
        exec(compile(src, fname, "exec"), ns)
        del fname
        ns["entry"]()
        del ns


def main():
    info = sys.argv[1]
    rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
    with open(info + ".tmp", "w") as f:
        f.write("%d %#x %#x\n" % (os.getpid(), rt, sys.hexversion))
    os.rename(info + ".tmp", info)
    loop()


main()
