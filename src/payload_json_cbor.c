/*
 * payload_json_cbor.c - CBOR (ct 60) and SenML CBOR (ct 112) to JSON.
 *
 * CBOR goes through three steps:
 *   1. scan: an iterative walk over the item heads that checks the bytes are
 *      one well-formed CBOR item (RFC 8949 appendix C) with nothing after
 *      it, bounds nesting and item counts, and copies the bytes into a form
 *      libcbor 0.8 accepts. It exists because libcbor 0.8 (bookworm) is not
 *      safe on hostile input alone: a definite array head of 2^32 items
 *      makes cbor_load malloc 32 GiB before reading a single element, and
 *      it rejects well-formed input (one-byte tag heads 0xc6..0xd4, simple
 *      values other than false/true/null/undefined). Measured: it refuses
 *      nesting beyond 2048 itself, but cbor_decref recurses, so we cap at
 *      PAYLOAD_JSON_MAX_DEPTH before libcbor sees anything.
 *   2. cbor_load on the checked copy.
 *   3. emit: a recursive walk (depth bounded by step 1) writing JSON text
 *      into a growing buffer whose size is capped (non-text map keys nest
 *      escaped JSON inside JSON, which grows exponentially with depth).
 *
 * Layer: base (pure)
 */
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "payload_json_internal.h"

/* ---- step 1: scan and normalise --------------------------------------- */

struct frame {
    uint64_t left;              /* definite: items still to come */
    uint8_t mt;                 /* major type of the container */
    uint8_t indef;
    uint8_t odd;                /* indefinite map: a key waits for its value */
};

struct scan {
    const uint8_t *p, *end;
    uint8_t *out;               /* the copy for libcbor, at most 2x the input */
    size_t olen;
    struct frame st[PAYLOAD_JSON_MAX_DEPTH + 2];
    size_t sp;
    unsigned depth;             /* arrays, maps and tags open */
    size_t items;
};

static void
scan_copy(struct scan *s, const uint8_t *from, size_t n)
{
    memcpy(s->out + s->olen, from, n);
    s->olen += n;
}

static const char *
scan_push(struct scan *s, uint8_t mt, int indef, uint64_t left)
{
    /* Indefinite strings hold only chunks: a frame, but no nesting. */
    int nests = mt >= 4;

    if ((nests && s->depth >= PAYLOAD_JSON_MAX_DEPTH) ||
        s->sp >= sizeof(s->st) / sizeof(s->st[0]))
        return "CBOR nested too deep";
    s->st[s->sp++] = (struct frame){ left, mt, (uint8_t)indef, 0 };
    s->depth += nests;
    return NULL;
}

static void
scan_pop(struct scan *s)
{
    s->depth -= s->st[--s->sp].mt >= 4;
}

/* One item is complete: count it in the enclosing containers, closing the
 * definite ones it fills. Returns 1 when the top-level item is complete. */
static int
scan_item_done(struct scan *s)
{
    while (s->sp) {
        struct frame *f = &s->st[s->sp - 1];

        if (f->indef) {
            f->odd ^= 1;
            return 0;
        }
        if (--f->left)
            return 0;
        scan_pop(s);
    }
    return 1;
}

/* The argument of a head with additional information 'ai' (< 28). */
static int
scan_arg(struct scan *s, uint8_t ai, uint64_t *v)
{
    size_t n, i;

    if (ai < 24) {
        *v = ai;
        return 0;
    }
    n = (size_t)1 << (ai - 24);
    if ((size_t)(s->end - s->p) < n)
        return -1;
    for (*v = 0, i = 0; i < n; i++)
        *v = *v << 8 | s->p[i];
    s->p += n;
    return 0;
}

/* A head that is not a break and not indefinite. Returns NULL and sets
 * *opened when it opened a container, NULL when it is a complete item, or
 * the reason it is malformed. */
