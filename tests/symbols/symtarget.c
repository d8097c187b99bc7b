/*
 * symtarget.c - a process for the symbol tests to resolve.
 *
 * It prints "key value" lines on stdout, facts the test checks resolution
 * against (addresses of its own functions as the running code sees them,
 * the source line of one function), then "ready", then waits to be killed.
 * With an argument it dlopen()s that shared library (built from
 * symlib.c) and prints the addresses of the library's functions too.
 * The build makes several copies of it: with .symtab, stripped with a
 * .gnu_debuglink, stripped with only a build-id, and non-PIE.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

#define KEEP __attribute__((noinline, used))

volatile int symtarget_sink;
int symtarget_marked(int x);

/* The whole function is on one line, so every address in it has this line. */
const int symtarget_marked_line = __LINE__; KEEP int symtarget_marked(int x) { symtarget_sink += x; return symtarget_sink * 3; }

/* A file-local function: only .symtab (or a debug file) can name it. */
static KEEP int symtarget_local(int x)
{
    for (int i = 0; i < x; i++)
        symtarget_sink += i;
    return symtarget_sink;
}

int main(int argc, char **argv)
{
    printf("marked %p\n", (void *)symtarget_marked);
    printf("marked_line %d\n", symtarget_marked_line);
    printf("local %p\n", (void *)symtarget_local);
    if (argc > 1) {
        void *h = dlopen(argv[1], RTLD_NOW);
        void *(*hidden)(void);
        if (!h) {
            printf("error %s\n", dlerror());
            return 1;
        }
        printf("lib_exported %p\n", dlsym(h, "symlib_exported"));
        hidden = (void *(*)(void))dlsym(h, "symlib_hidden_address");
        printf("lib_hidden %p\n", hidden ? hidden() : NULL);
    }
    printf("ready 1\n");
    fflush(stdout);
    symtarget_marked(symtarget_local(3));
    for (;;)
        pause();
}
