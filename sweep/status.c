/* status.c — where each cell stands: its run directory (metrics.jsonl, the adapter, the evaluation,
 * the logs), the submissions (slurm/jobs.tsv) with squeue / sacct, and the local runner's lock. */
#include "sweep/sweep_internal.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

const char *qa_cell_state_name(qa_cell_state s) {
    static const char *const N[] = {"planned", "queued", "running", "done", "failed"};
    return s >= 0 && s <= QA_CELL_FAILED ? N[s] : "?";
}

static void jobs_push(qa_sweep_jobs *j, const char *ref, const char *state, const char *reason) {
    j->ref = qa_realloc(j->ref, sizeof *j->ref * (size_t)(j->n + 1));
    j->state = qa_realloc(j->state, sizeof *j->state * (size_t)(j->n + 1));
    j->reason = qa_realloc(j->reason, sizeof *j->reason * (size_t)(j->n + 1));
    snprintf(j->ref[j->n], sizeof j->ref[j->n], "%s", ref);
    snprintf(j->state[j->n], sizeof j->state[j->n], "%s", state);
    snprintf(j->reason[j->n], sizeof j->reason[j->n], "%s", reason ? reason : "");
    j->n++;
}

/* "ref|state|reason" lines */
static void parse_lines(qa_sweep_jobs *j, char *out) {
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f1 = strchr(line, '|');
        if (!f1) continue;
        *f1++ = 0;
        char *f2 = strchr(f1, '|');
        if (f2) *f2++ = 0;
        char *sp = strchr(f1, ' '); /* sacct: "CANCELLED by 0" */
        if (sp) *sp = 0;
        jobs_push(j, line, f1, f2);
    }
}

void qa_sweep_jobs_query(qa_sweep_jobs *j) {
    memset(j, 0, sizeof *j);
    if (!sw_in_path("squeue")) return;
    const char *argv[] = {"squeue", "--me", "-h", "-r", "-o", "%i|%T|%r", NULL};
    char *out = NULL;
    int st = 1;
    qa_err e = {0};
    if (sw_capture(argv, &out, NULL, &st, &e) == 0 && st == 0) {
        j->slurm = 1;
        parse_lines(j, out);
    }
    free(out);
}

void qa_sweep_jobs_free(qa_sweep_jobs *j) {
    free(j->ref);
    free(j->state);
    free(j->reason);
    memset(j, 0, sizeof *j);
}

static int is_active(const char *state) {
    static const char *const A[] = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                                    "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"};
    for (size_t i = 0; i < sizeof A / sizeof A[0]; i++)
        if (!strcmp(state, A[i])) return 1;
    return 0;
}

static const char *job_state(const qa_sweep_jobs *j, const char *ref, const char **reason) {
    for (int i = 0; j && i < j->n; i++)
        if (!strcmp(j->ref[i], ref)) {
            if (reason) *reason = j->reason[i];
            return j->state[i];
        }
    return NULL;
}

/* the Slurm reference of cell id in job record r ("" if it is not there) */
static void ref_in(const sw_job *r, const char *id, char *ref, size_t n) {
    ref[0] = 0;
    for (int k = 0; k < r->n; k++)
        if (!strcmp(r->cells[k], id)) {
            if (r->array) snprintf(ref, n, "%s_%d", r->id, k);
            else snprintf(ref, n, "%s", r->id);
            return;
        }
}

int sw_ref_active(const qa_sweep *s, const char *id, const qa_sweep_jobs *jobs) {
    sw_job *rec = NULL;
    int nr = 0, act = 0;
    qa_err e = {0};
    if (!jobs || !jobs->slurm || sw_jobs_read(s, &rec, &nr, &e)) return 0;
    for (int r = 0; r < nr && !act; r++) {
        char ref[96];
        ref_in(&rec[r], id, ref, sizeof ref);
        const char *st = *ref ? job_state(jobs, ref, NULL) : NULL;
        act = st && is_active(st);
    }
    sw_jobs_free(rec, nr);
    return act;
}

