/* cmd_adapter.c — `qalign export-peft` and `qalign merge`: adapters out of qalign.
 *
 *   qalign export-peft CKPT_OR_RUN_DIR OUT_DIR [--best] [--model DIR] [--force]
 *       a training checkpoint (step_N.h5, or a run directory: its newest valid checkpoint; --best: the
 *       step of the lowest validation loss) as a PEFT adapter directory (adapter_config.json +
 *       adapter_model.safetensors, F32).
 *   qalign merge --model DIR --adapter CKPT_OR_PEFT_DIR --out DIR [--dtype bf16|f16|f32|same] [--quant nf4|nf4-dq]
 *       a merged model directory (W + alpha/r·B·A) that loads like the original.
 */
#include "launch/commands.h"

#include "common/qa_err.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "eval/eval.h"
#include "io/checkpoint.h"
#include "io/peft.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "train/best.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void export_usage(FILE *f) {
    fprintf(f, "usage: qalign export-peft CKPT_OR_RUN_DIR OUT_DIR [--model DIR] [--force]\n"
               "       qalign export-peft RUN_DIR OUT_DIR --best [--model DIR] [--force]\n\n"
               "Write the LoRA adapter of a training checkpoint as a PEFT adapter directory\n"
               "(adapter_config.json + adapter_model.safetensors in F32), loadable with\n"
               "peft.PeftModel.from_pretrained(base, OUT_DIR) and with qalign eval|forward --adapter OUT_DIR.\n"
               "OUT_DIR may be new, empty or an adapter directory (its two adapter files are replaced, nothing\n"
               "else in it is touched); any other existing directory is refused unless --force.\n\n"
               "  CKPT_OR_RUN_DIR  checkpoints/step_N.h5, or a run directory (its newest valid checkpoint)\n"
               "  --best           the checkpoint of the lowest validation loss in RUN_DIR/metrics.jsonl (the\n"
               "                   earliest on ties; kept in RUN_DIR/best by checkpoint.keep_best); says its step\n"
               "  --model DIR      the base model (default: base_model recorded in the checkpoint)\n"
               "  --force          write the two adapter files into an existing directory that holds other files\n"
               "                   (those stay untouched)\n");
}

/* --force into a directory that holds other files: the adapter is written into a private staging
 * directory and its two files are moved over, each atomically; nothing else in dir is touched. */
static int save_into(const qa_lora *l, const qa_model *m, const char *base, const char *dir, qa_err *e) {
    char *stage = qa_stage_dir_create(dir, e);
    if (!stage) return -1;
    char *sub = qa_path_join(stage, "adapter");
    int rc = qa_lora_save_peft_base(l, m, base, sub, e);
    static const char *const files[2] = {"adapter_model.safetensors", "adapter_config.json"};
    for (int k = 0; k < 2 && !rc; k++) {
        char *a = qa_path_join(sub, files[k]), *b = qa_path_join(dir, files[k]);
        rc = qa_commit_rename(a, b, e);
        free(a);
        free(b);
    }
    qa_rm_tree(stage);
    free(sub);
    free(stage);
    return rc;
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
    int np = 0, force = 0, best = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { export_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--best")) { best = 1; continue; }
        if (!strcmp(argv[i], "--model") && i + 1 < argc) { model = argv[++i]; continue; }
        if (!strcmp(argv[i], "--force")) { force = 1; continue; }
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
    /* refused before the model is loaded: never remove or overwrite what qalign did not write */
    int into = 0;
    if (qa_peft_check_dir(pos[1], &e)) {
        if (!force || !qa_is_dir(pos[1])) { qa_err_print(&e); return 1; }
        into = 1;
        e = (qa_err){0};
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
    if (into ? save_into(&l, &m, base, pos[1], &e) : qa_lora_save_peft_base(&l, &m, base, pos[1], &e)) {
        qa_err_print(&e);
        rc = 1;
    }
    else printf("wrote %s: PEFT LoRA adapter (r=%d, alpha=%g, %zu parameters) from %s\n", pos[1], l.r, (double)l.alpha,
                l.n_params, id);
    qa_lora_free(&l);
    qa_model_free(&m);
    return rc;
}

static void merge_usage(FILE *f) {
    fprintf(f, "usage: qalign merge --model DIR --adapter CKPT_OR_PEFT_DIR --out DIR [--dtype bf16|f16|f32|same]\n"
               "                    [--quant nf4|nf4-dq]\n\n"
               "Write a merged model directory: W' = W + (lora_alpha/r)·B·A on every projection the adapter\n"
               "targets (B·A accumulated in float64, the sum in float32), generation config and tokenizer\n"
               "files copied. It loads like the original model (qalign, transformers).\n\n"
               "  --dtype  same (default): each projection keeps its dtype, every other tensor is copied byte\n"
               "           for byte and config.json as it is; bf16|f16|f32: every floating tensor is written\n"
               "           in that dtype and config.json's torch_dtype (and dtype) say so\n"
               "  --quant  merge into the NF4 base the adapter was trained on (QLoRA), as PEFT merges into a\n"
               "           dequantized base: every projection written dequantized (+ B·A), BF16 unless --dtype;\n"
               "           a 4-bit checkpoint (transformers load_in_4bit) is always merged this way\n");
}

/* every float weight of the written model is finite (W + scale*B*A can overflow a BF16 / F16 weight) */
static int check_merged(const char *dir, qa_err *e) {
    qa_safetensors st;
    QA_TRY(qa_st_open_dir(&st, dir, e));
    int rc = 0;
    for (size_t i = 0; i < st.n_tensors && !rc; i++) rc = qa_st_check_finite(&st, &st.tensors[i], e);
    qa_st_close(&st);
    if (rc) qa_err_prefix(e, "merge: the merged weights overflow (lower the adapter's scale or use --dtype f32)");
    return rc;
}

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL, *dt = "same", *quant_s = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { merge_usage(stdout); return 0; }
        if (i + 1 < argc && !strcmp(argv[i], "--model")) model = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--adapter")) adapter = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--out")) out = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--dtype")) dt = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--quant")) quant_s = argv[++i];
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
    if (qa_path_exists(out) && !(qa_is_dir(out) && qa_dir_is_empty(out))) {
        fprintf(stderr, "qalign: error: --out %s exists; merge writes a new directory (remove it or choose another "
                        "path)\n", out);
        return 1;
    }
    qa_model m;
    qa_quant quant;
    if (qa_quant_parse(quant_s, &quant, &e) || qa_model_load_quant(&m, model, NULL, quant, &e)) {
        qa_err_print(&e);
        return 1;
    }
    qa_lora l;
    char id[1200];
    if (qa_eval_load_adapter(&l, &m, adapter, id, sizeof id, &e)) { qa_err_print(&e); qa_model_free(&m); return 1; }
    int rc = 0;
    /* the merged model is written into a private staging directory, checked (every weight finite) and
     * renamed into place complete: a full disk or an interruption leaves no half-written --out */
    char *stage = qa_stage_dir_create(out, &e);
    if (!stage || qa_model_merge_lora(&m, &l, model, stage, odt, &e) || check_merged(stage, &e) ||
        qa_stage_dir_commit(stage, out, &e)) {
        qa_err_print(&e);
        rc = 1;
    } else {
        printf("wrote %s: %s merged with %s (scale %g)\n", out, model, id, (double)l.scale);
    }
    if (stage) qa_rm_tree(stage);   /* gone after the commit; removes what a failure left */
    free(stage);
    qa_lora_free(&l);
    qa_model_free(&m);
    return rc;
}
