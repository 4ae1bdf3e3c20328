/*
 * transport_dtls.c - who a DTLS peer is: the per-identity PSK lookup, the
 * device certificates checked against coap.ca_file (and its CRLs) in a
 * trust store of our own, and the device id a certificate names.
 *
 * Layer: transport (calls base, libcoap and OpenSSL)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uthash.h>

#include "coap2mqtt/hash_free.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/topics.h"
#include "transport_internal.h"

/* The device id a certificate gave a session (subject CN / first DNS SAN). */
struct cert_id {
    coap_session_t *session;
    char id[TOPIC_ID_MAX + 1];
    UT_hash_handle hh;
};

void
transport__sanitize(const uint8_t *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    /* Never raw control characters in a log, and never anything but the
     * identity (keys stay out). */
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
            out[o++] = (char)s[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", s[i]);
    }
    out[o] = '\0';
}

/* --- PSK ------------------------------------------------------------------ */

static const coap_bin_const_t *
psk_lookup(coap_bin_const_t *identity, coap_session_t *session, void *arg)
{
    transport_t *t = arg;
    size_t len = 0;
    const uint8_t *key = t->keys ? keystore_lookup(t->keys, identity->s,
                                                   identity->length, &len) : NULL;

    if (!key) {
        char id[200], peer[64];

        t->gw->stats.psk_unknown_identity++;
        transport__sanitize(identity->s, identity->length, id, sizeof(id));
        log_ratelimited(&t->gw->stats.psk_unknown_identity,
                        "dtls: handshake from %s refused: unknown PSK identity \"%s\"",
                        transport_peer(session, peer, sizeof(peer)), id);
        return NULL;
    }
    t->key.s = key;
    t->key.length = len;
    transport__handshake_track(t, session, identity);
    return &t->key;
}

static int
setup_psk(transport_t *t)
{
    coap_dtls_spsk_t spsk;

    memset(&spsk, 0, sizeof(spsk));
    spsk.version = COAP_DTLS_SPSK_SETUP_VERSION;
    spsk.validate_id_call_back = psk_lookup;
    spsk.id_call_back_arg = t;
    /* libcoap 4.3.1 only tells PSK from certificate ClientHellos on one
     * port when a context-wide key is set; psk_lookup() always decides,
     * so this random one is never used to authenticate anybody. */
    if (getrandom(t->unused_key, sizeof(t->unused_key), 0) != sizeof(t->unused_key))
        return -1;
    spsk.psk_info.key.s = t->unused_key;
    spsk.psk_info.key.length = sizeof(t->unused_key);
    if (!coap_context_set_psk2(t->ctx, &spsk)) {
        log_warnx("coap: cannot set up DTLS-PSK");
        return -1;
    }
    return 0;
}

/* --- the id a certificate names ---------------------------------------------- */

/* Copies an ASN.1 string as UTF-8 if it holds no NUL; false otherwise. */
static bool
asn1_text(ASN1_STRING *s, char *out, size_t cap)
{
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    bool ok = n > 0 && (size_t)n < cap && memchr(utf8, 0, (size_t)n) == NULL;

    if (ok) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(utf8);
    return ok;
}

/* The first DNS subjectAltName decides, usable or not: -1 when there is
 * none, else whether it was usable. */
static int
first_dns_san(X509 *x, char *out, size_t cap)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = -1, n = sans ? sk_GENERAL_NAME_num(sans) : 0;

    for (int i = 0; i < n; i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

        if (gn->type == GEN_DNS) {
            rc = asn1_text(gn->d.dNSName, out, cap);
            break;
        }
    }
    GENERAL_NAMES_free(sans);
    return rc;
}

/*
 * The device id a certificate names: its first DNS subjectAltName, else its
 * subject commonName - read from the certificate itself, not from the
 * one-line text of the subject (where "O=CN=meter-2" would pass for a CN).
 * A subject with more than one CN names nobody.
 */
static bool
cert_identity(const uint8_t *der, size_t len, char *out, size_t cap)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    X509_NAME *subject;
    bool ok = false;
    int i;

    if (!x)
        return false;
    if ((i = first_dns_san(x, out, cap)) >= 0) {
        ok = i;
    } else {
        subject = X509_get_subject_name(x);
        i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
        if (i >= 0 && X509_NAME_get_index_by_NID(subject, NID_commonName, i) < 0)
            ok = asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)),
                           out, cap);
    }
    X509_free(x);
    ERR_clear_error();
    return ok;
}

/*
 * Called by libcoap for each certificate of the chain once OpenSSL has
 * checked it against our store (expiry, signature, CRL).  The device's own
 * certificate (depth 0) names the device.
 */
