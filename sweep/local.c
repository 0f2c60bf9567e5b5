/* local.c — `qalign sweep submit --local`: the cells of the grid on this machine, one after another,
 * with the command lines and files of the Slurm jobs (cell.yaml, train.log, metrics.jsonl,
 * checkpoints/, adapter/, eval/, eval.log); then per model one `qalign eval` of the base model and
 * every new adapter (the model is loaded once), then the report. */
#include "sweep/sweep_internal.h"
#include "common/qa_clock.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int write_lock(const qa_sweep *s, int cell, const char *phase, qa_err *e) {
    char buf[128];
    snprintf(buf, sizeof buf, "%ld\t%d\t%s\n", (long)getpid(), cell, phase);
    char *p = qa_sweep_path(s, "local.lock");
    int rc = qa_write_file_atomic(p, buf, strlen(buf), e);
    free(p);
    return rc;
}

/* mpirun [flags] -np N, or nothing for one rank without launch: mpirun */
static void launcher(const qa_sweep *s, const qa_sweep_run_opts *o, int ranks, sw_argv *a) {
    if (ranks <= 1 && strcmp(s->set.launch, "mpirun")) return;
    sw_argv_add(a, o->mpirun && *o->mpirun ? o->mpirun : "mpirun");
    char *flags = qa_strdup(s->set.slurm.mpirun_flags), *save = NULL;
    for (char *t = strtok_r(flags, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) sw_argv_add(a, t);
    free(flags);
    sw_argv_add(a, "-np");
    sw_argv_addf(a, "%d", ranks);
}

static int append_text(const char *path, const char *text, qa_err *e) {
    FILE *f = fopen(path, "a");
    if (!f) return QA_ERR(e, "cannot open %s: %s", path, strerror(errno));
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    if (bad) return QA_ERR(e, "writing %s failed (disk full?)", path);
    return 0;
}

static int train_cell(qa_sweep *s, const qa_sweep_run_opts *o, int i, FILE *f, int *ok, qa_err *e) {
    const qa_sweep_cell *c = &s->cells[i];
    QA_TRY(qa_sweep_prepare_cell(s, i, e));
    QA_TRY(write_lock(s, i, "train", e));
    int ranks = o->ranks > 0 ? o->ranks : c->res.ranks;
    char *log = qa_path_join(c->run_dir, "train.log"), *cfg = qa_path_join(c->run_dir, "cell.yaml");
    char head[4600];
    snprintf(head, sizeof head, "qalign: job local restart 0: %d rank(s) on this machine, run dir %s\n", ranks, c->run_dir);
    int rc = append_text(log, head, e);
    sw_argv a = {0};
    launcher(s, o, ranks, &a);
    sw_argv_add(&a, s->exe);
    sw_argv_add(&a, "train");
    sw_argv_add(&a, "--config");
    sw_argv_add(&a, cfg);
    int st = 0;
    double t0 = qa_now_s();
    const char *env[] = {"HDF5_USE_FILE_LOCKING=FALSE", NULL};
    if (!rc) rc = sw_run_logged(sw_argv_get(&a), env, log, &st, e);
    sw_argv_free(&a);
    if (!rc) {
        qa_cell_status cs;
        qa_sweep_cell_status(s, i, NULL, &cs);
        *ok = st == 0 && cs.trained;
        if (*ok) {
            fprintf(f, "  trained %s: %lld steps, loss %.4f, %.1f s\n", c->id, (long long)cs.step, cs.last_loss,
                    qa_now_s() - t0);
        } else {
            char line[400] = "";
            sw_error_line(log, line, sizeof line);
            if (st == 0 && !*line) snprintf(line, sizeof line, "exited 0 without an adapter (stopped by a signal?)");
            fprintf(f, "  FAILED %s (exit %d): %s (log %s)\n", c->id, st, line, log);
            if (st == 0) st = 1;
            char tail[600];
            snprintf(tail, sizeof tail, "qalign: error: training exited with %d\n", st);
            if (!cs.trained && !strstr(line, "error")) append_text(log, tail, e);
        }
        fflush(f);
    }
    free(log);
    free(cfg);
    return rc;
}

/* one `qalign eval` per model: the base (when missing) and the listed cells' adapters */
static int eval_model(qa_sweep *s, const qa_sweep_run_opts *o, int m, const int *cells, int n, int base, FILE *f,
                      int *failed, qa_err *e) {
    QA_TRY(write_lock(s, n ? cells[0] : -1, "eval", e));
    char *bd = qa_sweep_base_dir(s, m), *logs = qa_sweep_path(s, "logs");
    QA_TRY(qa_mkdir_p(logs, e));
    char lname[600];
    snprintf(lname, sizeof lname, "eval-%s-local.log", s->models[m].name);
    char *log = qa_path_join(logs, lname);
    const qa_sweep_res *er = n ? &s->cells[cells[0]].eval_res : NULL;
    int c0 = -1;
    for (int i = 0; i < s->n_cells && c0 < 0; i++)
        if (s->cells[i].model == m) c0 = i;
    if (!er) er = &s->cells[c0].eval_res;
    sw_argv a = {0};
    launcher(s, o, o->ranks > 0 ? o->ranks : er->ranks, &a);
    sw_argv_add(&a, s->exe);
    sw_argv_add(&a, "eval");
    sw_argv_add(&a, "--model");
    sw_argv_add(&a, s->models[m].path);
    if (base) {
        sw_argv_add(&a, "--adapter");
        sw_argv_add(&a, "none");
        sw_argv_add(&a, "--out");
        sw_argv_add(&a, bd);
    }
    for (int k = 0; k < n; k++) {
        const qa_sweep_cell *c = &s->cells[cells[k]];
        sw_argv_add(&a, "--adapter");
        sw_argv_addf(&a, "%s/adapter", c->run_dir);
        sw_argv_add(&a, "--out");
        sw_argv_addf(&a, "%s/eval", c->run_dir);
    }
    sw_eval_options(s, er->device, &a);
    sw_argv_add(&a, "--threads"); /* the CPU backend's pool: the group's cores per rank */
    sw_argv_addf(&a, "%d", er->cpus_per_rank);
    const char *env[] = {"HDF5_USE_FILE_LOCKING=FALSE", NULL};
    int st = 0;
    double t0 = qa_now_s();
    unlink(log);
    int rc = sw_run_logged(sw_argv_get(&a), env, log, &st, e);
    sw_argv_free(&a);
    char *text = NULL;
    if (!rc) rc = qa_read_file(log, 0, &text, NULL, e);
    /* each evaluated directory keeps the log, as the Slurm jobs do */
    if (!rc && base) {
        QA_TRY(qa_mkdir_p(bd, e));
        char *p = qa_path_join(bd, "eval.log");
        rc = append_text(p, text, e);
        free(p);
    }
    for (int k = 0; !rc && k < n; k++) {
        char *p = qa_path_join(s->cells[cells[k]].run_dir, "eval.log");
        rc = append_text(p, text, e);
        free(p);
    }
    if (!rc) {
        if (st == 0) {
            fprintf(f, "  evaluated model '%s': %s%d adapter(s) on one load, %.1f s\n", s->models[m].name,
                    base ? "the base model and " : "", n, qa_now_s() - t0);
        } else {
            char line[400] = "";
            sw_error_line(log, line, sizeof line);
            fprintf(f, "  FAILED evaluation of model '%s' (exit %d): %s (log %s)\n", s->models[m].name, st, line, log);
            *failed += n + base;
        }
        fflush(f);
    }
    free(text);
    free(log);
    free(logs);
    free(bd);
    return rc;
}

int qa_sweep_run_local(qa_sweep *s, const qa_sweep_run_opts *o, FILE *f, qa_err *e) {
    QA_TRY(sw_write_plan_json(s, e));
    int lc;
    char *lp = qa_sweep_path(s, "local.lock");
    if (qa_path_exists(lp)) {
        char *text = NULL;
        if (qa_read_file(lp, 4096, &text, NULL, e) == 0) {
            long pid = strtol(text, NULL, 10);
            free(text);
            if (pid > 0 && pid != getpid() && kill((pid_t)pid, 0) == 0) {
                free(lp);
                return QA_ERR(e, "another qalign sweep --local (pid %ld) is running this sweep (%s/local.lock)", pid,
                              s->set.dir);
            }
        }
    }
    (void)lc;
    qa_sweep_jobs jobs;
    qa_sweep_jobs_query(&jobs);
    int rc = write_lock(s, -1, "", e);
    int *todo = qa_calloc((size_t)s->n_cells, sizeof(int)), n_train = 0, n_fail = 0, n_skip = 0;
    for (int i = 0; i < s->n_cells; i++) {
        qa_cell_status st;
        qa_sweep_cell_status(s, i, &jobs, &st);
        if (st.state == QA_CELL_DONE) todo[i] = 0;
        else if (st.job[0] && strcmp(st.job, "local") && (st.state == QA_CELL_QUEUED || st.state == QA_CELL_RUNNING))
            todo[i] = 0, n_skip++;  /* Slurm has it */
        else todo[i] = st.trained ? 2 : 1;
        n_train += todo[i] == 1;
    }
    if (f) {
        fprintf(f, "sweep %s on this machine: %d cells, %d to train%s\n", s->set.name, s->n_cells, n_train,
                n_skip ? " (cells queued or running under Slurm are left to it)" : "");
        fflush(f);
    }
    int k = 0;
    for (int i = 0; !rc && i < s->n_cells; i++) {
        if (todo[i] != 1) continue;
        if (f) fprintf(f, "[%d/%d] training %s\n", ++k, n_train, s->cells[i].id);
        if (o->dry_run) continue;
        int ok = 0;
        rc = train_cell(s, o, i, f ? f : stderr, &ok, e);
        if (!rc && ok) todo[i] = 2;
        else if (!rc) todo[i] = 0, n_fail++;
    }
    for (int m = 0; !rc && m < s->n_models; m++) {
        int *cl = qa_calloc((size_t)s->n_cells, sizeof(int)), n = 0, any = 0;
        for (int i = 0; i < s->n_cells; i++)
            if (s->cells[i].model == m) {
                any = 1;
                if (todo[i] == 2) cl[n++] = i;
            }
        char *bd = qa_sweep_base_dir(s, m);
        char ref[600];
        snprintf(ref, sizeof ref, "base:%s", s->models[m].name);
        int base = any && !sw_eval_done(s, bd) && !sw_ref_active(s, ref, &jobs);
        free(bd);
        if ((n || base) && f) fprintf(f, "evaluating on model '%s': %s%d adapter(s)\n", s->models[m].name,
                                      base ? "the base model, " : "", n);
        if ((n || base) && !o->dry_run) rc = eval_model(s, o, m, cl, n, base, f ? f : stderr, &n_fail, e);
        free(cl);
    }
    if (!rc && !o->dry_run) {
        qa_sweep_report_opts ro = {.png = 1, .svg = 1, .out = f};
        rc = qa_sweep_report(s, &ro, e);
    }
    unlink(lp);
    free(lp);
    free(todo);
    qa_sweep_jobs_free(&jobs);
    if (!rc && n_fail) return QA_ERR(e, "%d cell(s) failed (qalign sweep status %s shows why)", n_fail, s->grid_path);
    return rc;
}
