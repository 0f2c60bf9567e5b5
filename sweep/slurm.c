/* slurm.c — the plan (plan.json, the printed table, the job scripts) and `qalign sweep submit`. The
 * job scripts are #SBATCH headers with the resources of one group of cells in front of the shipped
 * templates (slurm/sweep.sbatch → slurm/train.sbatch, slurm/eval.sbatch): the signal, requeue and
 * launcher logic lives there, once. */
#include "sweep/sweep_internal.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GIB (1024.0 * 1024.0 * 1024.0)

/* ---- the scripts -------------------------------------------------------------------------------- */
static void sbatch_res(const qa_sweep *s, qa_sbuf *b, const qa_sweep_res *r) {
    char tb[32];
    qa_sweep_fmt_time(tb, sizeof tb, r->time_s);
    qa_sb_printf(b, "#SBATCH --nodes=1\n#SBATCH --ntasks=%d\n#SBATCH --cpus-per-task=%d\n#SBATCH --mem=%lldM\n",
                 r->ranks, r->cpus_per_rank, (long long)r->mem_mb);
    if (r->gpus_per_rank) qa_sb_printf(b, "#SBATCH --gpus-per-task=%d\n", r->gpus_per_rank);
    qa_sb_printf(b, "#SBATCH --time=%s\n", tb);
    if (*s->set.slurm.partition) qa_sb_printf(b, "#SBATCH --partition=%s\n", s->set.slurm.partition);
    if (*s->set.slurm.account) qa_sb_printf(b, "#SBATCH --account=%s\n", s->set.slurm.account);
    if (*s->set.slurm.qos) qa_sb_printf(b, "#SBATCH --qos=%s\n", s->set.slurm.qos);
    for (int i = 0; i < s->set.slurm.extra.n; i++) qa_sb_printf(b, "#SBATCH %s\n", s->set.slurm.extra.v[i]);
}

static void exports(const qa_sweep *s, qa_sbuf *b) {
    qa_sb_puts(b, "export QALIGN=");
    sw_sh_quote(b, s->exe);
    qa_sb_puts(b, " QALIGN_SLURM_DIR=");
    sw_sh_quote(b, s->slurm_dir);
    qa_sb_printf(b, " LAUNCH=%s MAX_RESTARTS=%d MPIRUN_FLAGS=", s->set.launch, s->set.slurm.max_restarts);
    sw_sh_quote(b, s->set.slurm.mpirun_flags);
    qa_sb_puts(b, "\n");
}

/* the qalign eval options of the grid's evaluation */
void sw_eval_options(const qa_sweep *s, const char *device, sw_argv *a) {
    char *dd = sw_abs_path(s->cwd, s->set.data_dir);
    qa_sbuf t = {0}, l = {0};
    for (int i = 0; i < s->set.evaluation.tasks.n; i++) qa_sb_printf(&t, "%s%s", i ? "," : "", s->set.evaluation.tasks.v[i]);
    for (int i = 0; i < s->n_eval_langs; i++) qa_sb_printf(&l, "%s%s", i ? "," : "", s->eval_langs[i]);
    sw_argv_add(a, "--data");
    sw_argv_add(a, dd);
    sw_argv_add(a, "--tasks");
    sw_argv_add(a, t.p ? t.p : "all");
    sw_argv_add(a, "--langs");
    sw_argv_add(a, l.p ? l.p : "all");
    sw_argv_add(a, "--limit");
    sw_argv_addf(a, "%d", s->set.evaluation.limit);
    sw_argv_add(a, "--gold");
    sw_argv_add(a, s->set.evaluation.gold);
    sw_argv_add(a, "--batch");
    sw_argv_addf(a, "%d", s->set.evaluation.batch);
    sw_argv_add(a, "--device");
    sw_argv_add(a, device);
    free(dd);
    qa_sb_free(&t);
    qa_sb_free(&l);
}

static void header(const qa_sweep *s, qa_sbuf *b, const char *what) {
    qa_sb_printf(b, "#!/bin/bash\n# qalign sweep '%s': %s.\n# Written by `qalign sweep plan|submit` from %s;\n"
                    "# `qalign sweep submit` passes the cells' list and the array range. docs/sweeps.md\n",
                 s->set.name, what, s->grid_path);
}

