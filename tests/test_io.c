/* test_io.c — io/ checkpoint layer: fixtures load and check, sharded copies load identically,
 * all dtypes round-trip, config.json semantics, PEFT adapters read/write/reject.
 * usage: test_io fixtures|sharded|roundtrip|config|peft|peft_reject [FIXTURES_HF_ROOT] */
#include "testutil.h"
#include "io/hf_config.h"
#include "io/peft.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the adapter shapes of a base config (model/: io/peft.h knows no graph) */
static const qa_peft_shape *shape_of(const qa_hf_config *c, qa_peft_shape *sh) { qa_lora_peft_shape(c, sh); return sh; }
#define SHAPE(c) shape_of((c), &(qa_peft_shape){0})

static char g_tmp[512];
static const char *g_root;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}
static void make_tmp(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/qa_test_io.XXXXXX", qt_env_or("TMPDIR", "/tmp"));
    if (!mkdtemp(g_tmp)) { perror("mkdtemp"); exit(1); }
}
static void rm_tmp(void) { if (g_tmp[0]) nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
/* sorted subdirectory names of dir (NULL-terminated) */
static char **list_dirs(const char *dir, size_t *n) {
    DIR *d = opendir(dir);
    *n = 0;
    char **v = qa_calloc(256, sizeof *v);
    if (!d) return v;
    struct dirent *de;
    while ((de = readdir(d)) && *n < 255) {
        if (de->d_name[0] == '.') continue;
        char *p = qa_path_join(dir, de->d_name);
        if (qa_is_dir(p)) v[(*n)++] = qa_strdup(de->d_name);
        free(p);
    }
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_str);
    return v;
}
static void free_list(char **v, size_t n) { for (size_t i = 0; i < n; i++) free(v[i]); free(v); }

static const char *fixtures_root(int argc, char **argv) {
    static char buf[1024];
    const char *r = getenv("QALIGN_FIXTURES");
    if (r && *r) {
        snprintf(buf, sizeof buf, "%s/hf", r);
        return qa_is_dir(buf) ? buf : r;
    }
    return argc > 2 ? argv[2] : QT_FIXTURES_FALLBACK;
}

/* ---------------------------------------------------------------- fixtures */

static void check_peft_config_written(const char *ours, const char *theirs, const char *what) {
    json_error_t je;
    json_t *a = json_load_file(ours, 0, &je), *b = json_load_file(theirs, 0, &je);
    QT_CHECK(a && b, "%s: both adapter_config.json parse", what);
    if (!a || !b) { json_decref(a); json_decref(b); return; }
    const char *k;
    json_t *v;
    json_object_foreach(a, k, v) QT_CHECK(json_object_get(b, k) != NULL, "%s: written key %s is one PEFT writes", what, k);
    static const char *same[] = {"peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "bias", "fan_in_fan_out",
                                 "use_dora", "use_rslora", "modules_to_save", "layers_to_transform", "rank_pattern",
                                 "alpha_pattern", "inference_mode", NULL};
    for (int i = 0; same[i]; i++)
        QT_CHECK(json_equal(json_object_get(a, same[i]), json_object_get(b, same[i])), "%s: %s as in the fixture", what,
                 same[i]);
    /* target_modules: same set */
    json_t *ta = json_object_get(a, "target_modules"), *tb = json_object_get(b, "target_modules");
    int ok = json_array_size(ta) == json_array_size(tb);
    for (size_t i = 0; ok && i < json_array_size(ta); i++) {
        int found = 0;
        for (size_t j = 0; j < json_array_size(tb); j++) found |= json_equal(json_array_get(ta, i), json_array_get(tb, j));
        ok = found;
    }
    QT_CHECK(ok, "%s: target_modules is the same set", what);
    json_decref(a);
    json_decref(b);
}

