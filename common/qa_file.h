/* qa_file.h — files: whole reads, read-only mmaps, atomic commits. Every failure names the path. */
#ifndef QA_FILE_H
#define QA_FILE_H
#include "common/qa_err.h"
#include <stddef.h>
#include <stdint.h>

/* Read a whole file into a NUL-terminated heap buffer (*len excludes the NUL). Refuses files
 * larger than max_bytes (0 = no limit) with a message naming the file. */
int qa_read_file(const char *path, size_t max_bytes, char **out, size_t *len, qa_err *e);

/* A read-only private mapping of a whole file (MAP_PRIVATE; pages are shared with the page
 * cache, so mapping a 14 GB checkpoint costs no anonymous memory). */
typedef struct qa_mmap {
    const uint8_t *data;
    size_t size;
    int fd;
} qa_mmap;
int qa_mmap_open(qa_mmap *m, const char *path, qa_err *e);
void qa_mmap_close(qa_mmap *m);

/* Atomic commit of a file: write to "<path>.tmp.<pid>", fsync, rename over path, fsync the
 * directory. On any failure (e.g. ENOSPC) the temporary is removed and the old file stays. */
int qa_write_file_atomic(const char *path, const void *data, size_t len, qa_err *e);
/* fsync a directory (after a rename inside it). */
int qa_fsync_dir(const char *dir, qa_err *e);
/* fsync a file by path. */
int qa_fsync_path(const char *path, qa_err *e);
/* mkdir -p */
int qa_mkdir_p(const char *path, qa_err *e);
/* 1 if the path exists (any type), 0 otherwise */
int qa_path_exists(const char *path);
int qa_is_dir(const char *path);
/* join two path components into a heap string */
char *qa_path_join(const char *a, const char *b);
/* copy a file (atomic at the destination) */
int qa_copy_file(const char *src, const char *dst, qa_err *e);

/* CRC32C (Castagnoli) of a buffer, for checkpoint manifests. */
uint32_t qa_crc32c(uint32_t crc, const void *buf, size_t len);
/* FNV-1a 64 */
uint64_t qa_fnv1a64(uint64_t h, const void *buf, size_t len);
#endif
