/* adapter.c — the adapter to evaluate: a PEFT directory, a training checkpoint file, or a run
 * directory (its newest valid checkpoint). */
#include "eval/eval.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ckpt_log(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "qalign: warning: %s\n", msg);
}

/* every targeted (layer, module) of the checkpoint's /lora group into l */
static int from_ckpt(qa_lora *l, const qa_model *m, qa_ckpt *c, qa_err *e) {
    const qa_ckpt_meta *mt = qa_ckpt_meta_of(c);
    unsigned mask = 0;
    for (size_t i = 0; i < mt->n_target_modules; i++) {
        int mod = qa_lora_module_from_name(mt->target_modules[i]);
        if (mod < 0)
            return QA_ERR(e, "checkpoint %s: target module '%s' is unknown", qa_ckpt_path(c), mt->target_modules[i]);
        mask |= QA_LORA_BIT(mod);
    }
    if (!mask || mt->lora_r <= 0)
        return QA_ERR(e, "checkpoint %s: no LoRA target modules or rank (lora_r %d)", qa_ckpt_path(c), mt->lora_r);
    QA_TRY(qa_lora_init(l, m, mask, mt->lora_r, (float)mt->lora_alpha, 0.0f, e));
    float *buf = NULL;
    size_t cap = 0;
    int n_expected = 0;
    for (int layer = 0; layer < l->n_layers; layer++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            const qa_lora_mat *t = qa_lora_at(l, layer, mod);
            if (!t->present) continue;
            for (int isB = 0; isB < 2; isB++) {
                char name[256], path[300];
                qa_lora_peft_name(name, sizeof name, layer, mod, isB);
                snprintf(path, sizeof path, "lora/%s", name);
                int64_t shape[2] = {isB ? t->out : l->r, isB ? l->r : t->in};
                size_t n = (size_t)(shape[0] * shape[1]);
                if (n > cap) buf = qa_realloc(buf, sizeof(float) * (cap = n));
                if (qa_ckpt_read(c, path, QA_CKPT_F32, 2, shape, buf, e) ||
                    (qa_first_nonfinite_f32(buf, n) < n &&
                     QA_ERR(e, "/%s holds non-finite weights (NaN or Inf)", path))) {
                    free(buf);
                    qa_lora_free(l);
                    return qa_err_prefix(e, "checkpoint %s (does it belong to this base model?)", qa_ckpt_path(c));
                }
                qa_lora_set(l, layer, mod, isB, buf);
                n_expected++;
            }
        }
    free(buf);
    int n_lora = 0;
    for (size_t i = 0; i < qa_ckpt_count(c); i++)
        if (!strncmp(qa_ckpt_at(c, i)->path, "lora/", 5)) n_lora++;
    if (n_lora != n_expected) {
        qa_lora_free(l);
        return QA_ERR(e, "checkpoint %s holds %d LoRA tensors, the base model with r=%d and its target modules needs "
                         "%d", qa_ckpt_path(c), n_lora, mt->lora_r, n_expected);
    }
    return 0;
}

int qa_eval_load_adapter(qa_lora *l, const qa_model *m, const char *path, char *id, size_t id_cap, qa_err *e) {
    char idbuf[1200];
    if (qa_is_dir(path)) {
        char *cfg = qa_path_join(path, "adapter_config.json");
        int peft = qa_path_exists(cfg);
        free(cfg);
        if (peft) {
            QA_TRY(qa_lora_load_peft(l, m, path, e));
            snprintf(idbuf, sizeof idbuf, "peft:%s (r=%d, alpha=%g)", path, l->r, l->alpha);
            if (id) snprintf(id, id_cap, "%s", idbuf);
            return 0;
        }
        char *ck = qa_path_join(path, QA_CKPT_SUBDIR);
        int run = qa_is_dir(ck);
        free(ck);
        if (!run)
            return QA_ERR(e, "adapter %s: a directory without adapter_config.json (PEFT) or %s/ (a training run)",
                          path, QA_CKPT_SUBDIR);
        qa_ckpt *c = NULL;
        int got = qa_ckpt_load_latest(path, NULL, &c, ckpt_log, NULL, e);
        if (got < 0) return qa_err_prefix(e, "adapter %s", path);
        if (got == 0) return QA_ERR(e, "adapter %s: the run directory has no checkpoint yet", path);
        int rc = from_ckpt(l, m, c, e);
        if (!rc) {
            const qa_ckpt_meta *mt = qa_ckpt_meta_of(c);
            snprintf(idbuf, sizeof idbuf, "ckpt:%s@step %lld (crc32c %08x, r=%d, alpha=%g)", qa_ckpt_path(c),
                     (long long)mt->step, mt->checksum, mt->lora_r, mt->lora_alpha);
            if (id) snprintf(id, id_cap, "%s", idbuf);
        }
        qa_ckpt_close(c);
        return rc;
    }
    if (!qa_path_exists(path)) return QA_ERR(e, "adapter %s does not exist", path);
    qa_ckpt *c = NULL;
    if (qa_ckpt_open(&c, path, e)) return qa_err_prefix(e, "adapter %s (expected a PEFT directory or a checkpoint)", path);
    int rc = from_ckpt(l, m, c, e);
    if (!rc) {
        const qa_ckpt_meta *mt = qa_ckpt_meta_of(c);
        snprintf(idbuf, sizeof idbuf, "ckpt:%s@step %lld (crc32c %08x, r=%d, alpha=%g)", path, (long long)mt->step,
                 mt->checksum, mt->lora_r, mt->lora_alpha);
        if (id) snprintf(id, id_cap, "%s", idbuf);
    }
    qa_ckpt_close(c);
    return rc;
}
