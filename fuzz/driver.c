/* Portable fuzzing driver for the harnesses in this directory, for machines
 * without clang/libFuzzer. Link one harness (LLVMFuzzerTestOneInput) with
 * this file; build with gcc -fsanitize=address,undefined (see run.sh).
 *
 *   driver [options] [corpus dirs or files...]
 *     -t SECONDS      time budget (default 10)
 *     -runs N         stop after N executions (default: no limit)
 *     -seed N         random seed (default: time)
 *     -max_len N      largest generated input (default 65536)
 *     -timeout S      per-input time limit in seconds (default 10)
 *     -artifact DIR   where crashing/hanging inputs go (default fuzz/out/findings)
 *     -corpus_out DIR save inputs that reach new coverage there
 *     -replay         run every given file once (regression mode) and exit
 *
 * Mutations: bit flips, interesting bytes/words, small arithmetic, range
 * deletion/insertion/duplication, truncation, and splices with other corpus
 * entries; a third of them hit the first 32 bytes, where the harnesses keep
 * their parameters. When the harness and the code under test are built with
 * gcc's -fsanitize-coverage=trace-pc, inputs reaching new edges (AFL-style
 * hashed edge map with hit-count buckets) join the corpus; without it the
 * driver still mutates the seeds blindly.
 *
 * A finding (sanitizer report, abort, fatal signal, timeout) saves the input
 * to the artifact directory and exits with status 1; the last line on stderr
 * names the file. The summary line on stdout reads
 *   "DRIVER DONE execs=N corpus=M edges=E seconds=S findings=0". */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------------------------------------ */
/* Coverage: gcc -fsanitize-coverage=trace-pc calls this on every basic block */

#define MAP_BITS 16
#define MAP_SIZE (1u << MAP_BITS)

static uint8_t g_map[MAP_SIZE];    /* hits of the current execution */
static uint8_t g_virgin[MAP_SIZE]; /* bucket bits ever seen per edge */
static uintptr_t g_prev;
static int g_cov_seen;

__attribute__((no_sanitize_address, no_instrument_function)) void __sanitizer_cov_trace_pc(void)
{
    const uintptr_t pc = (uintptr_t)__builtin_return_address(0);
    uintptr_t cur = pc ^ (pc >> MAP_BITS) ^ (pc >> (2 * MAP_BITS));
    cur = (cur * 0x9E3779B1u) >> 7;
    g_map[(cur ^ g_prev) & (MAP_SIZE - 1)]++;
    g_prev = cur >> 1;
    g_cov_seen = 1;
}

static uint8_t bucket(uint8_t h)
{
    if (h == 0) return 0;
    if (h == 1) return 1;
    if (h == 2) return 2;
    if (h == 3) return 4;
    if (h < 8) return 8;
    if (h < 16) return 16;
    if (h < 32) return 32;
    if (h < 128) return 64;
    return 128;
}

/* Returns the number of (edge, bucket) pairs never seen before. */
static size_t merge_coverage(size_t *edges)
{
    size_t fresh = 0;
    for (size_t i = 0; i < MAP_SIZE; i++) {
        if (!g_map[i])
            continue;
        const uint8_t b = bucket(g_map[i]);
        if (!(g_virgin[i] & b)) {
            if (!g_virgin[i])
                (*edges)++;
            g_virgin[i] |= b;
            fresh++;
        }
    }
    return fresh;
}

/* ------------------------------------------------------------------------ */
/* Findings                                                                   */

static const uint8_t *volatile g_cur;
static volatile size_t g_cur_len;
static char g_artifact_dir[4096] = "fuzz/out/findings";
static const char *volatile g_kind = "crash";

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Async-signal-safe: only open/write/close and hand-made formatting. */
static void save_current(void)
{
    static volatile int saved;
    if (saved || g_cur == NULL)
        return;
    saved = 1;
    char path[4352];
    size_t k = 0;
    for (const char *s = g_artifact_dir; *s && k < 4096; s++)
        path[k++] = *s;
    path[k++] = '/';
    for (const char *s = g_kind; *s; s++)
        path[k++] = *s;
    path[k++] = '-';
    uint64_t h = fnv1a((const uint8_t *)g_cur, g_cur_len);
    for (int i = 15; i >= 0; i--)
        path[k++] = "0123456789abcdef"[(h >> (4 * i)) & 15];
    path[k] = 0;
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        size_t done = 0;
        while (done < g_cur_len) {
            const ssize_t w = write(fd, (const uint8_t *)g_cur + done, g_cur_len - done);
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        close(fd);
    }
    static const char msg[] = "\nDRIVER FINDING: input saved to ";
    (void)!write(2, msg, sizeof msg - 1);
    (void)!write(2, path, k);
    (void)!write(2, "\n", 1);
}

