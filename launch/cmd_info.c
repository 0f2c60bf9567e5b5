/* cmd_info.c — `qalign info MODEL_DIR`: what a checkpoint is, what it holds, and what it will cost. */
#include "launch/commands.h"
#include "launch/args.h"
#include "io/bnb4.h"
#include "io/hf_config.h"
#include "model/model.h"
#include "io/peft.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "train/train.h"
#include "common/qa_file.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void info_usage(FILE *f) {
    fprintf(f,
            "usage: qalign info MODEL_DIR [options]\n\n"
            "Reads MODEL_DIR/config.json and the safetensors weights (model.safetensors or a sharded\n"
            "model.safetensors.index.json), checks every tensor the config implies (names, shapes, dtypes),\n"
            "and prints the architecture, parameter count, storage and the memory a run allocates (the bytes\n"
            "of the CPU backend's allocations for those shapes, from the code that makes them).\n\n"
            "options:\n"
            "  --json                 machine-readable output\n"
            "  --eval-batch B         evaluation: rows of a batch (default 8)\n"
            "  --eval-seq T           evaluation: tokens per row, and positions of the prefix cache (default 2048)\n"
            "  --train-batch B        LoRA training estimate: micro-batch (default 4)\n"
            "  --train-seq T          LoRA training estimate: sequence length (default 512)\n"
            "  --lora-r R             LoRA rank for the estimate (default 8)\n"
            "  --lora-modules LIST    LoRA targets for the estimate (default q_proj,v_proj; or all)\n"
            "  --quant Q              none, nf4 or nf4-dq: estimates with the projections as NF4 (--quant at load;\n"
            "                         a 4-bit checkpoint is NF4 anyway)\n"
            "  -h, --help             this help\n");
}

static double gib(double b) { return b / (1024.0 * 1024.0 * 1024.0); }

/* one of the seven projection weights of a layer (what NF4 quantizes) */
static int is_projection(const char *name) {
    int li;
    char tail[128];
    if (sscanf(name, "model.layers.%d.%127s", &li, tail) != 2) return 0;
    for (int mo = 0; mo < QA_LORA_N_MODULES; mo++) {
        char want[128];
        snprintf(want, sizeof want, "%s.%s.weight", qa_lora_module_parent(mo), qa_lora_module_name(mo));
        if (!strcmp(tail, want)) return 1;
    }
    return 0;
}

static void mem_row(const char *label, size_t bytes, const char *note) {
    printf("  %-46s %9.3f GiB %14zu bytes%s%s\n", label, gib((double)bytes), bytes, *note ? "  " : "", note);
}

