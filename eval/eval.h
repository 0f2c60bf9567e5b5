/* eval.h — the paper's multilingual evaluation (docs/evaluation.md, paper-protocol.md §6–§7):
 * Amazon-polarity emotion (2-shot), SNLI (6-shot) and PAWS (4-shot) in 20 languages, scored by the
 * probability mass of each label's token set at the next-token position after the prompt.
 *
 * Data is read from a paper-data directory: tasks.json (languages, per task the few-shot prefix,
 * query template, label words; everything byte-exact) and the test files it names.
 *
 *   qa_eval_selection sel = {.data_dir = "assets/paper-data", .tasks = "snli", .langs = "en,zh", .limit = 50};
 *   qa_eval_suite *s;   qa_eval_suite_load(&s, &sel, &e);           // every rank, once
 *   qa_eval_run_opts o; qa_eval_run_opts_default(&o);
 *   qa_eval_results r;  qa_eval_run(s, model, lora_or_NULL, tok, dist_or_NULL, &o, &r, &e);  // collective
 *   if (rank 0) qa_eval_write(&r, "out/eval_step_100", &e);
 *   qa_eval_results_free(&r); qa_eval_suite_free(s);
 *
 * qa_eval_run is collective over the ranks of dist (NULL = one process): rank 0 plans the batches
 * and assigns each (task, language) in contiguous chunks to the ranks; every rank computes its
 * chunks (prefix KV cache, label-only logits); predictions are gathered on rank 0. The per-cell
 * counts (accuracies) end up on every rank; the per-item predictions on rank 0 only. The results do
 * not depend on the number of ranks (batch composition is fixed by the plan, ties are broken by a
 * per-item seeded coin).
 */
#ifndef QA_EVAL_H
#define QA_EVAL_H
#include "common/qa_err.h"
#include "common/qa_log.h"
#include "dist/dist.h"
#include "tokenizer/tokenizer.h"
#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

#define QA_EVAL_PROTOCOL "zhang2024-enout"   /* paper-protocol.md §6 (English output labels) */
#define QA_EVAL_PROTOCOL_VERSION 1
#define QA_EVAL_MAX_LABELS 3
#define QA_EVAL_MAX_FIELDS 4

typedef enum qa_eval_gold {
    QA_EVAL_GOLD_CORRECTED = 0,  /* gold class of item i = class of the index-parallel English record i */
    QA_EVAL_GOLD_PAPER = 1       /* the file's gold string vs target_label_words[L][pred], as the scripts */
} qa_eval_gold;
const char *qa_eval_gold_name(qa_eval_gold g);              /* "corrected" / "paper" */
int qa_eval_gold_parse(const char *s, qa_eval_gold *g, qa_err *e);

/* The few-shot prefix of the prompt (paper-protocol.md §6.2, §6.6, §8, §9). Scoring is the same in
 * both (the English label words, §6.3); the variant changes only the demonstrations' label words. */
typedef enum qa_eval_prompt_variant {
    QA_EVAL_PROMPT_ENGLISH_LABELS = 0, /* prefix_english_labels: the enout scripts (the default) */
    QA_EVAL_PROMPT_TARGET_LABELS = 1,  /* prefix_target_labels (emotion only): emotion_eval_2shot.py, the
                                          logit lens and the PCA of §8-§9 */
    QA_EVAL_PROMPT_IRRELEVANT_LABELS = 2 /* prefix_target_labels with the demos' label words replaced by the
                                          control words "ox" / "horse": emotion_eval_2shot_irrelative.py */
} qa_eval_prompt_variant;
/* "english-labels" / "target-labels" / "irrelevant-labels" */
const char *qa_eval_prompt_variant_name(qa_eval_prompt_variant p);
int qa_eval_prompt_variant_parse(const char *s, qa_eval_prompt_variant *p, qa_err *e);

/* What is scored and how a prediction is judged (docs/evaluation.md "Scoring modes"; eval/scoring.c).
 * Each mode fixes its prompt, except english-labels, which takes either the english-labels prompt (the
 * default) or the target-labels one. */
