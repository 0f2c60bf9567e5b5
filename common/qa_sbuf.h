/* qa_sbuf.h — a growable, NUL-terminated text buffer (reports, YAML/JSON dumps). Zero-initialise,
 * append, then take .p or write it out; qa_sb_free releases it. Allocation failure is fatal (qa_mem.h). */
#ifndef QA_SBUF_H
#define QA_SBUF_H
#include "common/qa_err.h"

#include <stddef.h>
typedef struct qa_sbuf {
    char *p;      /* text, NUL-terminated once anything was appended; NULL before */
    size_t n;     /* bytes, without the NUL */
    size_t cap;
} qa_sbuf;
void qa_sb_put(qa_sbuf *b, const char *s, size_t n);
void qa_sb_puts(qa_sbuf *b, const char *s);
void qa_sb_printf(qa_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qa_sb_free(qa_sbuf *b);
/* write the buffer to dir/name atomically (qa_write_file_atomic) */
int qa_sb_write(const qa_sbuf *b, const char *dir, const char *name, qa_err *e);
#endif
