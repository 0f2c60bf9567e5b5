/* trainer.c — qa_train_run: data → LoRA steps over ranks → checkpoints → PEFT adapter.
 * The contract (global batch, determinism, run directory) is in train/train.h. */
#include "train/train.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_sbuf.h"
#include "common/qa_version.h"
#include "io/checkpoint.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "train/best.h"
#include "train/data.h"
#include "train/run_checks.h"
#include "train/template.h"
#include "eval/eval.h"
#include "eval/report_tb.h"
#include "io/tfevents.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONSECUTIVE_SKIPS 5

typedef struct trainer {
    const qa_train_config *tc;
    qa_dist *d;
    int rank, world, coord;
    qa_tokenizer *tok;
    double comm_s;         /* seconds of the last step spent in its collectives (rank-local) */
    qa_eval_suite *suite;  /* the multilingual evaluation (eval.every / eval.at_end), NULL when off */
    qa_model m;
    int model_loaded;
    qa_template tpl;
    int tpl_loaded;
    qa_dataset ds;
    int ds_built;
    qa_lora l;
    int lora_ready;
    const qa_ops *ops;     /* the compute backend (model.device) */
    char device_desc[160];
    qa_comm *comm;         /* the LoRA gradient all-reduce: host (cpu), nccl or staged (device buffers) */
    int comm_owned;
    float *hp, *hm, *hv;   /* host views of params / AdamW m / v: the blocks themselves on a host backend, a
                              mirror on a device (checkpoints and resume go through it) */
    float *mirror;
    qa_acts acts;
    int acts_ready;
    qa_microbatch mb;
    qa_dist_tree tree;
    qa_train_plan plan;
    int K;                 /* micro-batches per optimizer step, all ranks */
    int k_lo, k_hi;        /* this rank's micro-batches [k_lo, k_hi) */
    int64_t *order;        /* epoch order of training rows */
    int order_epoch;
    /* position */
    int64_t step;          /* optimizer steps completed */
    int epoch;
    int64_t cursor;        /* training rows of this epoch consumed (all ranks) */
    int64_t tokens_seen;
    int64_t skipped;
    uint64_t shuffle_seed;
    /* history of per-step losses (for checkpoints and resume checks) */
    double *loss_hist;
    int64_t n_hist, cap_hist;
    /* logging */
    FILE *metrics;
    qa_tb *tb;             /* TensorBoard events (log.tensorboard), NULL when off */
    double t_start;
    int64_t steps_this_run;
    int64_t tokens_this_run;
    char *config_yaml;
    char last_ckpt[4096];  /* the newest committed checkpoint (rank 0), "" if none */
    char model_id[64];     /* content id of model.path (checkpoints record it) */
    int64_t ckpt_step;     /* step of the newest committed or resumed checkpoint (every rank), -1 = none */
    qa_best best;          /* the checkpoint of the lowest validation loss (train/best.h) */
    /* checkpoint tensor tables */
    qa_ckpt_tensor *ck_lora;
    float **ck_m, **ck_v;
    char **ck_names;
    size_t n_ck;
} trainer;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void logmsg(const trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logmsg(const trainer *t, const char *fmt, ...) {
    if (!t->coord) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("qalign: ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

static void ckpt_log(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "qalign: warning: %s\n", msg);
    fflush(stderr);
}

static void fmt_hms(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, n, "--:--:--"); return; }
    long x = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", x / 3600, (x / 60) % 60, x % 60);
}

/* ---- setup ------------------------------------------------------------------------------------ */

static int lora_modules_from_config(const qa_train_config *tc, unsigned *mask, qa_err *e) {
    *mask = 0;
    for (size_t i = 0; i < tc->lora.targets.n; i++) {
        int m = qa_lora_module_from_name(tc->lora.targets.v[i]);
        if (m < 0)
            return QA_ERR(e, "lora.targets: unknown module '%s' (known: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)",
                          tc->lora.targets.v[i]);
        *mask |= QA_LORA_BIT(m);
    }
    if (!*mask) return QA_ERR(e, "lora.targets is empty: name at least one projection, e.g. q_proj,v_proj");
    return 0;
}

static int build_ckpt_tables(trainer *t) {
    qa_lora *l = &t->l;
    if (t->ops->host_memory) {
        t->hp = l->params, t->hm = l->m, t->hv = l->v;
    } else {
        t->mirror = qa_malloc(3 * l->n_params * sizeof(float));
        t->hp = t->mirror, t->hm = t->mirror + l->n_params, t->hv = t->mirror + 2 * l->n_params;
    }
    size_t cap = (size_t)l->n_layers * QA_LORA_N_MODULES * 2;
    t->ck_lora = qa_calloc(cap, sizeof *t->ck_lora);
    t->ck_m = qa_calloc(cap, sizeof *t->ck_m);
    t->ck_v = qa_calloc(cap, sizeof *t->ck_v);
    t->ck_names = qa_calloc(cap, sizeof *t->ck_names);
    size_t n = 0;
    for (int layer = 0; layer < l->n_layers; layer++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            qa_lora_mat *mt = qa_lora_at(l, layer, mod);
            if (!mt->present) continue;
            for (int isB = 0; isB < 2; isB++) {
                char name[256];
                qa_lora_peft_name(name, sizeof name, layer, mod, isB);
                size_t off = isB ? mt->off_B : mt->off_A;
                qa_ckpt_tensor *ct = &t->ck_lora[n];
                t->ck_names[n] = qa_strdup(name);
                ct->name = t->ck_names[n];
                ct->dtype = QA_CKPT_F32;
                ct->ndim = 2;
                ct->shape[0] = isB ? mt->out : l->r;
                ct->shape[1] = isB ? l->r : mt->in;
                ct->data = t->hp + off;
                ct->layout = isB ? "[out_features, r]" : "[r, in_features]";
                t->ck_m[n] = t->hm + off;
                t->ck_v[n] = t->hv + off;
                n++;
            }
        }
    t->n_ck = n;
    return 0;
}

