#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int qa_read_file(const char *path, size_t max_bytes, char **out, size_t *len, qa_err *e) {
    *out = NULL;
    if (len) *len = 0;
    int fd;
    QA_SYS(e, fd = open(path, O_RDONLY | O_CLOEXEC), "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) { int en = errno; close(fd); return QA_ERR(e, "cannot stat %s: %s", path, strerror(en)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return QA_ERR(e, "%s is not a regular file", path); }
    size_t n = (size_t)st.st_size;
    if (max_bytes && n > max_bytes) {
        close(fd);
        return QA_ERR(e, "%s is %zu bytes, more than the %zu allowed for this kind of file", path, n, max_bytes);
    }
    char *buf = qa_malloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0) { if (errno == EINTR) continue; int en = errno; free(buf); close(fd);
                     return QA_ERR(e, "read error on %s: %s", path, strerror(en)); }
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
    int fd;
    QA_SYS(e, fd = open(path, O_RDONLY | O_CLOEXEC), "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) { int en = errno; close(fd); return QA_ERR(e, "cannot stat %s: %s", path, strerror(en)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return QA_ERR(e, "%s is not a regular file", path); }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { int en = errno; close(fd); return QA_ERR(e, "cannot mmap %s (%zu bytes): %s", path, m->size, strerror(en)); }
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
    if (fsync(fd) < 0 && errno != EINVAL) { int en = errno; close(fd); return QA_ERR(e, "fsync of directory %s failed: %s", dir, strerror(en)); }
    close(fd);
    return 0;
}

int qa_fsync_path(const char *path, qa_err *e) {
    int fd;
    QA_SYS(e, fd = open(path, O_RDONLY | O_CLOEXEC), "cannot open %s to fsync it", path);
    if (fsync(fd) < 0) { int en = errno; close(fd); return QA_ERR(e, "fsync of %s failed: %s (is the disk full?)", path, strerror(en)); }
    close(fd);
    return 0;
}

static char *dir_of(const char *path) {
    char *tmp = qa_strdup(path);
    char *d = qa_strdup(dirname(tmp));
    free(tmp);
    return d;
}

int qa_write_file_atomic(const char *path, const void *data, size_t len, qa_err *e) {
    size_t n = strlen(path) + 32;
    char *tmp = qa_malloc(n);
    snprintf(tmp, n, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { int en = errno; QA_ERR(e, "cannot create %s: %s", tmp, strerror(en)); free(tmp); return -1; }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int en = errno; close(fd); unlink(tmp);
            QA_ERR(e, "writing %s failed: %s; the previous %s is untouched", tmp, strerror(en), path);
            free(tmp); return -1;
        }
        p += w; left -= (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int en = errno; unlink(tmp);
        QA_ERR(e, "flushing %s failed: %s; the previous %s is untouched", tmp, strerror(en), path);
        free(tmp); return -1;
    }
    if (rename(tmp, path) < 0) {
        int en = errno; unlink(tmp);
        QA_ERR(e, "renaming %s to %s failed: %s", tmp, path, strerror(en));
        free(tmp); return -1;
    }
    free(tmp);
    char *d = dir_of(path);
    int rc = qa_fsync_dir(d, e);
    free(d);
    return rc;
}

int qa_mkdir_p(const char *path, qa_err *e) {
    char *p = qa_strdup(path);
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                int en = errno;
                QA_ERR(e, "cannot create directory %s: %s", p, strerror(en));
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
uint32_t qa_crc32c(uint32_t crc, const void *buf, size_t len) {
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
