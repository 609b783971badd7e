/* bench-c-zmq: ZeroMQ (libzmq) as the brokerless reference, over ipc:// (Unix sockets) in the
 * directory the harness gives as the endpoint. Throughput: each receiver binds a PULL socket at
 * `<name>.<pid>.pull`; each sender lists those (all receivers are ready before any sender
 * starts), connects one PUSH socket to every one, waits until each connection is up, and lets
 * ZeroMQ round-robin its messages over them — so one shape serves 1 → 1 and N → N, and no
 * process sits in the middle. Round trip: the echo binds REP at `<name>.rtt`, the pinger
 * connects REQ. Socket options are libzmq's defaults (high-water marks of 1000 messages), except
 * the timeouts that let a role notice the end of stdin or a dead peer. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "role.h"

/* How long a blocking receive waits before the role checks stdin. */
#define POLL_MS 50
/* How long connecting and a reply may take. */
#define WAIT_MS 60000
/* Largest message a receiver takes whole (bench-channels' largest payload is 64 KiB). */
#define MAX_MESSAGE (64 * 1024 + 1)
/* Most receivers a sender connects to. */
#define MAX_PEERS 256

static struct role_args args;

static void check(int rc, const char *what) {
    if (rc != 0) role_fail("%s: %s", what, zmq_strerror(zmq_errno()));
}

static void set_int(void *sock, int option, int value, const char *what) {
    check(zmq_setsockopt(sock, option, &value, sizeof value), what);
}

static void *open_socket(void *ctx, int type) {
    void *sock = zmq_socket(ctx, type);
    if (!sock) role_fail("zmq_socket: %s", zmq_strerror(zmq_errno()));
    return sock;
}

/* Takes messages from the socket into `inbox` (sending each back with `echo`) until stdin
 * closes. */
static void take_until_stopped(void *sock, struct inbox *inbox, bool echo) {
    static char buf[MAX_MESSAGE];
    set_int(sock, ZMQ_RCVTIMEO, POLL_MS, "set ZMQ_RCVTIMEO");
    inbox_watch(inbox);
    while (!role_stopped()) {
        int n = zmq_recv(sock, buf, sizeof buf, 0);
        if (n < 0) {
            if (zmq_errno() == EAGAIN || zmq_errno() == EINTR) continue;
            role_fail("receive: %s", zmq_strerror(zmq_errno()));
        }
        size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf;
        inbox_take(inbox, buf, len);
        if (echo && zmq_send(sock, buf, len, 0) < 0)
            role_fail("send the echo: %s", zmq_strerror(zmq_errno()));
    }
    inbox_report(inbox);
}

/* A receiver: binds its PULL socket, then takes messages until stdin closes. */
static void recv_role(void *ctx) {
    static struct inbox inbox;
    inbox_init(&inbox, args.size, args.senders, args.count);
    void *sock = open_socket(ctx, ZMQ_PULL);
    set_int(sock, ZMQ_LINGER, 0, "set ZMQ_LINGER");
    char endpoint[512];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/%s.%ld.pull", args.endpoint, args.name,
             (long)getpid());
    if (zmq_bind(sock, endpoint) != 0) role_fail("cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
    role_ready();
    take_until_stopped(sock, &inbox, false);
    zmq_close(sock);
}

/* Waits until `peers` connections of the monitored socket are up. */
static void await_connected(void *ctx, const char *monitor, int peers) {
    void *events = open_socket(ctx, ZMQ_PAIR);
    check(zmq_connect(events, monitor), "connect to the socket monitor");
    set_int(events, ZMQ_RCVTIMEO, WAIT_MS, "set ZMQ_RCVTIMEO");
    for (int up = 0; up < peers;) {
        /* Each event is two frames: a 16-bit event and 32-bit value, then the endpoint. */
        uint8_t head[6];
        char where[512];
        if (zmq_recv(events, head, sizeof head, 0) < 0)
            role_fail("connected to %d of %d receivers in %d ms", up, peers, WAIT_MS);
        if (zmq_recv(events, where, sizeof where, 0) < 0)
            role_fail("socket monitor: %s", zmq_strerror(zmq_errno()));
        uint16_t event = (uint16_t)(head[0] | head[1] << 8);
        if (event == ZMQ_EVENT_CONNECTED) up++;
    }
    zmq_close(events);
}

/* A sender: connects to every receiver's socket, then sends `count` stamped messages after
 * `go`; done once ZeroMQ has taken the last one. It keeps its socket open until stdin closes:
 * a receiving socket drops what it has not yet handed on when its peer disconnects (measured:
 * closing at once, even lingering, lost the last few thousand of 100,000 messages), and the
 * harness closes a sender's stdin only after every receiver has reported. */
