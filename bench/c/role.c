/* The role side of bench-channels' line protocol for the C programs: flags, stdin (`go`, then
 * its end to stop), JSON lines on stdout, the payload stamp and the receiver's tally. The Rust
 * side of the same protocol is `chanbench::{ctx, protocol, tally}`. */
#define _GNU_SOURCE
#include "role.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* How often a receiver prints its count while it changes (`role::PROGRESS_EVERY`). */
#define PROGRESS_EVERY_NS (50 * 1000 * 1000)
/* Distinct notes kept; more are counted in the last one. */
#define MAX_NOTES 32

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static bool went, stopped;
static uint64_t cpu_at_ready;

static struct {
    char *text;
    uint64_t times;
} notes[MAX_NOTES];
static int note_count;

/* Serialises whole lines on stdout (the progress thread and the main thread both print). */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time (user + system) of every thread of this process. */
static uint64_t own_cpu_ns(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    uint64_t us = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
                  (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    return us * 1000u;
}

/* Writes `s` as a JSON string. */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*c < 0x20) fprintf(f, "\\u%04x", *c);
            else fputc(*c, f);
        }
    }
    fputc('"', f);
}

/* `,"cpu_ns":…,"notes":[…]}` and the end of the line: the tail of every report. */
static void finish_report(FILE *f) {
    fprintf(f, ",\"cpu_ns\":%" PRIu64 ",\"notes\":[", own_cpu_ns() - cpu_at_ready);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < note_count; i++) {
        char *text = notes[i].text;
        char *counted = NULL;
        if (notes[i].times > 1 &&
            asprintf(&counted, "%s: %" PRIu64 "×", text, notes[i].times) >= 0)
            text = counted;
        if (i > 0) fputc(',', f);
        json_string(f, text);
        free(counted);
    }
    pthread_mutex_unlock(&lock);
    fputs("]}\n", f);
    fflush(f);
}

