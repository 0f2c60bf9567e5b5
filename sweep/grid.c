/* grid.c — the grid file: settings (a qa_cfg schema, so YAML scalars and --set behave like every
 * other qalign config), models, mixes, axes, set, exclude, include. Every problem is collected as
 * one line naming the grid file, the entry and its line. */
#include "sweep/sweep_internal.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/hf_config.h"

#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#define K(name, type, member, dflt, help, ...) {name, type, offsetof(qa_sweep_settings, member), dflt, help, __VA_ARGS__}

static const qa_cfg_key KEYS[] = {
    K("name", QA_CFG_STRING, name, "", "sweep name (empty: the grid file's name without .yaml)", NULL, NULL),
    K("dir", QA_CFG_STRING, dir, "",
      "sweep directory: plan, job scripts, logs, the cells' run directories, the report (empty: runs/sweeps/<name>)",
      NULL, NULL),
    K("base", QA_CFG_STRING, base, "", "training config every cell starts from (as qalign train --config)", NULL, NULL),
    K("models_dir", QA_CFG_STRING, models_dir, "",
      "directory that relative model paths are under (empty: the current directory)", NULL, NULL),
    K("data_dir", QA_CFG_STRING, data_dir, "assets/paper-data",
      "paper-data directory: the mixes' relative files and the evaluation's tasks.json", NULL, NULL),
    K("run_dir", QA_CFG_STRING, run_dir, "cells/{model}/{mix}/{axes}s{seed}",
      "a cell's run directory under dir; {model} {mix} {seed} {axes} (key=value/ per axis) or {<axis key>}", NULL,
      NULL),
    K("seeds", QA_CFG_LIST, seeds, "", "train.seed of the cells (empty: the base config's train.seed)", NULL, NULL),
    K("launch", QA_CFG_STRING, launch, "auto",
      "how the ranks of a cell start: auto (one rank: directly; more: srun under Slurm, mpirun with --local), srun, "
      "mpirun, direct", "auto|srun|mpirun|direct", NULL),
    K("evaluation.tasks", QA_CFG_LIST, evaluation.tasks, "emotion,snli,paws", "tasks every cell is evaluated on", NULL,
      NULL),
    K("evaluation.langs", QA_CFG_LIST, evaluation.langs, "all", "languages of the evaluation (all = the 20 of tasks.json)",
      NULL, NULL),
    K("evaluation.limit", QA_CFG_INT, evaluation.limit, "0", "first N items of each (task, language); 0 = all", NULL,
      "[0,)"),
    K("evaluation.gold", QA_CFG_STRING, evaluation.gold, "corrected", "gold labels (qalign eval --gold)",
      "corrected|paper", NULL),
    K("evaluation.ranks", QA_CFG_INT, evaluation.ranks, "1", "ranks of one evaluation job", NULL, "[1,)"),
    K("evaluation.batch", QA_CFG_INT, evaluation.batch, "16", "rows per forward (qalign eval --batch)", NULL, "[1,)"),
    K("resources.cpus_per_rank", QA_CFG_INT, resources.cpus_per_rank, "0",
      "CPU cores per rank (0: train.threads when set, else 2 with cpu, 8 with cuda)", NULL, "[0,)"),
    K("resources.max_ranks", QA_CFG_INT, resources.max_ranks, "4",
      "auto ranks: at most this many (a power of two that divides train.grad_accum)", NULL, "[1,)"),
    K("resources.target_hours", QA_CFG_FLOAT, resources.target_hours, "12",
      "auto ranks: double the ranks while a cell's time estimate is above this", NULL, "(0,)"),
    K("resources.gpu_mem_gb", QA_CFG_FLOAT, resources.gpu_mem_gb, "80", "memory of one GPU, GiB (a cell must fit one)",
      NULL, "(0,)"),
    K("resources.mem_slack", QA_CFG_FLOAT, resources.mem_slack, "1.25",
      "host memory asked = estimate x slack + 512 MiB per rank", NULL, "[1,)"),
    K("resources.cpu_gflops", QA_CFG_FLOAT, resources.cpu_gflops, "10",
      "training throughput assumed per CPU core, GFLOP/s (time estimate)", NULL, "(0,)"),
    K("resources.gpu_tflops", QA_CFG_FLOAT, resources.gpu_tflops, "100",
      "training throughput assumed per GPU, TFLOP/s (time estimate)", NULL, "(0,)"),
    K("resources.time_min", QA_CFG_STRING, resources.time_min, "00:10:00", "shortest auto time limit", NULL, NULL),
    K("resources.time_max", QA_CFG_STRING, resources.time_max, "2-00:00:00",
      "longest auto time limit (a longer cell checkpoints and requeues itself)", NULL, NULL),
    K("slurm.partition", QA_CFG_STRING, slurm.partition, "", "#SBATCH --partition (empty: the cluster's default)", NULL,
      NULL),
    K("slurm.account", QA_CFG_STRING, slurm.account, "", "#SBATCH --account", NULL, NULL),
    K("slurm.qos", QA_CFG_STRING, slurm.qos, "", "#SBATCH --qos", NULL, NULL),
    K("slurm.max_parallel", QA_CFG_INT, slurm.max_parallel, "0", "array throttle: at most N tasks of an array at a time "
      "(0 = no limit)", NULL, "[0,)"),
    K("slurm.signal_s", QA_CFG_INT, slurm.signal_s, "300",
      "seconds before the time limit when a cell checkpoints and requeues itself (--signal=B:USR1@N)", NULL, "[10,)"),
    K("slurm.max_restarts", QA_CFG_INT, slurm.max_restarts, "20",
      "requeues of one training task; then it fails loudly", NULL, "[0,)"),
    K("slurm.extra", QA_CFG_LIST, slurm.extra, "", "more #SBATCH options of every job, e.g. [--qos=normal]", NULL, NULL),
    K("slurm.mpirun_flags", QA_CFG_STRING, slurm.mpirun_flags, "", "options of mpirun (launch mpirun; --local)", NULL,
      NULL),
    K("slurm.gpus", QA_CFG_STRING, slurm.gpus, "auto",
      "does the cluster offer GPUs (for model.device auto): auto asks sinfo (no Slurm: this machine)", "auto|yes|no",
      NULL),
};
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static const char *const STRUCT_KEYS[] = {"models", "mixes", "axes", "set", "exclude", "include"};
#define N_STRUCT ((int)(sizeof STRUCT_KEYS / sizeof STRUCT_KEYS[0]))
static const char *const MODEL_KEYS[] = {"name", "path", "template", "device", "resources", "set"};
static const char *const RES_KEYS[] = {"ranks", "cpus_per_rank", "mem", "time", "gpu_mem_gb"};
/* keys the grid's own entries set: an axis or a --set of them would fight the grid */
static const char *const RESERVED[] = {"model.path", "data.files", "data.template", "train.seed", "checkpoint.dir",
                                       "tokenizer.path"};

