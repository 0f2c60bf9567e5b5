/* qa_file.h — files: whole reads, read-only mmaps, atomic commits. Every failure names the path. */
#ifndef QA_FILE_H
#define QA_FILE_H
#include "common/qa_err.h"
#include <stddef.h>
#include <stdint.h>

/* Inputs are opened only when they are regular files (symbolic links to regular files are fine):
 * a FIFO, a device or a directory where a file is expected is refused at once instead of blocking
 * (the open uses O_NONBLOCK, then fstat). Returns an fd (O_RDONLY | O_CLOEXEC) or -1 with e filled. */
int qa_open_input(const char *path, qa_err *e);
/* The same check by path for files a library opens itself (HDF5): 0 when path is a regular file. */
int qa_check_input(const char *path, qa_err *e);

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

/* ---- atomic writes: the one way qalign replaces a file -------------------------------------------
 * qa_atomic_open creates "<path>.tmp.<12 random hex digits>" in path's directory with
 * O_CREAT | O_EXCL | O_NOFOLLOW (a file or a symbolic link planted at that name makes the open fail,
 * and a new random name is tried; nothing is ever truncated or followed), qa_atomic_write appends,
 * qa_atomic_commit fsyncs and closes it, renames it over path and fsyncs the directory. On any failure
 * the temporary is removed and the old path is untouched (qa_atomic_abort does it explicitly).
 * An existing path that is not a regular file (a device such as /dev/null, a FIFO, a socket, a
 * directory, or a link to one of those) is refused before anything is written: qalign never
 * replaces what it did not write as a file. Every failure names the file, the OS reason and what to
 * do (QA_ERRNO: disk full, quota, `ulimit -f`, ...).
 *
 *   qa_atomic a;
 *   if (qa_atomic_open(&a, path, 0644, e)) return -1;
 *   if (qa_atomic_write(&a, buf, n, e) || qa_atomic_commit(&a, e)) return -1;   // both clean up
 */
typedef struct qa_atomic {
    int fd;       /* the temporary, open for writing; -1 once synced and closed */
    char *path;   /* the destination */
    char *tmp;    /* the temporary (same directory) */
} qa_atomic;
int qa_atomic_open(qa_atomic *a, const char *path, unsigned mode, qa_err *e);
/* All len bytes (EINTR and short writes retried). On failure the temporary is removed. */
int qa_atomic_write(qa_atomic *a, const void *buf, size_t len, qa_err *e);
/* fsync + close the temporary: it is complete on disk and may be verified (a->tmp) before the commit.
 * On failure the temporary is removed. */
int qa_atomic_sync(qa_atomic *a, qa_err *e);
/* Sync if not yet done, rename the temporary over path, fsync the directory; frees a's strings. */
int qa_atomic_commit(qa_atomic *a, qa_err *e);
/* Close and remove the temporary, free a's strings. Safe after a failed call and on a zeroed a. */
void qa_atomic_abort(qa_atomic *a);
/* Commit a temporary that another writer produced by name (HDF5, PLplot): fsync tmp, rename it over
 * path, fsync the directory. tmp is removed on failure. */
int qa_commit_rename(const char *tmp, const char *path, qa_err *e);
/* A fresh temporary name for path ("<path>.tmp.<12 hex>", heap) that nothing holds yet, for writers
 * that create the file themselves with an exclusive create (H5F_ACC_EXCL). */
char *qa_tmp_name(const char *path);
/* 0 when path may be written as an output: it does not exist or is a regular file (or a link to one).
 * Otherwise an error naming it ("is a character device", "is a directory", ...). */
int qa_check_output(const char *path, qa_err *e);
/* Remove the temporaries of earlier, interrupted writes in dir: entries whose name contains ".tmp."
 * and starts with prefix ("" = any). Returns the number removed (errors are ignored: best effort). */
int qa_remove_stale_temps(const char *dir, const char *prefix);

/* Staged directories: everything of a multi-file output is written into a private directory
 * "<final>.tmp.XXXXXX" (mkdtemp: mode 0700, unique) that qa_stage_dir_commit renames into place.
 * A failure or an interruption never leaves a half-written final directory behind. */
char *qa_stage_dir_create(const char *final, qa_err *e); /* heap path, or NULL with e filled */
/* Give the staged directory the usual permissions (0777 & ~umask), rename it to final (which must
 * not exist, or be an empty directory), fsync the parent. On failure the staged directory stays
 * (the caller removes it with qa_rm_tree). */
int qa_stage_dir_commit(const char *staged, const char *final, qa_err *e);
/* rm -r of a directory qalign created (no symbolic link is followed). Errors are ignored. */
void qa_rm_tree(const char *path);

/* Atomic commit of a whole buffer: qa_atomic_open(0644) + write + commit. */
int qa_write_file_atomic(const char *path, const void *data, size_t len, qa_err *e);
/* fsync a directory (after a rename inside it). */
int qa_fsync_dir(const char *dir, qa_err *e);
/* fsync a file by path. */
int qa_fsync_path(const char *path, qa_err *e);
/* mkdir -p (new directories 0755 & ~umask) */
int qa_mkdir_p(const char *path, qa_err *e);
/* mkdir -p with the mode of the directories it creates (e.g. 0750 for a run directory) */
int qa_mkdir_p_mode(const char *path, unsigned mode, qa_err *e);
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
