#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int qa_open_input(const char *path, qa_err *e) {
    /* O_NONBLOCK: opening a FIFO with no writer would otherwise block forever */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return QA_ERRNO(e, errno, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) { int en = errno; close(fd); return QA_ERRNO(e, en, "cannot stat %s", path); }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return QA_ERR(e, "%s is %s, not a regular file: give the path of a file", path,
                      S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                      : S_ISCHR(st.st_mode) ? "a character device" : S_ISBLK(st.st_mode) ? "a block device"
                      : S_ISSOCK(st.st_mode) ? "a socket" : "a special file");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int qa_check_input(const char *path, qa_err *e) {
    int fd = qa_open_input(path, e);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

int qa_read_file(const char *path, size_t max_bytes, char **out, size_t *len, qa_err *e) {
    *out = NULL;
    if (len) *len = 0;
    int fd = qa_open_input(path, e);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) { int en = errno; close(fd); return QA_ERRNO(e, en, "cannot stat %s", path); }
    size_t n = (size_t)st.st_size;
    if (max_bytes && n > max_bytes) {
        close(fd);
        return QA_ERR(e, "%s is %zu bytes, more than the %zu allowed for this kind of file", path, n, max_bytes);
    }
    char *buf = qa_malloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            int en = errno;
            free(buf);
            close(fd);
            return QA_ERRNO(e, en, "read error on %s", path);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    if (len) *len = got;
    return 0;
}

int qa_mmap_open(qa_mmap *m, const char *path, qa_err *e) {
    memset(m, 0, sizeof *m);
    m->fd = -1;
    int fd = qa_open_input(path, e);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) { int en = errno; close(fd); return QA_ERRNO(e, en, "cannot stat %s", path); }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int en = errno;
            close(fd);
            return QA_ERRNO(e, en, "cannot mmap %s (%zu bytes)", path, m->size);
        }
        m->data = p;
    }
    m->fd = fd;
    return 0;
}

void qa_mmap_close(qa_mmap *m) {
    if (m->data && m->size) munmap((void *)m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    memset(m, 0, sizeof *m);
    m->fd = -1;
}

int qa_fsync_dir(const char *dir, qa_err *e) {
    int fd;
    QA_SYS(e, fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), "cannot open directory %s to fsync it", dir);
    if (fsync(fd) < 0 && errno != EINVAL) {
        int en = errno;
        close(fd);
        return QA_ERRNO(e, en, "fsync of directory %s failed", dir);
    }
    close(fd);
    return 0;
}

int qa_fsync_path(const char *path, qa_err *e) {
    int fd;
    QA_SYS(e, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), "cannot open %s to fsync it", path);
    if (fsync(fd) < 0) { int en = errno; close(fd); return QA_ERRNO(e, en, "fsync of %s failed", path); }
    close(fd);
    return 0;
}

static char *dir_of(const char *path) {
    char *tmp = qa_strdup(path);
    char *d = qa_strdup(dirname(tmp));
    free(tmp);
    return d;
}

/* ---- atomic writes ------------------------------------------------------------------------------- */
static void random_hex(char *out, int n) {
    uint8_t b[16];
    size_t need = (size_t)(n + 1) / 2;
    ssize_t got = getrandom(b, need, GRND_NONBLOCK);
    if (got != (ssize_t)need) { /* no entropy yet (early boot): time, pid and an address still differ per call */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)b;
        for (size_t i = 0; i < need; i++) {
            x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33;
            b[i] = (uint8_t)x;
        }
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) out[i] = hex[(b[i / 2] >> (4 * (i & 1))) & 15];
    out[n] = 0;
}

/* t (strlen(path) + 18 bytes) = "<path>.tmp.<12 random hex digits>" */
static void tmp_of(char *t, const char *path) {
    size_t pl = strlen(path);
    memcpy(t, path, pl);
    memcpy(t + pl, ".tmp.", 5);
    random_hex(t + pl + 5, 12);
}

char *qa_tmp_name(const char *path) {
    size_t n = strlen(path) + 24;
    char *t = qa_malloc(n);
    for (int tries = 0;; tries++) {
        tmp_of(t, path);
        struct stat st;
        if (lstat(t, &st) < 0 || tries > 64) return t;
    }
}

