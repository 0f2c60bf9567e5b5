/* test_model.c — model-level properties on the first fixture model under $QALIGN_FIXTURES:
 * LoRA dropout gradients vs finite differences of the loss, gradient accumulation scaling,
 * packed sequences (segment ids + restarting positions) == separate sequences, F32 / F16
 * checkpoints (direct views / owned conversion) == the BF16 one, and bad inputs rejected with
 * an error instead of a crash. */
#include "model/model.h"
#include "common/qa_mem.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static uint64_t rng = 99;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

enum { B = 2, T = 12 };

static void make_batch(const qa_model *m, int32_t *ids, int32_t *mask, int32_t *labels) {
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)((i * 37 + 11) % m->cfg.vocab);
        mask[i] = !(i / T == 1 && i % T >= T - 3);
        labels[i] = (i % T < 4 || !mask[i]) ? -100 : ids[i];
    }
}

static double loss_of(qa_model *m, qa_lora *l, qa_acts *a, const qa_batch *b, uint64_t key) {
    qa_err e = {0};
    qa_loss out;
    qa_train_opts o = {.grad_scale = 1.0f, .dropout_key = key};
    if (qa_model_forward_backward(m, l, a, b, &o, &out, &e)) { printf("  %s\n", e.msg); return NAN; }
    return out.loss;
}

static void test_dropout_grad(qa_model *m) {
    qa_err e = {0};
    qa_lora l;
    QT_CHECK(!qa_lora_init(&l, m, QA_LORA_MASK_ALL, 4, 8.0f, 0.2f, &e), "lora init: %s", e.msg);
    qa_lora_init_params(&l, 7);
    for (size_t i = 0; i < l.n_params; i++) l.params[i] += 0.05f * frand(); /* B != 0 too (CPU: host memory) */
    qa_acts a;
    QT_CHECK(!qa_acts_alloc(&a, m, &l, B, T, QA_ACTS_TRAIN, 7, &e), "train workspace (7 logit rows: chunked loss)");
    int32_t ids[B * T], mask[B * T], labels[B * T];
    make_batch(m, ids, mask, labels);
    qa_batch b = {B, T, ids, mask, NULL, NULL, labels};
    const uint64_t key = 424242;
    qa_lora_zero_grad(&l);
    double l0 = loss_of(m, &l, &a, &b, key);
    double l_other = loss_of(m, &l, &a, &b, key + 1);
    QT_CHECK(l0 != l_other, "a different dropout key gives a different loss (%.6f vs %.6f)", l0, l_other);
    qa_lora_zero_grad(&l);
    loss_of(m, &l, &a, &b, key);
    float *g = qa_malloc(sizeof(float) * l.n_params), *dir = qa_malloc(sizeof(float) * l.n_params);
    memcpy(g, l.grads, sizeof(float) * l.n_params);
    double gd = 0, nd = 0;
    for (size_t i = 0; i < l.n_params; i++) { dir[i] = frand(); nd += (double)dir[i] * dir[i]; }
    nd = sqrt(nd);
    for (size_t i = 0; i < l.n_params; i++) { dir[i] /= (float)nd; gd += (double)g[i] * dir[i]; }
    const float h = 2e-3f;
    for (size_t i = 0; i < l.n_params; i++) l.params[i] += h * dir[i];
    double lp = loss_of(m, &l, &a, &b, key);
    for (size_t i = 0; i < l.n_params; i++) l.params[i] -= 2 * h * dir[i];
    double lm = loss_of(m, &l, &a, &b, key);
    for (size_t i = 0; i < l.n_params; i++) l.params[i] += h * dir[i];
    double fd = (lp - lm) / (2 * h);
    QT_CHECK(fabs(fd - gd) <= 2e-2 * fabs(gd) + 1e-4,
             "LoRA grads with dropout 0.2 (chunked loss) vs finite differences along a direction: %.6e vs %.6e", gd, fd);
    /* grad_scale: two half-scaled accumulations == one full */
    qa_lora_zero_grad(&l);
    qa_train_opts o = {.grad_scale = 0.5f, .dropout_key = key};
    qa_loss out;
    qa_model_forward_backward(m, &l, &a, &b, &o, &out, &e);
    qa_model_forward_backward(m, &l, &a, &b, &o, &out, &e);
    double err = qt_rel_err_f32(l.grads, g, l.n_params);
    QT_CHECK(err < 1e-6, "grad_scale 0.5 twice == 1.0 once (rel %.2e)", err);
    QT_CHECK(out.n_tokens == qa_batch_count_labels(&b) && fabs(out.loss * out.n_tokens - out.loss_sum) < 1e-9,
             "loss = loss_sum / n_tokens (%lld tokens)", (long long)out.n_tokens);
    free(g);
    free(dir);
    qa_acts_free(&a);
    qa_lora_free(&l);
}

