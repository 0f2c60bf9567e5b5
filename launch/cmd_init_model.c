/* cmd_init_model.c — `qalign init-model`: a randomly initialized model directory in the exact Hugging
 * Face layout (config.json, model.safetensors or shards + index, generation_config.json, tokenizer files).
 * Weights are N(0, 0.02) (norm weights 1, biases 0) from a counter-based generator keyed by
 * (seed, tensor name, element index), so the output is identical on every machine and for every
 * shard layout. Tensors are generated and written chunk by chunk: memory stays flat for a 7B shape. */
#include "launch/commands.h"
#include "launch/args.h"
#include "io/hf_config.h"
#include "io/hf_json.h"
#include "io/safetensors.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_rng.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void init_usage(FILE *f) {
    fprintf(f,
            "usage: qalign init-model --arch llama|mistral|qwen2 --tokenizer TOKENIZER_JSON --seed S --out DIR [options]\n\n"
            "Writes a randomly initialized model in the Hugging Face layout: config.json, BF16 weights\n"
            "(model.safetensors, or model-0000i-of-0000n.safetensors + model.safetensors.index.json when larger\n"
            "than --max-shard-size), generation_config.json, tokenizer.json and tokenizer_config.json.\n"
            "vocab_size = the tokenizer's largest id + 1 (added tokens included).\n\n"
            "options (defaults: a tiny demo model):\n"
            "  --hidden N             hidden_size (64)\n"
            "  --layers N             num_hidden_layers (2)\n"
            "  --heads N              num_attention_heads (4)\n"
            "  --kv-heads N           num_key_value_heads (2)\n"
            "  --intermediate N       intermediate_size (172)\n"
            "  --head-dim N           head_dim (hidden / heads)\n"
            "  --rope-theta X         rope_theta (llama/mistral 10000, qwen2 1000000)\n"
            "  --sliding-window W     mistral: window on every layer; qwen2: use_sliding_window on all layers (none)\n"
            "  --vocab N              pad vocab_size to N (>= the tokenizer's size)\n"
            "  --tie | --no-tie       tie_word_embeddings (no)\n"
            "  --max-shard-size BYTES shard like save_pretrained (5000000000; 0 = one file)\n"
            "  --force                replace DIR if it exists\n"
            "  -h, --help             this help\n");
}

/* ---------------------------------------------------------------- deterministic N(0,1) */

static inline float unit_open(uint64_t h) { return ((float)(h >> 40) + 0.5f) * (1.0f / 16777216.0f); }
/* pair p of the stream `key`: Box-Muller over splitmix64 at counters 2p+1, 2p+2; element 2p gets the
 * cosine branch, 2p+1 the sine branch. float math: the values are rounded to bf16 anyway. */
