/* test_memory.c — the memory figures are the allocations. For every fixture model, on the CPU backend and on
 * the emulated device, a counting wrapper around ops->alloc records the bytes each allocation asks for, and
 * they must equal what the memory functions report for the same shape:
 *   qa_model_load           == qa_model_memory_estimate().weights (device: the uploaded block; CPU: the mmap'd
 *                              views + the owned conversions)
 *   qa_lora_init            == .lora + .optimizer == qa_lora_bytes
 *   qa_acts_alloc           == .activations (train) == qa_acts_bytes, for several shapes, both modes,
 *                              logit rows and adapters; and a forward (+ backward) runs in it
 *   qa_infer_ws_alloc       == .activations (eval) == qa_infer_ws_bytes
 *   qa_kv_cache_alloc       == .kv_cache == qa_kv_cache_bytes
 *   qa_model_load_quant     == .weights with .quant (NF4, NF4-DQ), and the config-only figures (no checkpoint)
 * and `qalign info --json` and `qalign train --dry-run` (QALIGN_BIN) print the numbers of those allocations
 * (the dry run padded and padding-free; the sweep sizes its jobs with the dry run's figure, train/mem_estimate.c). */
#include "model/model.h"
#include "common/qa_mem.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a backend that counts what it allocates ------------------------------------------------------------ */
static const qa_ops *BASE;
static size_t ALLOCATED; /* bytes asked of alloc since the last reset */
static int N_ALLOCS;
static void *count_alloc(size_t bytes, qa_err *e) {
    ALLOCATED += bytes;
    N_ALLOCS++;
    return BASE->alloc(bytes, e);
}
static qa_ops COUNTING;
static const qa_ops *counting(const qa_ops *base) {
    BASE = base;
    COUNTING = *base;
    COUNTING.alloc = count_alloc;
    return &COUNTING;
}
static void reset(void) { ALLOCATED = 0; N_ALLOCS = 0; }

/* ---- one model on one backend --------------------------------------------------------------------------- */
static void fill_batch(int32_t *ids, int32_t *labels, int n, int V) {
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)((i * 37 + 11) % V);
        labels[i] = i % 3 ? ids[i] : -100;
    }
}

