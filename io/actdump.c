/* actdump.c — the activation-dump HDF5 file (layout in actdump.h). */
#include "io/actdump.h"
#include "io/h5util.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LAYERS_TEXT                                                                                           \
    "Hugging Face hidden_states: layer_00 = embedding output, layer_i = output of decoder layer i, the last " \
    "layer after the final norm"

static void layer_name(int n_layers, const char *pool, int layer, char *buf, size_t cap) {
    snprintf(buf, cap, n_layers >= 100 ? "/%s/layer_%03d" : "/%s/layer_%02d", pool, layer);
}

void qa_actdump_layer_name(const qa_actdump *d, const char *pool, int layer, char *buf, size_t cap) {
    layer_name(d->n_layers, pool, layer, buf, cap);
}

static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) { H5Tclose(t); return -1; }
    return t;
}

/* crc32c of a string dataset: every string's bytes followed by one NUL, in order */
static uint32_t strs_crc(const char *const *v, int64_t n) {
    uint32_t c = 0;
    for (int64_t i = 0; i < n; i++) c = qa_crc32c(c, v[i] ? v[i] : "", strlen(v[i] ? v[i] : "") + 1);
    return c;
}

/* a 1-D dataset of n vlen UTF-8 strings, with attr crc32c */
static int write_strs(hid_t loc, const char *name, const char *const *v, int64_t n, qa_err *e) {
    hid_t t = -1, space = -1, d = -1;
    int rc = -1;
    hsize_t dims[1] = {(hsize_t)n};
    QA_H5(e, t = vlen_utf8(), "cannot make a UTF-8 string type");
    QA_H5(e, space = H5Screate_simple(1, dims, NULL), "cannot create the dataspace of %s", name);
    QA_H5(e, d = H5Dcreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create dataset %s",
          name);
    if (n > 0) QA_H5(e, H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), "writing dataset %s failed", name);
    if (qa_h5_attr_u32(d, "crc32c", strs_crc(v, n), e)) goto fail;
    rc = 0;
fail:
    qa_h5_close(&d);
    qa_h5_close(&space);
    qa_h5_close(&t);
    return rc;
}

static const char *str_or_empty(const char *s) { return s ? s : ""; }

/* ---- writer ----------------------------------------------------------------------------------- */
struct qa_actdump_writer {
    char *path, *partial;   /* partial: "<path>.tmp.<random>", created exclusively */
    hid_t file;
    int L, D, pools[2];
    int64_t n;
    hid_t *dsets;       /* [2 * (L+1)]: last layers then mean layers (-1 when the pool is off) */
    uint32_t *crc;      /* [2 * (L+1)]: running crc32c of each layer dataset while rows come in order */
    int in_order;       /* every write_rows so far started at row `written` */
    int64_t written;    /* rows written (rows are written once each, in any order) */
};

static const char *POOL[2] = {"last", "mean"};

static void writer_free(qa_actdump_writer *w) {
    if (!w) return;
    if (w->dsets)
        for (int i = 0; i < 2 * (w->L + 1); i++) qa_h5_close(&w->dsets[i]);
    free(w->dsets);
    free(w->crc);
    qa_h5_close(&w->file);
    free(w->path);
    free(w->partial);
    free(w);
}

void qa_actdump_abort(qa_actdump_writer *w) {
    if (!w) return;
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    char *p = w->partial ? qa_strdup(w->partial) : NULL;
    writer_free(w);
    qa_h5_quiet_end(&q);
    if (p) unlink(p);
    free(p);
}

