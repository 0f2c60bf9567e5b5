/* train.h — the question-alignment training loop (one optimizer step at a time, over ranks).
 *
 * Global batch semantics (what makes 1, 2 or 4 ranks give the same run):
 *   one optimizer step consumes K = train.grad_accum micro-batches of train.micro_batch rows,
 *   counted over ALL ranks: global micro-batch k of the step holds the rows
 *   order[cursor + k*mb, cursor + (k+1)*mb) of the epoch order, and rank r computes
 *   k in [r*K/P, (r+1)*K/P). K must be divisible by the number of ranks P.
 *   Loss (transformers 4.38 / LLaMA-Factory): each micro-batch contributes its mean token
 *   cross-entropy divided by K. Gradients are summed in a fixed pairwise tree over k (in-rank
 *   qa_dist_tree, then the deterministic all-reduce over ranks), so the bits of the summed
 *   gradient — and hence of every loss and of the adapter — do not depend on P when K/P is a
 *   power of two. LoRA dropout masks are keyed by (seed, step, k), not by rank.
 *   train.fuse_micro_batches: a rank's K/P micro-batches run as one forward/backward whose loss
 *   keeps a group per micro-batch (each its own token mean, divided by K): the same gradient as
 *   the separate micro-batches summed, with the summation inside the GEMMs instead of the tree, so
 *   its bits depend on P (rounding), and the dropout masks are keyed by (seed, step, first k).
 *
 * Per step: forward/backward of this rank's micro-batches → one flat all-reduce of all LoRA
 * gradients → finite check (a non-finite step is skipped and counted; 5 in a row abort) →
 * global-norm clip → lr schedule → AdamW. Rank 0 (the coordinator) alone logs, appends
 * metrics.jsonl and commits checkpoints, after the step's collectives (so every checkpoint is of
 * a finished step). SIGUSR1/SIGTERM: the ranks agree at the next step boundary, commit a
 * checkpoint and return with stopped = 1 (exit 0; the next `qalign train` resumes).
 *
 * Run directory (checkpoint.dir):
 *   config.yaml            the resolved configuration
 *   metrics.jsonl          one JSON object per optimizer step (and per validation pass)
 *   checkpoints/step_N.h5  resumable state (io/checkpoint.h); resumed automatically
 *   adapter/               the final adapter, PEFT layout (adapter_config.json + safetensors)
 */
#ifndef QA_TRAIN_H
#define QA_TRAIN_H
#include "common/qa_err.h"
#include "dist/dist.h"
#include "train/train_config.h"
#include <stdint.h>

typedef struct qa_train_result {
    int64_t steps_done;        /* optimizer steps completed in total (including resumed ones) */
    int64_t resumed_from;      /* step of the checkpoint resumed from, -1 for a fresh run */
    double first_loss;         /* training loss of the first step run by this invocation */
    double last_loss;          /* training loss of the last step */
    double last_val_loss;      /* NaN if no validation ran */
    int stopped;               /* 1: stopped early by a signal (checkpoint committed) */
    int64_t skipped_steps;
} qa_train_result;

/* Rows of the logits buffer of the trainer's activation workspace for micro-batches of micro_batch rows x T
 * tokens (the loss runs over chunks of it); qalign train --dry-run and qalign info size their memory
 * figures with it. */
static inline int qa_train_logit_rows(int micro_batch, int T) {
    int64_t n = (int64_t)micro_batch * T;
    return n > 2048 ? 2048 : (int)n;
}

/* Rows one forward/backward of the trainer holds on each of world ranks: train.micro_batch, or with
 * train.fuse_micro_batches the rank's grad_accum / world micro-batches together. */
static inline int qa_train_rows_per_pass(const qa_train_config *tc, int world) {
    const int per_rank = world > 0 && tc->train.grad_accum >= world ? tc->train.grad_accum / world : 1;
    return tc->train.micro_batch * (tc->train.fuse_micro_batches ? per_rank : 1);
}

/* Train per a finished config (qa_train_config_finish). Collective over all ranks of d.
 * Returns 0 or -1 (e names the file / key / rank at fault). */
int qa_train_run(const qa_train_config *tc, qa_dist *d, qa_train_result *res, qa_err *e);
#endif