static int test_fixtures(void) {
    size_t nd;
    char **dirs = list_dirs(g_root, &nd);
    int n_models = 0, n_adapters = 0;
    make_tmp();
    for (size_t i = 0; i < nd; i++) {
        char *base = qa_path_join(g_root, dirs[i]), *mdir = qa_path_join(base, "model");
        char *cfgp = qa_path_join(mdir, "config.json");
        if (!qa_is_dir(mdir)) { free(base); free(mdir); free(cfgp); continue; }
        n_models++;
        qa_err e = {0};
        qa_hf_config c;
        qa_safetensors st;
        int rc = qa_hf_config_load(&c, cfgp, &e);
        QT_CHECK(rc == 0, "%s: config.json loads: %s", dirs[i], e.msg);
        int rs = qa_st_open_dir(&st, mdir, &e);
        QT_CHECK(rs == 0, "%s: weights open: %s", dirs[i], e.msg);
        if (!rc && !rs) {
            QT_CHECK(qa_hf_check_tensors(&c, &st, &e) == 0, "%s: qa_hf_check_tensors: %s", dirs[i], e.msg);
            int64_t p = 0;
            for (size_t k = 0; k < st.n_tensors; k++) p += st.tensors[k].numel;
            QT_CHECK(p == qa_hf_config_param_count(&c), "%s: parameter count %lld from config = %lld in tensors", dirs[i],
                     (long long)qa_hf_config_param_count(&c), (long long)p);
            /* every tensor reads as finite floats; norm weights near 1 as the README says */
            int finite = 1;
            for (size_t k = 0; k < st.n_tensors; k++) {
                float *f = qa_malloc((size_t)st.tensors[k].numel * sizeof *f);
                QT_CHECK(qa_st_read_f32(&st, &st.tensors[k], f, &e) == 0, "%s: read %s", dirs[i], st.tensors[k].name);
                for (int64_t j = 0; j < st.tensors[k].numel; j++) finite &= isfinite(f[j]) != 0;
                free(f);
            }
            QT_CHECK(finite, "%s: all weights finite", dirs[i]);
            QT_CHECK(st.metadata_json && strstr(st.metadata_json, "\"format\":\"pt\""), "%s: metadata format=pt",
                     dirs[i]);
            /* adapters of this model */
            size_t na;
            char **ads = list_dirs(base, &na);
            for (size_t a = 0; a < na; a++) {
                if (strncmp(ads[a], "adapter", 7)) continue;
                n_adapters++;
                char *adir = qa_path_join(base, ads[a]);
                qa_peft_adapter ad, back;
                int ra = qa_peft_load(&ad, adir, SHAPE(&c), &e);
                QT_CHECK(ra == 0, "%s/%s: PEFT adapter loads: %s", dirs[i], ads[a], e.msg);
                if (!ra) {
                    QT_CHECK(ad.cfg.r > 0 && ad.cfg.module_mask, "%s/%s: r %d, modules 0x%x", dirs[i], ads[a], ad.cfg.r,
                             ad.cfg.module_mask);
                    char out[700];
                    snprintf(out, sizeof out, "%s/%s_%s", g_tmp, dirs[i], ads[a]);
                    QT_CHECK(qa_peft_save(&ad, out, &e) == 0, "%s/%s: save: %s", dirs[i], ads[a], e.msg);
                    /* save twice: replacing an existing adapter directory */
                    QT_CHECK(qa_peft_save(&ad, out, &e) == 0, "%s/%s: save over existing: %s", dirs[i], ads[a], e.msg);
                    int rb = qa_peft_load(&back, out, SHAPE(&c), &e);
                    QT_CHECK(rb == 0, "%s/%s: written adapter loads back: %s", dirs[i], ads[a], e.msg);
                    if (!rb) {
                        int same = back.n_params == ad.n_params && back.cfg.r == ad.cfg.r &&
                                   back.cfg.alpha == ad.cfg.alpha && back.cfg.module_mask == ad.cfg.module_mask &&
                                   !memcmp(back.params, ad.params, ad.n_params * sizeof(float));
                        QT_CHECK(same, "%s/%s: round trip is exact", dirs[i], ads[a]);
                        qa_peft_free(&back);
                    }
                    char *p1 = qa_path_join(out, "adapter_config.json"), *p2 = qa_path_join(adir, "adapter_config.json");
                    check_peft_config_written(p1, p2, ads[a]);
                    free(p1); free(p2);
                    qa_peft_free(&ad);
                }
                free(adir);
            }
            free_list(ads, na);
        }
        if (!rs) qa_st_close(&st);
        free(base); free(mdir); free(cfgp);
    }
    QT_CHECK(n_models > 0, "found fixture models under %s", g_root);
    QT_CHECK(n_adapters > 0, "found fixture adapters under %s", g_root);
    printf("%d fixture models, %d adapters\n", n_models, n_adapters);
    free_list(dirs, nd);
    rm_tmp();
    return qt_finish();
}

/* ---------------------------------------------------------------- sharded copies */