/* Sanitizer runtimes call this before exiting on an error report. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static void on_signal(int sig)
{
    g_kind = sig == SIGALRM ? "timeout" : "crash";
    if (sig == SIGALRM) {
        static const char msg[] = "\nDRIVER: input exceeded the time limit\n";
        (void)!write(2, msg, sizeof msg - 1);
    }
    save_current();
    signal(sig, SIG_DFL);
    if (sig == SIGALRM)
        _exit(1);
    raise(sig);
}

/* ------------------------------------------------------------------------ */
/* Corpus                                                                     */

typedef struct {
    uint8_t *p;
    size_t n;
} unit;

static unit *g_corpus;
static size_t g_ncorpus, g_capcorpus;
static char g_corpus_out[4096];

static void corpus_add(const uint8_t *p, size_t n, int save)
{
    if (g_ncorpus == g_capcorpus) {
        g_capcorpus = g_capcorpus ? 2 * g_capcorpus : 256;
        g_corpus = (unit *)realloc(g_corpus, g_capcorpus * sizeof(unit));
        if (g_corpus == NULL)
            abort();
    }
    uint8_t *c = (uint8_t *)malloc(n ? n : 1);
    if (c == NULL)
        abort();
    memcpy(c, p, n);
    g_corpus[g_ncorpus++] = (unit){c, n};
    if (save && g_corpus_out[0]) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%016llx", g_corpus_out,
                 (unsigned long long)fnv1a(p, n));
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(p, 1, n, f);
            fclose(f);
        }
    }
}

static int read_file(const char *path, uint8_t **p, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t cap = 4096, len = 0;
    uint8_t *b = (uint8_t *)malloc(cap);
    for (;;) {
        if (len == cap)
            b = (uint8_t *)realloc(b, cap *= 2);
        const size_t r = fread(b + len, 1, cap - len, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    *p = b;
    *n = len;
    return 0;
}

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static void add_path(strlist *l, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d == NULL)
            return;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char sub[8192];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            add_path(l, sub);
        }
        closedir(d);
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = (char **)realloc(l->v, l->cap * sizeof(char *));
    }
    l->v[l->n++] = strdup(path);
}

static strlist g_inputs; /* global: still reachable for LeakSanitizer */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------------ */
/* Mutations                                                                  */

static uint64_t g_rng;

static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static const uint8_t INTERESTING8[] = {0, 1, 2, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 0x7F, 0x80, 0x81, 0xC0, 0xE0, 0xF0, 0xFE, 0xFF};
static const uint32_t INTERESTING32[] = {0, 1, 2, 63, 64, 65, 127, 128, 129, 255, 256, 0x3F800000, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x7FC00000};

/* Position biased to the parameter header one time in three. */
static size_t pos(size_t n)
{
    if (n == 0)
        return 0;
    if (rnd() % 3 == 0)
        return below(n < 32 ? n : 32);
    return below(n);
}