static int parse_pos(const char *s, const char *opt, int *out) {
    long long v;
    if (qa_arg_int("info", opt, s, 1, 1LL << 30, &v)) return -1;
    *out = (int)v;
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0, eb = 8, et = 2048, tb = 4, tt = 512, r = 8;
    const char *mods = "q_proj,v_proj", *quant_s = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { info_usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (i + 1 < argc && !strcmp(a, "--eval-batch")) { if (parse_pos(argv[++i], a, &eb)) return 2; }
        else if (i + 1 < argc && !strcmp(a, "--eval-seq")) { if (parse_pos(argv[++i], a, &et)) return 2; }
        else if (i + 1 < argc && !strcmp(a, "--train-batch")) { if (parse_pos(argv[++i], a, &tb)) return 2; }
        else if (i + 1 < argc && !strcmp(a, "--train-seq")) { if (parse_pos(argv[++i], a, &tt)) return 2; }
        else if (i + 1 < argc && !strcmp(a, "--lora-r")) { if (parse_pos(argv[++i], a, &r)) return 2; }
        else if (i + 1 < argc && !strcmp(a, "--lora-modules")) mods = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--quant")) quant_s = argv[++i];
        else if (a[0] == '-') { fprintf(stderr, "qalign info: unknown option '%s'\n\n", a); info_usage(stderr); return 2; }
        else if (!dir) dir = a;
        else { fprintf(stderr, "qalign info: more than one MODEL_DIR given\n"); return 2; }
    }
    if (!dir) { info_usage(stderr); return 2; }
    qa_err e = {0};
    unsigned mask;
    if (qa_lora_parse_modules(mods, &mask, &e)) { qa_err_print(&e); return 2; }
    qa_quant quant;
    if (qa_quant_parse(quant_s, &quant, &e)) { qa_err_print(&e); return 2; }

    qa_hf_config c;
    char *cfg_path = qa_path_join(dir, "config.json");
    int rc = qa_hf_config_load(&c, cfg_path, &e);
    free(cfg_path);
    if (rc) { qa_err_print(&e); return 1; }
    qa_safetensors st;
    if (qa_st_open_dir(&st, dir, &e)) { qa_err_print(&e); return 1; }
    if (qa_hf_check_tensors(&c, &st, &e)) { qa_err_print(&e); qa_st_close(&st); return 1; }

    int64_t p_cfg = qa_hf_config_param_count(&c), p_st = 0;
    uint64_t bytes = 0;
    /* storage per dtype */
    struct { char name[16]; uint64_t bytes; int64_t n; } dts[8];
    int ndt = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const qa_st_tensor *t = &st.tensors[i];
        p_st += t->numel;
        bytes += t->nbytes;
        int k = 0;
        while (k < ndt && strcmp(dts[k].name, t->dtype_name)) k++;
        if (k == ndt && ndt < 8) { snprintf(dts[ndt].name, sizeof dts[ndt].name, "%s", t->dtype_name); dts[ndt].bytes = 0; dts[ndt].n = 0; ndt++; }
        if (k < 8) { dts[k].bytes += t->nbytes; dts[k].n++; }
    }

    /* NF4: the projections as 4-bit codes + fp32 absmax per 64, everything else as stored */
    uint64_t other_bytes = 0;
    int stored_4bit = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const qa_st_tensor *t = &st.tensors[i];
        if (qa_bnb4_is_companion(&st, t->name)) { stored_4bit = 1; continue; }
        if (!is_projection(t->name)) other_bytes += t->nbytes;
    }
    const int64_t proj = qa_model_proj_params(&c);
    const double nf4_weights = (double)other_bytes + qa_model_proj_nf4_bytes(&c);
    const int use_nf4 = quant != QA_QUANT_NONE || stored_4bit;

    /* memory: what the allocations of model/ make for these shapes (CPU backend) */
    qa_mem_estimate me, mt;
    const int mq = quant != QA_QUANT_NONE ? (int)quant : QA_QUANT_NONE; /* a 4-bit checkpoint is NF4 anyway */
    const qa_mem_shape se = {.train = 0, .B = eb, .T = et, .max_out = c.vocab, .kv_cap = et, .quant = mq};
    const qa_mem_shape strn = {.train = 1, .B = tb, .T = tt, .max_logit_rows = qa_train_logit_rows(tb, tt),
                               .lora_modules = mask, .lora_r = r, .quant = mq};
    if (qa_model_memory_estimate(&c, &st, NULL, &se, &me, &e) ||
        qa_model_memory_estimate(&c, &st, NULL, &strn, &mt, &e)) {
        qa_err_print(&e);
        qa_st_close(&st);
        return 1;
    }
    const int64_t adapter_params = (int64_t)qa_lora_n_params(&c, mask, r);

    int win_first = -1, win = 0, win_n = 0;
    for (int l = 0; l < c.n_layers; l++)
        if (c.window[l]) { if (win_first < 0) win_first = l; win = c.window[l]; win_n++; }

    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "model_dir", json_string(dir));
        json_object_set_new(o, "model_type", json_string(c.model_type));
        json_object_set_new(o, "architecture", json_string(qa_arch_class(c.arch)));
        json_object_set_new(o, "layers", json_integer(c.n_layers));
        json_object_set_new(o, "hidden", json_integer(c.hidden));
        json_object_set_new(o, "heads", json_integer(c.n_heads));
        json_object_set_new(o, "kv_heads", json_integer(c.n_kv_heads));
        json_object_set_new(o, "head_dim", json_integer(c.head_dim));
        json_object_set_new(o, "intermediate", json_integer(c.intermediate));
        json_object_set_new(o, "vocab", json_integer(c.vocab));
        json_object_set_new(o, "rms_norm_eps", json_real(c.rms_eps));
        json_object_set_new(o, "rope_theta", json_real(c.rope_theta));
        json_t *w = json_array();
        for (int l = 0; l < c.n_layers; l++) json_array_append_new(w, json_integer(c.window[l]));
        json_object_set_new(o, "sliding_window", w);
        json_object_set_new(o, "tie_word_embeddings", json_boolean(c.tie_embeddings));
        json_object_set_new(o, "qkv_bias", json_boolean(c.qkv_bias));
        json_object_set_new(o, "params_config", json_integer(p_cfg));
        json_object_set_new(o, "params_tensors", json_integer(p_st));
        json_object_set_new(o, "n_tensors", json_integer((json_int_t)st.n_tensors));
        json_object_set_new(o, "n_files", json_integer(st.n_files));
        json_object_set_new(o, "weight_bytes", json_integer((json_int_t)bytes));
        json_t *sd = json_object();
        for (int k = 0; k < ndt; k++) json_object_set_new(sd, dts[k].name, json_integer((json_int_t)dts[k].bytes));
        json_object_set_new(o, "storage_bytes_by_dtype", sd);
        json_object_set_new(o, "stored_4bit", json_boolean(stored_4bit));
        json_object_set_new(o, "projection_params", json_integer(proj));
        json_object_set_new(o, "weight_bytes_nf4", json_real(nf4_weights));
        json_object_set_new(o, "estimates_with", json_string(use_nf4 ? "nf4" : "stored"));
        json_t *ev = json_object();
        json_object_set_new(ev, "batch", json_integer(eb));
        json_object_set_new(ev, "seq", json_integer(et));
        json_object_set_new(ev, "weights_bytes", json_integer((json_int_t)me.weights));
        json_object_set_new(ev, "kv_cache_bytes", json_integer((json_int_t)me.kv_cache));
        json_object_set_new(ev, "activation_bytes", json_integer((json_int_t)me.activations));
        json_object_set_new(ev, "total_bytes", json_integer((json_int_t)me.total));
        json_object_set_new(o, "memory_eval", ev);
        json_t *tr = json_object();
        json_object_set_new(tr, "micro_batch", json_integer(tb));
        json_object_set_new(tr, "seq", json_integer(tt));
        json_object_set_new(tr, "lora_r", json_integer(r));
        json_object_set_new(tr, "lora_module_mask", json_integer(mask));
        json_object_set_new(tr, "adapter_params", json_integer(adapter_params));
        json_object_set_new(tr, "weights_bytes", json_integer((json_int_t)mt.weights));
        json_object_set_new(tr, "lora_bytes", json_integer((json_int_t)mt.lora));
        json_object_set_new(tr, "optimizer_bytes", json_integer((json_int_t)mt.optimizer));
        json_object_set_new(tr, "activation_bytes", json_integer((json_int_t)mt.activations));
        json_object_set_new(tr, "total_bytes", json_integer((json_int_t)mt.total));
        json_object_set_new(o, "memory_lora_train", tr);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("model            %s\n", dir);
        printf("architecture     %s (model_type %s)\n", qa_arch_class(c.arch), c.model_type);
        printf("layers           %d\n", c.n_layers);
        printf("hidden           %d\n", c.hidden);
        printf("heads            %d query, %d key/value (head_dim %d, %d query heads per KV head)\n", c.n_heads,
               c.n_kv_heads, c.head_dim, c.n_heads / c.n_kv_heads);
        printf("intermediate     %d\n", c.intermediate);
        printf("vocab            %d\n", c.vocab);
        printf("rms_norm_eps     %g\n", c.rms_eps);
        printf("rope theta       %.1f\n", c.rope_theta);
        if (!win_n) printf("sliding window   none\n");
        else if (win_n == c.n_layers) printf("sliding window   %d on every layer\n", win);
        else printf("sliding window   %d on %d layers (from layer %d)\n", win, win_n, win_first);
        printf("tied embeddings  %s\n", c.tie_embeddings ? "yes (no lm_head.weight)" : "no");
        printf("biases           %s\n", c.qkv_bias ? (c.o_bias ? "q, k, v, o" : "q, k, v") : "none");
        printf("parameters       %" PRId64 " from config.json, %" PRId64 " in the tensors%s\n", p_cfg, p_st,
               p_cfg == p_st ? " (agree)" : stored_4bit ? " (a 4-bit checkpoint: two codes per U8, plus absmax and "
               "quant_state tensors)" : " (the difference is tensors HF ignores on load)");
        printf("storage          %zu tensors in %d file%s, %" PRIu64 " bytes (%.2f GiB):", st.n_tensors, st.n_files,
               st.n_files > 1 ? "s" : "", bytes, gib((double)bytes));
        for (int k = 0; k < ndt; k++) printf(" %s %" PRId64 " tensors %.2f GiB%s", dts[k].name, dts[k].n, gib((double)dts[k].bytes), k + 1 < ndt ? ";" : "");
        printf("\n");
        printf("as NF4           %.2f GiB in memory: %" PRId64 " projection parameters x 0.5625 bytes (4-bit codes + "
               "fp32 absmax per 64) + %.2f GiB as stored (embeddings, head, norms)%s\n", gib(nf4_weights), proj,
               gib((double)other_bytes), stored_4bit ? "; stored 4-bit (bitsandbytes nf4)" : "; --quant nf4");
        printf("\nmemory, evaluation at batch %d x seq %d:  %.2f GiB\n", eb, et, gib((double)me.total));
        mem_row(use_nf4 ? "weights as the CPU backend holds them (NF4 projections)" : "weights as the CPU backend holds them",
                me.weights, "");
        char lab[96];
        snprintf(lab, sizeof lab, "prefix KV cache (%d positions)", et);
        mem_row(lab, me.kv_cache, "f32, every layer's keys and values");
        mem_row("inference workspace", me.activations, "f32, one layer at a time, full-vocabulary logits per row");
        printf("memory, LoRA training at micro-batch %d x seq %d, r=%d on %s:  %.2f GiB\n", tb, tt, r, mods,
               gib((double)mt.total));
        mem_row(use_nf4 ? "frozen weights (NF4 projections: QLoRA)" : "frozen weights as the CPU backend holds them",
                mt.weights, "");
        snprintf(lab, sizeof lab, "adapter: %" PRId64 " params", adapter_params);
        mem_row(lab, mt.lora, "f32 weights and gradients");
        mem_row("AdamW m and v", mt.optimizer, "f32");
        snprintf(lab, sizeof lab, "activation workspace: %d logit rows", qa_train_logit_rows(tb, tt));
        mem_row(lab, mt.activations, "f32, every layer's saved tensors, gradient scratch");
        printf("the bytes model/ allocates for these shapes (weight views, LoRA blocks, workspace carves);\n"
               "  not counted: host bookkeeping, the gradient tree of several micro-batches, communication\n"
               "  buffers, allocator slack.\n");
    }
    qa_st_close(&st);
    return 0;
}