static int write_script(const qa_sweep *s, const char *name, const qa_sbuf *b, qa_err *e) {
    char *dir = qa_sweep_path(s, "slurm");
    QA_TRY(qa_mkdir_p(dir, e));
    int rc = qa_sb_write(b, dir, name, e);
    free(dir);
    return rc;
}

static char *list_line(const qa_sweep *s, int i) {
    const qa_sweep_cell *c = &s->cells[i];
    char *l = qa_malloc(strlen(c->run_dir) + strlen(s->models[c->model].path) + 3);
    sprintf(l, "%s\t%s\n", c->run_dir, s->models[c->model].path);
    return l;
}

static int write_list(const qa_sweep *s, const char *dir, const char *name, const int *cells, int n, qa_err *e) {
    qa_sbuf b = {0};
    qa_sb_put(&b, "", 0);
    for (int k = 0; k < n; k++) {
        char *l = list_line(s, cells[k]);
        qa_sb_puts(&b, l);
        free(l);
    }
    QA_TRY(qa_mkdir_p(dir, e));
    int rc = qa_sb_write(&b, dir, name, e);
    qa_sb_free(&b);
    return rc;
}

static int model_first_cell(const qa_sweep *s, int model) {
    for (int i = 0; i < s->n_cells; i++)
        if (s->cells[i].model == model) return i;
    return -1;
}