static const char *
scan_head(struct scan *s, const uint8_t *head, uint8_t mt, uint8_t ai,
          int *opened)
{
    uint64_t v;
    size_t rest;

    if (ai > 27 || scan_arg(s, ai, &v) < 0)
        return "malformed or truncated CBOR head";
    rest = (size_t)(s->end - s->p);
    switch (mt) {
    case 2: case 3:
        if (v > rest)
            return "CBOR string longer than the payload";
        s->p += v;
        break;
    case 4: case 5:
        /* Every item takes a byte: this bounds libcbor's allocation. */
        if (v > rest || (mt == 5 && v > rest / 2))
            return "CBOR container longer than the payload";
        scan_copy(s, head, (size_t)(s->p - head));
        *opened = v > 0;
        return v ? scan_push(s, mt, 0, mt == 5 ? 2 * v : v) : NULL;
    case 6:
        if (ai >= 6 && ai <= 20) {          /* libcbor 0.8 refuses these */
            uint8_t wide[2] = { 0xd8, ai };

            scan_copy(s, wide, 2);
        } else {
            scan_copy(s, head, (size_t)(s->p - head));
        }
        *opened = 1;
        return scan_push(s, mt, 0, 1);
    case 7:
        if (ai == 24 && v < 32)
            return "malformed CBOR simple value";
        if (ai < 20 || ai == 24) {          /* unassigned: null (RFC 8949 6.1) */
            scan_copy(s, (const uint8_t *)"\xf6", 1);
            return NULL;
        }
        break;
    }
    scan_copy(s, head, (size_t)(s->p - head));
    return NULL;
}

static const char *
scan_cbor(struct scan *s)
{
    for (;;) {
        const uint8_t *head = s->p;
        struct frame *top = s->sp ? &s->st[s->sp - 1] : NULL;
        const char *why;
        uint8_t mt, ai;
        int opened = 0;

        if (s->p == s->end)
            return "truncated CBOR";
        if (++s->items > PAYLOAD_JSON_MAX_ITEMS)
            return "too many CBOR items";
        mt = *s->p >> 5, ai = *s->p & 31;
        s->p++;
        if (*head == 0xff) {
            if (!top || !top->indef)
                return "unexpected CBOR break";
            if (top->mt == 5 && top->odd)
                return "CBOR map key without value";
            scan_copy(s, head, 1);
            scan_pop(s);
        } else if (top && top->mt <= 3 && (mt != top->mt || ai == 31)) {
            return "bad chunk in indefinite-length CBOR string";
        } else if (ai == 31) {
            if (mt < 2 || mt > 5)
                return "malformed indefinite-length CBOR item";
            scan_copy(s, head, 1);
            if ((why = scan_push(s, mt, 1, 0)))
                return why;
            continue;
        } else if ((why = scan_head(s, head, mt, ai, &opened))) {
            return why;
        } else if (opened) {
            continue;
        }
        if (scan_item_done(s))
            break;
    }
    return s->p == s->end ? NULL : "trailing bytes after the CBOR item";
}

/* ---- step 3: emit ------------------------------------------------------ */

static int emit_item(struct jbuf *b, const cbor_item_t *it, unsigned depth,
                     enum hint hint, int senml);

/* The bytes of a byte string; chunks of an indefinite one are joined into
 * a buffer returned in *tofree. */
static int
bytes_of(const cbor_item_t *it, const uint8_t **s, size_t *n, uint8_t **tofree)
{
    cbor_item_t **ch;
    size_t i, cnt, total = 0;
    uint8_t *p;

    *tofree = NULL;
    if (cbor_bytestring_is_definite(it)) {
        *s = cbor_bytestring_handle(it);
        *n = cbor_bytestring_length(it);
        return 0;
    }
    ch = cbor_bytestring_chunks_handle(it);
    cnt = cbor_bytestring_chunk_count(it);
    for (i = 0; i < cnt; i++)
        total += cbor_bytestring_length(ch[i]);
    if (!(p = malloc(total + 1)))
        return -1;
    for (total = 0, i = 0; i < cnt; i++) {
        size_t l = cbor_bytestring_length(ch[i]);

        if (l)
            memcpy(p + total, cbor_bytestring_handle(ch[i]), l);
        total += l;
    }
    *s = *tofree = p;
    *n = total;
    return 0;
}

