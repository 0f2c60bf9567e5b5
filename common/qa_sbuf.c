/* qa_sbuf.c — see qa_sbuf.h. */
#include "common/qa_sbuf.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* room for at least `need` more bytes and the NUL */
static void reserve(qa_sbuf *b, size_t need) {
    if (b->p && b->n + need + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + need + 1) cap *= 2;
    b->p = qa_realloc(b->p, cap);
    b->cap = cap;
}

void qa_sb_put(qa_sbuf *b, const char *s, size_t n) {
    reserve(b, n);
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void qa_sb_puts(qa_sbuf *b, const char *s) { qa_sb_put(b, s, strlen(s)); }

void qa_sb_printf(qa_sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->p ? b->cap - b->n : 0;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if ((size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        reserve(b, (size_t)k);
    }
}

void qa_sb_free(qa_sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

int qa_sb_write(const qa_sbuf *b, const char *dir, const char *name, qa_err *e) {
    char *path = qa_path_join(dir, name);
    int rc = qa_write_file_atomic(path, b->p ? b->p : "", b->n, e);
    free(path);
    return rc;
}