static inline void normal_pair(uint64_t key, uint64_t p, float *z0, float *z1) {
    float u1 = unit_open(qa_mix64(key + (2 * p + 1) * QA_SPLITMIX_GAMMA)),
          u2 = unit_open(qa_mix64(key + (2 * p + 2) * QA_SPLITMIX_GAMMA));
    float r = sqrtf(-2.0f * logf(u1)), s, c;
    sincosf(6.2831853071795865f * u2, &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}

typedef struct gen_ctx {
    const qa_hf_tensor_spec *specs;     /* the entries of the current shard map 1:1 to these */
    uint64_t seed;
    double std;
} gen_ctx;

/* SIGINT / SIGTERM / SIGHUP while the weights are written: the next chunk stops, and the staged
 * directory is removed before exiting (a handler may only set a flag: this is the one static). */
static volatile sig_atomic_t g_stop_signal;
static void on_stop_signal(int sig) { g_stop_signal = sig; }

typedef struct gen_job {
    uint64_t key, first, count;
    uint16_t *dst;
    double std;
} gen_job;

static void *gen_run(void *arg) {
    gen_job *g = arg;
    float sd = (float)g->std, z0, z1;
    uint64_t j = g->first, end = g->first + g->count;
    uint16_t *o = g->dst;
    if (j < end && (j & 1)) { normal_pair(g->key, j >> 1, &z0, &z1); *o++ = qa_f32_to_bf16(sd * z1); j++; }
    for (; j + 1 < end; j += 2) {
        normal_pair(g->key, j >> 1, &z0, &z1);
        *o++ = qa_f32_to_bf16(sd * z0);
        *o++ = qa_f32_to_bf16(sd * z1);
    }
    if (j < end) { normal_pair(g->key, j >> 1, &z0, &z1); *o++ = qa_f32_to_bf16(sd * z0); }
    return NULL;
}

static int gen_fill(void *vctx, const qa_st_entry *ent, size_t index, uint64_t first, uint64_t count, void *dst,
                    qa_err *e) {
    gen_ctx *ctx = vctx;
    const qa_hf_tensor_spec *s = &ctx->specs[index];
    uint16_t *o = dst;
    if (g_stop_signal) return QA_ERR(e, "interrupted by signal %d", (int)g_stop_signal);
    if (ent->dtype != QA_DT_BF16) return QA_ERR(e, "init-model writes BF16 only");
    if (s->is_norm || s->is_bias) {
        uint16_t v = s->is_norm ? qa_f32_to_bf16(1.0f) : 0;
        for (uint64_t i = 0; i < count; i++) o[i] = v;
        return 0;
    }
    uint64_t key = qa_mix64(ctx->seed ^ qa_mix64(qa_fnv1a64(0, s->name, strlen(s->name))));
    enum { NT = 2 };
    gen_job jobs[NT];
    pthread_t th[NT];
    uint64_t per = (count / NT + 1) & ~1ull;  /* even split keeps Box-Muller pairs in one thread (not required) */
    int started = 0;
    for (int t = 0; t < NT; t++) {
        uint64_t a = per * t < count ? per * t : count, b = per * (t + 1) < count ? per * (t + 1) : count;
        jobs[t] = (gen_job){key, first + a, b - a, o + a, ctx->std};
        if (t + 1 < NT && count > 65536 && pthread_create(&th[t], NULL, gen_run, &jobs[t]) == 0) started |= 1 << t;
        else gen_run(&jobs[t]);
    }
    for (int t = 0; t < NT; t++) if (started & (1 << t)) pthread_join(th[t], NULL);
    return 0;
}

/* ---------------------------------------------------------------- tokenizer facts */

typedef struct tok_facts {
    int vocab;                          /* max id + 1 */
    int bos, eos, unk;                  /* ids or -1 */
    char bos_s[64], eos_s[64], unk_s[64];
} tok_facts;

static int read_tokenizer(const char *path, tok_facts *tf, qa_err *e) {
    memset(tf, 0, sizeof *tf);
    tf->bos = tf->eos = tf->unk = -1;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return QA_ERR(e, "%s: not valid JSON: %s (line %d)", path, jerr.text, jerr.line);
    int64_t mx = -1;
    json_t *model = json_object_get(root, "model"), *vocab = model ? json_object_get(model, "vocab") : NULL;
    const char *k;
    json_t *v;
    if (json_is_object(vocab)) {
        json_object_foreach(vocab, k, v) if (json_is_integer(v) && json_integer_value(v) > mx) mx = json_integer_value(v);
    } else if (json_is_array(vocab)) {
        mx = (int64_t)json_array_size(vocab) - 1;   /* Unigram: [[piece, score], ...], id = position */
    } else {
        json_decref(root);
        return QA_ERR(e, "%s: key \"model.vocab\" is missing; is this a tokenizer.json?", path);
    }
    json_t *added = json_object_get(root, "added_tokens");
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id"), *ct = json_object_get(v, "content");
        if (!json_is_integer(id) || !json_is_string(ct)) continue;
        int64_t x = json_integer_value(id);
        if (x > mx) mx = x;
        const char *s = json_string_value(ct);
        if (!strcmp(s, "<s>")) { tf->bos = (int)x; snprintf(tf->bos_s, sizeof tf->bos_s, "%s", s); }
        else if (!strcmp(s, "</s>")) { tf->eos = (int)x; snprintf(tf->eos_s, sizeof tf->eos_s, "%s", s); }
        else if (!strcmp(s, "<unk>")) { tf->unk = (int)x; snprintf(tf->unk_s, sizeof tf->unk_s, "%s", s); }
        else if (!strcmp(s, "<|endoftext|>") && tf->eos < 0) { tf->eos = (int)x; snprintf(tf->eos_s, sizeof tf->eos_s, "%s", s); }
    }
    json_decref(root);
    if (mx < 0 || mx >= INT32_MAX) return QA_ERR(e, "%s: no token ids found", path);
    tf->vocab = (int)(mx + 1);
    return 0;
}