static int write_scripts(const qa_sweep *s, qa_err *e) {
    char *logs = qa_sweep_path(s, "logs"), *sl = qa_sweep_path(s, "slurm");
    int rc = qa_mkdir_p(logs, e);
    for (int g = 0; !rc && g < s->n_groups; g++) {
        const qa_sweep_group *gr = &s->groups[g];
        char name[64], what[256], lname[64];
        snprintf(lname, sizeof lname, "train-g%d.list", g);
        rc = write_list(s, sl, lname, gr->cells, gr->n, e);
        /* training array */
        qa_sbuf b = {0};
        snprintf(what, sizeof what, "training of resource group g%d (%d cells, one per array task)", g, gr->n);
        header(s, &b, what);
        qa_sb_printf(&b, "#SBATCH --job-name=qa-%s-train-g%d\n#SBATCH --array=0-%d", s->set.name, g, gr->n - 1);
        if (s->set.slurm.max_parallel) qa_sb_printf(&b, "%%%d", s->set.slurm.max_parallel);
        qa_sb_puts(&b, "\n");
        sbatch_res(s, &b, &gr->res);
        qa_sb_printf(&b, "#SBATCH --requeue\n#SBATCH --signal=B:USR1@%d\n#SBATCH --open-mode=append\n"
                         "#SBATCH --output=%s/train-g%d-%%A_%%a.out\n\nset -u\n", s->set.slurm.signal_s, logs, g);
        exports(s, &b);
        qa_sb_printf(&b, "exec bash \"$QALIGN_SLURM_DIR/sweep.sbatch\" \"${1:-%s/%s}\"\n", sl, lname);
        snprintf(name, sizeof name, "train-g%d.sbatch", g);
        if (!rc) rc = write_script(s, name, &b, e);
        qa_sb_free(&b);
        /* evaluation array: task i evaluates the adapter of the training task i (aftercorr) */
        snprintf(what, sizeof what, "evaluation of resource group g%d (task i evaluates the adapter of training task i)",
                 g);
        header(s, &b, what);
        qa_sb_printf(&b, "#SBATCH --job-name=qa-%s-eval-g%d\n#SBATCH --array=0-%d\n", s->set.name, g, gr->n - 1);
        sbatch_res(s, &b, &gr->eval_res);
        qa_sb_printf(&b, "#SBATCH --requeue\n#SBATCH --open-mode=append\n#SBATCH --output=%s/eval-g%d-%%A_%%a.out\n\n"
                         "set -u\n", logs, g);
        exports(s, &b);
        qa_sb_printf(&b, "LIST=${1:-%s/%s}\nTASK=${SLURM_ARRAY_TASK_ID:-0}\n"
                         "LINE=$(sed -n \"$((TASK + 1))p\" \"$LIST\")\nRUN_DIR=${LINE%%%%$'\\t'*}\n"
                         "MODEL=${LINE#*$'\\t'}\n"
                         "if [ -z \"$RUN_DIR\" ] || [ ! -f \"$RUN_DIR/adapter/adapter_config.json\" ]; then\n"
                         "    echo \"qalign: error: array task $TASK: no adapter in ${RUN_DIR:-line $((TASK + 1)) of $LIST}\"\n"
                         "    exit 2\nfi\n"
                         "echo \"qalign: evaluating $RUN_DIR/adapter (log: $RUN_DIR/eval.log)\"\n"
                         "exec >>\"$RUN_DIR/eval.log\" 2>&1\n"
                         "exec bash \"$QALIGN_SLURM_DIR/eval.sbatch\" --model \"$MODEL\" --adapter \"$RUN_DIR/adapter\" "
                         "--out \"$RUN_DIR/eval\"", sl, lname);
        sw_argv ea = {0};
        sw_eval_options(s, gr->eval_res.device, &ea);
        qa_sb_puts(&b, " ");
        sw_sh_argv(&b, sw_argv_get(&ea));
        sw_argv_free(&ea);
        qa_sb_puts(&b, "\n");
        snprintf(name, sizeof name, "eval-g%d.sbatch", g);
        if (!rc) rc = write_script(s, name, &b, e);
        qa_sb_free(&b);
    }
    /* per model: one job evaluates the base model and/or several adapters on one load */
    for (int m = 0; !rc && m < s->n_models; m++) {
        int c0 = model_first_cell(s, m);
        if (c0 < 0) continue;
        const qa_sweep_res *er = &s->cells[c0].eval_res;
        char what[512], name[600];
        char *bd = qa_sweep_base_dir(s, m);
        qa_sbuf b = {0};
        snprintf(what, sizeof what, "evaluations on model '%s' loaded once: the base model (2nd argument 'base') and the "
                 "adapters of the cells in LIST", s->models[m].name);
        header(s, &b, what);
        qa_sb_printf(&b, "#SBATCH --job-name=qa-%s-eval-%s\n", s->set.name, s->models[m].name);
        sbatch_res(s, &b, er);
        qa_sb_printf(&b, "#SBATCH --output=%s/eval-%s-%%j.out\n\nset -u\n", logs, s->models[m].name);
        exports(s, &b);
        qa_sb_puts(&b, "LIST=${1:-/dev/null}\nBASE_DIR=");
        sw_sh_quote(&b, bd);
        qa_sb_puts(&b, "\nARGS=()\nDIRS=()\nif [ \"${2:-}\" = base ]; then\n"
                       "    mkdir -p \"$BASE_DIR\"\n    ARGS+=(--adapter none --out \"$BASE_DIR\")\n    DIRS+=(\"$BASE_DIR\")\nfi\n"
                       "while IFS=$'\\t' read -r RUN_DIR MODEL; do\n"
                       "    [ -n \"$RUN_DIR\" ] || continue\n"
                       "    ARGS+=(--adapter \"$RUN_DIR/adapter\" --out \"$RUN_DIR/eval\")\n    DIRS+=(\"$RUN_DIR\")\n"
                       "done < \"$LIST\"\n");
        qa_sb_printf(&b, "LOG=%s/eval-%s-${SLURM_JOB_ID:-0}.log\n", logs, s->models[m].name);
        qa_sb_puts(&b, "bash \"$QALIGN_SLURM_DIR/eval.sbatch\" --model ");
        sw_sh_quote(&b, s->models[m].path);
        qa_sb_puts(&b, " \"${ARGS[@]}\" ");
        sw_argv ea = {0};
        sw_eval_options(s, er->device, &ea);
        sw_sh_argv(&b, sw_argv_get(&ea));
        sw_argv_free(&ea);
        qa_sb_puts(&b, " >\"$LOG\" 2>&1\nrc=$?\n"
                       "for d in \"${DIRS[@]}\"; do cat \"$LOG\" >>\"$d/eval.log\"; done\n"
                       "echo \"qalign: evaluation of ${#DIRS[@]} model(s) exited with $rc (log: $LOG)\"\nexit $rc\n");
        snprintf(name, sizeof name, "eval-%s.sbatch", s->models[m].name);
        rc = write_script(s, name, &b, e);
        qa_sb_free(&b);
        free(bd);
    }
    /* the report, after everything */
    if (!rc) {
        qa_sbuf b = {0};
        header(s, &b, "the report (tables, heatmaps, loss curves) after every other job (afterany)");
        qa_sb_printf(&b, "#SBATCH --job-name=qa-%s-report\n#SBATCH --nodes=1\n#SBATCH --ntasks=1\n"
                         "#SBATCH --cpus-per-task=1\n#SBATCH --mem=2048M\n#SBATCH --time=00:30:00\n", s->set.name);
        if (*s->set.slurm.partition) qa_sb_printf(&b, "#SBATCH --partition=%s\n", s->set.slurm.partition);
        if (*s->set.slurm.account) qa_sb_printf(&b, "#SBATCH --account=%s\n", s->set.slurm.account);
        if (*s->set.slurm.qos) qa_sb_printf(&b, "#SBATCH --qos=%s\n", s->set.slurm.qos);
        for (int i = 0; i < s->set.slurm.extra.n; i++) qa_sb_printf(&b, "#SBATCH %s\n", s->set.slurm.extra.v[i]);
        qa_sb_printf(&b, "#SBATCH --output=%s/report-%%j.out\n\nset -u\ncd ", logs);
        sw_sh_quote(&b, s->cwd);
        qa_sb_puts(&b, " || exit 2\nexec ");
        sw_argv a = {0};
        sw_argv_add(&a, s->exe);
        sw_argv_add(&a, "sweep");
        sw_argv_add(&a, "report");
        sw_argv_add(&a, s->grid_path);
        for (int i = 0; i < s->sets.n; i++) {
            sw_argv_add(&a, "--set");
            sw_argv_add(&a, s->sets.v[i]);
        }
        sw_sh_argv(&b, sw_argv_get(&a));
        sw_argv_free(&a);
        qa_sb_puts(&b, "\n");
        rc = write_script(s, "report.sbatch", &b, e);
        qa_sb_free(&b);
    }
    free(logs);
    free(sl);
    return rc;
}