const qa_cfg_key *qa_sweep_settings_keys(int *n) {
    *n = N_KEYS;
    return KEYS;
}

typedef struct gctx {
    qa_sweep *s;
    yaml_document_t *doc;
    const char *file;      /* the grid path as given (messages) */
    qa_sbuf *errs;
    int n;                 /* problems */
    qa_train_config scratch; /* train schema: key checks and value checks */
} gctx;

static int line_of(const yaml_node_t *n) { return n ? (int)n->start_mark.line + 1 : 0; }
static char *scalar_dup(const yaml_node_t *n) { return qa_strndup((const char *)n->data.scalar.value, n->data.scalar.length); }
static yaml_node_t *node(gctx *g, int id) { return yaml_document_get_node(g->doc, id); }

static int is_null(const yaml_node_t *n) {
    if (!n) return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || !strcmp(v, "~") || !strcmp(v, "null");
}

/* a scalar, or a sequence of scalars as "[a, b]" (items double-quoted); NULL for anything else */
static char *value_text(gctx *g, yaml_node_t *v) {
    if (!v) return NULL;
    if (v->type == YAML_SCALAR_NODE) return is_null(v) ? qa_strdup("") : scalar_dup(v);
    if (v->type != YAML_SEQUENCE_NODE) return NULL;
    qa_sbuf b = {0};
    qa_sb_puts(&b, "[");
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *x = node(g, *it);
        if (!x || x->type != YAML_SCALAR_NODE) {
            qa_sb_free(&b);
            return NULL;
        }
        char *t = scalar_dup(x);
        qa_sb_printf(&b, "%s\"%s\"", it > v->data.sequence.items.start ? ", " : "", t);
        free(t);
    }
    qa_sb_puts(&b, "]");
    return b.p;
}

static const char *closest(const char *key, const char *const *cands, int n) {
    const char *best = NULL;
    int bd = 1 << 30;
    for (int i = 0; i < n; i++) {
        int d = qa_edit_distance(key, cands[i]);
        if (d < bd) bd = d, best = cands[i];
    }
    int lim = (int)strlen(key) / 3 + 1;
    return bd <= (lim > 3 ? 3 : lim) ? best : NULL;
}

static int is_settings_section(const char *name) {
    size_t l = strlen(name);
    for (int i = 0; i < N_KEYS; i++)
        if (!strncmp(KEYS[i].name, name, l) && KEYS[i].name[l] == '.') return 1;
    return 0;
}

/* the suggestion for an unknown top-level or settings key: settings, structured keys */
static const char *suggest_grid_key(gctx *g, const char *key) {
    const char *s = qa_cfg_suggest(&g->s->cfg, key);
    if (s) return s;
    return closest(key, STRUCT_KEYS, N_STRUCT);
}

int sw_is_train_key(const qa_train_config *tc, const char *key, const char **suggest) {
    if (qa_cfg_find(&tc->cfg, key) >= 0) return 1;
    if (suggest) *suggest = qa_cfg_suggest(&tc->cfg, key);
    return 0;
}

static int is_reserved(const char *key) {
    for (size_t i = 0; i < sizeof RESERVED / sizeof RESERVED[0]; i++)
        if (!strcmp(key, RESERVED[i])) return 1;
    return 0;
}

