/* test_golden.c — the model against Hugging Face transformers + PEFT golden outputs.
 *
 * For every directory under $QALIGN_FIXTURES (default: fixtures/hf) holding golden.safetensors
 * and model/: logits, every hidden state, every logit-lens layer, loss, d loss/d inputs_embeds,
 * and for every adapter_<name>_init/ the LoRA logits, loss, all LoRA gradients and two AdamW
 * steps (lr 1e-2, betas 0.9/0.999, eps 1e-8, wd 0.01). Per-position tensors are compared only
 * where attention_mask is 1. Relative error ||out-ref||/||ref|| <= 1e-4, losses abs <= 1e-4.
 * Nothing about the fixtures is hard-coded: shapes come from the files. */
#include "model/model.h"
#include "common/qa_mem.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Backend: $QALIGN_BACKEND (cpu by default; cuda runs the same comparisons on the GPU and exits 77,
 * "skipped", when no GPU is usable). Tolerances, per kind of quantity:
 *
 *   kind        cpu / emu / cuda-fp32   cuda (bf16 operands)   largest seen on an H200 (cuda)
 *   forward     1e-4 rel                1.5e-2 rel             6.9e-3 (mistral logits)
 *   gradient    1e-4 rel                5e-2 rel               2.3e-2 (mistral lora_all.grad)
 *   after step  1e-4 rel                1.2e-1 rel             5.3e-2 (qwen2 lora_all.after2steps)
 *   loss        1e-4 abs                5e-3 abs               9.8e-4 (qwen2)
 *
 * The bf16 figures are what rounding to bf16 (unit roundoff 2^-8 = 3.9e-3) makes of each kind: a
 * forward quantity passes through a few roundings of its operands (<= 2 u seen); a gradient is a
 * difference of such quantities through twice as many products (<= 6 u); AdamW's first updates are
 * ~lr * g / |g| per element, so after two steps a parameter whose gradient is near 0 may move by up
 * to 2 lr either way (<= 14 u seen). Each bound is about twice the largest value measured on an H200
 * (bench/gpu/run_all.sh, the "golden_bf16" check) -- the verification mode cuda-fp32 holds the CPU's
 * 1e-4 everywhere (measured 4.5e-6). $QALIGN_GOLDEN_TOL sets every relative and loss tolerance,
 * $QALIGN_GOLDEN_TOL_STEPS then the after-step one. The
 * self-consistency checks (lens of layer L = logits, one row alone = padded row) use 1e-6 / 1e-5 on
 * the CPU and the forward tolerance elsewhere (other GEMM shapes may round bf16 activations apart). */
enum { TOL_FWD, TOL_GRAD, TOL_STEP, TOL_KINDS };
static const char *const TOL_NAME[TOL_KINDS] = {"forward", "gradient", "after step"};
static const qa_ops *OPS;
static double REL_TOL[TOL_KINDS] = {1e-4, 1e-4, 1e-4}, LOSS_TOL = 1e-4;
static double self_tol(double cpu_tol) { return OPS && !OPS->host_memory ? REL_TOL[TOL_FWD] : cpu_tol; }

typedef struct fx {
    const char *name;
    qa_safetensors g;
    int B, T;
    int32_t *ids, *mask, *labels;
    char *used;                 /* [g.n_tensors] compared */
} fx;

static double worst_rel, worst_loss, worst_steps;

static const qa_st_tensor *gfind(fx *f, const char *name) {
    const qa_st_tensor *t = qa_st_find(&f->g, name);
    if (t) f->used[t - f->g.tensors] = 1;
    return t;
}
static float *gread(fx *f, const qa_st_tensor *t) {
    float *v = qa_malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    qa_err e = {0};
    if (qa_st_read_f32(&f->g, t, v, &e)) { qa_err_print(&e); exit(1); }
    return v;
}
static int32_t *gints(fx *f, const char *name) {
    const qa_st_tensor *t = gfind(f, name);
    if (!t || t->dtype != QA_DT_I32 || t->ndim != 2) return NULL;
    int32_t *v = qa_malloc(sizeof(int32_t) * (size_t)t->numel);
    memcpy(v, t->data, sizeof(int32_t) * (size_t)t->numel);
    return v;
}

