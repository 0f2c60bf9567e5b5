/* data.h — training data: question-alignment JSON files -> token ids -> (packed) micro-batches.
 *
 * Pipeline (qa_data_build), all of it done once at startup:
 *  1. Read every file of data.files: a JSON array of records, each either
 *       text:          {"input": string, "answer": string}            (other fields ignored), or
 *       pre-tokenized: {"input_ids": [int...], "labels": [int...]}   (other fields ignored;
 *                      HF convention: labels aligned with input_ids, -100 = no loss).
 *     A pre-tokenized record must have labels = -100 on a prefix (the prompt) and labels =
 *     input_ids on the rest (the response and its end token), exactly the source/target split of
 *     a templated text record; any other pattern, ids < 0, or a length mismatch is an error. One
 *     file holds one kind of record. Errors name the file and the 0-based record index.
 *     data.max_examples keeps the first N records of each file (LLaMA-Factory max_samples). Files
 *     are concatenated in the listed order: example ids 0..n-1.
 *  2. Tokenize each text record with the template (train/template.h); pre-tokenized records are
 *     taken as they are (no template, no BOS/end token added). Every example is then cut to
 *     data.cutoff (LLaMA-Factory's proportional cut). Labels: -100 on the source, the target ids
 *     on the response + end token. With qa_data_opts.vocab set, every id must be below it (the
 *     error names the file, the record and the position).
 *  3. Split (seeded): perm = Fisher-Yates over [0, n) driven by splitmix64 stream
 *     QA_STREAM_SPLIT of the seed; the first n_val = ceil(val_fraction * n) ids of perm are the
 *     validation set, the rest the training set; each set is kept in ascending id order.
 *  4. Rows. Without packing a row is one example. With packing the examples of each split are
 *     visited in a seeded order (stream QA_STREAM_PACK) and placed greedily first-fit: into the
 *     first row whose free space fits the whole example, else a new row of pack_length tokens.
 *     Rows are built once, so every epoch has the same rows (and the same number of steps).
 *  5. Epoch order (training rows only): Fisher-Yates over [0, rows) with splitmix64 stream
 *     QA_STREAM_EPOCH + epoch. It is a pure function of (seed, epoch), so a resume only needs
 *     (seed, epoch, cursor) — nothing is stored.
 * Random numbers: splitmix64, counter-based: value k of stream s is mix64(seed' + (k+1)·γ) with
 * seed' = mix64(seed ^ mix64(s)), γ = 0x9E3779B97F4A7C15; uniform j in [0, m) by rejection
 * (r >= 2^64 mod m, j = r mod m), so results are exact integers, the same on every platform.
 *
 * A micro-batch is B rows × T columns, contiguous int32 arrays, row-major [B,T]:
 *   input_ids   token ids (pad_id on padding)
 *   labels      HF convention, aligned with input_ids (NOT shifted): the id on response and end
 *               tokens, -100 on prompt tokens and padding
 *   targets     next-token labels: targets[t] = labels[t+1] when t+1 is in the same example, else
 *               -100 — the loss at t is CE(logits[t], targets[t]); it never crosses an example
 *   attn_mask   1 on tokens, 0 on padding
 *   positions   0,1,2,... restarting at every example; 0 on padding
 *   segments    0 = padding, 1..k = the k-th example of the row
 * Attention rule for the model: query t sees key s iff segments[s] == segments[t] != 0 and s <= t.
 * Unpacked batches have T = the longest row of the micro-batch (right padding); packed batches
 * have T = pack_length.
 */
#ifndef QA_DATA_H
#define QA_DATA_H
#include "common/qa_err.h"
#include "io/hf_config.h"
#include "tokenizer/tokenizer.h"
#include "train/template.h"
#include "train/train_config.h"
#include <stdint.h>
#include <string.h>

#define QA_IGNORE_INDEX (-100)
enum { QA_STREAM_SPLIT = 1, QA_STREAM_PACK = 2, QA_STREAM_EPOCH = 16 };
enum { QA_SPLIT_TRAIN = 0, QA_SPLIT_VAL = 1 };

/* ---- random numbers --------------------------------------------------------------------------- */
typedef struct qa_data_rng { uint64_t state; } qa_data_rng;                   /* counter-based splitmix64 */
qa_data_rng qa_data_rng_stream(uint64_t seed, uint64_t stream);
uint64_t qa_data_rng_next(qa_data_rng *r);
uint64_t qa_data_rng_below(qa_data_rng *r, uint64_t m);                       /* uniform in [0, m), m >= 1 */
/* perm[0..n) = a uniformly random permutation of 0..n-1 (Fisher-Yates, i from n-1 down to 1). */
void qa_data_permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t stream);