/* the local runner (qalign sweep submit --local): "pid \t cell index \t phase" */
static int local_runner(const qa_sweep *s, int *cell, char *phase, size_t n) {
    char *p = qa_sweep_path(s, "local.lock"), *text = NULL;
    qa_err e = {0};
    int alive = 0;
    if (qa_path_exists(p) && qa_read_file(p, 4096, &text, NULL, &e) == 0) {
        long pid = strtol(text, NULL, 10);
        char *t1 = strchr(text, '\t');
        *cell = t1 ? atoi(t1 + 1) : -1;
        char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        snprintf(phase, n, "%.*s", t2 ? (int)strcspn(t2 + 1, "\n") : 0, t2 ? t2 + 1 : "");
        alive = pid > 0 && kill((pid_t)pid, 0) == 0;
    }
    free(text);
    free(p);
    return alive;
}

/* the last training step of metrics.jsonl: step, loss, tokens/s, and the mean step time of the last 20 */
static void progress(const char *run_dir, qa_cell_status *st) {
    char *p = qa_path_join(run_dir, "metrics.jsonl"), *text = NULL;
    qa_err e = {0};
    st->step = 0;
    st->last_loss = st->tokens_per_s = st->eta_s = NAN;
    if (qa_path_exists(p) && qa_read_file(p, 0, &text, NULL, &e) == 0) {
        double times[20];
        int nt = 0;
        for (char *line = text; *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            json_error_t je;
            json_t *j = json_loads(line, 0, &je);
            if (j && json_object_get(j, "loss")) {
                st->step = json_integer_value(json_object_get(j, "step"));
                st->last_loss = json_number_value(json_object_get(j, "loss"));
                st->tokens_per_s = json_number_value(json_object_get(j, "tokens_per_s"));
                times[nt++ % 20] = json_number_value(json_object_get(j, "step_time_s"));
            }
            json_decref(j);
            if (!nl) break;
            line = nl + 1;
        }
        if (nt && st->total > st->step) {
            double m = 0;
            int k = nt < 20 ? nt : 20;
            for (int i = 0; i < k; i++) m += times[i];
            st->eta_s = m / k * (double)(st->total - st->step);
        } else if (nt) {
            st->eta_s = 0;
        }
    }
    free(text);
    free(p);
}

/* the final state of a job that left the queue, from sacct when Slurm keeps accounting ("" if not) */
static void sacct_state(const char *ref, char *buf, size_t n) {
    if (!sw_in_path("sacct")) return;
    const char *argv[] = {"sacct", "-n", "-P", "-X", "-j", ref, "-o", "State,ExitCode", NULL};
    char *out = NULL;
    int st = 1;
    qa_err e = {0};
    if (sw_capture(argv, &out, NULL, &st, &e) == 0 && st == 0 && out && *out) {
        char *nl = strchr(out, '\n');
        if (nl) *nl = 0;
        char *bar = strchr(out, '|');
        if (bar) *bar = ' ';
        snprintf(buf, n, "%s %s (sacct)", ref, out);
    }
    free(out);
}

