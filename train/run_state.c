/* run_state.c — what a training run keeps and resumes from: the checkpoint tables over the host views of
 * the LoRA state, checkpoint commit and resume, the loss history, metrics.jsonl and TensorBoard events.
 * See trainer_internal.h. */
#include "train/trainer_internal.h"

#include "common/qa_clock.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_version.h"
#include "train/run_checks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qa_train__ckpt_log(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "qalign: warning: %s\n", msg);
    fflush(stderr);
}

int qa_train__ckpt_tables(qa_trainer *t) {
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

void qa_train__hist_push(qa_trainer *t, double loss) {
    if (t->n_hist == t->cap_hist) {
        t->cap_hist = t->cap_hist ? 2 * t->cap_hist : 256;
        t->loss_hist = qa_realloc(t->loss_hist, (size_t)t->cap_hist * sizeof *t->loss_hist);
    }
    t->loss_hist[t->n_hist++] = loss;
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

int qa_train__checkpoint(qa_trainer *t, qa_err *e) {
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
        qa_ckpt_save_opts so = {.keep_last = tc->checkpoint.keep_last, .log = qa_train__ckpt_log};
        double t0 = qa_now_s();
        qa_dist_note(t->d, "save checkpoint");
        if (qa_ckpt_save(tc->checkpoint.dir, &meta, &st, &so, path, sizeof path, &le)) ok = 0;
        else {
            qa_train__log(t, "checkpoint step %lld committed: %s (%.2f s)", (long long)t->step, path, qa_now_s() - t0);
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

/* Keys that fix what a step and the data cursor mean, or where its sums happen (data.padding_free,
 * train.fuse_micro_batches: the same step, rounding apart): changing one between a checkpoint and its
 * resume changes the run (the resume is then not the continuation of the same run, bit for bit). */
static const char *const RESUME_KEYS[] = {"data.files", "data.max_examples", "data.val_fraction", "data.template",
                                          "data.cutoff", "data.packing", "data.pack_length", "train.micro_batch",
                                          "train.grad_accum", "train.seed", "lora.dropout", "train.lr",
                                          "train.schedule", "train.warmup_ratio", "train.weight_decay",
                                          "train.max_grad_norm", "data.padding_free", "train.fuse_micro_batches"};

/* Warn (rank 0) about every RESUME_KEYS value that differs from the checkpoint's recorded config. */
static void warn_config_changes(const qa_trainer *t, const char *ckpt_path, const char *yaml) {
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
int qa_train__resume(qa_trainer *t, int64_t *resumed_from, qa_err *e) {
    *resumed_from = -1;
    int found = 0;
    qa_err le = {0};
    int64_t hdr[8] = {0};
    qa_ckpt *ck = NULL;
    if (t->coord) {
        qa_ckpt_state st = {.lora = t->ck_lora, .n_lora = t->n_ck, .adam_m = t->ck_m, .adam_v = t->ck_v};
        int rc = qa_ckpt_load_latest(t->tc->checkpoint.dir, &st, &ck, qa_train__ckpt_log, NULL, &le);
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
    for (int64_t i = 0; i < nh; i++) qa_train__hist_push(t, hist[i]);
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
        qa_train__log(t, "resumed from %s: step %lld, epoch %d, row %lld, AdamW step %lld, last loss %.6f, %zu LoRA tensors "
               "(%zu parameters, crc32c %08x)", qa_ckpt_path(ck), (long long)t->step, t->epoch, (long long)t->cursor,
               (long long)t->l.step, nh ? t->loss_hist[nh - 1] : NAN, t->n_ck, t->l.n_params, crc);
        qa_ckpt_close(ck);
    }
    *resumed_from = t->step;
    t->ckpt_step = t->step;
    return 0;
}

/* metrics.jsonl: keep the lines of steps <= the resumed step (a killed run may have logged more). */
int qa_train__metrics_open(qa_trainer *t, qa_err *e) {
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
static int metrics_flush(qa_trainer *t, qa_err *e) {
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
int qa_train__metrics_line(qa_trainer *t, qa_sbuf *line, qa_err *e) {
    fputs(line->p, t->metrics);
    int rc = metrics_flush(t, e);
    if (!rc && t->tb) rc = qa_tb_json_scalars(t->tb, "", line->p, e);
    qa_sb_free(line);
    return rc;
}