/* ---- plan.json, the printed plan ------------------------------------------------------------------ */
static json_t *res_json(const qa_sweep_res *r) {
    json_t *j = json_object();
    char tb[32];
    qa_sweep_fmt_time(tb, sizeof tb, r->time_s);
    json_object_set_new(j, "device", json_string(r->device));
    json_object_set_new(j, "ranks", json_integer(r->ranks));
    json_object_set_new(j, "gpus_per_rank", json_integer(r->gpus_per_rank));
    json_object_set_new(j, "cpus_per_rank", json_integer(r->cpus_per_rank));
    json_object_set_new(j, "mem_mb", json_integer(r->mem_mb));
    json_object_set_new(j, "time", json_string(tb));
    json_object_set_new(j, "time_s", json_integer(r->time_s));
    return j;
}

int sw_write_plan_json(const qa_sweep *s, qa_err *e) {
    json_t *j = json_object();
    json_object_set_new(j, "sweep", json_string(s->set.name));
    json_object_set_new(j, "grid", json_string(s->grid_path));
    json_object_set_new(j, "dir", json_string(s->set.dir));
    json_object_set_new(j, "cwd", json_string(s->cwd));
    json_object_set_new(j, "qalign", json_string(s->exe));
    json_t *models = json_array();
    for (int m = 0; m < s->n_models; m++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(s->models[m].name));
        json_object_set_new(o, "path", json_string(s->models[m].path));
        json_object_set_new(o, "params", json_integer(s->models[m].params));
        char *bd = qa_sweep_base_dir(s, m);
        json_object_set_new(o, "base_eval_dir", json_string(bd));
        free(bd);
        json_array_append_new(models, o);
    }
    json_object_set_new(j, "models", models);
    json_t *cells = json_array();
    for (int i = 0; i < s->n_cells; i++) {
        const qa_sweep_cell *c = &s->cells[i];
        json_t *o = json_object();
        char hb[32];
        snprintf(hb, sizeof hb, "%016llx", (unsigned long long)c->hash);
        json_object_set_new(o, "index", json_integer(i));
        json_object_set_new(o, "id", json_string(c->id));
        json_object_set_new(o, "name", json_string(c->name));
        json_object_set_new(o, "hash", json_string(hb));
        json_object_set_new(o, "model", json_string(s->models[c->model].name));
        json_object_set_new(o, "mix", json_string(s->mixes[c->mix].name));
        json_object_set_new(o, "seed", json_integer(c->seed));
        json_t *ax = json_object();
        for (int a = 0; a < s->n_axes; a++) json_object_set_new(ax, s->axes[a].key, json_string(c->axis_text[a]));
        json_object_set_new(o, "axes", ax);
        json_object_set_new(o, "run_dir", json_string(c->run_dir));
        json_object_set_new(o, "config", json_string(c->config_yaml));
        json_object_set_new(o, "total_steps", json_integer(c->total_steps));
        json_object_set_new(o, "rows_per_step", json_integer(c->rows_per_step));
        json_object_set_new(o, "seq_len", json_integer(c->seq_len));
        json_object_set_new(o, "mem_train_bytes", json_real(c->mem_train));
        json_object_set_new(o, "mem_eval_bytes", json_real(c->mem_eval));
        json_object_set_new(o, "train_flops", json_real(c->flops));
        json_object_set_new(o, "group", json_integer(c->group));
        json_object_set_new(o, "train", res_json(&c->res));
        json_object_set_new(o, "eval", res_json(&c->eval_res));
        json_array_append_new(cells, o);
    }
    json_object_set_new(j, "cells", cells);
    json_t *groups = json_array();
    for (int g = 0; g < s->n_groups; g++) {
        json_t *o = json_object(), *cl = json_array();
        for (int k = 0; k < s->groups[g].n; k++) json_array_append_new(cl, json_integer(s->groups[g].cells[k]));
        json_object_set_new(o, "cells", cl);
        json_object_set_new(o, "train", res_json(&s->groups[g].res));
        json_object_set_new(o, "eval", res_json(&s->groups[g].eval_res));
        json_array_append_new(groups, o);
    }
    json_object_set_new(j, "groups", groups);
    QA_TRY(qa_mkdir_p(s->set.dir, e));
    char *p = qa_sweep_path(s, "plan.json");
    int rc = sw_json_write(p, j, e);
    free(p);
    json_decref(j);
    return rc;
}