/* ---- settings -------------------------------------------------------------------------------- */
static void load_settings(gctx *g, yaml_node_t *m, const char *prefix) {
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node(g, p->key), *vn = node(g, p->value);
        if (!kn || kn->type != YAML_SCALAR_NODE) {
            g->n += sw_problem(g->errs, "%s (line %d): a key must be a plain name", g->file, line_of(kn));
            continue;
        }
        char *k = scalar_dup(kn), *full = qa_key_join(prefix, k);
        free(k);
        int structured = 0;
        for (int i = 0; !prefix && i < N_STRUCT; i++) structured |= !strcmp(full, STRUCT_KEYS[i]);
        if (structured) {
            free(full);
            continue;
        }
        char where[1200];
        snprintf(where, sizeof where, "%s (line %d)", g->file, line_of(kn));
        if (qa_cfg_find(&g->s->cfg, full) >= 0) {
            char *t = value_text(g, vn);
            qa_err e = {0};
            if (!t) g->n += sw_problem(g->errs, "%s: '%s' takes a value or a list of values", where, full);
            else if (qa_cfg_set_value(&g->s->cfg, full, t, where, &e)) g->n += sw_problem(g->errs, "%s", e.msg);
            free(t);
        } else if (is_settings_section(full) && vn && vn->type == YAML_MAPPING_NODE) {
            load_settings(g, vn, full);
        } else {
            const char *sg = suggest_grid_key(g, full);
            const char *tk = NULL;
            if (sw_is_train_key(&g->scratch, full, NULL))
                g->n += sw_problem(g->errs, "%s: '%s' is a training config key; put it under 'set:' (every cell) or "
                                   "'axes:' (a list of values)", where, full);
            else if (sg)
                g->n += sw_problem(g->errs, "%s: unknown key '%s'; did you mean '%s'?", where, full, sg);
            else
                g->n += sw_problem(g->errs, "%s: unknown key '%s' (qalign sweep --help-grid lists the keys)", where, full);
            (void)tk;
        }
        free(full);
    }
}

/* flatten a mapping of train config keys (nested or dotted) into "key=value" + origins; checks
 * the keys against the training schema and the values on the scratch config */
static void load_train_sets(gctx *g, yaml_node_t *m, const char *prefix, const char *what, qa_strlist *out,
                            qa_strlist *origins) {
    if (!m || is_null(m)) return;
    if (m->type != YAML_MAPPING_NODE) {
        g->n += sw_problem(g->errs, "%s (line %d): %s must be a mapping of training config keys (e.g. train.lr: 1e-4)",
                           g->file, line_of(m), what);
        return;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node(g, p->key), *vn = node(g, p->value);
        if (!kn || kn->type != YAML_SCALAR_NODE) continue;
        char *k = scalar_dup(kn), *full = qa_key_join(prefix, k);
        free(k);
        char where[1200];
        snprintf(where, sizeof where, "%s %s (line %d)", g->file, what, line_of(kn));
        const char *sg = NULL;
        if (vn && vn->type == YAML_MAPPING_NODE) {
            load_train_sets(g, vn, full, what, out, origins);
        } else if (!sw_is_train_key(&g->scratch, full, &sg)) {
            if (sg) g->n += sw_problem(g->errs, "%s: unknown training config key '%s'; did you mean '%s'?", where, full, sg);
            else g->n += sw_problem(g->errs, "%s: unknown training config key '%s' (qalign train --help-config)", where, full);
        } else if (is_reserved(full)) {
            g->n += sw_problem(g->errs, "%s: '%s' is set by the grid itself (models, mixes, seeds, the run directory)",
                               where, full);
        } else {
            char *t = value_text(g, vn);
            qa_err e = {0};
            if (!t) g->n += sw_problem(g->errs, "%s: '%s' takes a value or a list of values", where, full);
            else if (qa_cfg_set_value(&g->scratch.cfg, full, t, where, &e)) g->n += sw_problem(g->errs, "%s", e.msg);
            else {
                char *kv = qa_malloc(strlen(full) + strlen(t) + 2);
                sprintf(kv, "%s=%s", full, t);
                qa_strlist_push(out, kv);
                qa_strlist_push(origins, where);
                free(kv);
            }
            free(t);
        }
        free(full);
    }
}

/* ---- paths --------------------------------------------------------------------------------- */
/* lexical normalization: no "." segments, ".." folded, no double slashes */
char *sw_norm_path(const char *p) {
    size_t n = strlen(p);
    char *out = qa_malloc(n + 2);
    size_t o = 0;
    int abs = p[0] == '/';
    size_t seg_start[4096];
    int ns = 0;
    if (abs) out[o++] = '/';
    const char *q = p;
    while (*q) {
        while (*q == '/') q++;
        if (!*q) break;
        const char *e = strchr(q, '/');
        size_t l = e ? (size_t)(e - q) : strlen(q);
        if (l == 1 && q[0] == '.') {
        } else if (l == 2 && q[0] == '.' && q[1] == '.' && ns > 0 &&
                   !(o - seg_start[ns - 1] == 2 && out[seg_start[ns - 1]] == '.' && out[seg_start[ns - 1] + 1] == '.')) {
            o = seg_start[--ns];
            if (o > (size_t)abs) o--; /* the slash before the segment */
            if (o == 0 && abs) o = 1;
        } else {
            if (o > (size_t)abs) out[o++] = '/';
            if (ns < 4096) seg_start[ns++] = o;
            memcpy(out + o, q, l);
            o += l;
        }
        q += l;
    }
    if (o == 0) out[o++] = '.';
    out[o] = 0;
    return out;
}

