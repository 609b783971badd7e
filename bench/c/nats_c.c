/* bench-c-nats: the NATS core contender's roles through the official C client (libnats), as
 * `chanbench/nats.rs` plays them through async-nats — senders publishing to the trial's subject,
 * receivers in one queue group, and request/reply for the round trip. A tuned C user's choices:
 * asynchronous subscriptions (the library's thread runs the callback), publishes buffered by the
 * library and flushed by its flusher, the echo's replies sent at once (`SendAsap`, which the
 * client's docs recommend for a replier). */
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "role.h"

/* The queue group every subscriber joins, so each message goes to one of them. */
#define QUEUE "bench"
/* Messages a subscription may buffer before the client drops them as a slow consumer: as the
 * Rust roles' `SUBSCRIPTION_CAPACITY`, so NATS is measured at its best rather than by drops. */
#define PENDING_MESSAGES (1 << 21)
/* How long a flush or a request may take. */
#define WAIT_MS 60000
/* How long the last callback may take once the subscription is closed (less than the harness
 * waits for a role to exit, so the failure is named). */
#define CLOSE_WAIT_S 5

static struct role_args args;

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure) {
    (void)nc, (void)sub, (void)closure;
    role_note("nats C client: %s", natsStatus_GetText(err));
}

static void on_disconnected(natsConnection *nc, void *closure) {
    (void)nc, (void)closure;
    role_note("nats C client: disconnected");
}

static void on_reconnected(natsConnection *nc, void *closure) {
    (void)nc, (void)closure;
    role_note("nats C client: reconnected");
}

/* Fails the role with `what` and the client's last error when `s` is not NATS_OK. */
static void check(natsStatus s, const char *what) {
    if (s != NATS_OK) role_fail("%s: %s (%s)", what, natsStatus_GetText(s), nats_GetLastError(NULL));
}

static natsConnection *connect_to(const char *url, bool send_asap) {
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    check(natsOptions_Create(&opts), "natsOptions_Create");
    check(natsOptions_SetURL(opts, url), "natsOptions_SetURL");
    check(natsOptions_SetErrorHandler(opts, on_error, NULL), "natsOptions_SetErrorHandler");
    check(natsOptions_SetDisconnectedCB(opts, on_disconnected, NULL), "SetDisconnectedCB");
    check(natsOptions_SetReconnectedCB(opts, on_reconnected, NULL), "SetReconnectedCB");
    if (send_asap) check(natsOptions_SetSendAsap(opts, true), "natsOptions_SetSendAsap");
    natsStatus s = natsConnection_Connect(&nc, opts);
    if (s != NATS_OK) role_fail("cannot connect to %s: %s", url, natsStatus_GetText(s));
    natsOptions_Destroy(opts);
    return nc;
}

/* Publishes `count` stamped messages after `go`, then flushes: a PING the server answers only
 * after it has processed every publish before it. */
static void send_role(void) {
    natsConnection *nc = connect_to(args.endpoint, false);
    struct payload p;
    payload_init(&p, args.size);
    role_ready();
    role_wait_go();
    uint64_t start = now_ns();
    for (uint64_t seq = 0; seq < args.count; seq++) {
        payload_stamp(&p, args.index, (uint32_t)seq);
        natsStatus s = natsConnection_Publish(nc, args.name, p.buf, (int)p.len);
        if (s != NATS_OK) role_fail("publish %" PRIu64 ": %s", seq, natsStatus_GetText(s));
    }
    check(natsConnection_FlushTimeout(nc, WAIT_MS), "flush");
    report_sent(args.count, start, now_ns());
    natsConnection_Destroy(nc);
}

/* What a subscription's callback shares with the main thread. */
struct sub_state {
    struct inbox inbox;
    natsConnection *nc;
    bool echo;
    /* The first reply that could not be sent (echo); read once the subscription has closed. */
    natsStatus reply_error;
    /* Set by the completion callback: the message callback will not run again. */
    pthread_mutex_t lock;
    pthread_cond_t closed_cond;
    bool closed;
};

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)sub;
    struct sub_state *st = closure;
    const char *data = natsMsg_GetData(msg);
    int len = natsMsg_GetDataLength(msg);
    inbox_take(&st->inbox, data, (size_t)len);
    if (st->echo) {
        const char *reply = natsMsg_GetReply(msg);
        natsStatus s = reply ? natsConnection_Publish(nc, reply, data, len) : NATS_ERR;
        if (s != NATS_OK && st->reply_error == NATS_OK) st->reply_error = s;
    }
    natsMsg_Destroy(msg);
}