static int create_layers(qa_actdump_writer *w, qa_err *e) {
    hid_t space = -1, dcpl = -1, lcpl = -1;
    int rc = -1;
    hsize_t dims[2] = {(hsize_t)w->n, (hsize_t)w->D}, chunk[2];
    int64_t shape[2] = {w->n, w->D};
    qa_h5_chunk_dims(2, shape, sizeof(float), (size_t)1 << 20, chunk);
    chunk[1] = (hsize_t)w->D; /* whole rows */
    QA_H5(e, space = H5Screate_simple(2, dims, NULL), "cannot create a [%lld, %d] dataspace", (long long)w->n, w->D);
    QA_H5(e, dcpl = H5Pcreate(H5P_DATASET_CREATE), "cannot create a dataset-create property list");
    if (w->n > 0) {
        QA_H5(e, H5Pset_chunk(dcpl, 2, chunk), "cannot set the chunking of the layer datasets");
        QA_H5(e, H5Pset_shuffle(dcpl), "cannot add the shuffle filter");
        QA_H5(e, H5Pset_deflate(dcpl, 4), "cannot add the deflate filter (HDF5 built without zlib?)");
        QA_H5(e, H5Pset_fletcher32(dcpl), "cannot add the fletcher32 filter");
    }
    QA_H5(e, lcpl = H5Pcreate(H5P_LINK_CREATE), "cannot create a link-create property list");
    QA_H5(e, H5Pset_create_intermediate_group(lcpl, 1), "cannot enable intermediate groups");
    for (int p = 0; p < 2; p++) {
        if (!w->pools[p]) continue;
        hid_t g = qa_h5_create_group(w->file, POOL[p], e);
        if (g < 0) goto fail;
        int bad = qa_h5_attr_str(g, "description",
                                 p == 0 ? "hidden state at the last prompt position, per layer [N, D]"
                                        : "mean of the hidden states over all prompt positions, per layer [N, D]",
                                 e);
        qa_h5_close(&g);
        if (bad) goto fail;
        for (int l = 0; l <= w->L; l++) {
            char name[64];
            layer_name(w->L, POOL[p], l, name, sizeof name);
            hid_t *d = &w->dsets[p * (w->L + 1) + l];
            QA_H5(e, *d = H5Dcreate2(w->file, name, H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT),
                  "%s: cannot create dataset %s", w->partial, name);
            if (qa_h5_attr_i64(*d, "layer", l, e) || qa_h5_attr_str(*d, "pool", POOL[p], e)) goto fail;
        }
    }
    rc = 0;
fail:
    qa_h5_close(&lcpl);
    qa_h5_close(&dcpl);
    qa_h5_close(&space);
    return rc;
}

static int write_items(qa_actdump_writer *w, const qa_actdump_item *it, qa_err *e) {
    const int64_t n = w->n;
    const char **s = qa_malloc(sizeof(char *) * (size_t)(n ? n : 1));
    int64_t *v = qa_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int rc = -1;
    hid_t g = qa_h5_create_group(w->file, "items", e);
    if (g < 0) goto out;
    for (int64_t i = 0; i < n; i++) s[i] = it[i].task;
    if (write_strs(g, "task", s, n, e)) goto out;
    for (int64_t i = 0; i < n; i++) s[i] = it[i].lang;
    if (write_strs(g, "lang", s, n, e)) goto out;
    for (int64_t i = 0; i < n; i++) s[i] = it[i].gold_text ? it[i].gold_text : "";
    if (write_strs(g, "gold_text", s, n, e)) goto out;
    int64_t shape[1] = {n};
    qa_h5_dset_opts o = {0, 4, 1};
    static const char *const names[3] = {"index", "gold", "n_tokens"};
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; i < n; i++) v[i] = k == 0 ? it[i].index : k == 1 ? it[i].gold : it[i].n_tokens;
        hid_t d = -1;
        int bad = qa_h5_write(g, names[k], QA_H5_I64, 1, shape, v, &o, &d, e) ||
                  qa_h5_attr_u32(d, "crc32c", qa_crc32c(0, v, sizeof *v * (size_t)n), e);
        qa_h5_close(&d);
        if (bad) goto out;
    }
    rc = 0;
out:
    qa_h5_close(&g);
    free(s);
    free(v);
    return rc;
}

static int write_labels(qa_actdump_writer *w, const qa_actdump_labels *lb, int n_tasks, qa_err *e) {
    for (int t = 0; t < n_tasks; t++) {
        char name[300];
        snprintf(name, sizeof name, "labels/%s", lb[t].task);
        hid_t g = qa_h5_create_group(w->file, name, e);
        if (g < 0) return -1;
        int bad = qa_h5_attr_strs(g, "labels", lb[t].labels, (size_t)lb[t].n_labels, e) ||
                  qa_h5_attr_strs(g, "english", lb[t].english, (size_t)lb[t].n_labels, e);
        for (int l = 0; l < lb[t].n_langs && !bad; l++) {
            char an[64];
            snprintf(an, sizeof an, "target_%s", lb[t].langs[l]);
            bad = qa_h5_attr_strs(g, an, lb[t].target + (size_t)l * lb[t].n_labels, (size_t)lb[t].n_labels, e);
        }
        qa_h5_close(&g);
        if (bad) return -1;
    }
    return 0;
}