/* ---- records ---------------------------------------------------------------------------------- */
typedef struct qa_record {
    char *input, *answer;     /* text record; NULL for a pre-tokenized one */
    int32_t *ids;             /* pre-tokenized record: input_ids [n_ids]; NULL for a text one */
    int32_t n_ids;            /* tokens */
    int32_t n_src;            /* leading tokens whose label is -100 (the prompt) */
} qa_record;
static inline int qa_record_is_tokens(const qa_record *r) { return r->ids != NULL; }
/* Read one data file (max_records 0 = all; every record is still validated). Errors: unreadable or
 * empty file, invalid JSON (line/column), not an array, no records, a record that is not an object,
 * lacks a string "input"/"answer" (text) or has invalid "input_ids"/"labels" (pre-tokenized: not
 * arrays of integers, different lengths, empty, a negative id, a label pattern other than
 * -100... then = input_ids), a file mixing both kinds (names the 0-based index). */
int qa_data_read_file(const char *path, int64_t max_records, qa_record **recs, int64_t *n, qa_err *e);
void qa_records_free(qa_record *recs, int64_t n);

/* ---- the dataset ------------------------------------------------------------------------------ */
typedef struct qa_example {
    int64_t off;         /* first token in qa_dataset.tokens */
    int32_t n_src;       /* prompt tokens (label -100), after the cut */
    int32_t n_tgt;       /* response + end tokens (labelled), after the cut */
    int32_t file;        /* index into files */
    int32_t truncated;   /* 1 if the cut removed tokens */
    int64_t record;      /* 0-based record index in its file */
} qa_example;

typedef struct qa_rows {
    int64_t n_rows;
    int64_t *start;      /* [n_rows + 1]: the row's examples are ex_ids[start[r] .. start[r+1]) */
    int64_t *ex_ids;     /* example ids, in placement order within each row */
    int64_t *len;        /* [n_rows]: tokens used in the row */
    int64_t n_examples, n_tokens, n_label_tokens;
} qa_rows;

typedef struct qa_data_opts {
    const char *const *files;
    int n_files;
    int64_t max_examples;    /* per file; 0 = all */
    double val_fraction;     /* [0, 1) */
    uint64_t seed;
    int cutoff;
    int packing;
    int pack_length;         /* >= cutoff when packing */
    int threads;             /* tokenizer threads; 0 = all cores */
    int vocab;               /* > 0: every token id must be < vocab (the model's vocab_size) */
    int32_t pad_id;          /* padding id when there is no template (pre-tokenized data); with a
                                template its end id pads */
    int padding_free;        /* micro-batches as one row: their rows end to end (qa_data_fill_batch) */
} qa_data_opts;

typedef struct qa_dataset {
    int n_files;
    char **files;
    int64_t *file_records;   /* [n_files] records kept per file */
    int64_t n;               /* examples */
    qa_example *ex;          /* [n] */
    int32_t *tokens;         /* all examples' ids, source then target, back to back */
    int64_t n_tokens;
    int64_t n_truncated;
    int32_t max_len;         /* longest example after the cut */
    int32_t pad_id;          /* the template's end id (qa_data_opts.pad_id without a template) */
    int n_pretokenized;      /* examples that came pre-tokenized */
    int packing, row_len;    /* row_len: pack_length when packing, else cutoff */
    int padding_free;        /* qa_data_fill_batch lays the rows end to end in one row */
    uint64_t seed;
    int64_t n_split[2];      /* examples in the training / validation split */
    int64_t *split[2];       /* [n_split[s]] example ids, ascending */
    qa_rows rows[2];         /* rows of each split */
} qa_dataset;

/* Read, tokenize, cut, split and pack. t and tok may be NULL when every file is pre-tokenized
 * (data.template: none); a text record is then an error naming it. */
int qa_data_build(qa_dataset *d, const qa_data_opts *o, const qa_template *t, const qa_tokenizer *tok, qa_err *e);
/* Build from records already in memory (tests; files[] names the sources for stats). */
int qa_data_build_records(qa_dataset *d, const qa_data_opts *o, const qa_template *t, const qa_tokenizer *tok,
                          qa_record *const *recs, const int64_t *n_recs, qa_err *e);
void qa_data_free(qa_dataset *d);
/* Options from a finished qa_train_config (files points into tc). */
void qa_data_opts_from_config(qa_data_opts *o, const qa_train_config *tc);
/* The model's part of the options: vocab (every id must be below it) and the padding id without a
 * template (eos_token_id, else 0; padding never carries loss or attention). */
void qa_data_opts_for_model(qa_data_opts *o, const qa_hf_config *c);
/* Print example / token / row counts per split (and per file) to f. */
void qa_data_print_stats(const qa_dataset *d, FILE *f);

/* Ids and length of example i (source first: ids[0..n_src) then ids[n_src..n_src+n_tgt)). */
static inline const int32_t *qa_example_ids(const qa_dataset *d, int64_t i) { return d->tokens + d->ex[i].off; }

/* data.template: none — pre-tokenized data only, no tokenizer or template is loaded. */
#define QA_TEMPLATE_NONE "none"
static inline int qa_template_is_none(const char *name) { return name && !strcmp(name, QA_TEMPLATE_NONE); }