static size_t mutate(uint8_t *b, size_t n, size_t max)
{
    const int rounds = 1 + (int)(rnd() % 8 == 0 ? below(16) : below(4));
    for (int r = 0; r < rounds; r++) {
        switch (rnd() % 14) {
        case 0:
        case 1: /* bit flip */
            if (n) {
                const size_t i = pos(n);
                b[i] ^= (uint8_t)(1u << below(8));
            }
            break;
        case 2: /* random byte */
            if (n)
                b[pos(n)] = (uint8_t)rnd();
            break;
        case 3: /* interesting byte */
            if (n)
                b[pos(n)] = INTERESTING8[below(sizeof INTERESTING8)];
            break;
        case 4: /* interesting 16/32-bit word */
            if (n >= 4) {
                const size_t i = pos(n - 3);
                const uint32_t v = INTERESTING32[below(sizeof INTERESTING32 / 4)];
                memcpy(b + i, &v, rnd() & 1 ? 4 : 2);
            }
            break;
        case 5: /* small arithmetic on a byte */
            if (n) {
                const size_t i = pos(n);
                b[i] = (uint8_t)(b[i] + (int)below(33) - 16);
            }
            break;
        case 6: /* small arithmetic on a 16-bit word */
            if (n >= 2) {
                const size_t i = pos(n - 1);
                uint16_t v;
                memcpy(&v, b + i, 2);
                v = (uint16_t)(v + (int)below(65) - 32);
                memcpy(b + i, &v, 2);
            }
            break;
        case 7: /* delete a range */
            if (n > 1) {
                const size_t i = below(n), l = 1 + below((n - i) < 64 ? n - i : 64);
                memmove(b + i, b + i + l, n - i - l);
                n -= l;
            }
            break;
        case 8: /* insert random bytes */
            if (n < max) {
                const size_t i = below(n + 1);
                size_t l = 1 + below(16);
                if (l > max - n)
                    l = max - n;
                memmove(b + i + l, b + i, n - i);
                for (size_t k = 0; k < l; k++)
                    b[i + k] = (uint8_t)rnd();
                n += l;
            }
            break;
        case 9: /* duplicate a range */
            if (n && n < max) {
                const size_t s = below(n);
                size_t l = 1 + below(n - s < 128 ? n - s : 128);
                if (l > max - n)
                    l = max - n;
                const size_t i = below(n + 1);
                uint8_t tmp[128];
                memcpy(tmp, b + s, l);
                memmove(b + i + l, b + i, n - i);
                memcpy(b + i, tmp, l);
                n += l;
            }
            break;
        case 10: /* truncate */
            if (n)
                n = below(n);
            break;
        case 11: /* overwrite with a copy of another range */
            if (n > 2) {
                const size_t s = below(n), d = below(n);
                size_t l = 1 + below(n - (s > d ? s : d));
                memmove(b + d, b + s, l);
            }
            break;
        case 12: /* splice: our prefix + another entry's suffix */
        case 13:
            if (g_ncorpus) {
                const unit *o = &g_corpus[below(g_ncorpus)];
                const size_t cut = below(n + 1);
                const size_t from = below(o->n + 1);
                size_t l = o->n - from;
                if (cut + l > max)
                    l = max - cut;
                memcpy(b + cut, o->p + from, l);
                n = cut + l;
            }
            break;
        }
    }
    return n;
}

/* ------------------------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void arm_timer(int seconds)
{
    struct itimerval it = {{0, 0}, {seconds, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
}

/* Run one input from an exact-size heap copy (so overreads hit the redzone). */
static void run_one(const uint8_t *p, size_t n, int timeout)
{
    uint8_t *c = (uint8_t *)malloc(n ? n : 1);
    if (c == NULL)
        abort();
    memcpy(c, p, n);
    g_cur = c;
    g_cur_len = n;
    memset(g_map, 0, sizeof g_map);
    g_prev = 0;
    arm_timer(timeout);
    LLVMFuzzerTestOneInput(c, n);
    arm_timer(0);
    g_cur = NULL;
    free(c);
}

