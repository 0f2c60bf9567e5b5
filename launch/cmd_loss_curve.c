/* cmd_loss_curve.c — `qalign loss-curve`: the training and validation loss of a run (metrics.jsonl of
 * qalign train, read by train/best.h) as loss.csv and a PNG/SVG figure (analysis/loss.c). */
#include "launch/commands.h"
#include "analysis/analysis.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "train/best.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qa_launch_parse_formats(const char *s, int *png, int *svg); /* cmd_lens.c */

static void usage(FILE *f) {
    fprintf(f,
            "usage: qalign loss-curve RUN_DIR_OR_METRICS_JSONL --out DIR [--title TEXT] [--format png,svg]\n\n"
            "The training curve of a qalign train run: the training loss of every optimizer step and the\n"
            "validation loss of every validation pass from RUN_DIR/metrics.jsonl, with the step of the lowest\n"
            "validation loss marked (the one `qalign export-peft RUN_DIR OUT --best` exports).\n\n"
            "options:\n"
            "  --out DIR        loss.csv (step, loss, lr, val_loss, best) and loss.png / loss.svg\n"
            "  --title TEXT     figure title (default: \"Training loss: <run directory>\")\n"
            "  --format LIST    png,svg (default both) | png | svg\n"
            "  -h, --help       this help\n");
}

int cmd_loss_curve(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *title = NULL;
    int png = 1, svg = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (more && !strcmp(a, "--out")) out = argv[++i];
        else if (more && !strcmp(a, "--title")) title = argv[++i];
        else if (more && !strcmp(a, "--format")) {
            if (qa_launch_parse_formats(argv[++i], &png, &svg)) {
                fprintf(stderr, "qalign loss-curve: --format takes png, svg or png,svg, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (a[0] != '-' && !in) in = a;
        else {
            fprintf(stderr, "qalign loss-curve: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!in || !out) {
        fprintf(stderr, "qalign loss-curve: a run directory (or metrics.jsonl) and --out are required\n\n");
        usage(stderr);
        return 2;
    }
    qa_err e = {0};
    char *path = qa_is_dir(in) ? qa_path_join(in, "metrics.jsonl") : qa_strdup(in);
    if (!qa_path_exists(path)) {
        fprintf(stderr, "qalign: error: %s does not exist (pass the run directory of qalign train or its "
                        "metrics.jsonl)\n", path);
        free(path);
        return 1;
    }
    qa_metrics m;
    if (qa_metrics_read(path, -1, &m, &e)) {
        qa_err_print(&e);
        free(path);
        return 1;
    }
    qa_best_val bv = qa_metrics_best(&m);
    qa_loss_curve c = {m.n_train, m.step, m.loss, m.lr, m.n_val, m.val_step, m.val_loss, bv.step, bv.val_loss};
    char tbuf[1200];
    snprintf(tbuf, sizeof tbuf, "Training loss: %s", in);
    int rc = qa_loss_curve_write(&c, out, title ? title : tbuf, png, svg, &e);
    if (rc) qa_err_print(&e);
    else {
        printf("loss-curve: %lld training steps", (long long)m.n_train);
        if (m.n_train) printf(" (loss %.4f at step %lld -> %.4f at step %lld)", m.loss[0], (long long)m.step[0],
                              m.loss[m.n_train - 1], (long long)m.step[m.n_train - 1]);
        if (bv.step >= 0) printf(", %lld validation passes, the lowest %.6f at step %lld", (long long)m.n_val,
                                 bv.val_loss, (long long)bv.step);
        printf("; wrote %s/loss.csv%s%s\n", out, png ? ", loss.png" : "", svg ? ", loss.svg" : "");
    }
    qa_metrics_free(&m);
    free(path);
    return rc ? 1 : 0;
}