static void hist_push(trainer *t, double loss) {
    if (t->n_hist == t->cap_hist) {
        t->cap_hist = t->cap_hist ? 2 * t->cap_hist : 256;
        t->loss_hist = qa_realloc(t->loss_hist, (size_t)t->cap_hist * sizeof *t->loss_hist);
    }
    t->loss_hist[t->n_hist++] = loss;
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

static int save_checkpoint(trainer *t, qa_err *e) {
    const qa_train_config *tc = t->tc;
    int ok = 1;
    char path[4096] = "";
    qa_err le = {0};
    if (t->coord && !t->ops->host_memory) { /* the device state into the host mirror the tables point at */
        size_t nb = t->l.n_params * sizeof(float);
        t->ops->memcpy_d2h(t->m.stream, t->hp, t->l.params, nb);
        t->ops->memcpy_d2h(t->m.stream, t->hm, t->l.m, nb);
        t->ops->memcpy_d2h(t->m.stream, t->hv, t->l.v, nb);
        if (t->ops->sync(t->m.stream, &le)) ok = 0;
    }
    if (t->coord && ok) {
        const char *targets[QA_LORA_N_MODULES];
        size_t nt = 0;
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++)
            if (t->l.modules & QA_LORA_BIT(mod)) targets[nt++] = qa_lora_module_name(mod);
        uint64_t seeds[2] = {(uint64_t)(int64_t)tc->train.seed, t->shuffle_seed};
        qa_ckpt_tensor rng = {.name = "seeds", .dtype = QA_CKPT_U64, .ndim = 1, .shape = {2}, .data = seeds,
                              .layout = "[train.seed, data.shuffle_seed]; every random stream derives from them"};
        int64_t nh = t->n_hist;
        qa_ckpt_tensor met = {.name = "loss", .dtype = QA_CKPT_F64, .ndim = 1, .shape = {nh}, .data = t->loss_hist,
                              .layout = "[step]: training loss of optimizer step i+1"};
        qa_ckpt_state st = {.lora = t->ck_lora, .n_lora = t->n_ck, .adam_m = t->ck_m, .adam_v = t->ck_v,
                            .rng = &rng, .n_rng = 1, .metrics = nh ? &met : NULL, .n_metrics = nh ? 1 : 0};
        qa_ckpt_meta meta = {.step = t->step, .optim_step = t->l.step, .epoch = t->epoch, .cursor = t->cursor,
                             .tokens_seen = t->tokens_seen, .skipped_steps = t->skipped,
                             .shuffle_seed = t->shuffle_seed, .world_size = t->world, .lora_r = t->l.r,
                             .lora_alpha = t->l.alpha, .target_modules = targets, .n_target_modules = nt,
                             .base_model = tc->model.path, .base_model_id = t->model_id,
                             .config_yaml = t->config_yaml, .qalign_version = QALIGN_VERSION_STRING};
        qa_ckpt_save_opts so = {.keep_last = tc->checkpoint.keep_last, .log = ckpt_log};
        double t0 = now_s();
        qa_dist_note(t->d, "save checkpoint");
        if (qa_ckpt_save(tc->checkpoint.dir, &meta, &st, &so, path, sizeof path, &le)) ok = 0;
        else {
            logmsg(t, "checkpoint step %lld committed: %s (%.2f s)", (long long)t->step, path, now_s() - t0);
            snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", path);
        }
    }
    qa_dist_bcast(t->d, &ok, sizeof ok, 0, "checkpoint commit status");
    if (!ok) {
        if (t->coord) {
            char msg[sizeof le.msg];
            snprintf(msg, sizeof msg, "%s", le.msg);
            if (t->last_ckpt[0])
                return QA_ERR(e, "rank 0: %s; the run stops here: %s is the newest valid checkpoint, rerun after fixing "
                              "the cause (disk space, quota, permissions) to resume from it", msg, t->last_ckpt);
            return QA_ERR(e, "rank 0: %s; the run stops here with no checkpoint committed yet", msg);
        }
        return QA_ERR(e, "rank %d: rank 0 failed to commit the checkpoint of step %lld (see its message)", t->rank,
                      (long long)t->step);
    }
    t->ckpt_step = t->step;
    return 0;
}

/* Keys that fix what a step and the data cursor mean: changing one between a checkpoint and its
 * resume changes the run (the resume is then not the continuation of the same run). */
static const char *const RESUME_KEYS[] = {"data.files", "data.max_examples", "data.val_fraction", "data.template",
                                          "data.cutoff", "data.packing", "data.pack_length", "train.micro_batch",
                                          "train.grad_accum", "train.seed", "lora.dropout", "train.lr",
                                          "train.schedule", "train.warmup_ratio", "train.weight_decay",
                                          "train.max_grad_norm"};

/* Warn (rank 0) about every RESUME_KEYS value that differs from the checkpoint's recorded config. */
static void warn_config_changes(const trainer *t, const char *ckpt_path, const char *yaml) {
    if (!yaml || !*yaml) return;
    qa_train_config old;
    qa_train_config_init(&old);
    qa_err le = {0};
    if (qa_cfg_load_text(&old.cfg, yaml, strlen(yaml), "checkpoint config_yaml", &le) == 0) {
        for (size_t k = 0; k < sizeof RESUME_KEYS / sizeof RESUME_KEYS[0]; k++) {
            int i = qa_cfg_find(&old.cfg, RESUME_KEYS[k]), j = qa_cfg_find(&t->tc->cfg, RESUME_KEYS[k]);
            if (i < 0 || j < 0) continue;
            char *a = qa_cfg_value_text(&old.cfg, i), *b = qa_cfg_value_text(&t->tc->cfg, j);
            if (strcmp(a, b))
                fprintf(stderr, "qalign: warning: %s = %s now, but %s was written with %s: the resumed run is not the "
                        "continuation of the same run (same settings give bit-identical results)\n", RESUME_KEYS[k], b,
                        ckpt_path, a);
            free(a);
            free(b);
        }
    }
    qa_train_config_free(&old);
}