void qa_sweep_cell_status(const qa_sweep *s, int i, const qa_sweep_jobs *jobs, qa_cell_status *st) {
    const qa_sweep_cell *c = &s->cells[i];
    memset(st, 0, sizeof *st);
    st->total = c->total_steps;
    qa_err e = {0};
    if (!st->total) { /* not sized: the plan recorded it in cell.json */
        char *cj = qa_path_join(c->run_dir, "cell.json");
        json_t *j = qa_path_exists(cj) ? sw_json_load(cj, &e) : NULL;
        if (j) st->total = json_integer_value(json_object_get(j, "total_steps"));
        json_decref(j);
        free(cj);
    }
    char *ad = qa_path_join(c->run_dir, "adapter/adapter_model.safetensors"),
         *ac = qa_path_join(c->run_dir, "adapter/adapter_config.json"), *ev = qa_path_join(c->run_dir, "eval"),
         *tl = qa_path_join(c->run_dir, "train.log"), *el = qa_path_join(c->run_dir, "eval.log");
    st->trained = qa_path_exists(ad) && qa_path_exists(ac);
    st->evaluated = st->trained && sw_eval_done(s, ev);
    progress(c->run_dir, st);
    if (st->trained && st->step < st->total) st->step = st->total;
    if (st->trained && st->evaluated) {
        st->state = QA_CELL_DONE;
        goto out;
    }
    /* Slurm: the jobs recorded for this cell, the latest submission first */
    sw_job *rec = NULL;
    int nr = 0;
    char last_final[128] = "", last_ref[96] = "";
    if (sw_jobs_read(s, &rec, &nr, &e) == 0) {
        for (int r = nr - 1; r >= 0; r--) {
            char ref[96];
            ref_in(&rec[r], c->id, ref, sizeof ref);
            if (!*ref) continue;
            if (!*last_ref) snprintf(last_ref, sizeof last_ref, "%s", ref);
            const char *reason = NULL, *js = jobs && jobs->slurm ? job_state(jobs, ref, &reason) : NULL;
            if (js && is_active(js)) {
                int running = !strcmp(js, "RUNNING") || !strcmp(js, "COMPLETING");
                /* a running job wins over one pending behind it (training runs, its evaluation waits) */
                if (running || st->state != QA_CELL_RUNNING) {
                    qa_cell_state ns = running ? QA_CELL_RUNNING : QA_CELL_QUEUED;
                    if (st->state != QA_CELL_RUNNING) {
                        st->state = ns;
                        st->detail[0] = 0;
                        snprintf(st->job, sizeof st->job, "%s", ref);
                        snprintf(st->phase, sizeof st->phase, "%s", !strcmp(rec[r].kind, "train") ? "train" : "eval");
                        if (!running && reason && *reason && strcmp(reason, "None"))
                            snprintf(st->detail, sizeof st->detail, "%s", reason);
                    }
                }
            } else if (jobs && !*last_final) {
                const char *fs = job_state(jobs, ref, NULL);
                if (fs) snprintf(last_final, sizeof last_final, "%s %s", ref, fs);
            }
        }
        sw_jobs_free(rec, nr);
    }
    if (st->state == QA_CELL_RUNNING || st->state == QA_CELL_QUEUED) goto out;
    int lc = -1;
    char phase[16];
    if (local_runner(s, &lc, phase, sizeof phase)) {
        st->state = lc == i ? QA_CELL_RUNNING : QA_CELL_QUEUED;
        snprintf(st->job, sizeof st->job, "local");
        snprintf(st->phase, sizeof st->phase, "%s", lc == i ? phase : "");
        goto out;
    }
    int started = qa_path_exists(tl) || qa_path_exists(el) || st->step > 0;
    if (!started && !*last_final) {
        st->state = QA_CELL_PLANNED;
        goto out;
    }
    st->state = QA_CELL_FAILED;
    char line[400] = "";
    if (st->trained) {
        if (!sw_error_line(el, line, sizeof line)) snprintf(line, sizeof line, "trained; the evaluation is missing");
        snprintf(st->detail, sizeof st->detail, "evaluation: %s", line);
    } else {
        if (sw_error_line(tl, line, sizeof line)) snprintf(st->detail, sizeof st->detail, "%s", line);
        else if (st->step > 0)
            snprintf(st->detail, sizeof st->detail, "stopped at step %lld of %lld (checkpoint kept); submit again to "
                     "resume", (long long)st->step, (long long)st->total);
        else snprintf(st->detail, sizeof st->detail, "no longer queued and never trained (cancelled?)");
    }
    if (!*last_final && *last_ref && jobs && jobs->slurm) sacct_state(last_ref, last_final, sizeof last_final);
    if (*last_final) {
        size_t l = strlen(st->detail);
        snprintf(st->detail + l, sizeof st->detail - l, " [Slurm: %s]", last_final);
    }
out:
    free(ad);
    free(ac);
    free(ev);
    free(tl);
    free(el);
}

static void fmt_eta(char *b, size_t n, double s) {
    if (!isfinite(s)) snprintf(b, n, "-");
    else qa_sweep_fmt_time(b, n, (int)(s + 0.5));
}

