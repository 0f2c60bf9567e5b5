/* checkpoint.h — the training checkpoint store: one HDF5 file per checkpoint, committed atomically,
 * verified on load, with fallback to the previous valid one.
 *
 * A format module: it stores named tensors and scalar state and knows neither the model graph nor
 * ranks (rank 0 saves; LoRA state is small and unsharded, the data cursor is global).
 *
 * Files: <run_dir>/checkpoints/step_<N, 8 digits>.h5 and <run_dir>/checkpoints/latest (one line: the
 * file name of the newest committed checkpoint, for people and tools; loading scans the files).
 *
 * Layout (h5py: `f = h5py.File(p); {k: f["lora"][k][()] for k in f["lora"]}` is a PEFT state dict):
 *   /                 attrs format="qalign-lora-ckpt", format_version=1, step, epoch, cursor,
 *                     tokens_seen, skipped_steps, world_size, lora_r, lora_alpha, target_modules
 *                     (string array), base_model, base_model_id, config_yaml, created_utc (ISO 8601),
 *                     qalign_version, checksum (uint32), checksum_scheme (its definition in words)
 *   /lora/<PEFT name>         float32, e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
 *   /optim/m/<PEFT name>      float32 AdamW first moment (same shape); /optim attrs step, (AdamW count)
 *   /optim/v/<PEFT name>      float32 AdamW second moment
 *   /rng/<name>               RNG states (uint64 words typically)
 *   /data/<name>              e.g. "order" (int64 permutation); /data attrs shuffle_seed, epoch, cursor
 *   /metrics/<name>           e.g. "step" (int64), "loss" (float64) of logged steps
 * Every dataset: little-endian type, chunked (~1 MiB), fletcher32 per chunk (+ shuffle/deflate when
 * asked), attr crc32c (uint32, CRC32C of its little-endian bytes in C order), optional attr layout.
 * checksum = CRC32C over every dataset of the file in byte-wise order of its path (no leading '/'):
 * path bytes, one NUL byte, the dataset's crc32c as 4 little-endian bytes. HDF5 metadata (attributes
 * included) is protected by the checksums of the v2 object headers (library-version bounds
 * [1.8, latest]); the file is built in memory and written with plain write() calls.
 *
 * Commit: write step_N.h5.tmp.<pid>, close, fsync, re-open and verify, rename to step_N.h5, fsync
 * the directory, replace `latest` (tmp + fsync + rename), then retention. A failure at any point
 * before the rename (disk full, EFBIG, I/O error) removes the temporary and leaves every earlier
 * checkpoint and `latest` untouched.
 */
#ifndef QA_CHECKPOINT_H
#define QA_CHECKPOINT_H
#include "common/qa_err.h"
#include "common/qa_log.h"

#include <stddef.h>
#include <stdint.h>

#define QA_CKPT_FORMAT "qalign-lora-ckpt"
#define QA_CKPT_FORMAT_VERSION 1
#define QA_CKPT_MAX_DIMS 4
#define QA_CKPT_SUBDIR "checkpoints"

typedef enum qa_ckpt_dtype {
    QA_CKPT_F32 = 1, /* float    (file H5T_IEEE_F32LE) */
    QA_CKPT_F64 = 2, /* double   (file H5T_IEEE_F64LE) */
    QA_CKPT_I64 = 3, /* int64_t  (file H5T_STD_I64LE) */
    QA_CKPT_U64 = 4, /* uint64_t (file H5T_STD_U64LE) */
} qa_ckpt_dtype;
size_t qa_ckpt_dtype_size(qa_ckpt_dtype dt);
const char *qa_ckpt_dtype_name(qa_ckpt_dtype dt);

