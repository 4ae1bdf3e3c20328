/*
 * cmdjournal.c - the command journal (see cmdjournal.h): records in, and
 * at open (or when the file has grown past its bound) a scan that pairs
 * every ACCEPTED with its DONE and rewrites the file with the unpaired
 * ones: into <path>.tmp, fdatasync, rename over <path>, fsync of the
 * directory, so that a crash at any point leaves either the old file or
 * the new one, each complete.
 *
 * Layer: base (calls loop, syncer, log)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "coap2mqtt/bytes.h"
#include "coap2mqtt/cmdjournal.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/syncer.h"
#include "coap2mqtt/topics.h"

#define CJ_MAGIC        0x4a4d3243u     /* "C2MJ" */
#define CJ_MAX_BODY     (CJ_ACCEPTED_FIXED + TOPIC_ID_MAX + TOPIC_PATH_MAX + \
                         65535u + 65535u + CJ_MAX_PAYLOAD)
#define FLAG_RT         1u
#define FLAG_CORR       2u

struct cmdjournal {
    char *path;
    int fd;                     /* O_RDWR | O_APPEND */
    uint64_t bytes;             /* file size */
    uint64_t compact_at;
    uint64_t compact_min;
    size_t open;                /* accepted, not done */
    uint64_t next_seq;
    loop_t *loop;
    int fsync_interval;
    bool dirty;
    uint64_t sync_timer;
    syncer_t *syncer;           /* NULL: fdatasync on the loop thread */
};


/* --- records --------------------------------------------------------------- */

static void
seal(uint8_t *rec, size_t body)
{
    bytes_put32(rec, CJ_MAGIC);
    bytes_put32(rec + 4, (uint32_t)body);
    bytes_put32(rec + 8, (uint32_t)crc32(0, rec + CJ_HDR, (uInt)body));
}

uint8_t *
cj_encode_accepted(const struct cj_command *c, size_t *len)
{
    size_t body;
    uint8_t *rec, *b, *p;

    if (c->kind > 1 || c->id_len < 1 || c->id_len > TOPIC_ID_MAX ||
        c->path_len < 1 || c->path_len > TOPIC_PATH_MAX || c->rt_len > 65535 ||
        c->corr_len > 65535 || c->len > CJ_MAX_PAYLOAD ||
        (!c->rt && c->rt_len) || (!c->corr && c->corr_len) || (!c->payload && c->len))
        return NULL;
    body = CJ_ACCEPTED_FIXED + c->id_len + c->path_len + c->rt_len + c->corr_len + c->len;
    if (!(rec = malloc(CJ_HDR + body)))
        return NULL;
    b = rec + CJ_HDR;
    b[0] = CJ_ACCEPTED;
    bytes_put64(b + 1, c->seq);
    b[9] = c->kind;
    b[10] = (uint8_t)((c->rt ? FLAG_RT : 0) | (c->corr ? FLAG_CORR : 0));
    bytes_put32(b + 11, (uint32_t)c->ct);
    bytes_put64(b + 15, (uint64_t)c->expiry_ms);
    bytes_put64(b + 23, c->ttl_ms);
    bytes_put16(b + 31, (uint16_t)c->id_len);
    bytes_put16(b + 33, (uint16_t)c->path_len);
    bytes_put16(b + 35, (uint16_t)c->rt_len);
    bytes_put16(b + 37, (uint16_t)c->corr_len);
    bytes_put32(b + 39, (uint32_t)c->len);
    p = b + CJ_ACCEPTED_FIXED;
    memcpy(p, c->id, c->id_len);
    p += c->id_len;
    memcpy(p, c->path, c->path_len);
    p += c->path_len;
    if (c->rt_len)
        memcpy(p, c->rt, c->rt_len);
    p += c->rt_len;
    if (c->corr_len)
        memcpy(p, c->corr, c->corr_len);
    p += c->corr_len;
    if (c->len)
        memcpy(p, c->payload, c->len);
    seal(rec, body);
    *len = CJ_HDR + body;
    return rec;
}

size_t
cj_encode_done(uint64_t seq, uint8_t out[CJ_HDR + CJ_DONE_BODY])
{
    out[CJ_HDR] = CJ_DONE;
    bytes_put64(out + CJ_HDR + 1, seq);
    seal(out, CJ_DONE_BODY);
    return CJ_HDR + CJ_DONE_BODY;
}

static bool
has_nul(const uint8_t *p, size_t n)
{
    return n && memchr(p, '\0', n) != NULL;
}

/* Fills *c from an ACCEPTED body whose CRC matched; false if it does not
 * hold together. */