typedef enum qa_eval_scoring {
    QA_EVAL_SCORING_ENGLISH = 0,     /* "english-labels": the English label words (the enout scripts, the
                                        paper's tables) */
    QA_EVAL_SCORING_TARGET = 1,      /* "target-labels": target-language demo labels, the target-language label
                                        words scored; correct iff the predicted word starts with the gold string;
                                        labels sharing a prefix (Thai เชิงบวก / เชิงลบ) are scored one step later:
                                        the prefix's ids appended to the prompt, the remainders compared */
    QA_EVAL_SCORING_IRRELEVANT = 2   /* "irrelevant-labels": the control; demo labels "ox" / "horse" in every
                                        language, the English sets of "ox" / "horse" scored, without the Qwen
                                        first-token rule (2-label tasks) */
} qa_eval_scoring;
const char *qa_eval_scoring_name(qa_eval_scoring m);
int qa_eval_scoring_parse(const char *s, qa_eval_scoring *m, qa_err *e);
const char *qa_eval_scoring_protocol(qa_eval_scoring m);   /* results.json protocol.name */

/* ---- the suite: tasks.json + the selected test files, validated ---------------------------- */
typedef struct qa_eval_selection {
    const char *data_dir;    /* directory holding tasks.json (e.g. assets/paper-data) */
    const char *tasks;       /* "emotion,snli,paws"; NULL or "all" = every task of tasks.json */
    const char *langs;       /* "en,zh,..."; NULL or "all" = every language of tasks.json */
    int limit;               /* the first N items of each (task, language); 0 = all */
    qa_eval_gold gold;
    qa_eval_prompt_variant prompt; /* prefix variant (default english-labels); target-labels needs
                                      every selected task to have prefix_target_labels in tasks.json */
    qa_eval_scoring scoring;  /* default english-labels; target-labels and irrelevant-labels set the prompt
                                 themselves (the prompt field is then ignored) */
} qa_eval_selection;

typedef struct qa_eval_suite qa_eval_suite;

/* Reads tasks.json and every selected test file (plus the English files in corrected mode) and
 * checks them: each record has every field of the task and "answer" as strings, the English gold
 * strings are label words, parallel files have equal lengths. Errors name the task, the language,
 * the file and the record. */
int qa_eval_suite_load(qa_eval_suite **out, const qa_eval_selection *sel, qa_err *e);
void qa_eval_suite_free(qa_eval_suite *s);

int qa_eval_n_tasks(const qa_eval_suite *s);                 /* selected tasks, tasks.json order */
const char *qa_eval_task_name(const qa_eval_suite *s, int t);
int qa_eval_task_n_labels(const qa_eval_suite *s, int t);
const char *qa_eval_task_label(const qa_eval_suite *s, int t, int label);      /* "entailment" */
const char *qa_eval_task_label_word(const qa_eval_suite *s, int t, int label); /* scored English word */
int qa_eval_n_langs(const qa_eval_suite *s);                 /* selected languages, selection order */
const char *qa_eval_lang(const qa_eval_suite *s, int l);
int qa_eval_n_items(const qa_eval_suite *s, int t, int l);   /* after the limit */
qa_eval_prompt_variant qa_eval_prompt_variant_of(const qa_eval_suite *s);
qa_eval_gold qa_eval_gold_of(const qa_eval_suite *s);
/* Item i of (t, l): its gold class under the suite's gold mode (-1: the file's string is no label
 * word) and the file's gold string (not a copy). */
int qa_eval_item_gold(const qa_eval_suite *s, int t, int l, int i);
const char *qa_eval_item_gold_text(const qa_eval_suite *s, int t, int l, int i);
/* target_label_words[L][label] of tasks.json (not a copy). */
const char *qa_eval_task_target_word(const qa_eval_suite *s, int t, int l, int label);

/* The prompt of item i of (task t, language l): the prefix (prefix_english_labels[L], or
 * prefix_target_labels[L] with QA_EVAL_PROMPT_TARGET_LABELS) + query[L] with the record's
 * fields filled in. Heap string (caller frees); *len = bytes. */
char *qa_eval_prompt(const qa_eval_suite *s, int t, int l, int i, size_t *len);
/* The few-shot prefix of (t, l) (not a copy). */
const char *qa_eval_prefix(const qa_eval_suite *s, int t, int l);
/* Write every prompt as one JSON string per line, order task, language, index. */
int qa_eval_dump_prompts(const qa_eval_suite *s, const char *path, qa_err *e);

/* ---- scoring (eval/scoring.c) --------------------------------------------------------------- */
qa_eval_scoring qa_eval_scoring_of(const qa_eval_suite *s);
/* The word whose label-token set is scored for label k of (t, l): the English label word, the
 * target-language word (its remainder after a prefix shared by all labels), or the control word. */
const char *qa_eval_scored_word(const qa_eval_suite *s, int t, int l, int k);
/* The word a prediction of label k stands for (what the scripts append to the prompt): the English
 * word, the whole target-language word, or the control word. */