/* ---------------------------------------------------------------- small JSON files */

static int write_json(const char *path, json_t *o, qa_err *e) { return qa_json_write_py(path, o, e); }

static json_t *str_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

static int write_side_files(const char *dir, const qa_hf_config *c, const tok_facts *tf, qa_err *e) {
    json_t *g = json_object();
    json_object_set_new(g, "_from_model_config", json_true());
    if (c->bos_token_id >= 0) json_object_set_new(g, "bos_token_id", json_integer(c->bos_token_id));
    if (c->eos_token_id >= 0) json_object_set_new(g, "eos_token_id", json_integer(c->eos_token_id));
    json_object_set_new(g, "transformers_version", json_string("4.46.0"));
    char *p = qa_path_join(dir, "generation_config.json");
    int rc = write_json(p, g, e);
    free(p);
    json_decref(g);
    if (rc) return -1;
    json_t *t = json_object();
    if (c->arch == QA_ARCH_QWEN2) {
        json_object_set_new(t, "bos_token", json_null());
        json_object_set_new(t, "eos_token", str_or_null(tf->eos_s));
        json_object_set_new(t, "pad_token", str_or_null(tf->eos_s));
        json_object_set_new(t, "unk_token", json_null());
        json_object_set_new(t, "errors", json_string("replace"));
        json_object_set_new(t, "tokenizer_class", json_string("Qwen2Tokenizer"));
    } else {
        json_object_set_new(t, "add_bos_token", json_true());
        json_object_set_new(t, "add_eos_token", json_false());
        json_object_set_new(t, "bos_token", str_or_null(tf->bos_s));
        json_object_set_new(t, "eos_token", str_or_null(tf->eos_s));
        json_object_set_new(t, "pad_token", json_null());
        json_object_set_new(t, "unk_token", str_or_null(tf->unk_s));
        json_object_set_new(t, "legacy", json_true());
        json_object_set_new(t, "tokenizer_class", json_string("LlamaTokenizer"));
    }
    json_object_set_new(t, "clean_up_tokenization_spaces", json_false());
    json_object_set_new(t, "model_max_length", json_integer(c->max_positions));
    p = qa_path_join(dir, "tokenizer_config.json");
    rc = write_json(p, t, e);
    free(p);
    json_decref(t);
    return rc;
}

/* ---------------------------------------------------------------- weights */

