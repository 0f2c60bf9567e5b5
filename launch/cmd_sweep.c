/* cmd_sweep.c — `qalign sweep plan|submit|status|report GRID`: a grid of training runs (models x
 * language mixes x seeds x config axes) under Slurm job arrays or on this machine, each cell
 * evaluated on the paper's tasks x languages, one report (sweep/sweep.h, docs/sweeps.md).
 *
 * Exit codes: 0 ok, 1 runtime error (a job or cell failed, sbatch refused), 2 bad input (the grid, a
 * cell, a run directory of another config): nothing is then written or submitted. */
#include "launch/commands.h"

#include "common/qa_mem.h"
#include "sweep/sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qalign sweep plan GRID [--set key=value ...]\n"
            "       qalign sweep submit GRID [--local [--ranks N]] [--dry-run] [--set key=value ...]\n"
            "       qalign sweep status GRID [--json] [--set key=value ...]\n"
            "       qalign sweep report GRID [--no-figures] [--set key=value ...]\n"
            "       qalign sweep --help-grid\n\n"
            "A grid file (YAML, configs/sweeps/) names a base training config, models (name, path, template,\n"
            "resources or auto), mixes (named lists of training files), seeds and config axes (lora.r: [8, 16]),\n"
            "with optional exclude / include cells. Every cell is one training run with its own run directory,\n"
            "evaluated on the paper's tasks x languages against its base model (evaluated once per model).\n\n"
            "  plan      resolve and check every cell, size its resources from the memory estimate of\n"
            "            `qalign train --dry-run`, group equal resources into job arrays, write the job scripts\n"
            "            (DIR/slurm/) and print what submit would do\n"
            "  submit    submit to Slurm: a training array per resource group, an evaluation array after each\n"
            "            of its tasks (aftercorr), the base evaluations, the report after all (afterany);\n"
            "            finished cells are skipped, queued and running ones left alone\n"
            "    --local     run the same cells on this machine one after another (mpirun -np N when a cell\n"
            "                has N > 1 ranks), then the evaluations (one model load per model), then the report\n"
            "    --ranks N   --local: ranks of every cell (and evaluation) instead of the plan's\n"
            "    --mpirun P  --local: the MPI launcher (default mpirun; flags: slurm.mpirun_flags)\n"
            "    --dry-run   print what would be submitted or run; change nothing\n"
            "  status    a table of cells: state (planned, queued, running, done, failed) from the run\n"
            "            directories and squeue, step / total, last loss, tokens/s, ETA, the error of a failed cell\n"
            "  report    DIR/report/: <task>.md/.csv (rows model x mix, columns languages + average: Δ against\n"
            "            the base model with items and a 95%% interval, training languages marked), summary.md/.csv,\n"
            "            results.csv, sweep.h5, heatmaps and the loss curves (PNG + SVG)\n"
            "  --set key=value   a grid setting (dir=..., models_dir=..., evaluation.limit=..., slurm.partition=...)\n"
            "                    or a training config key applied to every cell (train.max_steps=...); repeatable\n"
            "  --help-grid       list the grid settings with their defaults\n"
            "Exit codes: 0 ok, 1 runtime error or failed cells, 2 bad input (nothing written or submitted).\n");
}

static void print_problems(const qa_sbuf *errs, int n, const char *grid, const char *what) {
    if (errs->p) {
        for (const char *l = errs->p; *l;) {
            const char *nl = strchr(l, '\n');
            int len = nl ? (int)(nl - l) : (int)strlen(l);
            fprintf(stderr, "qalign: error: %.*s\n", len, l);
            l += len + (nl ? 1 : 0);
        }
    }
    fprintf(stderr, "qalign sweep: %d problem(s) in %s; %s\n", n, grid, what);
}

