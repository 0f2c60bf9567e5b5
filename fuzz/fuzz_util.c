/* fuzz_util.c — see fuzz_util.h. */
#include "fuzz_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *fz_file(int slot, const void *data, size_t n) {
    static int fds[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    static char paths[8][64];
    if (fds[slot] < 0) {
        fds[slot] = memfd_create("qa_fuzz", MFD_CLOEXEC);
        if (fds[slot] < 0) { perror("memfd_create"); abort(); }
        snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
    }
    if (ftruncate(fds[slot], 0) || (n && pwrite(fds[slot], data, n, 0) != (ssize_t)n)) abort();
    return paths[slot];
}

static char g_dir[256];
static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}
static void rm_dir(void) { nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

const char *fz_dir(void) {
    if (!g_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%s/qa_fuzz_XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(g_dir)) abort();
        atexit(rm_dir);
    }
    return g_dir;
}

void fz_write(const char *dir, const char *name, const void *data, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n)) abort();
    close(fd);
}

char *fz_cstr(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, data, n);
    s[n] = 0;
    return s;
}
