/*
 * nestext.c - a tiny CPython C extension for the exact-merge tests:
 * C functions that call back into Python, and one that spins.
 *
 *   c_outer(cb)    calls cb(), then a little work after the call
 *   c_middle(cb)   the same, as a separate function (its own frame)
 *   c_inner(n)     spins n iterations in C, returns an int
 *
 * With mixed.py: f1 -> c_outer -> f2 -> c_middle -> f3 -> c_inner.
 * Built by the tests (pyprof.build_ext) with -fno-inline and no sibling
 * calls, so every C function keeps its own native frame; the work after
 * each callback keeps the caller's frame live while the callback runs.
 * No helper functions: the only native frames of this module between
 * two Python frames are the ones named above.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static volatile uint64_t sink;

static PyObject *c_outer(PyObject *self, PyObject *cb)
{
    (void)self;
    PyObject *r = PyObject_CallNoArgs(cb);
    sink += 1;
    return r;
}

static PyObject *c_middle(PyObject *self, PyObject *cb)
{
    (void)self;
    PyObject *r = PyObject_CallNoArgs(cb);
    sink += 2;
    return r;
}

static PyObject *c_inner(PyObject *self, PyObject *arg)
{
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n < 0 && PyErr_Occurred())
        return NULL;
    uint64_t acc = 1;
    for (long i = 0; i < n; i++) {
        acc = acc * 6364136223846793005ull + (uint64_t)i;
        sink = acc;
    }
    return PyLong_FromUnsignedLongLong(acc & 0xffff);
}

static PyMethodDef methods[] = {
    { "c_outer", c_outer, METH_O, "c_outer(cb): calls cb()" },
    { "c_middle", c_middle, METH_O, "c_middle(cb): calls cb()" },
    { "c_inner", c_inner, METH_O, "c_inner(n): spins n iterations" },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "nestext", "exact-merge test extension", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_nestext(void);

PyMODINIT_FUNC PyInit_nestext(void)
{
    return PyModule_Create(&module);
}
