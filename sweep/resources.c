/* resources.c — sizing the cells: the data plan (steps, row length) as `qalign train --dry-run`
 * computes it, the memory estimate (what the allocations make, model/'s qa_model_memory_estimate: for
 * training through train/mem_estimate.h as the dry run, for evaluation as `qalign info`), a time estimate
 * from FLOPs and an assumed throughput, and the jobs' resources; cells with equal resources form one group
 * (one job array). */
#include "sweep/sweep_internal.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "train/data.h"
#include "train/template.h"
#include "train/mem_estimate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)

int qa_sweep_estimate_memory(const char *model_dir, const char *cell_yaml, int seq_len, int eval_batch,
                             qa_sweep_mem *out, qa_err *e) {
    memset(out, 0, sizeof *out);
    qa_hf_config hc;
    char *cj = qa_path_join(model_dir, "config.json");
    int rc = qa_hf_config_load(&hc, cj, e);
    free(cj);
    QA_TRY(rc);
    qa_train_config tc;
    qa_train_config_init(&tc);
    rc = qa_cfg_load_text(&tc.cfg, cell_yaml, strlen(cell_yaml), "the cell's config", e);
    qa_train_mem m;
    if (!rc) rc = qa_train_mem_estimate(&tc, &hc, seq_len, 1, NULL, &m, e); /* the dry run's figure (one rank: the
                                                                                most rows a fused pass holds) */
    if (!rc) {
        out->train_per_rank = (double)m.est.total;
        out->weights = (double)m.est.weights;
        /* evaluation: qalign info's estimate (the inference workspace and a prefix cache of seq positions) at
         * the rows of one forward; qalign eval bounds a forward at --batch-tokens 16384 padded tokens */
        int rows = eval_batch > 0 ? eval_batch : 1, seq = 16384 / rows;
        if (seq > 4096) seq = 4096;
        const qa_mem_shape es = {.train = 0, .B = rows, .T = seq, .max_out = hc.vocab, .kv_cap = seq,
                                 .quant = m.quant};
        qa_safetensors st;
        qa_err ignore = {0};
        const int have_st = qa_st_open_dir(&st, model_dir, &ignore) == 0;
        qa_mem_estimate ev;
        rc = qa_model_memory_estimate(&hc, have_st ? &st : NULL, NULL, &es, &ev, e);
        if (have_st) qa_st_close(&st);
        if (!rc) out->eval_per_rank = (double)ev.total;
    }
    qa_train_config_free(&tc);
    return rc;
}

/* the data of a cell: rows of the training split and the row length, cached per data setting */
typedef struct data_plan {
    uint64_t key;
    int64_t rows;
    int seq_len;
} data_plan;

static uint64_t data_key(const qa_train_config *tc) {
    static const char *const KEYS[] = {"model.path", "tokenizer.path", "data.files", "data.max_examples",
                                       "data.val_fraction", "data.template", "data.cutoff", "data.packing",
                                       "data.pack_length", "data.shuffle_seed"};
    uint64_t h = 0;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        char *v = qa_cfg_value_text(&tc->cfg, qa_cfg_find(&tc->cfg, KEYS[i]));
        h = qa_fnv1a64(h, v, strlen(v) + 1);
        free(v);
    }
    return h;
}

static int round_up(int s, int to) { return (s + to - 1) / to * to; }

/* tokenizers by path: the cells of a grid share a few (loading one takes about a second) */
typedef struct tok_cache {
    int n;
    char **path;
    qa_tokenizer **tok;
} tok_cache;

static void tok_cache_free(tok_cache *c) {
    for (int i = 0; i < c->n; i++) free(c->path[i]), qa_tok_free(c->tok[i]);
    free(c->path);
    free(c->tok);
    memset(c, 0, sizeof *c);
}

/* The data of a run as `qalign train --dry-run` builds it (qa_train_inputs_load, train/data.c: the
 * model's config.json, the tokenizer, the template, qa_data_build), with the tokenizer from the cache:
 * the training rows and the row length. */
