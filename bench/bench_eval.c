/* bench_eval.c — evaluation throughput (items/s) with the few-shot prefix KV cache on vs off, same
 * model, same items, same run; checks that both give the same predictions.
 *
 * usage: bench_eval [--model DIR] [--data DIR] [--tasks LIST] [--langs LIST] [--limit N] [--batch N]
 *                   [--repeat R] [--threads N]
 * Without --model a small random Mistral-shaped model (hidden 256, 4 layers, 4/2 heads, intermediate 688,
 * the Mistral tokenizer) is written to a temporary directory with `qalign init-model`.
 * CPU threads: --threads N (default 0: all cores). */
#include "eval/eval.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef QA_BENCH_QALIGN
#define QA_BENCH_QALIGN "qalign"
#endif
#ifndef QA_BENCH_ASSETS
#define QA_BENCH_ASSETS "assets"
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int run_once(const qa_eval_suite *s, qa_model *m, const qa_tokenizer *tok, int cache, int batch,
                    qa_eval_results *r, double *secs) {
    qa_err e = {0};
    qa_eval_run_opts o;
    qa_eval_run_opts_default(&o);
    o.prefix_cache = cache;
    o.batch_rows = batch;
    double t0 = now_s();
    if (qa_eval_run(s, m, NULL, tok, NULL, &o, r, &e)) { qa_err_print(&e); return -1; }
    *secs = now_s() - t0;
    return 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *data = QA_BENCH_ASSETS "/paper-data", *tasks = "emotion,snli,paws",
               *langs = "en,zh,de,hi,sw";
    int limit = 8, batch = 16, repeat = 1, threads = 0;
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (more && !strcmp(argv[i], "--model")) model = argv[++i];
        else if (more && !strcmp(argv[i], "--data")) data = argv[++i];
        else if (more && !strcmp(argv[i], "--tasks")) tasks = argv[++i];
        else if (more && !strcmp(argv[i], "--langs")) langs = argv[++i];
        else if (more && !strcmp(argv[i], "--limit")) limit = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--repeat")) repeat = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_eval [--model DIR] [--data DIR] [--tasks LIST] [--langs LIST] [--limit N] "
                            "[--batch N] [--repeat R] [--threads N]\n");
            return 2;
        }
    }
    char tmpdir[256] = "";
    if (!model) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/qalign-bench-eval-%d", (int)getpid());
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "%s init-model --arch mistral --tokenizer %s/tokenizers/mistral-7b-v0.1.tokenizer.json --seed 7 "
                 "--hidden 256 --layers 4 --heads 4 --kv-heads 2 --intermediate 688 --out %s >/dev/null",
                 QA_BENCH_QALIGN, QA_BENCH_ASSETS, tmpdir);
        if (system(cmd) != 0) { fprintf(stderr, "bench_eval: '%s' failed\n", cmd); return 1; }
        model = tmpdir;
    }
    qa_err e = {0};
    qa_model m;
    qa_tokenizer *tok = NULL;
    qa_eval_suite *s = NULL;
    char *tp = qa_path_join(model, "tokenizer.json");
    qa_eval_selection sel = {data, tasks, langs, limit, QA_EVAL_GOLD_CORRECTED, QA_EVAL_PROMPT_ENGLISH_LABELS,
                             QA_EVAL_SCORING_ENGLISH};
    const qa_stream_opts so = {.threads = threads};
    if (qa_model_load_opts(&m, model, NULL, &so, &e) || qa_tok_load(&tok, tp, &e) ||
        qa_eval_suite_load(&s, &sel, &e)) {
        qa_err_print(&e);
        return 1;
    }
    free(tp);
    printf("bench_eval: model %s (%s, hidden %d, %d layers, vocab %d), tasks %s, langs %s, %d items per cell, "
           "batch %d, --threads %d, %ld cores online\n",
           model, m.cfg.model_type, m.cfg.hidden, m.cfg.n_layers, m.cfg.vocab, tasks, langs, limit, batch,
           threads, sysconf(_SC_NPROCESSORS_ONLN));
    double best[2] = {INFINITY, INFINITY};
    qa_eval_results res[2];
    memset(res, 0, sizeof res);
    for (int rep = 0; rep < (repeat > 0 ? repeat : 1); rep++)
        for (int c = 1; c >= 0; c--) {
            qa_eval_results r;
            double t;
            if (run_once(s, &m, tok, c, batch, &r, &t)) return 1;
            if (t < best[c]) best[c] = t;
            if (rep == 0) res[c] = r;
            else qa_eval_results_free(&r);
        }
    int n = res[1].n_items, diff = 0;
    long long tok_on = res[1].tokens_computed, tok_off = res[0].tokens_computed;
    double cached = 0, total = 0;
    for (int i = 0; i < n; i++) {
        if (res[0].preds[i].pred != res[1].preds[i].pred) diff++;
        cached += res[1].preds[i].n_cached;
        total += res[1].preds[i].n_tokens;
    }
    printf("  prefix cache on : %6d items in %7.2f s = %8.2f items/s  (%lld tokens through the model)\n", n, best[1],
           n / best[1], tok_on);
    printf("  prefix cache off: %6d items in %7.2f s = %8.2f items/s  (%lld tokens)\n", n, best[0], n / best[0], tok_off);
    printf("  padding: %lld (cache on) / %lld (off) positions\n", res[1].tokens_padded, res[0].tokens_padded);
    printf("  ratio on/off: %.2fx  (%.1f%% of prompt tokens came from the cache; predictions differ: %d)\n",
           best[0] / best[1], total > 0 ? 100.0 * cached / total : 0, diff);
    qa_eval_results_free(&res[0]);
    qa_eval_results_free(&res[1]);
    qa_eval_suite_free(s);
    qa_tok_free(tok);
    qa_model_free(&m);
    if (tmpdir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "bench_eval: could not remove %s\n", tmpdir);
    }
    return diff ? 1 : 0;
}
