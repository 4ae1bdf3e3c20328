/*
 * spool_records.c - the spool's records on disk.  A segment file is a run
 * of records, each a 24-byte header and a body; this file encodes and
 * decodes them, checks their CRC, reads one at an offset and, after a
 * damaged one, finds the next intact record.
 *
 * Layer: base (calls outq, zlib)
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "spool_internal.h"

#define REC_MAGIC_V1    0x43324d31u     /* "C2M1": CRC of the body (read only) */
#define REC_MAGIC       0x43324d32u     /* "C2M2": CRC of length, flags, seq, body */
#define REC_HDR         24
#define REC_BODY_FIXED  16
#define REC_MAX_BODY    (REC_BODY_FIXED + 65535 + 65535 + (64u << 20))
_Static_assert(REC_HDR + REC_BODY_FIXED == SPOOL_REC_MIN_BYTES, "spool_internal.h");
#define SCAN_CHUNK      (64u << 10)     /* resynchronising after a damaged record */


/* --- records ------------------------------------------------------------ */

/*
 * A record: a 24-byte header (magic, body length, CRC-32, flags, sequence
 * number, all little-endian) and the body.  In "C2M2" records the CRC
 * covers the header's length, flags and sequence number too, so that a
 * damaged number is caught like a damaged body.  "C2M1" records (the
 * previous version's, CRC of the body only) are still read, so that an
 * upgrade replays the spool it finds.
 */
static uint32_t
rec_crc(const uint8_t *hdr, const uint8_t *body, size_t len)
{
    uLong crc = crc32(0, NULL, 0);

    if (bytes_get32(hdr) == REC_MAGIC) {
        crc = crc32(crc, hdr + 4, 4);
        crc = crc32(crc, hdr + 12, 12);
    }
    return (uint32_t)crc32(crc, body, (uInt)len);
}

/* The size of m's record, 0 when it cannot be one. */
size_t
spool__rec_size(const outmsg_t *m)
{
    size_t tlen = strlen(m->topic);
    size_t body = REC_BODY_FIXED + tlen + m->corr_len + m->len;

    if (tlen > 65535 || m->corr_len > 65535 || body > REC_MAX_BODY)
        return 0;
    return REC_HDR + body;
}

/* Encodes header + body into a malloc'd buffer; *len gets its size. */
uint8_t *
spool__encode(const outmsg_t *m, uint64_t seq, size_t *len)
{
    size_t tlen = strlen(m->topic);
    size_t body = REC_BODY_FIXED + tlen + m->corr_len + m->len;
    uint8_t *buf, *b;

    if (tlen > 65535 || m->corr_len > 65535 || body > REC_MAX_BODY)
        return NULL;
    if (!(buf = malloc(REC_HDR + body)))
        return NULL;
    b = buf + REC_HDR;
    b[0] = (uint8_t)m->qos;
    b[1] = m->retain;
    bytes_put16(b + 2, 0);
    bytes_put32(b + 4, (uint32_t)m->ct);
    bytes_put16(b + 8, (uint16_t)tlen);
    bytes_put16(b + 10, (uint16_t)m->corr_len);
    bytes_put32(b + 12, (uint32_t)m->len);
    memcpy(b + REC_BODY_FIXED, m->topic, tlen);
    if (m->corr_len)
        memcpy(b + REC_BODY_FIXED + tlen, m->corr, m->corr_len);
    if (m->len)
        memcpy(b + REC_BODY_FIXED + tlen + m->corr_len, m->payload, m->len);
    bytes_put32(buf, REC_MAGIC);
    bytes_put32(buf + 4, (uint32_t)body);
    bytes_put32(buf + 12, 0);
    bytes_put64(buf + 16, seq);
    bytes_put32(buf + 8, rec_crc(buf, b, body));
    *len = REC_HDR + body;
    return buf;
}

/* Rebuilds a message from a verified body. */
static outmsg_t *
decode(const uint8_t *b, size_t body, uint64_t seq)
{
    size_t tlen, clen, plen;
    char topic[65536];
    outmsg_t *m;

    if (body < REC_BODY_FIXED)
        return NULL;
    tlen = bytes_get16(b + 8);
    clen = bytes_get16(b + 10);
    plen = bytes_get32(b + 12);
    if (REC_BODY_FIXED + tlen + clen + plen != body || b[0] > 2)
        return NULL;
    memcpy(topic, b + REC_BODY_FIXED, tlen);
    topic[tlen] = '\0';
    m = outmsg_new(topic, b + REC_BODY_FIXED + tlen + clen, plen, b[0], b[1] != 0,
                   (int)bytes_get32(b + 4));
    if (m && clen && outmsg_set_correlation(m, b + REC_BODY_FIXED + tlen, clen) < 0) {
        outmsg_finish(m, false);
        return NULL;
    }
    if (m)
        m->seq = seq;
    return m;
}

/*
 * Reads the record at 'off' of fd.  Returns its total size and fills *seq
 * and *m (if m != NULL), 0 at a clean end, -1 for a torn or corrupt record.
 */
ssize_t
spool__read_record(int fd, uint64_t off, uint64_t *seq, outmsg_t **m)
{
    uint8_t hdr[REC_HDR], *body;
    uint32_t len;
    ssize_t n = pread(fd, hdr, sizeof(hdr), (off_t)off);

    if (n == 0)
        return 0;
    if (n != REC_HDR || (bytes_get32(hdr) != REC_MAGIC && bytes_get32(hdr) != REC_MAGIC_V1))
        return -1;
    len = bytes_get32(hdr + 4);
    if (len < REC_BODY_FIXED || len > REC_MAX_BODY || !(body = malloc(len)))
        return -1;
    if (pread(fd, body, len, (off_t)(off + REC_HDR)) != (ssize_t)len ||
        rec_crc(hdr, body, len) != bytes_get32(hdr + 8)) {
        free(body);
        return -1;
    }
    *seq = bytes_get64(hdr + 16);
    if (m && !(*m = decode(body, len, *seq))) {
        free(body);
        return -1;
    }
    free(body);
    return (ssize_t)(REC_HDR + len);
}

/*
 * After a damaged record at 'off' (torn by a short write or a crash, or a
 * bad sector): the offset of the next intact record numbered above
 * 'after' (numbers only grow in a segment), or -1 when none follows and
 * the rest is a torn end.  Every place a magic appears is tried ("C2M1"
 * and "C2M2" share their last three bytes); the CRC decides.
 */
int64_t
spool__next_intact(int fd, uint64_t off, uint64_t after)
{
    static const uint8_t tail3[3] = { 0x4d, 0x32, 0x43 };       /* "M2C": bytes 1..3 */
    uint8_t *buf = malloc(SCAN_CHUNK);
    uint64_t pos = off + 1;
    int64_t found = -1;
    ssize_t n;

    if (!buf)
        return -1;
    while (found < 0 && (n = pread(fd, buf, SCAN_CHUNK, (off_t)pos)) >= 4) {
        const uint8_t *p = buf + 1, *end = buf + n;

        while (found < 0 && (p = memmem(p, (size_t)(end - p), tail3, sizeof(tail3)))) {
            uint64_t at = pos + (uint64_t)(p - 1 - buf), seq;

            if ((p[-1] == 0x31 || p[-1] == 0x32) &&
                spool__read_record(fd, at, &seq, NULL) > 0 && seq > after)
                found = (int64_t)at;
            p++;
        }
        pos += (uint64_t)n - 3;                     /* a magic across the chunk edge */
    }
    free(buf);
    return found;
}