int qa_actdump_create(qa_actdump_writer **out, const char *path, const qa_actdump_info *info,
                      const qa_actdump_item *items, const qa_actdump_labels *labels, int n_tasks, qa_err *e) {
    *out = NULL;
    if (info->n_layers <= 0 || info->hidden <= 0 || info->n_items < 0)
        return QA_ERR(e, "activation dump %s: bad shape (layers %d, hidden %d, items %lld)", path, info->n_layers,
                      info->hidden, (long long)info->n_items);
    if (!info->has_last && !info->has_mean)
        return QA_ERR(e, "activation dump %s: no pool selected (last and/or mean)", path);
    if (info->n_layers > QA_ACTDUMP_MAX_LAYERS || info->hidden > QA_ACTDUMP_MAX_HIDDEN)
        return QA_ERR(e, "activation dump %s: %d layers x hidden %d is beyond what a dump holds", path, info->n_layers,
                      info->hidden);
    QA_TRY(qa_check_output(path, e));
    qa_actdump_writer *w = qa_calloc(1, sizeof *w);
    w->file = -1;
    w->path = qa_strdup(path);
    w->partial = qa_tmp_name(path);
    w->in_order = 1;
    w->L = info->n_layers;
    w->D = info->hidden;
    w->n = info->n_items;
    w->pools[0] = info->has_last;
    w->pools[1] = info->has_mean;
    w->dsets = qa_malloc(sizeof(hid_t) * 2 * (size_t)(w->L + 1));
    w->crc = qa_calloc(2 * (size_t)(w->L + 1), sizeof *w->crc);
    for (int i = 0; i < 2 * (w->L + 1); i++) w->dsets[i] = -1;
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    int rc = -1;
    char pools[16];
    snprintf(pools, sizeof pools, "%s%s%s", info->has_last ? "last" : "", info->has_last && info->has_mean ? "," : "",
             info->has_mean ? "mean" : "");
    /* the directory of the file */
    char *dir = qa_strdup(path), *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        if (qa_mkdir_p(dir, e)) { free(dir); goto out; }
    }
    free(dir);
    w->file = qa_h5_create_file(w->partial, e);
    if (w->file < 0) goto out;
#define S(k, v) qa_h5_attr_str(w->file, k, str_or_empty(v), e)
    if (S("format", QA_ACTDUMP_FORMAT) || qa_h5_attr_i64(w->file, "version", QA_ACTDUMP_VERSION, e) ||
        S("model", info->model) || S("adapter", info->adapter) || S("model_type", info->model_type) ||
        S("precision", info->precision) || S("tokenizer", info->tokenizer) ||
        S("prompt_variant", info->prompt_variant) || S("gold_mode", info->gold_mode) || S("tasks", info->tasks) ||
        S("languages", info->langs) || qa_h5_attr_i64(w->file, "n_layers", info->n_layers, e) ||
        qa_h5_attr_i64(w->file, "hidden", info->hidden, e) || qa_h5_attr_i64(w->file, "vocab", info->vocab, e) ||
        qa_h5_attr_i64(w->file, "n_items", info->n_items, e) || S("dtype", "float32") || S("layers", LAYERS_TEXT) ||
        S("pools", pools) || S("created_by", "qalign eval --dump-activations"))
        goto out;
#undef S
    if (write_items(w, items, e) || write_labels(w, labels, n_tasks, e) || create_layers(w, e)) goto out;
    rc = 0;
