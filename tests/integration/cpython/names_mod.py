"""names_mod.py - a second module for names.py: its generator expression
must be named with this file, not with the caller's."""


def other(n):
    return max(x ^ 3 for x in range(n))