static int data_plan_of(const qa_train_config *tc, tok_cache *tcache, int64_t *rows, int *seq_len, qa_err *e) {
    qa_hf_config hf;
    char *cfgp = qa_path_join(tc->model.path, "config.json");
    int rc = qa_hf_config_load(&hf, cfgp, e);
    free(cfgp);
    if (rc) return qa_err_prefix(e, "model.path %s", tc->model.path);
    const int none = qa_template_is_none(tc->data.template_name);
    qa_tokenizer *tok = NULL;
    if (!none) {
        for (int i = 0; i < tcache->n && !tok; i++)
            if (!strcmp(tcache->path[i], tc->tokenizer.path)) tok = tcache->tok[i];
        if (!tok) {
            if (qa_tok_load(&tok, tc->tokenizer.path, e)) return qa_err_prefix(e, "tokenizer.path");
            tcache->path = qa_realloc(tcache->path, sizeof(char *) * (size_t)(tcache->n + 1));
            tcache->tok = qa_realloc(tcache->tok, sizeof(qa_tokenizer *) * (size_t)(tcache->n + 1));
            tcache->path[tcache->n] = qa_strdup(tc->tokenizer.path);
            tcache->tok[tcache->n++] = tok;
        }
    }
    qa_template tpl;
    int has_tpl = 0;
    if (!none) {
        char *tp = NULL;
        rc = qa_template_find(tc->data.template_name, tc->config_path, &tp, e);
        if (!rc) rc = qa_template_load(&tpl, tp, tok, hf.bos_token_id, hf.eos_token_id, e);
        if (!rc) has_tpl = 1;
        if (!rc && tpl.end_id >= hf.vocab)
            rc = QA_ERR(e, "template %s: end token id %d is outside the model's vocab_size %d (%s)", tp, (int)tpl.end_id,
                        hf.vocab, tc->model.path);
        free(tp);
    }
    if (!rc) {
        qa_data_opts o;
        qa_data_opts_from_config(&o, tc);
        qa_data_opts_for_model(&o, &hf);
        qa_dataset ds;
        rc = qa_data_build(&ds, &o, has_tpl ? &tpl : NULL, tok, e);
        if (!rc) {
            *rows = ds.rows[QA_SPLIT_TRAIN].n_rows;
            *seq_len = tc->data.packing ? ds.row_len : ds.max_len;
            qa_data_free(&ds);
        }
    }
    if (has_tpl) qa_template_free(&tpl);
    return rc;
}

