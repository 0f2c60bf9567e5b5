/* cells.c — the cells of a grid: the product models x mixes x seeds x axes, minus exclude, plus
 * include; each one's resolved training config (absolute paths), its identity hash, run directory,
 * and the checks that a run directory belongs to it. */
#include "sweep/sweep_internal.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "kernels/ops.h"
#include "train/data.h"
#include "train/template.h"
#include "eval/eval.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- identity --------------------------------------------------------------------------------- */
int sw_config_hash(const char *yaml, const char *name, uint64_t *h, qa_err *e) {
    qa_train_config tc;
    qa_train_config_init(&tc);
    int rc = qa_cfg_load_text(&tc.cfg, yaml, strlen(yaml), name, e);
    if (!rc) rc = qa_cfg_set_value(&tc.cfg, "checkpoint.dir", "", "the identity hash", e);
    if (!rc) {
        char *j = qa_train_config_dump(&tc, QA_CFG_JSON, 0);
        *h = qa_fnv1a64(0, j, strlen(j));
        free(j);
    }
    qa_train_config_free(&tc);
    return rc;
}

/* ---- where the work runs ---------------------------------------------------------------------- */
static char *exe_path(void) {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return qa_strdup("qalign");
    buf[n] = 0;
    return qa_strdup(buf);
}

static int has_templates(const char *dir) {
    char *a = qa_path_join(dir, "train.sbatch"), *b = qa_path_join(dir, "eval.sbatch");
    int ok = qa_path_exists(a) && qa_path_exists(b);
    free(a);
    free(b);
    return ok;
}

/* the shipped slurm/ templates: $QALIGN_SLURM_DIR, next to the binary (build tree: ../slurm;
 * installed: ../share/qalign/slurm), the source tree this binary was built from */
static char *find_slurm_dir(const char *exe) {
    const char *env = getenv("QALIGN_SLURM_DIR");
    if (env && *env) return qa_strdup(env);
    char *d = qa_strdup(exe);
    char *slash = strrchr(d, '/');
    if (slash) *slash = 0;
    const char *rel[] = {"../slurm", "../share/qalign/slurm", "slurm"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char *j = qa_path_join(d, rel[i]), *p = sw_norm_path(j);
        free(j);
        if (has_templates(p)) {
            free(d);
            return p;
        }
        free(p);
    }
    free(d);
#ifdef QALIGN_SOURCE_DIR
    char *src = qa_path_join(QALIGN_SOURCE_DIR, "slurm");
    if (has_templates(src)) return src;
    free(src);
#endif
    return qa_strdup("");
}

/* does the cluster (or, without Slurm, this machine) offer GPUs: for model.device auto */
static int gpus_available(qa_sweep *s) {
    if (s->gpus >= 0) return s->gpus;
    if (!strcmp(s->set.slurm.gpus, "yes")) return s->gpus = 1;
    if (!strcmp(s->set.slurm.gpus, "no")) return s->gpus = 0;
    if (sw_in_path("sinfo")) {
        sw_argv a = {0};
        sw_argv_add(&a, "sinfo");
        sw_argv_add(&a, "-h");
        sw_argv_add(&a, "-o");
        sw_argv_add(&a, "%G");
        if (*s->set.slurm.partition) sw_argv_addf(&a, "--partition=%s", s->set.slurm.partition);
        char *out = NULL;
        int st = 1;
        qa_err e = {0};
        int rc = sw_capture(sw_argv_get(&a), &out, NULL, &st, &e);
        sw_argv_free(&a);
        if (rc == 0 && st == 0) {
            s->gpus = strstr(out, "gpu") != NULL;
            free(out);
            return s->gpus;
        }
        free(out);
    }
    qa_err none = {0};
    return s->gpus = qa_ops_get("cuda", &none) != NULL;
}