/* Resume from the newest valid checkpoint: rank 0 reads and verifies, everyone receives. */
static int try_resume(trainer *t, int64_t *resumed_from, qa_err *e) {
    *resumed_from = -1;
    int found = 0;
    qa_err le = {0};
    int64_t hdr[8] = {0};
    qa_ckpt *ck = NULL;
    if (t->coord) {
        qa_ckpt_state st = {.lora = t->ck_lora, .n_lora = t->n_ck, .adam_m = t->ck_m, .adam_v = t->ck_v};
        int rc = qa_ckpt_load_latest(t->tc->checkpoint.dir, &st, &ck, ckpt_log, NULL, &le);
        if (rc < 0) found = -1;
        else if (rc == 1) {
            const qa_ckpt_meta *mt = qa_ckpt_meta_of(ck);
            found = 1;
            if (mt->shuffle_seed != t->shuffle_seed) {
                QA_ERR(&le, "%s was written with data.shuffle_seed %llu but this run uses %llu: the data order would "
                       "change; use the same seed or a new checkpoint.dir", qa_ckpt_path(ck),
                       (unsigned long long)mt->shuffle_seed, (unsigned long long)t->shuffle_seed);
                found = -1;
            } else if (qa_train_resume_check(mt, qa_ckpt_path(ck), &t->plan, t->model_id, &le) ||
                       qa_train_resume_check_state(t->ck_lora, t->ck_m, t->ck_v, t->n_ck, qa_ckpt_path(ck), &le)) {
                found = -1;
            } else {
                warn_config_changes(t, qa_ckpt_path(ck), mt->config_yaml);
                hdr[0] = mt->step; hdr[1] = mt->optim_step; hdr[2] = mt->epoch; hdr[3] = mt->cursor;
                hdr[4] = mt->tokens_seen; hdr[5] = mt->skipped_steps;
                const qa_ckpt_info *mi = qa_ckpt_find(ck, "metrics/loss");
                hdr[6] = mi ? mi->numel : 0;
                if (hdr[6] != hdr[0]) {
                    QA_ERR(&le, "%s: metrics/loss holds %lld entries for step %lld; the checkpoint is inconsistent",
                           qa_ckpt_path(ck), (long long)hdr[6], (long long)hdr[0]);
                    found = -1;
                }
            }
        }
    }
    qa_dist_bcast(t->d, &found, sizeof found, 0, "resume: checkpoint found");
    if (found < 0) {
        if (ck) qa_ckpt_close(ck);
        if (t->coord) { *e = le; return -1; }
        return QA_ERR(e, "rank %d: rank 0 could not load a checkpoint (see its message)", t->rank);
    }
    if (!found) return 0;
    qa_dist_bcast(t->d, hdr, sizeof hdr, 0, "resume: state");
    t->step = hdr[0];
    t->l.step = hdr[1];
    t->epoch = (int)hdr[2];
    t->cursor = hdr[3];
    t->tokens_seen = hdr[4];
    t->skipped = hdr[5];
    t->n_hist = 0;
    int64_t nh = hdr[6];
    double *hist = qa_calloc((size_t)(nh ? nh : 1), sizeof *hist);
    if (t->coord && nh) {
        int64_t shape[1] = {nh};
        if (qa_ckpt_read(ck, "metrics/loss", QA_CKPT_F64, 1, shape, hist, &le)) {
            QA_DIE("reading the loss history of a verified checkpoint failed: %s", le.msg);
        }
    }
    qa_dist_bcast(t->d, hist, (size_t)nh * sizeof *hist, 0, "resume: loss history");
    for (int64_t i = 0; i < nh; i++) hist_push(t, hist[i]);
    free(hist);
    size_t nb = t->l.n_params * sizeof(float);
    qa_dist_bcast(t->d, t->hp, nb, 0, "resume: LoRA parameters");
    qa_dist_bcast(t->d, t->hm, nb, 0, "resume: AdamW m");
    qa_dist_bcast(t->d, t->hv, nb, 0, "resume: AdamW v");
    if (!t->ops->host_memory) {
        t->ops->memcpy_h2d(t->m.stream, t->l.params, t->hp, nb);
        t->ops->memcpy_h2d(t->m.stream, t->l.m, t->hm, nb);
        t->ops->memcpy_h2d(t->m.stream, t->l.v, t->hv, nb);
        if (t->ops->sync(t->m.stream, e)) return qa_err_prefix(e, "rank %d: resume: uploading the LoRA state", t->rank);
    }
    if (t->coord) {
        uint32_t crc = qa_crc32c(0, t->hp, nb);
        snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", qa_ckpt_path(ck));
        logmsg(t, "resumed from %s: step %lld, epoch %d, row %lld, AdamW step %lld, last loss %.6f, %zu LoRA tensors "
               "(%zu parameters, crc32c %08x)", qa_ckpt_path(ck), (long long)t->step, t->epoch, (long long)t->cursor,
               (long long)t->l.step, nh ? t->loss_hist[nh - 1] : NAN, t->n_ck, t->l.n_params, crc);
        qa_ckpt_close(ck);
    }
    *resumed_from = t->step;
    t->ckpt_step = t->step;
    return 0;
}

/* metrics.jsonl: keep the lines of steps <= the resumed step (a killed run may have logged more). */
static int open_metrics(trainer *t, qa_err *e) {
    if (!t->coord) return 0;
    char *path = qa_path_join(t->tc->checkpoint.dir, "metrics.jsonl");
    if (qa_path_exists(path)) {
        char *buf; size_t len;
        if (qa_read_file(path, 0, &buf, &len, e)) { free(path); return -1; }
        char *out = qa_malloc(len + 1);
        size_t o = 0;
        for (char *line = buf; *line;) {
            char *nl = strchr(line, '\n');
            size_t ll = nl ? (size_t)(nl - line + 1) : strlen(line);
            const char *sp = strstr(line, "\"step\":");
            long long s = sp ? atoll(sp + 7) : 0;
            if (nl && (!sp || s <= t->step)) { memcpy(out + o, line, ll); o += ll; }
            line += ll;
        }
        int rc = qa_write_file_atomic(path, out, o, e);
        free(out); free(buf);
        if (rc) { free(path); return -1; }
    }
    t->metrics = fopen(path, "a");
    if (!t->metrics) { QA_ERRNO(e, errno, "cannot open %s for appending", path); free(path); return -1; }
    free(path);
    if (t->tc->log.tensorboard) { /* a new event file per run; TensorBoard discards steps a resume repeats */
        char *tbdir = qa_path_join(t->tc->checkpoint.dir, "tensorboard");
        int rc = qa_tb_open(&t->tb, tbdir, e);
        free(tbdir);
        QA_TRY(rc);
    }
    return 0;
}

/* Push the appended lines to the file; a full disk (ENOSPC, EFBIG) is an error: the run stops with
 * its last checkpoint intact instead of training on without a log. */