out:
    qa_h5_quiet_end(&q);
    if (rc) {
        qa_err_prefix(e, "activation dump %s", path);
        qa_actdump_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

int qa_actdump_write_rows(qa_actdump_writer *w, int64_t row0, int64_t n, const float *last, const float *mean,
                          qa_err *e) {
    if (row0 < 0 || n < 0 || row0 + n > w->n)
        return QA_ERR(e, "activation dump %s: rows [%lld, %lld) outside [0, %lld)", w->path, (long long)row0,
                      (long long)(row0 + n), (long long)w->n);
    if (n == 0) return 0;
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    hid_t fs = -1, ms = -1;
    int rc = -1;
    const float *src[2] = {last, mean};
    hsize_t mdims[3] = {(hsize_t)n, (hsize_t)(w->L + 1), (hsize_t)w->D};
    QA_H5(e, ms = H5Screate_simple(3, mdims, NULL), "cannot create the memory dataspace");
    for (int p = 0; p < 2; p++) {
        if (!w->pools[p]) continue;
        if (!src[p]) {
            QA_ERR(e, "no %s rows given", POOL[p]);
            goto fail;
        }
        for (int l = 0; l <= w->L; l++) {
            hid_t d = w->dsets[p * (w->L + 1) + l];
            hsize_t fstart[2] = {(hsize_t)row0, 0}, fcount[2] = {(hsize_t)n, (hsize_t)w->D};
            hsize_t mstart[3] = {0, (hsize_t)l, 0}, mcount[3] = {(hsize_t)n, 1, (hsize_t)w->D};
            QA_H5(e, fs = H5Dget_space(d), "cannot get a file dataspace");
            QA_H5(e, H5Sselect_hyperslab(fs, H5S_SELECT_SET, fstart, NULL, fcount, NULL), "cannot select rows");
            QA_H5(e, H5Sselect_hyperslab(ms, H5S_SELECT_SET, mstart, NULL, mcount, NULL), "cannot select a layer");
            QA_H5(e, H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, src[p]), "writing %s layer %d rows %lld.. failed",
                  POOL[p], l, (long long)row0);
            qa_h5_close(&fs);
            if (row0 == w->written && w->in_order) {
                uint32_t *c = &w->crc[p * (w->L + 1) + l];
                for (int64_t i = 0; i < n; i++)
                    *c = qa_crc32c(*c, src[p] + ((size_t)i * (size_t)(w->L + 1) + (size_t)l) * (size_t)w->D,
                                   sizeof(float) * (size_t)w->D);
            }
        }
    }
    if (row0 != w->written) w->in_order = 0;
    w->written += n;
    rc = 0;
fail:
    qa_h5_close(&fs);
    qa_h5_close(&ms);
    qa_h5_quiet_end(&q);
    if (rc) qa_err_prefix(e, "activation dump %s", w->partial);
    return rc;
}

/* the crc32c of a whole layer dataset read back (rows written out of order) */
static int crc_of_dataset(hid_t d, int64_t n, int D, uint32_t *out, qa_err *e) {
    float *buf = qa_malloc(sizeof(float) * (size_t)(n ? n : 1) * (size_t)D);
    int rc = qa_h5_read_all(d, "activation dump layer", QA_H5_F32, buf, e);
    if (!rc) *out = qa_crc32c(0, buf, sizeof(float) * (size_t)n * (size_t)D);
    free(buf);
    return rc;
}

int qa_actdump_finish(qa_actdump_writer *w, qa_err *e) {
    if (w->written != w->n) {
        QA_ERR(e, "activation dump %s: %lld of %lld rows were written", w->path, (long long)w->written,
               (long long)w->n);
        qa_actdump_abort(w);
        return -1;
    }
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    int bad = 0;
    for (int i = 0; i < 2 * (w->L + 1) && !bad; i++) {
        if (w->dsets[i] < 0) continue;
        uint32_t c = w->crc[i];
        bad = (!w->in_order && crc_of_dataset(w->dsets[i], w->n, w->D, &c, e)) ||
              qa_h5_attr_u32(w->dsets[i], "crc32c", c, e);
    }
    for (int i = 0; i < 2 * (w->L + 1); i++) qa_h5_close(&w->dsets[i]);
    herr_t st = bad ? 0 : H5Fclose(w->file);
    if (!bad) w->file = -1;
    if (st < 0) qa_h5_fail(e, __FILE__, __LINE__, "activation dump %s: closing the file failed", w->partial);
    qa_h5_quiet_end(&q);
    if (bad || st < 0) {
        qa_err_prefix(e, "activation dump %s not written", w->path);
        qa_actdump_abort(w);
        return -1;
    }
    /* the whole-file checksum first (it names the final path), then the file itself */
    uint32_t crc;
    uint64_t size;
    if (qa_h5_file_crc32c(w->partial, &crc, &size, e) || qa_h5_sidecar_write(w->path, crc, size, e) ||
        qa_commit_rename(w->partial, w->path, e)) {
        qa_err_prefix(e, "activation dump %s not written", w->path);
        qa_actdump_abort(w);
        return -1;
    }
    writer_free(w);
    return 0;
}