/* Loss groups (fused micro-batches): a batch of two rows with a group per row gives each row's loss and the
 * gradient of the two rows run as separate calls; qa_model_loss gives forward_backward's loss bit for bit
 * and touches no gradient; group ends that do not ascend to B*T are refused. */
static void test_loss_groups(qa_model *m) {
    qa_err e = {0};
    qa_lora l;
    QT_CHECK(!qa_lora_init(&l, m, QA_LORA_MASK_ALL, 4, 8.0f, 0.0f, &e), "lora init: %s", e.msg);
    qa_lora_init_params(&l, 11);
    for (size_t i = 0; i < l.n_params; i++) l.params[i] += 0.05f * frand();
    qa_acts a;
    QT_CHECK(!qa_acts_alloc(&a, m, &l, B, T, QA_ACTS_TRAIN, 5, &e), "train workspace (5 logit rows: chunked loss)");
    int32_t ids[B * T], mask[B * T], labels[B * T];
    make_batch(m, ids, mask, labels);
    qa_batch both = {B, T, ids, mask, NULL, NULL, labels};
    qa_batch r0 = {1, T, ids, mask, NULL, NULL, labels}, r1 = {1, T, ids + T, mask + T, NULL, NULL, labels + T};
    qa_loss o0, o1, og;
    qa_train_opts half = {.grad_scale = 0.5f};
    qa_lora_zero_grad(&l);
    QT_CHECK(!qa_model_forward_backward(m, &l, &a, &r0, &half, &o0, &e) &&
             !qa_model_forward_backward(m, &l, &a, &r1, &half, &o1, &e), "separate rows: %s", e.msg);
    float *g = qa_malloc(sizeof(float) * l.n_params);
    memcpy(g, l.grads, sizeof(float) * l.n_params);
    const int64_t ends[2] = {T, 2 * T};
    double gsum[2] = {-1, -1};
    int64_t gtok[2] = {-1, -1};
    qa_train_opts grouped = {.grad_scale = 0.5f, .n_groups = 2, .group_end = ends, .group_loss_sum = gsum,
                             .group_tokens = gtok};
    qa_lora_zero_grad(&l);
    QT_CHECK(!qa_model_forward_backward(m, &l, &a, &both, &grouped, &og, &e), "grouped: %s", e.msg);
    const double gerr = qt_rel_err_f32(l.grads, g, l.n_params);
    QT_CHECK(gtok[0] == o0.n_tokens && gtok[1] == o1.n_tokens && fabs(gsum[0] - o0.loss_sum) <= 1e-6 * o0.loss_sum &&
             fabs(gsum[1] - o1.loss_sum) <= 1e-6 * o1.loss_sum && og.n_tokens == o0.n_tokens + o1.n_tokens,
             "a group per row == the rows as separate calls: tokens %lld/%lld vs %lld/%lld, loss sums %.9f/%.9f vs "
             "%.9f/%.9f", (long long)gtok[0], (long long)gtok[1], (long long)o0.n_tokens, (long long)o1.n_tokens,
             gsum[0], gsum[1], o0.loss_sum, o1.loss_sum);
    QT_CHECK(gerr < 1e-5, "grouped gradient == the separate calls' (each its own token mean) summed: rel %.2e", gerr);
    /* the same batch as one group (one token mean over both rows) gives another gradient: the groups matter */
    qa_lora_zero_grad(&l);
    qa_train_opts one = {.grad_scale = 1.0f};
    qa_model_forward_backward(m, &l, &a, &both, &one, &og, &e);
    QT_CHECK(qt_rel_err_f32(l.grads, g, l.n_params) > 1e-3, "one token mean over both rows differs from the mean "
             "of the row means (rel %.2e)", qt_rel_err_f32(l.grads, g, l.n_params));
    /* qa_model_loss == forward_backward's loss, and no gradient changes */
    memcpy(g, l.grads, sizeof(float) * l.n_params);
    qa_loss ol;
    QT_CHECK(!qa_model_loss(m, &l, &a, &both, &ol, &e), "qa_model_loss: %s", e.msg);
    QT_CHECK(ol.loss_sum == og.loss_sum && ol.n_tokens == og.n_tokens && ol.loss == og.loss &&
             !memcmp(g, l.grads, sizeof(float) * l.n_params),
             "qa_model_loss == forward_backward's loss bit for bit (%.17g vs %.17g), gradients untouched",
             ol.loss_sum, og.loss_sum);
    /* group ends that do not cover the batch */
    const int64_t bad[2][2] = {{T, T + 1}, {T + 2, T}};
    for (int i = 0; i < 2; i++) {
        qa_train_opts ob = {.grad_scale = 1.0f, .n_groups = 2, .group_end = bad[i]};
        qa_err be = {0};
        QT_CHECK(qa_model_forward_backward(m, &l, &a, &both, &ob, &og, &be) != 0 && strstr(be.msg, "loss group"),
                 "group ends {%lld, %lld} refused: %s", (long long)bad[i][0], (long long)bad[i][1], be.msg);
    }
    free(g);
    qa_acts_free(&a);
    qa_lora_free(&l);
}

