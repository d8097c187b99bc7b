/*
 * ptrace_session_int.h - what ptrace_attach.c (becoming the tracer) and
 * ptrace_session.c (being it) share; not for the rest of the attacher.
 */
#ifndef VMPROF_PTRACE_SESSION_INT_H
#define VMPROF_PTRACE_SESSION_INT_H

#include <stdint.h>

#include "ptrace_session.h"

/* A thread newly traced (or a reused tid: reset). NULL: out of memory. */
struct thread *session_thread_add(struct session *s, pid_t tid);
/* The PTRACE_O_* options every thread is seized with. */
uintptr_t session_seize_opts(const struct session *s);

#endif