static int
cert_cn(const char *cn_text, const uint8_t *asn1, size_t asn1_len,
        coap_session_t *session, unsigned depth, int validated, void *arg)
{
    transport_t *t = arg;
    struct cert_id *ci;
    char peer[64], cn[TOPIC_ID_MAX + 1];
    bool named;

    (void)cn_text;
    if (depth > 0)
        return validated;
    named = asn1 && cert_identity(asn1, asn1_len, cn, sizeof(cn));
    if (!validated || !named || !topic_id_valid(cn, strlen(cn))) {
        t->gw->stats.handshakes_failed++;
        log_ratelimited(&t->cert_ids, "dtls: certificate from %s refused: %s",
                        transport_peer(session, peer, sizeof(peer)),
                        !validated ? "not valid for coap.ca_file"
                                   : "its CN/DNS name is not a usable device id");
        return 0;
    }
    HASH_FIND_PTR(t->cert_ids, &session, ci);
    if (!ci && !(ci = calloc(1, sizeof(*ci))))
        return 0;
    if (!ci->session) {
        ci->session = session;
        HASH_ADD_PTR(t->cert_ids, session, ci);
    }
    snprintf(ci->id, sizeof(ci->id), "%s", cn);
    return 1;
}

const char *
transport__cert_identity(transport_t *t, coap_session_t *session)
{
    struct cert_id *ci;

    HASH_FIND_PTR(t->cert_ids, &session, ci);
    return ci ? ci->id : NULL;
}

void
transport__cert_forget(transport_t *t, coap_session_t *session)
{
    struct cert_id *ci;

    HASH_FIND_PTR(t->cert_ids, &session, ci);
    if (ci) {
        HASH_DEL(t->cert_ids, ci);
        free(ci);
    }
}

void
transport__cert_free_all(transport_t *t)
{
    HASH_FREE_ALL(t->cert_ids, struct cert_id);
    X509_STORE_free(t->store);
    t->store = NULL;
}

/* --- trust ----------------------------------------------------------------- */

/* Adds every CRL of crl_file to the store; -1 when there is none. */
static int
load_crls(X509_STORE *store, const char *crl_file)
{
    BIO *bio = BIO_new_file(crl_file, "r");
    X509_CRL *crl;
    int n = 0;

    if (!bio) {
        log_warnx("coap: cannot read crl_file %s", crl_file);
        return -1;
    }
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL))) {
        X509_STORE_add_crl(store, crl);
        X509_CRL_free(crl);
        n++;
    }
    BIO_free(bio);
    ERR_clear_error();
    if (!n) {
        log_warnx("coap: no CRL in %s", crl_file);
        return -1;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return 0;
}

/*
 * The trust our device certificates are checked against: coap.ca_file and
 * the CRLs of coap.crl_file, in a store of our own.  libcoap 4.3.1 can only
 * add to the store of its SSL_CTX (a reload would never remove a CA or
 * replace a CRL), so every handshake is given this store instead, and a
 * reload simply builds a new one.  NULL on failure, logged.
 */
static X509_STORE *
build_store(const struct config_coap *cc)
{
    X509_STORE *store = X509_STORE_new();

    if (!store || !X509_STORE_load_locations(store, cc->ca_file, NULL)) {
        log_warnx("coap: cannot load ca_file %s", cc->ca_file);
        goto fail;
    }
    if (cc->crl_file && load_crls(store, cc->crl_file) < 0)
        goto fail;
    return store;
fail:
    ERR_clear_error();
    X509_STORE_free(store);
    return NULL;
}

/* Called by libcoap for every handshake it sets up. */
static int
attach_store(void *tls_session, coap_dtls_pki_t *setup)
{
    /* libcoap passes its own copy of our settings; the callback argument
     * is copied along with it and is the way back to us. */
    transport_t *t = setup->cn_call_back_arg;

    if (t && t->store)
        SSL_set1_verify_cert_store(tls_session, t->store);
    return 1;
}

/* X.509: the gateway's certificate, and device certificates verified
 * against coap.ca_file (with the CRLs that file holds, if any). */
