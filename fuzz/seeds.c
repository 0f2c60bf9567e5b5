/* seeds.c — the seed corpora of the fuzz targets, generated from real inputs (nothing third-party is
 * committed): the shared fixtures (model and adapter safetensors, config.json), the tokenizers and the
 * paper data under assets/, the YAML configs of configs/, and a checkpoint and an activation dump written
 * by qalign's own writers (as h5prog programs, fuzz/h5prog.h).
 *   usage: fuzz_seeds OUT_DIR ASSETS_DIR FIXTURES_HF_DIR CONFIGS_DIR
 * Writes OUT_DIR/<target>/seed_* for every target; a missing source is skipped with a note. */
#include "fuzz_util.h"
#include "h5prog.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/actdump.h"
#include "io/checkpoint.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *g_out;
static int g_count;

static void put_seed(const char *target, const char *tag, const void *d, size_t n) {
    char dir[1024], p[1200];
    snprintf(dir, sizeof dir, "%s/%s", g_out, target);
    qa_err e = {0};
    qa_mkdir_p(dir, &e);
    snprintf(p, sizeof p, "%s/seed_%s", dir, tag);
    if (qa_write_file_atomic(p, d, n, &e)) fprintf(stderr, "fuzz_seeds: %s\n", e.msg);
    else g_count++;
}

static int slurp(const char *path, char **buf, size_t *n) {
    qa_err e = {0};
    if (qa_read_file(path, 0, buf, n, &e)) { fprintf(stderr, "fuzz_seeds: skipped: %s\n", e.msg); return -1; }
    return 0;
}

static void seed_file(const char *target, const char *tag, const char *path, size_t max) {
    char *b;
    size_t n;
    if (slurp(path, &b, &n)) return;
    if (!max || n <= max) put_seed(target, tag, b, n);
    free(b);
}

/* ---- fixtures: safetensors, config.json, adapters ------------------------------------------------------ */
static void fixtures(const char *root) {
    DIR *d = opendir(root);
    if (!d) { fprintf(stderr, "fuzz_seeds: no fixtures at %s\n", root); return; }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[1200], tag[300];
        snprintf(p, sizeof p, "%s/%s/model/model.safetensors", root, de->d_name);
        snprintf(tag, sizeof tag, "%s_model", de->d_name);
        seed_file("safetensors", tag, p, 4 << 20);
        snprintf(p, sizeof p, "%s/%s/model/config.json", root, de->d_name);
        seed_file("hf_config", de->d_name, p, 0);
        static const char *const ads[] = {"adapter_qv_init", "adapter_all_init", "adapter_qv_after2steps",
                                          "adapter_all_after2steps"};
        for (int k = 0; k < 4; k++) {
            char cj[1200], sf[1200];
            snprintf(cj, sizeof cj, "%s/%s/%s/adapter_config.json", root, de->d_name, ads[k]);
            snprintf(sf, sizeof sf, "%s/%s/%s/adapter_model.safetensors", root, de->d_name, ads[k]);
            char *a, *b;
            size_t na, nb;
            if (slurp(cj, &a, &na)) continue;
            if (slurp(sf, &b, &nb)) { free(a); continue; }
            size_t n = 2 + na + nb;
            uint8_t *s = qa_malloc(n);
            s[0] = (uint8_t)na;
            s[1] = (uint8_t)(na >> 8);
            memcpy(s + 2, a, na);
            memcpy(s + 2 + na, b, nb);
            snprintf(tag, sizeof tag, "%s_%s", de->d_name, ads[k]);
            put_seed("peft", tag, s, n);
            snprintf(tag, sizeof tag, "%s_%s", de->d_name, ads[k]);
            put_seed("safetensors", tag, b, nb);
            free(s); free(a); free(b);
        }
    }
    closedir(d);
}