static int metrics_flush(trainer *t, qa_err *e) {
    if (fflush(t->metrics) == 0 && !ferror(t->metrics)) return 0;
    int en = errno;
    char *path = qa_path_join(t->tc->checkpoint.dir, "metrics.jsonl");
    QA_ERRNO(e, en ? en : EIO, "cannot append to %s at step %lld (the last checkpoint is intact: fix the cause and "
             "rerun to resume)", path, (long long)t->step);
    free(path);
    return -1;
}

/* One metrics.jsonl line (with its newline) appended and flushed; its numbers also go to the
 * TensorBoard events (log.tensorboard) at the line's step. */
static int metrics_line(trainer *t, qa_sbuf *line, qa_err *e) {
    fputs(line->p, t->metrics);
    int rc = metrics_flush(t, e);
    if (!rc && t->tb) rc = qa_tb_json_scalars(t->tb, "", line->p, e);
    qa_sb_free(line);
    return rc;
}

/* ---- the gradient reduction: micro-batch tree and all-reduce on the backend's memory ---------------- */

static void *tr_alloc(void *ctx, size_t bytes) {
    trainer *t = ctx;
    qa_err le = {0};
    void *p = t->ops->alloc(bytes, &le);
    if (!p) qa_dist_abort(t->d, 1, "gradient accumulation buffer: %s", le.msg);
    return p;
}
static void tr_release(void *ctx, void *p) { ((trainer *)ctx)->ops->free(p); }
static void tr_copy(void *ctx, float *dst, const float *src, size_t n) {
    trainer *t = ctx;
    t->ops->memcpy_d2d(t->m.stream, dst, src, n * sizeof(float));
}
static void tr_add(void *ctx, float *a, const float *b, size_t n) { /* a = 1*b + a: exactly a + b */
    trainer *t = ctx;
    t->ops->axpy(t->m.stream, n, 1.0f, b, a);
}
static void tr_zero(void *ctx, float *dst, size_t n) {
    trainer *t = ctx;
    t->ops->memset0(t->m.stream, dst, n * sizeof(float));
}
static void tr_d2h(void *ctx, void *host, const void *dev, size_t bytes) {
    trainer *t = ctx;
    t->ops->memcpy_d2h(t->m.stream, host, dev, bytes);
}
static void tr_h2d(void *ctx, void *dev, const void *host, size_t bytes) {
    trainer *t = ctx;
    qa_err le = {0};
    t->ops->memcpy_h2d(t->m.stream, dev, host, bytes);
    if (t->ops->sync(t->m.stream, &le)) qa_dist_abort(t->d, 1, "gradient all-reduce upload: %s", le.msg);
}

/* The micro-batch tree lives where the gradients do; the all-reduce is MPI on host memory (cpu), NCCL on
 * device buffers (cuda, several ranks, a build with NCCL), or staged through the host over MPI (the
 * emulated device; a CUDA build without NCCL) — the same deterministic tree in every case. */
static int setup_reduction(trainer *t, qa_err *e) {
    qa_dist_tree_mem mem = {t, tr_alloc, tr_release, tr_copy, tr_add, tr_zero};
    qa_dist_tree_init_mem(&t->tree, t->l.n_params, &mem);
    if (t->ops->host_memory) {
        t->comm = qa_dist_host_comm(t->d);
        return 0;
    }
    qa_err le = {0};
    if (!strcmp(t->ops->name, "cuda") && t->world > 1) {
        int ok = qa_dist_nccl_comm(t->d, &t->comm, &le) == 0;
        int all = qa_dist_all_true(t->d, ok, "NCCL communicator");
        if (all) {
            t->comm_owned = 1;
            return 0;
        }
        if (ok) { qa_comm_free(t->comm); t->comm = NULL; }
        int none = !qa_dist_all_true(t->d, !ok, "NCCL communicator (none)") ? 0 : 1;
        if (!none) return QA_ERR(e, "rank %d: the NCCL communicator could be made on some ranks only%s%s", t->rank,
                                 ok ? "" : ": ", ok ? "" : le.msg);
        logmsg(t, "NCCL unavailable (%s): the gradient all-reduce is staged through host memory over MPI", le.msg);
    }
    qa_comm_stage st = {t, tr_d2h, tr_h2d};
    if (qa_dist_staged_comm(t->d, &st, &t->comm, e)) return -1;
    t->comm_owned = 1;
    return 0;
}

/* ---- one step --------------------------------------------------------------------------------- */

static const int64_t *epoch_order(trainer *t) {
    if (t->order_epoch != t->epoch) {
        qa_data_epoch_order(&t->ds, t->epoch, t->order);
        t->order_epoch = t->epoch;
    }
    return t->order;
}