static void on_complete(void *closure) {
    struct sub_state *st = closure;
    pthread_mutex_lock(&st->lock);
    st->closed = true;
    pthread_cond_broadcast(&st->closed_cond);
    pthread_mutex_unlock(&st->lock);
}

/* Takes messages in the queue group until stdin closes (the echo also answers each), then closes
 * the subscription, waits until its callback has returned for the last time, and reports. */
static void subscribe_role(bool echo) {
    static struct sub_state st;
    st.echo = echo;
    pthread_mutex_init(&st.lock, NULL);
    pthread_cond_init(&st.closed_cond, NULL);
    uint32_t senders = echo ? 1 : args.senders;
    uint64_t per_sender = echo ? args.warmup + args.count : args.count;
    inbox_init(&st.inbox, args.size, senders, per_sender);
    st.nc = connect_to(args.endpoint, echo);
    natsSubscription *sub = NULL;
    check(natsConnection_QueueSubscribe(&sub, st.nc, args.name, QUEUE, on_msg, &st),
          "queue subscribe");
    check(natsSubscription_SetPendingLimits(sub, PENDING_MESSAGES, -1), "set pending limits");
    check(natsSubscription_SetOnCompleteCB(sub, on_complete, &st), "set on-complete callback");
    /* The server has the subscription once it answers this PING. */
    check(natsConnection_FlushTimeout(st.nc, WAIT_MS), "flush");
    role_ready();
    inbox_watch(&st.inbox);
    role_wait_stopped();
    check(natsSubscription_Unsubscribe(sub), "unsubscribe");
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CLOSE_WAIT_S;
    pthread_mutex_lock(&st.lock);
    int waited = 0;
    while (!st.closed && waited == 0) waited = pthread_cond_timedwait(&st.closed_cond, &st.lock, &until);
    bool closed = st.closed;
    pthread_mutex_unlock(&st.lock);
    if (!closed) role_fail("the subscription's callback did not finish within %d s", CLOSE_WAIT_S);
    int64_t dropped = 0;
    if (natsSubscription_GetDropped(sub, &dropped) == NATS_OK && dropped > 0)
        role_note("nats C client: the subscription dropped %" PRId64 " messages", dropped);
    if (st.reply_error != NATS_OK)
        role_fail("cannot send a reply: %s", natsStatus_GetText(st.reply_error));
    inbox_report(&st.inbox);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(st.nc);
}

/* Sends `warmup + count` requests one at a time after `go` and reports the measured ones. */
static void ping_role(void) {
    natsConnection *nc = connect_to(args.endpoint, false);
    struct payload p;
    payload_init(&p, args.size);
    uint64_t total = args.warmup + args.count;
    uint64_t *rtts = malloc((size_t)(args.count ? args.count : 1) * sizeof *rtts);
    if (!rtts) role_fail("no memory for %" PRIu64 " round trips", args.count);
    role_ready();
    role_wait_go();
    for (uint64_t i = 0; i < total; i++) {
        payload_stamp(&p, 0, (uint32_t)i);
        natsMsg *reply = NULL;
        uint64_t sent = now_ns();
        natsStatus s = natsConnection_Request(&reply, nc, args.name, p.buf, (int)p.len, WAIT_MS);
        uint64_t rtt = now_ns() - sent;
        if (s != NATS_OK) role_fail("request %" PRIu64 ": %s", i, natsStatus_GetText(s));
        uint32_t sender, seq;
        if (!read_stamp(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), &sender, &seq) ||
            sender != 0 || seq != (uint32_t)i)
            role_fail("the reply to request %" PRIu64 " carries another request's stamp", i);
        natsMsg_Destroy(reply);
        if (i >= args.warmup) rtts[i - args.warmup] = rtt;
    }
    report_round_trips(rtts, args.count);
    natsConnection_Destroy(nc);
}

int main(int argc, char **argv) {
    char version[64];
    snprintf(version, sizeof version, "libnats %s", nats_GetVersion());
    role_parse(argc, argv, &args, version);
    role_start_stdin();
    if (role_is(&args, "send")) send_role();
    else if (role_is(&args, "recv")) subscribe_role(false);
    else if (role_is(&args, "echo")) subscribe_role(true);
    else if (role_is(&args, "ping")) ping_role();
    else role_fail("NATS core has no %s role", args.kind);
    return 0;
}
