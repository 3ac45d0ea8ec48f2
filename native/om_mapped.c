/* Decoding straight from a memory-mapped file, safely.
 *
 * Reading a mapped file costs no copy and no system call per read (pread
 * copies every byte through the kernel: several times slower on a page-cached
 * file here). But a mapped file that another process truncates turns the next
 * access past its new end into SIGBUS, which would kill the process. So every
 * decode from a mapping runs under a guard: a SIGBUS handler that, while the
 * faulting thread is inside a guarded decode, jumps back out of it, and
 * otherwise hands the signal to whatever handled it before (the default
 * action, or Python's faulthandler), so foreign faults behave as without us.
 *
 * The per-thread state is two pointers in static TLS (initial-exec: reading
 * them in the handler never allocates). The handler is (re)installed by the
 * guarded call itself when someone replaced it (faulthandler.enable() after
 * our first read); it then chains to that newer handler.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdlib.h>

#include "om_chunks.h"
#include "om_internal.h"

#if defined(_WIN32) || !defined(__GNUC__)

int om_decode_select_mapped(const om_array_t *a, const int64_t *const *sel,
                            const uint64_t *sel_len, void *out, size_t n,
                            const uint64_t *chunk_idx, const uint8_t *data, size_t data_len,
                            const uint64_t *chunk_off, const uint64_t *chunk_len, size_t *bad)
{
    /* no mappings are made on these platforms (the reader uses pread) */
    (void)a; (void)sel; (void)sel_len; (void)out; (void)n; (void)chunk_idx; (void)data;
    (void)data_len; (void)chunk_off; (void)chunk_len; (void)bad;
    return OM_E_INVALID;
}

void om_guard_hold(void *mem) { (void)mem; }

void *om_map_file(int fd, uint64_t size)
{
    (void)fd; (void)size;
    return NULL;
}

void om_unmap_file(void *addr, uint64_t size) { (void)addr; (void)size; }

#else

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

/* The mapping holds no descriptor of its own (unlike Python's mmap, which dups
 * one per map): an open file costs one descriptor, mapped or not. */
void *om_map_file(int fd, uint64_t size)
{
    if (size == 0 || size > (uint64_t)SIZE_MAX)
        return NULL;
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void om_unmap_file(void *addr, uint64_t size)
{
    if (addr != NULL)
        munmap(addr, (size_t)size);
}

#define OM_TLS __thread __attribute__((tls_model("initial-exec")))

static OM_TLS sigjmp_buf *om_guard_jump; /* set while this thread decodes from a mapping */
static OM_TLS void *om_guard_mem;        /* the decode's heap block, freed after a jump */

static pthread_mutex_t om_guard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction om_prev_bus; /* what handled SIGBUS before us */

void om_guard_hold(void *mem) { om_guard_mem = mem; }

static void om_bus_handler(int sig, siginfo_t *info, void *uctx)
{
    sigjmp_buf *jump = om_guard_jump;
    if (jump != NULL) {
        om_guard_jump = NULL;
        siglongjmp(*jump, 1);
    }
    /* Not a guarded access: behave as if we were never installed. */
    const struct sigaction prev = om_prev_bus;
    if (prev.sa_flags & SA_SIGINFO) {
        if (prev.sa_sigaction != NULL) {
            prev.sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        prev.sa_handler(sig);
        return;
    }
    /* Default action: restore it and let the signal (blocked while we run, or
     * re-raised by the faulting instruction on return) take its course. */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Our handler is in place (installed now if it was not). 0 or -1. */
static int om_guard_ready(void)
{
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) != 0)
        return -1;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == om_bus_handler)
        return 0;
    pthread_mutex_lock(&om_guard_lock);
    int rc = 0;
    if (sigaction(SIGBUS, NULL, &cur) != 0) {
        rc = -1;
    } else if (!((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == om_bus_handler)) {
        struct sigaction act;
        memset(&act, 0, sizeof act);
        act.sa_sigaction = om_bus_handler;
        act.sa_flags = SA_SIGINFO;
        sigemptyset(&act.sa_mask);
        /* chain to the handler we replace (kept before ours goes live) */
        om_prev_bus = cur;
        if (sigaction(SIGBUS, &act, NULL) != 0)
            rc = -1;
    }
    pthread_mutex_unlock(&om_guard_lock);
    return rc;
}

int om_decode_select_mapped(const om_array_t *a, const int64_t *const *sel,
                            const uint64_t *sel_len, void *out, size_t n,
                            const uint64_t *chunk_idx, const uint8_t *data, size_t data_len,
                            const uint64_t *chunk_off, const uint64_t *chunk_len, size_t *bad)
{
    if (om_guard_ready() != 0)
        return OM_E_INVALID;
    sigjmp_buf jump;
    /* The mask is not saved (that would cost a system call per read): after a
     * jump, SIGBUS is unblocked by hand below. */
    if (sigsetjmp(jump, 0) != 0) {
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        free(om_guard_mem);
        om_guard_mem = NULL;
        if (bad != NULL)
            *bad = (size_t)-1;
        return OM_E_MAPPING;
    }
    om_guard_mem = NULL;
    om_guard_jump = &jump;
    const int rc = om_decode_select(a, sel, sel_len, out, n, chunk_idx, data, data_len,
                                    chunk_off, chunk_len, bad);
    om_guard_jump = NULL;
    return rc;
}

#endif