static int
setup_pki(transport_t *t)
{
    const struct config_coap *cc = &t->gw->cfg->coap;
    coap_dtls_pki_t *pki = &t->pki;

    if (!cc->cert_file)
        return 0;
    if (cc->ca_file && !(t->store = build_store(cc)))
        return -1;
    memset(pki, 0, sizeof(*pki));
    pki->version = COAP_DTLS_PKI_SETUP_VERSION;
    pki->verify_peer_cert = cc->ca_file != NULL;
    /* In libcoap's words "common CA": what loads ca_file into the store
     * device certificates are verified against. */
    pki->check_common_ca = cc->ca_file != NULL;
    pki->cert_chain_validation = 1;
    pki->cert_chain_verify_depth = 3;
    pki->check_cert_revocation = cc->ca_file && cc->crl_file;
    pki->allow_no_crl = 0;
    pki->validate_cn_call_back = cert_cn;
    pki->cn_call_back_arg = t;
    pki->additional_tls_setup_call_back = attach_store;
    pki->pki_key.key_type = COAP_PKI_KEY_PEM;
    pki->pki_key.key.pem.public_cert = cc->cert_file;
    pki->pki_key.key.pem.private_key = cc->key_file;
    pki->pki_key.key.pem.ca_file = cc->ca_file;
    if (!coap_context_set_pki(t->ctx, pki)) {
        log_warnx("coap: cannot load %s / %s", cc->cert_file, cc->key_file);
        return -1;
    }
    return 0;
}

int
transport__setup_dtls(transport_t *t)
{
    if (setup_pki(t) < 0)
        return -1;
    return t->gw->cfg->coap.psk_file ? setup_psk(t) : 0;
}

int
transport_reload_pki(transport_t *t)
{
    const struct config_coap *cc = &t->gw->cfg->coap;
    X509_STORE *store = NULL;

    if (!cc->cert_file)
        return 0;
    /* New handshakes get the new certificate, CA and CRL; established
     * sessions keep what they were verified with. */
    if (cc->ca_file && !(store = build_store(cc)))
        return -1;
    if (!coap_context_set_pki(t->ctx, &t->pki)) {
        X509_STORE_free(store);
        return -1;
    }
    X509_STORE_free(t->store);  /* handshakes in progress hold their own reference */
    t->store = store;
    return 0;
}

void
transport_set_keystore(transport_t *t, keystore_t *ks)
{
    t->keys = ks;
}

/* --- credentials taken back (SIGHUP) ------------------------------------------ */

/* The session's certificate chain checked again against today's store (CA
 * and CRL): X509_V_OK, or why not. */
static int
cert_verdict(transport_t *t, coap_session_t *session)
{
    coap_tls_library_t lib = COAP_TLS_LIBRARY_NOTLS;
    SSL *ssl = coap_session_get_tls(session, &lib);
    X509 *leaf = lib == COAP_TLS_LIBRARY_OPENSSL && ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    X509_STORE_CTX *ctx;
    int rc = X509_V_ERR_UNSPECIFIED;

    if (!t->store)
        return X509_V_OK;       /* no ca_file: nothing was verified */
    if (!leaf || !(ctx = X509_STORE_CTX_new()))
        return rc;
    if (X509_STORE_CTX_init(ctx, t->store, leaf, SSL_get_peer_cert_chain(ssl)) &&
        X509_STORE_CTX_set_default(ctx, "ssl_client"))
        rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

/* Why today's credentials no longer admit the session's peer, or NULL. */
static const char *
taken_back(transport_t *t, coap_session_t *session)
{
    const coap_bin_const_t *id = coap_session_get_psk_identity(session);
    const coap_bin_const_t *used = coap_session_get_psk_key(session);
    const uint8_t *key;
    size_t len = 0;
    int rc;

    if (id && id->length) {
        key = t->keys ? keystore_lookup(t->keys, id->s, id->length, &len) : NULL;
        if (!key)
            return "its PSK identity was removed";
        if (!used || used->length != len || CRYPTO_memcmp(used->s, key, len) != 0)
            return "its PSK key changed";
        return NULL;
    }
    if (!transport__cert_identity(t, session) || (rc = cert_verdict(t, session)) == X509_V_OK)
        return NULL;
    return rc == X509_V_ERR_CERT_REVOKED ? "its certificate was revoked"
                                         : X509_verify_cert_error_string(rc);
}

size_t
transport_close_revoked(transport_t *t)
{
    size_t n, closed = 0;
    coap_session_t **list = transport__established_list(t, &n);

    for (size_t i = 0; i < n; i++) {
        const char *why = taken_back(t, list[i]);
        char id[200], peer[64];

        if (!why)
            continue;
        if (!transport_identity(list[i], id, sizeof(id)))
            snprintf(id, sizeof(id), "?");
        t->gw->stats.sessions_revoked++;
        log_warnx("dtls: closing the session of \"%s\" (%s): %s", id,
                  transport_peer(list[i], peer, sizeof(peer)), why);
        coap_session_disconnected(list[i], COAP_NACK_TLS_FAILED);
        closed++;
    }
    free(list);
    if (closed) {
        /* Frees the sessions now in state NONE. */
        compat_walk_now(t->ctx);
    }
    return closed;
}
