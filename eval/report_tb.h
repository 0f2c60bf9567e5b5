/* report_tb.h — an evaluation in TensorBoard event files (io/tfevents.h): per (task, language) the
 * accuracy as scalar accuracy/<task>/<lang>, per task accuracy/<task>/avg, accuracy/avg, and the
 * results.md table as text "results" — written beside results.json by `qalign eval --tensorboard`
 * and by training with log.tensorboard: true (at the evaluation's step). */
#ifndef QA_EVAL_REPORT_TB_H
#define QA_EVAL_REPORT_TB_H
#include "eval/eval.h"
#include "io/tfevents.h"

/* results_dir: where qa_eval_write put results.md (its text becomes the text summary). */
int qa_eval_write_tensorboard(const qa_eval_results *r, const char *results_dir, qa_tb *tb, int64_t step, qa_err *e);
#endif