/* relative error over the rows [B*T, W] whose mask is 1 */
static double rel_masked(const fx *f, const float *out, const float *ref, int W) {
    double num = 0, den = 0;
    for (int r = 0; r < f->B * f->T; r++) {
        if (!f->mask[r]) continue;
        for (int j = 0; j < W; j++) {
            double d = (double)out[(size_t)r * W + j] - ref[(size_t)r * W + j];
            num += d * d;
            den += (double)ref[(size_t)r * W + j] * ref[(size_t)r * W + j];
        }
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_rel(const fx *f, const char *what, double err, int kind) {
    if (err > worst_rel) worst_rel = err;
    QT_CHECK(err <= REL_TOL[kind], "%s %-44s rel err %.3e (%s tolerance %.1e)", f->name, what, err, TOL_NAME[kind],
             REL_TOL[kind]);
    printf("  %-8s %-48s rel %.3e\n", f->name, what, err);
}
static void check_loss(const fx *f, const char *what, double got, double ref) {
    double err = fabs(got - ref);
    if (err > worst_loss) worst_loss = err;
    QT_CHECK(err <= LOSS_TOL, "%s %-44s %.6f vs %.6f (abs err %.3e)", f->name, what, got, ref, err);
    printf("  %-8s %-48s abs %.3e  (%.6f)\n", f->name, what, err, ref);
}

/* per-position tensor [B,T,W] against the golden one */
static void cmp_positions(fx *f, const char *gname, const float *out, int W, int kind) {
    const qa_st_tensor *t = gfind(f, gname);
    QT_CHECK(t && t->numel == (int64_t)f->B * f->T * W, "%s: golden %s present with [B,T,%d]", f->name, gname, W);
    if (!t || t->numel != (int64_t)f->B * f->T * W) return;
    float *ref = gread(f, t);
    check_rel(f, gname, rel_masked(f, out, ref, W), kind);
    free(ref);
}
static double gscalar(fx *f, const char *name, int *ok) {
    const qa_st_tensor *t = gfind(f, name);
    *ok = t && t->numel == 1;
    QT_CHECK(*ok, "%s: golden scalar %s present", f->name, name);
    if (!*ok) return 0;
    float *v = gread(f, t);
    double r = v[0];
    free(v);
    return r;
}

/* golden LoRA tensor: "<prefix>.<peft name with .default>" (falls back to the on-disk name) */
static const qa_st_tensor *glora(fx *f, const char *prefix, int layer, int mod, int is_B) {
    char peft[256], name[400];
    qa_lora_peft_name(peft, sizeof peft, layer, mod, is_B);
    snprintf(name, sizeof name, "%s.%s", prefix, peft);
    char *w = strstr(name, ".weight");
    char with_default[420];
    snprintf(with_default, sizeof with_default, "%.*s.default.weight", (int)(w - name), name);
    const qa_st_tensor *t = gfind(f, with_default);
    return t ? t : gfind(f, name);
}

/* compare every LoRA matrix (params or grads) with golden "<prefix>.*"; returns max rel err */
static void cmp_lora(fx *f, const qa_model *m, const qa_lora *l, int grads, const char *prefix) {
    const int kind = grads ? TOL_GRAD : TOL_STEP;
    double mx = 0;
    int n = 0, missing = 0;
    for (int i = 0; i < l->n_layers; i++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            const qa_lora_mat *t = qa_lora_at(l, i, mod);
            if (!t->present) continue;
            for (int isB = 0; isB < 2; isB++) {
                const qa_st_tensor *g = glora(f, prefix, i, mod, isB);
                size_t cnt = (size_t)l->r * (isB ? t->out : t->in);
                if (!g || (size_t)g->numel != cnt) { missing++; continue; }
                float *ref = gread(f, g), *out = qa_malloc(sizeof(float) * cnt);
                const float *src = grads ? (isB ? t->dB : t->dA) : (isB ? t->B : t->A);
                qa_model_to_host(m, out, src, cnt);
                double e = qt_rel_err_f32(out, ref, cnt);
                char what[160];
                snprintf(what, sizeof what, "%s L%d %s %s", prefix, i, qa_lora_module_name(mod), isB ? "B" : "A");
                QT_CHECK(e <= REL_TOL[kind], "%s %s rel err %.3e (%s tolerance %.1e)", f->name, what, e, TOL_NAME[kind],
                         REL_TOL[kind]);
                if (getenv("QT_VERBOSE")) printf("  %-8s %-48s rel %.3e\n", f->name, what, e);
                if (e > mx) mx = e;
                n++;
                free(ref);
                free(out);
            }
        }
    QT_CHECK(missing == 0 && n > 0, "%s: %s: all %d LoRA tensors present in the golden file (%d missing)", f->name,
             prefix, n, missing);
    if (grads && mx > worst_rel) worst_rel = mx;
    if (!grads && mx > worst_steps) worst_steps = mx;
    char what[160];
    snprintf(what, sizeof what, "%s.* (%d tensors, max)", prefix, n);
    printf("  %-8s %-48s rel %.3e\n", f->name, what, mx);
}

static qa_batch batch_of(const fx *f) {
    return (qa_batch){f->B, f->T, f->ids, f->mask, NULL, NULL, f->labels};
}

static void die_err(const char *ctx, qa_err *e) {
    printf("  FAIL %s: %s\n", ctx, e->msg);
    qt_failed++;
}

static void run_base(fx *f, qa_model *m) {
    qa_err e = {0};
    const int L = m->cfg.n_layers, D = m->cfg.hidden, V = m->cfg.vocab, N = f->B * f->T;
    qa_acts a;
    if (qa_acts_alloc(&a, m, NULL, f->B, f->T, QA_ACTS_TRAIN, 0, &e)) { die_err("workspace", &e); return; }
    qa_batch b = batch_of(f);
    qa_fwd_opts o = {QA_LOGITS_ALL, NULL, 0};
    if (qa_model_forward(m, NULL, &a, &b, &o, &e)) { die_err("forward", &e); qa_acts_free(&a); return; }
    float *host = qa_malloc(sizeof(float) * (size_t)N * (V > D ? V : D));
    qa_model_to_host(m, host, a.logits, (size_t)N * V);
    cmp_positions(f, "logits", host, V, TOL_FWD);
    float *logits = qa_malloc(sizeof(float) * (size_t)N * V);
    memcpy(logits, host, sizeof(float) * (size_t)N * V);
    char nm[64];
    int nh = 0;
    for (int i = 0; i <= L; i++) {
        snprintf(nm, sizeof nm, "hidden_states.%d", i);
        qa_model_to_host(m, host, a.hidden[i], (size_t)N * D);
        cmp_positions(f, nm, host, D, TOL_FWD);
        nh++;
    }
    snprintf(nm, sizeof nm, "hidden_states.%d", L + 1);
    QT_CHECK(!qa_st_find(&f->g, nm), "%s: the golden file has exactly L+1 = %d hidden states", f->name, nh);
    for (int i = 0; i <= L; i++) {
        snprintf(nm, sizeof nm, "logit_lens.%d", i);
        if (qa_model_logit_lens(m, &a, i, NULL, 0, &e)) { die_err("logit lens", &e); break; }
        qa_model_to_host(m, host, a.logits, (size_t)N * V);
        if (i == L) {   /* lens of the last layer is the model's own logits */
            double d = qt_rel_err_f32(host, logits, (size_t)N * V);
            QT_CHECK(d < self_tol(1e-6), "%s: logit lens of layer L equals the logits (rel %.2e)", f->name, d);
            continue;
        }
        cmp_positions(f, nm, host, V, TOL_FWD);
    }
    /* last-position and chosen-row logits are the same rows of the full logits */
    o.logits = QA_LOGITS_LAST;
    if (!qa_model_forward(m, NULL, &a, &b, &o, &e)) {
        int ok = a.n_logit_rows == f->B;
        for (int r = 0; ok && r < f->B; r++) {
            int row = a.logit_rows_host[r], t = row % f->T;
            ok = row / f->T == r && f->mask[row] && (t == f->T - 1 || !f->mask[row + 1]);
            qa_model_to_host(m, host, a.logits + (size_t)r * V, V);
            ok = ok && qt_rel_err_f32(host, logits + (size_t)row * V, V) < self_tol(1e-6);
        }
        QT_CHECK(ok, "%s: QA_LOGITS_LAST picks the last unpadded position of each row", f->name);
    } else die_err("forward last", &e);

    /* loss and d loss / d inputs_embeds through the frozen model */
    qa_train_opts to = {.grad_scale = 1.0f, .dropout_key = 0, .want_embed_grad = 1};
    qa_loss loss;
    if (qa_model_forward_backward(m, NULL, &a, &b, &to, &loss, &e)) { die_err("forward_backward", &e); goto out; }
    int ok;
    double ref = gscalar(f, "loss", &ok);
    if (ok) check_loss(f, "loss", loss.loss, ref);
    QT_CHECK(loss.n_tokens == qa_batch_count_labels(&b), "%s: labelled-token count %lld", f->name,
             (long long)loss.n_tokens);
    qa_model_to_host(m, host, a.d_embeds, (size_t)N * D);
    cmp_positions(f, "grad.inputs_embeds", host, D, TOL_GRAD);

    /* padding changes nothing: each row alone, unpadded, gives the same logits */
    for (int r = 0; r < f->B; r++) {
        int len = 0;
        while (len < f->T && f->mask[r * f->T + len]) len++;
        qa_acts a1;
        if (qa_acts_alloc(&a1, m, NULL, 1, len, QA_ACTS_INFER, 0, &e)) { die_err("workspace", &e); break; }
        qa_batch b1 = {1, len, f->ids + (size_t)r * f->T, NULL, NULL, NULL, NULL};
        qa_fwd_opts o1 = {QA_LOGITS_ALL, NULL, 0};
        if (!qa_model_forward(m, NULL, &a1, &b1, &o1, &e)) {
            qa_model_to_host(m, host, a1.logits, (size_t)len * V);
            double d = qt_rel_err_f32(host, logits + (size_t)r * f->T * V, (size_t)len * V);
            QT_CHECK(d < self_tol(1e-5), "%s: row %d alone (T=%d, no padding) = padded batch row (rel %.2e)", f->name, r, len, d);
        } else die_err("forward row", &e);
        qa_acts_free(&a1);
    }
out:
    free(host);
    free(logits);
    qa_acts_free(&a);
}

static void run_adapter(fx *f, qa_model *m, const char *dir, const char *tag) {
    qa_err e = {0};
    const int V = m->cfg.vocab, N = f->B * f->T;
    char path[2048], prefix[300], nm[400];
    snprintf(path, sizeof path, "%s/adapter_%s_init", dir, tag);
    snprintf(prefix, sizeof prefix, "lora_%s", tag);
    qa_lora l;
    if (qa_lora_load_peft(&l, m, path, &e)) { die_err(path, &e); return; }
    qa_acts a;
    if (qa_acts_alloc(&a, m, &l, f->B, f->T, QA_ACTS_TRAIN, 0, &e)) { die_err("workspace", &e); qa_lora_free(&l); return; }
    qa_batch b = batch_of(f);
    qa_fwd_opts o = {QA_LOGITS_ALL, NULL, 0};
    float *host = qa_malloc(sizeof(float) * (size_t)N * V);
    if (!qa_model_forward(m, &l, &a, &b, &o, &e)) {
        qa_model_to_host(m, host, a.logits, (size_t)N * V);
        snprintf(nm, sizeof nm, "%s.logits", prefix);
        cmp_positions(f, nm, host, V, TOL_FWD);
    } else die_err("lora forward", &e);

    qa_adamw opt = {1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f};
    qa_train_opts to = {.grad_scale = 1.0f, .dropout_key = 0, .want_embed_grad = 0};
    qa_loss loss;
    int ok;
    for (int step = 1; step <= 2; step++) {
        qa_lora_zero_grad(&l);
        if (qa_model_forward_backward(m, &l, &a, &b, &to, &loss, &e)) { die_err("lora forward_backward", &e); break; }
        if (step == 1) {
            snprintf(nm, sizeof nm, "%s.loss", prefix);
            double ref = gscalar(f, nm, &ok);
            if (ok) check_loss(f, nm, loss.loss, ref);
            snprintf(nm, sizeof nm, "%s.grad", prefix);
            cmp_lora(f, m, &l, 1, nm);
        } else {
            snprintf(nm, sizeof nm, "%s.loss_after_step1", prefix);
            double ref = gscalar(f, nm, &ok);
            if (ok) check_loss(f, nm, loss.loss, ref);
        }
        qa_lora_adamw(&l, &opt);
    }
    snprintf(nm, sizeof nm, "%s.after2steps", prefix);
    cmp_lora(f, m, &l, 0, nm);
    /* the PEFT directory of the trained adapter holds the same values */
    snprintf(path, sizeof path, "%s/adapter_%s_after2steps", dir, tag);
    if (qa_path_exists(path)) {
        qa_lora l2;
        if (!qa_lora_load_peft(&l2, m, path, &e)) {
            float *x = qa_malloc(sizeof(float) * l.n_params), *y = qa_malloc(sizeof(float) * l.n_params);
            qa_model_to_host(m, x, l.params, l.n_params);
            qa_model_to_host(m, y, l2.params, l2.n_params);
            double err = l.n_params == l2.n_params ? qt_rel_err_f32(x, y, l.n_params) : 1;
            snprintf(nm, sizeof nm, "adapter_%s_after2steps (PEFT dir)", tag);
            check_rel(f, nm, err, TOL_STEP);
            free(x);
            free(y);
            qa_lora_free(&l2);
        } else die_err(path, &e);
    }
    free(host);
    qa_acts_free(&a);
    qa_lora_free(&l);
}


static int is_fixture(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/golden.safetensors", dir, name);
    return qa_path_exists(p);
}
static int is_adapter_init(const char *dir, const char *name) {
    size_t n = strlen(name);
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return n > 13 && !strncmp(name, "adapter_", 8) && !strcmp(name + n - 5, "_init") && qa_is_dir(p);
}

static void run_fixture(const char *root, const char *name) {
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    fx f;
    memset(&f, 0, sizeof f);
    f.name = name;
    qa_err e = {0};
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    if (qa_st_open(&f.g, path, &e)) { die_err(path, &e); return; }
    f.used = qa_calloc(f.g.n_tensors + 1, 1);
    const qa_st_tensor *t = gfind(&f, "input_ids");
    f.ids = gints(&f, "input_ids");
    f.mask = gints(&f, "attention_mask");
    f.labels = gints(&f, "labels");
    QT_CHECK(t && f.ids && f.mask && f.labels, "%s: input_ids, attention_mask, labels (I32 [B,T])", name);
    if (!t || !f.ids || !f.mask || !f.labels) goto done;
    f.B = (int)t->shape[0];
    f.T = (int)t->shape[1];
    qa_model m;
    snprintf(path, sizeof path, "%s/model", dir);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qa_quant quant = QA_QUANT_NONE; /* $QALIGN_QUANT: the projections quantized at load (tests/nf4_oracle.py) */
    if (qa_quant_parse(getenv("QALIGN_QUANT"), &quant, &e) || qa_model_load_quant(&m, path, OPS, quant, &e)) {
        die_err(path, &e);
        goto done;
    }
    printf("%s: %s, B=%d T=%d, hidden %d, %d layers, heads %d/%d, vocab %d, windows[0]=%d\n", name,
           m.cfg.model_type, f.B, f.T, m.cfg.hidden, m.cfg.n_layers, m.cfg.n_heads, m.cfg.n_kv_heads, m.cfg.vocab,
           m.cfg.window[0]);
    run_base(&f, &m);
    char **ad;
    int na = qt_list_dir(dir, &ad, is_adapter_init);
    for (int i = 0; i < na; i++) {
        char tag[256];
        snprintf(tag, sizeof tag, "%.*s", (int)strlen(ad[i]) - 13, ad[i] + 8);
        run_adapter(&f, &m, dir, tag);
        free(ad[i]);
    }
    if (na > 0) free(ad);
    QT_CHECK(na > 0, "%s: at least one adapter_*_init directory", name);
    qa_model_free(&m);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%s: %.2f s\n", name, (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    for (size_t i = 0; i < f.g.n_tensors; i++)
        if (!f.used[i]) printf("  %s: note: golden tensor %s not compared\n", name, f.g.tensors[i].name);
done:
    free(f.ids);
    free(f.mask);
    free(f.labels);
    free(f.used);
    qa_st_close(&f.g);
}

int main(void) {
    const char *backend = qt_env_or("QALIGN_BACKEND", "cpu");
    qa_err be = {0};
    OPS = qa_ops_get(backend, &be);
    if (!OPS) {
        printf("SKIP: %s\n", be.msg);
        return strncmp(backend, "cuda", 4) ? 1 : 77;
    }
    /* bf16 operands on the tensor cores: the per-kind tolerances stated at the top; the emulated device
     * (the CPU kernels) and cuda-fp32 (the verification mode) hold the CPU's 1e-4 */
    if (!strcmp(OPS->name, "cuda")) {
        REL_TOL[TOL_FWD] = 1.5e-2;
        REL_TOL[TOL_GRAD] = 5e-2;
        REL_TOL[TOL_STEP] = 1.2e-1;
        LOSS_TOL = 5e-3;
    }
    if (getenv("QALIGN_GOLDEN_TOL")) {
        double t = atof(getenv("QALIGN_GOLDEN_TOL"));
        for (int k = 0; k < TOL_KINDS; k++) REL_TOL[k] = t;
        LOSS_TOL = t;
    }
    /* the parameters after AdamW steps alone (tests/nf4_oracle.py: m / sqrt(v) turns the rounding of near-zero
     * gradients of an NF4 base into whole steps of lr) */
    if (getenv("QALIGN_GOLDEN_TOL_STEPS")) REL_TOL[TOL_STEP] = atof(getenv("QALIGN_GOLDEN_TOL_STEPS"));
    printf("backend %s, tolerance: forward %.1e, gradient %.1e, after step %.1e (relative), loss %.1e (absolute)\n",
           OPS->name, REL_TOL[TOL_FWD], REL_TOL[TOL_GRAD], REL_TOL[TOL_STEP], LOSS_TOL);
    const char *root = qt_fixtures_root();
    char **names;
    int n = qt_list_dir(root, &names, is_fixture);
    QT_CHECK(n > 0, "fixture directories with golden.safetensors under %s (set QALIGN_FIXTURES)", root);
    for (int i = 0; i < n; i++) {
        run_fixture(root, names[i]);
        free(names[i]);
    }
    if (n > 0) free(names);
    printf("max relative error %.3e, max loss error %.3e over %d fixture(s); LoRA after AdamW steps %.3e\n", worst_rel,
           worst_loss, n < 0 ? 0 : n, worst_steps);
    return qt_finish();
}
