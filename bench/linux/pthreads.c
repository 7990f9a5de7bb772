/*
 * The Linux side of Prologue's comparison benchmarks: the kernel's operations, where C with
 * POSIX threads has them, measured with pthreads on Linux.
 *
 * This program is the /init of a tiny initramfs that the `boot` runner boots in QEMU under
 * `-icount shift=0,sleep=off` (see boot/src/against/), built with `gcc -static -O2 -pthread`.
 * There the time-stamp counter counts executed instructions, so each figure is the number of
 * instructions the whole machine ran -- these threads, glibc, and the Linux kernel (system
 * calls, context switches, interrupts) -- between two __rdtsc() reads.
 *
 * The machine has one CPU, and the main thread pins itself to CPU 0 before creating any thread
 * (pthread_setaffinity_np), so every thread, which inherits the mask, runs there. Each benchmark
 * first runs once with a tenth of its count (warm-up: glibc's stack cache, the page tables and
 * the kernel's caches fill), then the measured run follows. Nothing is printed until every
 * benchmark is done, so no console output falls inside a timed region. Each result is one line
 *
 *     bench NAME: TOTAL instructions / N THINGS = X.Y instructions/THING
 *
 * (TOTAL is the raw TSC delta; THINGS is what the kernel's benchmark of the same name counts),
 * and the last line is `bench: done`. A benchmark whose check
 * fails prints a line starting with `FAILURE:` instead of its result.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>
#include <x86intrin.h>

/* The operations counted by each benchmark. */
enum {
    N_SPAWN_JOIN = 10000,
    N_YIELD = 50000, /* sched_yield calls of the main thread: about two switches each */
    N_ROUND_TRIP = 20000,
    N_UNCONTENDED = 100000,
    N_CONTENDED = 10000, /* iterations per thread: 2 * N_CONTENDED acquisitions */
};

/* The report, printed at the end. */
static char output[4096];
static size_t output_len;

static void append(const char *text) {
    size_t room = sizeof output - output_len;
    int n = snprintf(output + output_len, room, "%s", text);
    if (n > 0) {
        output_len += (size_t)n < room ? (size_t)n : room - 1;
    }
}

/* Records a result: total instructions over n things (thing in the singular). */
static void report(const char *name, unsigned long long total, long n, const char *things, const char *thing) {
    char line[256];
    snprintf(line, sizeof line, "bench %s: %llu instructions / %ld %s = %.1f instructions/%s\n", name, total, n,
             things, (double)total / (double)n, thing);
    append(line);
}

/* Records a failed check instead of a result. */
static void fail(const char *name, const char *reason) {
    char line[256];
    snprintf(line, sizeof line, "FAILURE: %s: %s\n", name, reason);
    append(line);
}

/* A failed library call: nothing can be measured after it, so report and stop. */
static void fatal(const char *what, int error) {
    char reason[128];
    snprintf(reason, sizeof reason, "%s failed (error %d)", what, error);
    fail("setup", reason);
    fputs(output, stdout);
    fflush(stdout);
    exit(1);
}

/* The thread body of spawn_join: stores a value where the argument points. */
static void *store_value(void *slot) {
    *(long *)slot = 42;
    return NULL;
}

/* spawn_join: n pthread_create + pthread_join pairs; each thread stores a value and ends.
 * Timed: the loop of n pairs. */
static unsigned long long spawn_join(long n) {
    long slot = 0;
    unsigned long long start = __rdtsc();
    for (long i = 0; i < n; i++) {
        pthread_t thread;
        int error = pthread_create(&thread, NULL, store_value, &slot);
        if (error != 0) {
            fatal("pthread_create", error);
        }
        pthread_join(thread, NULL);
    }
    unsigned long long end = __rdtsc();
    if (n > 0 && slot != 42) {
        fail("spawn_join", "the threads did not store their value");
    }
    return end - start;
}

/* State shared by the two threads of yield: which one ran last, the switches between them
 * (counted by a thread that, returning from sched_yield, finds that the other one ran last),
 * and the partner's order to stop. */
struct yield_state {
    atomic_int last;
    atomic_long switches;
    atomic_int stop;
};

/* Notes that thread `me` runs, after a sched_yield. */
static void ran(struct yield_state *s, int me) {
    if (atomic_load_explicit(&s->last, memory_order_relaxed) != me) {
        atomic_store_explicit(&s->switches, atomic_load_explicit(&s->switches, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&s->last, me, memory_order_relaxed);
    }
}

static void *yield_partner(void *arg) {
    struct yield_state *s = arg;
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        sched_yield();
        ran(s, 1);
    }
    return NULL;
}

