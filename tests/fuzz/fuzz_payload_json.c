/*
 * fuzz_payload_json.c - libFuzzer target for payload_to_json.
 * Byte 0 picks the Content-Format (50, 60, 110, 112), the rest is the
 * payload. Checks: a result is always produced or refused with a reason;
 * produced text is valid JSON (jansson reads it back); for JSON input the
 * compacted text means the same as the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "coap2mqtt/payload_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define JFLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)

static void
check_same_json(const uint8_t *in, size_t len, const char *out)
{
    json_t *a = json_loadb((const char *)in, len, JFLAGS, NULL);
    json_t *b = json_loads(out, JFLAGS, NULL);

    if (!a || !b || !json_equal(a, b))
        abort();
    json_decref(a);
    json_decref(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int cts[] = { 50, 60, 110, 112 };
    char *out = NULL;
    const char *err = NULL;
    json_t *j;
    int ct, rc;

    if (size < 1)
        return 0;
    ct = cts[data[0] % 4];
    rc = payload_to_json(ct, data + 1, size - 1, &out, &err);
    if (rc == -1) {
        if (!err || out)
            abort();
        return 0;
    }
    if (rc != 0 || !out)
        abort();
    /* Output bounded: at most 16x the input plus 4 KiB. */
    if (strlen(out) > 16 * (size - 1) + 4096)
        abort();
    /* CBOR output keeps integers inside int64 (jansson's range); JSON
     * passes through as sent, big integers included. */
    if (!(j = json_loads(out, ct == 60 || ct == 112 ?
                         JSON_DECODE_ANY | JSON_ALLOW_NUL : JFLAGS, NULL)))
        abort();
    if (ct == 110 || ct == 112) {
        size_t i;
        json_t *rec;

        if (!json_is_array(j))
            abort();
        json_array_foreach(j, i, rec)
            if (!json_is_object(rec))
                abort();
    }
    json_decref(j);
    if (ct == 50 || ct == 110)
        check_same_json(data + 1, size - 1, out);
    free(out);
    return 0;
}