/* ---- building one cell ------------------------------------------------------------------------ */
static int set_kv(qa_train_config *tc, const char *kv, const char *origin, qa_err *e) {
    const char *eq = strchr(kv, '=');
    char *k = qa_strndup(kv, (size_t)(eq - kv));
    int rc = qa_cfg_set_value(&tc->cfg, k, eq + 1, origin, e);
    free(k);
    return rc;
}

static void axes_part(const qa_sweep *s, const qa_sweep_cell *c, qa_sbuf *b, const char *sep_after) {
    for (int a = 0; a < s->n_axes; a++) qa_sb_printf(b, "%s=%s%s", s->axes[a].key, c->axis_text[a], sep_after);
}

/* {model} {mix} {seed} {axes} {<axis key>} */
static char *expand_run_dir(const qa_sweep *s, const qa_sweep_cell *c) {
    qa_sbuf b = {0};
    qa_sb_put(&b, "", 0);
    for (const char *p = s->set.run_dir; *p;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (!close) {
            qa_sb_put(&b, p, 1);
            p++;
            continue;
        }
        char *k = qa_strndup(p + 1, (size_t)(close - p - 1));
        if (!strcmp(k, "model")) qa_sb_puts(&b, s->models[c->model].name);
        else if (!strcmp(k, "mix")) qa_sb_puts(&b, s->mixes[c->mix].name);
        else if (!strcmp(k, "seed")) qa_sb_printf(&b, "%d", c->seed);
        else if (!strcmp(k, "axes")) axes_part(s, c, &b, "/");
        else {
            int found = 0;
            for (int a = 0; a < s->n_axes && !found; a++)
                if (!strcmp(s->axes[a].key, k)) qa_sb_puts(&b, c->axis_text[a]), found = 1;
            if (!found) qa_sb_printf(&b, "{%s}", k); /* reported by the caller */
        }
        free(k);
        p = close + 1;
    }
    char *r = b.p[0] == '/' ? sw_norm_path(b.p) : sw_abs_path(s->set.dir, b.p);
    qa_sb_free(&b);
    return r;
}

