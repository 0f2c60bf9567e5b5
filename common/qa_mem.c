#include "common/qa_mem.h"
#include "common/qa_err.h"
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *qa_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    QA_ASSERT(p, "out of memory allocating %zu bytes; reduce the batch size or sequence length", n);
    return p;
}
void *qa_calloc(size_t n, size_t sz) {
    QA_ASSERT(sz == 0 || n <= SIZE_MAX / sz, "allocation size overflow (%zu x %zu)", n, sz);
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    QA_ASSERT(p, "out of memory allocating %zu x %zu bytes; reduce the batch size or sequence length", n, sz);
    return p;
}
void *qa_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    QA_ASSERT(q, "out of memory reallocating to %zu bytes", n);
    return q;
}
void *qa_aligned_alloc(size_t align, size_t n) {
    void *p = NULL;
    int rc = posix_memalign(&p, align, n ? n : align);
    QA_ASSERT(rc == 0 && p, "out of memory allocating %zu aligned bytes", n);
    return p;
}
char *qa_strdup(const char *s) { return qa_strndup(s, strlen(s)); }
char *qa_strndup(const char *s, size_t n) {
    char *d = qa_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}
char *qa_key_join(const char *prefix, const char *key) {
    if (!prefix) return qa_strdup(key);
    char *full = qa_malloc(strlen(prefix) + strlen(key) + 2);
    sprintf(full, "%s.%s", prefix, key);
    return full;
}
