/* sweep.h — one grid file → many training runs (cells) → one evaluation each → one report
 * (docs/sweeps.md). The layer sits between the CLI (launch/cmd_sweep.c) and train/, eval/,
 * analysis/: it uses them as libraries to resolve and size cells (train_config, data, memory
 * estimate) and to read results (eval results.json / predictions.jsonl, figures through
 * analysis/plot.c), and runs the work itself as subprocesses of the qalign binary (`qalign train`,
 * `qalign eval`), under Slurm job arrays or one after another on this machine (--local) — the same
 * command lines, directories and files either way.
 *
 *   qa_sweep *s;  qa_sweep_load(&s, "configs/sweeps/tiny.yaml", sets, n_sets, &errs);  // parse + resolve
 *   qa_sweep_size(s, &errs);                  // data plans, memory estimates, resources, groups
 *   qa_sweep_write_plan(s, stdout, &e);       // plan.json and the job scripts (slurm/) under the sweep dir
 *   qa_sweep_submit(s, &opts, &e) | qa_sweep_run_local(s, &opts, &e);
 *   qa_sweep_status(s, stdout, &e);  qa_sweep_report(s, &e);
 *
 * Errors that concern one cell or one grid entry are collected (one line each, in errs) so that a
 * user sees every bad cell at once; the call then fails and nothing is written or submitted.
 */
#ifndef QA_SWEEP_H
#define QA_SWEEP_H
#include "common/qa_err.h"
#include "common/qa_sbuf.h"
#include "io/yaml_config.h"

#include <stdint.h>
#include <stdio.h>

/* ---- the grid's settings (a qa_cfg schema: YAML scalars and --set key=value) -------------- */
typedef struct qa_sweep_settings {
    char *name;            /* sweep name ("" -> the grid file's stem) */
    char *dir;             /* sweep directory ("" -> runs/sweeps/<name>) */
    char *base;            /* base training config every cell starts from ("" = the schema defaults) */
    char *models_dir;      /* prefix of relative model paths ("" = the current directory) */
    char *data_dir;        /* paper-data directory: mixes' relative files, the evaluation's tasks.json */
    char *run_dir;         /* a cell's run directory under dir: placeholders {model} {mix} {seed} {axes} */
    qa_strlist seeds;      /* train.seed values ("" -> the base config's train.seed) */
    char *launch;          /* auto | srun | mpirun | direct: how the ranks of one cell start */
    struct {
        qa_strlist tasks, langs;
        int limit;         /* items per (task, language); 0 = all */
        char *gold;
        int ranks;         /* ranks of one evaluation */
        int batch;         /* rows per forward (qalign eval --batch) */
    } evaluation;
    struct {
        int cpus_per_rank;     /* 0: train.threads when set, else 1 (cpu) / 8 (cuda) */
        int max_ranks;         /* auto ranks: at most this many (a power of two dividing grad_accum) */
        double target_hours;   /* auto ranks: add ranks while the time estimate exceeds this */
        double gpu_mem_gb;     /* memory of one GPU (auto: a cell must fit one) */
        double mem_slack;      /* host memory = estimate x slack + 512 MiB per rank */
        double cpu_gflops;     /* throughput assumed per CPU core (time estimate) */
        double gpu_tflops;     /* throughput assumed per GPU (time estimate) */
        char *time_min, *time_max; /* bounds of an auto time limit */
    } resources;
    struct {
        char *partition, *account, *qos;
        int max_parallel;      /* array throttle %N (0 = none) */
        int signal_s;          /* --signal=B:USR1@N: seconds before the limit to checkpoint and requeue */
        int max_restarts;      /* requeues of one task before it fails loudly */
        qa_strlist extra;      /* more #SBATCH options, e.g. --qos=normal */
        char *mpirun_flags;    /* passed to mpirun (launch mpirun, and --local with ranks > 1) */
        char *gpus;            /* auto | yes | no: does the cluster offer GPUs (model.device auto) */
    } slurm;
} qa_sweep_settings;

/* ---- resources of one job (array task) -------------------------------------------------------- */
typedef struct qa_sweep_res {
    char device[16];       /* model.device after auto: "cpu" | "cuda" | "cuda-fp32" | "emu" */
    int ranks;             /* tasks on one node */
    int gpus_per_rank;     /* 0 | 1 */
    int cpus_per_rank;
    int64_t mem_mb;        /* host memory of the node's job share (--mem) */
    int time_s;            /* wall-clock limit */
} qa_sweep_res;
int qa_sweep_res_equal(const qa_sweep_res *a, const qa_sweep_res *b);
/* "1-02:03:04" (days only when > 0) */
void qa_sweep_fmt_time(char *buf, size_t n, int seconds);
/* Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S → seconds (-1: malformed) */
int qa_sweep_parse_time(const char *s);
/* "512M", "16G", "1.5T", "2048" (MiB) → MiB (-1: malformed) */
int64_t qa_sweep_parse_mem_mb(const char *s);