static const char *kind_of(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)" : S_ISCHR(m) ? "a character device"
           : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "a special file";
}

int qa_check_output(const char *path, qa_err *e) {
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT) return 0;
        return QA_ERRNO(e, errno, "cannot inspect the output %s", path);
    }
    if (S_ISREG(st.st_mode)) return 0;
    if (S_ISLNK(st.st_mode)) {
        struct stat t;
        if (stat(path, &t) < 0 || S_ISREG(t.st_mode)) return 0; /* a dangling link or a link to a file: replaced */
        return QA_ERR(e, "output %s is a symbolic link to %s; qalign writes regular files only: choose another path",
                      path, kind_of(t.st_mode));
    }
    return QA_ERR(e, "output %s exists and is %s; qalign writes regular files only and never replaces anything else: "
                  "choose another path", path, kind_of(st.st_mode));
}

int qa_atomic_open(qa_atomic *a, const char *path, unsigned mode, qa_err *e) {
    a->fd = -1;
    a->path = a->tmp = NULL;
    QA_TRY(qa_check_output(path, e));
    size_t n = strlen(path) + 24;
    char *tmp = qa_malloc(n);
    int fd = -1, en = 0;
    for (int tries = 0; tries < 16 && fd < 0; tries++) {
        tmp_of(tmp, path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode ? (mode_t)mode : 0644);
        en = errno;
        if (fd < 0 && en != EEXIST) break;
    }
    if (fd < 0) {
        QA_ERRNO(e, en, "cannot create %s (the temporary of %s)", tmp, path);
        free(tmp);
        return -1;
    }
    a->fd = fd;
    a->tmp = tmp;
    a->path = qa_strdup(path);
    return 0;
}

int qa_atomic_write(qa_atomic *a, const void *buf, size_t len, qa_err *e) {
    const char *p = buf;
    size_t left = len;
    while (left) {
        ssize_t w = write(a->fd, p, left > ((size_t)1 << 30) ? (size_t)1 << 30 : left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int en = w < 0 ? errno : ENOSPC;
            QA_ERRNO(e, en, "writing %s failed after %zu of %zu bytes; %s is untouched", a->tmp, len - left, len,
                     a->path);
            qa_atomic_abort(a);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    return 0;
}

int qa_atomic_sync(qa_atomic *a, qa_err *e) {
    if (a->fd < 0) return 0;
    int fd = a->fd;
    a->fd = -1;
    if (fsync(fd) < 0) {
        int en = errno;
        close(fd);
        QA_ERRNO(e, en, "flushing %s failed; %s is untouched", a->tmp, a->path);
        qa_atomic_abort(a);
        return -1;
    }
    if (close(fd) < 0) {
        int en = errno;
        QA_ERRNO(e, en, "closing %s failed; %s is untouched", a->tmp, a->path);
        qa_atomic_abort(a);
        return -1;
    }
    return 0;
}

int qa_atomic_commit(qa_atomic *a, qa_err *e) {
    QA_TRY(qa_atomic_sync(a, e));
    /* the destination may have become something else meanwhile: check again right before the rename */
    if (qa_check_output(a->path, e)) { qa_atomic_abort(a); return -1; }
    if (rename(a->tmp, a->path) < 0) {
        QA_ERRNO(e, errno, "renaming %s to %s failed", a->tmp, a->path);
        qa_atomic_abort(a);
        return -1;
    }
    char *d = dir_of(a->path);
    int rc = qa_fsync_dir(d, e);
    free(d);
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
    return rc;
}

void qa_atomic_abort(qa_atomic *a) {
    if (!a) return;
    if (a->fd >= 0) close(a->fd);
    a->fd = -1;
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
}

int qa_commit_rename(const char *tmp, const char *path, qa_err *e) {
    if (qa_fsync_path(tmp, e) || qa_check_output(path, e)) { unlink(tmp); return -1; }
    if (rename(tmp, path) < 0) {
        int en = errno;
        unlink(tmp);
        return QA_ERRNO(e, en, "renaming %s to %s failed", tmp, path);
    }
    char *d = dir_of(path);
    int rc = qa_fsync_dir(d, e);
    free(d);
    return rc;
}

int qa_write_file_atomic(const char *path, const void *data, size_t len, qa_err *e) {
    qa_atomic a;
    QA_TRY(qa_atomic_open(&a, path, 0644, e));
    QA_TRY(qa_atomic_write(&a, data, len, e));
    return qa_atomic_commit(&a, e);
}

int qa_remove_stale_temps(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t pl = prefix ? strlen(prefix) : 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix ? prefix : "", pl) || !strstr(de->d_name, ".tmp.")) continue;
        char *p = qa_path_join(dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) && unlink(p) == 0) n++;
        free(p);
    }
    closedir(d);
    return n;
}

