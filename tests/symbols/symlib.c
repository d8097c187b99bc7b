/*
 * symlib.c - a shared library for the .dynsym tests: one exported
 * function, and one hidden function that only .symtab can name.
 */
#define KEEP __attribute__((noinline, used))

volatile int symlib_sink;
int symlib_exported(int x);
int symlib_hidden(int x);

KEEP int symlib_exported(int x)
{
    symlib_sink += x;
    return symlib_sink * 5;
}

__attribute__((visibility("hidden"))) KEEP int symlib_hidden(int x)
{
    for (int i = 0; i < x; i++)
        symlib_sink ^= i * 7;
    return symlib_sink;
}

/* The address of the hidden function, for the test to resolve. */
void *symlib_hidden_address(void);
void *symlib_hidden_address(void)
{
    return (void *)symlib_hidden;
}