char *sw_abs_path(const char *cwd, const char *p) {
    if (!p || !*p) return qa_strdup("");
    if (p[0] == '/') return sw_norm_path(p);
    char *j = qa_path_join(cwd, p);
    char *r = sw_norm_path(j);
    free(j);
    return r;
}

static int valid_name(const char *s) {
    if (!*s || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._+-", *p)) return 0;
    return 1;
}

static int looks_like_lang(const char *s) {
    size_t l = strlen(s);
    if (l < 2 || l > 3) return 0;
    for (size_t i = 0; i < l; i++)
        if (!islower((unsigned char)s[i])) return 0;
    return 1;
}

/* ---- models --------------------------------------------------------------------------------- */
static void bad_key(gctx *g, const char *what, int line, const char *key, const char *const *cands, int n) {
    const char *sg = closest(key, cands, n);
    if (sg) g->n += sw_problem(g->errs, "%s %s (line %d): unknown key '%s'; did you mean '%s'?", g->file, what, line, key, sg);
    else {
        char list[256] = "";
        for (int i = 0; i < n; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", cands[i]);
        }
        g->n += sw_problem(g->errs, "%s %s (line %d): unknown key '%s' (known: %s)", g->file, what, line, key, list);
    }
}

static int parse_int_text(const char *t, int lo, int *out) {
    char *end;
    long v = strtol(t, &end, 10);
    if (!*t || *end || v < lo || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

static void load_resources(gctx *g, qa_sweep_model *m, yaml_node_t *v, const char *what) {
    if (!v || is_null(v)) return;
    if (v->type == YAML_SCALAR_NODE) {
        char *t = scalar_dup(v);
        if (strcmp(t, "auto"))
            g->n += sw_problem(g->errs, "%s %s (line %d): resources must be 'auto' or a mapping of %s", g->file, what,
                               line_of(v), "ranks, cpus_per_rank, mem, time, gpu_mem_gb");
        free(t);
        return;
    }
    if (v->type != YAML_MAPPING_NODE) {
        g->n += sw_problem(g->errs, "%s %s (line %d): resources must be 'auto' or a mapping", g->file, what, line_of(v));
        return;
    }
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node(g, p->key), *vn = node(g, p->value);
        if (!kn || kn->type != YAML_SCALAR_NODE || !vn || vn->type != YAML_SCALAR_NODE) {
            g->n += sw_problem(g->errs, "%s %s resources (line %d): give key: value", g->file, what, line_of(kn));
            continue;
        }
        char *k = scalar_dup(kn), *t = scalar_dup(vn);
        int line = line_of(kn), bad = 0;
        if (!strcmp(t, "auto")) {
        } else if (!strcmp(k, "ranks")) {
            bad = parse_int_text(t, 1, &m->given.ranks);
            m->has_ranks = !bad;
        } else if (!strcmp(k, "cpus_per_rank")) {
            bad = parse_int_text(t, 1, &m->given.cpus_per_rank);
            m->has_cpus = !bad;
        } else if (!strcmp(k, "mem")) {
            m->given.mem_mb = qa_sweep_parse_mem_mb(t);
            bad = m->given.mem_mb <= 0;
            m->has_mem = !bad;
        } else if (!strcmp(k, "time")) {
            m->given.time_s = qa_sweep_parse_time(t);
            bad = m->given.time_s <= 0;
            m->has_time = !bad;
        } else if (!strcmp(k, "gpu_mem_gb")) {
            char *end;
            m->gpu_mem_gb = strtod(t, &end);
            bad = !*t || *end || !(m->gpu_mem_gb > 0);
        } else {
            bad_key(g, what, line, k, RES_KEYS, 5);
        }
        if (bad)
            g->n += sw_problem(g->errs, "%s %s resources (line %d): %s: '%s' is not valid (%s)", g->file, what, line, k,
                               t, !strcmp(k, "mem") ? "e.g. 16G, 512M" : !strcmp(k, "time") ? "e.g. 04:00:00, 1-00:00:00"
                                                                                            : "a positive number");
        free(k);
        free(t);
    }
}

static void load_models(gctx *g, yaml_node_t *v) {
    qa_sweep *s = g->s;
    if (!v || v->type != YAML_SEQUENCE_NODE) {
        g->n += sw_problem(g->errs, "%s (line %d): models must be a list of {name, path, template, device, resources}",
                           g->file, line_of(v));
        return;
    }
    char *mdir = sw_abs_path(s->cwd, s->set.models_dir);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *mn = node(g, *it);
        if (!mn || mn->type != YAML_MAPPING_NODE) {
            g->n += sw_problem(g->errs, "%s (line %d): a model is a mapping {name, path, ...}", g->file, line_of(mn));
            continue;
        }
        s->models = qa_realloc(s->models, sizeof *s->models * (size_t)(s->n_models + 1));
        qa_sweep_model *m = &s->models[s->n_models++];
        memset(m, 0, sizeof *m);
        m->line = line_of(mn);
        char what[256];
        snprintf(what, sizeof what, "model %d", s->n_models);
        char *path = NULL;
        yaml_node_t *resn = NULL, *setn = NULL;
        for (yaml_node_pair_t *p = mn->data.mapping.pairs.start; p < mn->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = node(g, p->key), *vn = node(g, p->value);
            if (!kn || kn->type != YAML_SCALAR_NODE) continue;
            char *k = scalar_dup(kn);
            if (!strcmp(k, "resources")) resn = vn;
            else if (!strcmp(k, "set")) setn = vn;
            else if (!strcmp(k, "name") || !strcmp(k, "path") || !strcmp(k, "template") || !strcmp(k, "device")) {
                char *t = vn && vn->type == YAML_SCALAR_NODE ? scalar_dup(vn) : NULL;
                if (!t) g->n += sw_problem(g->errs, "%s %s (line %d): %s takes one value", g->file, what, line_of(kn), k);
                else if (!strcmp(k, "name")) free(m->name), m->name = t, t = NULL;
                else if (!strcmp(k, "path")) free(path), path = t, t = NULL;
                else if (!strcmp(k, "template")) free(m->template_name), m->template_name = t, t = NULL;
                else free(m->device), m->device = t, t = NULL;
                free(t);
            } else {
                bad_key(g, what, line_of(kn), k, MODEL_KEYS, 6);
            }
            free(k);
        }
        if (!m->name) {
            g->n += sw_problem(g->errs, "%s %s (line %d): no name", g->file, what, m->line);
            m->name = qa_strdup(what);
        } else if (!valid_name(m->name)) {
            g->n += sw_problem(g->errs, "%s model '%s' (line %d): a name may hold letters, digits and . _ + - only",
                               g->file, m->name, m->line);
        }
        snprintf(what, sizeof what, "model '%s'", m->name);
        for (int j = 0; j < s->n_models - 1; j++)
            if (!strcmp(s->models[j].name, m->name))
                g->n += sw_problem(g->errs, "%s %s (line %d): the name is used twice (also line %d)", g->file, what, m->line,
                                   s->models[j].line);
        if (!m->template_name) m->template_name = qa_strdup("");
        if (!m->device) m->device = qa_strdup("");
        if (*m->device && strcmp(m->device, "cpu") && strcmp(m->device, "cuda") && strcmp(m->device, "cuda-fp32") &&
            strcmp(m->device, "emu") && strcmp(m->device, "auto"))
            g->n += sw_problem(g->errs, "%s %s (line %d): device must be auto, cpu, cuda, cuda-fp32 or emu, got '%s'", g->file, what,
                               m->line, m->device);
        if (!path) {
            g->n += sw_problem(g->errs, "%s %s (line %d): no path (the Hugging Face model directory)", g->file, what, m->line);
            path = qa_strdup("");
        }
        m->path = path[0] == '/' ? sw_norm_path(path) : sw_abs_path(mdir, path);
        free(path);
        char *cj = qa_path_join(m->path, "config.json");
        qa_hf_config hc;
        qa_err e = {0};
        if (!qa_is_dir(m->path))
            g->n += sw_problem(g->errs, "%s %s (line %d): model directory %s does not exist (models_dir: '%s'; "
                               "--set models_dir=DIR)", g->file, what, m->line, m->path, s->set.models_dir);
        else if (qa_hf_config_load(&hc, cj, &e))
            g->n += sw_problem(g->errs, "%s %s (line %d): %s", g->file, what, m->line, e.msg);
        else
            m->params = qa_hf_config_param_count(&hc);
        free(cj);
        load_resources(g, m, resn, what);
        qa_strlist origins = {0};
        char w2[300];
        snprintf(w2, sizeof w2, "%s set", what);
        load_train_sets(g, setn, NULL, w2, &m->sets, &origins);
        qa_strlist_free(&origins);
    }
    free(mdir);
    if (s->n_models == 0) g->n += sw_problem(g->errs, "%s: models is empty; list at least one model", g->file);
}

/* ---- mixes --------------------------------------------------------------------------------- */
static void mix_files(gctx *g, qa_sweep_mix *x, yaml_node_t *v, const char *ddir) {
    char *t = value_text(g, v);
    qa_strlist l = {0};
    qa_err e = {0};
    if (!t || qa_strlist_parse(&l, t, &e)) {
        g->n += sw_problem(g->errs, "%s mix '%s' (line %d): give a list of training files", g->file, x->name, x->line);
    } else {
        for (int i = 0; i < l.n; i++) {
            char *p = l.v[i][0] == '/' ? sw_norm_path(l.v[i]) : sw_abs_path(ddir, l.v[i]);
            if (!qa_path_exists(p))
                g->n += sw_problem(g->errs, "%s mix '%s' (line %d): file %s does not exist (data_dir: '%s')", g->file,
                                   x->name, x->line, p, g->s->set.data_dir);
            qa_strlist_push(&x->files, p);
            free(p);
        }
        if (l.n == 0) g->n += sw_problem(g->errs, "%s mix '%s' (line %d): no files", g->file, x->name, x->line);
    }
    qa_strlist_free(&l);
    free(t);
}

static void load_mixes(gctx *g, yaml_node_t *v) {
    qa_sweep *s = g->s;
    if (!v || v->type != YAML_MAPPING_NODE) {
        g->n += sw_problem(g->errs, "%s (line %d): mixes must be a mapping name: [files] (e.g. zh+es: [snli/a.json, "
                           "snli/b.json])", g->file, line_of(v));
        return;
    }
    char *ddir = sw_abs_path(s->cwd, s->set.data_dir);
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node(g, p->key), *vn = node(g, p->value);
        if (!kn || kn->type != YAML_SCALAR_NODE) continue;
        s->mixes = qa_realloc(s->mixes, sizeof *s->mixes * (size_t)(s->n_mixes + 1));
        qa_sweep_mix *x = &s->mixes[s->n_mixes++];
        memset(x, 0, sizeof *x);
        x->name = scalar_dup(kn);
        x->line = line_of(kn);
        if (!valid_name(x->name))
            g->n += sw_problem(g->errs, "%s mix '%s' (line %d): a name may hold letters, digits and . _ + - only", g->file,
                               x->name, x->line);
        int langs_given = 0;
        if (vn && vn->type == YAML_MAPPING_NODE) {
            int have_files = 0;
            for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
                yaml_node_t *k2 = node(g, q->key), *v2 = node(g, q->value);
                char *k = k2 && k2->type == YAML_SCALAR_NODE ? scalar_dup(k2) : qa_strdup("?");
                if (!strcmp(k, "files")) {
                    mix_files(g, x, v2, ddir);
                    have_files = 1;
                } else if (!strcmp(k, "langs")) {
                    char *t = value_text(g, v2);
                    qa_err e = {0};
                    if (!t || qa_strlist_parse(&x->langs, t, &e))
                        g->n += sw_problem(g->errs, "%s mix '%s' (line %d): langs is a list of language codes", g->file,
                                           x->name, line_of(k2));
                    free(t);
                    langs_given = 1;
                } else {
                    static const char *const MK[] = {"files", "langs"};
                    char what[300];
                    snprintf(what, sizeof what, "mix '%s'", x->name);
                    bad_key(g, what, line_of(k2), k, MK, 2);
                }
                free(k);
            }
            if (!have_files) g->n += sw_problem(g->errs, "%s mix '%s' (line %d): no files", g->file, x->name, x->line);
        } else {
            mix_files(g, x, vn, ddir);
        }
        for (int j = 0; j < s->n_mixes - 1; j++)
            if (!strcmp(s->mixes[j].name, x->name))
                g->n += sw_problem(g->errs, "%s mix '%s' (line %d): the name is used twice", g->file, x->name, x->line);
        if (!langs_given) {
            /* "zh+es" trains on zh and es: mark them in the report */
            char *dup = qa_strdup(x->name), *save = NULL;
            int all = 1;
            qa_strlist l = {0};
            for (char *t = strtok_r(dup, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
                if (!looks_like_lang(t)) all = 0;
                qa_strlist_push(&l, t);
            }
            if (all) x->langs = l;
            else qa_strlist_free(&l);
            free(dup);
        }
    }
    free(ddir);
    if (s->n_mixes == 0) g->n += sw_problem(g->errs, "%s: mixes is empty; name at least one training mix", g->file);
}

