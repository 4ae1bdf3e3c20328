/*
 * coap_util.c - the requests the tools' sensors make, built one way: a
 * request with our token, the registration with the resource directory
 * (POST /rd?ep=..&lt=..) and a push of one reading (POST /ps/<path>), and
 * the options every request or notification adds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_common.h"

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
tool_release_body(coap_session_t *session, void *body)
{
    (void)session;
    free(body);
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

coap_pdu_t *
tool_rd_request(coap_session_t *session, const uint8_t *tok, size_t len,
                const char *ep, unsigned lifetime)
{
    coap_pdu_t *pdu = tool_request(session, COAP_MESSAGE_CON,
                                   COAP_REQUEST_CODE_POST, tok, len);
    char q[320];

    if (!pdu)
        return NULL;
    tool_add_uri_path(pdu, "rd");
    tool_add_uint_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                         COAP_MEDIATYPE_APPLICATION_LINK_FORMAT);
    snprintf(q, sizeof(q), "ep=%s", ep);
    coap_add_option(pdu, COAP_OPTION_URI_QUERY, strlen(q), (const uint8_t *)q);
    snprintf(q, sizeof(q), "lt=%u", lifetime);
    coap_add_option(pdu, COAP_OPTION_URI_QUERY, strlen(q), (const uint8_t *)q);
    return pdu;
}

coap_pdu_t *
tool_push_request(coap_session_t *session, coap_pdu_type_t type,
                  const uint8_t *tok, size_t len, const char *path, unsigned ct)
{
    coap_pdu_t *pdu = tool_request(session, type, COAP_REQUEST_CODE_POST, tok, len);

    if (!pdu)
        return NULL;
    tool_add_uri_path(pdu, "ps");
    tool_add_uri_path(pdu, path);
    tool_add_uint_option(pdu, COAP_OPTION_CONTENT_FORMAT, ct);
    return pdu;
}