static void res_text(char *buf, size_t n, const qa_sweep_res *r) {
    char tb[32];
    qa_sweep_fmt_time(tb, sizeof tb, r->time_s);
    if (r->gpus_per_rank)
        snprintf(buf, n, "%d GPU rank(s) x %d cpus, mem %lldM, time %s", r->ranks, r->cpus_per_rank, (long long)r->mem_mb, tb);
    else
        snprintf(buf, n, "%d CPU rank(s) x %d cpus, mem %lldM, time %s", r->ranks, r->cpus_per_rank, (long long)r->mem_mb, tb);
}

int qa_sweep_write_plan(qa_sweep *s, FILE *f, qa_err *e) {
    if (!s->sized) return QA_ERR(e, "sweep %s: size the cells first (qa_sweep_size)", s->set.name);
    if (!*s->slurm_dir)
        return QA_ERR(e, "cannot find qalign's slurm/ templates (train.sbatch, eval.sbatch, sweep.sbatch) next to %s: set "
                      "QALIGN_SLURM_DIR to the slurm/ directory of the qalign source tree", s->exe);
    QA_TRY(sw_write_plan_json(s, e));
    QA_TRY(write_scripts(s, e));
    if (!f) return 0;
    fprintf(f, "sweep %s: %d cells (%d model(s) x %d mix(es) x %d seed(s)", s->set.name, s->n_cells, s->n_models,
            s->n_mixes, s->n_seeds);
    for (int a = 0; a < s->n_axes; a++) fprintf(f, " x %d %s", s->axes[a].values.n, s->axes[a].key);
    if (s->n_excludes || s->n_includes) fprintf(f, "; %d exclude, %d include", s->n_excludes, s->n_includes);
    fprintf(f, ")\n  grid %s\n  dir  %s\n\n", s->grid_path, s->set.dir);
    int w = 4;
    for (int i = 0; i < s->n_cells; i++)
        if ((int)strlen(s->cells[i].id) > w) w = (int)strlen(s->cells[i].id);
    fprintf(f, "%4s  %-*s %6s %13s %10s  %s\n", "#", w, "cell", "steps", "rows x tokens", "mem/rank", "group");
    for (int i = 0; i < s->n_cells; i++) {
        const qa_sweep_cell *c = &s->cells[i];
        char rt[32];
        snprintf(rt, sizeof rt, "%lld x %d", (long long)c->rows_per_step, c->seq_len);
        fprintf(f, "%4d  %-*s %6lld %13s %6.2f GiB  g%d\n", i, w, c->id, (long long)c->total_steps, rt, c->mem_train / GIB,
                c->group);
    }
    fprintf(f, "\nresource groups (one training array + one evaluation array each):\n");
    for (int g = 0; g < s->n_groups; g++) {
        char a[200], b[200];
        res_text(a, sizeof a, &s->groups[g].res);
        res_text(b, sizeof b, &s->groups[g].eval_res);
        fprintf(f, "  g%d: %d cell(s); training %s; evaluation %s\n", g, s->groups[g].n, a, b);
    }
    fprintf(f, "memory: the estimate of `qalign train --dry-run` per rank (x %.2f + 512 MiB); time: %.0f GFLOP/s per CPU "
               "core, %.0f TFLOP/s per GPU assumed (resources.* in the grid)\n", s->set.resources.mem_slack,
            s->set.resources.cpu_gflops, s->set.resources.gpu_tflops);
    fprintf(f, "evaluation: %lld items per cell (%d language(s), limit %d), the base models once each\n",
            (long long)s->eval_items, s->n_eval_langs, s->set.evaluation.limit);
    fprintf(f, "job scripts: %s/slurm/ (train-gK.sbatch, eval-gK.sbatch, eval-<model>.sbatch, report.sbatch)\n",
            s->set.dir);
    return 0;
}

