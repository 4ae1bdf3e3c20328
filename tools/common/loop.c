/*
 * loop.c - the tools' one event loop and the libcoap contexts it drives.
 *
 * One epoll set holds a signalfd (TERM, INT) and the epoll fd of every
 * libcoap context (libcoap's own set, with its retransmission timer).  A
 * context is either drained in batches into coap_io_do_epoll(), as the
 * gateway drives libcoap, or handed to coap_io_process() (TOOL_CTX_PROCESS,
 * the simulator's way).
 *
 * libcoap's callbacks are registered here once for every tool; they find
 * the tool's owner of the session and call its tool_ctx_events.  A context
 * being freed is muted first, so the events its teardown raises reach no
 * one: a tool never sees a callback for a sensor it is dropping.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/epoll.h>

#include "tool_common.h"

#define LOOP_EVENTS 256
/* Events one coap_io_do_epoll() takes; the benchmark figures were made with 64. */
#define DRAIN_BATCH 64

struct tool_loop {
    int epfd;
    int sigfd;
    struct tool_ctx *sent;        /* contexts to re-arm before the next wait */
};

struct tool_ctx {
    coap_context_t *coap;
    tool_loop_t *loop;
    int fd;                       /* libcoap's epoll fd, in loop->epfd */
    unsigned flags;
    bool sent, queued, muted;
    struct tool_ctx *next_sent;
    const struct tool_ctx_events *ev;
    void *app;
};

/* ---- the loop ---- */

tool_loop_t *
tool_loop_new(void)
{
    tool_loop_t *l = calloc(1, sizeof(*l));
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->sigfd = tool_signal_fd();
    if (l->epfd < 0 || l->sigfd < 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->sigfd, &ev) < 0) {
        tool_loop_free(l);
        return NULL;
    }
    return l;
}

void
tool_loop_free(tool_loop_t *l)
{
    if (!l)
        return;
    if (l->sigfd >= 0)
        close(l->sigfd);
    if (l->epfd >= 0)
        close(l->epfd);
    free(l);
}

/* libcoap arms its timer when asked; after our sends it must be asked again. */
static void
rearm_sent(tool_loop_t *l)
{
    coap_tick_t now;

    if (!l->sent)
        return;
    coap_ticks(&now);
    while (l->sent) {
        struct tool_ctx *c = l->sent;
        l->sent = c->next_sent;
        if (c->sent)
            coap_io_prepare_epoll(c->coap, now);
        c->sent = c->queued = false;
    }
}

/* What is ready on a context's fd: let libcoap work. */
static void
ctx_ready(struct tool_ctx *c)
{
    struct epoll_event evs[DRAIN_BATCH];
    int n;

    if (c->flags & TOOL_CTX_PROCESS) {
        coap_io_process(c->coap, COAP_IO_NO_WAIT);
        return;
    }
    n = epoll_wait(c->fd, evs, DRAIN_BATCH, 0);
    if (n > 0)
        coap_io_do_epoll(c->coap, evs, (size_t)n);
    c->sent = false;
}

int
tool_loop_wait(tool_loop_t *l, int timeout_ms)
{
    struct epoll_event evs[LOOP_EVENTS];
    int n, stop = 0;

    rearm_sent(l);
    n = epoll_wait(l->epfd, evs, LOOP_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL)
            stop = 1;   /* the signalfd */
        else
            ctx_ready(evs[i].data.ptr);
    }
    return stop;
}

/* ---- libcoap's callbacks, for every context ---- */

/* Our context of a session: libcoap's context app data is ours. */
static struct tool_ctx *
ctx_of(const coap_session_t *session)
{
    return coap_get_app_data(coap_session_get_context(session));
}

void *
tool_session_app(const coap_session_t *session)
{
    struct tool_ctx *c;

    if (coap_session_get_type(session) == COAP_SESSION_TYPE_CLIENT)
        return coap_session_get_app_data(session);
    c = ctx_of(session);
    return c ? c->app : NULL;
}

/* The owner an event goes to; NULL while muted or once released. */
static void *
listener(const coap_session_t *session)
{
    struct tool_ctx *c = ctx_of(session);

    return c && !c->muted ? tool_session_app(session) : NULL;
}