static bool
decode_accepted(const uint8_t *b, size_t body, struct cj_command *c)
{
    unsigned flags;
    const uint8_t *p;

    if (body < CJ_ACCEPTED_FIXED)
        return false;
    memset(c, 0, sizeof(*c));
    c->seq = bytes_get64(b + 1);
    c->kind = b[9];
    flags = b[10];
    c->ct = (int32_t)bytes_get32(b + 11);
    c->expiry_ms = (int64_t)bytes_get64(b + 15);
    c->ttl_ms = bytes_get64(b + 23);
    c->id_len = bytes_get16(b + 31);
    c->path_len = bytes_get16(b + 33);
    c->rt_len = bytes_get16(b + 35);
    c->corr_len = bytes_get16(b + 37);
    c->len = bytes_get32(b + 39);
    if (c->seq == 0 || c->kind > 1 || (flags & ~(FLAG_RT | FLAG_CORR)) ||
        c->id_len < 1 || c->id_len > TOPIC_ID_MAX ||
        c->path_len < 1 || c->path_len > TOPIC_PATH_MAX ||
        (!(flags & FLAG_RT) && c->rt_len) || (!(flags & FLAG_CORR) && c->corr_len) ||
        c->len > CJ_MAX_PAYLOAD ||
        CJ_ACCEPTED_FIXED + c->id_len + c->path_len + c->rt_len + c->corr_len + c->len != body)
        return false;
    p = b + CJ_ACCEPTED_FIXED;
    c->id = (const char *)p;
    p += c->id_len;
    c->path = (const char *)p;
    p += c->path_len;
    c->rt = flags & FLAG_RT ? (const char *)p : NULL;
    p += c->rt_len;
    c->corr = flags & FLAG_CORR ? p : NULL;
    p += c->corr_len;
    c->payload = p;
    return !has_nul((const uint8_t *)c->id, c->id_len) &&
           !has_nul((const uint8_t *)c->path, c->path_len) &&
           !has_nul((const uint8_t *)c->rt, c->rt_len);
}

ssize_t
cj_decode(const uint8_t *buf, size_t len, enum cj_type *type, struct cj_command *c)
{
    uint8_t magic[4];
    uint32_t body;
    const uint8_t *b;

    bytes_put32(magic, CJ_MAGIC);
    if (len < 4)
        return memcmp(buf, magic, len) == 0 ? 0 : -1;
    if (bytes_get32(buf) != CJ_MAGIC)
        return -1;
    if (len < CJ_HDR)
        return 0;
    body = bytes_get32(buf + 4);
    if (body < CJ_DONE_BODY || body > CJ_MAX_BODY)
        return -1;
    if (len - CJ_HDR < body)
        return 0;
    b = buf + CJ_HDR;
    if ((uint32_t)crc32(0, b, (uInt)body) != bytes_get32(buf + 8))
        return -1;
    switch (b[0]) {
    case CJ_DONE:
        if (body != CJ_DONE_BODY)
            return -1;
        memset(c, 0, sizeof(*c));
        c->seq = bytes_get64(b + 1);
        if (c->seq == 0)
            return -1;
        break;
    case CJ_ACCEPTED:
        if (!decode_accepted(b, body, c))
            return -1;
        break;
    default:
        return -1;
    }
    *type = (enum cj_type)b[0];
    return (ssize_t)(CJ_HDR + body);
}

/* --- scanning a whole file ------------------------------------------------- */

struct acc {
    size_t off, len;
    uint64_t seq;
};

struct scan {
    uint8_t *buf;
    size_t size;
    struct acc *acc;
    size_t n_acc, cap_acc;
    uint64_t *done;
    size_t n_done, cap_done;
    uint64_t max_seq;
    struct cj_load_stats st;
};

static void
scan_free(struct scan *s)
{
    free(s->buf);
    free(s->acc);
    free(s->done);
}

