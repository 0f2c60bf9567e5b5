/* trainer_internal.h — the trainer's state and the calls between its three files. Not for other layers.
 *   trainer.c    the loop: setup, the steps with their logging, validation, evaluation and checkpoint
 *                cadence, the end (final checkpoint, adapter, evaluation): qa_train_run
 *   step.c       one optimizer step: micro-batches → gradient tree → all-reduce → qa_lora_step;
 *                validation; the gradient reduction on the backend's memory
 *   run_state.c  what a run keeps and resumes from: checkpoints (save, resume), the loss history,
 *                metrics.jsonl and the TensorBoard events
 * The contract (global batch, determinism, run directory) is in train/train.h. */
#ifndef QA_TRAINER_INTERNAL_H
#define QA_TRAINER_INTERNAL_H
#include "train/train.h"

#include "common/qa_sbuf.h"
#include "eval/eval.h"
#include "io/checkpoint.h"
#include "io/tfevents.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/best.h"
#include "train/data.h"
#include "train/template.h"

#include <stdint.h>
#include <stdio.h>

typedef struct qa_trainer {
    const qa_train_config *tc;
    qa_dist *d;
    int rank, world, coord;
    qa_tokenizer *tok;
    double comm_s;         /* seconds of the last step spent in its collectives (rank-local) */
    qa_eval_suite *suite;  /* the multilingual evaluation (eval.every / eval.at_end), NULL when off */
    qa_model m;
    int model_loaded;
    qa_template tpl;
    int tpl_loaded;
    qa_dataset ds;
    int ds_built;
    qa_lora l;
    int lora_ready;
    const qa_ops *ops;     /* the compute backend (model.device) */
    char device_desc[160];
    qa_comm *comm;         /* the LoRA gradient all-reduce: host (cpu), nccl or staged (device buffers) */
    int comm_owned;
    float *hp, *hm, *hv;   /* host views of params / AdamW m / v: the blocks themselves on a host backend, a
                              mirror on a device (checkpoints and resume go through it) */
    float *mirror;
    qa_acts acts;
    int acts_ready;
    qa_microbatch mb;
    qa_dist_tree tree;
    qa_train_plan plan;
    int K;                 /* micro-batches per optimizer step, all ranks */
    int k_lo, k_hi;        /* this rank's micro-batches [k_lo, k_hi) */
    int pass_rows;         /* rows of one forward/backward (qa_train_rows_per_pass); validation batches too */
    int64_t *order;        /* epoch order of training rows */
    int order_epoch;
    /* position */
    int64_t step;          /* optimizer steps completed */
    int epoch;
    int64_t cursor;        /* training rows of this epoch consumed (all ranks) */
    int64_t tokens_seen;
    int64_t skipped;
    uint64_t shuffle_seed;
    /* history of per-step losses (for checkpoints and resume checks) */
    double *loss_hist;
    int64_t n_hist, cap_hist;
    /* logging */
    FILE *metrics;
    qa_tb *tb;             /* TensorBoard events (log.tensorboard), NULL when off */
    double t_start;
    int64_t steps_this_run;
    int64_t tokens_this_run;
    char *config_yaml;
    char last_ckpt[4096];  /* the newest committed checkpoint (rank 0), "" if none */
    char model_id[64];     /* content id of model.path (checkpoints record it) */
    int64_t ckpt_step;     /* step of the newest committed or resumed checkpoint (every rank), -1 = none */
    qa_best best;          /* the checkpoint of the lowest validation loss (train/best.h) */
    /* checkpoint tensor tables */
    qa_ckpt_tensor *ck_lora;
    float **ck_m, **ck_v;
    char **ck_names;
    size_t n_ck;
} qa_trainer;

/* ---- trainer.c */
/* "qalign: <line>" on stdout, rank 0 only */
void qa_train__log(const qa_trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- run_state.c */
void qa_train__ckpt_log(void *ctx, const char *msg);  /* checkpoint warnings: "qalign: warning: <msg>" */
/* the host views of params / m / v (the blocks on a host backend, a mirror on a device) and the
 * checkpoint's tensor tables over them */
int qa_train__ckpt_tables(qa_trainer *t);
void qa_train__hist_push(qa_trainer *t, double loss);
/* Commit a checkpoint of the current step (rank 0 writes, every rank learns the outcome). */
int qa_train__checkpoint(qa_trainer *t, qa_err *e);
/* Resume from the newest valid checkpoint: rank 0 reads and verifies, everyone receives.
 * *resumed_from = its step, -1 when there is none. */
int qa_train__resume(qa_trainer *t, int64_t *resumed_from, qa_err *e);
/* metrics.jsonl (the lines of steps <= the resumed step kept) and the TensorBoard events (rank 0). */
int qa_train__metrics_open(qa_trainer *t, qa_err *e);
/* One metrics.jsonl line (with its newline) appended and flushed, its numbers also to TensorBoard; frees line. */
int qa_train__metrics_line(qa_trainer *t, qa_sbuf *line, qa_err *e);

/* ---- step.c */
/* The micro-batch tree and the LoRA gradient communicator (host, nccl or staged). */
int qa_train__reduction_setup(qa_trainer *t, qa_err *e);
/* One optimizer step of this rank's micro-batches; the same decisions on every rank. */
int qa_train__step(qa_trainer *t, double *loss_out, int64_t *tok_out, double *gnorm_out, int *skipped, qa_err *e);
/* Mean token cross-entropy over the validation split (all ranks), no dropout. */
int qa_train__validate(qa_trainer *t, double *val_loss, qa_err *e);
#endif