static int test_sharded(void) {
    size_t nd;
    char **dirs = list_dirs(g_root, &nd);
    make_tmp();
    int n = 0;
    for (size_t i = 0; i < nd; i++) {
        char *mdir = qa_path_join(g_root, dirs[i]);
        char *m2 = qa_path_join(mdir, "model");
        free(mdir);
        if (!qa_is_dir(m2)) { free(m2); continue; }
        n++;
        qa_err e = {0};
        qa_safetensors st, sh;
        qa_hf_config c;
        char *cfgp = qa_path_join(m2, "config.json");
        QT_CHECK(qa_hf_config_load(&c, cfgp, &e) == 0, "%s: config: %s", dirs[i], e.msg);
        if (qa_st_open_dir(&st, m2, &e)) { QT_CHECK(0, "%s: open: %s", dirs[i], e.msg); free(m2); free(cfgp); continue; }
        char out[700];
        snprintf(out, sizeof out, "%s/%s", g_tmp, dirs[i]);
        qa_mkdir_p(out, &e);
        char *ocfg = qa_path_join(out, "config.json");
        QT_CHECK(qa_copy_file(cfgp, ocfg, &e) == 0, "copy config");
        /* state-dict order = the spec order; first half into shard 1 */
        qa_hf_tensor_spec *sp;
        size_t ns = qa_hf_tensor_specs(&c, &sp);
        qa_st_entry *ents = qa_calloc(ns, sizeof *ents);
        json_t *wm = json_object();
        uint64_t total = 0;
        for (size_t k = 0; k < ns; k++) {
            const qa_st_tensor *t = qa_st_find(&st, sp[k].name);
            QT_CHECK(t != NULL, "%s: %s present", dirs[i], sp[k].name);
            if (!t) continue;
            ents[k] = (qa_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
            memcpy(ents[k].shape, t->shape, sizeof t->shape);
            total += t->nbytes;
            json_object_set_new(wm, t->name, json_string(k < ns / 2 ? "model-00001-of-00002.safetensors"
                                                                   : "model-00002-of-00002.safetensors"));
        }
        static const char *const meta[] = {"format", "pt", NULL};
        char *s1 = qa_path_join(out, "model-00001-of-00002.safetensors"),
             *s2 = qa_path_join(out, "model-00002-of-00002.safetensors");
        QT_CHECK(qa_st_write(s1, ents, ns / 2, meta, &e) == 0, "write shard 1: %s", e.msg);
        QT_CHECK(qa_st_write(s2, ents + ns / 2, ns - ns / 2, meta, &e) == 0, "write shard 2: %s", e.msg);
        json_t *idx = json_object(), *md = json_object();
        json_object_set_new(md, "total_size", json_integer((json_int_t)total));
        json_object_set_new(md, "total_parameters", json_integer(qa_hf_config_param_count(&c))); /* unknown key */
        json_object_set_new(idx, "metadata", md);
        json_object_set_new(idx, "weight_map", wm);
        char *ip = qa_path_join(out, "model.safetensors.index.json");
        json_dump_file(idx, ip, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(idx);
        int ro = qa_st_open_dir(&sh, out, &e);
        QT_CHECK(ro == 0, "%s: sharded copy opens: %s", dirs[i], e.msg);
        if (!ro) {
            QT_CHECK(sh.n_files == 2, "%s: 2 shards", dirs[i]);
            QT_CHECK(sh.n_tensors == st.n_tensors, "%s: same tensor count", dirs[i]);
            int same = sh.n_tensors == st.n_tensors;
            for (size_t k = 0; same && k < st.n_tensors; k++) {
                const qa_st_tensor *a = &st.tensors[k], *b = &sh.tensors[k];
                same = !strcmp(a->name, b->name) && a->dtype == b->dtype && a->ndim == b->ndim &&
                       !memcmp(a->shape, b->shape, sizeof a->shape) && a->nbytes == b->nbytes &&
                       !memcmp(a->data, b->data, a->nbytes);
            }
            QT_CHECK(same, "%s: sharded copy holds identical tensors", dirs[i]);
            QT_CHECK(qa_hf_check_tensors(&c, &sh, &e) == 0, "%s: sharded copy passes check_tensors: %s", dirs[i], e.msg);
            qa_st_close(&sh);
        }
        free(ip); free(s1); free(s2); free(ents); free(sp); free(ocfg); free(cfgp); free(m2);
        qa_st_close(&st);
    }
    QT_CHECK(n > 0, "found fixture models");
    free_list(dirs, nd);
    rm_tmp();
    return qt_finish();
}

/* ---------------------------------------------------------------- all dtypes round trip */

static const char *ALL_DT[] = {"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
                               "I64", "U64", "C64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ",
                               "F8_E5M2FNUZ", "F4", "F6_E2M3", "F6_E3M2"};
#define N_ALL_DT (sizeof ALL_DT / sizeof ALL_DT[0])

static qa_dtype dt_enum(const char *n) {
    static const struct { const char *n; qa_dtype d; } m[] = {
        {"F32", QA_DT_F32}, {"BF16", QA_DT_BF16}, {"F16", QA_DT_F16}, {"F64", QA_DT_F64}, {"I32", QA_DT_I32},
        {"I64", QA_DT_I64}, {"U8", QA_DT_U8}, {"I8", QA_DT_I8}, {"I16", QA_DT_I16}, {"U16", QA_DT_U16},
        {"U32", QA_DT_U32}, {"U64", QA_DT_U64}, {"BOOL", QA_DT_BOOL}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) if (!strcmp(m[i].n, n)) return m[i].d;
    return QA_DT_OTHER;
}

static int test_roundtrip(void) {
    make_tmp();
    qa_err e = {0};
    /* per dtype: a [3, 4] tensor, a scalar, a zero-size tensor; F4/F6 need numel*bits % 8 == 0 */
    size_t n = 0;
    qa_st_entry ents[3 * N_ALL_DT];
    char names[3 * N_ALL_DT][48];
    uint8_t *bufs[3 * N_ALL_DT];
    uint64_t state = 12345;
    for (size_t d = 0; d < N_ALL_DT; d++) {
        int bits = qa_st_dtype_bits(ALL_DT[d]);
        QT_CHECK(bits > 0, "dtype %s known", ALL_DT[d]);
        for (int v = 0; v < 3; v++) {
            qa_st_entry *en = &ents[n];
            memset(en, 0, sizeof *en);
            snprintf(names[n], sizeof names[n], "%c.%s", "tsz"[v], ALL_DT[d]);
            en->name = names[n];
            en->dtype = dt_enum(ALL_DT[d]);
            en->dtype_name = ALL_DT[d];
            int64_t numel;
            if (v == 0) { en->ndim = 2; en->shape[0] = 3; en->shape[1] = 4; numel = 12; }
            else if (v == 1) { en->ndim = 0; numel = 1; }
            else { en->ndim = 3; en->shape[0] = 2; en->shape[1] = 0; en->shape[2] = 5; numel = 0; }
            if (v == 1 && bits % 8) { en->ndim = 1; en->shape[0] = 4; numel = 4; }  /* a scalar F4/F6 is not whole bytes */
            size_t nb = (size_t)(numel * bits / 8);
            bufs[n] = qa_malloc(nb + 1);
            for (size_t k = 0; k < nb; k++) { state = state * 6364136223846793005ull + 1442695040888963407ull; bufs[n][k] = (uint8_t)(state >> 56); }
            en->data = bufs[n];
            n++;
        }
    }
    char *p = qa_path_join(g_tmp, "all.safetensors"), *p2 = qa_path_join(g_tmp, "all2.safetensors");
    QT_CHECK(qa_st_write(p, ents, n, NULL, &e) == 0, "write all dtypes: %s", e.msg);
    /* the same entries in another order write the same bytes (the writer sorts) */
    qa_st_entry rev[3 * N_ALL_DT];
    for (size_t i = 0; i < n; i++) rev[i] = ents[n - 1 - i];
    QT_CHECK(qa_st_write(p2, rev, n, NULL, &e) == 0, "write reversed: %s", e.msg);
    char *b1, *b2;
    size_t l1, l2;
    qa_read_file(p, 0, &b1, &l1, &e);
    qa_read_file(p2, 0, &b2, &l2, &e);
    QT_CHECK(l1 == l2 && !memcmp(b1, b2, l1), "output independent of input order");
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--) hl = (hl << 8) | (uint8_t)b1[k];
    QT_CHECK(hl % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)hl);
    QT_CHECK(b1[8 + hl - 1] == ' ' || b1[8 + hl - 1] == '}', "header ends in padding or '}'");
    free(b1); free(b2);
    qa_safetensors st;
    int ro = qa_st_open(&st, p, &e);
    QT_CHECK(ro == 0, "read back: %s", e.msg);
    if (!ro) {
        QT_CHECK(st.n_tensors == n, "%zu tensors back", st.n_tensors);
        QT_CHECK(st.metadata_json == NULL, "no metadata when none written");
        for (size_t i = 0; i < n; i++) {
            const qa_st_tensor *t = qa_st_find(&st, ents[i].name);
            QT_CHECK(t != NULL, "%s found", ents[i].name);
            if (!t) continue;
            int same = !strcmp(t->dtype_name, ents[i].dtype_name) && t->ndim == ents[i].ndim;
            for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == ents[i].shape[k];
            same = same && (t->nbytes == 0 || !memcmp(t->data, ents[i].data, t->nbytes));
            QT_CHECK(same, "%s: dtype, shape and bytes round-trip", ents[i].name);
            QT_CHECK(t->dtype == ents[i].dtype, "%s: dtype enum", ents[i].name);
            int bits = qa_st_dtype_bits(t->dtype_name);
            QT_CHECK(bits < 8 || ((uintptr_t)t->data % (uintptr_t)(bits / 8)) == 0, "%s: data aligned", ents[i].name);
        }
        /* file order: the reference dtype order (alignment) descending, then name; empty tensors skipped */
        static const char *REF_ORDER[] = {"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
                                          "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32",
                                          "U32", "F32", "C64", "F64", "I64", "U64"};
        const qa_st_tensor *byoff[3 * N_ALL_DT];
        size_t nb = 0;
        for (size_t i = 0; i < st.n_tensors; i++) if (st.tensors[i].nbytes) byoff[nb++] = &st.tensors[i];
        for (size_t i = 1; i < nb; i++)
            for (size_t j = i; j > 0 && (const uint8_t *)byoff[j]->data < (const uint8_t *)byoff[j - 1]->data; j--) {
                const qa_st_tensor *t = byoff[j]; byoff[j] = byoff[j - 1]; byoff[j - 1] = t;
            }
        int ordered = 1;
        for (size_t i = 1; i < nb; i++) {
            int ra = -1, rb = -1;
            for (int k = 0; k < (int)(sizeof REF_ORDER / sizeof *REF_ORDER); k++) {
                if (!strcmp(REF_ORDER[k], byoff[i - 1]->dtype_name)) ra = k;
                if (!strcmp(REF_ORDER[k], byoff[i]->dtype_name)) rb = k;
            }
            if (ra < rb || (ra == rb && strcmp(byoff[i - 1]->name, byoff[i]->name) > 0)) ordered = 0;
        }
        QT_CHECK(ordered, "tensors in the reference writer order (dtype alignment desc, then name)");
        /* f32 views */
        const qa_st_tensor *tf = qa_st_find(&st, "t.BF16");
        float f[12];
        QT_CHECK(tf && qa_st_read_f32(&st, tf, f, &e) == 0, "read BF16 as f32");
        int ok = 1;
        for (int k = 0; tf && k < 12; k++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)tf->data + 2 * k, 2);
            float ref = qa_bf16_to_f32(h);
            ok &= (isnan(ref) && isnan(f[k])) || f[k] == ref;
        }
        QT_CHECK(ok, "BF16 -> f32 values");
        const qa_st_tensor *ti = qa_st_find(&st, "t.I32");
        QT_CHECK(ti && qa_st_read_f32(&st, ti, f, &e) != 0 && strstr(e.msg, "t.I32"), "I32 read as f32 is refused naming the tensor");
        const int64_t want[2] = {3, 4}, wrong[2] = {4, 3};
        QT_CHECK(qa_st_get(&st, "t.F32", 2, want, NULL, &e) == 0, "qa_st_get right shape");
        QT_CHECK(qa_st_get(&st, "t.F32", 2, wrong, NULL, &e) != 0 && strstr(e.msg, "t.F32") && strstr(e.msg, "all.safetensors"),
                 "qa_st_get wrong shape names file and tensor: %s", e.msg);
        QT_CHECK(qa_st_get(&st, "nope", 2, want, NULL, &e) != 0 && strstr(e.msg, "nope"), "qa_st_get missing names tensor");
        qa_st_close(&st);
    }
    /* metadata round trip and a name needing escapes */
    static const char *const meta[] = {"format", "pt", "note", "a \"quoted\"\tvalue", NULL};
    float one = 1.0f;
    qa_st_entry odd = {.name = "we\"ird\\name/é", .dtype = QA_DT_F32, .ndim = 1, .shape = {1}, .data = &one};
    char *p3 = qa_path_join(g_tmp, "meta.safetensors");
    QT_CHECK(qa_st_write(p3, &odd, 1, meta, &e) == 0, "write with metadata: %s", e.msg);
    if (qa_st_open(&st, p3, &e) == 0) {
        json_t *m = json_loads(st.metadata_json ? st.metadata_json : "", 0, NULL);
        QT_CHECK(m && !strcmp(json_string_value(json_object_get(m, "note")), "a \"quoted\"\tvalue"), "metadata round-trips");
        json_decref(m);
        QT_CHECK(qa_st_find(&st, "we\"ird\\name/é") != NULL, "escaped name round-trips");
        qa_st_close(&st);
    } else QT_CHECK(0, "reopen: %s", e.msg);
    /* the writer refuses duplicate names and leaves nothing behind */
    qa_st_entry dup[2] = {odd, odd};
    char *p4 = qa_path_join(g_tmp, "dup.safetensors");
    QT_CHECK(qa_st_write(p4, dup, 2, NULL, &e) != 0 && strstr(e.msg, "twice"), "duplicate names refused");
    QT_CHECK(!qa_path_exists(p4), "no file after a refused write");
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(p); free(p2); free(p3); free(p4);
    rm_tmp();
    return qt_finish();
}

