/*
 * pcut.c - a simulated power cut, as an LD_PRELOAD library for the
 * gateway in the power-cut test (tests/integration/test_powercut.py).
 *
 * The technique is LazyFS's (used by Jepsen), without FUSE: the real
 * files in the watched directory are the page cache; a shadow directory
 * holds what is on stable storage.  Only fsync()/fdatasync()/syncfs()
 * move data into the shadow:
 *
 *   - a file's synced image (shadow/img-<key>) gets the bytes written or
 *     truncated since its last sync (write, pwrite, ftruncate and
 *     O_TRUNC are tracked per inode) when the file is synced;
 *   - a directory's synced listing (shadow/dir-<key>: "f|d <key> <name>"
 *     lines) is the real listing at the moment the directory is fsync'ed:
 *     a file created, renamed or unlinked since then is not (or still)
 *     there after the cut;
 *   - syncfs() does both for the whole tree.
 *
 * The cut is a SIGKILL of the gateway, from outside at any moment, or by
 * this library itself at the Nth event named by C2M_PCUT_AT ("kind:N"):
 * create (a new file), write, acked (a write of spool/acked), presync
 * (before a file's sync), sync (after its image was taken, before the
 * caller hears of it), dirsync (before a directory's), unlink, rename,
 * trunc; counted once the file C2M_PCUT_ARM exists, when that is set (the
 * test creates it once the load runs).  Afterwards tests/powercut/restore.py rebuilds the watched
 * directory from the shadow: what a real disk could hold after the cut,
 * nothing more.  Images are keyed per inode incarnation, so a reused
 * inode number never mixes two files.
 *
 * Environment: C2M_PCUT_DIR (watched, absolute), C2M_PCUT_SHADOW
 * (absolute, outside it), C2M_PCUT_AT (optional).  Without C2M_PCUT_DIR
 * every call passes straight through.  At load the shadow is set to the
 * watched tree as it is (what a restart finds is durable by definition).
 *
 * Not part of the gateway; built as build/libc2m-pcut.so.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_INODES 65536

struct inode {
    dev_t dev;
    ino_t ino;
    uint64_t key;
    int64_t lo, hi;         /* dirty byte range, lo < 0: none */
    int64_t trunc_to;       /* smallest size truncated to since the sync, -1 none */
    int whole;              /* history unknown: copy it all at the sync */
    int is_acked;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct inode *inodes;
static size_t n_inodes;
static uint64_t next_key = 1;
static char watch[PATH_MAX], shadow[PATH_MAX];
static size_t watch_len;
static dev_t watch_dev;
static int active;
static char at_kind[16];
static long at_n, at_count;
static char arm_path[PATH_MAX];
static int armed;

/* --- the real calls ------------------------------------------------------ */

#define REAL(ret, name, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    static void load_##name(void) { if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name); }

REAL(int, open, const char *, int, ...)
REAL(int, open64, const char *, int, ...)
REAL(int, openat, int, const char *, int, ...)
REAL(int, openat64, int, const char *, int, ...)
REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, pwrite, int, const void *, size_t, off_t)
REAL(ssize_t, pwrite64, int, const void *, size_t, off_t)
REAL(int, ftruncate, int, off_t)
REAL(int, ftruncate64, int, off_t)
REAL(int, fsync, int)
REAL(int, fdatasync, int)
REAL(int, syncfs, int)
REAL(int, unlink, const char *)
REAL(int, unlinkat, int, const char *, int)
REAL(int, rename, const char *, const char *)
REAL(int, renameat, int, const char *, int, const char *)

/* --- the shadow ------------------------------------------------------------ */

static void
die(const char *what)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "pcut: %s: %s\n", what, strerror(errno));

    if (n > 0)
        syscall(SYS_write, 2, buf, (size_t)n);
    syscall(SYS_kill, getpid(), SIGKILL);
}

static void
event(const char *kind)
{
    struct stat st;

    if (!at_n || strcmp(kind, at_kind) != 0)
        return;
    if (!armed && arm_path[0] && syscall(SYS_newfstatat, AT_FDCWD, arm_path, &st, 0) != 0)
        return;                     /* not yet: the test arms it once under load */
    armed = 1;
    if (++at_count == at_n) {
        char buf[96];
        int n = snprintf(buf, sizeof(buf), "pcut: power cut at %s:%ld\n", kind, at_n);

        syscall(SYS_write, 2, buf, (size_t)n);
        syscall(SYS_kill, getpid(), SIGKILL);
    }
}