static int train_step(trainer *t, double *loss_out, int64_t *tok_out, double *gnorm_out, int *skipped, qa_err *e) {
    const qa_train_config *tc = t->tc;
    int64_t rows = t->plan.rows_per_epoch;
    if (t->cursor >= rows) { t->epoch++; t->cursor = 0; }
    const int64_t *order = epoch_order(t);
    int mbsz = tc->train.micro_batch, K = t->K;
    double *losses = qa_calloc((size_t)K, sizeof *losses);
    int64_t *toks = qa_calloc((size_t)K * 2, sizeof *toks);
    qa_lora *l = &t->l;
    for (int k = t->k_lo; k < t->k_hi; k++) {
        int64_t a = t->cursor + (int64_t)k * mbsz, b = a + mbsz;
        if (b > rows) b = rows;
        qa_lora_zero_grad(l);
        if (a < b) {
            qa_data_fill_batch(&t->ds, QA_SPLIT_TRAIN, order + a, (int)(b - a), &t->mb);
            qa_batch view;
            qa_microbatch_view(&t->mb, &view);
            qa_train_opts to = {.grad_scale = 1.0f / (float)K,
                                .dropout_key = qa_data_mix64(((uint64_t)tc->train.seed << 40) ^ ((uint64_t)t->step << 16) ^ (uint64_t)k),
                                .want_embed_grad = 0};
            qa_loss lo;
            qa_dist_note(t->d, "forward/backward");
            if (qa_model_forward_backward(&t->m, l, &t->acts, &view, &to, &lo, e)) {
                free(losses); free(toks);
                return qa_err_prefix(e, "rank %d, step %lld, micro-batch %d", t->rank, (long long)t->step + 1, k);
            }
            losses[k] = lo.loss;
            toks[2 * k] = t->mb.n_tokens;
            toks[2 * k + 1] = lo.n_tokens;
        }
        qa_dist_tree_push(&t->tree, l->grads);
    }
    qa_dist_tree_result(&t->tree, l->grads);
    if (t->ops->sync(t->m.stream, e)) {
        free(losses); free(toks);
        return qa_err_prefix(e, "rank %d, step %lld: gradients", t->rank, (long long)t->step + 1);
    }
    qa_dist_note(t->d, "gradient all-reduce");
    double tc0 = now_s();
    qa_comm_allreduce_sum(t->comm, l->grads, l->n_params, QA_DT_F32, "LoRA gradient all-reduce");
    qa_dist_allreduce_f64(t->d, losses, (size_t)K, QA_DIST_SUM, "micro-batch losses");
    qa_dist_allreduce_i64(t->d, toks, (size_t)K * 2, QA_DIST_SUM, "micro-batch token counts");
    t->comm_s = now_s() - tc0; /* includes waiting for the slowest rank */
    double loss = 0;
    int64_t ntok = 0;
    /* the logged loss: the mean of the micro-batch means (K of them, fewer in the last step of an
     * epoch, whose empty micro-batches carry no loss; their gradients are still scaled by 1/K, as the
     * HF Trainer scales by gradient_accumulation_steps) */
    int nonempty = 0;
    for (int k = 0; k < K; k++) {
        if (toks[2 * k] > 0) { loss += losses[k]; nonempty++; }
        ntok += toks[2 * k];
    }
    loss = nonempty ? loss / nonempty : 0.0;
    free(losses); free(toks);
    *loss_out = loss;
    *tok_out = ntok;
    t->cursor += (int64_t)K * mbsz;
    if (t->cursor > rows) t->cursor = rows;
    t->tokens_seen += ntok;
    /* every rank holds the same gradient bits: the same decisions everywhere, no collective. Norm, finite
     * check, clipping and AdamW run as ops on the backend's blocks (model/lora.c). */
    double lr = qa_lr_at(tc->train.schedule, tc->train.lr, t->step, t->plan.warmup_steps, t->plan.total_steps);
    qa_adamw opt = {.lr = (float)lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = (float)tc->train.weight_decay};
    int applied = qa_lora_step(l, &opt, tc->train.max_grad_norm, isfinite(loss), gnorm_out, e);
    if (applied < 0) return qa_err_prefix(e, "rank %d, step %lld: optimizer step", t->rank, (long long)t->step + 1);
    *skipped = !applied;
    if (!applied) t->skipped++;
    return 0;
}

/* Validation: mean token cross-entropy over the whole validation split (global token mean), with the
 * adapter as it is after the step and no dropout. The gradients it leaves behind are discarded (every
 * training micro-batch starts from zeroed gradients). */
static int validate(trainer *t, double *val_loss, qa_err *e) {
    const qa_rows *R = &t->ds.rows[QA_SPLIT_VAL];
    int mbsz = t->tc->train.micro_batch;
    double acc[2] = {0, 0};
    float dropout = t->l.dropout;
    t->l.dropout = 0.0f;
    int64_t nb = (R->n_rows + mbsz - 1) / mbsz;
    int64_t *ids = qa_malloc((size_t)mbsz * sizeof *ids);
    qa_dist_note(t->d, "validation");
    for (int64_t j = t->rank; j < nb; j += t->world) {
        int cnt = 0;
        for (int64_t r = j * mbsz; r < R->n_rows && cnt < mbsz; r++) ids[cnt++] = r;
        qa_data_fill_batch(&t->ds, QA_SPLIT_VAL, ids, cnt, &t->mb);
        qa_batch view;
        qa_microbatch_view(&t->mb, &view);
        qa_train_opts to = {.grad_scale = 1.0f, .dropout_key = 0, .want_embed_grad = 0};
        qa_loss lo;
        if (qa_model_forward_backward(&t->m, &t->l, &t->acts, &view, &to, &lo, e) == 0) {
            acc[0] += lo.loss_sum;
            acc[1] += (double)lo.n_tokens;
        } else {
            free(ids);
            t->l.dropout = dropout;
            return qa_err_prefix(e, "rank %d: validation", t->rank);
        }
    }
    free(ids);
    t->l.dropout = dropout;
    qa_dist_allreduce_f64(t->d, acc, 2, QA_DIST_SUM, "validation loss");
    *val_loss = acc[1] > 0 ? acc[0] / acc[1] : NAN;
    return 0;
}

/* ---- the run ------------------------------------------------------------------------------------ */

static void trainer_free(trainer *t) {
    if (t->metrics) fclose(t->metrics);
    qa_tb_close(t->tb, NULL);
    if (t->acts_ready) qa_acts_free(&t->acts);
    qa_microbatch_free(&t->mb);
    qa_dist_tree_free(&t->tree);
    if (t->comm_owned) qa_comm_free(t->comm);
    free(t->mirror);
    if (t->lora_ready) qa_lora_free(&t->l);
    if (t->ds_built) qa_data_free(&t->ds);
    if (t->tpl_loaded) qa_template_free(&t->tpl);
    if (t->model_loaded) qa_model_free(&t->m);
    if (t->suite) qa_eval_suite_free(t->suite);
    if (t->tok) qa_tok_free(t->tok);
    for (size_t i = 0; i < t->n_ck; i++) free(t->ck_names[i]);
    free(t->ck_names); free(t->ck_lora); free(t->ck_m); free(t->ck_v);
    free(t->order); free(t->loss_hist); free(t->config_yaml);
}

/* The setup that may fail on one rank only (a missing file): agree before the first collective
 * that depends on it, so a bad input ends every rank with the message instead of a hang. */
static int agree(trainer *t, int rc, const char *what, qa_err *e) {
    int ok = qa_dist_all_true(t->d, rc == 0, what);
    if (ok) return 0;
    if (rc != 0) return -1; /* e holds this rank's message */
    return QA_ERR(e, "rank %d: another rank failed during %s (see its message)", t->rank, what);
}

/* The paper's evaluation of the current adapter on every rank (eval/), results by rank 0 under
 * RUN_DIR/eval/step_N/ and the averages as one metrics.jsonl line. */