static int write_weights(const char *dir, const qa_hf_config *c, uint64_t seed, uint64_t max_shard, qa_err *e) {
    qa_hf_tensor_spec *specs;
    size_t n = qa_hf_tensor_specs(c, &specs);
    qa_st_entry *ents = qa_calloc(n, sizeof *ents);
    int *shard = qa_calloc(n, sizeof *shard);
    uint64_t total = 0, cur = 0;
    int nsh = 1;
    for (size_t i = 0; i < n; i++) {
        ents[i].name = specs[i].name;
        ents[i].dtype = QA_DT_BF16;
        ents[i].ndim = specs[i].ndim;
        ents[i].shape[0] = specs[i].shape[0];
        ents[i].shape[1] = specs[i].shape[1];
        uint64_t b = 2;
        for (int k = 0; k < specs[i].ndim; k++) b *= (uint64_t)specs[i].shape[k];
        /* huggingface_hub: a tensor that would overflow the current shard starts a new one */
        if (max_shard && cur > 0 && cur + b > max_shard) { nsh++; cur = 0; }
        shard[i] = nsh - 1;
        cur += b;
        total += b;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    gen_ctx ctx = {specs, seed, 0.02};
    int rc = 0;
    if (nsh == 1) {
        char *p = qa_path_join(dir, "model.safetensors");
        rc = qa_st_write_stream(p, ents, n, meta, gen_fill, &ctx, e);
        free(p);
    } else {
        json_t *wm = json_object();
        for (int s = 0; s < nsh && !rc; s++) {
            size_t a = 0;
            while (shard[a] != s) a++;
            size_t b = a;
            while (b < n && shard[b] == s) b++;
            char fname[64];
            snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, nsh);
            for (size_t i = a; i < b; i++) json_object_set_new(wm, specs[i].name, json_string(fname));
            gen_ctx sc = {specs + a, seed, 0.02};
            char *p = qa_path_join(dir, fname);
            rc = qa_st_write_stream(p, ents + a, b - a, meta, gen_fill, &sc, e);
            free(p);
        }
        if (!rc) {
            json_t *idx = json_object(), *md = json_object();
            json_object_set_new(md, "total_size", json_integer((json_int_t)total));
            json_object_set_new(idx, "metadata", md);
            json_object_set_new(idx, "weight_map", wm);
            char *p = qa_path_join(dir, "model.safetensors.index.json");
            rc = write_json(p, idx, e);
            free(p);
            json_decref(idx);
        } else {
            json_decref(wm);
        }
    }
    free(shard);
    free(ents);
    free(specs);
    return rc;
}

static int parse_i(const char *s, const char *opt, long lo, long hi, long *out) {
    long long v;
    if (qa_arg_int("init-model", opt, s, lo, hi, &v)) return -1;
    *out = (long)v;
    return 0;
}

/* A name init-model writes into its staging directory: the HF files and their atomic temporaries. */
static int is_init_file(const char *n) {
    static const char *const names[] = {"config.json", "generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json", "model.safetensors", "model.safetensors.index.json"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        size_t l = strlen(names[k]);
        if (!strncmp(n, names[k], l) && (!n[l] || !strncmp(n + l, ".tmp.", 5))) return 1;
    }
    int a, b, used = 0;
    return sscanf(n, "model-%5d-of-%5d.safetensors%n", &a, &b, &used) == 2 && used > 0 &&
           (!n[used] || !strncmp(n + used, ".tmp.", 5));
}

/* 1 when p is a staging directory of an interrupted init-model: a directory of this user, still 0700
 * (qa_stage_dir_create's mode until the commit), holding nothing but regular files init-model writes. */
static int is_stale_stage(const char *p) {
    struct stat st;
    if (lstat(p, &st) || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 07777) != 0700) return 0;
    DIR *d = opendir(p);
    if (!d) return 0;
    int ok = 1;
    struct dirent *de;
    while (ok && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *f = qa_path_join(p, de->d_name);
        struct stat fs;
        ok = is_init_file(de->d_name) && lstat(f, &fs) == 0 && S_ISREG(fs.st_mode);
        free(f);
    }
    closedir(d);
    return ok;
}

/* Staging directories "<out>.tmp.XXXXXX" (mkdtemp's six characters) that a killed init-model (SIGKILL, a
 * lost node) left behind. Only what is recognisably init-model's own is removed: "<out>.tmp.<12 hex>" is
 * the previous model moved aside by --force and is never touched, nor is anything holding other files. */
static void remove_stale_stages(const char *dst) {
    char *dcopy = qa_strdup(dst), *bcopy = qa_strdup(dst);
    const char *parent = dirname(dcopy), *base = basename(bcopy);
    size_t bl = strlen(base);
    DIR *d = opendir(parent);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        const char *n = de->d_name;
        if (strncmp(n, base, bl) || strncmp(n + bl, ".tmp.", 5) || strlen(n + bl + 5) != 6) continue;
        int alnum = 1;
        for (const char *c = n + bl + 5; *c; c++) alnum &= isalnum((unsigned char)*c) != 0;
        if (!alnum) continue;
        char *p = qa_path_join(parent, n);
        if (is_stale_stage(p)) {
            fprintf(stderr, "qalign init-model: removing %s, left by an interrupted init-model\n", p);
            qa_rm_tree(p);
        }
        free(p);
    }
    if (d) closedir(d);
    free(dcopy);
    free(bcopy);
}