/* One named tensor, C order. */
typedef struct qa_ckpt_tensor {
    const char *name;     /* dataset name inside its group, no '/': a PEFT name under /lora,
                             a free name elsewhere ("host", "order", "loss") */
    qa_ckpt_dtype dtype;
    int ndim;             /* 0..QA_CKPT_MAX_DIMS */
    int64_t shape[QA_CKPT_MAX_DIMS];
    void *data;           /* save: read from; load: written to (caller-owned, prod(shape) elements);
                             NULL on load = not wanted */
    const char *layout;   /* save only, optional attr "layout" (e.g. "[r, in_features]"); NULL = none */
} qa_ckpt_tensor;

/* Everything with a shape. On save every pointer is read; on load the same struct names the
 * destinations (shapes must match exactly; errors name the dataset). */
typedef struct qa_ckpt_state {
    const qa_ckpt_tensor *lora;   /* [n_lora] float32, PEFT names → /lora/<name> */
    size_t n_lora;
    float *const *adam_m;         /* NULL, or [n_lora] buffers of lora[i]'s shape → /optim/m/<name> */
    float *const *adam_v;         /* NULL, or [n_lora] → /optim/v/<name> */
    const qa_ckpt_tensor *rng;    /* [n_rng] → /rng/<name> */
    size_t n_rng;
    const qa_ckpt_tensor *data;   /* [n_data] → /data/<name> */
    size_t n_data;
    const qa_ckpt_tensor *metrics; /* [n_metrics] → /metrics/<name> (variable length on load: use
                                      qa_ckpt_find + qa_ckpt_read, or leave them out of the state) */
    size_t n_metrics;
} qa_ckpt_state;

/* Scalars and text. On save the caller fills all but created_utc/checksum (set by save); on load
 * the strings point into the qa_ckpt handle and live until qa_ckpt_close. */
typedef struct qa_ckpt_meta {
    int64_t step;          /* optimizer steps completed; the file is step_<step>.h5 */
    int64_t optim_step;    /* AdamW step count (bias correction) */
    int64_t epoch;         /* data epoch in progress, 0-based */
    int64_t cursor;        /* examples of this epoch consumed so far, counted over ALL ranks */
    int64_t tokens_seen;   /* tokens trained on so far, all ranks */
    int64_t skipped_steps; /* steps skipped because of non-finite loss / gradients */
    uint64_t shuffle_seed; /* the data order of each epoch derives from it */
    int world_size;        /* ranks of the run that wrote it (informational: resume may differ) */
    int lora_r;
    double lora_alpha;
    const char *const *target_modules; /* [n_target_modules], e.g. {"q_proj", "v_proj"} */
    size_t n_target_modules;
    const char *base_model;     /* path of the base model directory */
    const char *base_model_id;  /* Hugging Face id or a content hash */
    const char *config_yaml;    /* the fully resolved run config */
    const char *qalign_version;
    const char *created_utc;    /* load only */
    uint32_t checksum;          /* load only */
} qa_ckpt_meta;

typedef struct qa_ckpt_save_opts {
    int keep_last;       /* keep the newest K checkpoints (≥ 1); 0 = keep all */
    int64_t keep_every;  /* also keep steps that are multiples of this forever; 0 = none */
    int deflate;         /* 0 = raw; 1..9 = shuffle + deflate level */
    int no_verify;       /* 1 = skip re-reading the file before the rename (not recommended) */
    qa_log_fn log;       /* warnings (fallbacks, deletions); NULL prints "qalign: warning: <msg>" on stderr */
    void *log_ctx;
} qa_ckpt_save_opts;

/* Save one checkpoint of step meta->step under run_dir/checkpoints (created if needed). opts NULL =
 * {keep_last 3}. Retention runs after the commit: it never removes the checkpoint just written; it
 * removes checkpoints beyond the newest keep_last (except multiples of keep_every), checkpoints of
 * steps AFTER meta->step (a timeline abandoned by a resume: the loader would otherwise prefer them)
 * and stale temporaries of earlier steps. On success the committed path is copied to out_path
 * (may be NULL). Returns 0 / -1; on -1 nothing visible changed unless the message says the
 * checkpoint itself was committed (a failure updating `latest` or during retention). */
