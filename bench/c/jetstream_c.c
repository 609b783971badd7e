/* bench-c-jetstream: the JetStream contender's roles through the official C client (libnats), as
 * `chanbench/jetstream.rs` plays them through async-nats, on the work-queue stream and durable
 * pull consumer the harness made for the trial (both named as in `jetstream::create`). What a
 * tuned C user does: publishers publish asynchronously with at most `--window` acks outstanding
 * (`js_PublishAsync`, then `js_PublishAsyncComplete`), receivers fetch batches from the pull
 * consumer and ack each message explicitly (`natsMsg_Ack`, which does not wait). */
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "role.h"

/* The durable pull consumer every receiver of a trial shares (`jetstream::CONSUMER`). */
#define CONSUMER "bench"
/* Messages a receiver asks for per fetch: the counterpart of circuit's prefetch
 * (`jetstream::PULL_BATCH`). */
#define PULL_BATCH 1024
/* How long one fetch waits for messages; the receiver checks stdin between fetches. */
#define FETCH_WAIT_MS 50
/* How long a publish may wait for room among the outstanding acks, and the last acks may take. */
#define WAIT_MS 60000

static struct role_args args;

static void check(natsStatus s, const char *what) {
    if (s != NATS_OK) role_fail("%s: %s (%s)", what, natsStatus_GetText(s), nats_GetLastError(NULL));
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure) {
    (void)nc, (void)sub, (void)closure;
    role_note("nats C client: %s", natsStatus_GetText(err));
}

static void on_disconnected(natsConnection *nc, void *closure) {
    (void)nc, (void)closure;
    role_note("nats C client: disconnected");
}

static natsConnection *connect_to(const char *url) {
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    check(natsOptions_Create(&opts), "natsOptions_Create");
    check(natsOptions_SetURL(opts, url), "natsOptions_SetURL");
    check(natsOptions_SetErrorHandler(opts, on_error, NULL), "natsOptions_SetErrorHandler");
    check(natsOptions_SetDisconnectedCB(opts, on_disconnected, NULL), "SetDisconnectedCB");
    natsStatus s = natsConnection_Connect(&nc, opts);
    if (s != NATS_OK) role_fail("cannot connect to %s: %s", url, natsStatus_GetText(s));
    natsOptions_Destroy(opts);
    return nc;
}

/* A publish the stream refused, or whose ack did not come: counted in the notes. The message is
 * not sent again, so the receivers' tally shows it as lost. */
static void on_publish_error(jsCtx *js, jsPubAckErr *pae, void *closure) {
    (void)js, (void)closure;
    role_note("jetstream C publisher: a publish failed: %s%s%s", natsStatus_GetText(pae->Err),
              pae->ErrText ? ": " : "", pae->ErrText ? pae->ErrText : "");
}

/* Publishes `count` stamped messages after `go` with at most `--window` acks outstanding, and
 * returns once every ack has come. */
static void send_role(void) {
    natsConnection *nc = connect_to(args.endpoint);
    jsOptions jo;
    check(jsOptions_Init(&jo), "jsOptions_Init");
    jo.PublishAsync.MaxPending = args.window ? args.window : 1;
    jo.PublishAsync.ErrHandler = on_publish_error;
    /* A publish waits this long for room before it fails (the default is 200 ms). */
    jo.PublishAsync.StallWait = WAIT_MS;
    jsCtx *js = NULL;
    check(natsConnection_JetStream(&js, nc, &jo), "natsConnection_JetStream");
    struct payload p;
    payload_init(&p, args.size);
    role_ready();
    role_wait_go();
    uint64_t start = now_ns();
    for (uint64_t seq = 0; seq < args.count; seq++) {
        payload_stamp(&p, args.index, (uint32_t)seq);
        natsStatus s = js_PublishAsync(js, args.name, p.buf, (int)p.len, NULL);
        if (s != NATS_OK) role_fail("publish %" PRIu64 ": %s", seq, natsStatus_GetText(s));
    }
    jsPubOptions po;
    check(jsPubOptions_Init(&po), "jsPubOptions_Init");
    po.MaxWait = WAIT_MS;
    check(js_PublishAsyncComplete(js, &po), "waiting for the last acks");
    report_sent(args.count, start, now_ns());
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* Fetches batches from the trial's consumer, acking every message, until stdin closes. */
static void recv_role(void) {
    static struct inbox inbox;
    inbox_init(&inbox, args.size, args.senders, args.count);
    natsConnection *nc = connect_to(args.endpoint);
    jsCtx *js = NULL;
    check(natsConnection_JetStream(&js, nc, NULL), "natsConnection_JetStream");
    jsSubOptions so;
    check(jsSubOptions_Init(&so), "jsSubOptions_Init");
    so.Stream = args.name;
    so.Consumer = CONSUMER;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&sub, js, args.name, CONSUMER, NULL, &so, &jerr);
    if (s != NATS_OK)
        role_fail("cannot bind to consumer %s of stream %s: %s (%s, code %d)", CONSUMER, args.name,
                  natsStatus_GetText(s), nats_GetLastError(NULL), (int)jerr);
    role_ready();
    inbox_watch(&inbox);
    while (!role_stopped()) {
        /* libnats 3.4.1 (Debian's) overflows the array Fetch returns when more than half of
         * `batch` is already waiting in the subscription (messages for an earlier fetch that
         * gave up a moment before the server answered): it keeps those, asks the server for
         * `batch - waiting` more, and then collects until it holds `batch - waiting` in all —
         * which it already exceeds — so it writes past the array until the fetch times out
         * (seen as heap corruption in 4 → 4). Later releases keep the batch in a variable of
         * its own. Asking for a full batch plus twice what waits keeps the waiting part under
         * half, so the bug never triggers. */
        int waiting = 0;
        natsSubscription_GetPending(sub, &waiting, NULL);
        natsMsgList list = {0};
        s = natsSubscription_Fetch(&list, sub, PULL_BATCH + 2 * waiting, FETCH_WAIT_MS, &jerr);
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) {
            if (natsConnection_IsClosed(nc))
                role_fail("the connection closed: %s", natsStatus_GetText(s));
            role_note("jetstream C receiver: fetch: %s", natsStatus_GetText(s));
            continue;
        }
        for (int i = 0; i < list.Count; i++) {
            natsMsg *msg = list.Msgs[i];
            inbox_take(&inbox, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
            natsStatus acked = natsMsg_Ack(msg, NULL);
            if (acked != NATS_OK)
                role_note("jetstream C receiver: ack failed: %s", natsStatus_GetText(acked));
        }
        natsMsgList_Destroy(&list);
    }
    inbox_report(&inbox);
    /* Not unsubscribed: that could delete the consumer the other receivers share. */
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

int main(int argc, char **argv) {
    char version[64];
    snprintf(version, sizeof version, "libnats %s", nats_GetVersion());
    role_parse(argc, argv, &args, version);
    role_start_stdin();
    if (role_is(&args, "send")) send_role();
    else if (role_is(&args, "recv")) recv_role();
    else role_fail("JetStream has no %s role in this benchmark", args.kind);
    return 0;
}