/* ---- reader ----------------------------------------------------------------------------------- */
static int read_strs(hid_t loc, const char *name, const char *what, int64_t n, char ***out, qa_err *e) {
    hid_t d = -1, t = -1, s = -1;
    int rc = -1;
    char **v = NULL;
    *out = NULL;
    QA_H5(e, d = H5Dopen2(loc, name, H5P_DEFAULT), "%s: dataset /items/%s is missing", what, name);
    QA_H5(e, s = H5Dget_space(d), "%s: /items/%s: cannot read its shape", what, name);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    if (np != n) {
        QA_ERR(e, "%s: /items/%s has %lld entries, expected n_items = %lld", what, name, (long long)np, (long long)n);
        goto fail;
    }
    QA_H5(e, t = H5Dget_type(d), "%s: /items/%s: cannot read its type", what, name);
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) <= 0) {
        QA_ERR(e, "%s: /items/%s is not a variable-length string dataset", what, name);
        goto fail;
    }
    qa_h5_close(&t);
    QA_H5(e, t = vlen_utf8(), "cannot make a UTF-8 string type");
    v = qa_calloc((size_t)(n ? n : 1), sizeof *v);
    if (n > 0) QA_H5(e, H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), "%s: reading /items/%s failed", what, name);
    int missing = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!v[i] && missing < 0) missing = (int)(i < INT32_MAX ? i : INT32_MAX);
        char *c = qa_strdup(v[i] ? v[i] : "");
        if (v[i]) H5free_memory(v[i]);
        v[i] = c;
    }
    if (missing >= 0) {
        QA_ERR(e, "%s: /items/%s[%d] is not stored (a damaged string heap)", what, name, missing);
        goto fail;
    }
    if (qa_h5_has_attr(d, "crc32c")) {
        uint32_t want;
        if (qa_h5_get_attr_u32(d, "crc32c", what, &want, e)) goto fail;
        uint32_t got = strs_crc((const char *const *)v, n);
        if (got != want) {
            QA_ERR(e, "%s: /items/%s: crc32c mismatch (stored %08x, data %08x): the dump was modified or damaged", what,
                   name, want, got);
            goto fail;
        }
    }
    *out = v;
    v = NULL;
    rc = 0;
fail:
    if (v)
        for (int64_t i = 0; i < n; i++) free(v[i]);
    free(v);
    qa_h5_close(&t);
    qa_h5_close(&s);
    qa_h5_close(&d);
    return rc;
}

static int read_i64s(hid_t loc, const char *name, const char *what, int64_t n, int64_t **out, qa_err *e) {
    hid_t d = -1;
    int rc = -1;
    *out = NULL;
    char w2[1200];
    snprintf(w2, sizeof w2, "%s: /items/%s", what, name);
    int nd;
    int64_t shape[4];
    QA_H5(e, d = H5Dopen2(loc, name, H5P_DEFAULT), "%s: dataset /items/%s is missing", what, name);
    if (qa_h5_dset_shape(d, w2, 1, &nd, shape, NULL, e)) goto fail;
    if (nd != 1 || shape[0] != n) {
        QA_ERR(e, "%s has %lld entries, expected n_items = %lld", w2, nd == 1 ? (long long)shape[0] : -1LL,
               (long long)n);
        goto fail;
    }
    *out = qa_calloc((size_t)(n ? n : 1), sizeof(int64_t));
    if (qa_h5_read_all(d, w2, QA_H5_I64, *out, e)) goto fail;
    if (qa_h5_has_attr(d, "crc32c")) {
        uint32_t want;
        if (qa_h5_get_attr_u32(d, "crc32c", w2, &want, e)) goto fail;
        uint32_t got = qa_crc32c(0, *out, sizeof(int64_t) * (size_t)n);
        if (got != want) {
            QA_ERR(e, "%s: crc32c mismatch (stored %08x, data %08x): the dump was modified or damaged", w2, want, got);
            goto fail;
        }
    }
    rc = 0;
fail:
    qa_h5_close(&d);
    return rc;
}