/* ---------------------------------------------------------------- config.json semantics */

static const char *LLAMA_BASE =
    "{\"model_type\":\"%s\",\"hidden_size\":64,\"intermediate_size\":160,\"num_hidden_layers\":4,"
    "\"num_attention_heads\":4,\"vocab_size\":100,\"rms_norm_eps\":1e-5%s}";

static int parse_with(qa_hf_config *c, const char *mt, const char *extra, qa_err *e) {
    char buf[4096];
    snprintf(buf, sizeof buf, LLAMA_BASE, mt, extra);
    return qa_hf_config_parse(c, buf, "test/config.json", e);
}

static int test_config(void) {
    qa_err e = {0};
    qa_hf_config c;
    /* Llama-2 style: no rope_theta at all, rope_scaling null, no kv heads */
    QT_CHECK(parse_with(&c, "llama", ",\"rope_scaling\":null", &e) == 0, "llama minimal: %s", e.msg);
    QT_CHECK(c.rope_theta == 10000.0 && c.n_kv_heads == 4 && c.head_dim == 16 && !c.tie_embeddings && !c.qkv_bias,
             "llama defaults: theta 10000, kv = heads, head_dim = hidden/heads, untied, no bias");
    QT_CHECK(c.bos_token_id == -1 && c.eos_token_id == -1, "absent token ids are -1");
    QT_CHECK(parse_with(&c, "llama", ",\"num_key_value_heads\":null,\"head_dim\":null,\"rope_theta\":500000.0", &e) == 0 &&
             c.n_kv_heads == 4 && c.head_dim == 16 && c.rope_theta == 500000.0, "null kv heads / head_dim; top-level theta");
    QT_CHECK(parse_with(&c, "llama", ",\"attention_bias\":true,\"mlp_bias\":true", &e) == 0 && c.qkv_bias && c.o_bias &&
             c.mlp_bias, "llama attention_bias / mlp_bias");
    QT_CHECK(parse_with(&c, "llama", ",\"eos_token_id\":[7,8],\"bos_token_id\":1", &e) == 0 && c.eos_token_id == 7 &&
             c.bos_token_id == 1, "eos list -> first id");
    /* new layout */
    QT_CHECK(parse_with(&c, "llama", ",\"rope_parameters\":{\"rope_theta\":1234.0,\"rope_type\":\"default\"},\"rope_theta\":5.0",
                        &e) == 0 && c.rope_theta == 1234.0, "rope_parameters.rope_theta wins");
    QT_CHECK(parse_with(&c, "llama", ",\"rope_parameters\":{\"rope_theta\":77.0}", &e) == 0 && c.rope_theta == 77.0,
             "rope_type defaults to default");
    QT_CHECK(parse_with(&c, "llama", ",\"rope_parameters\":{\"full_attention\":{\"rope_theta\":88.0,\"rope_type\":\"default\"},"
                        "\"sliding_attention\":{\"rope_theta\":88.0,\"rope_type\":\"default\"}}", &e) == 0 &&
             c.rope_theta == 88.0, "per-layer-type rope dicts with one theta");
    /* rejections name the key */
    QT_CHECK(parse_with(&c, "llama", ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}", &e) != 0 &&
             strstr(e.msg, "rope_scaling.type") && strstr(e.msg, "test/config.json"), "linear rope rejected: %s", e.msg);
    QT_CHECK(parse_with(&c, "llama", ",\"rope_parameters\":{\"rope_type\":\"yarn\",\"factor\":4.0,\"rope_theta\":1e4}", &e) != 0 &&
             strstr(e.msg, "rope_parameters.rope_type"), "yarn rejected: %s", e.msg);
    QT_CHECK(parse_with(&c, "llama", ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}", &e) != 0 &&
             strstr(e.msg, "rope_scaling.rope_type"), "llama3 rope rejected: %s", e.msg);
    QT_CHECK(parse_with(&c, "llama", ",\"hidden_act\":\"gelu\"", &e) != 0 && strstr(e.msg, "hidden_act"), "gelu rejected");
    QT_CHECK(parse_with(&c, "gpt2", "", &e) != 0 && strstr(e.msg, "model_type") && strstr(e.msg, "gpt2"),
             "unknown model_type names key and value: %s", e.msg);
    QT_CHECK(parse_with(&c, "llama", ",\"num_key_value_heads\":3", &e) != 0 && strstr(e.msg, "num_key_value_heads"),
             "kv heads must divide heads");
    QT_CHECK(qa_hf_config_parse(&c, "{\"model_type\":\"llama\",\"hidden_size\":64}", "x.json", &e) != 0 &&
             strstr(e.msg, "intermediate_size"), "missing required key named: %s", e.msg);
    QT_CHECK(parse_with(&c, "llama", ",\"hidden_size\":\"64\"", &e) != 0, "string where an int belongs");
    /* sliding windows */
    QT_CHECK(parse_with(&c, "mistral", ",\"sliding_window\":8", &e) == 0 && c.window[0] == 8 && c.window[3] == 8,
             "mistral window on every layer");
    QT_CHECK(parse_with(&c, "mistral", ",\"sliding_window\":null", &e) == 0 && c.window[0] == 0, "mistral null window");
    QT_CHECK(parse_with(&c, "llama", ",\"sliding_window\":8", &e) == 0 && c.window[0] == 0, "llama ignores sliding_window");
    QT_CHECK(parse_with(&c, "qwen2", ",\"sliding_window\":4,\"use_sliding_window\":false,\"max_window_layers\":2", &e) == 0 &&
             c.window[0] == 0 && c.window[3] == 0 && c.qkv_bias && !c.o_bias, "qwen2 window off unless use_sliding_window; biases");
    QT_CHECK(parse_with(&c, "qwen2", ",\"sliding_window\":4,\"use_sliding_window\":true,\"max_window_layers\":2", &e) == 0 &&
             c.window[0] == 0 && c.window[1] == 0 && c.window[2] == 4 && c.window[3] == 4, "qwen2 window from max_window_layers");
    QT_CHECK(parse_with(&c, "qwen2", ",\"sliding_window\":4,\"use_sliding_window\":true,\"layer_types\":[\"sliding_attention\","
                        "\"full_attention\",\"sliding_attention\",\"full_attention\"]", &e) == 0 &&
             c.window[0] == 4 && c.window[1] == 0 && c.window[2] == 4 && c.window[3] == 0, "qwen2 layer_types");
    QT_CHECK(parse_with(&c, "qwen2", ",\"sliding_window\":null,\"use_sliding_window\":false,\"layer_types\":[\"full_attention\","
                        "\"full_attention\",\"full_attention\",\"full_attention\"]", &e) == 0 && c.window[0] == 0,
             "qwen2 transformers-5 layout");
    /* fixtures: the README's stated semantics */
    const char *fx[3][2] = {{"llama", "legacy"}, {"mistral", "new"}, {"qwen2", "qwen"}};
    for (int i = 0; i < 3; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s/model/config.json", g_root, fx[i][0]);
        if (!qa_path_exists(p)) continue;
        QT_CHECK(qa_hf_config_load(&c, p, &e) == 0, "%s fixture config: %s", fx[i][0], e.msg);
        if (i == 0) QT_CHECK(c.rope_theta == 10000.0 && c.window[0] == 0 && !c.tie_embeddings, "llama fixture semantics");
        if (i == 1) QT_CHECK(c.rope_theta == 10000.0 && c.window[0] == 8 && c.window[c.n_layers - 1] == 8, "mistral fixture: window 8");
        if (i == 2) QT_CHECK(c.rope_theta == 1e6 && c.window[0] == 0 && c.window[c.n_layers - 1] == 0 && c.tie_embeddings &&
                             c.qkv_bias, "qwen2 fixture: no window, tied, biases");
    }
    /* parameter counts of the target models (formats §2) */
    qa_hf_config m;
    qa_hf_config_defaults(&m, QA_ARCH_MISTRAL);
    m.hidden = 4096; m.intermediate = 14336; m.n_layers = 32; m.n_heads = 32; m.n_kv_heads = 8; m.vocab = 32000;
    qa_hf_config_finish(&m);
    QT_CHECK(qa_hf_config_param_count(&m) == 7241732096LL, "Mistral-7B: %lld parameters", (long long)qa_hf_config_param_count(&m));
    qa_hf_config_defaults(&m, QA_ARCH_QWEN2);
    m.hidden = 2048; m.intermediate = 5504; m.n_layers = 24; m.n_heads = 16; m.n_kv_heads = 16; m.vocab = 151936;
    qa_hf_config_finish(&m);
    QT_CHECK(qa_hf_config_param_count(&m) == 1836828672LL, "Qwen1.5-1.8B: %lld parameters", (long long)qa_hf_config_param_count(&m));
    /* write -> parse round trip, each arch, with windows */
    make_tmp();
    for (int a = QA_ARCH_LLAMA; a <= QA_ARCH_QWEN2; a++) {
        for (int variant = 0; variant < 3; variant++) {
            qa_hf_config w, r;
            qa_hf_config_defaults(&w, (qa_arch)a);
            w.n_layers = 5; w.vocab = 99; w.bos_token_id = variant ? 1 : -1; w.eos_token_id = 2;
            w.tie_embeddings = variant == 1;
            if (variant == 2) w.head_dim = 32;
            if (a == QA_ARCH_MISTRAL && variant) for (int l = 0; l < 5; l++) w.window[l] = 16;
            if (a == QA_ARCH_QWEN2 && variant == 1) for (int l = 3; l < 5; l++) w.window[l] = 16;
            if (a == QA_ARCH_QWEN2 && variant == 2) { w.window[0] = 16; w.window[2] = 16; }
            if (a == QA_ARCH_LLAMA && variant == 2) { w.qkv_bias = w.o_bias = 1; w.mlp_bias = 1; }
            qa_hf_config_finish(&w);
            char *p = qa_path_join(g_tmp, "config.json");
            int rw = qa_hf_config_write(&w, p, &e);
            QT_CHECK(rw == 0, "write %s v%d: %s", qa_arch_name((qa_arch)a), variant, e.msg);
            int rr = qa_hf_config_load(&r, p, &e);
            QT_CHECK(rr == 0, "reload %s v%d: %s", qa_arch_name((qa_arch)a), variant, e.msg);
            QT_CHECK(!rw && !rr && r.arch == w.arch && r.hidden == w.hidden && r.intermediate == w.intermediate &&
                     r.n_layers == w.n_layers && r.n_heads == w.n_heads && r.n_kv_heads == w.n_kv_heads &&
                     r.head_dim == w.head_dim && r.vocab == w.vocab && r.rms_eps == w.rms_eps &&
                     r.rope_theta == w.rope_theta && r.tie_embeddings == w.tie_embeddings && r.qkv_bias == w.qkv_bias &&
                     r.o_bias == w.o_bias && r.mlp_bias == w.mlp_bias && r.bos_token_id == w.bos_token_id &&
                     r.eos_token_id == w.eos_token_id && !memcmp(r.window, w.window, sizeof r.window),
                     "%s v%d: config round-trips", qa_arch_name((qa_arch)a), variant);
            /* the key set matches what transformers writes for the fixture of this arch */
            char fxp[1024];
            snprintf(fxp, sizeof fxp, "%s/%s/model/config.json", g_root, qa_arch_name((qa_arch)a));
            json_t *ours = json_load_file(p, 0, NULL), *theirs = json_load_file(fxp, 0, NULL);
            if (ours && theirs && variant == 0) {
                const char *k;
                json_t *v;
                json_object_foreach(theirs, k, v) {
                    const char *kk = !strcmp(k, "rope_parameters") ? "rope_theta" : !strcmp(k, "dtype") ? "torch_dtype" : k;
                    QT_CHECK(json_object_get(ours, kk) != NULL, "%s: key %s (as transformers writes it) present",
                             qa_arch_name((qa_arch)a), kk);
                }
            }
            json_decref(ours);
            json_decref(theirs);
            free(p);
        }
    }
    rm_tmp();
    return qt_finish();
}