/* ---- grid entries ------------------------------------------------------------------------------ */
typedef struct qa_sweep_model {
    char *name;
    char *path;            /* absolute model directory */
    char *template_name;   /* data.template for its cells ("" = the base config's) */
    char *device;          /* cpu | cuda | cuda-fp32 | emu | auto ("" = the base config's model.device) */
    char *resolved_device; /* after auto */
    qa_sweep_res given;    /* fields the grid fixes; 0 / -1 = auto (see has_*) */
    int has_ranks, has_cpus, has_mem, has_time;
    double gpu_mem_gb;     /* 0 = the grid default */
    qa_strlist sets;       /* "key=value" overrides of this model's cells */
    int64_t params;        /* from config.json */
    int line;
} qa_sweep_model;

typedef struct qa_sweep_mix {
    char *name;
    qa_strlist files;      /* absolute */
    qa_strlist langs;      /* languages seen in training (marked in the report) */
    int line;
} qa_sweep_mix;

typedef struct qa_sweep_axis {
    char *key;             /* a train config key */
    qa_strlist values;
    int line;
} qa_sweep_axis;

/* an exclude / include entry: model, mix, seed and axis values (-1 / NULL = any) */
typedef struct qa_sweep_filter {
    int model, mix, seed, has_seed;
    char **axis;           /* [n_axes] value text or NULL */
    int line;
} qa_sweep_filter;

typedef struct qa_sweep_cell {
    int index;             /* position in the grid's cell order */
    int model, mix, seed;  /* model and mix indices; seed: the value */
    char **axis_text;      /* [n_axes] the value of each axis */
    char *name;            /* "tiny-qwen/zh+es/s1" (+ "/lora.r=8" per axis) */
    char *id;              /* name@hash8 */
    uint64_t hash;         /* FNV-1a of the resolved config (JSON, checkpoint.dir blank) */
    char *run_dir;         /* absolute */
    char *config_yaml;     /* the resolved training config of the cell (its cell.yaml) */
    int threads;           /* train.threads of the resolved config */
    int grad_accum;
    /* sizing (qa_sweep_size) */
    int64_t total_steps, rows_per_step;
    int seq_len;           /* tokens per row (packing: pack length, else the longest example) */
    double mem_train;      /* bytes per rank (the dry run's estimate) */
    double mem_eval;       /* bytes of one evaluation rank */
    double flops;          /* training FLOPs (time estimate) */
    qa_sweep_res res;      /* training job */
    qa_sweep_res eval_res; /* evaluation job */
    int group;             /* training resource group */
    int line;              /* grid line of its include entry (0 = from the product) */
} qa_sweep_cell;

typedef struct qa_sweep_group {
    qa_sweep_res res, eval_res;
    int n;
    int *cells;
} qa_sweep_group;

typedef struct qa_sweep {
    char *grid_path;       /* absolute */
    char *cwd;             /* where relative paths of the grid were resolved */
    char *exe;             /* the qalign binary that runs the cells */
    char *slurm_dir;       /* the shipped slurm/ templates (train.sbatch, eval.sbatch) */
    qa_sweep_settings set;
    qa_cfg cfg;            /* the settings' schema binding (origins) */
    qa_strlist sets;       /* every --set given (replayed by the report job) */
    qa_strlist cell_sets;  /* train config overrides of every cell from the grid's `set:` ("key=value") */
    qa_strlist cli_sets;   /* ... from --set (applied last) */
    char *base_path;       /* absolute base config ("" = none) */
    int n_models, n_mixes, n_axes, n_seeds, n_cells, n_groups;
    qa_sweep_model *models;
    qa_sweep_mix *mixes;
    qa_sweep_axis *axes;
    int *seeds;
    qa_sweep_filter *excludes, *includes;
    int n_excludes, n_includes;
    qa_sweep_cell *cells;
    qa_sweep_group *groups;
    int sized;
    int gpus;              /* the cluster offers GPUs (model.device auto): -1 = not asked yet */
    int64_t eval_items;    /* items of one evaluation (tasks x languages x limit, from the data) */
    char **eval_langs;     /* the evaluation's languages, in order */
    int n_eval_langs;
    char **eval_tasks;     /* the evaluation's tasks, in order */
    int n_eval_tasks;
} qa_sweep;

/* The settings schema (qalign sweep --help-grid). */
const qa_cfg_key *qa_sweep_settings_keys(int *n);

/* Parse the grid, apply sets ("key=value": grid settings, or train config keys for every cell),
 * resolve every cell (config, paths, run directory, hash) and validate all of them. Problems go to
 * errs, one line each; returns the number of problems (0 = ok) and *out is usable only then.
 * -1: the grid could not be read at all (errs says why). */
int qa_sweep_load(qa_sweep **out, const char *grid_path, const char *const *sets, int n_sets, qa_sbuf *errs);
void qa_sweep_free(qa_sweep *s);

/* Data plans, memory estimates, resources and groups of every cell (reads and tokenizes the data,
 * as `qalign train --dry-run` does). Returns the number of problems. */
int qa_sweep_size(qa_sweep *s, qa_sbuf *errs);

/* The one place a cell's memory comes from: the per-rank training estimate of `qalign train
 * --dry-run` (train/mem_estimate.h) and the evaluation estimate of `qalign info`. */
