/* actdump.h — activation dumps: per item and layer, the hidden state at the last prompt position and
 * the mean over the prompt's positions, in one self-describing HDF5 file (docs/analysis.md).
 *
 * Layout (format "qalign-activations", version 1; h5py reads it without a manual):
 *   /                      attrs: format, version, model, adapter ("" = base), model_type, precision,
 *                                 tokenizer, prompt_variant, gold_mode, tasks, languages, n_layers (L),
 *                                 hidden (D), vocab, n_items (N), dtype ("float32"), layers (convention
 *                                 text), pools ("last,mean"), created_by
 *   /items/task            [N] vlen UTF-8   task name ("emotion")
 *   /items/lang            [N] vlen UTF-8   language code ("ru")
 *   /items/index           [N] int64        record index in the task's test file
 *   /items/gold            [N] int64        gold class (label index of /labels/<task>), -1 = none
 *   /items/gold_text       [N] vlen UTF-8   the test file's gold string
 *   /items/n_tokens        [N] int64        prompt tokens (BOS included)
 *   /labels/<task>         attrs: labels (class names), english (english_label_words, the scored
 *                                 words), target_<lang> (target_label_words of each dumped language)
 *   /last/layer_00 .. layer_L   [N, D] float32   hidden state at the last prompt position
 *   /mean/layer_00 .. layer_L   [N, D] float32   mean over all prompt positions (BOS and demos included)
 * Layers follow Hugging Face's hidden_states: layer_00 = the embedding output, layer_i = the output of
 * decoder layer i (the residual stream), layer_L = the last layer's output AFTER the final norm.
 * Layer names have two digits (three when L >= 100). Rows are in task, language, index order.
 * Layer datasets are chunked by whole rows (~1 MiB), shuffle + deflate(4) + fletcher32, and carry
 * attrs layer (int) and pool ("last"/"mean").
 *
 * Integrity: every dataset carries attr crc32c (CRC32C of its little-endian values in C order; for a
 * string dataset of each string's bytes followed by a NUL), and PATH.crc32c holds the CRC32C and size
 * of the whole file (the checkpoints' sidecar, io/h5util.h). Reading checks the sidecar before HDF5
 * parses anything (a damaged HDF5 heap can crash the library), refuses external storage, virtual
 * datasets and soft / external links, checks each dataset's crc32c when it is read, and refuses
 * non-finite activations. A dump copied without its sidecar is still checked dataset by dataset.
 *
 * Writing (one process; the evaluation gathers rows on rank 0): the file is built as
 * PATH.tmp.<random> (created exclusively: a planted file or link is never followed) and, with its
 * sidecar, committed by qa_actdump_finish (fsync, rename, fsync of the directory); qa_actdump_abort
 * removes it. An existing PATH that is not a regular file is refused.
 */
#ifndef QA_ACTDUMP_H
#define QA_ACTDUMP_H
#include "common/qa_err.h"

#include <stdint.h>

#define QA_ACTDUMP_FORMAT "qalign-activations"
#define QA_ACTDUMP_VERSION 1
/* bounds of what a dump may declare (beyond any real model; they keep every size product in range) */
#define QA_ACTDUMP_MAX_LAYERS 4096
#define QA_ACTDUMP_MAX_HIDDEN (1 << 20)
#define QA_ACTDUMP_MAX_ITEMS ((int64_t)1 << 31)

typedef struct qa_actdump_info {
    const char *model, *adapter, *model_type, *precision, *tokenizer, *prompt_variant, *gold_mode;
    const char *tasks, *langs;               /* comma-separated, selection order */
    int n_layers, hidden, vocab;             /* L, D, V of the model */
    int64_t n_items;                         /* N */
    int has_last, has_mean;                  /* pools written (at least one) */
} qa_actdump_info;

typedef struct qa_actdump_item {
    const char *task, *lang, *gold_text;
    int64_t index, gold, n_tokens;
} qa_actdump_item;

/* One task's label words (for the logit lens). */
typedef struct qa_actdump_labels {
    const char *task;
    int n_labels;
    const char *const *labels;               /* [n_labels] class names */
    const char *const *english;              /* [n_labels] scored English words */
    int n_langs;
    const char *const *langs;                /* [n_langs] */
    const char *const *target;               /* [n_langs * n_labels] target_label_words, language-major */
} qa_actdump_labels;

/* ---- writing ------------------------------------------------------------------------------ */
typedef struct qa_actdump_writer qa_actdump_writer;
/* Create PATH.partial with the attributes, /items (items [n_items]) and /labels (labels [n_tasks]),
 * and every layer dataset of the chosen pools (filled by write_rows). */
int qa_actdump_create(qa_actdump_writer **out, const char *path, const qa_actdump_info *info,
                      const qa_actdump_item *items, const qa_actdump_labels *labels, int n_tasks, qa_err *e);
/* Rows [row0, row0 + n) of every layer: last and mean are item-major [n, L+1, D] host blocks (NULL
 * for a pool not written). */
int qa_actdump_write_rows(qa_actdump_writer *w, int64_t row0, int64_t n, const float *last, const float *mean,
                          qa_err *e);
/* Check that every row was written, close, fsync and rename PATH.partial to PATH. Frees w. */
int qa_actdump_finish(qa_actdump_writer *w, qa_err *e);
/* Close and remove PATH.partial. Frees w. NULL ok. */
void qa_actdump_abort(qa_actdump_writer *w);

/* ---- reading ------------------------------------------------------------------------------ */
typedef struct qa_actdump_labelset {
    char *task;
    int n_labels;
    char **labels, **english;                /* [n_labels] */
    int n_langs;
    char **langs;                            /* [n_langs] */
    char **target;                           /* [n_langs * n_labels] */
} qa_actdump_labelset;

typedef struct qa_actdump {
    char *path;
    int64_t file;                            /* hid_t */
    int version;
    char *model, *adapter, *model_type, *precision, *tokenizer, *prompt_variant, *gold_mode;
    int n_layers, hidden, vocab;
    int64_t n;                               /* items */
    char **task, **lang, **gold_text;        /* [n] */
    int64_t *index, *gold, *n_tokens;        /* [n] */
    int has_last, has_mean;
    int n_labelsets;
    qa_actdump_labelset *labelsets;
} qa_actdump;

/* Open and validate: the sidecar, the format attribute, L, D, N (within the bounds above), every
 * /items dataset with N entries and its crc32c, non-empty task and language names, the /labels
 * groups. Layer datasets are checked when read. Errors name the file and the object. */
int qa_actdump_open(qa_actdump *d, const char *path, qa_err *e);
void qa_actdump_close(qa_actdump *d);
/* The whole dataset /<pool>/layer_XX ("last" or "mean") into out [N, D]; an error names the file
 * and the dataset when it is missing, its shape is not [N, D], its crc32c differs or a value is not
 * finite. */
int qa_actdump_read_layer(const qa_actdump *d, const char *pool, int layer, float *out, qa_err *e);
/* Dataset path of (pool, layer) for messages: "/mean/layer_07". */
void qa_actdump_layer_name(const qa_actdump *d, const char *pool, int layer, char *buf, size_t cap);
/* The label words of (task, lang), or NULL when the dump has none. */
const qa_actdump_labelset *qa_actdump_labels_of(const qa_actdump *d, const char *task);
/* target word of (task's labelset, lang, label), or NULL */
const char *qa_actdump_target_word(const qa_actdump_labelset *ls, const char *lang, int label);
#endif