/* two sequences packed into one row (segment ids, positions restarting) == run separately */
static void test_packing(qa_model *m) {
    qa_err e = {0};
    const int n1 = 7, n2 = 5, V = m->cfg.vocab;
    int32_t ids[12], pos[12], seg[12];
    for (int i = 0; i < 12; i++) {
        ids[i] = (int32_t)((i * 53 + 3) % V);
        pos[i] = i < n1 ? i : i - n1;
        seg[i] = i < n1 ? 0 : 1;
    }
    qa_acts a;
    QT_CHECK(!qa_acts_alloc(&a, m, NULL, 1, 12, QA_ACTS_INFER, 0, &e), "workspace");
    qa_batch packed = {1, 12, ids, NULL, pos, seg, NULL};
    qa_fwd_opts o = {QA_LOGITS_ALL, NULL, 0};
    QT_CHECK(!qa_model_forward(m, NULL, &a, &packed, &o, &e), "packed forward: %s", e.msg);
    float *lp = qa_malloc(sizeof(float) * 12 * V);
    memcpy(lp, a.logits, sizeof(float) * 12 * V);
    qa_batch s1 = {1, n1, ids, NULL, NULL, NULL, NULL}, s2 = {1, n2, ids + n1, NULL, NULL, NULL, NULL};
    qa_model_forward(m, NULL, &a, &s1, &o, &e);
    double e1 = qt_rel_err_f32(lp, a.logits, (size_t)n1 * V);
    qa_model_forward(m, NULL, &a, &s2, &o, &e);
    double e2 = qt_rel_err_f32(lp + (size_t)n1 * V, a.logits, (size_t)n2 * V);
    QT_CHECK(e1 < 1e-5 && e2 < 1e-5, "packed row == separate sequences (rel %.2e, %.2e)", e1, e2);
    /* and without segment ids the second sequence does see the first */
    qa_batch nosplit = {1, 12, ids, NULL, pos, NULL, NULL};
    qa_model_forward(m, NULL, &a, &nosplit, &o, &e);
    double e3 = qt_rel_err_f32(lp + (size_t)n1 * V, a.logits + (size_t)n1 * V, (size_t)n2 * V);
    QT_CHECK(e3 > 1e-3, "without segment ids the packed examples interact (rel %.2e)", e3);
    free(lp);
    qa_acts_free(&a);
}