/* ---- axes ---------------------------------------------------------------------------------- */
static void load_axes(gctx *g, yaml_node_t *v) {
    qa_sweep *s = g->s;
    if (!v || is_null(v)) return;
    if (v->type != YAML_MAPPING_NODE) {
        g->n += sw_problem(g->errs, "%s (line %d): axes must be a mapping key: [values] (e.g. lora.r: [8, 16])", g->file,
                           line_of(v));
        return;
    }
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node(g, p->key), *vn = node(g, p->value);
        if (!kn || kn->type != YAML_SCALAR_NODE) continue;
        char *k = scalar_dup(kn);
        int line = line_of(kn);
        const char *sg = NULL;
        if (!sw_is_train_key(&g->scratch, k, &sg)) {
            if (sg) g->n += sw_problem(g->errs, "%s axes (line %d): unknown training config key '%s'; did you mean '%s'?",
                                       g->file, line, k, sg);
            else g->n += sw_problem(g->errs, "%s axes (line %d): unknown training config key '%s' (qalign train "
                                    "--help-config)", g->file, line, k);
            free(k);
            continue;
        }
        if (is_reserved(k)) {
            g->n += sw_problem(g->errs, "%s axes (line %d): '%s' is an axis of its own: use models, mixes or seeds",
                               g->file, line, k);
            free(k);
            continue;
        }
        s->axes = qa_realloc(s->axes, sizeof *s->axes * (size_t)(s->n_axes + 1));
        qa_sweep_axis *a = &s->axes[s->n_axes++];
        memset(a, 0, sizeof *a);
        a->key = k;
        a->line = line;
        if (vn && vn->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
                yaml_node_t *x = node(g, *it);
                char *t = x ? value_text(g, x) : NULL;
                if (!t) g->n += sw_problem(g->errs, "%s axes '%s' (line %d): each value must be a value or a list", g->file, k,
                                           line_of(x));
                else qa_strlist_push(&a->values, t);
                free(t);
            }
        } else {
            g->n += sw_problem(g->errs, "%s axes '%s' (line %d): give a list of values, e.g. [8, 16]", g->file, k, line);
        }
        if (a->values.n == 0) g->n += sw_problem(g->errs, "%s axes '%s' (line %d): no values", g->file, k, line);
        for (int i = 0; i < a->values.n; i++) {
            char where[1200];
            snprintf(where, sizeof where, "%s axes (line %d)", g->file, line);
            qa_err e = {0};
            if (qa_cfg_set_value(&g->scratch.cfg, k, a->values.v[i], where, &e)) g->n += sw_problem(g->errs, "%s", e.msg);
        }
    }
}

