#include "common/qa_err.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int qa_err_setf(qa_err *e, const char *file, int line, const char *fmt, ...) {
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof e->msg) {
        const char *base = strrchr(file, '/');
        /* keep the last two path components: "io/safetensors.c" */
        if (base) {
            const char *p = base - 1;
            while (p > file && *p != '/') p--;
            if (*p == '/') base = p + 1; else base = file;
        } else {
            base = file;
        }
        snprintf(e->msg + n, sizeof e->msg - (size_t)n, " (%s:%d)", base, line);
    }
    if (!e->code) e->code = 1;
    return -1;
}

const char *qa_errno_hint(int en) {
    switch (en) {
    case ENOSPC: return "; the disk is full: free space or write elsewhere";
#ifdef EDQUOT
    case EDQUOT: return "; the disk quota is exceeded: free space or write elsewhere";
#endif
    case EFBIG: return "; a file-size limit was reached (`ulimit -f`, the file system's maximum file size)";
    case EROFS: return "; the file system is read-only";
    case EACCES: case EPERM: return "; check the permissions of the file and its directory";
    case ELOOP: return "; a symbolic link is in the way (qalign does not follow links where it creates files)";
    case EIO: return "; an I/O error: check the device (dmesg)";
    default: return "";
    }
}

int qa_err_errno(qa_err *e, const char *file, int line, int en, const char *fmt, ...) {
    if (!e) return -1;
    char what[QA_ERR_MSG / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    qa_err_setf(e, file, line, "%s: %s%s", what, strerror(en), qa_errno_hint(en));
    e->code = en ? en : 1;
    return -1;
}

int qa_err_prefix(qa_err *e, const char *fmt, ...) {
    if (!e) return -1;
    char pre[QA_ERR_MSG], old[QA_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
    if (!e->code) e->code = 1;
    return -1;
}

void qa_err_print(const qa_err *e) {
    fprintf(stderr, "qalign: error: %s\n", e && e->msg[0] ? e->msg : "unknown error");
    fflush(stderr);
}

void qa_die(const char *file, int line, int code, const char *fmt, ...) {
    char msg[QA_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "qalign: fatal: %s (%s:%d)\n", msg, file, line);
    fflush(stderr);
    exit(code ? code : 1);
}
