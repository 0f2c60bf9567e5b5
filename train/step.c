/* step.c — one optimizer step over ranks (micro-batches → gradient tree → all-reduce → qa_lora_step), the
 * gradient reduction on the backend's memory, and validation. See trainer_internal.h. */
#include "train/trainer_internal.h"

#include "common/qa_clock.h"
#include "common/qa_mem.h"
#include "common/qa_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the gradient reduction: micro-batch tree and all-reduce on the backend's memory ---------------- */

static void *tr_alloc(void *ctx, size_t bytes) {
    qa_trainer *t = ctx;
    qa_err le = {0};
    void *p = t->ops->alloc(bytes, &le);
    if (!p) qa_dist_abort(t->d, 1, "gradient accumulation buffer: %s", le.msg);
    return p;
}
static void tr_release(void *ctx, void *p) { ((qa_trainer *)ctx)->ops->free(p); }
static void tr_copy(void *ctx, float *dst, const float *src, size_t n) {
    qa_trainer *t = ctx;
    t->ops->memcpy_d2d(t->m.stream, dst, src, n * sizeof(float));
}
static void tr_add(void *ctx, float *a, const float *b, size_t n) { /* a = 1*b + a: exactly a + b */
    qa_trainer *t = ctx;
    t->ops->axpy(t->m.stream, n, 1.0f, b, a);
}
static void tr_zero(void *ctx, float *dst, size_t n) {
    qa_trainer *t = ctx;
    t->ops->memset0(t->m.stream, dst, n * sizeof(float));
}
static void tr_d2h(void *ctx, void *host, const void *dev, size_t bytes) {
    qa_trainer *t = ctx;
    t->ops->memcpy_d2h(t->m.stream, host, dev, bytes);
}
static void tr_h2d(void *ctx, void *dev, const void *host, size_t bytes) {
    qa_trainer *t = ctx;
    qa_err le = {0};
    t->ops->memcpy_h2d(t->m.stream, dev, host, bytes);
    if (t->ops->sync(t->m.stream, &le)) qa_dist_abort(t->d, 1, "gradient all-reduce upload: %s", le.msg);
}

/* The micro-batch tree lives where the gradients do; the all-reduce is MPI on host memory (cpu), NCCL on
 * device buffers (cuda, several ranks, a build with NCCL), or staged through the host over MPI (the
 * emulated device; a CUDA build without NCCL) — the same deterministic tree in every case. */
int qa_train__reduction_setup(qa_trainer *t, qa_err *e) {
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
        qa_train__log(t, "NCCL unavailable (%s): the gradient all-reduce is staged through host memory over MPI", le.msg);
    }
    qa_comm_stage st = {t, tr_d2h, tr_h2d};
    if (qa_dist_staged_comm(t->d, &st, &t->comm, e)) return -1;
    t->comm_owned = 1;
    return 0;
}

/* ---- one step --------------------------------------------------------------------------------- */

static const int64_t *epoch_order(qa_trainer *t) {
    if (t->order_epoch != t->epoch) {
        qa_data_epoch_order(&t->ds, t->epoch, t->order);
        t->order_epoch = t->epoch;
    }
    return t->order;
}

/* The dropout stream of micro-batch k of the current step. */
static uint64_t dropout_key(const qa_trainer *t, int k) {
    return qa_mix64(((uint64_t)t->tc->train.seed << 40) ^ ((uint64_t)t->step << 16) ^ (uint64_t)k);
}

/* train.fuse_micro_batches: this rank's micro-batches [k_lo, k_hi) of the step as one batch, one loss group
 * per micro-batch (its own token mean, / K), into l->grads; losses[k] and toks[2k], toks[2k+1] as the
 * separate micro-batches report them. */
