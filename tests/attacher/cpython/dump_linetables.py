# Prints, for every code object of a few stdlib modules (recursively), one
# line: "FIRSTLINENO LINETABLE_HEX N L0 L1 ... L(N-1)" where Li is the line
# CPython itself gives code unit i (from co_lines(); -1 for none). The C
# test decodes LINETABLE_HEX and must agree on every unit.
import argparse
import collections
import json.decoder
import types


def codes(co):
    yield co
    for c in co.co_consts:
        if isinstance(c, types.CodeType):
            yield from codes(c)


def dump(co):
    n = len(co.co_code) // 2
    lines = [-1] * n
    for start, end, line in co.co_lines():
        for u in range(start // 2, min(end // 2, n)):
            lines[u] = -1 if line is None else line
    print(co.co_firstlineno, co.co_linetable.hex() or "-", n,
          " ".join(map(str, lines)))


for mod in (argparse, collections, json.decoder):
    for name in sorted(vars(mod)):
        obj = vars(mod)[name]
        for f in (vars(obj).values() if isinstance(obj, type) else [obj]):
            f = getattr(f, "__func__", f)
            if isinstance(f, types.FunctionType) and f.__module__ == mod.__name__:
                for co in codes(f.__code__):
                    dump(co)
