/* multi.c — several adapters evaluated on one loaded base model (qalign eval --adapter A --out DA
 * --adapter B --out DB ...; a sweep's evaluation of the cells of one model): for each adapter in turn
 * load it, qa_eval_run, write its results as a separate run would, free it. The base model, the
 * tokenizer and the suite are loaded once. */
#include "eval/eval.h"
#include "common/qa_log.h"

#include <stdio.h>
#include <string.h>

int qa_eval_is_base(const char *adapter) { return !adapter || !*adapter || !strcmp(adapter, "none"); }

int qa_eval_run_many(const qa_eval_suite *s, qa_model *m, const qa_tokenizer *tok, qa_dist *d,
                     const qa_eval_run_opts *o, const char *const *adapters, const char *const *outs, int n,
                     qa_err *e) {
    const int me = qa_dist_rank(d);
    for (int i = 0; i < n; i++) {
        qa_lora l;
        char id[1200] = "";
        const int base = qa_eval_is_base(adapters[i]);
        int ok = base || qa_eval_load_adapter(&l, m, adapters[i], id, sizeof id, e) == 0;
        /* a rank that could not load stops every rank here, before the collective run */
        if (!qa_dist_all_true(d, ok, "eval load adapter")) {
            if (ok) {
                if (!base) qa_lora_free(&l);
                QA_ERR(e, "adapter %d (%s): loading failed on another rank (see its message)", i + 1, adapters[i]);
            } else {
                qa_err_prefix(e, "adapter %d of %d", i + 1, n);
            }
            return -1;
        }
        qa_eval_run_opts ro = *o;
        ro.adapter_id = base ? NULL : id;
        qa_logf(ro.log, ro.log_ctx, "eval: [%d/%d] %s -> %s", i + 1, n, base ? "the base model" : id, outs[i]);
        qa_eval_results r;
        memset(&r, 0, sizeof r);
        int rc = qa_eval_run(s, m, base ? NULL : &l, tok, d, &ro, &r, e);
        if (!rc && me == 0) {
            rc = qa_eval_write(&r, outs[i], e);
            if (!rc) {
                qa_logf(ro.log, ro.log_ctx, "eval: %d items in %.1f s (%.1f items/s), %d exact ties; wrote "
                        "%s/results.{json,md}, predictions.jsonl", r.n_items, r.seconds, r.items_per_s, r.ties, outs[i]);
                for (int t = 0; t < qa_eval_n_tasks(s); t++)
                    printf("%s: %s: average accuracy %.2f%% over %d languages\n", outs[i], qa_eval_task_name(s, t),
                           100.0 * r.task_avg[t], qa_eval_n_langs(s));
                fflush(stdout);
            }
        }
        qa_eval_results_free(&r);
        if (!base) qa_lora_free(&l);
        /* a write failure on rank 0 must not leave the others in the next collective run */
        if (!qa_dist_all_true(d, rc == 0, "eval write results")) {
            if (rc == 0) QA_ERR(e, "writing the results of adapter %d failed on rank 0", i + 1);
            return -1;
        }
    }
    return 0;
}