static void free_strv(char **v, int64_t n) {
    if (!v) return;
    for (int64_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void qa_actdump_close(qa_actdump *d) {
    if (!d) return;
    hid_t f = (hid_t)d->file;
    qa_h5_close(&f);
    free(d->path);
    free(d->model);
    free(d->adapter);
    free(d->model_type);
    free(d->precision);
    free(d->tokenizer);
    free(d->prompt_variant);
    free(d->gold_mode);
    free_strv(d->task, d->n);
    free_strv(d->lang, d->n);
    free_strv(d->gold_text, d->n);
    free(d->index);
    free(d->gold);
    free(d->n_tokens);
    for (int i = 0; i < d->n_labelsets; i++) {
        qa_actdump_labelset *ls = &d->labelsets[i];
        free(ls->task);
        free_strv(ls->labels, ls->n_labels);
        free_strv(ls->english, ls->n_labels);
        free_strv(ls->langs, ls->n_langs);
        free_strv(ls->target, (int64_t)ls->n_langs * ls->n_labels);
    }
    free(d->labelsets);
    memset(d, 0, sizeof *d);
    d->file = -1;
}

typedef struct iter_ctx {
    qa_actdump *d;
    const char *what;
    qa_err *e;
    int bad;
} iter_ctx;

/* one /labels/<task> group */
static herr_t label_cb(hid_t g, const char *name, const H5L_info_t *info, void *u) {
    (void)info;
    iter_ctx *c = u;
    qa_actdump *d = c->d;
    hid_t t = H5Gopen2(g, name, H5P_DEFAULT);
    char what[1200];
    snprintf(what, sizeof what, "%s: group /labels/%s", c->what, name);
    if (t < 0) {
        QA_ERR(c->e, "%s cannot be opened", what);
        c->bad = 1;
        return -1;
    }
    d->labelsets = qa_realloc(d->labelsets, sizeof *d->labelsets * (size_t)(d->n_labelsets + 1));
    qa_actdump_labelset *ls = &d->labelsets[d->n_labelsets++];
    memset(ls, 0, sizeof *ls);
    ls->task = qa_strdup(name);
    size_t nl = 0, ne = 0;
    if (qa_h5_get_attr_strs(t, "labels", what, &ls->labels, &nl, c->e) ||
        qa_h5_get_attr_strs(t, "english", what, &ls->english, &ne, c->e)) {
        qa_h5_free_strs(ls->labels, nl);
        ls->labels = NULL;
        c->bad = 1;
        H5Gclose(t);
        return -1;
    }
    if (ne != nl || nl == 0) {
        QA_ERR(c->e, "%s: %zu labels but %zu English words", what, nl, ne);
        qa_h5_free_strs(ls->labels, nl);
        qa_h5_free_strs(ls->english, ne);
        ls->labels = ls->english = NULL;
        c->bad = 1;
        H5Gclose(t);
        return -1;
    }
    ls->n_labels = (int)nl;
    H5O_info_t oi;
    if (H5Oget_info2(t, &oi, H5O_INFO_NUM_ATTRS) >= 0) {
        for (hsize_t a = 0; a < oi.num_attrs; a++) {
            char an[256];
            if (H5Aget_name_by_idx(t, ".", H5_INDEX_NAME, H5_ITER_INC, a, an, sizeof an, H5P_DEFAULT) < 0) continue;
            if (strncmp(an, "target_", 7)) continue;
            char **v = NULL;
            size_t nv = 0;
            if (qa_h5_get_attr_strs(t, an, what, &v, &nv, c->e)) { c->bad = 1; break; }
            if (nv != nl) {
                qa_h5_free_strs(v, nv);
                QA_ERR(c->e, "%s: attribute %s has %zu words for %zu labels", what, an, nv, nl);
                c->bad = 1;
                break;
            }
            ls->langs = qa_realloc(ls->langs, sizeof(char *) * (size_t)(ls->n_langs + 1));
            ls->target = qa_realloc(ls->target, sizeof(char *) * (size_t)(ls->n_langs + 1) * nl);
            ls->langs[ls->n_langs] = qa_strdup(an + 7);
            memcpy(ls->target + (size_t)ls->n_langs * nl, v, sizeof(char *) * nl);
            free(v);
            ls->n_langs++;
        }
    }
    H5Gclose(t);
    return c->bad ? -1 : 0;
}

/* an int attribute within [lo, hi] (a value past int is an error, never truncated) */
static int get_i(hid_t f, const char *name, const char *what, int64_t lo, int64_t hi, int *out, qa_err *e) {
    int64_t v;
    QA_TRY(qa_h5_get_attr_i64(f, name, what, &v, e));
    if (v < lo || v > hi)
        return QA_ERR(e, "%s: attribute %s = %lld is outside [%lld, %lld]", what, name, (long long)v, (long long)lo,
                      (long long)hi);
    *out = (int)v;
    return 0;
}

int qa_actdump_open(qa_actdump *d, const char *path, qa_err *e) {
    memset(d, 0, sizeof *d);
    d->file = -1;
    d->path = qa_strdup(path);
    char what[1100];
    snprintf(what, sizeof what, "activation dump %s", path);
    if (!qa_path_exists(path)) {
        QA_ERR(e, "%s does not exist (write one with qalign eval --dump-activations FILE)", what);
        qa_actdump_close(d);
        return -1;
    }
    if (qa_h5_sidecar_check(path, 0, e)) { /* before HDF5 parses a byte of it */
        qa_err_prefix(e, "activation dump");
        qa_actdump_close(d);
        return -1;
    }
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    int rc = -1;
    hid_t f = qa_h5_open_file_ro(path, e), items = -1;
    if (f < 0) goto out;
    d->file = f;
    if (qa_h5_check_self_contained(f, what, e)) goto out;
    char *fmt = NULL;
    if (!qa_h5_has_attr(f, "format") || qa_h5_get_attr_str(f, "format", what, &fmt, e) ||
        strcmp(fmt, QA_ACTDUMP_FORMAT)) {
        QA_ERR(e, "%s is not an activation dump (root attribute format = \"%s\" expected, found %s%s%s)", path,
               QA_ACTDUMP_FORMAT, fmt ? "\"" : "", fmt ? fmt : "none", fmt ? "\"" : "");
        free(fmt);
        goto out;
    }
    free(fmt);
    int64_t n_items = 0;
    if (get_i(f, "version", what, 0, INT32_MAX, &d->version, e)) goto out;
    if (d->version < 1 || d->version > QA_ACTDUMP_VERSION) {
        QA_ERR(e, "%s: format version %d is not supported (this qalign reads version %d)", what, d->version,
               QA_ACTDUMP_VERSION);
        goto out;
    }
    if (get_i(f, "n_layers", what, 1, QA_ACTDUMP_MAX_LAYERS, &d->n_layers, e) ||
        get_i(f, "hidden", what, 1, QA_ACTDUMP_MAX_HIDDEN, &d->hidden, e) ||
        get_i(f, "vocab", what, 0, INT32_MAX, &d->vocab, e) || qa_h5_get_attr_i64(f, "n_items", what, &n_items, e))
        goto out;
    if (n_items < 0 || n_items > QA_ACTDUMP_MAX_ITEMS || n_items * (int64_t)d->hidden > ((int64_t)1 << 34)) {
        QA_ERR(e, "%s: bad shape attributes (n_layers %d, hidden %d, n_items %lld)", what, d->n_layers, d->hidden,
               (long long)n_items);
        goto out;
    }
#define GS(k, dst) (qa_h5_has_attr(f, k) ? qa_h5_get_attr_str(f, k, what, &(dst), e) : ((dst) = qa_strdup(""), 0))
    if (GS("model", d->model) || GS("adapter", d->adapter) || GS("model_type", d->model_type) ||
        GS("precision", d->precision) || GS("tokenizer", d->tokenizer) || GS("prompt_variant", d->prompt_variant) ||
        GS("gold_mode", d->gold_mode))
        goto out;
#undef GS
    if (!qa_h5_exists(f, "items")) {
        QA_ERR(e, "%s: group /items is missing", what);
        goto out;
    }
    items = H5Gopen2(f, "items", H5P_DEFAULT);
    if (items < 0) {
        QA_ERR(e, "%s: /items cannot be opened", what);
        goto out;
    }
    d->n = n_items;
    if (read_strs(items, "task", what, n_items, &d->task, e)) goto out;
    if (read_strs(items, "lang", what, n_items, &d->lang, e)) goto out;
    if (read_strs(items, "gold_text", what, n_items, &d->gold_text, e)) goto out;
    if (read_i64s(items, "index", what, n_items, &d->index, e) || read_i64s(items, "gold", what, n_items, &d->gold, e) ||
        read_i64s(items, "n_tokens", what, n_items, &d->n_tokens, e))
        goto out;
    for (int64_t i = 0; i < n_items; i++) {
        if (!d->task[i][0] || !d->lang[i][0] || d->index[i] < 0 || d->gold[i] < -1 || d->n_tokens[i] < 1) {
            QA_ERR(e, "%s: item %lld is malformed (task '%s', language '%s', index %lld, gold %lld, %lld tokens)", what,
                   (long long)i, d->task[i], d->lang[i], (long long)d->index[i], (long long)d->gold[i],
                   (long long)d->n_tokens[i]);
            goto out;
        }
    }
    d->has_last = qa_h5_exists(f, "last");
    d->has_mean = qa_h5_exists(f, "mean");
    if (!d->has_last && !d->has_mean) {
        QA_ERR(e, "%s: neither /last nor /mean is present (no activations in the file)", what);
        goto out;
    }
    if (qa_h5_exists(f, "labels")) {
        hid_t g = H5Gopen2(f, "labels", H5P_DEFAULT);
        iter_ctx c = {d, what, e, 0};
        if (g >= 0) {
            H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, label_cb, &c);
            H5Gclose(g);
        }
        if (c.bad) goto out;
    }
    rc = 0;
out:
    qa_h5_close(&items);
    qa_h5_quiet_end(&q);
    if (rc) qa_actdump_close(d);
    return rc;
}

int qa_actdump_read_layer(const qa_actdump *d, const char *pool, int layer, float *out, qa_err *e) {
    char name[64];
    layer_name(d->n_layers, pool, layer, name, sizeof name);
    if (layer < 0 || layer > d->n_layers)
        return QA_ERR(e, "activation dump %s: layer %d outside [0, %d]", d->path, layer, d->n_layers);
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    hid_t ds = -1;
    int rc = -1;
    char what[1200];
    snprintf(what, sizeof what, "activation dump %s: dataset %s", d->path, name);
    if (!qa_h5_exists((hid_t)d->file, name + 1)) {
        QA_ERR(e, "%s is missing (the file holds pools:%s%s; a truncated or hand-edited dump?)", what,
               d->has_last ? " last" : "", d->has_mean ? " mean" : "");
        goto out;
    }
    QA_H5(e, ds = H5Dopen2((hid_t)d->file, name, H5P_DEFAULT), "%s cannot be opened", what);
    int nd;
    int64_t shape[4];
    qa_h5_dt dt;
    if (qa_h5_dset_shape(ds, what, 4, &nd, shape, &dt, e)) goto out;
    if (nd != 2 || shape[0] != d->n || shape[1] != d->hidden) {
        QA_ERR(e, "%s has shape [%lld%s%lld], expected [n_items, hidden] = [%lld, %d]", what,
               nd > 0 ? (long long)shape[0] : 0LL, nd > 1 ? ", " : "", nd > 1 ? (long long)shape[1] : 0LL,
               (long long)d->n, d->hidden);
        goto out;
    }
    if (dt != QA_H5_F32 && dt != QA_H5_F64) {
        QA_ERR(e, "%s is not a floating-point dataset", what);
        goto out;
    }
    if (qa_h5_read_all(ds, what, QA_H5_F32, out, e)) goto out;
    const size_t nv = (size_t)d->n * (size_t)d->hidden;
    if (dt == QA_H5_F32 && qa_h5_has_attr(ds, "crc32c")) {
        uint32_t want;
        if (qa_h5_get_attr_u32(ds, "crc32c", what, &want, e)) goto out;
        uint32_t got = qa_crc32c(0, out, sizeof(float) * nv);
        if (got != want) {
            QA_ERR(e, "%s: crc32c mismatch (stored %08x, data %08x): the dump was modified or damaged", what, want, got);
            goto out;
        }
    }
    for (size_t i = 0; i < nv; i++)
        if (!isfinite(out[i])) {
            QA_ERR(e, "%s: item %zu, dimension %zu is %s: non-finite activations (a model or adapter with non-finite "
                   "weights, or an overflow)", what, i / (size_t)d->hidden, i % (size_t)d->hidden,
                   isnan(out[i]) ? "NaN" : "infinite");
            goto out;
        }
    rc = 0;
fail:
out:
    qa_h5_close(&ds);
    qa_h5_quiet_end(&q);
    return rc;
}

const qa_actdump_labelset *qa_actdump_labels_of(const qa_actdump *d, const char *task) {
    for (int i = 0; i < d->n_labelsets; i++)
        if (!strcmp(d->labelsets[i].task, task)) return &d->labelsets[i];
    return NULL;
}

const char *qa_actdump_target_word(const qa_actdump_labelset *ls, const char *lang, int label) {
    if (!ls || label < 0 || label >= ls->n_labels) return NULL;
    for (int l = 0; l < ls->n_langs; l++)
        if (!strcmp(ls->langs[l], lang)) return ls->target[(size_t)l * ls->n_labels + label];
    return NULL;
}
