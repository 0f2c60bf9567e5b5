/* fuzz_util.h — what the fuzz targets share: inputs as files without touching the disk, and a private
 * directory for the parsers that take a directory. */
#ifndef QA_FUZZ_UTIL_H
#define QA_FUZZ_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* The bytes as the content of a regular file (a memfd, one per slot, rewritten per input); returns its
 * path "/proc/self/fd/N" (valid until the next call with the same slot). */
const char *fz_file(int slot, const void *data, size_t n);
/* A private directory for this process (created once, removed at exit). */
const char *fz_dir(void);
/* Write n bytes to dir/name (truncating). */
void fz_write(const char *dir, const char *name, const void *data, size_t n);
/* A NUL-terminated heap copy of the input. */
char *fz_cstr(const uint8_t *data, size_t n);
#endif