static void check_model(const char *dir, const qa_ops *base) {
    const char *bn = base->name;
    qa_err e = {0};
    const qa_ops *ops = counting(base);
    qa_model m;
    reset();
    if (qa_model_load(&m, dir, ops, &e)) { QT_CHECK(0, "%s: load %s: %s", bn, dir, e.msg); return; }
    const size_t loaded = ALLOCATED;
    const qa_hf_config *c = &m.cfg;
    const int V = c->vocab;

    /* weights: the estimate walks the same views on the same checkpoint */
    qa_mem_estimate est;
    qa_mem_shape sh = {.train = 1, .B = 1, .T = 1};
    QT_CHECK(!qa_model_memory_estimate(c, &m.st, ops, &sh, &est, &e), "%s: estimate: %s", bn, e.msg);
    const size_t weights = est.weights;
    if (base->host_memory) {
        size_t views = 0; /* the BF16/F32 fixture tensors the model reads stay in the mmap */
        qa_hf_tensor_spec *specs;
        size_t ns = qa_hf_tensor_specs(c, &specs);
        for (size_t i = 0; i < ns; i++) {
            const qa_st_tensor *t = qa_st_find(&m.st, specs[i].name);
            if (t) views += t->nbytes;
        }
        free(specs);
        QT_CHECK(loaded == 0 && est.weights == views + m.owned_bytes && est.weights_mapped == views,
                 "%s %s: weights %zu bytes == the mmap'd views %zu + owned %zu (backend allocations %zu)", bn, dir,
                 est.weights, views, m.owned_bytes, loaded);
    } else {
        QT_CHECK(est.weights == loaded && loaded == m.owned_bytes && est.weights_mapped == 0,
                 "%s %s: weights %zu bytes == the uploaded block %zu", bn, dir, est.weights, loaded);
    }

    /* the projections quantized at load (NF4, NF4 with double-quantized absmax): codes + absmax in the owned
     * block, the rest as stored */
    for (int q = QA_QUANT_NF4; q <= QA_QUANT_NF4_DQ; q++) {
        qa_model mq;
        qa_mem_estimate eq;
        qa_err eq_e = {0};
        qa_mem_shape qs = {.train = 1, .B = 1, .T = 1, .quant = q};
        reset();
        const int lrc = qa_model_load_quant(&mq, dir, ops, (qa_quant)q, &e);
        const size_t qloaded = ALLOCATED;
        const int erc = qa_model_memory_estimate(c, &m.st, ops, &qs, &eq, &eq_e);
        QT_CHECK((lrc == 0) == (erc == 0), "%s %s %s: load %s, estimate %s (%s%s)", bn, dir, qa_quant_name((qa_quant)q),
                 lrc ? "fails" : "works", erc ? "fails" : "works", lrc ? e.msg : "", erc ? eq_e.msg : "");
        if (lrc || erc) continue;
        QT_CHECK(mq.nf4_bytes > 0 && eq.weights == eq.weights_mapped + mq.owned_bytes &&
                 (base->host_memory ? qloaded == 0 : (qloaded == mq.owned_bytes && eq.weights_mapped == 0)),
                 "%s %s %s: weights %zu bytes == mapped %zu + owned %zu (NF4 %zu; backend allocations %zu)", bn, dir,
                 qa_quant_name((qa_quant)q), eq.weights, eq.weights_mapped, mq.owned_bytes, mq.nf4_bytes, qloaded);
        qa_model_free(&mq);
    }
    /* a model planned from its config.json alone: 2 bytes a parameter, NF4 projections as qa_model_proj_nf4_bytes */
    {
        qa_mem_estimate ec;
        qa_mem_shape cs = {.train = 1, .B = 1, .T = 1};
        qa_model_memory_estimate(c, NULL, ops, &cs, &ec, &e);
        const int64_t P = qa_hf_config_param_count(c);
        QT_CHECK(ec.weights_from_config && ec.weights == (size_t)P * 2, "%s: config-only weights %zu == %lld x 2",
                 bn, ec.weights, (long long)P);
        cs.quant = QA_QUANT_NF4;
        qa_model_memory_estimate(c, NULL, ops, &cs, &ec, &e);
        QT_CHECK(ec.weights == (size_t)(P - qa_model_proj_params(c)) * 2 + (size_t)qa_model_proj_nf4_bytes(c),
                 "%s: config-only NF4 weights %zu", bn, ec.weights);
    }

    /* adapters */
    const struct { unsigned mods; int r; } ad[] = {{0, 0}, {QA_LORA_MASK_QV, 4}, {QA_LORA_MASK_ALL, 8},
                                                   {QA_LORA_BIT(QA_LORA_DOWN) | QA_LORA_BIT(QA_LORA_K), 3}};
    /* batch shapes, logit rows (0 = all) */
    const struct { int B, T, rows; } shp[] = {{1, 1, 0}, {2, 12, 0}, {3, 7, 5}, {4, 33, 64}, {1, 40, 1}};
    int n_acts = 0;
    for (size_t a = 0; a < sizeof ad / sizeof ad[0]; a++) {
        qa_lora l;
        const qa_lora *lp = NULL;
        if (ad[a].r) {
            reset();
            if (qa_lora_init(&l, &m, ad[a].mods, ad[a].r, 2.0f * ad[a].r, 0.1f, &e)) {
                QT_CHECK(0, "%s: lora init: %s", bn, e.msg);
                continue;
            }
            qa_lora_init_params(&l, 5);
            lp = &l;
            qa_mem_shape ls = {.train = 1, .B = 1, .T = 1, .lora_modules = ad[a].mods, .lora_r = ad[a].r};
            qa_model_memory_estimate(c, NULL, ops, &ls, &est, &e);
            QT_CHECK(ALLOCATED == est.lora + est.optimizer && ALLOCATED == qa_lora_bytes(c, ad[a].mods, ad[a].r) &&
                         est.optimizer == 2 * l.n_params * sizeof(float) && N_ALLOCS == 1,
                     "%s: LoRA r=%d modules 0x%x: allocated %zu == lora %zu + optimizer %zu", bn, ad[a].r, ad[a].mods,
                     ALLOCATED, est.lora, est.optimizer);
        }
        for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s++) {
            const int B = shp[s].B, T = shp[s].T, N = B * T;
            for (int mode = QA_ACTS_INFER; mode <= QA_ACTS_TRAIN; mode++) {
                qa_acts w;
                reset();
                if (qa_acts_alloc(&w, &m, lp, B, T, mode, shp[s].rows, &e)) {
                    QT_CHECK(0, "%s: acts [%d,%d]: %s", bn, B, T, e.msg);
                    continue;
                }
                const size_t want = qa_acts_bytes(c, lp ? ad[a].mods : 0, lp ? ad[a].r : 0, B, T, mode, shp[s].rows);
                int ok = ALLOCATED == want && w.bytes == want && N_ALLOCS == 1;
                if (mode == QA_ACTS_TRAIN) {
                    qa_mem_shape ts = {.train = 1, .B = B, .T = T, .max_logit_rows = shp[s].rows,
                                       .lora_modules = lp ? ad[a].mods : 0, .lora_r = lp ? ad[a].r : 0};
                    ok = ok && !qa_model_memory_estimate(c, NULL, ops, &ts, &est, &e) && est.activations == want;
                }
                QT_CHECK(ok, "%s: acts %s [%d,%d] rows %d, LoRA r=%d 0x%x: allocated %zu, reported %zu (estimate %zu)",
                         bn, mode ? "train" : "infer", B, T, shp[s].rows, lp ? ad[a].r : 0, lp ? ad[a].mods : 0,
                         ALLOCATED, want, mode ? est.activations : want);
                /* the workspace holds a whole pass of that shape (no adapter, and the one on every module) */
                if (a != 0 && a != 2) {
                    qa_acts_free(&w);
                    n_acts++;
                    continue;
                }
                int32_t *ids = qa_malloc(sizeof(int32_t) * N), *lab = qa_malloc(sizeof(int32_t) * N);
                fill_batch(ids, lab, N, V);
                qa_batch b = {B, T, ids, NULL, NULL, NULL, lab};
                int rc;
                if (mode == QA_ACTS_TRAIN) {
                    qa_loss lo;
                    qa_train_opts to = {.grad_scale = 1, .dropout_key = 77, .want_embed_grad = 1};
                    rc = qa_model_forward_backward(&m, (qa_lora *)lp, &w, &b, &to, &lo, &e);
                } else {
                    qa_fwd_opts fo = {shp[s].rows ? QA_LOGITS_LAST : QA_LOGITS_ALL, NULL, 0};
                    rc = qa_model_forward(&m, lp, &w, &b, &fo, &e);
                }
                QT_CHECK(rc == 0, "%s: a pass in the workspace [%d,%d] %s: %s", bn, B, T, mode ? "train" : "infer",
                         e.msg);
                free(ids);
                free(lab);
                qa_acts_free(&w);
                n_acts++;
            }
            /* inference workspace and prefix cache of the evaluation */
            const int outs[2] = {V, 3};
            for (int k = 0; k < 2; k++) {
                qa_infer_ws iw;
                reset();
                if (qa_infer_ws_alloc(&iw, &m, lp, B, N, outs[k], &e)) {
                    QT_CHECK(0, "%s: infer ws: %s", bn, e.msg);
                    continue;
                }
                qa_mem_shape es = {.train = 0, .B = B, .T = T, .max_out = outs[k], .kv_cap = T + 2,
                                   .lora_modules = lp ? ad[a].mods : 0, .lora_r = lp ? ad[a].r : 0};
                qa_model_memory_estimate(c, NULL, ops, &es, &est, &e);
                const size_t ws = ALLOCATED;
                QT_CHECK(ws == est.activations && ws == iw.bytes &&
                             ws == qa_infer_ws_bytes(c, lp ? ad[a].r : 0, B, N, outs[k]) && N_ALLOCS == 1,
                         "%s: inference workspace %d rows, %d tokens, %d outputs: allocated %zu, reported %zu", bn, B,
                         N, outs[k], ws, est.activations);
                qa_kv_cache kv;
                reset();
                if (qa_kv_cache_alloc(&kv, &m, T + 2, &e)) {
                    QT_CHECK(0, "%s: kv cache: %s", bn, e.msg);
                    qa_infer_ws_free(&iw);
                    continue;
                }
                QT_CHECK(ALLOCATED == est.kv_cache && ALLOCATED == qa_kv_cache_bytes(c, T + 2),
                         "%s: kv cache of %d positions: allocated %zu, reported %zu", bn, T + 2, ALLOCATED,
                         est.kv_cache);
                if (a == 0 || a == 2) {
                    /* a prefill, then one row continuing it, run in them (full vocabulary, or 3 head rows) */
                    int32_t *ids = qa_malloc(sizeof(int32_t) * N), *lab = qa_malloc(sizeof(int32_t) * N);
                    int32_t len = T, len1 = 1, ctx1 = T;
                    const int32_t hid[3] = {1, 2, 3};
                    fill_batch(ids, lab, N, V);
                    float *out = qa_malloc(sizeof(float) * (size_t)V);
                    qa_head_rows head;
                    int rc = k ? qa_head_rows_init(&head, &m, hid, 3, &e) : 0;
                    const qa_head_rows *hp = k ? &head : NULL;
                    qa_infer_batch pb = {1, T, ids, &len, NULL};
                    if (!rc) rc = qa_model_infer(&m, lp, &iw, NULL, &pb, &kv, hp, out, &e);
                    qa_infer_batch sb = {1, 1, ids, &len1, &ctx1};
                    if (!rc) rc = qa_model_infer(&m, lp, &iw, &kv, &sb, NULL, hp, out, &e);
                    QT_CHECK(rc == 0, "%s: prefill + continuation in the workspace: %s", bn, e.msg);
                    if (k) qa_head_rows_free(&head);
                    free(ids);
                    free(lab);
                    free(out);
                }
                qa_kv_cache_free(&kv);
                qa_infer_ws_free(&iw);
            }
        }
        if (lp) qa_lora_free(&l);
    }
    printf("  %s %s: %d workspaces, weights %zu bytes\n", bn, dir, n_acts, weights);
    qa_model_free(&m);
}