int qa_sweep_size(qa_sweep *s, qa_sbuf *errs) {
    int n = 0;
    data_plan *cache = NULL;
    int n_cache = 0;
    tok_cache tcache = {0};
    const int tmin = qa_sweep_parse_time(s->set.resources.time_min), tmax = qa_sweep_parse_time(s->set.resources.time_max);
    for (int i = 0; i < s->n_cells; i++) {
        qa_sweep_cell *c = &s->cells[i];
        const qa_sweep_model *m = &s->models[c->model];
        qa_train_config tc;
        qa_train_config_init(&tc);
        qa_err e = {0};
        if (qa_cfg_load_text(&tc.cfg, c->config_yaml, strlen(c->config_yaml), c->name, &e)) {
            n += sw_problem(errs, "cell %s: %s", c->name, e.msg);
            qa_train_config_free(&tc);
            continue;
        }
        uint64_t key = data_key(&tc);
        data_plan *dp = NULL;
        for (int k = 0; k < n_cache; k++)
            if (cache[k].key == key) dp = &cache[k];
        if (!dp) {
            int64_t rows = 0;
            int seq = 0;
            if (data_plan_of(&tc, &tcache, &rows, &seq, &e)) {
                n += sw_problem(errs, "cell %s: %s", c->name, e.msg);
                qa_train_config_free(&tc);
                continue;
            }
            cache = qa_realloc(cache, sizeof *cache * (size_t)(n_cache + 1));
            dp = &cache[n_cache++];
            dp->key = key;
            dp->rows = rows;
            dp->seq_len = seq;
        }
        if (dp->rows == 0) {
            n += sw_problem(errs, "cell %s: no training rows (every example is held out for validation)", c->name);
            qa_train_config_free(&tc);
            continue;
        }
        qa_train_plan p;
        qa_train_plan_compute(&p, dp->rows, tc.train.micro_batch, tc.train.grad_accum, 1, tc.train.epochs,
                              tc.train.max_steps, tc.train.warmup_ratio);
        c->total_steps = p.total_steps;
        c->rows_per_step = p.rows_per_step;
        c->seq_len = dp->seq_len;
        qa_sweep_mem mem;
        if (qa_sweep_estimate_memory(m->path, c->config_yaml, c->seq_len, s->set.evaluation.batch, &mem, &e)) {
            n += sw_problem(errs, "cell %s: %s", c->name, e.msg);
            qa_train_config_free(&tc);
            continue;
        }
        c->mem_train = mem.train_per_rank;
        c->mem_eval = mem.eval_per_rank;
        /* FLOPs: LoRA ~ 4 N per token (forward + backward through frozen weights) + causal attention */
        qa_hf_config hc;
        char *cj = qa_path_join(m->path, "config.json");
        qa_hf_config_load(&hc, cj, &e);
        free(cj);
        double qdim = (double)hc.n_heads * hc.head_dim, T = c->seq_len;
        double tokens = (double)c->total_steps * (double)c->rows_per_step * T;
        c->flops = tokens * (4.0 * (double)m->params + 6.0 * hc.n_layers * T * qdim);
        const int cuda = sw_device_gpu(c->res.device);
        const double per_rank = cuda ? s->set.resources.gpu_tflops * 1e12
                                     : c->res.cpus_per_rank * s->set.resources.cpu_gflops * 1e9;
        /* ranks: given, or doubled from 1 while the estimate exceeds the target */
        int ranks = m->has_ranks ? m->given.ranks : 1;
        if (!m->has_ranks)
            while (1.5 * c->flops / (ranks * per_rank) > s->set.resources.target_hours * 3600 &&
                   ranks * 2 <= s->set.resources.max_ranks && tc.train.grad_accum % (ranks * 2) == 0)
                ranks *= 2;
        c->res.ranks = ranks;
        c->res.gpus_per_rank = cuda;
        double gpu_mem = (m->gpu_mem_gb > 0 ? m->gpu_mem_gb : s->set.resources.gpu_mem_gb) * GIB;
        if (cuda && (c->mem_train > gpu_mem || c->mem_eval > gpu_mem))
            n += sw_problem(errs, "cell %s: needs ~%.1f GiB per GPU for training (the dry run's estimate at micro-batch "
                            "%d x %d tokens) and ~%.1f GiB for its evaluation (batch %d), more than the %.0f GiB of a GPU "
                            "(resources.gpu_mem_gb); lower train.micro_batch (raising train.grad_accum), data.cutoff or "
                            "evaluation.batch", c->name, c->mem_train / GIB, tc.train.micro_batch, c->seq_len,
                            c->mem_eval / GIB, s->set.evaluation.batch, gpu_mem / GIB);
        const double slack = s->set.resources.mem_slack;
        double need = cuda ? ranks * (mem.weights + 2 * GIB) : ranks * (c->mem_train * slack + 512 * MIB);
        if (m->has_mem) {
            c->res.mem_mb = m->given.mem_mb;
            double floor_b = cuda ? ranks * mem.weights : ranks * c->mem_train;
            if ((double)m->given.mem_mb * MIB < floor_b)
                n += sw_problem(errs, "cell %s: needs ~%.2f GiB of host memory (%d rank(s) x %.2f GiB, the dry run's "
                                "estimate), more than the mem %lld M of model '%s' (line %d)", c->name, floor_b / GIB,
                                ranks, floor_b / ranks / GIB, (long long)m->given.mem_mb, m->name, m->line);
        } else {
            c->res.mem_mb = (int64_t)ceil(need / MIB / 64.0) * 64;
        }
        int t_est = (int)fmin(1.5 * c->flops / (ranks * per_rank) + 300.0, 365.0 * 86400);
        if (m->has_time) {
            c->res.time_s = m->given.time_s;
            if (c->res.time_s < s->set.slurm.signal_s + 60)
                n += sw_problem(errs, "cell %s: the time limit %d s of model '%s' (line %d) leaves no room to checkpoint "
                                "before it: it must exceed slurm.signal_s (%d s) + 60 s", c->name, c->res.time_s, m->name,
                                m->line, s->set.slurm.signal_s);
        } else {
            int t = round_up(t_est, 300);
            if (t < tmin) t = tmin;
            if (t < s->set.slurm.signal_s + 300) t = round_up(s->set.slurm.signal_s + 300, 300);
            if (t > tmax) t = tmax;
            c->res.time_s = t;
        }
        /* the evaluation job */
        qa_sweep_res *er = &c->eval_res;
        memset(er, 0, sizeof *er);
        snprintf(er->device, sizeof er->device, "%s", c->res.device);
        er->ranks = s->set.evaluation.ranks;
        er->gpus_per_rank = cuda;
        er->cpus_per_rank = c->res.cpus_per_rank;
        double eneed = cuda ? er->ranks * (mem.weights + 2 * GIB) : er->ranks * (c->mem_eval * slack + 512 * MIB);
        er->mem_mb = (int64_t)ceil(eneed / MIB / 64.0) * 64;
        double etok = (double)s->eval_items * 150.0 + (double)s->n_eval_langs * 3 * 1500.0;
        double eval_s = 3.0 * 2.0 * (double)m->params * etok / (er->ranks * per_rank) + 300.0;
        int et = round_up((int)fmin(eval_s, 365.0 * 86400), 300);
        er->time_s = et < tmin ? tmin : et > tmax ? tmax : et;
        qa_train_config_free(&tc);
    }
    free(cache);
    tok_cache_free(&tcache);
    if (n) return n;
    /* groups: equal training and evaluation resources */
    for (int i = 0; i < s->n_groups; i++) free(s->groups[i].cells);
    free(s->groups);
    s->groups = NULL;
    s->n_groups = 0;
    for (int i = 0; i < s->n_cells; i++) {
        qa_sweep_cell *c = &s->cells[i];
        int g = -1;
        for (int k = 0; k < s->n_groups && g < 0; k++)
            if (qa_sweep_res_equal(&s->groups[k].res, &c->res) && qa_sweep_res_equal(&s->groups[k].eval_res, &c->eval_res))
                g = k;
        if (g < 0) {
            s->groups = qa_realloc(s->groups, sizeof *s->groups * (size_t)(s->n_groups + 1));
            g = s->n_groups++;
            memset(&s->groups[g], 0, sizeof s->groups[g]);
            s->groups[g].res = c->res;
            s->groups[g].eval_res = c->eval_res;
        }
        qa_sweep_group *gr = &s->groups[g];
        gr->cells = qa_realloc(gr->cells, sizeof(int) * (size_t)(gr->n + 1));
        gr->cells[gr->n++] = i;
        c->group = g;
    }
    s->sized = 1;
    return 0;
}