/* Untimed sched_yield calls before the timer starts: a run of SETTLED calls in a row that each
 * switched there and back is awaited, for at most SETTLE_LIMIT calls. */
enum { SETTLED = 1000, SETTLE_LIMIT = 1000000 };

/* yield: switches between two threads that call sched_yield in turn (both on CPU 0, nothing
 * else runnable), two per round, counted as in the Go version. A new thread starts with its
 * virtual run time ahead of the main thread's, and until the main thread has caught up, the
 * scheduler (CFS) lets the main thread run on after sched_yield; so before the timer starts,
 * the main thread yields until SETTLED calls in a row have each been two switches. Timed: n
 * sched_yield calls of the main thread, with the partner's calls in between and the counting
 * (a few instructions per call). Returns the total and stores the switches counted in it; on a
 * failed check (no settling, or fewer than n switches), records the failure and stores 0. */
static unsigned long long yield(long n, long *switches) {
    struct yield_state s = {0, 0, 0};
    pthread_t partner;
    int error = pthread_create(&partner, NULL, yield_partner, &s);
    if (error != 0) {
        fatal("pthread_create", error);
    }
    long in_a_row = 0;
    for (long calls = 0; in_a_row < SETTLED && calls < SETTLE_LIMIT; calls++) {
        long earlier = atomic_load_explicit(&s.switches, memory_order_relaxed);
        sched_yield();
        ran(&s, 0);
        in_a_row = atomic_load_explicit(&s.switches, memory_order_relaxed) == earlier + 2 ? in_a_row + 1 : 0;
    }
    long before = atomic_load_explicit(&s.switches, memory_order_relaxed);
    unsigned long long start = __rdtsc();
    for (long i = 0; i < n; i++) {
        sched_yield();
        ran(&s, 0);
    }
    unsigned long long end = __rdtsc();
    *switches = atomic_load_explicit(&s.switches, memory_order_relaxed) - before;
    atomic_store_explicit(&s.stop, 1, memory_order_relaxed);
    pthread_join(partner, NULL);
    char reason[128];
    if (in_a_row < SETTLED) {
        snprintf(reason, sizeof reason, "the threads did not take turns within %d calls", SETTLE_LIMIT);
        fail("yield", reason);
        *switches = 0;
    } else if (*switches < n) {
        snprintf(reason, sizeof reason, "only %ld switches in %ld sched_yield calls: the threads did not take turns",
                 *switches, n);
        fail("yield", reason);
        *switches = 0;
    }
    return end - start;
}

/* chan_unbuffered_round_trip. C has no channels; the nearest primitive to a rendezvous is a
 * pair of POSIX semaphores: the main thread posts ping and waits on pong, the partner waits on
 * ping and posts pong. */
struct ping_pong {
    sem_t ping, pong;
    long rounds;
};

static void *pong_partner(void *arg) {
    struct ping_pong *p = arg;
    for (long i = 0; i < p->rounds; i++) {
        sem_wait(&p->ping);
        sem_post(&p->pong);
    }
    return NULL;
}

/* One untimed round trip first gets the partner running. Timed: n round trips, each two
 * sem_post and two sem_wait calls and at least two switches (whether a wait blocks in the kernel
 * depends on whether the scheduler runs a woken thread at once or lets the poster go on). */
static unsigned long long round_trip(long n) {
    struct ping_pong p = {.rounds = n + 1};
    sem_init(&p.ping, 0, 0);
    sem_init(&p.pong, 0, 0);
    pthread_t partner;
    int error = pthread_create(&partner, NULL, pong_partner, &p);
    if (error != 0) {
        fatal("pthread_create", error);
    }
    sem_post(&p.ping);
    sem_wait(&p.pong);
    unsigned long long start = __rdtsc();
    for (long i = 0; i < n; i++) {
        sem_post(&p.ping);
        sem_wait(&p.pong);
    }
    unsigned long long end = __rdtsc();
    pthread_join(partner, NULL);
    sem_destroy(&p.ping);
    sem_destroy(&p.pong);
    return end - start;
}

/* mutex_uncontended: n pthread_mutex_lock + pthread_mutex_unlock pairs on a mutex that only
 * this thread uses. Timed: the loop of n pairs. */
static unsigned long long uncontended(long n) {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    unsigned long long start = __rdtsc();
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&mutex);
        pthread_mutex_unlock(&mutex);
    }
    unsigned long long end = __rdtsc();
    return end - start;
}