int main(int argc, char **argv)
{
    double budget = 10;
    unsigned long long max_runs = 0, seed = 0;
    size_t max_len = 65536;
    int timeout = 10, replay = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int more = i + 1 < argc;
        if (!strcmp(a, "-t") && more)
            budget = atof(argv[++i]);
        else if (!strcmp(a, "-runs") && more)
            max_runs = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "-seed") && more)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "-max_len") && more)
            max_len = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "-timeout") && more)
            timeout = atoi(argv[++i]);
        else if (!strcmp(a, "-artifact") && more)
            snprintf(g_artifact_dir, sizeof g_artifact_dir, "%s", argv[++i]);
        else if (!strcmp(a, "-corpus_out") && more)
            snprintf(g_corpus_out, sizeof g_corpus_out, "%s", argv[++i]);
        else if (!strcmp(a, "-replay"))
            replay = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "unknown option %s (see the comment at the top of driver.c)\n", a);
            return 2;
        } else
            add_path(&g_inputs, a);
    }
    if (g_inputs.n)
        qsort(g_inputs.v, g_inputs.n, sizeof(char *), cmp_str);
    mkdir(g_artifact_dir, 0755);
    if (g_corpus_out[0])
        mkdir(g_corpus_out, 0755);

    /* Under a sanitizer, its own handlers report SEGV/BUS/FPE (with a stack) and
     * then call save_current; abort, SIGILL and the timer are ours. */
    signal(SIGABRT, on_signal);
    signal(SIGILL, on_signal);
    signal(SIGALRM, on_signal);
    if (__sanitizer_set_death_callback) {
        __sanitizer_set_death_callback(save_current);
    } else {
        signal(SIGSEGV, on_signal);
        signal(SIGBUS, on_signal);
        signal(SIGFPE, on_signal);
    }

    const double t0 = now();
    unsigned long long execs = 0;
    size_t edges = 0;

    if (replay) {
        for (size_t i = 0; i < g_inputs.n; i++) {
            uint8_t *p;
            size_t n;
            if (read_file(g_inputs.v[i], &p, &n) != 0) {
                fprintf(stderr, "cannot read %s: %s\n", g_inputs.v[i], strerror(errno));
                return 2;
            }
            fprintf(stderr, "replay %s (%zu bytes)\n", g_inputs.v[i], n);
            run_one(p, n, timeout);
            execs++;
            free(p);
        }
        printf("DRIVER DONE execs=%llu corpus=%zu edges=0 seconds=%.1f findings=0\n", execs,
               g_inputs.n, now() - t0);
        fflush(stdout);
        return 0;
    }

    g_rng = seed ? seed : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    if (g_rng == 0)
        g_rng = 88172645463325252ull;
    fprintf(stderr, "driver: seed %llu, %zu seed files, budget %.0f s\n",
            (unsigned long long)g_rng, g_inputs.n, budget);

    for (size_t i = 0; i < g_inputs.n; i++) {
        uint8_t *p;
        size_t n;
        if (read_file(g_inputs.v[i], &p, &n) != 0)
            continue;
        if (n > max_len)
            n = max_len;
        run_one(p, n, timeout);
        execs++;
        merge_coverage(&edges);
        corpus_add(p, n, 0); /* every seed stays, whatever its coverage */
        free(p);
    }
    if (g_ncorpus == 0) { /* no seeds: start from a few random inputs */
        uint8_t tmp[64];
        for (int k = 0; k < 16; k++) {
            for (size_t i = 0; i < sizeof tmp; i++)
                tmp[i] = (uint8_t)rnd();
            corpus_add(tmp, 1 + below(sizeof tmp), 0);
        }
    }

    uint8_t *buf = (uint8_t *)malloc(max_len);
    if (buf == NULL)
        return 2;
    double last_print = now();
    for (;;) {
        if (max_runs && execs >= max_runs)
            break;
        if ((execs & 63) == 0) {
            const double t = now();
            if (t - t0 >= budget)
                break;
            if (t - last_print >= 30) {
                fprintf(stderr, "#%llu corpus %zu edges %zu exec/s %.0f\n", execs, g_ncorpus,
                        edges, execs / (t - t0));
                last_print = t;
            }
        }
        const unit *u = &g_corpus[below(g_ncorpus)];
        size_t n = u->n < max_len ? u->n : max_len;
        memcpy(buf, u->p, n);
        n = mutate(buf, n, max_len);
        run_one(buf, n, timeout);
        execs++;
        if (g_cov_seen && merge_coverage(&edges))
            corpus_add(buf, n, 1);
    }
    printf("DRIVER DONE execs=%llu corpus=%zu edges=%zu seconds=%.1f findings=0\n", execs,
           g_ncorpus, edges, now() - t0);
    fflush(stdout);
    free(buf);
    return 0;
}