static void
shadow_path(char *out, const char *kind, uint64_t key)
{
    snprintf(out, PATH_MAX, "%s/%s-%llu", shadow, kind, (unsigned long long)key);
}

static struct inode *
find(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < n_inodes; i++)
        if (inodes[i].ino == ino && inodes[i].dev == dev)
            return &inodes[i];
    return NULL;
}

/* A new incarnation of an inode: a new key and an empty image. */
static struct inode *
fresh(dev_t dev, ino_t ino, int whole)
{
    struct inode *n = find(dev, ino);
    char path[PATH_MAX];
    int fd;

    if (!n) {
        if (n_inodes == MAX_INODES) {
            errno = ENOSPC;
            die("too many inodes");
        }
        n = &inodes[n_inodes++];
    }
    *n = (struct inode){ dev, ino, next_key++, -1, -1, -1, whole, 0 };
    shadow_path(path, "img", n->key);
    fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die(path);
    syscall(SYS_close, fd);
    return n;
}

static struct inode *
by_fd(int fd, struct stat *st)
{
    if (fstat(fd, st) < 0 || st->st_dev != watch_dev)
        return NULL;
    return find(st->st_dev, st->st_ino);
}

static int
copy_range(int from, int to, int64_t lo, int64_t hi)
{
    char buf[65536];

    while (lo < hi) {
        size_t want = (size_t)(hi - lo) < sizeof(buf) ? (size_t)(hi - lo) : sizeof(buf);
        ssize_t n = (ssize_t)syscall(SYS_pread64, from, buf, want, (off_t)lo);

        if (n <= 0)
            return n < 0 ? -1 : 0;
        if ((ssize_t)syscall(SYS_pwrite64, to, buf, (size_t)n, (off_t)lo) != n)
            return -1;
        lo += n;
    }
    return 0;
}

/* The file's image takes what was written since its last sync. */
static void
sync_file(struct inode *n, const char *src)
{
    char path[PATH_MAX];
    int in, out;
    struct stat st;

    if (n->lo < 0 && n->trunc_to < 0 && !n->whole)
        return;
    in = (int)syscall(SYS_openat, AT_FDCWD, src, O_RDONLY | O_CLOEXEC);
    shadow_path(path, "img", n->key);
    out = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
    if (in < 0 || out < 0 || fstat(in, &st) < 0)
        die("sync_file");
    if (n->whole)
        n->lo = 0, n->hi = st.st_size, n->trunc_to = 0;
    if (n->trunc_to >= 0)
        syscall(SYS_ftruncate, out, (off_t)n->trunc_to);
    if (n->lo >= 0 && copy_range(in, out, n->lo, n->hi < st.st_size ? n->hi : st.st_size) < 0)
        die("copy");
    syscall(SYS_ftruncate, out, st.st_size);
    syscall(SYS_close, in);
    syscall(SYS_close, out);
    n->lo = n->hi = n->trunc_to = -1;
    n->whole = 0;
}

static void sync_dir(struct inode *d, const char *src, int recurse);

/* The directory's synced listing becomes its listing now. */
static void
sync_dir(struct inode *d, const char *src, int recurse)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], child[PATH_MAX];
    DIR *dir = opendir(src);
    struct dirent *e;
    FILE *f;

    shadow_path(path, "dir", d->key);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (!dir || !(f = fopen(tmp, "w")))
        die("sync_dir");
    while ((e = readdir(dir))) {
        struct stat st;
        struct inode *n;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(child, sizeof(child), "%s/%s", src, e->d_name);
        if (lstat(child, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
            continue;
        if (!(n = find(st.st_dev, st.st_ino)))
            n = fresh(st.st_dev, st.st_ino, 1);     /* made behind our back */
        fprintf(f, "%c %llu %s\n", S_ISDIR(st.st_mode) ? 'd' : 'f',
                (unsigned long long)n->key, e->d_name);
        if (recurse && S_ISDIR(st.st_mode))
            sync_dir(n, child, 1);
        else if (recurse)
            sync_file(n, child);
    }
    closedir(dir);
    if (fclose(f) != 0 || rename(tmp, path) < 0)
        die("sync_dir write");
}

static int
fd_path(int fd, char *out)
{
    char link[64];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, out, PATH_MAX - 1);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 0;
}