/* mutex_contended: one mutex handed back and forth between two threads, n iterations each:
 * lock; sched_yield; unlock; sched_yield until the other thread has taken the mutex. While one
 * holds the mutex and yields, the other blocks in lock; the holder's unlock wakes it, and the
 * holder's sched_yield lets it run and take the mutex. The holder yields until that has
 * happened (or the other has finished), so that it never takes the mutex twice in a row, as in
 * the Go version (where one yield is not always enough). The check: the last owner is kept in a
 * variable written under the mutex, and every acquisition after the first must have changed
 * hands. */
struct contended_state {
    pthread_mutex_t mutex;
    sem_t start;
    long n;
    /* Both are written under the mutex; the owner's loop after unlock reads them without it. */
    atomic_int owner;
    atomic_long acquisitions;
    long changed;
};

static void contended_worker(struct contended_state *c, int me) {
    for (long i = 0; i < c->n; i++) {
        pthread_mutex_lock(&c->mutex);
        long acquired = atomic_load_explicit(&c->acquisitions, memory_order_relaxed);
        if (acquired > 0 && atomic_load_explicit(&c->owner, memory_order_relaxed) != me) {
            c->changed++;
        }
        atomic_store_explicit(&c->owner, me, memory_order_relaxed);
        atomic_store_explicit(&c->acquisitions, acquired + 1, memory_order_relaxed);
        sched_yield();
        pthread_mutex_unlock(&c->mutex);
        do {
            sched_yield();
        } while (atomic_load_explicit(&c->owner, memory_order_relaxed) == me &&
                 atomic_load_explicit(&c->acquisitions, memory_order_relaxed) < 2 * c->n);
    }
}

static void *contended_partner(void *arg) {
    struct contended_state *c = arg;
    sem_wait(&c->start);
    contended_worker(c, 1);
    return NULL;
}

/* The partner is created first and waits on a semaphore. Timed: from just before the main
 * thread posts it until the partner has been joined: 2n acquisitions, plus one semaphore post
 * and wake-up and one join. Returns the total and stores the number of acquisitions; on a
 * failed check, records the failure and stores 0. */
static unsigned long long contended(long n, long *acquisitions) {
    struct contended_state c = {.mutex = PTHREAD_MUTEX_INITIALIZER, .n = n, .owner = -1, .acquisitions = 0};
    sem_init(&c.start, 0, 0);
    pthread_t partner;
    int error = pthread_create(&partner, NULL, contended_partner, &c);
    if (error != 0) {
        fatal("pthread_create", error);
    }
    unsigned long long start = __rdtsc();
    sem_post(&c.start);
    contended_worker(&c, 0);
    pthread_join(partner, NULL);
    unsigned long long end = __rdtsc();
    sem_destroy(&c.start);
    long total = atomic_load(&c.acquisitions);
    *acquisitions = total;
    if (c.changed != total - 1) {
        char reason[128];
        snprintf(reason, sizeof reason, "only %ld of %ld acquisitions after the first changed hands", c.changed,
                 total - 1);
        fail("mutex_contended", reason);
        *acquisitions = 0;
    }
    return end - start;
}

int main(void) {
    cpu_set_t cpu0;
    CPU_ZERO(&cpu0);
    CPU_SET(0, &cpu0);
    int error = pthread_setaffinity_np(pthread_self(), sizeof cpu0, &cpu0);
    if (error != 0) {
        fatal("pthread_setaffinity_np", error);
    }

    spawn_join(N_SPAWN_JOIN / 10);
    report("spawn_join", spawn_join(N_SPAWN_JOIN), N_SPAWN_JOIN, "threads", "thread");

    long switches;
    yield(N_YIELD / 10, &switches);
    unsigned long long total = yield(N_YIELD, &switches);
    if (switches > 0) {
        report("yield", total, switches, "switches", "switch");
    }

    round_trip(N_ROUND_TRIP / 10);
    report("chan_unbuffered_round_trip", round_trip(N_ROUND_TRIP), N_ROUND_TRIP, "round-trips", "round-trip");

    uncontended(N_UNCONTENDED / 10);
    report("mutex_uncontended", uncontended(N_UNCONTENDED), N_UNCONTENDED, "lock-unlocks", "lock-unlock");

    long acquisitions;
    contended(N_CONTENDED / 10, &acquisitions);
    total = contended(N_CONTENDED, &acquisitions);
    if (acquisitions > 0) {
        report("mutex_contended", total, acquisitions, "acquisitions", "acquisition");
    }

    append("bench: done\n");
    fputs(output, stdout);
    fflush(stdout);
    /* Once /init exits the kernel panics: wait until the console has sent everything. */
    tcdrain(STDOUT_FILENO);
    return 0;
}
