/* util.c — small pieces of the sweep: Slurm time and memory formats, JSON files, the evaluation
 * check, the error line of a log, the submissions file. */
#include "sweep/sweep_internal.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int sw_device_gpu(const char *device) { return !strcmp(device, "cuda") || !strcmp(device, "cuda-fp32"); }

int qa_sweep_res_equal(const qa_sweep_res *a, const qa_sweep_res *b) {
    return !strcmp(a->device, b->device) && a->ranks == b->ranks && a->gpus_per_rank == b->gpus_per_rank &&
           a->cpus_per_rank == b->cpus_per_rank && a->mem_mb == b->mem_mb && a->time_s == b->time_s;
}

void qa_sweep_fmt_time(char *buf, size_t n, int s) {
    if (s < 0) s = 0;
    int d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
    if (d) snprintf(buf, n, "%d-%02d:%02d:%02d", d, h, m, sec);
    else snprintf(buf, n, "%02d:%02d:%02d", h, m, sec);
}

static int parse_fields(const char *s, long *v, int max) {
    int k = 0;
    const char *p = s;
    for (;;) {
        if (!isdigit((unsigned char)*p) || k == max) return -1;
        char *end;
        v[k++] = strtol(p, &end, 10);
        p = end;
        if (!*p) return k;
        if (*p != ':') return -1;
        p++;
    }
}

int qa_sweep_parse_time(const char *s) {
    if (!s || !*s) return -1;
    long days = 0, v[3];
    const char *dash = strchr(s, '-');
    const char *rest = s;
    if (dash) {
        char *end;
        days = strtol(s, &end, 10);
        if (end != dash || dash == s) return -1;
        rest = dash + 1;
    }
    int k = parse_fields(rest, v, 3);
    if (k < 0) return -1;
    long secs;
    if (dash) secs = days * 86400 + v[0] * 3600 + (k > 1 ? v[1] * 60 : 0) + (k > 2 ? v[2] : 0);
    else if (k == 1) secs = v[0] * 60;                   /* minutes */
    else if (k == 2) secs = v[0] * 60 + v[1];            /* minutes:seconds */
    else secs = v[0] * 3600 + v[1] * 60 + v[2];
    if (secs <= 0 || secs > 365L * 86400) return -1;
    return (int)secs;
}

int64_t qa_sweep_parse_mem_mb(const char *s) {
    if (!s || !*s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) return -1;
    double mb;
    if (!*end || !strcmp(end, "M") || !strcmp(end, "MB")) mb = v;
    else if (!strcmp(end, "G") || !strcmp(end, "GB")) mb = v * 1024;
    else if (!strcmp(end, "T") || !strcmp(end, "TB")) mb = v * 1024 * 1024;
    else if (!strcmp(end, "K") || !strcmp(end, "KB")) mb = v / 1024;
    else return -1;
    return (int64_t)ceil(mb);
}

json_t *sw_json_load(const char *path, qa_err *e) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) {
        QA_ERR(e, "%s (line %d): %s", path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        QA_ERR(e, "%s: expected a JSON object", path);
        return NULL;
    }
    return j;
}

int sw_json_write(const char *path, json_t *j, qa_err *e) {
    char *t = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (!t) return QA_ERR(e, "%s: could not serialize", path);
    size_t n = strlen(t);
    t = qa_realloc(t, n + 2);
    t[n] = '\n';
    int rc = qa_write_file_atomic(path, t, n + 1, e);
    free(t);
    return rc;
}

