/* cmd_eval.c — `qalign eval`: the paper's three tasks in 20 languages (eval/eval.h), under mpirun or
 * alone; rank 0 writes results.json, results.md and predictions.jsonl. */
#include "launch/commands.h"
#include "launch/args.h"
#include "eval/eval.h"
#include "eval/report_tb.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qalign eval --model DIR --out DIR [options]\n"
            "       qalign eval --model DIR [--out DIR] --dump-activations FILE [options]\n"
            "       qalign eval --dump-prompts FILE [--tasks ...] [--langs ...] [--limit N]   (no model needed)\n"
            "       qalign eval --token-stats --tokenizer FILE [--tasks ...] [--langs ...]     (no model needed)\n\n"
            "Few-shot evaluation as in the paper (docs/evaluation.md): Amazon-polarity emotion (2-shot), SNLI\n"
            "(6-shot), PAWS (4-shot); the label whose token set has the larger next-token probability mass wins.\n"
            "Runs under mpirun/srun: items are sharded over the ranks and gathered on rank 0.\n\n"
            "options:\n"
            "  --model DIR          Hugging Face model directory (config.json + safetensors [+ tokenizer.json])\n"
            "  --adapter PATH       PEFT adapter directory, training checkpoint (step_N.h5) or run directory;\n"
            "                       none = the base model. Several --adapter A --out DIR pairs evaluate each\n"
            "                       adapter on one load of the model (results as separate runs write them)\n"
            "  --tokenizer FILE     tokenizer.json (default: DIR/tokenizer.json)\n"
            "  --data DIR           paper-data directory with tasks.json (default: $QALIGN_DATA or assets/paper-data)\n"
            "  --tasks LIST         emotion,snli,paws (default: all)\n"
            "  --langs LIST         all | en,zh,... (default: all 20)\n"
            "  --limit N            the first N items of each (task, language) (default: all)\n"
            "  --gold MODE          corrected (default: gold of item i from the English file) | paper (the\n"
            "                       original scripts, with the SNLI ja/bn/no defects)\n"
            "  --seed S             seed of the tie-breaking coin (default 0)\n"
            "  --out DIR            where results.json, results.md and predictions.jsonl go\n"
            "  --tensorboard        also TensorBoard events in OUT/tensorboard (accuracies, the table as text)\n"
            "  --dump-prompts FILE  write every prompt as a JSON string per line (task, language, index order)\n"
            "  --token-stats        print prefix / suffix token counts per task (needs a tokenizer, no model)\n"
            "  --batch N            rows per forward (default 16)\n"
            "  --batch-tokens N     bound on padded tokens (rows x longest row) per forward (default 16384)\n"
            "  --no-prefix-cache    run every prompt in full (for checks and benchmarks)\n"
            "  --full-vocab         full-vocabulary logits at the last position: predictions carry softmax masses\n"
            "  --prompt VARIANT     english-labels (default: the paper's enout demos) | target-labels (emotion:\n"
            "                       target-language demo labels, the prompt of the paper's logit lens and PCA) |\n"
            "                       irrelevant-labels (emotion: demo labels ox / horse)\n"
            "  --scoring MODE       english-labels (default: English label words scored, the paper's tables) |\n"
            "                       target-labels (emotion: target-language demo labels and label words scored,\n"
            "                       Thai's shared prefix appended first) | irrelevant-labels (emotion: the control,\n"
            "                       demo labels ox / horse scored); the mode sets its prompt; results say which\n"
            "  --dump-activations FILE  also write per item and layer the hidden state at the last prompt position\n"
            "                       and the mean over positions to FILE (HDF5, docs/analysis.md; runs every prompt\n"
            "                       in full); without --out only the dump is made\n"
            "  --dump-pools LIST    last,mean (default both) | last | mean\n"
            "  --dump-batch N       rows per forward of the dump (default 4; padded tokens <= --dump-batch-tokens)\n"
            "  --dump-batch-tokens N  padded tokens per dump forward (default 4096)\n"
            "  --device NAME        auto (default: cuda when a GPU is usable, else cpu), cpu, cuda, cuda-fp32 (the\n"
            "                       CUDA kernels in fp32: verification) or emu (the emulated device of the tests);\n"
            "                       under mpirun/srun each rank takes the GPU of its node-local index (--backend is\n"
            "                       an old name of --device)\n"
            "  --threads N          CPU threads per rank (default 0: the node's cores / ranks on the node); results\n"
            "                       do not depend on it\n"
            "  --quant Q            none (default), nf4 or nf4-dq: projections quantized to NF4 at load (the paper's\n"
            "                       evaluation precision: bitsandbytes load_in_4bit); a 4-bit checkpoint is read as NF4\n"
            "  -h, --help           this help\n");
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