/* ---- include / exclude ------------------------------------------------------------------------ */
static int find_name(const char *name, int n, size_t stride, const void *base) {
    for (int i = 0; i < n; i++)
        if (!strcmp(*(char *const *)((const char *)base + stride * (size_t)i), name)) return i;
    return -1;
}

static void load_filters(gctx *g, yaml_node_t *v, const char *what, qa_sweep_filter **out, int *n_out) {
    qa_sweep *s = g->s;
    if (!v || is_null(v)) return;
    if (v->type != YAML_SEQUENCE_NODE) {
        g->n += sw_problem(g->errs, "%s (line %d): %s must be a list of {model, mix, seed, <axis key>} mappings", g->file,
                           line_of(v), what);
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *fn = node(g, *it);
        if (!fn || fn->type != YAML_MAPPING_NODE) {
            g->n += sw_problem(g->errs, "%s %s (line %d): an entry is a mapping like {model: m, mix: zh}", g->file, what,
                               line_of(fn));
            continue;
        }
        *out = qa_realloc(*out, sizeof **out * (size_t)(*n_out + 1));
        qa_sweep_filter *f = &(*out)[(*n_out)++];
        memset(f, 0, sizeof *f);
        f->model = f->mix = f->seed = -1;
        f->has_seed = 0;
        f->line = line_of(fn);
        f->axis = qa_calloc((size_t)(s->n_axes ? s->n_axes : 1), sizeof(char *));
        for (yaml_node_pair_t *p = fn->data.mapping.pairs.start; p < fn->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = node(g, p->key), *vn = node(g, p->value);
            if (!kn || kn->type != YAML_SCALAR_NODE) continue;
            char *k = scalar_dup(kn), *t = value_text(g, vn);
            int line = line_of(kn);
            if (!t) {
                g->n += sw_problem(g->errs, "%s %s (line %d): %s takes one value", g->file, what, line, k);
            } else if (!strcmp(k, "model")) {
                f->model = find_name(t, s->n_models, sizeof *s->models, &s->models[0].name);
                if (f->model < 0) g->n += sw_problem(g->errs, "%s %s (line %d): model '%s' is not in models", g->file, what,
                                                     line, t);
            } else if (!strcmp(k, "mix")) {
                f->mix = find_name(t, s->n_mixes, sizeof *s->mixes, &s->mixes[0].name);
                if (f->mix < 0) g->n += sw_problem(g->errs, "%s %s (line %d): mix '%s' is not in mixes", g->file, what, line, t);
            } else if (!strcmp(k, "seed")) {
                if (parse_int_text(t, 0, &f->seed)) g->n += sw_problem(g->errs, "%s %s (line %d): seed must be an integer "
                                                                        ">= 0, got '%s'", g->file, what, line, t);
                else f->has_seed = 1;
            } else {
                int a = -1;
                for (int i = 0; i < s->n_axes; i++)
                    if (!strcmp(s->axes[i].key, k)) a = i;
                if (a < 0) {
                    g->n += sw_problem(g->errs, "%s %s (line %d): '%s' is not model, mix, seed or an axis of the grid",
                                       g->file, what, line, k);
                } else {
                    char where[1200];
                    snprintf(where, sizeof where, "%s %s (line %d)", g->file, what, line);
                    qa_err e = {0};
                    if (qa_cfg_set_value(&g->scratch.cfg, k, t, where, &e)) g->n += sw_problem(g->errs, "%s", e.msg);
                    f->axis[a] = qa_strdup(t);
                }
            }
            free(k);
            free(t);
        }
    }
}