/* ---- qalign info --json prints the allocations -------------------------------------------------------- */
static long long json_num(const char *s, const char *section, const char *key) {
    const char *p = strstr(s, section);
    if (!p) return -1;
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    p = strstr(p, k);
    return p ? atoll(p + strlen(k)) : -1;
}

static void check_info(const char *dir) {
    const char *bin = qt_env_or("QALIGN_BIN", NULL);
    if (!bin) { printf("  QALIGN_BIN not set: qalign info not checked\n"); return; }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' info '%s' --json --train-batch 3 --train-seq 11 --lora-r 4 --lora-modules all "
                              "--eval-batch 2 --eval-seq 9", bin, dir);
    FILE *p = popen(cmd, "r");
    if (!p) { QT_CHECK(0, "run %s", cmd); return; }
    char *buf = qa_calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, p);
    int st = pclose(p);
    QT_CHECK(st == 0 && n > 0, "qalign info --json ran (status %d)", st);
    qa_err e = {0};
    qa_model m;
    if (qa_model_load(&m, dir, counting(qa_ops_cpu()), &e)) { QT_CHECK(0, "load: %s", e.msg); free(buf); return; }
    qa_lora l;
    reset();
    qa_lora_init(&l, &m, QA_LORA_MASK_ALL, 4, 8, 0, &e);
    const size_t lora = ALLOCATED;
    qa_acts a;
    reset();
    qa_acts_alloc(&a, &m, &l, 3, 11, QA_ACTS_TRAIN, 33, &e); /* 3 x 11 = 33 logit rows (< 2048) */
    const size_t acts = ALLOCATED;
    qa_infer_ws w;
    reset();
    qa_infer_ws_alloc(&w, &m, NULL, 2, 18, m.cfg.vocab, &e);
    const size_t ws = ALLOCATED;
    qa_kv_cache kv;
    reset();
    qa_kv_cache_alloc(&kv, &m, 9, &e);
    const size_t kvb = ALLOCATED;
    long long t_act = json_num(buf, "memory_lora_train", "activation_bytes"),
              t_lora = json_num(buf, "memory_lora_train", "lora_bytes"),
              t_opt = json_num(buf, "memory_lora_train", "optimizer_bytes"),
              e_act = json_num(buf, "memory_eval", "activation_bytes"),
              e_kv = json_num(buf, "memory_eval", "kv_cache_bytes");
    QT_CHECK(t_act == (long long)acts, "info: training activations %lld == allocated %zu", t_act, acts);
    QT_CHECK(t_lora + t_opt == (long long)lora, "info: LoRA %lld + AdamW %lld == allocated %zu", t_lora, t_opt, lora);
    QT_CHECK(e_act == (long long)ws, "info: evaluation workspace %lld == allocated %zu", e_act, ws);
    QT_CHECK(e_kv == (long long)kvb, "info: prefix cache %lld == allocated %zu", e_kv, kvb);
    qa_kv_cache_free(&kv);
    qa_infer_ws_free(&w);
    qa_acts_free(&a);
    qa_lora_free(&l);
    qa_model_free(&m);
    free(buf);
}