/* libcoap's handlers: to the owner's events; no mid, always "OK". */
static coap_response_t
on_response(coap_session_t *session, const coap_pdu_t *sent,
            const coap_pdu_t *rcvd, const coap_mid_t mid)
{
    struct tool_ctx *c = ctx_of(session);
    void *app = listener(session);

    (void)mid;
    if (app && c->ev->response)
        c->ev->response(app, sent, rcvd);
    return COAP_RESPONSE_OK;
}

static void
on_nack(coap_session_t *session, const coap_pdu_t *sent,
        const coap_nack_reason_t reason, const coap_mid_t mid)
{
    struct tool_ctx *c = ctx_of(session);
    void *app = listener(session);

    (void)mid;
    if (app && sent && c->ev->nack)
        c->ev->nack(app, sent, reason);
}

static int
on_event(coap_session_t *session, const coap_event_t event)
{
    struct tool_ctx *c = ctx_of(session);
    void *app = listener(session);

    if (app && c->ev->event)
        c->ev->event(app, event);
    return 0;
}

/* ---- contexts ---- */

tool_ctx_t *
tool_ctx_new(tool_loop_t *l, const struct tool_ctx_events *ev, void *app,
             unsigned flags)
{
    tool_ctx_t *c = calloc(1, sizeof(*c));
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };

    if (!c)
        return NULL;
    c->loop = l;
    c->ev = ev;
    c->app = app;
    c->flags = flags;
    c->fd = -1;
    c->coap = coap_new_context(NULL);
    if (!c->coap) {
        free(c);
        return NULL;
    }
    coap_set_app_data(c->coap, c);
    if (flags & TOOL_CTX_BLOCKWISE)
        coap_context_set_block_mode(c->coap,
                                    COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_register_response_handler(c->coap, on_response);
    coap_register_nack_handler(c->coap, on_nack);
    coap_register_event_handler(c->coap, on_event);
    c->fd = coap_context_get_coap_fd(c->coap);
    if (c->fd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &e) < 0) {
        c->fd = -1;
        tool_ctx_free(c);
        return NULL;
    }
    return c;
}

coap_context_t *
tool_ctx_coap(const tool_ctx_t *c)
{
    return c->coap;
}

/* The session starts its handshake at once; 'app' is what its events get. */
static coap_session_t *
adopt(coap_session_t *session, void *app)
{
    if (session)
        coap_session_set_app_data(session, app);
    return session;
}

coap_session_t *
tool_ctx_connect_psk(tool_ctx_t *c, const coap_address_t *local,
                     const coap_address_t *peer, const char *identity,
                     const uint8_t *key, size_t key_len, void *app)
{
    coap_dtls_cpsk_t psk;

    tool_dtls_cpsk(&psk, identity, key, key_len);
    return adopt(coap_new_client_session_psk2(c->coap, local, peer,
                                              COAP_PROTO_DTLS, &psk), app);
}

coap_session_t *
tool_ctx_connect_pki(tool_ctx_t *c, const coap_address_t *local,
                     const coap_address_t *peer, const char *ca,
                     const char *cert, const char *key, void *app)
{
    coap_dtls_pki_t pki;

    tool_dtls_pki(&pki, ca, cert, key);
    return adopt(coap_new_client_session_pki(c->coap, local, peer,
                                             COAP_PROTO_DTLS, &pki), app);
}

void
tool_session_release(coap_session_t *session)
{
    coap_session_set_app_data(session, NULL);
    coap_session_release(session);
}

void
tool_ctx_sent(tool_ctx_t *c)
{
    c->sent = true;
    if (c->queued)
        return;
    c->queued = true;
    c->next_sent = c->loop->sent;
    c->loop->sent = c;
}

void
tool_ctx_process(tool_ctx_t *c)
{
    coap_io_process(c->coap, COAP_IO_NO_WAIT);
}

void
tool_ctx_mute(tool_ctx_t *c)
{
    if (c->muted)
        return;
    c->muted = true;
    if (c->fd >= 0)
        epoll_ctl(c->loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

/* Unlinks c from the loop's list of contexts to re-arm. */
static void
unqueue(tool_ctx_t *c)
{
    struct tool_ctx **p = &c->loop->sent;

    while (c->queued && *p) {
        if (*p == c) {
            *p = c->next_sent;
            c->queued = false;
        } else {
            p = &(*p)->next_sent;
        }
    }
}

void
tool_ctx_free(tool_ctx_t *c)
{
    if (!c)
        return;
    tool_ctx_mute(c);
    unqueue(c);
    coap_free_context(c->coap);
    free(c);
}
