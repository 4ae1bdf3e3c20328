/*
 * fuzz_linkformat.c - linkformat_parse() on arbitrary registration bodies.
 *
 * The input is the body exactly as a device would send it (not
 * NUL-terminated: libFuzzer's buffer is sized to the input, so ASan sees
 * any read past 'len').  Beyond "no crash", the parser's promises are
 * checked: the count is bounded by 'max', every path it returns is
 * NUL-terminated and passes topic_path_valid(), targets are unique, ct is
 * -1 or 0..65535, and a failure always says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/linkformat.h"
#include "coap2mqtt/topics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const char *body, size_t len, size_t max)
{
    struct lf_link links[LINKFORMAT_MAX_LINKS];
    const char *err = NULL;
    int n;

    memset(links, 0xa5, sizeof(links));     /* no NUL unless written */
    n = linkformat_parse(body, len, links, max, &err);
    if (n < -1 || n > (int)max)
        abort();
    if (n < 0 && (err == NULL || *err == '\0'))
        abort();
    for (int i = 0; i < n; i++) {
        size_t plen = strnlen(links[i].path, sizeof(links[i].path));

        if (plen == sizeof(links[i].path) || !topic_path_valid(links[i].path, plen))
            abort();
        if (links[i].ct < -1 || links[i].ct > 65535)
            abort();
        for (int j = 0; j < i; j++)
            if (strcmp(links[i].path, links[j].path) == 0)
                abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check((const char *)data, size, LINKFORMAT_MAX_LINKS);
    /* A small 'max' takes the "too many links" exits. */
    check((const char *)data, size, 2);
    /* NULL body with a length: the parser must not touch it. */
    if (size == 0)
        check(NULL, 1, LINKFORMAT_MAX_LINKS);
    return 0;
}