static int
emit_bytes(struct jbuf *b, const cbor_item_t *it, enum hint hint)
{
    const uint8_t *s;
    uint8_t *tofree;
    size_t n;
    int rc;

    if (bytes_of(it, &s, &n, &tofree) < 0)
        return payload_json__jb_fail(b, "out of memory");
    rc = payload_json__jb_bytes(b, s, n, hint, "");
    free(tofree);
    return rc;
}

/* Text strings: every chunk of an indefinite one must be valid UTF-8 on its
 * own (RFC 8949 3.2.3), so each is checked and escaped separately. */
static int
emit_text(struct jbuf *b, const cbor_item_t *it)
{
    payload_json__jb_puts(b, "\"");
    if (cbor_string_is_definite(it)) {
        payload_json__jb_escaped(b, cbor_string_handle(it),
                                 cbor_string_length(it));
    } else {
        cbor_item_t **ch = cbor_string_chunks_handle(it);
        size_t i, cnt = cbor_string_chunk_count(it);

        for (i = 0; i < cnt; i++)
            payload_json__jb_escaped(b, cbor_string_handle(ch[i]),
                                     cbor_string_length(ch[i]));
    }
    return payload_json__jb_puts(b, "\"");
}

/* Tags 2/3 (RFC 8949 3.4.3): a number inside int64, a decimal string up to
 * 64 bytes of magnitude, beyond that the RFC 8949 6.1 form (base64url,
 * "~" first when negative). */
static int
emit_bignum(struct jbuf *b, const cbor_item_t *inner, int neg)
{
    const uint8_t *s;
    uint8_t *tofree;
    size_t n;
    int rc;

    if (bytes_of(inner, &s, &n, &tofree) < 0)
        return payload_json__jb_fail(b, "out of memory");
    while (n > 0 && s[0] == 0)
        s++, n--;
    if (n <= 8) {
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++)
            v = v << 8 | s[i];
        rc = payload_json__jb_int(b, v, neg);
    } else if (n <= 64) {
        rc = payload_json__jb_bigdec(b, s, n, neg);
    } else {
        rc = payload_json__jb_bytes(b, s, n, HINT_B64URL, neg ? "~" : "");
    }
    free(tofree);
    return rc;
}

static int
emit_tag(struct jbuf *b, const cbor_item_t *it, unsigned depth,
         enum hint hint)
{
    uint64_t tag = cbor_tag_value(it);
    cbor_item_t *inner = cbor_tag_item(it);     /* a new reference */
    int rc;

    if ((tag == 2 || tag == 3) && cbor_isa_bytestring(inner))
        rc = emit_bignum(b, inner, tag == 3);
    else if (tag >= 21 && tag <= 23)
        rc = emit_item(b, inner, depth + 1, tag == 21 ? HINT_B64URL :
                       tag == 22 ? HINT_B64 : HINT_B16, 0);
    else        /* dates (0, 1) and all others: the content as it is */
        rc = emit_item(b, inner, depth + 1, hint, 0);
    cbor_decref(&inner);
    return rc;
}

static int
emit_array(struct jbuf *b, const cbor_item_t *it, unsigned depth,
           enum hint hint)
{
    cbor_item_t **v = cbor_array_handle(it);
    size_t i, n = cbor_array_size(it);

    payload_json__jb_puts(b, "[");
    for (i = 0; i < n; i++) {
        if (i)
            payload_json__jb_puts(b, ",");
        emit_item(b, v[i], depth + 1, hint, 0);
    }
    return payload_json__jb_puts(b, "]");
}

/* RFC 8428 6, table 6: the integer labels of SenML CBOR. */
static const char *
senml_label(const cbor_item_t *key)
{
    static const char *const pos[] = {
        "n", "u", "v", "vs", "vb", "s", "t", "ut", "vd",
    };
    static const char *const neg[] = {  /* -1 - index */
        "bver", "bn", "bt", "bu", "bv", "bs",
    };
    uint64_t v;

    if (!cbor_is_int(key))
        return NULL;
    v = cbor_get_int(key);
    if (cbor_isa_uint(key))
        return v < sizeof(pos) / sizeof(pos[0]) ? pos[v] : NULL;
    return v < sizeof(neg) / sizeof(neg[0]) ? neg[v] : NULL;
}

