/* cmd_pca.c — `qalign pca`: PCA of per-layer representations and the Pearson correlation of PC1
 * scores between index-paired items of language pairs (analysis/pca.c, paper-protocol.md §9). */
#include "launch/commands.h"
#include "analysis/analysis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qa_launch_parse_formats(const char *s, int *png, int *svg); /* cmd_lens.c */

static void usage(FILE *f) {
    fprintf(f,
            "usage: qalign pca --dump FILE --out DIR [options]\n\n"
            "PCA of per-layer representations from an activation dump (`qalign eval --dump-activations FILE`,\n"
            "paper-protocol.md §9): per layer, the mean-centred representations of every selected language\n"
            "together, a 2-D scatter of PC1/PC2 coloured by language, and the Pearson correlation of the PC1\n"
            "scores between index-paired items (same record index) of language pairs. No model needed.\n\n"
            "options:\n"
            "  --dump FILE        the activation dump\n"
            "  --out DIR          pca.h5, pca_scores.csv, pca_variance.csv, pearson.csv, pearson.md,\n"
            "                     pca_layer_XX.png/.svg, pca.png/.svg (the plotted layers side by side) and\n"
            "                     pca_buckets.png/.svg (the same, coloured by record-index bucket)\n"
            "  --task NAME        the task (default: the dump's only task)\n"
            "  --langs LIST       languages fitted and plotted (default: all in the dump, in its order)\n"
            "  --pool NAME        mean (default: mean over the prompt's positions, as the paper) | last\n"
            "  --layers LIST      all (default) | e.g. 0,12,24: layers of the tables (0 = embeddings, L = after\n"
            "                     the final norm)\n"
            "  --plot-layers LIST layers drawn (default: about L/4, L/2, 3L/4 and L)\n"
            "  --bucket-size N    pca_buckets.png/.svg: the plotted layers' points coloured by record-index bucket\n"
            "                     (0-N, N-2N, ...; default 100, the notebook's; 0 = no such figure)\n"
            "  --all-pairs        every language pair (default: the paper's pairs en-de en-fr en-hi de-fr de-hi\n"
            "                     fr-hi en-th en-sw en-ms among the languages present, else every pair)\n"
            "  --title TEXT       figure title (default: from the dump's model)\n"
            "  --format LIST      png,svg (default both) | png | svg\n"
            "  -h, --help         this help\n");
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

int cmd_pca(int argc, char **argv) {
    qa_pca_opts o;
    qa_pca_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--all-pairs")) o.all_pairs = 1;
        else if (more && !strcmp(a, "--dump")) o.dump = argv[++i];
        else if (more && !strcmp(a, "--out")) o.out_dir = argv[++i];
        else if (more && !strcmp(a, "--task")) o.task = argv[++i];
        else if (more && !strcmp(a, "--langs")) o.langs = argv[++i];
        else if (more && !strcmp(a, "--pool")) o.pool = argv[++i];
        else if (more && !strcmp(a, "--layers")) o.layers = argv[++i];
        else if (more && !strcmp(a, "--plot-layers")) o.plot_layers = argv[++i];
        else if (more && !strcmp(a, "--title")) o.title = argv[++i];
        else if (more && !strcmp(a, "--bucket-size")) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1000000000L) {
                fprintf(stderr, "qalign pca: --bucket-size needs an integer >= 0, got '%s'\n", argv[i]);
                return 2;
            }
            o.bucket_size = (int)v;
        }
        else if (more && !strcmp(a, "--format")) {
            if (qa_launch_parse_formats(argv[++i], &o.png, &o.svg)) {
                fprintf(stderr, "qalign pca: --format takes png, svg or png,svg, got '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "qalign pca: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.dump || !o.out_dir) {
        fprintf(stderr, "qalign pca: --dump and --out are required\n\n");
        usage(stderr);
        return 2;
    }
    if (strcmp(o.pool, "mean") && strcmp(o.pool, "last")) {
        fprintf(stderr, "qalign pca: --pool takes mean or last, got '%s'\n", o.pool);
        return 2;
    }
    o.log = log_line;
    qa_err e = {0};
    if (qa_pca_run(&o, &e)) {
        qa_err_print(&e);
        return 1;
    }
    fprintf(stderr, "pca: wrote %s/pearson.md, pearson.csv, pca_scores.csv, pca_variance.csv, pca.h5 and figures\n",
            o.out_dir);
    return 0;
}
