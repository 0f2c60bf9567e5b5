/* cmd_eval_compare.c — `qalign eval-compare BEFORE AFTER [--out FILE] [--labels B,A]`: the before/after table. */
#include "launch/commands.h"

#include "common/qa_err.h"
#include "common/qa_file.h"
#include "eval/eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: qalign eval-compare BEFORE AFTER [--out FILE] [--labels NAME_BEFORE,NAME_AFTER]\n\n"
               "Print a Markdown table of two evaluations (results.json of `qalign eval`, or the directories\n"
               "holding them): per task the accuracy of each run per language, the difference and the averages,\n"
               "as in the paper's Table 1. --out also writes it to FILE (atomically).\n");
}

int cmd_eval_compare(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL}, *out = NULL;
    char lb[64] = "base", la[64] = "aligned";
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) { out = argv[++i]; continue; }
        if (!strcmp(argv[i], "--labels") && i + 1 < argc) {
            const char *v = argv[++i], *c = strchr(v, ',');
            if (!c) { fprintf(stderr, "qalign eval-compare: error: --labels wants NAME_BEFORE,NAME_AFTER\n"); return 2; }
            snprintf(lb, sizeof lb, "%.*s", (int)(c - v), v);
            snprintf(la, sizeof la, "%s", c + 1);
            continue;
        }
        if (argv[i][0] == '-' || np == 2) {
            fprintf(stderr, "qalign eval-compare: error: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        pos[np++] = argv[i];
    }
    if (np != 2) { usage(stderr); return 2; }
    qa_err e = {0};
    char *md = NULL;
    if (qa_eval_compare_md(pos[0], pos[1], lb, la, &md, &e)) { qa_err_print(&e); return 1; }
    fputs(md, stdout);
    int rc = 0;
    if (out && qa_write_file_atomic(out, md, strlen(md), &e)) { qa_err_print(&e); rc = 1; }
    free(md);
    return rc;
}