const char *qa_eval_pred_word(const qa_eval_suite *s, int t, int l, int k);
/* The text whose ids (add_special_tokens=True, BOS included where the tokenizer adds one) are appended
 * to the prompt ids before scoring: the labels' shared prefix in target-labels scoring, else NULL. */
const char *qa_eval_score_suffix(const qa_eval_suite *s, int t, int l);
/* Flags for qa_eval_label_tokens_opt in this mode (QA_EVAL_LT_NO_FIRST_TOKEN for the control). */
unsigned qa_eval_label_token_flags(const qa_eval_suite *s);
/* The token ids scored for item i of (t, l): the prompt (add_special_tokens=True) + the suffix's ids.
 * *ids heap (caller frees). */
int qa_eval_item_tokens(const qa_eval_suite *s, const qa_tokenizer *tok, int t, int l, int i, int32_t **ids,
                        size_t *n, qa_err *e);
/* Is predicted label `pred` of item i correct? corrected gold: pred equals the English record's class;
 * paper gold: as the mode's script compares (english-labels and irrelevant-labels: the file's gold string
 * equals target_label_words[L][pred]; target-labels: the predicted target-language word starts with it). */
int qa_eval_item_correct(const qa_eval_suite *s, int t, int l, int i, int pred);

/* ---- label-token sets (paper-protocol.md §6.4, the scripts' process_tokens) ------------------ */
/* The token ids of `word`: every character prefix p and "▁" + p that is exactly a vocab key; the
 * byte-fallback token <0xXX> of the first UTF-8 byte of word[0] when Python's bytes repr of word[0]
 * starts with \x (non-ASCII, control characters) and it is in the vocab; for byte-level (Qwen)
 * tokenizers also the first id of encoding each prefix p. Sorted, unique, *ids heap (caller frees).
 * An empty set is not an error here (*n = 0). */
int qa_eval_label_tokens(const qa_tokenizer *tok, const char *word, int32_t **ids, int *n, qa_err *e);
#define QA_EVAL_LT_NO_FIRST_TOKEN 1u  /* without the first-token rule (emotion_eval_2shot_irrelative.py lacks it) */
int qa_eval_label_tokens_opt(const qa_tokenizer *tok, const char *word, unsigned flags, int32_t **ids, int *n,
                             qa_err *e);

/* ---- running ---------------------------------------------------------------------------------- */

typedef struct qa_eval_run_opts {
    uint64_t seed;           /* tie-breaking coin (default 0) */
    int batch_rows;          /* rows per forward (default 16) */
    int batch_tokens;        /* bound on padded tokens per forward: rows x longest row (default 16384) */
    int prefix_cache;        /* 1 (default): the few-shot prefix runs once per (task, language) */
    int full_vocab;          /* 1: full-vocabulary logits at the last position, so predictions also carry
                                the softmax masses; 0 (default): label-token logits only */
    const char *model_id;    /* recorded in results.json (e.g. the model directory) */
    const char *adapter_id;  /* NULL = base model */
    const char *precision;   /* e.g. "weights bf16, compute fp32 (cpu)"; NULL = derived from the model */
    qa_log_fn log;           /* progress lines on rank 0 (NULL = quiet) */
    void *log_ctx;
} qa_eval_run_opts;
void qa_eval_run_opts_default(qa_eval_run_opts *o);

typedef struct qa_eval_pred {
    int task, lang, index;           /* suite indices; index = record index in the file */
    int pred;                        /* predicted class (label index) */
    int gold;                        /* gold class under the gold mode; -1: the file's gold string is no label
                                        word of tasks.json (paper mode: SNLI ja 中性, bn ধারণ করে) */
    const char *gold_text;           /* the file's gold string (points into the suite) */
    int correct, tie;
    int n_tokens, n_cached;          /* prompt tokens, of which taken from the prefix cache */
    double log_mass[QA_EVAL_MAX_LABELS]; /* logsumexp of the label's token logits (= log S + log Z) */
    double mass[QA_EVAL_MAX_LABELS]; /* softmax mass S(label) (full_vocab), else NAN */
} qa_eval_pred;

typedef struct qa_eval_cell {
    int task, lang;
    int n, correct, ties;
    double accuracy;                 /* correct / n */
    int prefix_tokens;               /* tokens of the few-shot prefix (with BOS) */
    double mean_cached, mean_suffix; /* per item: tokens from the cache / computed (rank 0 only) */
} qa_eval_cell;