static int build_cell(qa_sweep *s, qa_sweep_cell *c, qa_sbuf *errs) {
    const qa_sweep_model *m = &s->models[c->model];
    const qa_sweep_mix *x = &s->mixes[c->mix];
    qa_train_config tc;
    qa_train_config_init(&tc);
    qa_err e = {0};
    int rc = 0, n = 0;
    char origin[1200];
    if (*s->base_path) rc = qa_train_config_load(&tc, s->base_path, &e);
    snprintf(origin, sizeof origin, "%s set", s->grid_path);
    for (int i = 0; !rc && i < s->cell_sets.n; i++) rc = set_kv(&tc, s->cell_sets.v[i], origin, &e);
    snprintf(origin, sizeof origin, "%s model '%s' set", s->grid_path, m->name);
    for (int i = 0; !rc && i < m->sets.n; i++) rc = set_kv(&tc, m->sets.v[i], origin, &e);
    snprintf(origin, sizeof origin, "%s model '%s'", s->grid_path, m->name);
    if (!rc) rc = qa_cfg_set_value(&tc.cfg, "model.path", m->path, origin, &e);
    if (!rc && *m->template_name) rc = qa_cfg_set_value(&tc.cfg, "data.template", m->template_name, origin, &e);
    if (!rc && *m->device) rc = qa_cfg_set_value(&tc.cfg, "model.device", m->device, origin, &e);
    if (!rc) {
        qa_strlist *fl = qa_cfg_list_ptr(&tc.cfg, "data.files");
        qa_strlist_free(fl);
        for (int i = 0; i < x->files.n; i++) qa_strlist_push(fl, x->files.v[i]);
        snprintf(origin, sizeof origin, "%s mix '%s'", s->grid_path, x->name);
        qa_cfg_set_origin(&tc.cfg, "data.files", origin);
        char sb[32];
        snprintf(sb, sizeof sb, "%d", c->seed);
        rc = qa_cfg_set_value(&tc.cfg, "train.seed", sb, "the grid's seeds", &e);
    }
    for (int a = 0; !rc && a < s->n_axes; a++) {
        snprintf(origin, sizeof origin, "%s axes (line %d)", s->grid_path, s->axes[a].line);
        rc = qa_cfg_set_value(&tc.cfg, s->axes[a].key, c->axis_text[a], origin, &e);
    }
    for (int i = 0; !rc && i < s->cli_sets.n; i++) rc = set_kv(&tc, s->cli_sets.v[i], "--set", &e);
    if (rc) {
        n += sw_problem(errs, "cell %s: %s", c->name, e.msg);
        goto out;
    }
    /* the device: auto is decided here, for the cluster the cell runs on */
    if (!strcmp(tc.model.device, "auto")) {
        int g = gpus_available(s);
        qa_cfg_set_value(&tc.cfg, "model.device", g ? "cuda" : "cpu",
                         g ? "model.device auto: the cluster offers GPUs" : "model.device auto: no GPUs", &e);
    }
    snprintf(c->res.device, sizeof c->res.device, "%s", tc.model.device);
    /* CPU cores per rank, and the compute threads of the run = exactly those cores */
    int cpus = m->has_cpus ? m->given.cpus_per_rank
               : s->set.resources.cpus_per_rank ? s->set.resources.cpus_per_rank
               : tc.train.threads ? tc.train.threads
               : sw_device_gpu(tc.model.device) ? 8 : 2;
    c->res.cpus_per_rank = cpus;
    if (tc.train.threads == 0) {
        char tb[32];
        snprintf(tb, sizeof tb, "%d", cpus);
        qa_cfg_set_value(&tc.cfg, "train.threads", tb, "the cell's CPU cores per rank", &e);
    }
    /* absolute paths: the run starts from any directory (a Slurm node's, the run directory) */
    if (!qa_template_is_none(tc.data.template_name)) {
        char *tp = NULL;
        if (qa_template_find(tc.data.template_name, *s->base_path ? s->base_path : NULL, &tp, &e)) {
            n += sw_problem(errs, "cell %s: data.template: %s", c->name, e.msg);
            goto out;
        }
        char *abs = sw_abs_path(s->cwd, tp);
        qa_cfg_set_value(&tc.cfg, "data.template", abs, qa_cfg_origin(&tc.cfg, "data.template"), &e);
        free(abs);
        free(tp);
    }
    static const char *const PATH_KEYS[] = {"lora.init_adapter", "eval.data_dir", "tokenizer.path"};
    for (size_t i = 0; i < sizeof PATH_KEYS / sizeof PATH_KEYS[0]; i++) {
        char **v = qa_cfg_string_ptr(&tc.cfg, PATH_KEYS[i]);
        if (v && **v && **v != '/') {
            char *abs = sw_abs_path(s->cwd, *v), *orig = qa_strdup(qa_cfg_origin(&tc.cfg, PATH_KEYS[i]));
            qa_cfg_set_value(&tc.cfg, PATH_KEYS[i], abs, orig, &e);
            free(abs);
            free(orig);
        }
    }
    c->run_dir = expand_run_dir(s, c);
    qa_cfg_set_value(&tc.cfg, "checkpoint.dir", c->run_dir, "the sweep's run directory", &e);
    if (qa_train_config_finish(&tc, &e)) {
        n += sw_problem(errs, "cell %s: %s", c->name, e.msg);
        goto out;
    }
    if (*tc.tokenizer.path && !qa_path_exists(tc.tokenizer.path))
        n += sw_problem(errs, "cell %s: tokenizer %s does not exist (%s)", c->name, tc.tokenizer.path,
                        qa_cfg_origin(&tc.cfg, "tokenizer.path"));
    c->threads = tc.train.threads;
    c->grad_accum = tc.train.grad_accum;
    if (m->has_ranks && tc.train.grad_accum % m->given.ranks)
        n += sw_problem(errs, "cell %s: train.grad_accum = %d (%s) micro-batches per step over all ranks is not divisible "
                        "by the %d ranks of model '%s' (resources.ranks, line %d); use a multiple of %d", c->name,
                        tc.train.grad_accum, qa_cfg_origin(&tc.cfg, "train.grad_accum"), m->given.ranks, m->name, m->line,
                        m->given.ranks);
    if (strchr(c->run_dir, '{'))
        n += sw_problem(errs, "%s: run_dir '%s' names a placeholder that is not {model}, {mix}, {seed}, {axes} or an "
                        "axis key", s->grid_path, s->set.run_dir);
    c->config_yaml = qa_train_config_dump(&tc, QA_CFG_YAML, 0);
    if (sw_config_hash(c->config_yaml, c->name, &c->hash, &e)) n += sw_problem(errs, "cell %s: %s", c->name, e.msg);
    char idb[1200];
    snprintf(idb, sizeof idb, "%s@%08x", c->name, (unsigned)(c->hash >> 32));
    c->id = qa_strdup(idb);
out:
    qa_train_config_free(&tc);
    return n;
}