static int parse_int(const char *s, const char *opt, int lo, long *out) {
    long long v;
    if (qa_arg_int("eval", opt, s, lo, 1000000000LL, &v)) return -1;
    *out = (long)v;
    return 0;
}

/* --token-stats: prefix tokens and per-item cached / suffix tokens, as the evaluation would compute */
static int token_stats(const qa_eval_suite *s, const qa_tokenizer *tok, qa_err *e) {
    printf("%-8s %-5s %6s %10s %10s %10s %10s\n", "task", "lang", "items", "prefix", "mean_full", "mean_lcp",
           "mean_suffix");
    for (int t = 0; t < qa_eval_n_tasks(s); t++) {
        double st_p = 0, st_f = 0, st_c = 0, st_s = 0;
        long items = 0;
        for (int l = 0; l < qa_eval_n_langs(s); l++) {
            int32_t *pid = NULL;
            size_t np = 0;
            const char *pre = qa_eval_prefix(s, t, l);
            if (qa_tok_encode(tok, pre, strlen(pre), 1, &pid, &np, e)) return -1;
            double f = 0, c = 0;
            int n = qa_eval_n_items(s, t, l);
            for (int i = 0; i < n; i++) {
                size_t len, nf = 0;
                int32_t *ids = NULL;
                char *p = qa_eval_prompt(s, t, l, i, &len);
                int rc = qa_tok_encode(tok, p, len, 1, &ids, &nf, e);
                free(p);
                if (rc) { free(pid); return -1; }
                size_t k = 0;
                while (k < np && k < nf && pid[k] == ids[k]) k++;
                if (k >= nf) k = nf - 1;
                f += (double)nf;
                c += (double)k;
                free(ids);
            }
            printf("%-8s %-5s %6d %10zu %10.1f %10.1f %10.1f\n", qa_eval_task_name(s, t), qa_eval_lang(s, l), n, np,
                   n ? f / n : 0, n ? c / n : 0, n ? (f - c) / n : 0);
            st_p += (double)np * n;
            st_f += f;
            st_c += c;
            st_s += f - c;
            items += n;
            free(pid);
        }
        printf("%-8s %-5s %6ld %10.1f %10.1f %10.1f %10.1f\n", qa_eval_task_name(s, t), "ALL", items,
               items ? st_p / items : 0, items ? st_f / items : 0, items ? st_c / items : 0, items ? st_s / items : 0);
    }
    return 0;
}

