/*
 * dtls.c - libcoap DTLS credentials as every tool sets them up, so the bare
 * server, the load generator and the simulator make the same handshakes,
 * and a pre-shared key as their command lines and key files write it.
 */
#include <ctype.h>
#include <string.h>

#include "tool_common.h"

void
tool_dtls_cpsk(coap_dtls_cpsk_t *psk, const char *identity,
               const uint8_t *key, size_t key_len)
{
    memset(psk, 0, sizeof(*psk));
    psk->version = COAP_DTLS_CPSK_SETUP_VERSION;
    psk->psk_info.identity.s = (const uint8_t *)identity;
    psk->psk_info.identity.length = strlen(identity);
    psk->psk_info.key.s = key;
    psk->psk_info.key.length = key_len;
}

void
tool_dtls_pki(coap_dtls_pki_t *pki, const char *ca, const char *cert,
              const char *key)
{
    memset(pki, 0, sizeof(*pki));
    pki->version = COAP_DTLS_PKI_SETUP_VERSION;
    pki->verify_peer_cert = 1;
    pki->check_common_ca = 1;
    pki->cert_chain_validation = 1;
    pki->cert_chain_verify_depth = 2;
    pki->pki_key.key_type = COAP_PKI_KEY_PEM;
    pki->pki_key.key.pem.ca_file = ca;
    pki->pki_key.key.pem.public_cert = cert;
    pki->pki_key.key.pem.private_key = key;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int
tool_psk_decode(const char *secret, uint8_t *key, size_t cap)
{
    size_t n;

    if (strncmp(secret, "hex:", 4) != 0) {
        n = strlen(secret);
        if (n == 0 || n > cap)
            return -1;
        memcpy(key, secret, n);
        return (int)n;
    }
    secret += 4;
    n = strlen(secret);
    if (n == 0 || n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval((unsigned char)secret[2 * i]);
        int lo = hexval((unsigned char)secret[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(n / 2);
}