int qa_ckpt_save(const char *run_dir, const qa_ckpt_meta *meta, const qa_ckpt_state *st,
                 const qa_ckpt_save_opts *opts, char *out_path, size_t out_cap, qa_err *e);

/* An open, fully verified checkpoint. */
typedef struct qa_ckpt qa_ckpt;

typedef struct qa_ckpt_info {
    const char *path;      /* dataset path without the leading '/', e.g. "lora/<PEFT name>" */
    qa_ckpt_dtype dtype;
    int ndim;
    int64_t shape[QA_CKPT_MAX_DIMS];
    int64_t numel;
    uint32_t crc32c;
} qa_ckpt_info;

/* Open and verify one file: format and version, required attributes, every dataset read in full
 * (fletcher32), its crc32c, the file checksum, /lora vs /optim consistency, and the step in the
 * file name when it has the step_N.h5 form. Returns 0, or -1 with the reason in e. */
int qa_ckpt_open(qa_ckpt **out, const char *path, qa_err *e);
void qa_ckpt_close(qa_ckpt *c);
const qa_ckpt_meta *qa_ckpt_meta_of(const qa_ckpt *c);
const char *qa_ckpt_path(const qa_ckpt *c);
size_t qa_ckpt_count(const qa_ckpt *c);                     /* datasets, sorted by path */
const qa_ckpt_info *qa_ckpt_at(const qa_ckpt *c, size_t i);
const qa_ckpt_info *qa_ckpt_find(const qa_ckpt *c, const char *path); /* NULL if absent */
/* Read one dataset into out after checking dtype and shape (ndim/shape may be NULL/-1 to accept the
 * stored shape; out must then hold info->numel elements). The crc32c is checked again. */
int qa_ckpt_read(qa_ckpt *c, const char *path, qa_ckpt_dtype dtype, int ndim, const int64_t *shape, void *out,
                 qa_err *e);
/* Read the whole state: every st->lora tensor must be in the file and every /lora dataset of the file
 * in st (a mismatch names the tensor: different target_modules or lora_r?); adam_m / adam_v,
 * rng, data and metrics entries with a buffer must exist with the same shape. */
int qa_ckpt_read_state(qa_ckpt *c, const qa_ckpt_state *st, qa_err *e);

/* Find and open the newest valid checkpoint of run_dir: tries step_*.h5 newest first (temporaries
 * are ignored); each one that fails verification is reported through log as "checkpoint X is corrupt
 * (reason); falling back to Y" and the previous one is tried. When st is not NULL the state is read
 * into it (a shape / name mismatch is an error, not a fallback). On 1 *out holds the open handle
 * (close it). Returns 1 = loaded, 0 = no checkpoint at all, -1 = error (all corrupt: the message
 * lists them; a newer format_version; a state mismatch). */
int qa_ckpt_load_latest(const char *run_dir, const qa_ckpt_state *st, qa_ckpt **out, qa_log_fn log,
                        void *log_ctx, qa_err *e);

/* The checkpoints of a directory (run_dir/checkpoints), sorted by step ascending. Temporaries
 * (step_N.h5.tmp.*) are listed with tmp = 1. Free with qa_ckpt_list_free. A missing directory
 * yields n = 0. */
typedef struct qa_ckpt_entry {
    int64_t step;
    int tmp;
    char *path;
} qa_ckpt_entry;
int qa_ckpt_list(const char *ckpt_dir, qa_ckpt_entry **out, size_t *n, qa_err *e);
void qa_ckpt_list_free(qa_ckpt_entry *v, size_t n);
/* run_dir/checkpoints as a heap string. */
char *qa_ckpt_dir(const char *run_dir);
/* The checksums as the file defines them: a dataset's crc32c, and one step of the file checksum
 * (start at 0, feed every dataset in path order). */
uint32_t qa_ckpt_crc32c(const void *data, size_t nbytes);
uint32_t qa_ckpt_crc_chain(uint32_t total, const char *path, uint32_t dataset_crc);
#endif