int cmd_sweep(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "--help-grid")) {
        int n;
        const qa_cfg_key *k = qa_sweep_settings_keys(&n);
        printf("grid settings (YAML keys of a grid file, or --set key=value); besides them a grid has models, mixes,\n"
               "seeds, axes, set, exclude, include (docs/sweeps.md):\n");
        qa_cfg c;
        qa_sweep_settings tmp;
        qa_cfg_init(&c, k, n, &tmp);
        qa_cfg_print_help(&c, stdout);
        qa_cfg_free(&c);
        return 0;
    }
    int plan = !strcmp(sub, "plan"), submit = !strcmp(sub, "submit"), status = !strcmp(sub, "status"),
        report = !strcmp(sub, "report");
    if (!plan && !submit && !status && !report) {
        fprintf(stderr, "qalign sweep: unknown subcommand '%s' (plan, submit, status, report)\n\n", sub);
        usage(stderr);
        return 2;
    }
    const char *grid = NULL, *mpirun = NULL;
    const char **sets = qa_calloc((size_t)argc + 1, sizeof(char *));
    int n_sets = 0, local = 0, dry = 0, json = 0, figures = 1, ranks = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(sets);
            return 0;
        } else if (more && !strcmp(a, "--set")) {
            sets[n_sets++] = argv[++i];
        } else if (!strncmp(a, "--set=", 6)) {
            sets[n_sets++] = a + 6;
        } else if (submit && !strcmp(a, "--local")) {
            local = 1;
        } else if (submit && !strcmp(a, "--dry-run")) {
            dry = 1;
        } else if (submit && more && !strcmp(a, "--ranks")) {
            ranks = atoi(argv[++i]);
            if (ranks < 1) {
                fprintf(stderr, "qalign sweep: --ranks needs a positive integer, got '%s'\n", argv[i]);
                free(sets);
                return 2;
            }
        } else if (submit && more && !strcmp(a, "--mpirun")) {
            mpirun = argv[++i];
        } else if (status && !strcmp(a, "--json")) {
            json = 1;
        } else if (report && !strcmp(a, "--no-figures")) {
            figures = 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "qalign sweep %s: unknown or incomplete option '%s' (qalign sweep --help)\n", sub, a);
            free(sets);
            return 2;
        } else if (!grid) {
            grid = a;
        } else {
            fprintf(stderr, "qalign sweep %s: one grid file, got '%s' and '%s'\n", sub, grid, a);
            free(sets);
            return 2;
        }
    }
    if (!grid) {
        fprintf(stderr, "qalign sweep %s: give the grid file (e.g. configs/sweeps/tiny.yaml)\n", sub);
        free(sets);
        return 2;
    }
    if ((ranks || mpirun) && !local) {
        fprintf(stderr, "qalign sweep submit: --ranks and --mpirun go with --local\n");
        free(sets);
        return 2;
    }
    qa_sbuf errs = {0};
    qa_sweep *s = NULL;
    qa_err e = {0};
    int rc = 0;
    const char *nothing = plan ? "nothing planned" : submit ? "nothing submitted" : "stopping";
    int n = qa_sweep_load(&s, grid, sets, n_sets, &errs);
    if (n) {
        print_problems(&errs, n < 0 ? 1 : n, grid, nothing);
        rc = 2;
        goto out;
    }
    if (plan || submit) {
        n = qa_sweep_size(s, &errs);
        if (!n) n = qa_sweep_check_run_dirs(s, &errs);
        if (n) {
            print_problems(&errs, n, grid, nothing);
            rc = 2;
            goto out;
        }
    }
    if (plan) {
        if (qa_sweep_write_plan(s, stdout, &e)) goto fail;
        printf("\n");
        qa_sweep_run_opts o = {.dry_run = 1};
        if (qa_sweep_submit(s, &o, stdout, &e)) goto fail;
        printf("\nthe plan: %s/plan.json; submit with: qalign sweep submit %s%s (or --local on this machine)\n",
               s->set.dir, grid, n_sets ? " --set ..." : "");
    } else if (submit) {
        qa_sweep_run_opts o = {.dry_run = dry, .local = local, .ranks = ranks, .mpirun = mpirun};
        if (local ? qa_sweep_run_local(s, &o, stdout, &e) : qa_sweep_submit(s, &o, stdout, &e)) goto fail;
    } else if (status) {
        qa_sweep_print_status(s, stdout, json);
    } else {
        qa_sweep_report_opts o = {.png = figures, .svg = figures, .out = stdout};
        if (qa_sweep_report(s, &o, &e)) goto fail;
    }
    goto out;
fail:
    qa_err_print(&e);
    rc = 1;
out:
    qa_sb_free(&errs);
    qa_sweep_free(s);
    free(sets);
    return rc;
}
