/* qa_err.h — the one error convention of qalign.
 *
 * Library functions return 0 on success and -1 on failure, after filling a caller-owned
 * qa_err with ONE line that names the file / tensor / key / rank at fault and what to do.
 * Nothing is global: the caller owns the qa_err and decides (print and exit, fall back, ...).
 *
 *   qa_err e = {0};
 *   if (qa_safetensors_open(&st, path, &e)) { qa_err_print(&e); return 1; }
 *
 * Calls into system libraries are wrapped so that every failure says file:line:
 *   QA_SYS(e, fd = open(p, O_RDONLY), "open %s", p)   -> "open x: No such file ... (io/st.c:42)"
 * Fatal checks for library calls whose failure cannot be recovered (CUDA, MPI, HDF5 in the
 * middle of a step) live next to those libraries: QA_CUDA_CHECK, QA_MPI_CHECK, QA_H5_CHECK.
 */
#ifndef QA_ERR_H
#define QA_ERR_H

#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#define QA_ERR_MSG 2048

typedef struct qa_err {
    int code;               /* 0 = no error; otherwise an errno-like or qalign code */
    char msg[QA_ERR_MSG];   /* one line, no trailing newline */
} qa_err;

/* Set the error (printf format) and append " (file:line)". Returns -1 so callers can
 * `return QA_ERR(e, ...)`. A NULL e is allowed (the message is dropped). */
int qa_err_setf(qa_err *e, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefix the existing message with more context ("loading model X: <old msg>"). */
int qa_err_prefix(qa_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "qalign: error: <msg>" on stderr. */
void qa_err_print(const qa_err *e);
/* Print a formatted fatal error with file:line and a hint, then exit(code). */
_Noreturn void qa_die(const char *file, int line, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define QA_ERR(e, ...) qa_err_setf((e), __FILE__, __LINE__, __VA_ARGS__)
/* An OS error (errno value en) as one line: "<what>: <strerror(en)>" plus what to do for the errors a
 * user can fix (ENOSPC: the disk is full; EDQUOT: over quota; EFBIG: a file-size limit such as
 * `ulimit -f`; EROFS; EACCES/EPERM; ELOOP: a symbolic link where none is followed), then " (file:line)".
 * e->code = en. Returns -1. The one errno-to-message path of qalign: every failed system call uses it.
 *   if (fsync(fd) < 0) return QA_ERRNO(e, errno, "flushing %s", tmp);   */
int qa_err_errno(qa_err *e, const char *file, int line, int en, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define QA_ERRNO(e, en, ...) qa_err_errno((e), __FILE__, __LINE__, (en), __VA_ARGS__)
/* The hint for an errno value ("" when there is none to give): used by QA_ERRNO and by messages that
 * quote an OS error reported by a library (HDF5). */
const char *qa_errno_hint(int en);
/* Propagate: if expr fails, return -1 (the callee already filled the error). */
#define QA_TRY(expr) do { if ((expr) != 0) return -1; } while (0)
/* A system call that returns <0 (or NULL via QA_SYSP) on failure: errno goes into the message. */
#define QA_SYS(e, expr, ...) do { if ((expr) < 0) return QA_ERRNO(e, errno, __VA_ARGS__); } while (0)
#define QA_SYSP(e, expr, ...) do { if ((expr) == NULL) return QA_ERRNO(e, errno, __VA_ARGS__); } while (0)
#define QA_DIE(...) qa_die(__FILE__, __LINE__, 1, __VA_ARGS__)
/* Out of memory is fatal everywhere: the message says how much was asked for. */
#define QA_ASSERT(cond, ...) do { if (!(cond)) qa_die(__FILE__, __LINE__, 70, __VA_ARGS__); } while (0)

#include <string.h>

#endif
