/* test_io_bad.c — one malformed checkpoint per case, built in a temporary directory. Each must fail
 * in the library and in `qalign info` with ONE line naming the file and the tensor/key, a non-zero
 * exit status and no crash.   usage: test_io_bad CASE QALIGN_BINARY */
#include "testutil.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_tmp[512];
static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static char *P(const char *name) { return qa_path_join(g_tmp, name); }

static void tiny_config(qa_hf_config *c, qa_arch arch) {
    qa_hf_config_defaults(c, arch);
    c->hidden = 16; c->n_layers = 2; c->n_heads = 2; c->n_kv_heads = 1; c->intermediate = 24; c->vocab = 32;
    c->bos_token_id = 1; c->eos_token_id = 2;
    qa_hf_config_finish(c);
}

/* A valid model directory: config.json + model.safetensors (BF16). skip: a tensor to leave out;
 * bad_shape: a tensor whose shape is transposed+1. */
static void write_model(const qa_hf_config *c, const char *skip, const char *bad_shape, const char *extra) {
    qa_err e = {0};
    char *cp = P("config.json");
    if (qa_hf_config_write(c, cp, &e)) { printf("setup: %s\n", e.msg); exit(1); }
    free(cp);
    qa_hf_tensor_spec *s;
    size_t n = qa_hf_tensor_specs(c, &s), k = 0;
    qa_st_entry *en = qa_calloc(n + 1, sizeof *en);
    uint16_t *buf = qa_calloc(1 << 16, 2);
    for (size_t i = 0; i < (1 << 16); i++) buf[i] = qa_f32_to_bf16(0.01f * (float)(i % 17));
    for (size_t i = 0; i < n; i++) {
        if (skip && !strcmp(s[i].name, skip)) continue;
        en[k] = (qa_st_entry){.name = s[i].name, .dtype = QA_DT_BF16, .ndim = s[i].ndim, .data = buf};
        en[k].shape[0] = s[i].shape[0];
        en[k].shape[1] = s[i].shape[1];
        if (bad_shape && !strcmp(s[i].name, bad_shape)) { en[k].shape[0] = s[i].shape[1]; en[k].shape[1] = s[i].shape[0] - 1; }
        k++;
    }
    if (extra) { en[k] = (qa_st_entry){.name = extra, .dtype = QA_DT_BF16, .ndim = 1, .shape = {4}, .data = buf}; k++; }
    static const char *const meta[] = {"format", "pt", NULL};
    char *mp = P("model.safetensors");
    if (qa_st_write(mp, en, k, meta, &e)) { printf("setup: %s\n", e.msg); exit(1); }
    free(mp); free(en); free(buf); free(s);
}

/* A raw model.safetensors: length + header text (padded to 8) + data_len zero bytes. */
static void write_raw(const char *header, size_t data_len, int64_t len_override) {
    size_t hl = strlen(header), pad = (8 - hl % 8) % 8;
    size_t total = 8 + hl + pad + data_len;
    uint8_t *b = qa_calloc(total, 1);
    uint64_t n = len_override >= 0 ? (uint64_t)len_override : hl + pad;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, ' ', pad);
    qa_err e = {0};
    char *mp = P("model.safetensors");
    if (qa_write_file_atomic(mp, b, total, &e)) { printf("setup: %s\n", e.msg); exit(1); }
    free(mp); free(b);
}

static void truncate_file(const char *name, size_t keep) {
    char *p = P(name);
    if (truncate(p, (off_t)keep) != 0) { perror("truncate"); exit(1); }
    free(p);
}
static size_t file_size(const char *name) {
    char *p = P(name), *b;
    size_t n = 0;
    qa_err e = {0};
    if (qa_read_file(p, 0, &b, &n, &e) == 0) free(b);
    free(p);
    return n;
}
static void set_config_text(const char *from, const char *to) {
    char *p = P("config.json"), *b;
    size_t n;
    qa_err e = {0};
    if (qa_read_file(p, 0, &b, &n, &e)) { printf("setup: %s\n", e.msg); exit(1); }
    char *at = strstr(b, from);
    if (!at) { printf("setup: '%s' not in config.json\n", from); exit(1); }
    size_t lf = strlen(from), lt = strlen(to);
    char *o = qa_malloc(n - lf + lt + 1);
    memcpy(o, b, (size_t)(at - b));
    memcpy(o + (at - b), to, lt);
    strcpy(o + (at - b) + lt, at + lf);
    qa_write_file_atomic(p, o, strlen(o), &e);
    free(o); free(b); free(p);
}