/* the evaluation's suite, checked now: its languages (in order) and item count */
static int load_evaluation(qa_sweep *s, qa_sbuf *errs) {
    qa_sbuf t = {0}, l = {0};
    for (int i = 0; i < s->set.evaluation.tasks.n; i++) qa_sb_printf(&t, "%s%s", i ? "," : "", s->set.evaluation.tasks.v[i]);
    for (int i = 0; i < s->set.evaluation.langs.n; i++) qa_sb_printf(&l, "%s%s", i ? "," : "", s->set.evaluation.langs.v[i]);
    qa_sb_put(&t, "", 0);
    qa_sb_put(&l, "", 0);
    char *dd = sw_abs_path(s->cwd, s->set.data_dir);
    qa_eval_selection sel = {.data_dir = dd, .tasks = t.p, .langs = l.p, .limit = s->set.evaluation.limit};
    qa_eval_suite *suite = NULL;
    qa_err e = {0};
    int n = 0;
    if (qa_eval_gold_parse(s->set.evaluation.gold, &sel.gold, &e) || qa_eval_suite_load(&suite, &sel, &e)) {
        n += sw_problem(errs, "%s evaluation: %s", s->grid_path, e.msg);
    } else {
        s->n_eval_langs = qa_eval_n_langs(suite);
        s->eval_langs = qa_calloc((size_t)s->n_eval_langs, sizeof(char *));
        for (int i = 0; i < s->n_eval_langs; i++) s->eval_langs[i] = qa_strdup(qa_eval_lang(suite, i));
        s->n_eval_tasks = qa_eval_n_tasks(suite);
        s->eval_tasks = qa_calloc((size_t)s->n_eval_tasks, sizeof(char *));
        for (int i = 0; i < s->n_eval_tasks; i++) s->eval_tasks[i] = qa_strdup(qa_eval_task_name(suite, i));
        s->eval_items = 0;
        for (int ti = 0; ti < qa_eval_n_tasks(suite); ti++)
            for (int li = 0; li < s->n_eval_langs; li++) s->eval_items += qa_eval_n_items(suite, ti, li);
    }
    qa_eval_suite_free(suite);
    free(dd);
    qa_sb_free(&t);
    qa_sb_free(&l);
    return n;
}

static char *cell_name(const qa_sweep *s, const qa_sweep_cell *c) {
    qa_sbuf b = {0};
    qa_sb_printf(&b, "%s/%s/", s->models[c->model].name, s->mixes[c->mix].name);
    axes_part(s, c, &b, "/");
    qa_sb_printf(&b, "s%d", c->seed);
    return b.p;
}

