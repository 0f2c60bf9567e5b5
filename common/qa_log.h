/* qa_log.h — progress lines handed to a caller's sink (a CLI prints them; a library caller may not). */
#ifndef QA_LOG_H
#define QA_LOG_H
typedef void (*qa_log_fn)(void *ctx, const char *line);
/* formats one line (truncated at 2047 bytes) and passes it to fn; fn NULL: nothing */
void qa_logf(qa_log_fn fn, void *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