static int
grow(void **p, size_t *cap, size_t n, size_t elem)
{
    size_t ncap;
    void *np;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 64;
    if (!(np = realloc(*p, ncap * elem)))
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

static int
read_all(int fd, struct scan *s)
{
    struct stat sb;
    size_t got = 0;

    if (fstat(fd, &sb) < 0)
        return -1;
    s->size = (size_t)sb.st_size;
    if (!(s->buf = malloc(s->size ? s->size : 1)))
        return -1;
    while (got < s->size) {
        ssize_t n = pread(fd, s->buf + got, s->size - got, (off_t)got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    s->size = got;      /* shorter than fstat said: only what is there */
    return 0;
}

/* Walks the records; damaged stretches are skipped up to the next intact
 * record (or to the end: a torn tail).  -1 only when out of memory. */
static int
scan_records(struct scan *s)
{
    size_t off = 0;

    while (off < s->size) {
        enum cj_type type;
        struct cj_command c;
        ssize_t n = cj_decode(s->buf + off, s->size - off, &type, &c);
        size_t next;

        if (n > 0) {
            if (type == CJ_DONE) {
                if (grow((void **)&s->done, &s->cap_done, s->n_done, sizeof(*s->done)) < 0)
                    return -1;
                s->done[s->n_done++] = c.seq;
            } else {
                if (grow((void **)&s->acc, &s->cap_acc, s->n_acc, sizeof(*s->acc)) < 0)
                    return -1;
                s->acc[s->n_acc++] = (struct acc){ off, (size_t)n, c.seq };
            }
            if (c.seq > s->max_seq)
                s->max_seq = c.seq;
            off += (size_t)n;
            continue;
        }
        for (next = off + 1; next < s->size; next++)
            if (cj_decode(s->buf + next, s->size - next, &type, &c) > 0)
                break;
        if (next >= s->size && n == 0) {
            s->st.torn_tail = true;
        } else {
            s->st.damaged++;
            s->st.damaged_bytes += next - off;
        }
        off = next;
    }
    return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static bool
is_done(const struct scan *s, uint64_t seq)
{
    return s->n_done && bsearch(&seq, s->done, s->n_done, sizeof(*s->done), cmp_u64);
}

/* --- the file -------------------------------------------------------------- */


static void
sync_dir(const char *path)
{
    char *copy = strdup(path);
    int dfd;

    if (!copy)
        return;
    dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) < 0)
            log_warn("commands journal: fsync of its directory");
        close(dfd);
    }
    free(copy);
}

/*
 * Reads the whole journal, keeps the ACCEPTED records without DONE and
 * swaps in a file with just those.  On success j->fd is the new file; on
 * failure the old one is still in use.  'out' (may be NULL) keeps the
 * scan for the caller (to hand out the pending commands).
 */
/* Writes the records of commands still without a result to 'fd';
 * -1 on a write error.  Counts them in *pending and their bytes. */
static int
write_pending(int fd, struct scan *s, uint64_t *bytes, size_t *pending)
{
    for (size_t i = 0; i < s->n_acc; i++) {
        if (is_done(s, s->acc[i].seq)) {
            s->st.answered++;
            continue;
        }
        if (bytes_write_all(fd, s->buf + s->acc[i].off, s->acc[i].len) < 0)
            return -1;
        *bytes += s->acc[i].len;
        (*pending)++;
    }
    return 0;
}

/* The rewritten file (fd) replaces the journal. */
static void
adopt(cmdjournal_t *j, int fd, const struct scan *s, uint64_t bytes, size_t pending)
{
    if (j->fd >= 0)
        close(j->fd);
    j->fd = fd;
    j->bytes = bytes;
    j->open = pending;
    j->dirty = false;
    if (s->max_seq >= j->next_seq)
        j->next_seq = s->max_seq + 1;
    j->compact_at = bytes * 2 > j->compact_min ? bytes * 2 : j->compact_min;
}

static int
rewrite(cmdjournal_t *j, struct scan *out)
{
    struct scan s = { 0 };
    char *tmp = NULL;
    int fd = -1, rc = -1;
    uint64_t bytes = 0;
    size_t pending = 0;

    if (read_all(j->fd, &s) < 0 || scan_records(&s) < 0) {
        log_warn("commands journal: cannot read %s", j->path);
        goto out;
    }
    if (s.n_done)
        qsort(s.done, s.n_done, sizeof(*s.done), cmp_u64);
    if (asprintf(&tmp, "%s.tmp", j->path) < 0) {
        tmp = NULL;
        goto out;
    }
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("commands journal: cannot create %s", tmp);
        goto out;
    }
    if (write_pending(fd, &s, &bytes, &pending) < 0) {
        log_warn("commands journal: writing %s", tmp);
        goto out;
    }
    if (fdatasync(fd) < 0 || rename(tmp, j->path) < 0) {
        log_warn("commands journal: replacing %s", j->path);
        goto out;
    }
    sync_dir(j->path);
    s.st.pending = pending;
    adopt(j, fd, &s, bytes, pending);
    fd = -1;
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    if (rc == 0 && out)
        *out = s;
    else
        scan_free(&s);
    return rc;
}

static void
sync_now(cmdjournal_t *j, bool wait)
{
    static int warned;
    int err = j->syncer ? syncer_take_error(j->syncer) : 0;

    if (err)
        log_ratelimited(&warned, "commands journal: fdatasync failed (%s)", strerror(err));
    if (!j->dirty || j->fd < 0)
        return;
    if (!wait && j->syncer) {
        if (syncer_request(j->syncer, j->fd))
            j->dirty = false;
        return;
    }
    if (fdatasync(j->fd) < 0)
        log_ratelimited(&warned, "commands journal: fdatasync failed (%s)", strerror(errno));
    j->dirty = false;
}

static void
sync_tick(loop_t *loop, void *arg)
{
    cmdjournal_t *j = arg;

    (void)loop;
    j->sync_timer = 0;
    sync_now(j, false);
    if (j->dirty)   /* the syncer was busy: next tick */
        j->sync_timer = loop_add_timer(j->loop, (uint64_t)j->fsync_interval, sync_tick, j);
}