/* ---- submit ---------------------------------------------------------------------------------- */
static int append_line(const char *path, const char *line, qa_err *e) {
    FILE *fp = fopen(path, "a");
    if (!fp) { int en = errno; return QA_ERR(e, "cannot open %s to record the job: %s", path, strerror(en)); }
    int bad = fputs(line, fp) < 0;
    bad |= fclose(fp) != 0;
    if (bad) return QA_ERR(e, "writing %s failed (disk full?): the job was submitted but is not recorded", path);
    return 0;
}

/* sbatch ... --parsable: the job id */
static int sbatch(const qa_sweep_run_opts *o, sw_argv *a, FILE *f, char *id, size_t cap, qa_err *e) {
    qa_sbuf line = {0};
    sw_sh_argv(&line, sw_argv_get(a));
    if (f) fprintf(f, "  %s\n", line.p);
    qa_sb_free(&line);
    if (o->dry_run) {
        snprintf(id, cap, "<%s>", "jobid");
        return 0;
    }
    char *out = NULL, *err = NULL;
    int st = 0;
    int rc = sw_capture(sw_argv_get(a), &out, &err, &st, e);
    if (!rc && st != 0) {
        char *nl = err ? strchr(err, '\n') : NULL;
        if (nl) *nl = 0;
        rc = QA_ERR(e, "sbatch failed (exit %d): %s", st, err && *err ? err : "(no message)");
    }
    if (!rc) {
        size_t k = 0;
        while (out[k] >= '0' && out[k] <= '9' && k + 1 < cap) id[k] = out[k], k++;
        id[k] = 0;
        if (!k) rc = QA_ERR(e, "sbatch printed no job id: '%s'", out);
    }
    free(out);
    free(err);
    return rc;
}

static int record(const qa_sweep *s, int sub, const char *kind, const char *id, int array, const int *cells, int n,
                  const char *extra, qa_err *e) {
    qa_sbuf b = {0};
    qa_sb_printf(&b, "%d\t%s\t%s\t%d\t", sub, kind, id, array);
    for (int k = 0; k < n; k++) qa_sb_printf(&b, "%s%s", k ? " " : "", s->cells[cells[k]].id);
    if (extra) qa_sb_printf(&b, "%s%s", n ? " " : "", extra);
    qa_sb_puts(&b, "\n");
    char *p = qa_sweep_path(s, "slurm/jobs.tsv");
    int rc = append_line(p, b.p, e);
    free(p);
    qa_sb_free(&b);
    return rc;
}