/* ---- qalign train --dry-run prints the allocations of the run ------------------------------------------ */
static char *run_capture(const char *cmd, int *status) {
    FILE *p = popen(cmd, "r");
    char *buf = qa_calloc(1, 1 << 16);
    size_t n = p ? fread(buf, 1, (1 << 16) - 1, p) : 0;
    buf[n] = 0;
    *status = p ? pclose(p) : -1;
    return buf;
}

static void check_dry_run(const char *dir) {
    const char *bin = qt_env_or("QALIGN_BIN", NULL);
    if (!bin) return;
    qa_err e = {0};
    qa_model m;
    if (qa_model_load(&m, dir, counting(qa_ops_cpu()), &e)) { QT_CHECK(0, "load: %s", e.msg); return; }
    char tmp[] = "/tmp/qa_memory.XXXXXX", data[256], cmd[2048];
    if (!mkdtemp(tmp)) { QT_CHECK(0, "mkdtemp"); qa_model_free(&m); return; }
    snprintf(data, sizeof data, "%s/data.json", tmp);
    FILE *f = fopen(data, "w");
    fprintf(f, "[\n");
    for (int i = 0; i < 7; i++) { /* pre-tokenized records of 9..15 tokens */
        fprintf(f, " {\"input_ids\": [");
        for (int j = 0; j < 9 + i; j++) fprintf(f, "%s%d", j ? "," : "", (i * 31 + j * 7 + 1) % m.cfg.vocab);
        fprintf(f, "], \"labels\": [");
        for (int j = 0; j < 9 + i; j++)
            fprintf(f, "%s%d", j ? "," : "", j < 4 ? -100 : (i * 31 + j * 7 + 1) % m.cfg.vocab);
        fprintf(f, "]}%s\n", i < 6 ? "," : "");
    }
    fprintf(f, "]\n");
    fclose(f);
    /* padded rows (3 per micro-batch), padding-free (the 3 rows end to end in one: qa_data_batch_shape) and fused
     * (train.fuse_micro_batches: the 3 micro-batches of a step as one pass of 9 padded rows) */
    int T0 = 0; /* the padded row length */
    for (int v = 0; v < 3; v++) {
        const int pf = v == 1, fused = v == 2;
        const char *what = pf ? " padding-free" : fused ? " fused" : "";
        snprintf(cmd, sizeof cmd, "'%s' train --set model.path='%s' --set data.files='%s' --set data.template=none "
                                  "--set data.val_fraction=0 --set train.micro_batch=3 --set train.grad_accum=3 "
                                  "--set lora.targets=q_proj,down_proj --set lora.r=4 --device cpu "
                                  "--set data.padding_free=%s --set train.fuse_micro_batches=%s --dry-run 2>&1",
                 bin, dir, data, pf ? "true" : "false", fused ? "true" : "false");
        int st;
        char *out = run_capture(cmd, &st);
        int B = 0, T = 0, rows = 0;
        long long act = -1, lora = -1, opt = -1;
        const char *p = strstr(out, "memory estimate per rank (micro-batch ");
        if (p) sscanf(p, "memory estimate per rank (micro-batch %d x %d tokens", &B, &T);
        if ((p = strstr(out, "\n  activations")))
            sscanf(p, "\n  activations %*f GiB %lld bytes  the workspace: %*d layers of saved tensors, logits of %d rows",
                   &act, &rows);
        if ((p = strstr(out, "\n  LoRA"))) sscanf(p, "\n  LoRA %*f GiB %lld", &lora);
        if ((p = strstr(out, "\n  AdamW m, v"))) sscanf(p, "\n  AdamW m, v %*f GiB %lld", &opt);
        if (!pf) T0 = T;
        QT_CHECK(st == 0 && B == (pf ? 1 : fused ? 9 : 3) && T > 0 && (!pf || T == 3 * T0) && (!fused || T == T0) &&
                     rows == (B * T > 2048 ? 2048 : B * T),
                 "train --dry-run%s printed the shape (micro-batch %d x %d, %d logit rows; status %d)%s%s", what, B, T,
                 rows, st, st ? "\n" : "", st ? out : "");
        if (B > 0 && T > 0 && rows > 0) {
            qa_lora l;
            reset();
            qa_lora_init(&l, &m, QA_LORA_BIT(QA_LORA_Q) | QA_LORA_BIT(QA_LORA_DOWN), 4, 8, 0, &e);
            const size_t lb = ALLOCATED;
            qa_acts a;
            reset();
            qa_acts_alloc(&a, &m, &l, B, T, QA_ACTS_TRAIN, rows, &e);
            QT_CHECK(act == (long long)ALLOCATED, "train --dry-run%s: activations %lld == allocated %zu", what, act,
                     ALLOCATED);
            QT_CHECK(lora + opt == (long long)lb, "train --dry-run: LoRA %lld + AdamW %lld == allocated %zu", lora, opt,
                     lb);
            qa_acts_free(&a);
            qa_lora_free(&l);
        }
        free(out);
    }
    unlink(data);
    rmdir(tmp);
    qa_model_free(&m);
}

int main(void) {
    const char *root = qt_env_or("QALIGN_FIXTURES", qt_env_or("QALIGN_FIXTURES_DEFAULT", "../shared/fixtures/hf"));
    DIR *d = opendir(root);
    if (!d) { QT_CHECK(0, "fixtures under %s (set QALIGN_FIXTURES)", root); return qt_finish(); }
    struct dirent *de;
    char first[1024] = "";
    int n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s/model", root, de->d_name);
        char cfg[1100];
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        FILE *f = fopen(cfg, "r");
        if (!f) continue;
        fclose(f);
        check_model(dir, qa_ops_cpu());
        check_model(dir, qa_ops_emu());
        if (!first[0]) snprintf(first, sizeof first, "%s", dir);
        n++;
    }
    closedir(d);
    QT_CHECK(n > 0, "a fixture model under %s", root);
    if (first[0]) {
        check_info(first);
        check_dry_run(first);
    }
    return qt_finish();
}