/* JSON allows "\u0000" in keys, but jansson and most C consumers keep
 * keys as C strings and refuse or cut them: such a map is refused. */
static int
text_has_nul(const cbor_item_t *it)
{
    cbor_item_t **ch;
    size_t i, cnt;

    if (cbor_string_is_definite(it))
        return cbor_string_length(it) &&
               memchr(cbor_string_handle(it), 0, cbor_string_length(it));
    ch = cbor_string_chunks_handle(it);
    cnt = cbor_string_chunk_count(it);
    for (i = 0; i < cnt; i++)
        if (text_has_nul(ch[i]))
            return 1;
    return 0;
}

/* A map key: text as it is, a SenML label by its name, anything else as
 * the JSON string holding its JSON text (1 -> "1", [1] -> "[1]"). */
static int
emit_key(struct jbuf *b, const cbor_item_t *key, unsigned depth,
         enum hint hint, int senml)
{
    struct jbuf t = { .max = b->max };
    const char *label;

    if (cbor_isa_string(key))
        return text_has_nul(key)
               ? payload_json__jb_fail(b, "NUL in a map key")
               : emit_text(b, key);
    if (senml && (label = senml_label(key))) {
        payload_json__jb_puts(b, "\"");
        payload_json__jb_puts(b, label);
        return payload_json__jb_puts(b, "\"");
    }
    emit_item(&t, key, depth + 1, hint, 0);
    if (t.err)
        payload_json__jb_fail(b, t.err);
    else if (payload_json__jb_puts(b, "\"") == 0 &&
             payload_json__jb_escaped(b, (uint8_t *)t.p, t.len) == 0)
        payload_json__jb_puts(b, "\"");
    free(t.p);
    return b->err ? -1 : 0;
}

struct keyspan {
    const char *p;
    size_t len;
};

static int
keyspan_cmp(const void *a, const void *b)
{
    const struct keyspan *x = a, *y = b;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->p, y->p, x->len);
}

/* The keys as written (escaping is one-to-one, so equal text means equal
 * keys): a duplicate - in the CBOR, or made by turning 1 and "1" both into
 * "1" - would make JSON consumers silently keep one of the values. */
static int
keys_unique(struct jbuf *b, const size_t *off, struct keyspan *k, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        k[i].p = b->p + off[2 * i];
        k[i].len = off[2 * i + 1];
    }
    qsort(k, n, sizeof(*k), keyspan_cmp);
    for (i = 1; i < n; i++)
        if (keyspan_cmp(&k[i - 1], &k[i]) == 0)
            return payload_json__jb_fail(b, "duplicate map key");
    return 0;
}

static int
emit_map(struct jbuf *b, const cbor_item_t *it, unsigned depth,
         enum hint hint, int senml)
{
    struct cbor_pair *kv = cbor_map_handle(it);
    size_t i, n = cbor_map_size(it);
    size_t *off = calloc(2 * n + 1, sizeof(*off));
    struct keyspan *k = calloc(n + 1, sizeof(*k));

    if (!off || !k) {
        free(off);
        free(k);
        return payload_json__jb_fail(b, "out of memory");
    }
    payload_json__jb_puts(b, "{");
    for (i = 0; i < n && !b->err; i++) {
        if (i)
            payload_json__jb_puts(b, ",");
        off[2 * i] = b->len;
        emit_key(b, kv[i].key, depth, hint, senml);
        off[2 * i + 1] = b->len - off[2 * i];
        payload_json__jb_puts(b, ":");
        emit_item(b, kv[i].value, depth + 1, hint, 0);
    }
    if (payload_json__jb_puts(b, "}") == 0)
        keys_unique(b, off, k, n);
    free(off);
    free(k);
    return b->err ? -1 : 0;
}

