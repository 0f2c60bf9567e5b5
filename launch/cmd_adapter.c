/* cmd_adapter.c — `qalign export-peft` and `qalign merge`: adapters out of qalign.
 *
 *   qalign export-peft CKPT_OR_RUN_DIR OUT_DIR [--model DIR]
 *       a training checkpoint (step_N.h5, or a run directory: its newest valid checkpoint) as a
 *       PEFT adapter directory (adapter_config.json + adapter_model.safetensors, F32).
 *   qalign merge --model DIR --adapter CKPT_OR_PEFT_DIR --out DIR [--dtype bf16|f16|f32|same]
 *       a merged model directory (W + alpha/r·B·A) that loads like the original.
 */
#include "launch/commands.h"

#include "common/qa_err.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "eval/eval.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "train/best.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void export_usage(FILE *f) {
    fprintf(f, "usage: qalign export-peft CKPT_OR_RUN_DIR OUT_DIR [--model DIR]\n"
               "       qalign export-peft RUN_DIR OUT_DIR --best [--model DIR]\n\n"
               "Write the LoRA adapter of a training checkpoint as a PEFT adapter directory\n"
               "(adapter_config.json + adapter_model.safetensors in F32), loadable with\n"
               "peft.PeftModel.from_pretrained(base, OUT_DIR) and with qalign --adapter OUT_DIR.\n\n"
               "  CKPT_OR_RUN_DIR  checkpoints/step_N.h5, or a run directory (its newest valid checkpoint)\n"
               "  --best           the checkpoint of the lowest validation loss in RUN_DIR/metrics.jsonl (the\n"
               "                   earliest on ties; kept in RUN_DIR/best by checkpoint.keep_best); says its step\n"
               "  --model DIR      the base model (default: base_model recorded in the checkpoint)\n");
}

/* The base model directory recorded in a checkpoint file or the newest one of a run dir. */
static int base_model_of(const char *path, char *out, size_t cap, qa_err *e) {
    qa_ckpt *c = NULL;
    if (qa_is_dir(path)) {
        int rc = qa_ckpt_load_latest(path, NULL, &c, NULL, NULL, e);
        if (rc < 0) return -1;
        if (rc == 0) return QA_ERR(e, "%s has no checkpoints/ with a checkpoint in it", path);
    } else {
        QA_TRY(qa_ckpt_open(&c, path, e));
    }
    const qa_ckpt_meta *m = qa_ckpt_meta_of(c);
    snprintf(out, cap, "%s", m->base_model ? m->base_model : "");
    qa_ckpt_close(c);
    if (!out[0]) return QA_ERR(e, "%s does not record its base model: pass --model DIR", path);
    return 0;
}

int cmd_export_peft(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL}, *model = NULL;
    int np = 0, best = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { export_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--best")) { best = 1; continue; }
        if (!strcmp(argv[i], "--model") && i + 1 < argc) { model = argv[++i]; continue; }
        if (argv[i][0] == '-' || np == 2) {
            fprintf(stderr, "qalign export-peft: error: unexpected argument '%s'\n", argv[i]);
            export_usage(stderr);
            return 2;
        }
        pos[np++] = argv[i];
    }
    if (np != 2) { export_usage(stderr); return 2; }
    qa_err e = {0};
    char best_ckpt[4096];
    if (best) { /* the run's lowest validation loss (train/best.h) */
        qa_best_val bv;
        if (!qa_is_dir(pos[0])) {
            fprintf(stderr, "qalign export-peft: error: --best needs the run directory, not %s\n", pos[0]);
            return 2;
        }
        if (qa_best_find(pos[0], best_ckpt, sizeof best_ckpt, &bv, &e)) { qa_err_print(&e); return 1; }
        printf("best: step %lld, validation loss %.6f, the lowest of %lld validation(s) in %s/metrics.jsonl: %s\n",
               (long long)bv.step, bv.val_loss, (long long)bv.n_val, pos[0], best_ckpt);
        pos[0] = best_ckpt;
    }
    char base[4096];
    if (model) snprintf(base, sizeof base, "%s", model);
    else if (base_model_of(pos[0], base, sizeof base, &e)) { qa_err_print(&e); return 1; }
    qa_model m;
    if (qa_model_load(&m, base, NULL, &e)) {
        qa_err_prefix(&e, "base model of %s (use --model DIR if it moved)", pos[0]);
        qa_err_print(&e);
        return 1;
    }
    qa_lora l;
    char id[1200];
    int rc = 0;
    if (qa_eval_load_adapter(&l, &m, pos[0], id, sizeof id, &e)) { qa_err_print(&e); qa_model_free(&m); return 1; }
    if (qa_lora_save_peft(&l, &m, pos[1], &e)) { qa_err_print(&e); rc = 1; }
    else printf("wrote %s: PEFT LoRA adapter (r=%d, alpha=%g, %zu parameters) from %s\n", pos[1], l.r, (double)l.alpha,
                l.n_params, id);
    qa_lora_free(&l);
    qa_model_free(&m);
    return rc;
}

static void merge_usage(FILE *f) {
    fprintf(f, "usage: qalign merge --model DIR --adapter CKPT_OR_PEFT_DIR --out DIR [--dtype bf16|f16|f32|same]\n\n"
               "Write a merged model directory: W' = W + (lora_alpha/r)·B·A on every projection the adapter\n"
               "targets (computed in float64), every other tensor byte for byte, config.json, generation\n"
               "config and tokenizer files copied. It loads like the original model (qalign, transformers).\n\n"
               "  --dtype  dtype of the merged projections (default: same as the base checkpoint)\n");
}

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL, *dt = "same";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { merge_usage(stdout); return 0; }
        if (i + 1 < argc && !strcmp(argv[i], "--model")) model = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--adapter")) adapter = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--out")) out = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--dtype")) dt = argv[++i];
        else { fprintf(stderr, "qalign merge: error: unexpected argument '%s'\n", argv[i]); merge_usage(stderr); return 2; }
    }
    if (!model || !adapter || !out) { merge_usage(stderr); return 2; }
    char rm[PATH_MAX], ro[PATH_MAX];
    if (realpath(model, rm) && realpath(out, ro) && !strcmp(rm, ro)) {
        fprintf(stderr, "qalign merge: error: --out %s is the base model directory itself; write the merged model to a "
                        "new directory\n", out);
        return 2;
    }
    qa_dtype odt;
    if (!strcmp(dt, "same")) odt = QA_DT_INVALID;
    else if (!strcmp(dt, "bf16")) odt = QA_DT_BF16;
    else if (!strcmp(dt, "f16")) odt = QA_DT_F16;
    else if (!strcmp(dt, "f32")) odt = QA_DT_F32;
    else { fprintf(stderr, "qalign merge: error: --dtype must be bf16, f16, f32 or same, not '%s'\n", dt); return 2; }
    qa_err e = {0};
    qa_model m;
    if (qa_model_load(&m, model, NULL, &e)) { qa_err_print(&e); return 1; }
    qa_lora l;
    char id[1200];
    if (qa_eval_load_adapter(&l, &m, adapter, id, sizeof id, &e)) { qa_err_print(&e); qa_model_free(&m); return 1; }
    int rc = 0;
    if (qa_model_merge_lora(&m, &l, model, out, odt, &e)) { qa_err_print(&e); rc = 1; }
    else printf("wrote %s: %s merged with %s (scale %g)\n", out, model, id, (double)l.scale);
    qa_lora_free(&l);
    qa_model_free(&m);
    return rc;
}
