/*
 * coap_util.c - small libcoap helpers the tools share: the batched drain of
 * a context's epoll fd, a request with our token, and the options every
 * request or notification adds.
 */
#include <string.h>
#include <sys/epoll.h>

#include "tool_common.h"

/* Events one coap_io_do_epoll() takes; the benchmark figures were made with 64. */
#define DRAIN_BATCH 64

void
tool_coap_drain(coap_context_t *ctx, int fd)
{
    struct epoll_event evs[DRAIN_BATCH];
    int n = epoll_wait(fd, evs, DRAIN_BATCH, 0);

    if (n > 0)
        coap_io_do_epoll(ctx, evs, (size_t)n);
}

coap_pdu_t *
tool_request(coap_session_t *session, coap_pdu_type_t type,
             coap_pdu_code_t code, const uint8_t *tok, size_t len)
{
    coap_pdu_t *pdu = coap_pdu_init(type, code, coap_new_message_id(session),
                                    coap_session_max_pdu_size(session));

    if (!pdu)
        return NULL;
    if (!coap_add_token(pdu, len, tok)) {
        coap_delete_pdu(pdu);
        return NULL;
    }
    return pdu;
}

void
tool_add_uri_path(coap_pdu_t *pdu, const char *path)
{
    while (*path) {
        const char *slash = strchr(path, '/');
        size_t n = slash ? (size_t)(slash - path) : strlen(path);
        coap_add_option(pdu, COAP_OPTION_URI_PATH, n, (const uint8_t *)path);
        path += n + (slash != NULL);
    }
}

void
tool_add_uint_option(coap_pdu_t *pdu, coap_option_num_t num, unsigned v)
{
    uint8_t buf[4];

    coap_add_option(pdu, num, coap_encode_var_safe(buf, sizeof(buf), v), buf);
}