static int fused_pass(qa_trainer *t, const int64_t *order, int64_t rows, double *losses, int64_t *toks, qa_err *e) {
    const int mbsz = t->tc->train.micro_batch, n = t->k_hi - t->k_lo;
    const qa_rows *R = &t->ds.rows[QA_SPLIT_TRAIN];
    int64_t *ids = qa_malloc(sizeof *ids * (size_t)t->pass_rows);
    int64_t *ends = qa_calloc((size_t)n * 4, sizeof *ends), *gtok = ends + n, *rtok = ends + 2 * n,
            *cnt = ends + 3 * n;
    double *gsum = qa_calloc((size_t)n, sizeof *gsum);
    int count = 0;
    for (int j = 0; j < n; j++) {
        int64_t a = t->cursor + (int64_t)(t->k_lo + j) * mbsz, b = a + mbsz;
        if (b > rows) b = rows;
        for (int64_t r = a; r < b; r++) {
            ids[count++] = order[r];
            rtok[j] += R->len[order[r]];
        }
        cnt[j] = b > a ? b - a : 0;
    }
    qa_lora_zero_grad(&t->l);
    int rc = 0;
    if (count > 0) {
        qa_data_fill_batch(&t->ds, QA_SPLIT_TRAIN, ids, count, &t->mb);
        /* group j ends after its rows: padded rows of T tokens, or (padding-free) its tokens end to end */
        int64_t end = 0;
        for (int j = 0; j < n; j++) {
            end += t->ds.padding_free ? rtok[j] : cnt[j] * t->mb.T;
            ends[j] = end;
        }
        ends[n - 1] = (int64_t)t->mb.B * t->mb.T; /* padding-free with every row empty: the one padding token */
        qa_batch view;
        qa_microbatch_view(&t->mb, &view);
        qa_train_opts to = {.grad_scale = 1.0f / (float)t->K, .dropout_key = dropout_key(t, t->k_lo),
                            .n_groups = n, .group_end = ends, .group_loss_sum = gsum, .group_tokens = gtok};
        qa_loss lo;
        qa_dist_note(t->d, "forward/backward");
        rc = qa_model_forward_backward(&t->m, &t->l, &t->acts, &view, &to, &lo, e);
        if (rc) qa_err_prefix(e, "rank %d, step %lld, micro-batches %d..%d (fused)", t->rank, (long long)t->step + 1,
                              t->k_lo, t->k_hi - 1);
        for (int j = 0; j < n && !rc; j++) {
            const int k = t->k_lo + j;
            if (!cnt[j]) continue;
            losses[k] = gtok[j] ? gsum[j] / (double)gtok[j] : 0.0;
            toks[2 * k] = rtok[j];
            toks[2 * k + 1] = gtok[j];
        }
    }
    free(ids);
    free(ends);
    free(gsum);
    return rc;
}

int qa_train__step(qa_trainer *t, double *loss_out, int64_t *tok_out, double *gnorm_out, int *skipped, qa_err *e) {
    const qa_train_config *tc = t->tc;
    int64_t rows = t->plan.rows_per_epoch;
    if (t->cursor >= rows) { t->epoch++; t->cursor = 0; }
    const int64_t *order = epoch_order(t);
    int mbsz = tc->train.micro_batch, K = t->K;
    double *losses = qa_calloc((size_t)K, sizeof *losses);
    int64_t *toks = qa_calloc((size_t)K * 2, sizeof *toks);
    qa_lora *l = &t->l;
    if (tc->train.fuse_micro_batches) {
        if (fused_pass(t, order, rows, losses, toks, e)) {
            free(losses); free(toks);
            return -1;
        }
        qa_dist_tree_push(&t->tree, l->grads);
    } else for (int k = t->k_lo; k < t->k_hi; k++) {
        int64_t a = t->cursor + (int64_t)k * mbsz, b = a + mbsz;
        if (b > rows) b = rows;
        qa_lora_zero_grad(l);
        if (a < b) {
            qa_data_fill_batch(&t->ds, QA_SPLIT_TRAIN, order + a, (int)(b - a), &t->mb);
            qa_batch view;
            qa_microbatch_view(&t->mb, &view);
            qa_train_opts to = {.grad_scale = 1.0f / (float)K,
                                .dropout_key = dropout_key(t, k),
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
    double tc0 = qa_now_s();
    qa_comm_allreduce_sum(t->comm, l->grads, l->n_params, QA_DT_F32, "LoRA gradient all-reduce");
    qa_dist_allreduce_f64(t->d, losses, (size_t)K, QA_DIST_SUM, "micro-batch losses");
    qa_dist_allreduce_i64(t->d, toks, (size_t)K * 2, QA_DIST_SUM, "micro-batch token counts");
    t->comm_s = qa_now_s() - tc0; /* includes waiting for the slowest rank */
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
 * adapter as it is after the step and no dropout: the forward alone (qa_model_loss), in batches of the
 * rows one training pass holds. */
int qa_train__validate(qa_trainer *t, double *val_loss, qa_err *e) {
    const qa_rows *R = &t->ds.rows[QA_SPLIT_VAL];
    const int mbsz = t->pass_rows;
    double acc[2] = {0, 0};
    int64_t nb = (R->n_rows + mbsz - 1) / mbsz;
    int64_t *ids = qa_malloc((size_t)mbsz * sizeof *ids);
    qa_dist_note(t->d, "validation");
    for (int64_t j = t->rank; j < nb; j += t->world) {
        int cnt = 0;
        for (int64_t r = j * mbsz; r < R->n_rows && cnt < mbsz; r++) ids[cnt++] = r;
        qa_data_fill_batch(&t->ds, QA_SPLIT_VAL, ids, cnt, &t->mb);
        qa_batch view;
        qa_microbatch_view(&t->mb, &view);
        qa_loss lo;
        if (qa_model_loss(&t->m, &t->l, &t->acts, &view, &lo, e) == 0) {
            acc[0] += lo.loss_sum;
            acc[1] += (double)lo.n_tokens;
        } else {
            free(ids);
            return qa_err_prefix(e, "rank %d: validation", t->rank);
        }
    }
    free(ids);
    qa_dist_allreduce_f64(t->d, acc, 2, QA_DIST_SUM, "validation loss");
    *val_loss = acc[1] > 0 ? acc[0] / acc[1] : NAN;
    return 0;
}