static int
emit_simple(struct jbuf *b, const cbor_item_t *it)
{
    switch (cbor_float_get_width(it)) {
    case CBOR_FLOAT_0:
        if (cbor_ctrl_value(it) == CBOR_CTRL_TRUE)
            return payload_json__jb_puts(b, "true");
        if (cbor_ctrl_value(it) == CBOR_CTRL_FALSE)
            return payload_json__jb_puts(b, "false");
        return payload_json__jb_puts(b, "null");      /* null, undefined */
    case CBOR_FLOAT_16:
    case CBOR_FLOAT_32:
        return payload_json__jb_float(b, cbor_float_get_float(it), 1);
    default:
        return payload_json__jb_float(b, cbor_float_get_float(it), 0);
    }
}

/* 'senml' set: 'it' is a SenML record, its integer keys are labels. */
static int
emit_item(struct jbuf *b, const cbor_item_t *it, unsigned depth,
          enum hint hint, int senml)
{
    if (b->err)
        return -1;
    if (depth > PAYLOAD_JSON_MAX_DEPTH + 1)     /* the scan bounds this */
        return payload_json__jb_fail(b, "CBOR nested too deep");
    switch (cbor_typeof(it)) {
    case CBOR_TYPE_UINT: return payload_json__jb_int(b, cbor_get_int(it), 0);
    case CBOR_TYPE_NEGINT: return payload_json__jb_int(b, cbor_get_int(it), 1);
    case CBOR_TYPE_BYTESTRING: return emit_bytes(b, it, hint);
    case CBOR_TYPE_STRING: return emit_text(b, it);
    case CBOR_TYPE_ARRAY: return emit_array(b, it, depth, hint);
    case CBOR_TYPE_MAP: return emit_map(b, it, depth, hint, senml);
    case CBOR_TYPE_TAG: return emit_tag(b, it, depth, hint);
    case CBOR_TYPE_FLOAT_CTRL: return emit_simple(b, it);
    }
    return payload_json__jb_fail(b, "unknown CBOR item");
}

/* RFC 8428 6: a SenML pack is an array of records, records are maps. */
static int
emit_senml(struct jbuf *b, const cbor_item_t *it)
{
    cbor_item_t **v;
    size_t i, n;

    if (!cbor_isa_array(it))
        return payload_json__jb_fail(b,
                                     "SenML CBOR is not an array of records");
    v = cbor_array_handle(it);
    n = cbor_array_size(it);
    for (i = 0; i < n; i++)
        if (!cbor_isa_map(v[i]))
            return payload_json__jb_fail(b,
                                     "SenML CBOR is not an array of records");
    payload_json__jb_puts(b, "[");
    for (i = 0; i < n; i++) {
        if (i)
            payload_json__jb_puts(b, ",");
        emit_map(b, v[i], 1, HINT_B64URL, 1);
    }
    return payload_json__jb_puts(b, "]");
}

/* Most of any legitimate expansion (control characters escaped as
 * \u00XX, one-byte items growing to "null") stays below 16x. */
static size_t
json_max(size_t len)
{
    return len > (SIZE_MAX - 4096) / 16 ? SIZE_MAX / 2 : 16 * len + 4096;
}

int
payload_json__cbor_to_json(const uint8_t *data, size_t len, int senml,
                           char **out, const char **err)
{
    struct scan s = { .p = data };
    struct jbuf b = { .max = json_max(len) };
    struct cbor_load_result res;
    cbor_item_t *it;
    const char *why;

    if (len == 0 || len > SIZE_MAX / 2 - 1)
        return *err = "empty CBOR payload", -1;
    s.end = data + len;
    if (!(s.out = malloc(2 * len)))
        return *err = "out of memory", -1;
    if ((why = scan_cbor(&s))) {
        free(s.out);
        return *err = why, -1;
    }
    it = cbor_load(s.out, s.olen, &res);
    free(s.out);
    if (!it || res.error.code != CBOR_ERR_NONE || res.read != s.olen) {
        if (it)
            cbor_decref(&it);
        return *err = "CBOR refused by libcbor", -1;
    }
    if (senml)
        emit_senml(&b, it);
    else
        emit_item(&b, it, 0, HINT_B64URL, 0);
    cbor_decref(&it);
    if (b.err) {
        free(b.p);
        return *err = b.err, -1;
    }
    *out = b.p;
    return 0;
}
