/* qa_mem.h — allocation helpers. Out-of-memory is fatal and says how much was requested. */
#ifndef QA_MEM_H
#define QA_MEM_H
#include <stddef.h>
void *qa_malloc(size_t n) __attribute__((returns_nonnull));            /* dies on OOM; n == 0 returns a valid 1-byte block */
void *qa_calloc(size_t n, size_t sz); /* zeroed; dies on OOM or overflow */
void *qa_realloc(void *p, size_t n);
void *qa_aligned_alloc(size_t align, size_t n); /* free with free() */
char *qa_strdup(const char *s) __attribute__((returns_nonnull));
char *qa_strndup(const char *s, size_t n) __attribute__((returns_nonnull));
/* "prefix.key" (heap), or a copy of key when prefix is NULL: the dotted name of a nested config key */
char *qa_key_join(const char *prefix, const char *key) __attribute__((returns_nonnull));
#endif