static int
under_watch(const char *abs)
{
    return strncmp(abs, watch, watch_len) == 0 && (abs[watch_len] == '/' || !abs[watch_len]);
}

/* The absolute path of (dirfd, name), lexically. */
static int
abs_path(int dirfd, const char *name, char *out)
{
    char base[PATH_MAX];

    if (name[0] == '/') {
        snprintf(out, PATH_MAX, "%s", name);
        return 0;
    }
    if (dirfd == AT_FDCWD ? !getcwd(base, sizeof(base)) : fd_path(dirfd, base) < 0)
        return -1;
    snprintf(out, PATH_MAX, "%s/%s", base, name);
    return 0;
}

__attribute__((constructor)) static void
init(void)
{
    const char *w = getenv("C2M_PCUT_DIR"), *s = getenv("C2M_PCUT_SHADOW");
    const char *at = getenv("C2M_PCUT_AT");
    char cmd[PATH_MAX + 32], path[PATH_MAX];
    struct stat st;
    FILE *f;

    if (!w || !s)
        return;
    snprintf(watch, sizeof(watch), "%s", w);
    snprintf(shadow, sizeof(shadow), "%s", s);
    watch_len = strlen(watch);
    if (at && sscanf(at, "%15[a-z]:%ld", at_kind, &at_n) != 2)
        at_n = 0;
    if (getenv("C2M_PCUT_ARM"))
        snprintf(arm_path, sizeof(arm_path), "%s", getenv("C2M_PCUT_ARM"));
    if (!(inodes = calloc(MAX_INODES, sizeof(*inodes))) || stat(watch, &st) < 0)
        die("init");
    watch_dev = st.st_dev;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", shadow, shadow);
    unsetenv("LD_PRELOAD");                 /* not for the shell, nor anything else */
    if (system(cmd) != 0)
        die("shadow");
    /* What is there now is durable: every file's image, every listing. */
    sync_dir(fresh(st.st_dev, st.st_ino, 0), watch, 1);
    snprintf(path, sizeof(path), "%s/root", shadow);
    if (!(f = fopen(path, "w")))
        die("root");
    fprintf(f, "%llu\n", (unsigned long long)find(st.st_dev, st.st_ino)->key);
    fclose(f);
    active = 1;
}

/* --- the interposed calls --------------------------------------------------- */

static void
after_open(int dirfd, const char *name, int flags, int fd, int existed)
{
    char abs[PATH_MAX];
    struct stat st;
    struct inode *n;

    if (fd < 0 || abs_path(dirfd, name, abs) < 0 || !under_watch(abs) || fstat(fd, &st) < 0)
        return;
    pthread_mutex_lock(&mu);
    n = find(st.st_dev, st.st_ino);
    if (!existed || !n) {
        n = fresh(st.st_dev, st.st_ino, existed);
        if (!existed)
            event("create");
    } else if (flags & O_TRUNC) {
        n->trunc_to = 0;
    }
    if (strcmp(strrchr(abs, '/') + 1, "acked") == 0)
        n->is_acked = 1;
    pthread_mutex_unlock(&mu);
}

static int
existed_before(int dirfd, const char *name, int flags)
{
    struct stat st;

    return !(flags & O_CREAT) || fstatat(dirfd, name, &st, 0) == 0;
}

#define OPEN_BODY(realfn, dirfd, call)                                          \
    mode_t mode = 0;                                                            \
    int fd, existed;                                                            \
    if (flags & (O_CREAT | O_TMPFILE)) {                                        \
        va_list ap;                                                             \
        va_start(ap, flags);                                                    \
        mode = va_arg(ap, mode_t);                                              \
        va_end(ap);                                                             \
    }                                                                           \
    load_##realfn();                                                            \
    existed = active ? existed_before(dirfd, path, flags) : 1;                  \
    fd = call;                                                                  \
    if (active)                                                                 \
        after_open(dirfd, path, flags, fd, existed);                            \
    return fd;

int open(const char *path, int flags, ...) { OPEN_BODY(open, AT_FDCWD, real_open(path, flags, mode)) }
int open64(const char *path, int flags, ...) { OPEN_BODY(open64, AT_FDCWD, real_open64(path, flags, mode)) }
int openat(int dirfd, const char *path, int flags, ...) { OPEN_BODY(openat, dirfd, real_openat(dirfd, path, flags, mode)) }
int openat64(int dirfd, const char *path, int flags, ...) { OPEN_BODY(openat64, dirfd, real_openat64(dirfd, path, flags, mode)) }