static void emit_plain(const char *json) {
    pthread_mutex_lock(&out_lock);
    fputs(json, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

void role_note(const char *fmt, ...) {
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    pthread_mutex_lock(&lock);
    int i = 0;
    while (i < note_count && strcmp(notes[i].text, text) != 0) i++;
    if (i < note_count) {
        notes[i].times++;
        free(text);
    } else if (note_count < MAX_NOTES) {
        notes[note_count].text = text;
        notes[note_count].times = 1;
        note_count++;
    } else {
        notes[MAX_NOTES - 1].times++;
        free(text);
    }
    pthread_mutex_unlock(&lock);
}

void role_fail(const char *fmt, ...) {
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0) text = NULL;
    va_end(ap);
    pthread_mutex_lock(&out_lock);
    fputs("{\"event\":\"failed\",\"error\":", stdout);
    json_string(stdout, text ? text : "(no memory for the reason)");
    fputs("}\n", stdout);
    fflush(stdout);
    /* Exit while holding the lock, so no progress line follows the failure. */
    _exit(1);
}

void role_parse(int argc, char **argv, struct role_args *a, const char *version) {
    static const struct option flags[] = {
        {"kind", required_argument, 0, 'k'},    {"endpoint", required_argument, 0, 'e'},
        {"name", required_argument, 0, 'n'},    {"size", required_argument, 0, 's'},
        {"index", required_argument, 0, 'i'},   {"senders", required_argument, 0, 'S'},
        {"count", required_argument, 0, 'c'},   {"warmup", required_argument, 0, 'w'},
        {"window", required_argument, 0, 'W'},  {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->senders = 1;
    a->window = 4096;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", flags, NULL)) != -1) {
        switch (c) {
        case 'k': a->kind = optarg; break;
        case 'e': a->endpoint = optarg; break;
        case 'n': a->name = optarg; break;
        case 's': a->size = strtoull(optarg, NULL, 10); break;
        case 'i': a->index = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'S': a->senders = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'c': a->count = strtoull(optarg, NULL, 10); break;
        case 'w': a->warmup = strtoull(optarg, NULL, 10); break;
        case 'W': a->window = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'V': puts(version); exit(0);
        default: break; /* a flag the Rust roles take and these do not (--threads, --rate) */
        }
    }
    if (!a->kind || !a->endpoint || !a->name)
        role_fail("--kind, --endpoint and --name are required");
    if (a->size < STAMP_LEN) role_fail("--size %zu is below the %d-byte stamp", a->size, STAMP_LEN);
    if (a->senders == 0) role_fail("--senders must be positive");
    /* A closed pipe is an error to report, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
}

bool role_is(const struct role_args *a, const char *kind) { return strcmp(a->kind, kind) == 0; }

static void *read_stdin(void *unused) {
    (void)unused;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
        if (strcmp(line, "go") == 0) {
            pthread_mutex_lock(&lock);
            went = true;
            pthread_cond_broadcast(&changed);
            pthread_mutex_unlock(&lock);
        }
    }
    free(line);
    pthread_mutex_lock(&lock);
    stopped = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return NULL;
}

void role_start_stdin(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, read_stdin, NULL) != 0) role_fail("cannot start the stdin thread");
    pthread_detach(t);
}

void role_ready(void) {
    cpu_at_ready = own_cpu_ns();
    emit_plain("{\"event\":\"ready\"}");
}

void role_wait_go(void) {
    pthread_mutex_lock(&lock);
    while (!went && !stopped) pthread_cond_wait(&changed, &lock);
    bool go = went;
    pthread_mutex_unlock(&lock);
    if (!go) role_fail("stdin closed before `go`");
}

bool role_stopped(void) {
    pthread_mutex_lock(&lock);
    bool s = stopped;
    pthread_mutex_unlock(&lock);
    return s;
}

void role_wait_stopped(void) {
    pthread_mutex_lock(&lock);
    while (!stopped) pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
}

void payload_init(struct payload *p, size_t size) {
    p->buf = malloc(size);
    if (!p->buf) role_fail("no memory for a payload of %zu bytes", size);
    p->len = size;
    for (size_t i = 0; i < size; i++) p->buf[i] = (uint8_t)i;
}

static void put_u32_le(uint8_t *at, uint32_t v) {
    at[0] = (uint8_t)v;
    at[1] = (uint8_t)(v >> 8);
    at[2] = (uint8_t)(v >> 16);
    at[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32_le(const uint8_t *at) {
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

void payload_stamp(struct payload *p, uint32_t sender, uint32_t seq) {
    put_u32_le(p->buf, sender);
    put_u32_le(p->buf + 4, seq);
}

bool read_stamp(const void *data, size_t len, uint32_t *sender, uint32_t *seq) {
    if (len < STAMP_LEN) return false;
    *sender = get_u32_le(data);
    *seq = get_u32_le((const uint8_t *)data + 4);
    return true;
}

void inbox_init(struct inbox *in, size_t size, uint32_t senders, uint64_t per_sender) {
    memset(in, 0, sizeof *in);
    in->size = size;
    in->senders = senders;
    in->per_sender = per_sender;
    in->words = (size_t)((per_sender + 63) / 64);
    in->seen = calloc((size_t)senders * in->words + 1, sizeof(uint64_t));
    if (!in->seen) role_fail("no memory for the tally of %u senders", senders);
}

void inbox_take(struct inbox *in, const void *data, size_t len) {
    in->last_ns = now_ns();
    __atomic_store_n(&in->received, in->received + 1, __ATOMIC_RELAXED);
    uint32_t sender, seq;
    if (len != in->size || !read_stamp(data, len, &sender, &seq) || sender >= in->senders ||
        seq >= in->per_sender) {
        in->malformed++;
        return;
    }
    uint64_t *word = &in->seen[(size_t)sender * in->words + seq / 64];
    uint64_t bit = (uint64_t)1 << (seq % 64);
    if (*word & bit) in->duplicates++;
    *word |= bit;
}

static pthread_t watcher;
static bool watching;
static bool stop_watching; /* under `lock` */

static void *watch(void *arg) {
    struct inbox *in = arg;
    uint64_t last = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&lock);
    while (!stop_watching) {
        pthread_mutex_unlock(&lock);
        uint64_t received = __atomic_load_n(&in->received, __ATOMIC_RELAXED);
        if (received != last) {
            last = received;
            char line[80];
            snprintf(line, sizeof line, "{\"event\":\"progress\",\"received\":%" PRIu64 "}", received);
            emit_plain(line);
        }
        next.tv_nsec += PROGRESS_EVERY_NS;
        if (next.tv_nsec >= 1000000000) {
            next.tv_nsec -= 1000000000;
            next.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

void inbox_watch(struct inbox *in) {
    if (pthread_create(&watcher, NULL, watch, in) != 0) role_fail("cannot start the progress thread");
    watching = true;
}

void inbox_report(struct inbox *in) {
    if (watching) {
        pthread_mutex_lock(&lock);
        stop_watching = true;
        pthread_mutex_unlock(&lock);
        pthread_join(watcher, NULL);
        watching = false;
    }
    pthread_mutex_lock(&out_lock);
    FILE *f = stdout;
    fprintf(f,
            "{\"event\":\"received\",\"received\":%" PRIu64 ",\"duplicates\":%" PRIu64
            ",\"malformed\":%" PRIu64 ",\"last_ns\":%" PRIu64 ",\"seen\":[",
            in->received, in->duplicates, in->malformed, in->last_ns);
    for (uint32_t s = 0; s < in->senders; s++) {
        fputs(s ? ",[" : "[", f);
        for (size_t w = 0; w < in->words; w++)
            fprintf(f, w ? ",%" PRIu64 : "%" PRIu64, in->seen[(size_t)s * in->words + w]);
        fputc(']', f);
    }
    fputc(']', f);
    finish_report(f);
    pthread_mutex_unlock(&out_lock);
}

void report_sent(uint64_t count, uint64_t start_ns, uint64_t end_ns) {
    pthread_mutex_lock(&out_lock);
    fprintf(stdout,
            "{\"event\":\"sent\",\"count\":%" PRIu64 ",\"start_ns\":%" PRIu64
            ",\"end_ns\":%" PRIu64,
            count, start_ns, end_ns);
    finish_report(stdout);
    pthread_mutex_unlock(&out_lock);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The `q` quantile of sorted values, nearest rank (`protocol::quantile`). */
static uint64_t quantile(const uint64_t *sorted, uint64_t n, double q) {
    if (n == 0) return 0;
    double r = q * (double)n;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r) rank++;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

void report_round_trips(uint64_t *rtts, uint64_t count) {
    qsort(rtts, (size_t)count, sizeof *rtts, cmp_u64);
    pthread_mutex_lock(&out_lock);
    fprintf(stdout,
            "{\"event\":\"round_trips\",\"count\":%" PRIu64 ",\"p50_ns\":%" PRIu64
            ",\"p99_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64,
            count, quantile(rtts, count, 0.50), quantile(rtts, count, 0.99),
            count ? rtts[count - 1] : 0);
    finish_report(stdout);
    pthread_mutex_unlock(&out_lock);
}