static int matches(const qa_sweep *s, const qa_sweep_filter *f, int model, int mix, int seed, char *const *ax) {
    if (f->model >= 0 && f->model != model) return 0;
    if (f->mix >= 0 && f->mix != mix) return 0;
    if (f->has_seed && f->seed != seed) return 0;
    for (int a = 0; a < s->n_axes; a++)
        if (f->axis[a] && strcmp(f->axis[a], ax[a])) return 0;
    return 1;
}

static qa_sweep_cell *new_cell(qa_sweep *s, int model, int mix, int seed, char *const *ax, int line) {
    s->cells = qa_realloc(s->cells, sizeof *s->cells * (size_t)(s->n_cells + 1));
    qa_sweep_cell *c = &s->cells[s->n_cells];
    memset(c, 0, sizeof *c);
    c->index = s->n_cells++;
    c->model = model;
    c->mix = mix;
    c->seed = seed;
    c->line = line;
    c->axis_text = qa_calloc((size_t)(s->n_axes ? s->n_axes : 1), sizeof(char *));
    for (int a = 0; a < s->n_axes; a++) c->axis_text[a] = qa_strdup(ax[a]);
    c->name = cell_name(s, c);
    return c;
}

int qa_sweep_load(qa_sweep **out, const char *grid_path, const char *const *sets, int n_sets, qa_sbuf *errs) {
    qa_sweep *s = qa_calloc(1, sizeof *s);
    s->gpus = -1;
    *out = s;
    int n = sw_grid_load(s, grid_path, sets, n_sets, errs);
    if (n) return n;
    s->exe = exe_path();
    s->slurm_dir = find_slurm_dir(s->exe);
    for (int i = 0; i < s->cli_sets.n; i++)
        for (int a = 0; a < s->n_axes; a++) {
            size_t l = strlen(s->axes[a].key);
            if (!strncmp(s->cli_sets.v[i], s->axes[a].key, l) && s->cli_sets.v[i][l] == '=')
                n += sw_problem(errs, "--set %s: '%s' is an axis of the grid (line %d); change its values there",
                                s->cli_sets.v[i], s->axes[a].key, s->axes[a].line);
        }
    if (s->n_seeds == 0) {
        /* the base config's seed */
        qa_train_config tc;
        qa_train_config_init(&tc);
        qa_err e = {0};
        if (*s->base_path) qa_train_config_load(&tc, s->base_path, &e);
        s->seeds = qa_malloc(sizeof(int));
        s->seeds[0] = tc.train.seed;
        s->n_seeds = 1;
        qa_train_config_free(&tc);
    }
    if (n) return n;
    /* the product, model-major, then mix, axes (odometer, last fastest), seed */
    int na = s->n_axes;
    int *idx = qa_calloc((size_t)(na ? na : 1), sizeof(int));
    char **ax = qa_calloc((size_t)(na ? na : 1), sizeof(char *));
    for (int mo = 0; mo < s->n_models; mo++)
        for (int mx = 0; mx < s->n_mixes; mx++) {
            memset(idx, 0, sizeof(int) * (size_t)(na ? na : 1));
            for (;;) {
                for (int a = 0; a < na; a++) ax[a] = s->axes[a].values.v[idx[a]];
                for (int sd = 0; sd < s->n_seeds; sd++) {
                    int excluded = 0;
                    for (int f = 0; f < s->n_excludes && !excluded; f++)
                        excluded = matches(s, &s->excludes[f], mo, mx, s->seeds[sd], ax);
                    if (!excluded) new_cell(s, mo, mx, s->seeds[sd], ax, 0);
                }
                int a = na - 1;
                while (a >= 0 && ++idx[a] == s->axes[a].values.n) idx[a--] = 0;
                if (a < 0) break;
            }
        }
    for (int f = 0; f < s->n_includes; f++) {
        const qa_sweep_filter *in = &s->includes[f];
        for (int a = 0; a < na; a++) ax[a] = in->axis[a] ? in->axis[a] : s->axes[a].values.v[0];
        new_cell(s, in->model, in->mix, in->has_seed ? in->seed : s->seeds[0], ax, in->line);
    }
    free(idx);
    free(ax);
    if (s->n_cells == 0) n += sw_problem(errs, "%s: every cell is excluded; nothing to run", s->grid_path);
    for (int i = 0; i < s->n_cells; i++) n += build_cell(s, &s->cells[i], errs);
    if (n) return n;
    n += load_evaluation(s, errs);
    for (int i = 0; i < s->n_cells; i++)
        for (int j = 0; j < i; j++) {
            const qa_sweep_cell *a = &s->cells[j], *b = &s->cells[i];
            if (strcmp(a->run_dir, b->run_dir)) continue;
            char la[64] = "", lb[64] = "";
            if (a->line) snprintf(la, sizeof la, " (include, line %d)", a->line);
            if (b->line) snprintf(lb, sizeof lb, " (include, line %d)", b->line);
            n += sw_problem(errs, "cells %s%s and %s%s resolve to one run directory %s: a value repeats in seeds or an "
                            "axis, an include repeats a cell of the grid, or run_dir ('%s') leaves out what tells them "
                            "apart", a->name, la, b->name, lb, a->run_dir, s->set.run_dir);
            break;
        }
    return n;
}