static int next_submission(const qa_sweep *s) {
    sw_job *jobs = NULL;
    int n = 0, mx = 0;
    qa_err e = {0};
    if (sw_jobs_read(s, &jobs, &n, &e) == 0)
        for (int i = 0; i < n; i++)
            if (jobs[i].submission > mx) mx = jobs[i].submission;
    sw_jobs_free(jobs, n);
    return mx + 1;
}

int qa_sweep_submit(qa_sweep *s, const qa_sweep_run_opts *o, FILE *f, qa_err *e) {
    if (!o->dry_run && !sw_in_path("sbatch"))
        return QA_ERR(e, "sbatch is not in PATH: is Slurm installed here? (qalign sweep submit --local runs the cells on "
                      "this machine)");
    QA_TRY(qa_sweep_write_plan(s, NULL, e));
    qa_sweep_jobs jobs;
    qa_sweep_jobs_query(&jobs);
    int *train = qa_calloc((size_t)s->n_cells, sizeof(int)), *evalonly = qa_calloc((size_t)s->n_cells, sizeof(int));
    int n_done = 0, n_active = 0, n_train = 0, n_eval = 0;
    for (int i = 0; i < s->n_cells; i++) {
        qa_cell_status st;
        qa_sweep_cell_status(s, i, &jobs, &st);
        if (st.state == QA_CELL_DONE) n_done++;
        else if (st.state == QA_CELL_QUEUED || st.state == QA_CELL_RUNNING) n_active++;
        else if (st.trained) evalonly[i] = 1, n_eval++;
        else train[i] = 1, n_train++;
    }
    int *need_base = qa_calloc((size_t)s->n_models, sizeof(int));
    int n_base = 0;
    for (int m = 0; m < s->n_models; m++) {
        if (model_first_cell(s, m) < 0) continue;
        char *bd = qa_sweep_base_dir(s, m);
        char ref[64];
        snprintf(ref, sizeof ref, "base:%s", s->models[m].name);
        int active = sw_ref_active(s, ref, &jobs);
        if (!sw_eval_done(s, bd) && !active) need_base[m] = 1, n_base++;
        free(bd);
    }
    int rc = 0;
    if (f)
        fprintf(f, "sweep %s: %d cells: %d done, %d queued or running, %d to train, %d to evaluate; %d base "
                   "evaluation(s)\n", s->set.name, s->n_cells, n_done, n_active, n_train, n_eval, n_base);
    if (!n_train && !n_eval && !n_base) {
        if (f) fprintf(f, "nothing to submit%s\n", n_active ? " (wait for the queued and running cells: qalign sweep "
                                                             "status)" : "; qalign sweep report writes the report");
        goto out;
    }
    int sub = next_submission(s);
    char subdir_rel[64];
    snprintf(subdir_rel, sizeof subdir_rel, "slurm/submit-%03d", sub);
    char *subdir = qa_sweep_path(s, subdir_rel), *sl = qa_sweep_path(s, "slurm");
    qa_sbuf deps = {0};
    qa_sb_put(&deps, "", 0);
    if (f) fprintf(f, "%s (lists in %s):\n", o->dry_run ? "would submit" : "submitting", subdir);
    for (int i = 0; !rc && !o->dry_run && i < s->n_cells; i++)
        if (train[i] || evalonly[i]) rc = qa_sweep_prepare_cell(s, i, e);
    for (int g = 0; !rc && g < s->n_groups; g++) {
        int *cl = qa_calloc((size_t)s->groups[g].n, sizeof(int)), m = 0;
        for (int k = 0; k < s->groups[g].n; k++)
            if (train[s->groups[g].cells[k]]) cl[m++] = s->groups[g].cells[k];
        if (m) {
            char lname[64], lpath[4200], tid[64], eid[64];
            snprintf(lname, sizeof lname, "train-g%d.list", g);
            snprintf(lpath, sizeof lpath, "%s/%s", subdir, lname);
            if (!o->dry_run) rc = write_list(s, subdir, lname, cl, m, e);
            sw_argv a = {0};
            sw_argv_add(&a, "sbatch");
            sw_argv_add(&a, "--parsable");
            if (s->set.slurm.max_parallel) sw_argv_addf(&a, "--array=0-%d%%%d", m - 1, s->set.slurm.max_parallel);
            else sw_argv_addf(&a, "--array=0-%d", m - 1);
            sw_argv_addf(&a, "%s/train-g%d.sbatch", sl, g);
            sw_argv_add(&a, lpath);
            if (!rc) rc = sbatch(o, &a, f, tid, sizeof tid, e);
            sw_argv_free(&a);
            if (!rc && !o->dry_run) rc = record(s, sub, "train", tid, 1, cl, m, NULL, e);
            if (!rc) qa_sb_printf(&deps, ":%s", tid);
            sw_argv_add(&a, "sbatch");
            sw_argv_add(&a, "--parsable");
            sw_argv_addf(&a, "--array=0-%d", m - 1);
            sw_argv_addf(&a, "--dependency=aftercorr:%s", tid);
            sw_argv_add(&a, "--kill-on-invalid-dep=yes");
            sw_argv_addf(&a, "%s/eval-g%d.sbatch", sl, g);
            sw_argv_add(&a, lpath);
            if (!rc) rc = sbatch(o, &a, f, eid, sizeof eid, e);
            sw_argv_free(&a);
            if (!rc && !o->dry_run) rc = record(s, sub, "eval", eid, 1, cl, m, NULL, e);
            if (!rc) qa_sb_printf(&deps, ":%s", eid);
        }
        free(cl);
    }
    for (int mo = 0; !rc && mo < s->n_models; mo++) {
        int *cl = qa_calloc((size_t)s->n_cells, sizeof(int)), m = 0;
        for (int i = 0; i < s->n_cells; i++)
            if (evalonly[i] && s->cells[i].model == mo) cl[m++] = i;
        if (m || need_base[mo]) {
            char lname[600], lpath[5000], id[64], extra[600];
            snprintf(lname, sizeof lname, "eval-%s.list", s->models[mo].name);
            snprintf(lpath, sizeof lpath, "%s/%s", subdir, lname);
            if (!o->dry_run) rc = write_list(s, subdir, lname, cl, m, e);
            sw_argv a = {0};
            sw_argv_add(&a, "sbatch");
            sw_argv_add(&a, "--parsable");
            sw_argv_addf(&a, "%s/eval-%s.sbatch", sl, s->models[mo].name);
            sw_argv_add(&a, lpath);
            if (need_base[mo]) sw_argv_add(&a, "base");
            if (!rc) rc = sbatch(o, &a, f, id, sizeof id, e);
            sw_argv_free(&a);
            snprintf(extra, sizeof extra, "base:%s", s->models[mo].name);
            if (!rc && !o->dry_run) rc = record(s, sub, "evalmany", id, 0, cl, m, need_base[mo] ? extra : NULL, e);
            if (!rc) qa_sb_printf(&deps, ":%s", id);
        }
        free(cl);
    }
    if (!rc) {
        char id[64];
        sw_argv a = {0};
        sw_argv_add(&a, "sbatch");
        sw_argv_add(&a, "--parsable");
        sw_argv_addf(&a, "--dependency=afterany%s", deps.p);
        sw_argv_addf(&a, "%s/report.sbatch", sl);
        rc = sbatch(o, &a, f, id, sizeof id, e);
        sw_argv_free(&a);
        if (!rc && !o->dry_run) rc = record(s, sub, "report", id, 0, NULL, 0, NULL, e);
    }
    if (!rc && f && !o->dry_run) {
        qa_sbuf cmd = {0};
        sw_argv a = {0};
        sw_argv_add(&a, "qalign");
        sw_argv_add(&a, "sweep");
        sw_argv_add(&a, "status");
        sw_argv_add(&a, s->grid_path);
        for (int i = 0; i < s->sets.n; i++) sw_argv_add(&a, "--set"), sw_argv_add(&a, s->sets.v[i]);
        sw_sh_argv(&cmd, sw_argv_get(&a));
        fprintf(f, "submitted (recorded in %s/slurm/jobs.tsv); follow with: %s\n", s->set.dir, cmd.p);
        sw_argv_free(&a);
        qa_sb_free(&cmd);
    }
    if (rc) qa_err_prefix(e, "submission %d stopped; jobs already submitted are in %s/slurm/jobs.tsv", sub, s->set.dir);
    qa_sb_free(&deps);
    free(subdir);
    free(sl);
out:
    free(train);
    free(evalonly);
    free(need_base);
    qa_sweep_jobs_free(&jobs);
    return rc;
}
