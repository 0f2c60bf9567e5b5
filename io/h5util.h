/* h5util.h — small helpers over serial HDF5 (1.10, pkg-config hdf5-serial) shared by the
 * checkpoint store and the activation-dump writer.
 *
 * Conventions of every qalign HDF5 file:
 *   - explicit little-endian file types (H5T_IEEE_F32LE, H5T_STD_I64LE, ...), whatever the host;
 *   - text attributes are scalar variable-length UTF-8 strings (h5py reads them as `str`);
 *   - datasets are chunked (~1 MiB per chunk) with fletcher32 (a read of a damaged chunk fails),
 *     optionally shuffle + deflate;
 *   - file locking is off (NFS / Lustre without lock support), library-version bounds
 *     [1.8, latest] so object headers and the superblock carry checksums of their own.
 * HDF5's automatic error-stack printing is silenced inside qa_h5_quiet_begin/end; failures are
 * turned into one-line qa_err messages that name file:line and HDF5's innermost reason.
 */
#ifndef QA_H5UTIL_H
#define QA_H5UTIL_H
#include "common/qa_err.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

typedef enum qa_h5_dt {
    QA_H5_F32 = 1, /* file H5T_IEEE_F32LE, memory float */
    QA_H5_F64,     /* file H5T_IEEE_F64LE, memory double */
    QA_H5_I64,     /* file H5T_STD_I64LE,  memory int64_t */
    QA_H5_U64,     /* file H5T_STD_U64LE,  memory uint64_t */
    QA_H5_U32,     /* file H5T_STD_U32LE,  memory uint32_t */
    QA_H5_U16,     /* file H5T_STD_U16LE,  memory uint16_t (bf16 with attr dtype="bfloat16") */
} qa_h5_dt;

size_t qa_h5_dt_size(qa_h5_dt dt);
const char *qa_h5_dt_name(qa_h5_dt dt);     /* "float32", "float64", "int64", ... */
hid_t qa_h5_dt_file_type(qa_h5_dt dt);      /* the little-endian file type (library-owned id) */
hid_t qa_h5_dt_mem_type(qa_h5_dt dt);       /* the native memory type (library-owned id) */
/* Map a dataset's file type to qa_h5_dt (by class, size, sign); 0 when none fits. */
qa_h5_dt qa_h5_dt_of_type(hid_t type);

/* Silence HDF5's error printing for the duration of a public call and restore it afterwards
 * (nothing global stays changed). */
typedef struct qa_h5_quiet {
    H5E_auto2_t func;
    void *data;
} qa_h5_quiet;
void qa_h5_quiet_begin(qa_h5_quiet *q);
void qa_h5_quiet_end(const qa_h5_quiet *q);

/* Fill e with "<what>: <HDF5's innermost reason>" + " (file:line)" and clear HDF5's error
 * stack. The reason prefers the OS error text HDF5 quotes ("No space left on device"). */
int qa_h5_fail(qa_err *e, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Check an HDF5 call returning herr_t or hid_t (< 0 = failure); on failure fill e and
 * `goto fail` (the caller's cleanup label). */
#define QA_H5(e, expr, ...) do { if ((expr) < 0) { \
    qa_h5_fail((e), __FILE__, __LINE__, __VA_ARGS__); goto fail; } } while (0)

/* Close an id of any kind if valid (files, groups, datasets, attributes, types, spaces,
 * property lists); sets *id = -1. Errors are ignored (cleanup paths). */
void qa_h5_close(hid_t *id);

/* File access property list of qalign: sec2 driver, no file locking, libver [v18, latest],
 * close degree strong. Close with qa_h5_close. */
hid_t qa_h5_fapl(qa_err *e);
/* Create a NEW file with qa_h5_fapl (exclusive: fails if anything, a symbolic link included, is at
 * path; use a fresh qa_tmp_name) / open a regular file read-only (a FIFO or device is refused before
 * HDF5 opens it). Return the file id or -1. */
hid_t qa_h5_create_file(const char *path, qa_err *e);
hid_t qa_h5_open_file_ro(const char *path, qa_err *e);
/* An in-memory file (core driver, no backing store; `name` only labels it): build it, then
 * qa_h5_mem_close hands over its complete bytes, to be written with plain write() calls. HDF5 never
 * touches the disk, so a full disk cannot leave a half-closed HDF5 file behind (HDF5 1.10 does not
 * recover from a failed H5Fclose: the id stays and library shutdown crashes on it). The tracker m
 * must live until qa_h5_mem_close. */
typedef struct qa_h5_mem {
    size_t cap;  /* bytes allocated by the core driver */
    void *kept;  /* the buffer, once HDF5 closed the file */
} qa_h5_mem;
hid_t qa_h5_create_mem_file(const char *name, size_t increment, qa_h5_mem *m, qa_err *e);
/* Close the in-memory file (*file = -1) and take its bytes: *buf (free()) of *len bytes. */
int qa_h5_mem_close(hid_t *file, qa_h5_mem *m, const char *what, void **buf, size_t *len, qa_err *e);