/* ---- staged directories -------------------------------------------------------------------------- */
char *qa_stage_dir_create(const char *final, qa_err *e) {
    size_t n = strlen(final);
    while (n > 1 && final[n - 1] == '/') n--;
    char *t = qa_malloc(n + 16);
    memcpy(t, final, n);
    memcpy(t + n, ".tmp.XXXXXX", 12);
    char *parent = dir_of(t);
    int rc = qa_mkdir_p(parent, e);
    free(parent);
    if (rc) { free(t); return NULL; }
    if (!mkdtemp(t)) {
        QA_ERRNO(e, errno, "cannot create a staging directory next to %.*s", (int)n, final);
        free(t);
        return NULL;
    }
    return t;
}

static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *de;
    int empty = 1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) { empty = 0; break; }
    closedir(d);
    return empty;
}

int qa_stage_dir_commit(const char *staged, const char *final, qa_err *e) {
    mode_t um = umask(022);
    umask(um);
    if (chmod(staged, 0777 & ~um) < 0) return QA_ERRNO(e, errno, "cannot set the permissions of %s", staged);
    struct stat st;
    if (lstat(final, &st) == 0) {
        if (!S_ISDIR(st.st_mode) || !dir_is_empty(final))
            return QA_ERR(e, "%s exists and is not an empty directory: qalign does not write over it (remove it or "
                          "choose another path)", final);
        if (rmdir(final) < 0) return QA_ERRNO(e, errno, "cannot replace the empty directory %s", final);
    }
    if (rename(staged, final) < 0) return QA_ERRNO(e, errno, "cannot move %s to %s", staged, final);
    char *d = dir_of(final);
    int rc = qa_fsync_dir(d, e);
    free(d);
    return rc;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

void qa_rm_tree(const char *path) {
    if (path && *path) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int qa_mkdir_p_mode(const char *path, unsigned mode, qa_err *e) {
    char *p = qa_strdup(path);
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST) {
                int en = errno;
                QA_ERRNO(e, en, "cannot create directory %s", p);
                free(p);
                return -1;
            }
            p[i] = c;
        }
    }
    free(p);
    if (!qa_is_dir(path)) return QA_ERR(e, "%s exists and is not a directory", path);
    return 0;
}

int qa_mkdir_p(const char *path, qa_err *e) { return qa_mkdir_p_mode(path, 0755, e); }

int qa_path_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }
int qa_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }

char *qa_path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *r = qa_malloc(la + lb + 2);
    memcpy(r, a, la);
    size_t k = la;
    if (la && a[la - 1] != '/') r[k++] = '/';
    memcpy(r + k, b, lb + 1);
    return r;
}

int qa_copy_file(const char *src, const char *dst, qa_err *e) {
    char *buf; size_t len;
    QA_TRY(qa_read_file(src, 0, &buf, &len, e));
    int rc = qa_write_file_atomic(dst, buf, len, e);
    free(buf);
    return rc;
}

static uint32_t crc_table[8][256];
static int crc_init_done; /* idempotent table fill; values are constants */
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    crc_init_done = 1;
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* the SSE4.2 instruction when the CPU has it (about 10x the table), same values */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    const uint8_t *p = buf;
    uint64_t c = ~crc & 0xffffffffu;
    while (len && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi((uint32_t)c, *p++); len--; }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    while (len--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

uint32_t qa_crc32c(uint32_t crc, const void *buf, size_t len) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("sse4.2")) return crc32c_hw(crc, buf, len);
#endif
    if (!crc_init_done) crc_init();
    const uint8_t *p = buf;
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
              crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8; len -= 8;
    }
    while (len--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}
uint64_t qa_fnv1a64(uint64_t h, const void *buf, size_t len) {
    const uint8_t *p = buf;
    if (!h) h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}