/* ---- tokenizers: the real ones, trimmed to their first ids (the parser's structure stays) -------------- */
static void tokenizer(const char *path, const char *tag, int keep) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) { fprintf(stderr, "fuzz_seeds: skipped %s: %s\n", path, je.text); return; }
    json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab"),
           *merges = json_object_get(model, "merges");
    if (json_is_object(vocab)) {
        json_t *nv = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(vocab, k, v)
            if (json_integer_value(v) < keep) json_object_set(nv, k, v);
        json_t *nm = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(merges, i, m) {
            char a[256], b[256];
            if (json_is_string(m)) {
                const char *s = json_string_value(m), *sp = strchr(s, ' ');
                if (!sp || (size_t)(sp - s) >= sizeof a || strlen(sp + 1) >= sizeof b) continue;
                memcpy(a, s, (size_t)(sp - s));
                a[sp - s] = 0;
                snprintf(b, sizeof b, "%s", sp + 1);
            } else if (json_is_array(m) && json_array_size(m) == 2) {
                snprintf(a, sizeof a, "%s", json_string_value(json_array_get(m, 0)) ?: "");
                snprintf(b, sizeof b, "%s", json_string_value(json_array_get(m, 1)) ?: "");
            } else continue;
            char ab[512];
            snprintf(ab, sizeof ab, "%s%s", a, b);
            if (json_object_get(nv, a) && json_object_get(nv, b) && json_object_get(nv, ab)) json_array_append(nm, m);
        }
        json_object_set_new(model, "vocab", nv);
        json_object_set_new(model, "merges", nm);
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (json_is_array(added) && json_array_size(added) > 8) {
        json_t *na = json_array();
        for (size_t i = 0; i < 8; i++) json_array_append(na, json_array_get(added, i));
        json_object_set_new(root, "added_tokens", na);
    }
    char *s = json_dumps(root, JSON_COMPACT);
    put_seed("tokenizer", tag, s, strlen(s));
    free(s);
    json_decref(root);
}

static void tokenizers(const char *assets) {
    static const char *const names[] = {"qwen1_5-qwen2", "mistral-7b-v0.1", "llama2.reconstructed", "qwen3"};
    for (int k = 0; k < 4; k++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/tokenizers/%s.tokenizer.json", assets, names[k]);
        tokenizer(p, names[k], 400);
    }
}

/* ---- the paper data: the first records of real files; pre-tokenized records from them ----------------- */
static void dataset_file(const char *path, const char *tag) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!json_is_array(root)) { fprintf(stderr, "fuzz_seeds: skipped %s\n", path); json_decref(root); return; }
    json_t *few = json_array(), *tok = json_array();
    for (size_t i = 0; i < json_array_size(root) && i < 3; i++) {
        json_t *r = json_array_get(root, i);
        json_array_append(few, r);
        const char *in = json_string_value(json_object_get(r, "input")), *an = json_string_value(json_object_get(r, "answer"));
        if (!in || !an) continue;
        json_t *ids = json_array(), *lab = json_array();
        for (const unsigned char *p = (const unsigned char *)in; *p && json_array_size(ids) < 24; p++) {
            json_array_append_new(ids, json_integer(*p));
            json_array_append_new(lab, json_integer(-100));
        }
        for (const unsigned char *p = (const unsigned char *)an; *p && json_array_size(ids) < 40; p++) {
            json_array_append_new(ids, json_integer(*p));
            json_array_append_new(lab, json_integer(*p));
        }
        json_t *o = json_object();
        json_object_set_new(o, "input_ids", ids);
        json_object_set_new(o, "labels", lab);
        json_array_append_new(tok, o);
    }
    for (int k = 0; k < 2; k++) {
        char *s = json_dumps(k ? tok : few, JSON_COMPACT);
        size_t n = strlen(s);
        char *b = qa_malloc(n + 1);
        b[0] = k ? 0x07 : 0x02; /* option byte (fuzz_dataset.c) */
        memcpy(b + 1, s, n);
        char t[300];
        snprintf(t, sizeof t, "%s_%s", tag, k ? "tokens" : "text");
        put_seed("dataset", t, b, n + 1);
        free(b);
        free(s);
    }
    json_decref(few);
    json_decref(tok);
    json_decref(root);
}

static void datasets(const char *assets) {
    static const char *const tasks[] = {"ap_emotion", "snli", "paws"};
    for (int k = 0; k < 3; k++) {
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/paper-data/%s", assets, tasks[k]);
        DIR *d = opendir(dir);
        if (!d) { fprintf(stderr, "fuzz_seeds: no %s\n", dir); continue; }
        struct dirent *de;
        int taken = 0;
        while ((de = readdir(d)) && taken < 2) {
            size_t l = strlen(de->d_name);
            if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            struct stat st;
            if (stat(p, &st) || !S_ISREG(st.st_mode)) continue;
            dataset_file(p, de->d_name);
            taken++;
        }
        closedir(d);
    }
}

/* ---- YAML configs -------------------------------------------------------------------------------------- */
static void yamls(const char *configs) {
    DIR *d = opendir(configs);
    if (!d) { fprintf(stderr, "fuzz_seeds: no configs at %s\n", configs); return; }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".yaml")) continue;
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", configs, de->d_name);
        seed_file("yaml_config", de->d_name, p, 0);
    }
    closedir(d);
}