/* split the valid model into 2 shards + index; missing: 1 to drop shard 2 from disk */
static void shard_model(int break_map) {
    qa_err e = {0};
    qa_safetensors st;
    char *mp = P("model.safetensors");
    if (qa_st_open(&st, mp, &e)) { printf("setup: %s\n", e.msg); exit(1); }
    qa_st_entry *en = qa_calloc(st.n_tensors, sizeof *en);
    for (size_t i = 0; i < st.n_tensors; i++) {
        en[i] = (qa_st_entry){.name = st.tensors[i].name, .dtype = st.tensors[i].dtype, .ndim = st.tensors[i].ndim,
                              .data = st.tensors[i].data};
        memcpy(en[i].shape, st.tensors[i].shape, sizeof en[i].shape);
    }
    size_t h = st.n_tensors / 2;
    char *s1 = P("model-00001-of-00002.safetensors"), *s2 = P("model-00002-of-00002.safetensors");
    qa_st_write(s1, en, h, NULL, &e);
    qa_st_write(s2, en + h, st.n_tensors - h, NULL, &e);
    /* the index */
    size_t cap = 64 + st.n_tensors * 160, k = 0;
    char *ix = qa_malloc(cap);
    k += (size_t)snprintf(ix + k, cap - k, "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
    for (size_t i = 0; i < st.n_tensors; i++) {
        const char *f = i < h ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
        if (break_map == 1 && i == st.n_tensors - 1) f = "model-00003-of-00003.safetensors";
        if (break_map == 2 && i == 0) f = "model-00002-of-00002.safetensors";
        k += (size_t)snprintf(ix + k, cap - k, "%s\"%s\":\"%s\"", i ? "," : "", st.tensors[i].name, f);
    }
    snprintf(ix + k, cap - k, "}}");
    char *ip = P("model.safetensors.index.json");
    qa_write_file_atomic(ip, ix, strlen(ix), &e);
    qa_st_close(&st);
    unlink(mp);
    free(en); free(s1); free(s2); free(ix); free(ip); free(mp);
}

/* expected substrings of the one-line error (NULL-terminated) */
static const char *want[6];

static void expect(const char *a, const char *b, const char *c) { want[0] = a; want[1] = b; want[2] = c; want[3] = NULL; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: test_io_bad CASE QALIGN\n"); return 2; }
    const char *cs = argv[1], *qalign = argv[2];
    snprintf(g_tmp, sizeof g_tmp, "%s/qa_bad_%s.XXXXXX", qt_env_or("TMPDIR", "/tmp"), cs);
    if (!mkdtemp(g_tmp)) { perror("mkdtemp"); return 1; }
    qa_hf_config c;
    tiny_config(&c, QA_ARCH_LLAMA);
    const char *F32x2 = "\"dtype\":\"F32\",\"shape\":[2]";
    char hdr[1024];
    if (!strcmp(cs, "truncated")) {
        write_model(&c, NULL, NULL, NULL);
        /* the tensor stored last (reference order: all BF16, by name) */
        truncate_file("model.safetensors", file_size("model.safetensors") - 10);
        expect("model.safetensors", "model.norm.weight", "truncated");
    } else if (!strcmp(cs, "truncated_header")) {
        write_model(&c, NULL, NULL, NULL);
        truncate_file("model.safetensors", 5);
        expect("model.safetensors", "too short", NULL);
    } else if (!strcmp(cs, "header_past_eof")) {
        snprintf(hdr, sizeof hdr, "{\"a\":{%s,\"data_offsets\":[0,8]}}", F32x2);
        write_raw(hdr, 8, 4096);
        expect("model.safetensors", "header length 4096", "past the end");
    } else if (!strcmp(cs, "header_too_big")) {
        snprintf(hdr, sizeof hdr, "{\"a\":{%s,\"data_offsets\":[0,8]}}", F32x2);
        write_raw(hdr, 8, 100000008);
        expect("model.safetensors", "100000008", "limit");
    } else if (!strcmp(cs, "bad_json")) {
        write_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, -1);
        expect("model.safetensors", "not valid UTF-8 JSON", NULL);
    } else if (!strcmp(cs, "bad_utf8")) {
        write_raw("{\"a\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1);
        expect("model.safetensors", "not valid UTF-8 JSON", NULL);
    } else if (!strcmp(cs, "not_object")) {
        write_raw("[1,2,3]", 0, -1);
        expect("model.safetensors", "not a JSON object", NULL);
    } else if (!strcmp(cs, "duplicate_name")) {
        snprintf(hdr, sizeof hdr, "{\"dup_tensor\":{%s,\"data_offsets\":[0,8]},\"dup_tensor\":{%s,\"data_offsets\":[8,16]}}",
                 F32x2, F32x2);
        write_raw(hdr, 16, -1);
        expect("model.safetensors", "duplicate", "dup_tensor");
    } else if (!strcmp(cs, "overlap")) {
        snprintf(hdr, sizeof hdr, "{\"first\":{%s,\"data_offsets\":[0,8]},\"second\":{%s,\"data_offsets\":[4,12]}}", F32x2, F32x2);
        write_raw(hdr, 12, -1);
        expect("model.safetensors", "second", "overlapping");
    } else if (!strcmp(cs, "out_of_file")) {
        snprintf(hdr, sizeof hdr, "{\"first\":{%s,\"data_offsets\":[0,8]},\"second\":{\"dtype\":\"F32\",\"shape\":[4],"
                 "\"data_offsets\":[8,24]}}", F32x2);
        write_raw(hdr, 16, -1);
        expect("model.safetensors", "second", "past the end");
    } else if (!strcmp(cs, "gap")) {
        snprintf(hdr, sizeof hdr, "{\"first\":{%s,\"data_offsets\":[0,8]},\"second\":{%s,\"data_offsets\":[12,20]}}", F32x2, F32x2);
        write_raw(hdr, 20, -1);
        expect("model.safetensors", "second", "gap");
    } else if (!strcmp(cs, "gap_at_start")) {
        snprintf(hdr, sizeof hdr, "{\"first\":{%s,\"data_offsets\":[4,12]}}", F32x2);
        write_raw(hdr, 12, -1);
        expect("model.safetensors", "first", "gap");
    } else if (!strcmp(cs, "trailing_bytes")) {
        snprintf(hdr, sizeof hdr, "{\"first\":{%s,\"data_offsets\":[0,8]}}", F32x2);
        write_raw(hdr, 12, -1);
        expect("model.safetensors", "trailing", NULL);
    } else if (!strcmp(cs, "dtype_shape_bytes")) {
        snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}");
        write_raw(hdr, 8, -1);
        expect("model.safetensors", "'w'", "needs 12 bytes");
    } else if (!strcmp(cs, "shape_overflow")) {
        snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}");
        write_raw(hdr, 8, -1);
        expect("model.safetensors", "'w'", "overflow");
    } else if (!strcmp(cs, "negative_shape")) {
        snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}");
        write_raw(hdr, 8, -1);
        expect("model.safetensors", "'w'", "shape[0]");
    } else if (!strcmp(cs, "unknown_dtype")) {
        snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}");
        write_raw(hdr, 8, -1);
        expect("model.safetensors", "'w'", "F12");
    } else if (!strcmp(cs, "config_shape")) {
        write_model(&c, NULL, "model.layers.1.self_attn.q_proj.weight", NULL);
        expect("model.safetensors", "model.layers.1.self_attn.q_proj.weight", "config.json");
    } else if (!strcmp(cs, "config_dtype")) {
        /* an F64 norm weight: a valid file, not a usable model */
        write_model(&c, "model.norm.weight", NULL, NULL);
        qa_safetensors st;
        qa_err e = {0};
        char *mp = P("model.safetensors");
        qa_st_open(&st, mp, &e);
        qa_st_entry *en = qa_calloc(st.n_tensors + 1, sizeof *en);
        for (size_t i = 0; i < st.n_tensors; i++) {
            en[i] = (qa_st_entry){.name = st.tensors[i].name, .dtype = st.tensors[i].dtype, .ndim = st.tensors[i].ndim,
                                  .data = st.tensors[i].data};
            memcpy(en[i].shape, st.tensors[i].shape, sizeof en[i].shape);
        }
        static double ones[16];
        en[st.n_tensors] = (qa_st_entry){.name = "model.norm.weight", .dtype = QA_DT_I64, .ndim = 1, .shape = {16}, .data = ones};
        char *tp = P("t.safetensors");
        qa_st_write(tp, en, st.n_tensors + 1, NULL, &e);
        qa_st_close(&st);
        rename(tp, mp);
        free(tp); free(mp); free(en);
        expect("model.safetensors", "model.norm.weight", "I64");
    } else if (!strcmp(cs, "missing_tensor")) {
        write_model(&c, "model.layers.0.mlp.down_proj.weight", NULL, NULL);
        expect("model.safetensors", "model.layers.0.mlp.down_proj.weight", "missing");
    } else if (!strcmp(cs, "unexpected_tensor")) {
        write_model(&c, NULL, NULL, "model.layers.0.self_attn.q_norm.weight");
        expect("model.safetensors", "model.layers.0.self_attn.q_norm.weight", "unexpected");
    } else if (!strcmp(cs, "tied_missing_lm_head")) {
        /* config says untied, the file is a tied model */
        write_model(&c, "lm_head.weight", NULL, NULL);
        expect("model.safetensors", "lm_head.weight", "missing");
    } else if (!strcmp(cs, "unknown_model_type")) {
        write_model(&c, NULL, NULL, NULL);
        set_config_text("\"model_type\": \"llama\"", "\"model_type\": \"gpt_neox\"");
        expect("config.json", "model_type", "gpt_neox");
    } else if (!strcmp(cs, "unknown_rope")) {
        write_model(&c, NULL, NULL, NULL);
        set_config_text("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}");
        expect("config.json", "rope_scaling.type", "dynamic");
    } else if (!strcmp(cs, "unknown_rope_new")) {
        write_model(&c, NULL, NULL, NULL);
        set_config_text("\"rope_scaling\": null", "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0}");
        expect("config.json", "rope_parameters.rope_type", "yarn");
    } else if (!strcmp(cs, "hidden_act")) {
        write_model(&c, NULL, NULL, NULL);
        set_config_text("\"silu\"", "\"gelu_new\"");
        expect("config.json", "hidden_act", "gelu_new");
    } else if (!strcmp(cs, "missing_key")) {
        write_model(&c, NULL, NULL, NULL);
        set_config_text("\"intermediate_size\"", "\"intermediate_sz\"");
        expect("config.json", "intermediate_size", "required");
    } else if (!strcmp(cs, "missing_shard")) {
        write_model(&c, NULL, NULL, NULL);
        shard_model(1);
        expect("model.safetensors.index.json", "model-00003-of-00003.safetensors", "does not exist");
    } else if (!strcmp(cs, "shard_map_mismatch")) {
        write_model(&c, NULL, NULL, NULL);
        shard_model(2);
        expect("model.safetensors.index.json", "lm_head.weight", "model-00002-of-00002.safetensors");
    } else if (!strcmp(cs, "no_weights")) {
        write_model(&c, NULL, NULL, NULL);
        char *mp = P("model.safetensors");
        unlink(mp);
        free(mp);
        expect("neither model.safetensors.index.json nor model.safetensors", NULL, NULL);
    } else {
        fprintf(stderr, "test_io_bad: unknown case %s\n", cs);
        return 2;
    }
    /* the library: config, weights, tensor check — the first failure is the message */
    if (!qa_path_exists(g_tmp)) return 1;
    {
        char *cp = P("config.json");
        if (!qa_path_exists(cp)) { qa_err e = {0}; tiny_config(&c, QA_ARCH_LLAMA); qa_hf_config_write(&c, cp, &e); }
        free(cp);
    }
    qa_err e = {0};
    qa_hf_config cfg;
    qa_safetensors st;
    char *cp = P("config.json");
    int rc = qa_hf_config_load(&cfg, cp, &e);
    free(cp);
    int opened = 0;
    if (!rc) { rc = qa_st_open_dir(&st, g_tmp, &e); opened = !rc; }
    if (!rc) rc = qa_hf_check_tensors(&cfg, &st, &e);
    if (opened) qa_st_close(&st);
    QT_CHECK(rc != 0, "%s: the library refuses it", cs);
    QT_CHECK(strchr(e.msg, '\n') == NULL && e.msg[0], "%s: one-line message: %s", cs, e.msg);
    for (int i = 0; want[i]; i++) QT_CHECK(strstr(e.msg, want[i]) != NULL, "%s: message names '%s': %s", cs, want[i], e.msg);

    /* the CLI */
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", qalign, g_tmp);
    int st_code = qt_run(cmd, out, sizeof out);
    QT_CHECK(st_code != 0 && st_code < 128, "%s: qalign info exits non-zero without a crash (status %d)", cs, st_code);
    size_t len = strlen(out);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += out[i] == '\n';
    QT_CHECK(lines == 1 && !strncmp(out, "qalign: error: ", 15), "%s: CLI prints one error line: %s", cs, out);
    for (int i = 0; want[i]; i++) QT_CHECK(strstr(out, want[i]) != NULL, "%s: CLI message names '%s'", cs, want[i]);
    nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return qt_finish();
}