/* Everything the data side of a run needs, from a finished config: model.path/config.json (for
 * "$bos"/"$eos", the vocab check and the memory estimate), the tokenizer, the template
 * (qa_template_find with the config file's directory) and the built dataset. With data.template
 * none, tok is NULL and tpl is empty (has_template 0). */
typedef struct qa_train_inputs {
    qa_hf_config hf;
    qa_tokenizer *tok;
    char *template_path;
    qa_template tpl;
    int has_template;
    qa_dataset data;
    double seconds;          /* wall time of loading + tokenizing */
} qa_train_inputs;
int qa_train_inputs_load(qa_train_inputs *in, const qa_train_config *tc, qa_err *e);
void qa_train_inputs_free(qa_train_inputs *in);

/* ---- micro-batches ---------------------------------------------------------------------------- */
typedef struct qa_microbatch {
    int B, T;                /* this batch: B rows of T columns */
    int cap_B, cap_T;        /* allocated capacity */
    int32_t *input_ids;      /* [B, T] */
    int32_t *labels;         /* [B, T] */
    int32_t *targets;        /* [B, T] */
    int32_t *loss_labels;    /* [B, T]: loss_labels[t+1] = targets[t], loss_labels[0] = -100: what the model's
                                HF-shifted loss reads (qa_microbatch_view), so it never crosses examples */
    int32_t *attn_mask;      /* [B, T] */
    int32_t *positions;      /* [B, T] */
    int32_t *segments;       /* [B, T] */
    int n_examples;          /* examples in the batch */
    int64_t n_tokens;        /* non-padding tokens */
    int64_t n_targets;       /* entries of targets != -100 (tokens that carry loss) */
} qa_microbatch;
/* Buffers for up to cap_B rows of cap_T tokens (qa_data_batch_shape gives them for a dataset). */
void qa_microbatch_alloc(qa_microbatch *b, int cap_B, int cap_T);
/* The largest micro-batch of micro_batch rows of d: *B rows of *T tokens (padded rows: micro_batch rows of
 * row_len with packing, of the longest example without; padding-free: one row of micro_batch times that). */
void qa_data_batch_shape(const qa_dataset *d, int micro_batch, int *B, int *T);
/* The same from the settings alone: rows of row_len tokens (packing: the pack length; else the longest
 * example), padding_free as data.padding_free. The memory estimate sizes with it. */
void qa_data_batch_shape_of(int padding_free, int micro_batch, int row_len, int *B, int *T);
void qa_microbatch_free(qa_microbatch *b);
/* The model's view of a micro-batch (model/model.h qa_batch: pointers into b, valid while b lives). */
struct qa_batch;
void qa_microbatch_view(const qa_microbatch *b, struct qa_batch *view);
/* Fill b with rows row_ids[0..count) of split s (count <= cap_B; count 0 gives B = 0). Padding-free
 * (d->padding_free): the rows end to end in one row (B = 1, T = their tokens), segments numbered on
 * across rows, positions restarting per example — the model computes exactly what it computes for the
 * padded rows, without the padding. */
void qa_data_fill_batch(const qa_dataset *d, int s, const int64_t *row_ids, int count, qa_microbatch *b);

/* The order of training rows in an epoch (order[0..rows)); the validation split is never shuffled. */
void qa_data_epoch_order(const qa_dataset *d, int epoch, int64_t *order);

/* ---- step counts and the learning-rate schedule ----------------------------------------------- */
typedef struct qa_train_plan {
    int64_t rows_per_epoch;      /* training rows */
    int64_t rounds_per_epoch;    /* micro-batch rounds: ceil(rows / (micro_batch * world)) */
    int64_t steps_per_epoch;     /* optimizer steps: ceil(rounds / grad_accum); the last one may be partial */
    int64_t total_steps;         /* max_steps, or epochs * steps_per_epoch */
    int64_t warmup_steps;        /* ceil(warmup_ratio * total_steps) (HF get_warmup_steps) */
    int epochs;                  /* epochs started: ceil(total_steps / steps_per_epoch) */
    int64_t rows_per_step;       /* micro_batch * grad_accum * world */
} qa_train_plan;
/* grad_accum micro-batches of micro_batch rows per optimizer step on each of world ranks. qalign
 * train counts train.grad_accum over all ranks (the global batch does not depend on the rank
 * count), so it passes world = 1. */
void qa_train_plan_compute(qa_train_plan *p, int64_t rows, int micro_batch, int grad_accum, int world, int epochs,
                           int64_t max_steps, double warmup_ratio);
/* HF transformers 4.38 schedules: t = completed optimizer steps (the first update uses t = 0).
 * warmup: peak * t / max(1, W); then cosine: peak * max(0, 0.5 * (1 + cos(pi * (t-W) / max(1, S-W)))),
 * linear: peak * max(0, (S-t) / max(1, S-W)), constant: peak. */
double qa_lr_at(const char *schedule, double peak, int64_t t, int64_t warmup, int64_t total);
#endif