/* ---------------------------------------------------------------- PEFT config rejections */

static int test_peft_reject(void) {
    qa_err e = {0};
    qa_peft_config pc;
    const char *ok = "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":8,\"lora_alpha\":16,"
                     "\"target_modules\":[\"q_proj\",\"v_proj\"],\"lora_dropout\":0.05,\"some_future_key\":{\"x\":1},"
                     "\"rank_pattern\":{},\"alpha_pattern\":{},\"use_dora\":false,\"layers_to_transform\":null,"
                     "\"bias\":\"none\",\"fan_in_fan_out\":false,\"modules_to_save\":null}";
    QT_CHECK(qa_peft_config_parse(&pc, ok, "a/adapter_config.json", &e) == 0 && pc.r == 8 && pc.alpha == 16 &&
             pc.module_mask == QA_LORA_MASK_QV && fabs(pc.dropout - 0.05) < 1e-12, "defaults accepted, unknown keys ignored: %s", e.msg);
    struct { const char *json, *key; } bad[] = {
        {"\"rank_pattern\":{\"q_proj\":4}", "rank_pattern"},
        {"\"alpha_pattern\":{\"v_proj\":4}", "alpha_pattern"},
        {"\"use_dora\":true", "use_dora"},
        {"\"use_rslora\":true", "use_rslora"},
        {"\"layers_to_transform\":[0,1]", "layers_to_transform"},
        {"\"layers_to_transform\":3", "layers_to_transform"},
        {"\"bias\":\"all\"", "bias"},
        {"\"fan_in_fan_out\":true", "fan_in_fan_out"},
        {"\"modules_to_save\":[\"lm_head\"]", "modules_to_save"},
        {"\"peft_type\":\"IA3\"", "peft_type"},
        {"\"target_modules\":[\"lm_head\"]", "target_modules"},
        {"\"target_modules\":[\"layers.0.self_attn.q_proj\"]", "target_modules"},
        {"\"target_modules\":\".*\\\\.(q_proj\"", "target_modules"},
        {"\"target_modules\":\"model\\\\.layers\\\\.0\\\\..*q_proj\"", "target_modules"},
        {"\"r\":0", "\"r\""},
        {"\"task_type\":\"SEQ_CLS\"", "task_type"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[1024];
        snprintf(buf, sizeof buf, "{\"peft_type\":\"LORA\",\"target_modules\":[\"q_proj\"],%s}", bad[i].json);
        /* a later duplicate key overrides the earlier one in jansson: put the bad one last */
        int rc = qa_peft_config_parse(&pc, buf, "a/adapter_config.json", &e);
        QT_CHECK(rc != 0 && strstr(e.msg, bad[i].key) && strstr(e.msg, "a/adapter_config.json"),
                 "rejected naming %s: %s", bad[i].key, rc ? e.msg : "(accepted)");
    }
    /* regex and suffix targets that resolve to the same modules in every layer are fine */
    QT_CHECK(qa_peft_config_parse(&pc, "{\"peft_type\":\"LORA\",\"target_modules\":\".*\\\\.(q_proj|v_proj)\"}", "x", &e) == 0 &&
             pc.module_mask == QA_LORA_MASK_QV, "regex target_modules: %s", e.msg);
    QT_CHECK(qa_peft_config_parse(&pc, "{\"peft_type\":\"LORA\",\"target_modules\":[\"mlp.down_proj\",\"self_attn.o_proj\"]}", "x", &e) == 0 &&
             pc.module_mask == (QA_LORA_BIT(QA_LORA_DOWN) | QA_LORA_BIT(QA_LORA_O)), "suffix target_modules");
    QT_CHECK(qa_peft_config_parse(&pc, "{\"peft_type\":\"LORA\"}", "x", &e) == 0 && pc.r == 8 && pc.alpha == 8 &&
             pc.module_mask == QA_LORA_MASK_QV, "PEFT defaults: r 8, alpha 8, q/v");
    unsigned mask;
    QT_CHECK(qa_lora_parse_modules("q_proj, v_proj", &mask, &e) == 0 && mask == QA_LORA_MASK_QV, "module list");
    QT_CHECK(qa_lora_parse_modules("all", &mask, &e) == 0 && mask == QA_LORA_MASK_ALL, "all modules");
    QT_CHECK(qa_lora_parse_modules("q_proj,lm_head", &mask, &e) != 0 && strstr(e.msg, "lm_head"), "unknown module named");

    /* adapter tensors: missing B, wrong shape, extra tensor -> errors naming the tensor */
    make_tmp();
    qa_hf_config c;
    qa_hf_config_defaults(&c, QA_ARCH_LLAMA);
    c.vocab = 50;
    qa_hf_config_finish(&c);
    qa_peft_config cfg = {.r = 4, .alpha = 8, .module_mask = QA_LORA_MASK_QV};
    qa_peft_adapter a, b;
    QT_CHECK(qa_peft_alloc(&a, SHAPE(&c), &cfg, &e) == 0, "alloc");
    for (size_t i = 0; i < a.n_params; i++) a.params[i] = (float)i * 0.001f;
    char *dir = qa_path_join(g_tmp, "ad");
    QT_CHECK(qa_peft_save(&a, dir, &e) == 0, "save: %s", e.msg);
    QT_CHECK(qa_peft_load(&b, dir, SHAPE(&c), &e) == 0 && !memcmp(a.params, b.params, a.n_params * 4), "load back");
    qa_peft_free(&b);
    /* a model of another shape: A of q_proj has the wrong in_features */
    qa_hf_config c2 = c;
    c2.hidden = 32; c2.head_dim = 8;
    QT_CHECK(qa_peft_load(&b, dir, SHAPE(&c2), &e) != 0 && strstr(e.msg, "lora_A.weight") && strstr(e.msg, "q_proj"),
             "shape mismatch names the tensor: %s", e.msg);
    /* a model with more layers: layer 2's tensors are missing */
    c2 = c;
    c2.n_layers = 3;
    QT_CHECK(qa_peft_load(&b, dir, SHAPE(&c2), &e) != 0 && strstr(e.msg, "layers.2.self_attn.q_proj.lora_A.weight"),
             "missing module names the tensor: %s", e.msg);
    /* fewer layers: an unexpected tensor */
    c2 = c;
    c2.n_layers = 1;
    QT_CHECK(qa_peft_load(&b, dir, SHAPE(&c2), &e) != 0 && strstr(e.msg, "unexpected tensor") && strstr(e.msg, "layers.1."),
             "extra tensor named: %s", e.msg);
    /* a missing lora_B: rewrite the file without it */
    char *sp = qa_path_join(dir, "adapter_model.safetensors");
    qa_safetensors st;
    if (qa_st_open(&st, sp, &e) == 0) {
        qa_st_entry *ents = qa_calloc(st.n_tensors, sizeof *ents);
        size_t k = 0;
        for (size_t i = 0; i < st.n_tensors; i++) {
            if (strstr(st.tensors[i].name, "layers.1.self_attn.v_proj.lora_B")) continue;
            ents[k] = (qa_st_entry){.name = st.tensors[i].name, .dtype = st.tensors[i].dtype, .ndim = 2,
                                    .data = st.tensors[i].data};
            memcpy(ents[k].shape, st.tensors[i].shape, sizeof ents[k].shape);
            k++;
        }
        char *sp2 = qa_path_join(g_tmp, "x.safetensors");
        qa_st_write(sp2, ents, k, NULL, &e);
        qa_st_close(&st);
        rename(sp2, sp);
        free(sp2);
        free(ents);
        QT_CHECK(qa_peft_load(&b, dir, SHAPE(&c), &e) != 0 && strstr(e.msg, "layers.1.self_attn.v_proj.lora_B.weight"),
                 "missing lora_B named: %s", e.msg);
    }
    free(sp);
    free(dir);
    qa_peft_free(&a);
    rm_tmp();
    return qt_finish();
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: test_io fixtures|sharded|roundtrip|config|peft_reject [FIXTURES_HF]\n"); return 2; }
    g_root = fixtures_root(argc, argv);
    if (!strcmp(argv[1], "fixtures")) return test_fixtures();
    if (!strcmp(argv[1], "sharded")) return test_sharded();
    if (!strcmp(argv[1], "roundtrip")) return test_roundtrip();
    if (!strcmp(argv[1], "config")) return test_config();
    if (!strcmp(argv[1], "peft_reject")) return test_peft_reject();
    fprintf(stderr, "test_io: unknown case %s\n", argv[1]);
    return 2;
}