void qa_sweep_free(qa_sweep *s) {
    if (!s) return;
    for (int i = 0; i < s->n_cells; i++) {
        qa_sweep_cell *c = &s->cells[i];
        for (int a = 0; a < s->n_axes; a++) free(c->axis_text[a]);
        free(c->axis_text);
        free(c->name);
        free(c->id);
        free(c->run_dir);
        free(c->config_yaml);
    }
    free(s->cells);
    for (int i = 0; i < s->n_groups; i++) free(s->groups[i].cells);
    free(s->groups);
    for (int i = 0; i < s->n_models; i++) {
        qa_sweep_model *m = &s->models[i];
        free(m->name);
        free(m->path);
        free(m->template_name);
        free(m->device);
        qa_strlist_free(&m->sets);
    }
    free(s->models);
    for (int i = 0; i < s->n_mixes; i++) {
        free(s->mixes[i].name);
        qa_strlist_free(&s->mixes[i].files);
        qa_strlist_free(&s->mixes[i].langs);
    }
    free(s->mixes);
    for (int i = 0; i < s->n_axes; i++) {
        free(s->axes[i].key);
        qa_strlist_free(&s->axes[i].values);
    }
    free(s->axes);
    qa_sweep_filter *fl[2] = {s->excludes, s->includes};
    int nf[2] = {s->n_excludes, s->n_includes};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < nf[k]; i++) {
            for (int a = 0; a < s->n_axes; a++) free(fl[k][i].axis[a]);
            free(fl[k][i].axis);
        }
        free(fl[k]);
    }
    for (int i = 0; i < s->n_eval_langs; i++) free(s->eval_langs[i]);
    free(s->eval_langs);
    for (int i = 0; i < s->n_eval_tasks; i++) free(s->eval_tasks[i]);
    free(s->eval_tasks);
    free(s->seeds);
    qa_strlist_free(&s->sets);
    qa_strlist_free(&s->cell_sets);
    qa_strlist_free(&s->cli_sets);
    qa_cfg_free(&s->cfg);
    free(s->grid_path);
    free(s->cwd);
    free(s->exe);
    free(s->slurm_dir);
    free(s->base_path);
    free(s);
}

/* ---- paths -------------------------------------------------------------------------------------- */
char *qa_sweep_path(const qa_sweep *s, const char *rel) { return qa_path_join(s->set.dir, rel); }

char *qa_sweep_base_dir(const qa_sweep *s, int model) {
    char rel[600];
    snprintf(rel, sizeof rel, "base/%s", s->models[model].name);
    return qa_sweep_path(s, rel);
}

