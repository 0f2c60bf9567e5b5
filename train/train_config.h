/* train_config.h — the configuration of `qalign train`: a schema table (train_config.c) bound to
 * the struct below through io/yaml_config.h. Defaults are the paper's recipe (paper-protocol.md §5):
 * LoRA q_proj,v_proj r=8 alpha=16 dropout 0; AdamW lr 5e-5, weight decay 0, 3 epochs, micro-batch 4
 * x grad-accum 4, 10% warmup then cosine to 0, clip 1.0, seed 42, 5% validation, eval every 50
 * steps, cutoff 2048. `qalign train --help-config` prints every key with its help and default.
 *
 * Sources, later wins: schema defaults < --config files in order < --set overrides in order;
 * qa_train_config_finish then derives the empty-by-default keys and checks cross-key rules.
 */
#ifndef QA_TRAIN_CONFIG_H
#define QA_TRAIN_CONFIG_H
#include "common/qa_err.h"
#include "io/yaml_config.h"

typedef struct qa_train_config {
    struct {
        char *path;            /* HF checkpoint dir (config.json, *.safetensors, tokenizer.json) */
        char *device;          /* "auto" | "cpu" | "cuda" | "cuda-fp32" | "emu" (auto: the trainer opens cuda when a GPU is usable, else cpu) */
        char *quant;           /* "none" | "nf4" | "nf4-dq": base projections quantized at load (QLoRA) */
    } model;
    struct {
        char *path;            /* tokenizer.json; "" -> model.path/tokenizer.json after finish
                                  (stays "" with data.template none: no tokenizer) */
    } tokenizer;
    struct {
        qa_strlist files;      /* JSON arrays of {"input","answer"} or pre-tokenized
                                  {"input_ids","labels"} (train/data.h), mixed in the listed order */
        double val_fraction;   /* held-out share, ceil(frac * n) records */
        int max_examples;      /* per file: keep the first N records (0 = all) */
        char *template_name;   /* "qwen" | "mistral" | "vanilla" | a path to a template .yaml |
                                  "none" (pre-tokenized data only) */
        int cutoff;            /* max tokens per example (prompt + response) */
        int packing;           /* several examples per row */
        int pack_length;       /* row length when packing; 0 -> cutoff after finish */
        int padding_free;      /* a micro-batch's rows laid end to end in one row (no padding computed) */
        int shuffle_seed;      /* split + epoch shuffles; -1 -> train.seed after finish */
    } data;
    struct {
        qa_strlist targets;    /* projection names: q_proj ... down_proj */
        int r;
        double alpha;
        double dropout;
        char *init_adapter;    /* PEFT dir to start from; "" = fresh init */
    } lora;
    struct {
        int epochs;
        int max_steps;         /* optimizer steps; 0 = derive from epochs */
        int micro_batch;       /* rows per forward/backward */
        int grad_accum;        /* micro-batches per optimizer step over all ranks (global batch =
                                  micro_batch * grad_accum rows, whatever the rank count) */
        int fuse_micro_batches; /* a rank's micro-batches of a step as one forward/backward, each still
                                   normalized by its own token count (qa_train_opts loss groups) */
        double lr;
        double weight_decay;
        double warmup_ratio;   /* warmup steps = ceil(ratio * total steps) */
        char *schedule;        /* "cosine" | "linear" | "constant" (after warmup) */
        double max_grad_norm;  /* global-norm clip; 0 = off */
        int seed;              /* LoRA init and everything random besides data order */
        int eval_every;        /* optimizer steps between validation passes; 0 = never */
        int log_every;         /* optimizer steps between log lines */
        int threads;           /* CPU threads per rank; 0 = the node's cores / ranks on the node */
    } train;
    struct {
        char *dir;             /* run directory: checkpoints, logs, final adapter */
        int every;             /* optimizer steps between resumable checkpoints; 0 = only at the end */
        int keep_last;         /* checkpoints kept (older ones deleted); 0 = keep all */
        int keep_best;         /* keep the checkpoint of the lowest validation loss in RUN_DIR/best and export
                                  RUN_DIR/adapter-best at the end (train/best.h) */
    } checkpoint;
    struct {
        int every;             /* optimizer steps between multilingual evaluations; 0 = never */
        int at_end;            /* evaluate the final adapter */
        qa_strlist tasks;      /* emotion, snli, paws */
        qa_strlist langs;      /* "all" or language codes */
        int limit;             /* items per (task, language); 0 = all */
        char *gold;            /* "corrected" | "paper" */
        char *data_dir;        /* tasks.json + test files */
    } eval;
    struct {
        int tensorboard;       /* also TensorBoard event files in RUN_DIR/tensorboard (io/tfevents.h) */
    } log;

    qa_cfg cfg;                /* the bound schema: origins, dumps */
    char *config_path;         /* the last --config file loaded ("" if none); templates are looked up
                                  next to it (FILE_DIR/templates/NAME.yaml) */
} qa_train_config;

/* The schema table (for --help-config and tests). */
const qa_cfg_key *qa_train_config_keys(int *n);

void qa_train_config_init(qa_train_config *tc);            /* defaults */
int qa_train_config_load(qa_train_config *tc, const char *path, qa_err *e);
int qa_train_config_set(qa_train_config *tc, const char *assignment, qa_err *e); /* "key=value" */
/* Derive tokenizer.path, data.pack_length, data.shuffle_seed; check cross-key rules (data.files
 * and model.path set, pack_length >= cutoff, epochs or max_steps > 0, ...). */
int qa_train_config_finish(qa_train_config *tc, qa_err *e);
/* Resolved configuration as YAML (with_origin: "# FILE (line N)" / "# --set" comments) or JSON. */
char *qa_train_config_dump(const qa_train_config *tc, int format, int with_origin);
void qa_train_config_free(qa_train_config *tc);
#endif