/* A file qalign reads must hold its data itself: every link is a hard link (no soft or external
 * link), and no dataset has external storage (raw data in another file, even a FIFO) or a virtual
 * layout (data mapped from other files). Otherwise an error naming the object: a crafted file
 * could make qalign read any file of the machine. what names the file in messages. */
int qa_h5_check_self_contained(hid_t file, const char *what, qa_err *e);

/* The whole-file checksum sidecar "<file>.crc32c" of qalign's HDF5 files (one line
 * "crc32c XXXXXXXX size N"): written when the file is committed, checked before HDF5 parses the file,
 * because HDF5 1.10 does not defend itself against damaged metadata (a flipped bit in a heap can
 * crash the library). */
char *qa_h5_sidecar_path(const char *path);                 /* heap "<path>.crc32c" */
int qa_h5_sidecar_write(const char *path, uint32_t crc, uint64_t size, qa_err *e);  /* atomic */
/* CRC32C and size of a whole file (read through a private mapping). */
int qa_h5_file_crc32c(const char *path, uint32_t *crc, uint64_t *size, qa_err *e);
/* 0 when the sidecar matches the file, or when there is none and required is 0; -1 with e naming
 * the file otherwise (size or checksum differ, malformed or missing sidecar). */
int qa_h5_sidecar_check(const char *path, int required, qa_err *e);

/* Create a group (intermediate groups created as needed) and return its id, or -1. */
hid_t qa_h5_create_group(hid_t loc, const char *path, qa_err *e);
/* 1 if `path` (relative to loc) exists as a link, 0 if not (parents may be missing). */
int qa_h5_exists(hid_t loc, const char *path);

/* Attributes (written on any object; an existing attribute of the same name is replaced). */
int qa_h5_attr_str(hid_t obj, const char *name, const char *val, qa_err *e);
int qa_h5_attr_strs(hid_t obj, const char *name, const char *const *vals, size_t n, qa_err *e);
int qa_h5_attr_i64(hid_t obj, const char *name, int64_t v, qa_err *e);
int qa_h5_attr_u64(hid_t obj, const char *name, uint64_t v, qa_err *e);
int qa_h5_attr_u32(hid_t obj, const char *name, uint32_t v, qa_err *e);
int qa_h5_attr_f64(hid_t obj, const char *name, double v, qa_err *e);
int qa_h5_attr_i64s(hid_t obj, const char *name, const int64_t *v, size_t n, qa_err *e);

/* Reading attributes; `what` names the object in messages ("checkpoint x.h5", "dataset /lora/y").
 * A missing attribute or a value of the wrong kind is an error naming both. */
int qa_h5_has_attr(hid_t obj, const char *name);
int qa_h5_get_attr_str(hid_t obj, const char *name, const char *what, char **out, qa_err *e); /* heap */
int qa_h5_get_attr_strs(hid_t obj, const char *name, const char *what, char ***out, size_t *n,
                        qa_err *e); /* heap array of heap strings; free with qa_h5_free_strs */
void qa_h5_free_strs(char **v, size_t n);
int qa_h5_get_attr_i64(hid_t obj, const char *name, const char *what, int64_t *out, qa_err *e);
int qa_h5_get_attr_u64(hid_t obj, const char *name, const char *what, uint64_t *out, qa_err *e);
int qa_h5_get_attr_u32(hid_t obj, const char *name, const char *what, uint32_t *out, qa_err *e);
int qa_h5_get_attr_f64(hid_t obj, const char *name, const char *what, double *out, qa_err *e);

/* Datasets. */
typedef struct qa_h5_dset_opts {
    size_t chunk_bytes;   /* target chunk size; 0 = 1 MiB */
    int deflate;          /* 0 = no compression; 1..9 = shuffle + deflate at that level */
    int fletcher32;       /* 1 = per-chunk checksum (recommended) */
} qa_h5_dset_opts;
/* Chunk dims for a shape: whole trailing dims, leading dims split so a chunk is ~target bytes.
 * A dataset with a zero-sized dim gets no chunking (and no filters). */
void qa_h5_chunk_dims(int ndim, const int64_t *shape, size_t elem, size_t target, hsize_t *chunk);
/* Create dataset `name` under loc (intermediate groups created) with the whole data written at
 * once. data has prod(shape) elements of dt in host layout. If out_dset is not NULL the
 * dataset stays open and is returned there (for attributes); otherwise it is closed. */
int qa_h5_write(hid_t loc, const char *name, qa_h5_dt dt, int ndim, const int64_t *shape,
                const void *data, const qa_h5_dset_opts *opts, hid_t *out_dset, qa_err *e);
/* Shape and type of an open dataset. ndim ≤ max_dims or error. */
int qa_h5_dset_shape(hid_t dset, const char *what, int max_dims, int *ndim, int64_t *shape, qa_h5_dt *dt,
                     qa_err *e);
/* Read a whole dataset into out (prod(shape) elements of dt; converted by HDF5 if the file
 * type differs but is of the same class). Fletcher32 failures surface here. */
int qa_h5_read_all(hid_t dset, const char *what, qa_h5_dt dt, void *out, qa_err *e);
#endif