typedef struct qa_sweep_mem {
    double train_per_rank;   /* bytes */
    double eval_per_rank;    /* bytes */
    double weights;          /* bytes of the frozen weights as held (NF4 projections with model.quant) */
} qa_sweep_mem;
int qa_sweep_estimate_memory(const char *model_dir, const char *cell_yaml, int seq_len, int eval_batch,
                             qa_sweep_mem *out, qa_err *e);

/* Files under the sweep directory. */
char *qa_sweep_path(const qa_sweep *s, const char *rel);     /* heap: dir/rel */
char *qa_sweep_base_dir(const qa_sweep *s, int model);        /* heap: dir/base/<model> */

/* plan.json, plan.md and slurm/{train-gK,eval-gK,base-<model>,report}.sbatch; prints the plan to f. */
int qa_sweep_write_plan(qa_sweep *s, FILE *f, qa_err *e);
/* Refuse run directories that hold another config (cell.json with another hash, or a config.yaml
 * that resolves differently); one line per bad cell. Returns the number of problems. */
int qa_sweep_check_run_dirs(const qa_sweep *s, qa_sbuf *errs);

/* ---- cell state ---------------------------------------------------------------------------------- */
typedef enum qa_cell_state {
    QA_CELL_PLANNED = 0, QA_CELL_QUEUED, QA_CELL_RUNNING, QA_CELL_DONE, QA_CELL_FAILED
} qa_cell_state;
const char *qa_cell_state_name(qa_cell_state s);

typedef struct qa_cell_status {
    qa_cell_state state;
    int trained;             /* adapter written */
    int evaluated;           /* results.json matching the grid's evaluation */
    int64_t step, total;     /* optimizer steps done (metrics.jsonl / checkpoints), planned */
    double last_loss, tokens_per_s, eta_s;
    char job[64];            /* Slurm job of its pending / running work ("" = none) */
    char phase[16];          /* train | eval | "" */
    char detail[512];        /* the error line of a failed cell, or what is pending */
} qa_cell_status;

/* Jobs known to Slurm (squeue): job reference → state; n = 0 when Slurm is not there. */
typedef struct qa_sweep_jobs {
    int n;
    char (*ref)[64];         /* "123_4" or "125" */
    char (*state)[24];       /* PENDING, RUNNING, ... */
    char (*reason)[64];
    int slurm;               /* 1: squeue answered */
} qa_sweep_jobs;
void qa_sweep_jobs_query(qa_sweep_jobs *j);
void qa_sweep_jobs_free(qa_sweep_jobs *j);

/* State of cell i from its run directory, the submissions (slurm/jobs.tsv) and squeue (j may be
 * NULL), and the local runner's lock. */
void qa_sweep_cell_status(const qa_sweep *s, int i, const qa_sweep_jobs *j, qa_cell_status *st);
/* The table of `qalign sweep status`. Returns the number of failed cells. */
int qa_sweep_print_status(const qa_sweep *s, FILE *f, int json);

/* ---- running ---------------------------------------------------------------------------------- */
typedef struct qa_sweep_run_opts {
    int dry_run;             /* print what would be submitted / run; do nothing */
    int local;               /* --local: this machine, one cell after another */
    int ranks;               /* --local: override every cell's ranks (0 = the plan's) */
    const char *mpirun;      /* --local with ranks > 1: the launcher (default "mpirun") */
} qa_sweep_run_opts;
/* Submit to Slurm: one training array per resource group (+ the evaluation array after each of its
 * tasks, aftercorr), one base evaluation per model, a report job after all (afterany). Finished
 * cells are skipped; queued / running ones are left alone; trained but unevaluated ones get an
 * evaluation only. */
int qa_sweep_submit(qa_sweep *s, const qa_sweep_run_opts *o, FILE *f, qa_err *e);
/* The same cells on this machine, one after another: training (mpirun -np N when N > 1), then per
 * model one `qalign eval` of the base and every new adapter (loaded once), then the report. */
int qa_sweep_run_local(qa_sweep *s, const qa_sweep_run_opts *o, FILE *f, qa_err *e);
/* Run directory files of cell i (cell.yaml, cell.json); refuses a directory of another config. */
int qa_sweep_prepare_cell(const qa_sweep *s, int i, qa_err *e);

/* ---- the report ---------------------------------------------------------------------------------- */
typedef struct qa_sweep_report_opts {
    int png, svg;            /* figure formats (default both) */
    FILE *out;               /* the summary table is printed here (NULL = quiet) */
} qa_sweep_report_opts;
/* report/: <task>.md/.csv (rows model x mix [x axes], columns the languages + average: Δ vs the
 * base model with the items and a 95% interval; languages seen in training marked), summary.md/.csv,
 * results.csv (everything, long format), sweep.h5, heatmap_<model>_<task>.png/.svg,
 * heatmap_size_mix.png/.svg, loss.png/.svg. Cells without results are listed as missing. */
int qa_sweep_report(const qa_sweep *s, const qa_sweep_report_opts *o, qa_err *e);
#endif
