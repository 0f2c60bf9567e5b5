/* best.h — the adapter of the lowest validation loss (docs/training.md "The best checkpoint").
 *
 * The paper's recipe validates every 50 steps with load_best_model_at_end. qalign keeps the
 * checkpoint of every new lowest validation loss in RUN_DIR/best/checkpoints/ (a hard link to, or
 * a copy of, the committed checkpoint; the trainer commits one when that step has none yet), whatever
 * checkpoint.keep_last later removes from RUN_DIR/checkpoints/, and writes RUN_DIR/best/best.json
 * {"step", "val_loss", "checkpoint", "validation_pass"}. At the end of the run RUN_DIR/adapter-best/ is
 * exported from it beside RUN_DIR/adapter/ (the last step). `qalign export-peft RUN_DIR OUT --best`
 * finds the same step from metrics.jsonl.
 *
 * In the trainer (every rank calls the collective functions in the same order):
 *   qa_best_init(&b, d, run_dir, enabled, resumed_step, &e);        // after metrics.jsonl is opened
 *   ... each validation:  qa_best_observe(&b, d, step, val_loss);
 *   ... end of the step:  if (qa_best_pending(&b)) {
 *                             if (!qa_best_have_checkpoint(&b, d, step, last_ckpt)) save_checkpoint();
 *                             qa_best_pin(&b, d, last_ckpt, &e);
 *                         }
 *   ... at the end (rank 0): qa_best_export(&b, model, last_step, &e);
 */
#ifndef QA_TRAIN_BEST_H
#define QA_TRAIN_BEST_H
#include "common/qa_err.h"
#include "dist/dist.h"
#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

/* ---- metrics.jsonl ------------------------------------------------------------------------------- */
typedef struct qa_metrics {
    int64_t n_train;         /* training lines: one per optimizer step */
    int64_t *step;           /* [n_train] */
    double *loss, *lr;       /* [n_train] (NAN where the file holds a non-finite value) */
    int64_t n_val;           /* validation lines */
    int64_t *val_step;       /* [n_val] */
    double *val_loss;        /* [n_val] */
} qa_metrics;

/* Read the training and validation lines of a metrics.jsonl (other lines, e.g. the multilingual
 * evaluation's, are skipped), keeping steps <= max_step (max_step < 0: all). A line that names a loss
 * without a readable step or value is an error naming the file and the line. */
int qa_metrics_read(const char *path, int64_t max_step, qa_metrics *m, qa_err *e);
void qa_metrics_free(qa_metrics *m);

typedef struct qa_best_val {
    int64_t step;            /* -1: no finite validation loss */
    double val_loss;
    int64_t n_val;           /* validation lines considered */
} qa_best_val;
/* The lowest finite validation loss; on ties the earliest step (transformers keeps the first best). */
qa_best_val qa_metrics_best(const qa_metrics *m);

/* ---- the trainer's side ------------------------------------------------------------------------- */
typedef struct qa_best {
    int enabled;             /* checkpoint.keep_best and a validation split */
    int pending;             /* the last observed loss is a new lowest one: pin its checkpoint */
    qa_best_val best;        /* the lowest so far (same on every rank) */
    int64_t pinned_step;     /* step of the checkpoint in RUN_DIR/best (rank 0; -1 none) */
    char pinned[4096];       /* its path (rank 0) */
    char run_dir[4096];
} qa_best;

/* Collective. Rank 0 reads the validation lines of RUN_DIR/metrics.jsonl up to `step` (a resumed run)
 * and RUN_DIR/best/, dropping a pinned checkpoint newer than `step` (an abandoned timeline); every rank
 * receives the lowest loss so far. Returns -1 on every rank when rank 0 fails. */
int qa_best_init(qa_best *b, qa_dist *d, const char *run_dir, int enabled, int64_t step, qa_err *e);
/* Collective. A validation loss of `step`: rank 0 decides whether it is lower than every earlier one
 * (non-finite losses never are), every rank learns it (qa_best_pending). */
void qa_best_observe(qa_best *b, qa_dist *d, int64_t step, double val_loss);
int qa_best_pending(const qa_best *b);
/* Collective. Whether last_ckpt (rank 0's newest committed checkpoint) is the one of `step`. */
int qa_best_have_checkpoint(const qa_best *b, qa_dist *d, int64_t step, const char *last_ckpt);
/* Collective. Rank 0 keeps last_ckpt (the pending step's checkpoint) in RUN_DIR/best/checkpoints/,
 * writes best.json and removes the previous one; clears pending. Returns -1 on every rank on failure. */
int qa_best_pin(qa_best *b, qa_dist *d, const char *last_ckpt, qa_err *e);
/* Rank 0, at the end: RUN_DIR/adapter-best (PEFT) from the pinned checkpoint, and a line saying its step
 * and loss beside the last step's. 0 when there is nothing to export. */
int qa_best_export(const qa_best *b, const qa_model *m, int64_t last_step, qa_err *e);

/* ---- a finished run (qalign export-peft --best) --------------------------------------------------- */
/* The checkpoint of the lowest validation loss of RUN_DIR/metrics.jsonl: RUN_DIR/best/ when it holds
 * that step, else RUN_DIR/checkpoints/step_N.h5 if retention kept it. Errors say which step is missing
 * and why. */
int qa_best_find(const char *run_dir, char *ckpt, size_t cap, qa_best_val *bv, qa_err *e);
#endif