/* OUT/tensorboard/events.out.tfevents.*: the accuracies and results.md at step 0 (eval/report_tb.h) */
static int write_tensorboard(const qa_eval_results *r, const char *out_dir, qa_err *e) {
    char *dir = qa_path_join(out_dir, "tensorboard");
    qa_tb *tb = NULL;
    int rc = qa_tb_open(&tb, dir, e);
    free(dir);
    if (!rc) rc = qa_eval_write_tensorboard(r, out_dir, tb, 0, e);
    if (!rc) fprintf(stderr, "eval: TensorBoard events %s\n", qa_tb_path(tb));
    if (qa_tb_close(tb, rc ? NULL : e)) rc = -1;
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *model_dir = NULL, *adapter = NULL, *tfile = NULL, *out_dir = NULL, *dump = NULL, *backend = "auto",
               *quant_s = NULL;
    const char *act_path = NULL;
    qa_eval_dump_opts dopt;
    qa_eval_dump_opts_default(&dopt);
    const char *data = getenv("QALIGN_DATA");
    qa_eval_selection sel = {0};
    qa_eval_run_opts ro;
    qa_eval_run_opts_default(&ro);
    int stats = 0, prompt_given = 0, tensorboard = 0, threads = 0;
    long v;
    enum { MAX_ADAPTERS = 256 }; /* --adapter A --out DIR pairs, eval/multi.c */
    const char *adapters[MAX_ADAPTERS], *outs[MAX_ADAPTERS];
    int n_adapters = 0, n_outs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--no-prefix-cache")) ro.prefix_cache = 0;
        else if (!strcmp(a, "--full-vocab")) ro.full_vocab = 1;
        else if (!strcmp(a, "--token-stats")) stats = 1;
        else if (!strcmp(a, "--tensorboard")) tensorboard = 1;
        else if (more && !strcmp(a, "--model")) model_dir = argv[++i];
        else if (more && !strcmp(a, "--adapter") && n_adapters < MAX_ADAPTERS) adapter = adapters[n_adapters++] = argv[++i];
        else if (more && !strcmp(a, "--tokenizer")) tfile = argv[++i];
        else if (more && !strcmp(a, "--data")) data = argv[++i];
        else if (more && !strcmp(a, "--tasks")) sel.tasks = argv[++i];
        else if (more && !strcmp(a, "--langs")) sel.langs = argv[++i];
        else if (more && !strcmp(a, "--out") && n_outs < MAX_ADAPTERS) out_dir = outs[n_outs++] = argv[++i];
        else if (more && !strcmp(a, "--dump-prompts")) dump = argv[++i];
        else if (more && (!strcmp(a, "--device") || !strcmp(a, "--backend"))) backend = argv[++i];
        else if (more && !strcmp(a, "--quant")) quant_s = argv[++i];
        else if (more && !strcmp(a, "--dump-activations")) act_path = argv[++i];
        else if (more && !strcmp(a, "--prompt")) {
            qa_err e = {0};
            if (qa_eval_prompt_variant_parse(argv[++i], &sel.prompt, &e)) {
                fprintf(stderr, "qalign eval: %s\n", e.msg);
                return 2;
            }
            prompt_given = 1;
        } else if (more && !strcmp(a, "--scoring")) {
            qa_err e = {0};
            if (qa_eval_scoring_parse(argv[++i], &sel.scoring, &e)) {
                fprintf(stderr, "qalign eval: %s\n", e.msg);
                return 2;
            }
        } else if (more && !strcmp(a, "--dump-pools")) {
            const char *p = argv[++i];
            dopt.last = strstr(p, "last") != NULL;
            dopt.mean = strstr(p, "mean") != NULL;
            if ((!dopt.last && !dopt.mean) || strspn(p, "lastmen,") != strlen(p)) {
                fprintf(stderr, "qalign eval: --dump-pools takes last, mean or last,mean, got '%s'\n", p);
                return 2;
            }
        } else if (more && !strcmp(a, "--dump-batch")) {
            if (parse_int(argv[++i], a, 1, &v)) return 2;
            dopt.batch_rows = (int)v;
        } else if (more && !strcmp(a, "--dump-batch-tokens")) {
            if (parse_int(argv[++i], a, 1, &v)) return 2;
            dopt.batch_tokens = (int)v;
        }
        else if (more && !strcmp(a, "--gold")) {
            qa_err e = {0};
            if (qa_eval_gold_parse(argv[++i], &sel.gold, &e)) { fprintf(stderr, "qalign eval: %s\n", e.msg); return 2; }
        } else if (more && !strcmp(a, "--limit")) { if (parse_int(argv[++i], a, 0, &v)) return 2; sel.limit = (int)v; }
        else if (more && !strcmp(a, "--threads")) { if (parse_int(argv[++i], a, 0, &v)) return 2; threads = (int)v; }
        else if (more && !strcmp(a, "--seed")) { if (parse_int(argv[++i], a, 0, &v)) return 2; ro.seed = (uint64_t)v; }
        else if (more && !strcmp(a, "--batch")) { if (parse_int(argv[++i], a, 1, &v)) return 2; ro.batch_rows = (int)v; }
        else if (more && !strcmp(a, "--batch-tokens")) {
            if (parse_int(argv[++i], a, 1, &v)) return 2;
            ro.batch_tokens = (int)v;
        } else {
            fprintf(stderr, "qalign eval: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (prompt_given && sel.scoring != QA_EVAL_SCORING_ENGLISH &&
        strcmp(qa_eval_prompt_variant_name(sel.prompt), qa_eval_scoring_name(sel.scoring))) {
        fprintf(stderr, "qalign eval: --scoring %s uses the %s prompt; drop --prompt %s\n",
                qa_eval_scoring_name(sel.scoring), qa_eval_scoring_name(sel.scoring),
                qa_eval_prompt_variant_name(sel.prompt));
        return 2;
    }
    if (sel.scoring == QA_EVAL_SCORING_TARGET) sel.prompt = QA_EVAL_PROMPT_TARGET_LABELS; /* the mode's prompt */
    if (sel.scoring == QA_EVAL_SCORING_IRRELEVANT) sel.prompt = QA_EVAL_PROMPT_IRRELEVANT_LABELS;
    if (!model_dir && !dump && !stats) {
        fprintf(stderr, "qalign eval: --model is required (or --dump-prompts / --token-stats alone)\n\n");
        usage(stderr);
        return 2;
    }
    if (act_path && !model_dir) {
        fprintf(stderr, "qalign eval: --dump-activations needs --model\n\n");
        usage(stderr);
        return 2;
    }
    if (model_dir && !out_dir && !act_path) {
        fprintf(stderr, "qalign eval: --out DIR is required with --model (or --dump-activations FILE)\n\n");
        usage(stderr);
        return 2;
    }
    const int multi = n_adapters > 1 || n_outs > 1;
    if (multi && (n_adapters != n_outs || act_path)) {
        fprintf(stderr, "qalign eval: several adapters need one --out each, in the same order (got %d --adapter, %d "
                        "--out)%s\n", n_adapters, n_outs, act_path ? ", and no --dump-activations" : "");
        return 2;
    }
    if (multi || qa_eval_is_base(adapter)) adapter = NULL;
    sel.data_dir = data ? data : "assets/paper-data";
    qa_err e = {0};
    char *tok_path = tfile ? qa_strdup(tfile) : model_dir ? qa_path_join(model_dir, "tokenizer.json") : NULL;
    if (stats && !tok_path) {
        fprintf(stderr, "qalign eval: --token-stats needs --tokenizer FILE or --model DIR\n");
        return 2;
    }

    /* the model-free modes run in this process only */
    if (!model_dir) {
        qa_eval_suite *s = NULL;
        int rc = 1;
        qa_tokenizer *tok = NULL;
        if (qa_eval_suite_load(&s, &sel, &e)) goto free0;
        if (dump && qa_eval_dump_prompts(s, dump, &e)) goto free0;
        if (stats) {
            if (qa_tok_load(&tok, tok_path, &e)) goto free0;
            if (token_stats(s, tok, &e)) goto free0;
        }
        rc = 0;
    free0:
        if (rc) qa_err_print(&e);
        if (tok) qa_tok_free(tok);
        qa_eval_suite_free(s);
        free(tok_path);
        return rc;
    }

    qa_dist_opts dop;
    qa_dist_opts_default(&dop);
    dop.quiet = 1;
    qa_dist *d = NULL;
    if (qa_dist_init(&d, &argc, &argv, &dop, &e)) { qa_err_print(&e); free(tok_path); return 1; }
    const int me = qa_dist_rank(d);
    int rc = 1, have_model = 0, have_lora = 0;
    qa_eval_suite *s = NULL;
    qa_tokenizer *tok = NULL;
    qa_model m;
    qa_lora l;
    qa_eval_results res;
    memset(&res, 0, sizeof res);
    char adapter_id[1200] = "";
    /* every rank loads everything; a failure anywhere stops all ranks */
    int ok = qa_eval_suite_load(&s, &sel, &e) == 0;
    if (ok && me == 0 && dump) ok = qa_eval_dump_prompts(s, dump, &e) == 0;
    if (ok) ok = qa_tok_load(&tok, tok_path, &e) == 0;
    char dev_desc[160] = "";
    const qa_ops *ops = ok ? qa_ops_open(backend, qa_dist_local_rank(d), dev_desc, sizeof dev_desc, &e) : NULL;
    if (ok && !ops) ok = 0;
    qa_quant quant = QA_QUANT_NONE;
    const qa_stream_opts so = {.threads = qa_dist_cpu_threads(d, threads)};
    if (ok) ok = qa_quant_parse(quant_s, &quant, &e) == 0;
    if (ok) { ok = qa_model_load_ex(&m, model_dir, ops, &so, quant, &e) == 0; have_model = ok; }
    if (ok && adapter) {
        ok = qa_eval_load_adapter(&l, &m, adapter, adapter_id, sizeof adapter_id, &e) == 0;
        have_lora = ok;
    }
    if (!qa_dist_all_true(d, ok, "eval load")) {
        if (ok) snprintf(e.msg, sizeof e.msg, "loading failed on another rank (see its message)");
        goto out;
    }
    if (me == 0) {
        ro.log = log_line;
        fprintf(stderr, "eval: model %s%s%s, %d tasks x %d languages, gold %s, prompt %s, %d rank(s) on %s\n",
                model_dir, adapter ? ", adapter " : "", adapter ? adapter_id : "", qa_eval_n_tasks(s),
                qa_eval_n_langs(s), qa_eval_gold_name(sel.gold), qa_eval_prompt_variant_name(sel.prompt),
                qa_dist_size(d), dev_desc);
    }
    ro.model_id = model_dir;
    ro.adapter_id = adapter ? adapter_id : NULL;
    if (multi) {
        rc = qa_eval_run_many(s, &m, tok, d, &ro, adapters, outs, n_adapters, &e) ? 1 : 0;
        goto out;
    }
    if (act_path) {
        dopt.model_id = model_dir;
        dopt.adapter_id = adapter ? adapter_id : NULL;
        dopt.tokenizer_id = tok_path;
        if (me == 0) dopt.log = log_line;
        if (qa_eval_dump_activations(s, &m, have_lora ? &l : NULL, tok, d, &dopt, act_path, &e)) goto out;
        if (me == 0) fprintf(stderr, "eval: wrote the activation dump %s\n", act_path);
    }
    if (!out_dir) {
        rc = 0;
        goto out;
    }
    if (qa_eval_run(s, &m, have_lora ? &l : NULL, tok, d, &ro, &res, &e)) goto out;
    if (me == 0) {
        if (qa_eval_write(&res, out_dir, &e)) goto out_local;
        if (tensorboard && write_tensorboard(&res, out_dir, &e)) goto out_local;
        fprintf(stderr, "eval: %d items in %.1f s (%.1f items/s), %d exact ties; wrote %s/results.{json,md}, "
                        "predictions.jsonl\n", res.n_items, res.seconds, res.items_per_s, res.ties, out_dir);
        for (int t = 0; t < qa_eval_n_tasks(s); t++)
            printf("%s: average accuracy %.2f%% over %d languages\n", qa_eval_task_name(s, t), 100.0 * res.task_avg[t],
                   qa_eval_n_langs(s));
    }
    rc = 0;
    goto out;
out_local:
    /* a write failure on rank 0 only: the others already finished */
    qa_err_print(&e);
    rc = 1;
    goto done;
out:
    if (rc && (me == 0 || !strstr(e.msg, "on another rank"))) {
        if (qa_dist_size(d) > 1) fprintf(stderr, "qalign: error: rank %d: %s\n", me, e.msg);
        else qa_err_print(&e);
    }
done:
    qa_eval_results_free(&res);
    if (have_lora) qa_lora_free(&l);
    if (have_model) qa_model_free(&m);
    if (tok) qa_tok_free(tok);
    qa_eval_suite_free(s);
    free(tok_path);
    qa_dist_finalize(d);
    return rc;
}
