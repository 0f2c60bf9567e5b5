/* loss.c — the training curve of a run (metrics.jsonl of qalign train): loss.csv and the figure. */
#include "analysis/an_internal.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_num(qa_sbuf *b, double v) {
    if (isfinite(v)) qa_sb_printf(b, "%.9g", v);
}

int qa_loss_curve_write(const qa_loss_curve *c, const char *out_dir, const char *title, int png, int svg, qa_err *e) {
    if (c->n <= 0 && c->n_val <= 0) return QA_ERR(e, "no training or validation loss to write (empty metrics.jsonl?)");
    QA_TRY(qa_mkdir_p(out_dir, e));
    /* one row per step with a training or a validation loss, in step order (both lists are ascending) */
    qa_sbuf b = {0};
    qa_sb_printf(&b, "step,loss,lr,val_loss,best\n");
    for (int64_t i = 0, j = 0; i < c->n || j < c->n_val;) {
        const int64_t s = i < c->n && (j >= c->n_val || c->step[i] <= c->val_step[j]) ? c->step[i] : c->val_step[j];
        qa_sb_printf(&b, "%lld,", (long long)s);
        if (i < c->n && c->step[i] == s) {
            put_num(&b, c->loss[i]);
            qa_sb_printf(&b, ",");
            if (c->lr) put_num(&b, c->lr[i]);
            i++;
        } else {
            qa_sb_printf(&b, ",");
        }
        qa_sb_printf(&b, ",");
        if (j < c->n_val && c->val_step[j] == s) put_num(&b, c->val_loss[j++]);
        qa_sb_printf(&b, ",%d\n", s == c->best_step);
    }
    int rc = qa_sb_write(&b, out_dir, "loss.csv", e);
    qa_sb_free(&b);
    QA_TRY(rc);
    char *stem = qa_path_join(out_dir, "loss");
    rc = qa_plot_loss(stem, title, c, png, svg, e);
    free(stem);
    return rc;
}