/* ---- a checkpoint and a dump written by qalign, as programs ---------------------------------------------- */
static void h5_seed(const char *target, const char *tag, const char *path) {
    uint8_t *prog = NULL;
    size_t n = 0;
    if (h5prog_emit(path, &prog, &n)) { fprintf(stderr, "fuzz_seeds: cannot read %s\n", path); return; }
    for (int side = 0; side < 2; side++) {
        uint8_t *s = qa_malloc(n + 1);
        s[0] = (uint8_t)side;
        memcpy(s + 1, prog, n);
        char t[300];
        snprintf(t, sizeof t, "%s_%s", tag, side ? "sidecar" : "bare");
        put_seed(target, t, s, n + 1);
        free(s);
    }
    free(prog);
}

static void checkpoint(void) {
    const char *run = fz_dir();
    enum { R = 2, D = 8 };
    static float w[4][R * D], m[4][R * D], v[4][R * D];
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < R * D; k++) { w[i][k] = 0.01f * (float)(k - i); m[i][k] = 1e-3f * (float)k; v[i][k] = 1e-6f; }
    static const char *const names[4] = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"};
    qa_ckpt_tensor lt[4];
    float *ms[4], *vs[4];
    for (int i = 0; i < 4; i++) {
        int isB = i & 1;
        lt[i] = (qa_ckpt_tensor){names[i], QA_CKPT_F32, 2, {isB ? D : R, isB ? R : D}, w[i],
                                 isB ? "[out_features, r]" : "[r, in_features]"};
        ms[i] = m[i];
        vs[i] = v[i];
    }
    uint64_t seeds[2] = {42, 42};
    double loss[3] = {2.5, 2.25, 2.0};
    qa_ckpt_tensor rng = {"seeds", QA_CKPT_U64, 1, {2}, seeds, NULL}, met = {"loss", QA_CKPT_F64, 1, {3}, loss, NULL};
    qa_ckpt_state st = {lt, 4, ms, vs, &rng, 1, NULL, 0, &met, 1};
    const char *tm[2] = {"q_proj", "v_proj"};
    qa_ckpt_meta meta = {.step = 3, .optim_step = 3, .epoch = 0, .cursor = 12, .tokens_seen = 480, .world_size = 1,
                         .lora_r = R, .lora_alpha = 16, .target_modules = tm, .n_target_modules = 2,
                         .base_model = "model", .base_model_id = "fnv1a64:0", .config_yaml = "train:\n  lr: 5e-05\n",
                         .qalign_version = "seed", .shuffle_seed = 42};
    char path[1200];
    qa_err e = {0};
    if (qa_ckpt_save(run, &meta, &st, NULL, path, sizeof path, &e)) { fprintf(stderr, "fuzz_seeds: %s\n", e.msg); return; }
    h5_seed("checkpoint", "qalign_step3", path);
}

static void dump(void) {
    enum { L = 2, Dm = 4, N = 4 };
    qa_actdump_item it[N];
    static const char *const langs_of[N] = {"en", "en", "de", "de"};
    for (int i = 0; i < N; i++) it[i] = (qa_actdump_item){"emotion", langs_of[i], "positive", i % 2, i % 2, 9 + i};
    const char *labels[2] = {"negative", "positive"}, *langs[2] = {"en", "de"},
               *target[4] = {"negative", "positive", "negativ", "positiv"};
    qa_actdump_labels lb = {"emotion", 2, labels, labels, 2, langs, target};
    qa_actdump_info info = {"model", "", "qwen2", "seed", "tok", "target-labels", "corrected", "emotion", "en,de", L, Dm,
                            100, N, 1, 1};
    float blk[N * (L + 1) * Dm];
    for (int i = 0; i < N * (L + 1) * Dm; i++) blk[i] = 0.125f * (float)(i % 11) - 0.5f;
    char path[1200];
    snprintf(path, sizeof path, "%s/seed_dump.h5", fz_dir());
    qa_actdump_writer *w = NULL;
    qa_err e = {0};
    if (qa_actdump_create(&w, path, &info, it, &lb, 1, &e) || qa_actdump_write_rows(w, 0, N, blk, blk, &e) ||
        qa_actdump_finish(w, &e)) {
        fprintf(stderr, "fuzz_seeds: %s\n", e.msg);
        return;
    }
    h5_seed("actdump", "qalign_dump", path);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: fuzz_seeds OUT_DIR ASSETS_DIR FIXTURES_HF_DIR CONFIGS_DIR\n");
        return 2;
    }
    g_out = argv[1];
    fixtures(argv[3]);
    tokenizers(argv[2]);
    datasets(argv[2]);
    yamls(argv[4]);
    checkpoint();
    dump();
    printf("fuzz_seeds: %d seeds in %s\n", g_count, g_out);
    return g_count ? 0 : 1;
}