/* ---- the document --------------------------------------------------------------------------- */
static char *stem_of(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    return dot && dot != b ? qa_strndup(b, (size_t)(dot - b)) : qa_strdup(b);
}

int sw_grid_load(qa_sweep *s, const char *grid_path, const char *const *sets, int n_sets, qa_sbuf *errs) {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        sw_problem(errs, "cannot read the current directory");
        return -1;
    }
    s->cwd = qa_strdup(cwd);
    s->grid_path = sw_abs_path(cwd, grid_path);
    qa_cfg_init(&s->cfg, KEYS, N_KEYS, &s->set);
    char *text = NULL;
    size_t len = 0;
    qa_err e = {0};
    if (qa_read_file(grid_path, 16u << 20, &text, &len, &e)) {
        sw_problem(errs, "reading the grid: %s", e.msg);
        return -1;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        sw_problem(errs, "%s (line %lu, column %lu): YAML syntax error: %s%s%s", grid_path,
                   (unsigned long)parser.problem_mark.line + 1, (unsigned long)parser.problem_mark.column + 1,
                   parser.problem ? parser.problem : "?", parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        free(text);
        return -1;
    }
    gctx g;
    memset(&g, 0, sizeof g);
    g.s = s;
    g.doc = &doc;
    g.file = grid_path;
    g.errs = errs;
    qa_train_config_init(&g.scratch);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *st[N_STRUCT] = {0};
    if (!root || root->type != YAML_MAPPING_NODE) {
        g.n += sw_problem(errs, "%s: the top level must be a mapping (models:, mixes:, ...)", grid_path);
    } else {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = node(&g, p->key);
            if (!kn || kn->type != YAML_SCALAR_NODE) continue;
            char *k = scalar_dup(kn);
            for (int i = 0; i < N_STRUCT; i++)
                if (!strcmp(k, STRUCT_KEYS[i])) {
                    if (st[i]) g.n += sw_problem(errs, "%s (line %d): '%s' appears twice", grid_path, line_of(kn), k);
                    st[i] = node(&g, p->value);
                }
            free(k);
        }
        load_settings(&g, root, NULL);
    }
    /* --set: a grid setting, or a training config key for every cell (after the grid's set:) */
    qa_strlist set_origins = {0};
    if (st[3]) load_train_sets(&g, st[3], NULL, "set", &s->cell_sets, &set_origins);
    for (int i = 0; i < n_sets; i++) {
        qa_strlist_push(&s->sets, sets[i]);
        const char *eq = strchr(sets[i], '=');
        char *k = eq ? qa_strndup(sets[i], (size_t)(eq - sets[i])) : qa_strdup(sets[i]);
        const char *sg = NULL;
        if (!eq || eq == sets[i]) {
            g.n += sw_problem(errs, "--set '%s': expected key=value", sets[i]);
        } else if (qa_cfg_find(&s->cfg, k) >= 0) {
            if (qa_cfg_set(&s->cfg, sets[i], &e)) g.n += sw_problem(errs, "%s", e.msg);
        } else if (sw_is_train_key(&g.scratch, k, &sg)) {
            if (is_reserved(k)) {
                g.n += sw_problem(errs, "--set %s: '%s' is set by the grid (models, mixes, seeds, the run directory)",
                                  sets[i], k);
            } else if (qa_cfg_set_value(&g.scratch.cfg, k, eq + 1, "--set", &e)) {
                g.n += sw_problem(errs, "%s", e.msg);
            } else {
                qa_strlist_push(&s->cli_sets, sets[i]);
            }
        } else {
            const char *gs = qa_cfg_suggest(&s->cfg, k);
            if (gs && sg && qa_edit_distance(k, sg) < qa_edit_distance(k, gs)) gs = sg;
            if (gs || sg) g.n += sw_problem(errs, "--set %s: unknown key '%s'; did you mean '%s'?", sets[i], k, gs ? gs : sg);
            else g.n += sw_problem(errs, "--set %s: unknown key '%s' (neither a grid setting nor a training config key)",
                                   sets[i], k);
        }
        free(k);
    }
    qa_strlist_free(&set_origins);
    if (!*s->set.name) {
        char *n = stem_of(grid_path);
        free(s->set.name);
        s->set.name = n;
    }
    if (!valid_name(s->set.name))
        g.n += sw_problem(errs, "%s: name '%s' may hold letters, digits and . _ + - only", grid_path, s->set.name);
    if (!*s->set.dir) {
        char buf[600];
        snprintf(buf, sizeof buf, "runs/sweeps/%s", s->set.name);
        free(s->set.dir);
        s->set.dir = qa_strdup(buf);
    }
    char *dabs = sw_abs_path(cwd, s->set.dir);
    free(s->set.dir);
    s->set.dir = dabs;
    if (*s->set.base) {
        s->base_path = sw_abs_path(cwd, s->set.base);
        qa_train_config tc;
        qa_train_config_init(&tc);
        if (qa_train_config_load(&tc, s->base_path, &e)) g.n += sw_problem(errs, "%s base: %s", grid_path, e.msg);
        qa_train_config_free(&tc);
    } else {
        s->base_path = qa_strdup("");
    }
    if (qa_sweep_parse_time(s->set.resources.time_min) <= 0)
        g.n += sw_problem(errs, "%s: resources.time_min '%s' is not a Slurm time (e.g. 00:10:00)", grid_path,
                          s->set.resources.time_min);
    if (qa_sweep_parse_time(s->set.resources.time_max) <= 0)
        g.n += sw_problem(errs, "%s: resources.time_max '%s' is not a Slurm time (e.g. 2-00:00:00)", grid_path,
                          s->set.resources.time_max);
    /* seeds */
    for (int i = 0; i < s->set.seeds.n; i++) {
        int v;
        if (parse_int_text(s->set.seeds.v[i], 0, &v)) {
            g.n += sw_problem(errs, "%s: seeds: '%s' is not an integer >= 0", grid_path, s->set.seeds.v[i]);
            continue;
        }
        s->seeds = qa_realloc(s->seeds, sizeof(int) * (size_t)(s->n_seeds + 1));
        s->seeds[s->n_seeds++] = v;
    }
    if (root && root->type == YAML_MAPPING_NODE) {
        if (st[0]) load_models(&g, st[0]);
        else g.n += sw_problem(errs, "%s: no models (a list of {name, path, template})", grid_path);
        if (st[1]) load_mixes(&g, st[1]);
        else g.n += sw_problem(errs, "%s: no mixes (name: [training files])", grid_path);
        load_axes(&g, st[2]);
        load_filters(&g, st[4], "exclude", &s->excludes, &s->n_excludes);
        load_filters(&g, st[5], "include", &s->includes, &s->n_includes);
        for (int i = 0; i < s->n_includes; i++)
            if (s->includes[i].model < 0 || s->includes[i].mix < 0)
                g.n += sw_problem(errs, "%s include (line %d): an included cell names its model and mix", grid_path,
                                  s->includes[i].line);
    }
    qa_train_config_free(&g.scratch);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    return g.n;
}