/* Sizes past these are no model anyone trains with qalign (the largest vocabularies are ~256k ids) and
 * would only fill a disk: refused before anything is written. */
#define INIT_MAX_VOCAB (1L << 22)
#define INIT_MAX_BYTES (1ULL << 42)

int cmd_init_model(int argc, char **argv) {
    const char *arch_s = NULL, *tok = NULL, *out = NULL;
    long hidden = 64, layers = 2, heads = 4, kv = 2, inter = 172, hd = 0, window = 0, vocab = 0, tie = 0, force = 0;
    double theta = 0;
    long long seed = -1, max_shard = 5000000000LL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
#define OPT_I(name, var, lo, hi) else if (!strcmp(a, name) && v) { bad = parse_i(v, name, lo, hi, &var); i++; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { init_usage(stdout); return 0; }
        else if (!strcmp(a, "--arch") && v) { arch_s = v; i++; }
        else if (!strcmp(a, "--tokenizer") && v) { tok = v; i++; }
        else if (!strcmp(a, "--out") && v) { out = v; i++; }
        OPT_I("--hidden", hidden, 1, 1 << 20)
        OPT_I("--layers", layers, 1, QA_MAX_LAYERS)
        OPT_I("--heads", heads, 1, 1 << 16)
        OPT_I("--kv-heads", kv, 1, 1 << 16)
        OPT_I("--intermediate", inter, 1, 1 << 22)
        OPT_I("--head-dim", hd, 2, 1 << 16)
        OPT_I("--sliding-window", window, 1, INT32_MAX)
        OPT_I("--vocab", vocab, 1, INIT_MAX_VOCAB)
        else if (!strcmp(a, "--rope-theta") && v) {
            i++;
            bad = qa_arg_num("init-model", "--rope-theta", v, 0, 1e12, 1, &theta);
        } else if (!strcmp(a, "--seed") && v) {
            i++;
            bad = qa_arg_int("init-model", "--seed", v, 0, INT64_MAX, &seed);
        } else if (!strcmp(a, "--max-shard-size") && v) {
            i++;
            bad = qa_arg_int("init-model", "--max-shard-size", v, 0, 1LL << 50, &max_shard);
        } else if (!strcmp(a, "--tie")) tie = 1;
        else if (!strcmp(a, "--no-tie")) tie = 0;
        else if (!strcmp(a, "--force")) force = 1;
        else { fprintf(stderr, "qalign init-model: unknown or incomplete option '%s'\n\n", a); init_usage(stderr); return 2; }
        if (bad) return 2;
#undef OPT_I
    }
    if (!arch_s || !tok || !out || seed < 0) {
        fprintf(stderr, "qalign init-model: --arch, --tokenizer, --seed and --out are required\n\n");
        init_usage(stderr);
        return 2;
    }
    int arch = qa_arch_from_name(arch_s);
    if (arch < 0) { fprintf(stderr, "qalign init-model: --arch must be llama, mistral or qwen2, not '%s'\n", arch_s); return 2; }
    if (!hd && hidden % heads) { fprintf(stderr, "qalign init-model: --hidden %ld is not a multiple of --heads %ld; pass --head-dim\n", hidden, heads); return 2; }
    if (heads % kv) { fprintf(stderr, "qalign init-model: --kv-heads %ld must divide --heads %ld\n", kv, heads); return 2; }
    if ((hd ? hd : hidden / heads) % 2) { fprintf(stderr, "qalign init-model: head_dim must be even for RoPE\n"); return 2; }
    if (window && arch == QA_ARCH_LLAMA) { fprintf(stderr, "qalign init-model: llama has no sliding window\n"); return 2; }

    qa_err e = {0};
    tok_facts tf;
    if (read_tokenizer(tok, &tf, &e)) { qa_err_print(&e); return 1; }
    if (vocab && vocab < tf.vocab) {
        fprintf(stderr, "qalign init-model: --vocab %ld is smaller than the tokenizer's %d ids\n", vocab, tf.vocab);
        return 2;
    }
    qa_hf_config c;
    qa_hf_config_defaults(&c, (qa_arch)arch);
    c.hidden = (int)hidden; c.n_layers = (int)layers; c.n_heads = (int)heads; c.n_kv_heads = (int)kv;
    c.intermediate = (int)inter; c.head_dim = (int)hd; c.tie_embeddings = (int)tie;
    c.vocab = vocab ? (int)vocab : tf.vocab;
    if (theta > 0) c.rope_theta = theta;
    c.bos_token_id = arch == QA_ARCH_QWEN2 ? tf.eos : tf.bos;   /* Qwen: <|endoftext|> is both */
    c.eos_token_id = tf.eos;
    for (int l = 0; l < c.n_layers; l++) c.window[l] = (int)window;
    qa_hf_config_finish(&c);

    uint64_t bytes = (uint64_t)qa_hf_config_param_count(&c) * 2;
    if (bytes > INIT_MAX_BYTES) {
        fprintf(stderr, "qalign init-model: these sizes make %.3g GB of weights, more than the %.3g GB init-model writes\n",
                (double)bytes / 1e9, (double)INIT_MAX_BYTES / 1e9);
        return 2;
    }

    /* built in a private staging directory "<out>.tmp.XXXXXX", then moved into place */
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/') ol--;
    char *dst = qa_strndup(out, ol), *tmp = NULL, *old = NULL;
    int rc = 0;
    if (qa_path_exists(dst) && !force) {
        fprintf(stderr, "qalign: error: %s exists; remove it or pass --force\n", dst);
        rc = 1;
        goto done;
    }
    remove_stale_stages(dst);
    if (!(tmp = qa_stage_dir_create(dst, &e))) { qa_err_print(&e); rc = 1; goto done; }
    {   /* the disk must hold the weights: checked before writing gigabytes */
        struct statvfs fs;
        if (statvfs(tmp, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < bytes + (64u << 20)) {
            QA_ERR(&e, "%s: %.3g GB of weights do not fit the %.3g GB free there", dst, (double)bytes / 1e9,
                   (double)fs.f_bavail * (double)fs.f_frsize / 1e9);
            qa_err_print(&e);
            qa_rm_tree(tmp);
            rc = 1;
            goto done;
        }
    }
    struct sigaction sa, prev[3];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int k = 0; k < 3; k++) sigaction(sigs[k], &sa, &prev[k]);
    char *p = qa_path_join(tmp, "config.json");
    int r = qa_hf_config_write(&c, p, &e);
    free(p);
    if (!r) r = write_weights(tmp, &c, (uint64_t)seed, (uint64_t)max_shard, &e);
    if (!r) { p = qa_path_join(tmp, "tokenizer.json"); r = qa_copy_file(tok, p, &e); free(p); }
    if (!r) r = write_side_files(tmp, &c, &tf, &e);
    if (!r && qa_path_exists(dst)) {   /* --force: the old directory goes aside, is replaced, then removed */
        old = qa_tmp_name(dst);
        if (rename(dst, old) < 0) r = QA_ERRNO(&e, errno, "cannot move the existing %s aside", dst);
    }
    if (!r) {
        r = qa_stage_dir_commit(tmp, dst, &e);
        if (r && old) rename(old, dst);
    }
    if (!r && old) qa_rm_tree(old);
    for (int k = 0; k < 3; k++) sigaction(sigs[k], &prev[k], NULL);
    if (r) {
        qa_err_print(&e);
        qa_rm_tree(tmp);
        rc = 1;
        if (g_stop_signal) {   /* cleaned up: now die of the signal as the caller expects */
            int sig = (int)g_stop_signal;
            g_stop_signal = 0;
            signal(sig, SIG_DFL);
            raise(sig);
        }
        goto done;
    }
    printf("wrote %s: %s, %d layers, hidden %d, heads %d/%d, intermediate %d, vocab %d, %" PRId64 " parameters (BF16)\n",
           dst, qa_arch_class(c.arch), c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.intermediate, c.vocab,
           qa_hf_config_param_count(&c));
done:
    free(dst); free(tmp); free(old);
    return rc;
}
