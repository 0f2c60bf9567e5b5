/* report_tb.c — an evaluation's accuracies and table as TensorBoard scalars and text (report_tb.h). */
#include "eval/report_tb.h"

#include "common/qa_file.h"

#include <stdio.h>
#include <stdlib.h>

int qa_eval_write_tensorboard(const qa_eval_results *r, const char *results_dir, qa_tb *tb, int64_t step, qa_err *e) {
    const qa_eval_suite *s = r->suite;
    if (!s || !r->cells) return QA_ERR(e, "eval results are empty (run qa_eval_run first)");
    char tag[256];
    const int nt = qa_eval_n_tasks(s), nl = qa_eval_n_langs(s);
    for (int t = 0; t < nt; t++) {
        for (int l = 0; l < nl; l++) {
            snprintf(tag, sizeof tag, "accuracy/%s/%s", qa_eval_task_name(s, t), qa_eval_lang(s, l));
            QA_TRY(qa_tb_scalar(tb, tag, step, r->cells[(size_t)t * nl + l].accuracy, e));
        }
        snprintf(tag, sizeof tag, "accuracy/%s/avg", qa_eval_task_name(s, t));
        QA_TRY(qa_tb_scalar(tb, tag, step, r->task_avg[t], e));
    }
    QA_TRY(qa_tb_scalar(tb, "accuracy/avg", step, r->avg, e));
    char *path = qa_path_join(results_dir, "results.md"), *md;
    size_t len;
    int rc = qa_read_file(path, 1u << 24, &md, &len, e);
    free(path);
    QA_TRY(rc);
    rc = qa_tb_text(tb, "results", step, md, e);
    free(md);
    return rc;
}