static void
written(int fd, int64_t off, ssize_t n)
{
    struct stat st;
    struct inode *i;
    int acked = 0;

    if (!active || n <= 0)
        return;
    pthread_mutex_lock(&mu);
    if ((i = by_fd(fd, &st))) {
        if (off < 0)
            off = (int64_t)lseek(fd, 0, SEEK_CUR) - n;
        if (i->lo < 0 || off < i->lo)
            i->lo = off;
        if (off + n > i->hi)
            i->hi = off + n;
        acked = i->is_acked;
    }
    pthread_mutex_unlock(&mu);
    if (i) {
        event("write");
        if (acked)
            event("acked");
    }
}

ssize_t write(int fd, const void *buf, size_t len)
{
    ssize_t n;

    load_write();
    n = real_write(fd, buf, len);
    written(fd, -1, n);
    return n;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n;

    load_pwrite();
    n = real_pwrite(fd, buf, len, off);
    written(fd, off, n);
    return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n;

    load_pwrite64();
    n = real_pwrite64(fd, buf, len, off);
    written(fd, off, n);
    return n;
}

static void
truncated(int fd, off_t len, int r)
{
    struct stat st;
    struct inode *i;

    if (!active || r < 0)
        return;
    pthread_mutex_lock(&mu);
    if ((i = by_fd(fd, &st)) && (i->trunc_to < 0 || len < i->trunc_to))
        i->trunc_to = len;
    pthread_mutex_unlock(&mu);
    if (i)
        event("trunc");
}

int ftruncate(int fd, off_t len)
{
    int r;

    load_ftruncate();
    r = real_ftruncate(fd, len);
    truncated(fd, len, r);
    return r;
}

int ftruncate64(int fd, off_t len)
{
    int r;

    load_ftruncate64();
    r = real_ftruncate64(fd, len);
    truncated(fd, len, r);
    return r;
}

/* A file's or a directory's sync: the shadow first, then the real one. */
static void
synced(int fd)
{
    char path[PATH_MAX];
    struct stat st;
    struct inode *i;
    int dir;

    if (!active)
        return;
    pthread_mutex_lock(&mu);
    i = by_fd(fd, &st);
    dir = i && S_ISDIR(st.st_mode);
    pthread_mutex_unlock(&mu);
    if (!i)
        return;
    event(dir ? "dirsync" : "presync");
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    pthread_mutex_lock(&mu);
    if (dir)
        sync_dir(i, path, 0);
    else
        sync_file(i, path);
    pthread_mutex_unlock(&mu);
    if (!dir)
        event("sync");
}

int fsync(int fd)
{
    load_fsync();
    synced(fd);
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    load_fdatasync();
    synced(fd);
    return real_fdatasync(fd);
}

int syncfs(int fd)
{
    struct stat st;

    load_syncfs();
    if (active && stat(watch, &st) == 0) {
        pthread_mutex_lock(&mu);
        sync_dir(find(st.st_dev, st.st_ino), watch, 1);
        pthread_mutex_unlock(&mu);
    }
    return real_syncfs(fd);
}

static void
namespace_event(int dirfd, const char *name, const char *kind, int r)
{
    char abs[PATH_MAX];

    if (active && r == 0 && abs_path(dirfd, name, abs) == 0 && under_watch(abs))
        event(kind);
}

int unlink(const char *path)
{
    int r;

    load_unlink();
    r = real_unlink(path);
    namespace_event(AT_FDCWD, path, "unlink", r);
    return r;
}

int unlinkat(int dirfd, const char *path, int flags)
{
    int r;

    load_unlinkat();
    r = real_unlinkat(dirfd, path, flags);
    namespace_event(dirfd, path, "unlink", r);
    return r;
}

int rename(const char *from, const char *to)
{
    int r;

    load_rename();
    r = real_rename(from, to);
    namespace_event(AT_FDCWD, to, "rename", r);
    return r;
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    int r;

    load_renameat();
    r = real_renameat(fromfd, from, tofd, to);
    namespace_event(tofd, to, "rename", r);
    return r;
}
