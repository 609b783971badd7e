/* What every C role program of bench-channels shares: the role's flags, the line protocol with
 * the harness (`go` and the end of stdin in, JSON lines out), the stamp each payload carries,
 * and the tally of stamps a receiver saw. It mirrors `chanbench::{ctx, protocol, tally}`. */
#ifndef BENCH_ROLE_H
#define BENCH_ROLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes at the start of every payload: sender index and sequence number, u32 little-endian. */
#define STAMP_LEN 8

/* The flags `bench-channels role` was given (see `chanbench::ctx::RoleArgs`). */
struct role_args {
    const char *kind;     /* send, recv, echo or ping */
    const char *endpoint; /* a NATS URL, or the directory the ZeroMQ sockets live in */
    const char *name;     /* the trial's subject, stream or socket name */
    size_t size;          /* payload bytes, at least STAMP_LEN */
    uint32_t index;       /* a sender's index, stamped into its payloads */
    uint32_t senders;     /* senders in the trial, so a receiver can size its tally */
    uint64_t count;       /* messages per sender, or round trips measured */
    uint64_t warmup;      /* round trips before measuring */
    uint32_t window;      /* most publishes awaiting their ack (JetStream) */
};

/* Parses the flags (unknown ones are skipped). `--version` prints `version` and exits. */
void role_parse(int argc, char **argv, struct role_args *args, const char *version);
/* True when the role is `kind`. */
bool role_is(const struct role_args *args, const char *kind);

/* Starts the thread that reads stdin: `go` starts a sender, the end of input stops a role. */
void role_start_stdin(void);
/* Prints `ready` and notes the CPU time, so reports count only the work after it. */
void role_ready(void);
/* Waits for `go`; fails the role if stdin closes first. */
void role_wait_go(void);
/* True once stdin has closed: time to report and exit. */
bool role_stopped(void);
/* Waits until stdin has closed. */
void role_wait_stopped(void);

/* Nanoseconds on CLOCK_MONOTONIC, the clock every role and the harness read. */
uint64_t now_ns(void);
/* Adds a note for the tables (a client event); the same text is counted, not repeated. */
void role_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints a `failed` line with the reason and exits 1. */
void role_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A payload of one size: a filler behind a per-message stamp, reused for every message. */
struct payload {
    uint8_t *buf;
    size_t len;
};
/* A payload of `size` bytes filled as the Rust roles fill theirs. */
void payload_init(struct payload *p, size_t size);
/* Writes the stamp of message `seq` of sender `sender` into the payload. */
void payload_stamp(struct payload *p, uint32_t sender, uint32_t seq);
/* The sender index and sequence number a payload starts with; false if it is too short. */
bool read_stamp(const void *data, size_t len, uint32_t *sender, uint32_t *seq);

/* What a receiver has taken: a bitmap of sequence numbers per sender (`tally::Inbox`). Only the
 * thread that takes messages touches it, except `received`, which the progress printer reads. */
struct inbox {
    size_t size;
    uint32_t senders;
    uint64_t per_sender;
    size_t words; /* u64 words per sender */
    uint64_t *seen; /* senders × words */
    uint64_t received; /* read by the progress thread: accessed atomically */
    uint64_t duplicates;
    uint64_t malformed;
    uint64_t last_ns;
};
/* An inbox for `senders` senders of `per_sender` messages of `size` bytes. */
void inbox_init(struct inbox *in, size_t size, uint32_t senders, uint64_t per_sender);
/* Takes one message. */
void inbox_take(struct inbox *in, const void *data, size_t len);
/* Prints `progress` lines every 50 ms while the inbox's count changes, until `report`. */
void inbox_watch(struct inbox *in);
/* Stops the progress printer and prints the `received` line. */
void inbox_report(struct inbox *in);

/* Prints a sender's `sent` line. */
void report_sent(uint64_t count, uint64_t start_ns, uint64_t end_ns);
/* Sorts the measured round trips and prints the pinger's `round_trips` line. */
void report_round_trips(uint64_t *rtts, uint64_t count);

#endif
