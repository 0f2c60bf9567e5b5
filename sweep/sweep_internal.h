/* sweep_internal.h — helpers shared by the sweep/ sources (not part of the API). */
#ifndef QA_SWEEP_INTERNAL_H
#define QA_SWEEP_INTERNAL_H
#include "sweep/sweep.h"
#include "train/train_config.h"

#include <jansson.h>

/* Append one problem line to errs; returns 1 (so `n += sw_problem(...)` counts it). */
int sw_problem(qa_sbuf *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* grid.c */
int sw_grid_load(qa_sweep *s, const char *grid_path, const char *const *sets, int n_sets, qa_sbuf *errs);
char *sw_norm_path(const char *p);                 /* lexical: no ".", ".." folded */
char *sw_abs_path(const char *cwd, const char *p); /* cwd/p normalized; "" stays "" */
int sw_is_train_key(const qa_train_config *tc, const char *key, const char **suggest);
/* 1 when model.device runs on a GPU (cuda, cuda-fp32): one GPU per rank */
int sw_device_gpu(const char *device);

/* ---- subprocesses (proc.c) ------------------------------------------------------------------- */
/* Run argv (PATH lookup), stdout captured into *out (heap, NUL-terminated), stderr to errout (heap,
 * may be NULL to discard). *status = exit code, or 128 + signal. -1 only when it could not start. */
int sw_capture(const char *const *argv, char **out, char **errout, int *status, qa_err *e);
/* Run argv with stdout and stderr appended to log_path (created); stdin from /dev/null; env_add
 * (NULL-terminated "NAME=value" list, may be NULL) on top of this process's environment. */
int sw_run_logged(const char *const *argv, const char *const *env_add, const char *log_path, int *status, qa_err *e);
/* 1 if prog is an executable in PATH. */
int sw_in_path(const char *prog);
/* argv as one shell-quoted line (for messages and scripts). */
void sw_sh_argv(qa_sbuf *b, const char *const *argv);
void sw_sh_quote(qa_sbuf *b, const char *s);

/* a growable argv (heap strings) */
typedef struct sw_argv {
    char **v;
    int n, cap;
} sw_argv;
void sw_argv_add(sw_argv *a, const char *s);
void sw_argv_addf(sw_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sw_argv_free(sw_argv *a);
/* NULL-terminated view (valid until the next add) */
const char *const *sw_argv_get(sw_argv *a);

/* ---- files --------------------------------------------------------------------------------- */
/* JSON file → object (NULL + error naming the file) */
json_t *sw_json_load(const char *path, qa_err *e);
/* write j (indent 2, sorted as inserted) atomically */
int sw_json_write(const char *path, json_t *j, qa_err *e);
/* 1 if results.json in dir matches the sweep's evaluation (tasks, languages, limit, gold) */
int sw_eval_done(const qa_sweep *s, const char *dir);
/* the last line of a log that reports a failure ("error:", "fatal:", "failed", ...) into buf */
int sw_error_line(const char *log_path, char *buf, size_t n);
/* The identity of a training config: FNV-1a 64 of its resolved JSON dump with checkpoint.dir blank
 * (the same cell in another sweep directory has the same hash). yaml: a resolved config (cell.yaml,
 * or the config.yaml a run writes); name is used in messages. */
int sw_config_hash(const char *yaml, const char *name, uint64_t *h, qa_err *e);

/* ---- submissions (slurm/jobs.tsv: one line per job: submission, kind, job id, cell indices) --- */
typedef struct sw_job {
    int submission;
    char kind[16];           /* train | eval | evalmany | report */
    char id[32];             /* Slurm job id (array id for arrays) */
    int array;               /* 1: array job (task i = the i-th cell) */
    int n;
    char **cells;            /* cell ids in task order ("base:<model>" for a base evaluation) */
} sw_job;
int sw_jobs_read(const qa_sweep *s, sw_job **jobs, int *n, qa_err *e);
void sw_jobs_free(sw_job *jobs, int n);
/* 1 if the latest Slurm job that holds id (a cell id or "base:<model>") is pending or running */
int sw_ref_active(const qa_sweep *s, const char *id, const qa_sweep_jobs *jobs);

/* slurm.c */
void sw_eval_options(const qa_sweep *s, const char *device, sw_argv *a);  /* qalign eval options of the grid */
int sw_write_plan_json(const qa_sweep *s, qa_err *e);
#endif
