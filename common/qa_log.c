/* qa_log.c — see qa_log.h. */
#include "common/qa_log.h"

#include <stdarg.h>
#include <stdio.h>

void qa_logf(qa_log_fn fn, void *ctx, const char *fmt, ...) {
    if (!fn) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(ctx, line);
}
