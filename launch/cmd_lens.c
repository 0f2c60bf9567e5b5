/* cmd_lens.c — `qalign lens`: the logit lens of activation dumps, base and aligned on one figure
 * (analysis/lens.c, paper-protocol.md §8, docs/analysis.md). */
#include "launch/commands.h"
#include "launch/args.h"
#include "analysis/analysis.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qalign lens --model DIR --dump FILE [--label NAME] [--dump FILE [--label NAME] ...] --out DIR\n\n"
            "The logit lens (paper-protocol.md §8) of activation dumps written by\n"
            "`qalign eval --dump-activations FILE` (use --prompt target-labels for the paper's emotion prompt):\n"
            "per decoder layer 1..L, lm_head(final_norm(h)) of the hidden state at the last prompt position, and\n"
            "its probability mass on the gold label's target-language token set, on its English counterpart\n"
            "(the \"latent\" answer), on the union of every label's target-language set and English set, and the\n"
            "entropy (bits). Items whose target and English sets are empty or share a token (target != en) are\n"
            "dropped, as in the paper. Mean and 95%% interval over the kept items per language; every dump is one\n"
            "series (the first dashed, the next solid) on one figure per language.\n\n"
            "options:\n"
            "  --model DIR        the model the dumps were made with (its final norm and lm_head; an adapter does not\n"
            "                     change them)\n"
            "  --dump FILE        an activation dump (repeat: base first, then aligned); up to %d\n"
            "  --label NAME       legend name of the preceding --dump (default: base / aligned by its adapter)\n"
            "  --out DIR          lens.csv, lens_items.csv, lens_kept.csv, lens.h5, lens_<lang>.png/.svg\n"
            "  --tokenizer FILE   tokenizer.json for the label-token sets (default: DIR/tokenizer.json)\n"
            "  --task NAME        the task of the dumps (default: their only task)\n"
            "  --langs LIST       languages (default: all in the dumps)\n"
            "  --title TEXT       figure title prefix (default: the model directory's name)\n"
            "  --format LIST      png,svg (default both) | png | svg\n"
            "  --ymax Y           top of the y axis (default: 1, zoomed to the data when every band stays below\n"
            "                     0.25, as with random or tiny models); --ymax 1 forces the paper's [0, 1]\n"
            "  --device NAME      auto (default: cuda when a GPU is usable, else cpu), cpu, cuda, cuda-fp32 or\n"
            "                     emu: the lens is a full-vocabulary head per item and layer (--backend: an old\n"
            "                     name)\n"
            "  --threads N        CPU threads (default 0: one per core); results do not depend on it\n"
            "  --quant Q          none (default), nf4 or nf4-dq: the model the dumps came from, quantized at load\n"
            "  -h, --help         this help\n",
            QA_LENS_MAX_SERIES);
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

/* --format png,svg */
int qa_launch_parse_formats(const char *s, int *png, int *svg);
int qa_launch_parse_formats(const char *s, int *png, int *svg) {
    *png = strstr(s, "png") != NULL;
    *svg = strstr(s, "svg") != NULL;
    return (*png || *svg) && strspn(s, "pngsv,") == strlen(s) ? 0 : -1;
}

int cmd_lens(int argc, char **argv) {
    qa_lens_opts o;
    qa_lens_opts_default(&o);
    const char *model_dir = NULL, *tfile = NULL, *backend = "auto", *quant_s = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (more && !strcmp(a, "--model")) model_dir = argv[++i];
        else if (more && !strcmp(a, "--dump")) {
            if (o.n_series == QA_LENS_MAX_SERIES) {
                fprintf(stderr, "qalign lens: at most %d dumps\n", QA_LENS_MAX_SERIES);
                return 2;
            }
            o.dumps[o.n_series++] = argv[++i];
        } else if (more && !strcmp(a, "--label")) {
            if (!o.n_series) {
                fprintf(stderr, "qalign lens: --label names the preceding --dump; give --dump first\n");
                return 2;
            }
            o.labels[o.n_series - 1] = argv[++i];
        } else if (more && !strcmp(a, "--out")) o.out_dir = argv[++i];
        else if (more && !strcmp(a, "--tokenizer")) tfile = argv[++i];
        else if (more && !strcmp(a, "--task")) o.task = argv[++i];
        else if (more && !strcmp(a, "--langs")) o.langs = argv[++i];
        else if (more && !strcmp(a, "--title")) o.title = argv[++i];
        else if (more && (!strcmp(a, "--device") || !strcmp(a, "--backend"))) backend = argv[++i];
        else if (more && !strcmp(a, "--quant")) quant_s = argv[++i];
        else if (more && !strcmp(a, "--threads")) {
            long long v;
            if (qa_arg_int("lens", "--threads", argv[++i], 0, 4096, &v)) return 2;
            threads = (int)v;
        } else if (more && !strcmp(a, "--ymax")) {
            if (qa_arg_num("lens", "--ymax", argv[++i], 0, 1e6, 1, &o.ymax)) return 2;
        }
        else if (more && !strcmp(a, "--format")) {
            if (qa_launch_parse_formats(argv[++i], &o.png, &o.svg)) {
                fprintf(stderr, "qalign lens: --format takes png, svg or png,svg, got '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "qalign lens: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model_dir || !o.n_series || !o.out_dir) {
        fprintf(stderr, "qalign lens: --model, --dump and --out are required\n\n");
        usage(stderr);
        return 2;
    }
    qa_err e = {0};
    char *tok_path = tfile ? qa_strdup(tfile) : qa_path_join(model_dir, "tokenizer.json");
    qa_tokenizer *tok = NULL;
    qa_model m;
    int have_model = 0, rc = 1;
    const qa_ops *ops = qa_ops_open(backend, 0, NULL, 0, &e);
    if (!ops) goto out;
    if (qa_tok_load(&tok, tok_path, &e)) goto out;
    qa_quant quant;
    const qa_stream_opts so = {.threads = threads};
    if (qa_quant_parse(quant_s, &quant, &e) || qa_model_load_ex(&m, model_dir, ops, &so, quant, &e)) goto out;
    have_model = 1;
    o.log = log_line;
    o.model_id = model_dir;
    if (qa_lens_run(&m, tok, &o, &e)) goto out;
    fprintf(stderr, "lens: wrote %s/lens.csv, lens_items.csv, lens_kept.csv, lens.h5 and lens_<lang>.%s%s%s\n",
            o.out_dir, o.png ? "png" : "", o.png && o.svg ? "/." : "", o.svg ? "svg" : "");
    rc = 0;
out:
    if (rc) qa_err_print(&e);
    if (have_model) qa_model_free(&m);
    if (tok) qa_tok_free(tok);
    free(tok_path);
    return rc;
}