/* results.json of an evaluation of exactly the grid's tasks, languages (both in order), limit and gold */
int sw_eval_done(const qa_sweep *s, const char *dir) {
    char *p = qa_path_join(dir, "results.json");
    int ok = 0;
    if (qa_path_exists(p)) {
        qa_err e = {0};
        json_t *j = sw_json_load(p, &e);
        if (j) {
            json_t *tasks = json_object_get(j, "tasks"), *langs = json_object_get(j, "languages");
            const char *gold = json_string_value(json_object_get(j, "gold"));
            ok = json_is_array(tasks) && json_is_array(langs) && gold && !strcmp(gold, s->set.evaluation.gold) &&
                 json_integer_value(json_object_get(j, "limit")) == s->set.evaluation.limit &&
                 (int)json_array_size(tasks) == s->n_eval_tasks && (int)json_array_size(langs) == s->n_eval_langs;
            for (int i = 0; ok && i < s->n_eval_tasks; i++) {
                const char *t = json_string_value(json_array_get(tasks, (size_t)i));
                ok = t && !strcmp(t, s->eval_tasks[i]);
            }
            for (int i = 0; ok && i < s->n_eval_langs; i++) {
                const char *l = json_string_value(json_array_get(langs, (size_t)i));
                ok = l && !strcmp(l, s->eval_langs[i]);
            }
            json_decref(j);
        }
    }
    free(p);
    return ok;
}

static int is_failure_line(const char *l) {
    return strstr(l, "error:") || strstr(l, "fatal:") || strstr(l, "qalign: cancelled") ||
           strstr(l, "time limit reached") || strstr(l, "exited on signal") || strstr(l, "Killed") ||
           strstr(l, "CANCELLED") || strstr(l, "DUE TO TIME LIMIT");
}

int sw_error_line(const char *log_path, char *buf, size_t n) {
    char *text = NULL;
    size_t len = 0;
    qa_err e = {0};
    buf[0] = 0;
    if (qa_read_file(log_path, 0, &text, &len, &e)) return 0;
    /* the last failure line after the last start of a run */
    char *start = text;
    for (char *p = text; (p = strstr(p, "qalign: job ")); p++) start = p;
    for (char *line = start; *line;) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line) : strlen(line);
        char *one = qa_strndup(line, l);
        if (is_failure_line(one)) snprintf(buf, n, "%s", one);
        free(one);
        line += l + (nl ? 1 : 0);
    }
    free(text);
    return buf[0] != 0;
}

/* slurm/jobs.tsv: submission \t kind \t job id \t array(0|1) \t cell ids joined by ' ' */
int sw_jobs_read(const qa_sweep *s, sw_job **jobs, int *n, qa_err *e) {
    *jobs = NULL;
    *n = 0;
    char *p = qa_sweep_path(s, "slurm/jobs.tsv");
    if (!qa_path_exists(p)) {
        free(p);
        return 0;
    }
    char *text;
    if (qa_read_file(p, 64u << 20, &text, NULL, e)) {
        free(p);
        return -1;
    }
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *f[5] = {0};
        int k = 0;
        for (char *q = line; k < 5; k++) {
            f[k] = q;
            char *tab = k < 4 ? strchr(q, '\t') : NULL;
            if (!tab) {
                k++;
                break;
            }
            *tab = 0;
            q = tab + 1;
        }
        if (k == 5 && f[4]) {
            *jobs = qa_realloc(*jobs, sizeof **jobs * (size_t)(*n + 1));
            sw_job *j = &(*jobs)[(*n)++];
            memset(j, 0, sizeof *j);
            j->submission = atoi(f[0]);
            snprintf(j->kind, sizeof j->kind, "%s", f[1]);
            snprintf(j->id, sizeof j->id, "%s", f[2]);
            j->array = atoi(f[3]);
            char *save = NULL;
            for (char *c = strtok_r(f[4], " ", &save); c; c = strtok_r(NULL, " ", &save)) {
                j->cells = qa_realloc(j->cells, sizeof(char *) * (size_t)(j->n + 1));
                j->cells[j->n++] = qa_strdup(c);
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    free(text);
    free(p);
    return 0;
}

void sw_jobs_free(sw_job *jobs, int n) {
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < jobs[i].n; k++) free(jobs[i].cells[k]);
        free(jobs[i].cells);
    }
    free(jobs);
}