/* write the checkpoint again with F32 or F16 tensors; its logits match the BF16 original */
static void test_dtypes(qa_model *m, const char *dir) {
    qa_err e = {0};
    char tmp[] = "/tmp/qa_model_test_XXXXXX";
    QT_CHECK(mkdtemp(tmp) != NULL, "temp dir");
    char src[1100], dst[1100];
    snprintf(src, sizeof src, "%s/config.json", dir);
    snprintf(dst, sizeof dst, "%s/config.json", tmp);
    QT_CHECK(!qa_copy_file(src, dst, &e), "copy config: %s", e.msg);
    const int V = m->cfg.vocab, N = 9;
    int32_t ids[9];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 31 + 5) % V);
    qa_batch b = {1, N, ids, NULL, NULL, NULL, NULL};
    qa_fwd_opts o = {QA_LOGITS_ALL, NULL, 0};
    qa_acts a;
    qa_acts_alloc(&a, m, NULL, 1, N, QA_ACTS_INFER, 0, &e);
    qa_model_forward(m, NULL, &a, &b, &o, &e);
    float *ref = qa_malloc(sizeof(float) * N * V);
    memcpy(ref, a.logits, sizeof(float) * N * V);
    qa_acts_free(&a);
    qa_dtype dts[2] = {QA_DT_F32, QA_DT_F16};
    for (int k = 0; k < 2; k++) {
        size_t n = m->st.n_tensors;
        qa_st_entry *ent = qa_calloc(n, sizeof *ent);
        void **bufs = qa_calloc(n, sizeof *bufs);
        for (size_t i = 0; i < n; i++) {
            const qa_st_tensor *t = &m->st.tensors[i];
            float *f = qa_malloc(sizeof(float) * (size_t)t->numel);
            qa_st_read_f32(&m->st, t, f, &e);
            if (dts[k] == QA_DT_F16) {
                uint16_t *h = qa_malloc(2 * (size_t)t->numel);
                for (int64_t j = 0; j < t->numel; j++) h[j] = qa_f32_to_f16(f[j]);
                free(f);
                bufs[i] = h;
            } else bufs[i] = f;
            ent[i].name = t->name;
            ent[i].dtype = dts[k];
            ent[i].ndim = t->ndim;
            memcpy(ent[i].shape, t->shape, sizeof t->shape);
            ent[i].data = bufs[i];
        }
        snprintf(dst, sizeof dst, "%s/model.safetensors", tmp);
        const char *meta[] = {"format", "pt", NULL};
        QT_CHECK(!qa_st_write(dst, ent, n, meta, &e), "write %s checkpoint: %s", qa_dtype_name(dts[k]), e.msg);
        for (size_t i = 0; i < n; i++) free(bufs[i]);
        free(bufs);
        free(ent);
        qa_model m2;
        if (qa_model_load(&m2, tmp, NULL, &e)) { QT_CHECK(0, "load %s checkpoint: %s", qa_dtype_name(dts[k]), e.msg); continue; }
        QT_CHECK(m2.embed.dtype == QA_DT_F32 && (dts[k] == QA_DT_F16) == (m2.owned != NULL),
                 "%s weights: F32 views, owned block only for converted tensors", qa_dtype_name(dts[k]));
        qa_acts_alloc(&a, &m2, NULL, 1, N, QA_ACTS_INFER, 0, &e);
        qa_model_forward(&m2, NULL, &a, &b, &o, &e);
        double err = qt_rel_err_f32(a.logits, ref, (size_t)N * V);
        QT_CHECK(err < (dts[k] == QA_DT_F32 ? 1e-6 : 1e-3), "%s checkpoint logits == BF16 checkpoint (rel %.2e)",
                 qa_dtype_name(dts[k]), err);
        qa_acts_free(&a);
        qa_model_free(&m2);
    }
    unlink(dst);
    snprintf(dst, sizeof dst, "%s/config.json", tmp);
    unlink(dst);
    rmdir(tmp);
    free(ref);
}

static void expect_err(int rc, const qa_err *e, const char *want, const char *what) {
    QT_CHECK(rc != 0 && strstr(e->msg, want), "%s is rejected: \"%s\"", what, e->msg);
}