int qa_sweep_print_status(const qa_sweep *s, FILE *f, int as_json) {
    qa_sweep_jobs jobs;
    qa_sweep_jobs_query(&jobs);
    int count[5] = {0}, failed = 0;
    qa_cell_status *st = qa_calloc((size_t)s->n_cells, sizeof *st);
    for (int i = 0; i < s->n_cells; i++) {
        qa_sweep_cell_status(s, i, &jobs, &st[i]);
        count[st[i].state]++;
    }
    failed = count[QA_CELL_FAILED];
    if (as_json) {
        json_t *a = json_array();
        for (int i = 0; i < s->n_cells; i++) {
            json_t *o = json_object();
            json_object_set_new(o, "cell", json_string(s->cells[i].id));
            json_object_set_new(o, "run_dir", json_string(s->cells[i].run_dir));
            json_object_set_new(o, "state", json_string(qa_cell_state_name(st[i].state)));
            json_object_set_new(o, "trained", json_boolean(st[i].trained));
            json_object_set_new(o, "evaluated", json_boolean(st[i].evaluated));
            json_object_set_new(o, "step", json_integer(st[i].step));
            json_object_set_new(o, "total", json_integer(st[i].total));
            json_object_set_new(o, "loss", isfinite(st[i].last_loss) ? json_real(st[i].last_loss) : json_null());
            json_object_set_new(o, "tokens_per_s", isfinite(st[i].tokens_per_s) ? json_real(st[i].tokens_per_s) : json_null());
            json_object_set_new(o, "eta_s", isfinite(st[i].eta_s) ? json_real(st[i].eta_s) : json_null());
            json_object_set_new(o, "job", json_string(st[i].job));
            json_object_set_new(o, "phase", json_string(st[i].phase));
            json_object_set_new(o, "detail", json_string(st[i].detail));
            json_array_append_new(a, o);
        }
        char *t = json_dumps(a, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fprintf(f, "%s\n", t);
        free(t);
        json_decref(a);
    } else {
        fprintf(f, "sweep %s: %d cells: %d done, %d running, %d queued, %d failed, %d planned%s\n", s->set.name,
                s->n_cells, count[QA_CELL_DONE], count[QA_CELL_RUNNING], count[QA_CELL_QUEUED], failed,
                count[QA_CELL_PLANNED], jobs.slurm ? " (Slurm: squeue)" : "");
        int w = 4;
        for (int i = 0; i < s->n_cells; i++)
            if ((int)strlen(s->cells[i].id) > w) w = (int)strlen(s->cells[i].id);
        fprintf(f, "%-*s  %-8s %-6s %11s %9s %9s %9s  %-12s %s\n", w, "cell", "state", "phase", "step/total", "loss",
                "tok/s", "ETA", "job", "detail");
        for (int i = 0; i < s->n_cells; i++) {
            const qa_cell_status *c = &st[i];
            char sb[32], lb[32], tb[32], eb[32];
            snprintf(sb, sizeof sb, "%lld/%lld", (long long)c->step, (long long)c->total);
            if (isfinite(c->last_loss)) snprintf(lb, sizeof lb, "%.4f", c->last_loss);
            else snprintf(lb, sizeof lb, "-");
            if (isfinite(c->tokens_per_s)) snprintf(tb, sizeof tb, "%.0f", c->tokens_per_s);
            else snprintf(tb, sizeof tb, "-");
            fmt_eta(eb, sizeof eb, c->state == QA_CELL_RUNNING || c->state == QA_CELL_QUEUED ? c->eta_s : NAN);
            fprintf(f, "%-*s  %-8s %-6s %11s %9s %9s %9s  %-12s %s\n", w, s->cells[i].id, qa_cell_state_name(c->state),
                    *c->phase ? c->phase : "-", sb, lb, tb, eb, *c->job ? c->job : "-", c->detail);
        }
        int nb = 0;
        for (int m = 0; m < s->n_models; m++) {
            char *bd = qa_sweep_base_dir(s, m);
            nb += sw_eval_done(s, bd);
            free(bd);
        }
        fprintf(f, "base evaluations: %d of %d models done (%s/base/)\n", nb, s->n_models, s->set.dir);
    }
    free(st);
    qa_sweep_jobs_free(&jobs);
    return failed;
}