typedef struct qa_eval_results {
    const qa_eval_suite *suite;
    qa_eval_gold gold;
    uint64_t seed;
    int world_size, prefix_cache, full_vocab;
    char model_id[1024], adapter_id[1024], precision[256], tokenizer_kind[32];
    int n_cells;
    qa_eval_cell *cells;             /* [n_tasks * n_langs], task-major */
    double *task_avg;                /* [n_tasks] mean accuracy over the selected languages */
    double avg;                      /* mean of task_avg */
    int n_items, ties;
    qa_eval_pred *preds;             /* [n_items] rank 0 only (NULL elsewhere), task, language, index order */
    double seconds, items_per_s;
    long long tokens_computed;       /* tokens through the model: prefixes + suffixes (all ranks) */
    long long tokens_padded;         /* padding positions of the batches (all ranks) */
} qa_eval_results;

/* Collective. m/lora/tok as loaded by the caller (lora NULL = base); d NULL = single process.
 * On error every rank returns -1 (a rank that did not fail says "evaluation failed on rank R"). */
int qa_eval_run(const qa_eval_suite *s, qa_model *m, const qa_lora *lora, const qa_tokenizer *tok, qa_dist *d,
                const qa_eval_run_opts *o, qa_eval_results *r, qa_err *e);
void qa_eval_results_free(qa_eval_results *r);

/* Rank 0: out_dir/results.json, results.md (Table-1 layout: tasks x languages) and predictions.jsonl.
 * The directory is created; files are written atomically. */
int qa_eval_write(const qa_eval_results *r, const char *out_dir, qa_err *e);

/* ---- activation dumps (docs/analysis.md; the file format is io/actdump.h) ----------------------- */
typedef struct qa_eval_dump_opts {
    int batch_rows;          /* rows per forward (default 4) */
    int batch_tokens;        /* bound on padded tokens per forward (default 4096); the workspace holds
                                the hidden states of every layer for them */
    int last, mean;          /* pools to write: last prompt position, mean over positions (default both) */
    const char *model_id, *adapter_id, *precision, *tokenizer_id; /* recorded in the file */
    qa_log_fn log;           /* progress lines on rank 0 (NULL = quiet) */
    void *log_ctx;
} qa_eval_dump_opts;
void qa_eval_dump_opts_default(qa_eval_dump_opts *o);
/* Collective. Every item of the suite through the plain forward over its whole prompt (no prefix
 * cache: the mean over positions needs every position's hidden state): per layer 0..L the hidden
 * state at the last position and the mean over all positions, written by rank 0 to `path`
 * (HDF5, io/actdump.h). Items are cut into fixed batches (independent of the number of ranks),
 * assigned to the ranks in contiguous chunks per round of items, and gathered round by round on
 * rank 0 (memory on rank 0: one round, <= 256 MiB of rows). On error every rank returns -1 and no
 * file is left behind. */
int qa_eval_dump_activations(const qa_eval_suite *s, qa_model *m, const qa_lora *lora, const qa_tokenizer *tok,
                             qa_dist *d, const qa_eval_dump_opts *o, const char *path, qa_err *e);

/* ---- adapters --------------------------------------------------------------------------------- */
/* Load an adapter for m from a PEFT directory (adapter_config.json), a training checkpoint file
 * (step_N.h5, io/checkpoint.h) or a run directory holding checkpoints/ (its newest valid checkpoint).
 * id (may be NULL) receives a description for results.json ("peft:DIR", "ckpt:FILE@step N crc32c X"). */
int qa_eval_load_adapter(qa_lora *l, const qa_model *m, const char *path, char *id, size_t id_cap, qa_err *e);
/* "none" (or NULL / ""): the base model, no adapter. */
int qa_eval_is_base(const char *adapter);
/* Collective: each of n adapters (qa_eval_load_adapter paths, or "none" = the base model) in turn on
 * the loaded model m — load, qa_eval_run with o (adapter_id set per adapter), rank 0 writes outs[i]
 * (qa_eval_write: the files a separate run writes), free. Stops at the first failure. */
int qa_eval_run_many(const qa_eval_suite *s, qa_model *m, const qa_tokenizer *tok, qa_dist *d,
                     const qa_eval_run_opts *o, const char *const *adapters, const char *const *outs, int n,
                     qa_err *e);
/* A Markdown before/after table (Table-1 layout: per task the two runs and their difference,
 * languages as columns, averages) of two results.json files or the directories holding them.
 * Both must use the same gold mode. *md is heap-allocated. */
int qa_eval_compare_md(const char *before, const char *after, const char *label_before, const char *label_after,
                       char **md, qa_err *e);
#endif