static void test_bad_inputs(qa_model *m) {
    qa_err e = {0};
    int32_t ids[B * T], mask[B * T], labels[B * T];
    make_batch(m, ids, mask, labels);
    qa_acts a, at;
    qa_acts_alloc(&a, m, NULL, B, T, QA_ACTS_INFER, 0, &e);
    qa_acts_alloc(&at, m, NULL, B, T, QA_ACTS_TRAIN, 0, &e);
    qa_fwd_opts o = {QA_LOGITS_ALL, NULL, 0};
    qa_batch b = {B, T, ids, mask, NULL, NULL, labels};
    ids[5] = m->cfg.vocab;
    expect_err(qa_model_forward(m, NULL, &a, &b, &o, &e), &e, "outside the vocabulary", "token id == vocab");
    ids[5] = -1;
    expect_err(qa_model_forward(m, NULL, &a, &b, &o, &e), &e, "input_ids[0][5]", "negative token id");
    ids[5] = 1;
    labels[7] = m->cfg.vocab + 3;
    qa_loss lo;
    qa_train_opts to = {.grad_scale = 1, .dropout_key = 0, .want_embed_grad = 0};
    expect_err(qa_model_forward_backward(m, NULL, &at, &b, &to, &lo, &e), &e, "labels[0][7]", "label outside vocab");
    labels[7] = -100;
    expect_err(qa_model_forward_backward(m, NULL, &a, &b, &to, &lo, &e), &e, "QA_ACTS_TRAIN", "backward on an inference workspace");
    qa_batch big = {B, T + 1, ids, NULL, NULL, NULL, NULL};
    expect_err(qa_model_forward(m, NULL, &a, &big, &o, &e), &e, "does not fit", "batch larger than the workspace");
    int32_t pos[B * T];
    for (int i = 0; i < B * T; i++) pos[i] = i % T;
    pos[3] = -2;
    qa_batch bp = {B, T, ids, mask, pos, NULL, NULL};
    expect_err(qa_model_forward(m, NULL, &a, &bp, &o, &e), &e, "positions[0][3]", "negative position");
    int32_t rows[2] = {0, B * T};
    qa_fwd_opts orows = {QA_LOGITS_ROWS, rows, 2};
    expect_err(qa_model_forward(m, NULL, &a, &b, &orows, &e), &e, "outside the batch", "logit row outside the batch");
    expect_err(qa_model_logit_lens(m, &a, m->cfg.n_layers + 1, NULL, 0, &e), &e, "logit lens", "lens layer L+1");
    qa_lora l;
    qa_lora_init(&l, m, QA_LORA_MASK_QV, 4, 8, 0, &e);
    expect_err(qa_model_forward(m, &l, &a, &b, &o, &e), &e, "workspace was sized", "LoRA on a workspace sized without it");
    qa_lora_free(&l);
    expect_err(qa_lora_init(&l, m, 0, 4, 8, 0, &e), &e, "mask", "empty LoRA module mask");
    expect_err(qa_lora_init(&l, m, QA_LORA_MASK_QV, 0, 8, 0, &e), &e, "rank", "LoRA rank 0");
    qa_model m2;
    expect_err(qa_model_load(&m2, "/nonexistent/qalign-model", NULL, &e), &e, "/nonexistent/qalign-model", "missing model dir");
    qa_acts_free(&a);
    qa_acts_free(&at);
}

int main(void) {
    const char *root = qt_fixtures_root();
    char dir[1024];
    if (qt_first_fixture(root, dir, sizeof dir)) {
        QT_CHECK(0, "a fixture model under %s (set QALIGN_FIXTURES)", root);
        return qt_finish();
    }
    qa_err e = {0};
    qa_model m;
    if (qa_model_load(&m, dir, NULL, &e)) { QT_CHECK(0, "load %s: %s", dir, e.msg); return qt_finish(); }
    printf("model %s\n", dir);
    test_dropout_grad(&m);
    test_loss_groups(&m);
    test_packing(&m);
    test_dtypes(&m, dir);
    test_bad_inputs(&m);
    qa_model_free(&m);
    return qt_finish();
}