/* ---- run directories -------------------------------------------------------------------------- */
/* 0: free or ours; 1: another config (msg says which) */
static int run_dir_conflict(const qa_sweep *s, const qa_sweep_cell *c, char *msg, size_t cap) {
    qa_err e = {0};
    char *cj = qa_path_join(c->run_dir, "cell.json");
    int conflict = 0;
    if (qa_path_exists(cj)) {
        json_t *j = sw_json_load(cj, &e);
        const char *h = j ? json_string_value(json_object_get(j, "hash")) : NULL;
        char want[32];
        snprintf(want, sizeof want, "%016llx", (unsigned long long)c->hash);
        if (!j) {
            snprintf(msg, cap, "%s", e.msg);
            conflict = 1;
        } else if (!h || strcmp(h, want)) {
            const char *id = json_string_value(json_object_get(j, "id"));
            snprintf(msg, cap, "run directory %s holds cell %s (config hash %s); the grid now resolves it to %s: the "
                     "config changed", c->run_dir, id ? id : "?", h ? h : "?", want);
            conflict = 1;
        }
        json_decref(j);
    }
    free(cj);
    if (conflict) return 1;
    char *cy = qa_path_join(c->run_dir, "config.yaml");
    if (qa_path_exists(cy)) {
        char *text = NULL;
        uint64_t h = 0;
        if (qa_read_file(cy, 16u << 20, &text, NULL, &e) || sw_config_hash(text, cy, &h, &e)) {
            snprintf(msg, cap, "run directory %s holds a config.yaml that does not load (%s)", c->run_dir, e.msg);
            conflict = 1;
        } else if (h != c->hash) {
            snprintf(msg, cap, "run directory %s holds a run of another config (its config.yaml differs from the cell's)",
                     c->run_dir);
            conflict = 1;
        }
        free(text);
    }
    free(cy);
    return conflict;
}

int qa_sweep_check_run_dirs(const qa_sweep *s, qa_sbuf *errs) {
    int n = 0;
    for (int i = 0; i < s->n_cells; i++) {
        char msg[3000];
        if (run_dir_conflict(s, &s->cells[i], msg, sizeof msg))
            n += sw_problem(errs, "cell %s: %s; refusing to touch it: give the sweep another dir (--set dir=...) or "
                            "remove the directory", s->cells[i].name, msg);
    }
    return n;
}

int qa_sweep_prepare_cell(const qa_sweep *s, int i, qa_err *e) {
    const qa_sweep_cell *c = &s->cells[i];
    char msg[3000];
    if (run_dir_conflict(s, c, msg, sizeof msg)) return QA_ERR(e, "cell %s: %s; refusing to touch it", c->name, msg);
    QA_TRY(qa_mkdir_p(c->run_dir, e));
    char *p = qa_path_join(c->run_dir, "cell.yaml");
    int rc = qa_write_file_atomic(p, c->config_yaml, strlen(c->config_yaml), e);
    free(p);
    QA_TRY(rc);
    json_t *j = json_object();
    char hb[32];
    snprintf(hb, sizeof hb, "%016llx", (unsigned long long)c->hash);
    json_object_set_new(j, "id", json_string(c->id));
    json_object_set_new(j, "name", json_string(c->name));
    json_object_set_new(j, "hash", json_string(hb));
    json_object_set_new(j, "sweep", json_string(s->set.name));
    json_object_set_new(j, "grid", json_string(s->grid_path));
    json_object_set_new(j, "model", json_string(s->models[c->model].name));
    json_object_set_new(j, "mix", json_string(s->mixes[c->mix].name));
    json_object_set_new(j, "seed", json_integer(c->seed));
    json_t *ax = json_object();
    for (int a = 0; a < s->n_axes; a++) json_object_set_new(ax, s->axes[a].key, json_string(c->axis_text[a]));
    json_object_set_new(j, "axes", ax);
    json_object_set_new(j, "total_steps", json_integer(c->total_steps));
    p = qa_path_join(c->run_dir, "cell.json");
    rc = sw_json_write(p, j, e);
    free(p);
    json_decref(j);
    return rc;
}
