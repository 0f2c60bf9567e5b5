/* safetensors.h — read (mmap, zero-copy) and write the safetensors format.
 *
 * Reading validates the whole header before any data is touched: length (≤ 100 MB and inside
 * the file), UTF-8 JSON object, known dtypes, shapes, END-BEGIN == prod(shape)*elem_size,
 * ranges inside the file, no overlaps / gaps (the buffer is tiled from 0), no duplicate names,
 * 8 + N + last END == file size. Errors name the file and the tensor.
 * A model directory is either one `model.safetensors` or a `model.safetensors.index.json`
 * naming shards; qa_st_open_dir handles both and exposes one flat tensor table.
 */
#ifndef QA_SAFETENSORS_H
#define QA_SAFETENSORS_H
#include "common/qa_dtype.h"
#include "common/qa_err.h"
#include "common/qa_file.h"
#include <stdint.h>

#define QA_ST_MAX_DIMS 8

typedef struct qa_st_tensor {
    char *name;
    qa_dtype dtype;             /* QA_DT_OTHER for valid but non-computable dtypes */
    char dtype_name[16];        /* as written in the header */
    int ndim;
    int64_t shape[QA_ST_MAX_DIMS];
    int64_t numel;
    uint64_t nbytes;
    const void *data;           /* points into the mmap; valid until qa_st_close */
    int file;                   /* index into qa_safetensors.paths */
} qa_st_tensor;

typedef struct qa_safetensors {
    int n_files;
    char **paths;               /* [n_files] */
    qa_mmap *maps;              /* [n_files] */
    qa_st_tensor *tensors;      /* [n_tensors], sorted by name */
    size_t n_tensors;
    char *metadata_json;        /* "__metadata__" of the first file as JSON text, or NULL */
    char *source;               /* the file or directory that was opened (for messages) */
} qa_safetensors;

/* One .safetensors file. */
int qa_st_open(qa_safetensors *st, const char *path, qa_err *e);
/* A model directory: model.safetensors.index.json (sharded) or model.safetensors; also accepts
 * adapter directories via qa_st_open(dir/adapter_model.safetensors). */
int qa_st_open_dir(qa_safetensors *st, const char *dir, qa_err *e);
void qa_st_close(qa_safetensors *st);
/* Binary search by name; NULL when absent. */
const qa_st_tensor *qa_st_find(const qa_safetensors *st, const char *name);
/* Find a tensor and check its shape (ndim dims); errors name file and tensor. */
int qa_st_get(const qa_safetensors *st, const char *name, int ndim, const int64_t *shape,
              const qa_st_tensor **out, qa_err *e);
/* Copy a tensor into f32 (F32/BF16/F16/F64 sources). */
int qa_st_read_f32(const qa_safetensors *st, const qa_st_tensor *t, float *dst, qa_err *e);
/* 0 when every element of a float tensor (F32, BF16, F16, F64) is finite; else an error naming the
 * file, the tensor and the first non-finite element. One pass over the data (memory bandwidth); other
 * dtypes pass unchecked. */
int qa_st_check_finite(const qa_safetensors *st, const qa_st_tensor *t, qa_err *e);
/* The file holding t (t == NULL: the opened file or directory). */
const char *qa_st_file_of(const qa_safetensors *st, const qa_st_tensor *t);
/* Element size in bits of a safetensors dtype name ("F4" -> 4, "BF16" -> 16); 0 if unknown. */
int qa_st_dtype_bits(const char *dtype_name);

/* Writing: entries are written sorted as the reference writer does (by dtype alignment
 * descending, then name), header padded with spaces to a multiple of 8, committed atomically
 * (tmp + fsync + rename). metadata: NULL or pairs {"format","pt", NULL}. */
typedef struct qa_st_entry {
    const char *name;
    qa_dtype dtype;
    int ndim;
    int64_t shape[QA_ST_MAX_DIMS];
    const void *data;           /* numel * elem_size bytes, little-endian; NULL: produced by fill */
    const char *dtype_name;     /* optional: overrides dtype ("F8_E4M3", "C64", ... for QA_DT_OTHER) */
} qa_st_entry;
int qa_st_write(const char *path, const qa_st_entry *entries, size_t n, const char *const *metadata_kv,
                qa_err *e);
/* Streaming writer for files larger than memory: entries with data == NULL are produced by
 * fill(ctx, entry, index_in_entries, first_element, n_elements, dst) in chunks of at most 32 MiB,
 * in file order; memory use is one chunk. Same ordering, padding and atomic commit as qa_st_write. */
typedef int (*qa_st_fill_fn)(void *ctx, const qa_st_entry *ent, size_t index, uint64_t first, uint64_t count,
                             void *dst, qa_err *e);
int qa_st_write_stream(const char *path, const qa_st_entry *entries, size_t n, const char *const *metadata_kv,
                       qa_st_fill_fn fill, void *ctx, qa_err *e);
#endif