static char *join_list(const qa_strlist *l) {
    size_t n = 1;
    for (int i = 0; i < l->n; i++) n += strlen(l->v[i]) + 1;
    char *s = qa_calloc(n, 1);
    for (int i = 0; i < l->n; i++) {
        if (i) strcat(s, ",");
        strcat(s, l->v[i]);
    }
    return s;
}

static void eval_log(void *ctx, const char *line) {
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

static int run_mleval(trainer *t, qa_err *e) {
    const qa_train_config *tc = t->tc;
    qa_eval_run_opts o;
    qa_eval_run_opts_default(&o);
    char adapter_id[128];
    snprintf(adapter_id, sizeof adapter_id, "training step %lld (%s)", (long long)t->step, tc->checkpoint.dir);
    o.model_id = tc->model.path;
    o.adapter_id = adapter_id;
    o.log = t->coord ? eval_log : NULL;
    qa_eval_results r;
    qa_dist_note(t->d, "multilingual evaluation");
    double t0 = now_s();
    if (qa_eval_run(t->suite, &t->m, &t->l, t->tok, t->d, &o, &r, e)) return qa_err_prefix(e, "rank %d: evaluation at step %lld", t->rank, (long long)t->step);
    int rc = 0;
    if (t->coord) {
        char sub[64];
        snprintf(sub, sizeof sub, "eval/step_%08lld", (long long)t->step);
        char *dir = qa_path_join(tc->checkpoint.dir, sub);
        rc = qa_eval_write(&r, dir, e);
        if (!rc) {
            qa_sbuf ml = {0};
            qa_sb_printf(&ml, "{\"step\":%lld,\"eval\":{", (long long)t->step);
            for (int k = 0; k < qa_eval_n_tasks(t->suite); k++)
                qa_sb_printf(&ml, "%s\"%s\":%.6f", k ? "," : "", qa_eval_task_name(t->suite, k), r.task_avg[k]);
            qa_sb_printf(&ml, "},\"eval_dir\":\"%s\"}\n", sub);
            rc = metrics_line(t, &ml, e);
            if (!rc && t->tb) rc = qa_eval_write_tensorboard(&r, dir, t->tb, t->step, e);
            printf("step %lld | evaluation written to %s (%.1f s):", (long long)t->step, dir, now_s() - t0);
            for (int k = 0; k < qa_eval_n_tasks(t->suite); k++)
                printf(" %s %.1f%%", qa_eval_task_name(t->suite, k), 100 * r.task_avg[k]);
            printf("\n");
            fflush(stdout);
        }
        free(dir);
    }
    qa_eval_results_free(&r);
    return rc;
}

int qa_train_run(const qa_train_config *tc, qa_dist *d, qa_train_result *res, qa_err *e) {
    trainer T;
    memset(&T, 0, sizeof T);
    trainer *t = &T;
    memset(res, 0, sizeof *res);
    res->resumed_from = -1;
    res->last_val_loss = NAN;
    t->tc = tc;
    t->d = d;
    t->rank = qa_dist_rank(d);
    t->world = qa_dist_size(d);
    t->coord = qa_dist_is_coordinator(d);
    t->order_epoch = -1;
    t->ckpt_step = -1;
    t->t_start = now_s();
    int rc = 0;
    if ((rc = qa_train_config_agree(tc, d, e))) goto out;

    const int threads = qa_dist_cpu_threads(d, tc->train.threads);

    t->ops = qa_ops_open(tc->model.device, qa_dist_local_rank(d), t->device_desc, sizeof t->device_desc, e);
    if ((rc = agree(t, t->ops ? 0 : qa_err_prefix(e, "rank %d: model.device", t->rank), "compute device", e))) goto out;
    t->K = tc->train.grad_accum;
    if (t->K % t->world != 0) {
        rc = QA_ERR(e, "train.grad_accum = %d micro-batches per step (over all ranks) is not divisible by the %d ranks; "
                    "use a multiple of %d", t->K, t->world, t->world);
        goto out;
    }
    t->k_lo = t->rank * (t->K / t->world);
    t->k_hi = t->k_lo + t->K / t->world;
    t->shuffle_seed = (uint64_t)(int64_t)tc->data.shuffle_seed;

    /* model, tokenizer, template, data (data.template none: pre-tokenized data, no tokenizer) */
    double t0 = now_s();
    int no_template = qa_template_is_none(tc->data.template_name);
    const qa_stream_opts so = {.threads = threads}; /* the CPU backend's pool for this rank */
    qa_quant quant = QA_QUANT_NONE;
    rc = qa_quant_parse(tc->model.quant, &quant, e);
    if (!rc) rc = qa_model_load_opts(&t->m, tc->model.path, t->ops, &so, quant, e);
    if (!rc) t->model_loaded = 1;
    if (!rc && t->coord) qa_train_model_id(tc->model.path, t->model_id, sizeof t->model_id);
    if (!rc && !no_template && (rc = qa_tok_load(&t->tok, tc->tokenizer.path, e)))
        qa_err_prefix(e, "tokenizer.path (for pre-tokenized data only, data.template: none needs no tokenizer)");
    if (!rc && !no_template) {
        char *tp = NULL;
        rc = qa_template_find(tc->data.template_name, tc->config_path, &tp, e);
        if (!rc) {
            rc = qa_template_load(&t->tpl, tp, t->tok, t->m.cfg.bos_token_id, t->m.cfg.eos_token_id, e);
            if (!rc) t->tpl_loaded = 1;
        }
        if (!rc && t->tpl.end_id >= t->m.cfg.vocab)
            rc = QA_ERR(e, "template %s: end token id %d is outside the vocab_size %d of model %s", tp,
                        (int)t->tpl.end_id, t->m.cfg.vocab, tc->model.path);
        free(tp);
    }
    if (!rc) {
        qa_data_opts o;
        qa_data_opts_from_config(&o, tc);
        qa_data_opts_for_model(&o, &t->m.cfg);
        rc = qa_data_build(&t->ds, &o, t->tpl_loaded ? &t->tpl : NULL, t->tok, e);
        if (!rc) t->ds_built = 1;
    }
    if (!rc && (tc->eval.every > 0 || tc->eval.at_end)) {
        if (!t->tok) {
            rc = QA_ERR(e, "eval.every / eval.at_end need a tokenizer, but data.template is none (pre-tokenized data): "
                        "set tokenizer.path and a template, or turn the evaluation off");
        } else {
            char *tasks = join_list(&tc->eval.tasks), *langs = join_list(&tc->eval.langs);
            qa_eval_selection sel = {.data_dir = tc->eval.data_dir, .tasks = tasks, .langs = langs, .limit = tc->eval.limit};
            rc = qa_eval_gold_parse(tc->eval.gold, &sel.gold, e);
            if (!rc) rc = qa_eval_suite_load(&t->suite, &sel, e);
            if (rc) qa_err_prefix(e, "eval.* (the evaluation during training)");
            free(tasks);
            free(langs);
        }
    }
    if ((rc = agree(t, rc, "setup (tokenizer, model, template, data)", e))) goto out;
    if (t->coord) {
        logmsg(t, "model %s: %s, %d layers, hidden %d, vocab %d (loaded in %.1f s) on %s", tc->model.path,
               t->m.cfg.model_type, t->m.cfg.n_layers, t->m.cfg.hidden, t->m.cfg.vocab, now_s() - t0, t->device_desc);
        qa_data_print_stats(&t->ds, stdout);
    }
    if (t->ds.rows[QA_SPLIT_TRAIN].n_rows == 0) {
        rc = QA_ERR(e, "no training rows: data.files give %lld examples, all held out for validation", (long long)t->ds.n);
        goto out;
    }

    qa_train_plan_compute(&t->plan, t->ds.rows[QA_SPLIT_TRAIN].n_rows, tc->train.micro_batch, t->K, 1,
                          tc->train.epochs, tc->train.max_steps, tc->train.warmup_ratio);
    t->order = qa_malloc((size_t)t->plan.rows_per_epoch * sizeof *t->order);

    /* LoRA */
    unsigned mask;
    if ((rc = lora_modules_from_config(tc, &mask, e))) goto out;
    if (tc->lora.init_adapter && tc->lora.init_adapter[0]) {
        rc = qa_lora_load_peft(&t->l, &t->m, tc->lora.init_adapter, e);
        if (!rc) {
            t->lora_ready = 1;
            if (t->l.modules != mask || t->l.r != tc->lora.r || fabs(t->l.alpha - tc->lora.alpha) > 1e-6 * fabs(tc->lora.alpha))
                rc = QA_ERR(e, "lora.init_adapter %s has r=%d alpha=%g and other target modules than the config "
                            "(lora.r=%d lora.alpha=%g lora.targets): make them agree", tc->lora.init_adapter, t->l.r,
                            (double)t->l.alpha, tc->lora.r, tc->lora.alpha);
            t->l.dropout = (float)tc->lora.dropout;
        }
    } else {
        rc = qa_lora_init(&t->l, &t->m, mask, tc->lora.r, (float)tc->lora.alpha, (float)tc->lora.dropout, e);
        if (!rc) {
            t->lora_ready = 1;
            qa_lora_init_params(&t->l, (uint64_t)(int64_t)tc->train.seed);
        }
    }
    if ((rc = agree(t, rc, "LoRA setup", e))) goto out;
    build_ckpt_tables(t);
    if ((rc = agree(t, setup_reduction(t, e), "gradient all-reduce setup", e))) goto out;

    int cap_B, cap_T;
    qa_data_batch_shape(&t->ds, tc->train.micro_batch, &cap_B, &cap_T);
    qa_microbatch_alloc(&t->mb, cap_B, cap_T);
    int logit_rows = qa_train_logit_rows(cap_B, cap_T);
    rc = qa_acts_alloc(&t->acts, &t->m, &t->l, cap_B, cap_T, QA_ACTS_TRAIN, logit_rows, e);
    if (!rc) t->acts_ready = 1;
    else qa_err_prefix(e, "rank %d: the activation workspace for train.micro_batch %d (%d x %d tokens) on %s (lower "
                       "train.micro_batch and raise train.grad_accum to keep the global batch, or lower data.pack_length "
                       "/ data.cutoff)", t->rank, tc->train.micro_batch, cap_B, cap_T, t->device_desc);
    if ((rc = agree(t, rc, "activation workspace", e))) goto out;

    /* run directory */
    if (t->coord) {
        rc = qa_mkdir_p(tc->checkpoint.dir, e);
        if (!rc) {
            t->config_yaml = qa_train_config_dump(tc, QA_CFG_YAML, 0);
            char *p = qa_path_join(tc->checkpoint.dir, "config.yaml");
            rc = qa_write_file_atomic(p, t->config_yaml, strlen(t->config_yaml), e);
            free(p);
        }
    }
    if ((rc = agree(t, rc, "run directory", e))) goto out;

    int64_t resumed;
    if ((rc = try_resume(t, &resumed, e))) goto out;
    res->resumed_from = resumed;
    if ((rc = agree(t, open_metrics(t, e), "metrics.jsonl", e))) goto out;
    if ((rc = qa_best_init(&t->best, d, tc->checkpoint.dir, tc->checkpoint.keep_best && tc->train.eval_every > 0 &&
                           t->ds.rows[QA_SPLIT_VAL].n_rows > 0, t->step, e))) goto out;

    const int64_t total = t->plan.total_steps;
    logmsg(t, "training: %lld steps (%lld per epoch, %d epoch(s)), warmup %lld, %d ranks x %d micro-batches of %d rows "
           "per step, %zu LoRA parameters (r=%d, alpha=%g), %d thread(s) per rank%s",
           (long long)total, (long long)t->plan.steps_per_epoch, t->plan.epochs, (long long)t->plan.warmup_steps,
           t->world, t->K / t->world, tc->train.micro_batch, t->l.n_params, t->l.r, (double)t->l.alpha, threads,
           resumed >= 0 ? " (resumed)" : "");

    double t_loop = now_s();
    int consecutive_skips = 0;
    int64_t start_step = t->step, start_skipped = t->skipped;
    while (t->step < total) {
        if (qa_dist_agree_stop(d)) {
            /* a stop right after a checkpoint.every step (or the resume) finds that step committed already */
            if (t->ckpt_step == t->step) {
                logmsg(t, "stop requested (signal): the checkpoint of step %lld is committed; exiting", (long long)t->step);
            } else {
                logmsg(t, "stop requested (signal): committing a checkpoint at step %lld and exiting", (long long)t->step);
                if ((rc = save_checkpoint(t, e))) goto out;
            }
            res->stopped = 1;
            break;
        }
        double ts = now_s();
        double loss = 0, gnorm = 0;
        int64_t ntok = 0;
        int skipped = 0;
        if ((rc = agree(t, train_step(t, &loss, &ntok, &gnorm, &skipped, e), "training step", e))) goto out;
        t->step++;
        hist_push(t, loss);
        double lr_used = qa_lr_at(tc->train.schedule, tc->train.lr, t->step - 1, t->plan.warmup_steps, total);
        if (skipped) {
            consecutive_skips++;
            logmsg(t, "step %lld: non-finite loss or gradient (loss %g, grad norm %g): step skipped (%lld so far)",
                   (long long)t->step, loss, gnorm, (long long)t->skipped);
            if (consecutive_skips >= MAX_CONSECUTIVE_SKIPS) {
                rc = QA_ERR(e, "%d consecutive optimizer steps had non-finite gradients (last at step %lld): lower "
                            "train.lr or check the data", consecutive_skips, (long long)t->step);
                goto out;
            }
        } else {
            consecutive_skips = 0;
        }
        t->steps_this_run++;
        t->tokens_this_run += ntok;
        if (t->steps_this_run == 1) res->first_loss = loss;
        res->last_loss = loss;
        double el = now_s() - t_loop, step_s = now_s() - ts;
        double tps = el > 0 ? t->tokens_this_run / el : 0;
        double eta = t->steps_this_run ? el / t->steps_this_run * (double)(total - t->step) : 0;
        if (t->coord) {
            qa_sbuf ml = {0};
            qa_sb_printf(&ml,
                    "{\"step\":%lld,\"epoch\":%d,\"loss\":%.17g,\"lr\":%.17g,\"grad_norm\":%.17g,\"tokens\":%lld,"
                    "\"tokens_per_s\":%.1f,\"step_time_s\":%.4f,\"comm_s\":%.5f,\"wall_time\":%.3f,\"world_size\":%d,"
                    "\"skipped\":%d}\n",
                    (long long)t->step, t->epoch, loss, lr_used, gnorm, (long long)ntok, tps, step_s, t->comm_s,
                    now_s() - t->t_start, t->world, skipped);
            rc = metrics_line(t, &ml, e);
            if (tc->train.log_every > 0 && (t->step % tc->train.log_every == 0 || t->step == total || t->step == start_step + 1)) {
                char eb[32], tb[32];
                fmt_hms(eb, sizeof eb, eta);
                fmt_hms(tb, sizeof tb, el);
                printf("step %lld/%lld | epoch %d | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | elapsed %s | ETA %s\n",
                       (long long)t->step, (long long)total, t->epoch + 1, loss, lr_used, gnorm, tps, tb, eb);
                fflush(stdout);
            }
        }
        if ((rc = agree(t, rc, "writing metrics.jsonl", e))) goto out;
        if (tc->train.eval_every > 0 && t->ds.rows[QA_SPLIT_VAL].n_rows > 0 &&
            (t->step % tc->train.eval_every == 0 || t->step == total)) {
            double vl = NAN;
            if ((rc = agree(t, validate(t, &vl, e), "validation", e))) goto out;
            res->last_val_loss = vl;
            if (t->coord) {
                qa_sbuf ml = {0};
                qa_sb_printf(&ml, "{\"step\":%lld,\"val_loss\":%.17g,\"val_tokens\":%lld}\n", (long long)t->step, vl,
                        (long long)t->ds.rows[QA_SPLIT_VAL].n_label_tokens);
                rc = metrics_line(t, &ml, e);
                printf("step %lld/%lld | validation loss %.4f\n", (long long)t->step, (long long)total, vl);
                fflush(stdout);
            }
            if ((rc = agree(t, rc, "writing metrics.jsonl", e))) goto out;
            qa_best_observe(&t->best, d, t->step, vl);
        }
        if (t->suite && tc->eval.every > 0 && t->step % tc->eval.every == 0 && t->step < total) {
            if ((rc = agree(t, run_mleval(t, e), "multilingual evaluation", e))) goto out;
        }
        if (tc->checkpoint.every > 0 && t->step % tc->checkpoint.every == 0 && t->step < total) {
            if ((rc = save_checkpoint(t, e))) goto out;
        }
        if (qa_best_pending(&t->best)) { /* a new lowest validation loss: its checkpoint is kept in RUN_DIR/best */
            if (!qa_best_have_checkpoint(&t->best, d, t->step, t->last_ckpt) && (rc = save_checkpoint(t, e))) goto out;
            if ((rc = qa_best_pin(&t->best, d, t->last_ckpt, e))) goto out;
        }
    }
    res->steps_done = t->step;
    res->skipped_steps = t->skipped;
    if (res->stopped) goto out;
    if ((rc = qa_train_check_skips(t->steps_this_run, t->skipped - start_skipped, e))) goto out;

    /* the end: a final checkpoint (resumable, e.g. to extend max_steps) and the PEFT adapter */
    if (t->steps_this_run == 0 && resumed >= 0)
        logmsg(t, "the checkpoint is already at step %lld of %lld: nothing to train (raise train.max_steps or "
               "train.epochs to continue); writing the adapter", (long long)t->step, (long long)total);
    else if ((rc = save_checkpoint(t, e))) goto out;
    if (t->coord) {
        char *ad = qa_path_join(tc->checkpoint.dir, "adapter");
        rc = qa_lora_save_peft_base(&t->l, &t->m, tc->model.path, ad, e);
        if (!rc) logmsg(t, "adapter written: %s (PEFT layout; load it with PeftModel.from_pretrained or qalign --adapter)", ad);
        free(ad);
    }
    if (!rc && t->coord) rc = qa_best_export(&t->best, &t->m, t->step, e); /* RUN_DIR/adapter-best */
    rc = agree(t, rc, "adapter export", e);
    if (!rc && t->suite && (tc->eval.at_end || (tc->eval.every > 0 && t->step % tc->eval.every == 0)))
        rc = agree(t, run_mleval(t, e), "multilingual evaluation", e);
    if (!rc && t->steps_this_run)
        logmsg(t, "done: %lld steps, loss %.4f -> %.4f, %.0f tokens/s over %.1f s", (long long)t->step, res->first_loss,
               res->last_loss, (now_s() - t_loop) > 0 ? t->tokens_this_run / (now_s() - t_loop) : 0.0, now_s() - t_loop);
out:
    trainer_free(t);
    return rc ? -1 : 0;
}