static int
append(cmdjournal_t *j, const uint8_t *rec, size_t len)
{
    static int warned;
    ssize_t n;

    do
        n = write(j->fd, rec, len);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len) {
        log_ratelimited(&warned, "commands journal: write failed (%s)",
                        n < 0 ? strerror(errno) : "short");
        /* Never leave a torn record in the middle of the file. */
        if (n > 0 && ftruncate(j->fd, (off_t)j->bytes) < 0)
            log_warn("commands journal: cutting a torn record");
        return -1;
    }
    j->bytes += len;
    j->dirty = true;
    if (j->fsync_interval == 0)
        sync_now(j, true);
    else if (!j->sync_timer && j->loop)
        j->sync_timer = loop_add_timer(j->loop, (uint64_t)j->fsync_interval, sync_tick, j);
    return 0;
}

static void
maybe_compact(cmdjournal_t *j)
{
    uint64_t before = j->bytes;

    if (j->bytes <= j->compact_at)
        return;
    if (rewrite(j, NULL) < 0) {
        /* Keep appending to the old file; try again when it has doubled. */
        j->compact_at = j->bytes * 2;
        return;
    }
    log_info("commands journal: rewritten, %" PRIu64 " -> %" PRIu64 " bytes, %zu commands waiting",
             before, j->bytes, j->open);
}

cmdjournal_t *
cmdjournal_open(const char *path, loop_t *loop, int fsync_interval_ms,
                uint64_t compact_min, cj_pending_fn fn, void *arg,
                struct cj_load_stats *st)
{
    cmdjournal_t *j = calloc(1, sizeof(*j));
    struct scan s;

    if (st)
        memset(st, 0, sizeof(*st));
    if (!j || !(j->path = strdup(path))) {
        free(j);
        log_warnx("commands journal: out of memory");
        return NULL;
    }
    j->loop = loop;
    j->fsync_interval = fsync_interval_ms;
    j->compact_min = compact_min;
    j->next_seq = 1;
    j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        log_warn("commands journal: cannot open %s", path);
        cmdjournal_close(j);
        return NULL;
    }
    if (rewrite(j, &s) < 0) {
        cmdjournal_close(j);
        return NULL;
    }
    if (s.st.damaged)
        log_warnx("commands journal %s: %zu damaged stretches (%" PRIu64 " bytes) skipped",
                  path, s.st.damaged, s.st.damaged_bytes);
    if (s.st.torn_tail)
        log_notice("commands journal %s: the last record was cut short (a crash while "
                   "writing it); dropped", path);
    if (st)
        *st = s.st;
    for (size_t i = 0; fn && i < s.n_acc; i++) {
        enum cj_type type;
        struct cj_command c;

        if (!is_done(&s, s.acc[i].seq) &&
            cj_decode(s.buf + s.acc[i].off, s.acc[i].len, &type, &c) > 0)
            fn(arg, &c);
    }
    scan_free(&s);
    if (!(j->syncer = syncer_new()))
        log_warnx("commands journal: no syncer thread; fdatasync() runs on the loop");
    return j;
}

void
cmdjournal_close(cmdjournal_t *j)
{
    if (!j)
        return;
    if (j->loop)
        loop_cancel_timer(j->loop, j->sync_timer);
    syncer_free(j->syncer);         /* waits for a sync still running */
    j->syncer = NULL;
    sync_now(j, true);
    if (j->fd >= 0)
        close(j->fd);
    free(j->path);
    free(j);
}

uint64_t
cmdjournal_accept(cmdjournal_t *j, const struct cj_command *c)
{
    struct cj_command copy = *c;
    uint8_t *rec;
    size_t len;
    int rc;

    copy.seq = j->next_seq;
    if (!(rec = cj_encode_accepted(&copy, &len))) {
        log_warnx("commands journal: cannot encode a command for %.*s",
                  (int)c->id_len, c->id);
        return 0;
    }
    rc = append(j, rec, len);
    free(rec);
    if (rc < 0)
        return 0;
    j->next_seq++;
    j->open++;
    maybe_compact(j);
    return copy.seq;
}

int
cmdjournal_done(cmdjournal_t *j, uint64_t seq)
{
    uint8_t rec[CJ_HDR + CJ_DONE_BODY];
    size_t len = cj_encode_done(seq, rec);

    if (append(j, rec, len) < 0)
        return -1;
    if (j->open)
        j->open--;
    maybe_compact(j);
    return 0;
}

uint64_t
cmdjournal_bytes(const cmdjournal_t *j)
{
    return j->bytes;
}

size_t
cmdjournal_open_count(const cmdjournal_t *j)
{
    return j->open;
}