static void send_role(void *ctx) {
    void *sock = open_socket(ctx, ZMQ_PUSH);
    set_int(sock, ZMQ_LINGER, 0, "set ZMQ_LINGER");
    char monitor[64];
    snprintf(monitor, sizeof monitor, "inproc://monitor.%ld", (long)getpid());
    check(zmq_socket_monitor(sock, monitor, ZMQ_EVENT_CONNECTED), "zmq_socket_monitor");
    DIR *dir = opendir(args.endpoint);
    if (!dir) role_fail("cannot list %s", args.endpoint);
    size_t prefix = strlen(args.name);
    int peers = 0;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        const char *file = entry->d_name;
        size_t len = strlen(file);
        if (strncmp(file, args.name, prefix) != 0 || file[prefix] != '.' || len < 5 ||
            strcmp(file + len - 5, ".pull") != 0)
            continue;
        if (peers == MAX_PEERS) role_fail("more than %d receivers", MAX_PEERS);
        char endpoint[512];
        snprintf(endpoint, sizeof endpoint, "ipc://%s/%s", args.endpoint, file);
        if (zmq_connect(sock, endpoint) != 0)
            role_fail("cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        peers++;
    }
    closedir(dir);
    if (peers == 0) role_fail("no receiver's socket in %s", args.endpoint);
    await_connected(ctx, monitor, peers);
    struct payload p;
    payload_init(&p, args.size);
    role_ready();
    role_wait_go();
    uint64_t start = now_ns();
    for (uint64_t seq = 0; seq < args.count; seq++) {
        payload_stamp(&p, args.index, (uint32_t)seq);
        while (zmq_send(sock, p.buf, p.len, 0) < 0) {
            if (zmq_errno() != EINTR)
                role_fail("send %" PRIu64 ": %s", seq, zmq_strerror(zmq_errno()));
        }
    }
    report_sent(args.count, start, now_ns());
    role_wait_stopped();
    zmq_socket_monitor(sock, NULL, 0);
    zmq_close(sock);
}

/* The echo: binds REP and sends every request back until stdin closes. */
static void echo_role(void *ctx) {
    static struct inbox inbox;
    inbox_init(&inbox, args.size, 1, args.warmup + args.count);
    void *sock = open_socket(ctx, ZMQ_REP);
    set_int(sock, ZMQ_LINGER, 0, "set ZMQ_LINGER");
    char endpoint[512];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/%s.rtt", args.endpoint, args.name);
    if (zmq_bind(sock, endpoint) != 0) role_fail("cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
    role_ready();
    take_until_stopped(sock, &inbox, true);
    zmq_close(sock);
}

/* The pinger: sends a request and waits for its reply, `warmup + count` times after `go`. */
static void ping_role(void *ctx) {
    void *sock = open_socket(ctx, ZMQ_REQ);
    set_int(sock, ZMQ_LINGER, 0, "set ZMQ_LINGER");
    set_int(sock, ZMQ_RCVTIMEO, WAIT_MS, "set ZMQ_RCVTIMEO");
    char endpoint[512];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/%s.rtt", args.endpoint, args.name);
    if (zmq_connect(sock, endpoint) != 0)
        role_fail("cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
    struct payload p;
    payload_init(&p, args.size);
    uint64_t *rtts = malloc((size_t)(args.count ? args.count : 1) * sizeof *rtts);
    uint8_t *reply = malloc(args.size + 1);
    if (!rtts || !reply) role_fail("no memory for %" PRIu64 " round trips", args.count);
    role_ready();
    role_wait_go();
    for (uint64_t i = 0; i < args.warmup + args.count; i++) {
        payload_stamp(&p, 0, (uint32_t)i);
        uint64_t sent = now_ns();
        if (zmq_send(sock, p.buf, p.len, 0) < 0)
            role_fail("request %" PRIu64 ": %s", i, zmq_strerror(zmq_errno()));
        int n = zmq_recv(sock, reply, args.size + 1, 0);
        uint64_t rtt = now_ns() - sent;
        if (n < 0) role_fail("reply %" PRIu64 ": %s", i, zmq_strerror(zmq_errno()));
        uint32_t sender, seq;
        if ((size_t)n != args.size || !read_stamp(reply, (size_t)n, &sender, &seq) || sender != 0 ||
            seq != (uint32_t)i)
            role_fail("the reply to request %" PRIu64 " carries another request's stamp", i);
        if (i >= args.warmup) rtts[i - args.warmup] = rtt;
    }
    report_round_trips(rtts, args.count);
    zmq_close(sock);
}

int main(int argc, char **argv) {
    int major, minor, patch;
    zmq_version(&major, &minor, &patch);
    char version[64];
    snprintf(version, sizeof version, "libzmq %d.%d.%d", major, minor, patch);
    role_parse(argc, argv, &args, version);
    role_start_stdin();
    void *ctx = zmq_ctx_new();
    if (!ctx) role_fail("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    if (role_is(&args, "send")) send_role(ctx);
    else if (role_is(&args, "recv")) recv_role(ctx);
    else if (role_is(&args, "echo")) echo_role(ctx);
    else if (role_is(&args, "ping")) ping_role(ctx);
    else role_fail("ZeroMQ has no %s role", args.kind);
    zmq_ctx_term(ctx);
    return 0;
}
