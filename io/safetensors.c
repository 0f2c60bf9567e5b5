/* safetensors.c — validated zero-copy reader and streaming atomic writer of the safetensors format.
 * Every message starts with the file (or directory) and names the tensor or key at fault. */
#include "io/safetensors.h"
#include "common/qa_mem.h"
#include "common/qa_sbuf.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QA_ST_MAX_HEADER 100000000ull

/* All safetensors dtypes in increasing alignment order (the reference enum order): the writer
 * sorts by this rank, descending. bits: element size in bits (F4 = 4, F6 = 6). */
static const struct st_dtype {
    const char *name;
    int bits;
    qa_dtype dt;
} DTYPES[] = {
    {"BOOL", 8, QA_DT_BOOL},       {"F4", 4, QA_DT_OTHER},          {"F6_E2M3", 6, QA_DT_OTHER},
    {"F6_E3M2", 6, QA_DT_OTHER},   {"U8", 8, QA_DT_U8},             {"I8", 8, QA_DT_I8},
    {"F8_E5M2", 8, QA_DT_OTHER},   {"F8_E4M3", 8, QA_DT_OTHER},     {"F8_E8M0", 8, QA_DT_OTHER},
    {"F8_E4M3FNUZ", 8, QA_DT_OTHER}, {"F8_E5M2FNUZ", 8, QA_DT_OTHER}, {"I16", 16, QA_DT_I16},
    {"U16", 16, QA_DT_U16},        {"F16", 16, QA_DT_F16},          {"BF16", 16, QA_DT_BF16},
    {"I32", 32, QA_DT_I32},        {"U32", 32, QA_DT_U32},          {"F32", 32, QA_DT_F32},
    {"C64", 64, QA_DT_OTHER},      {"F64", 64, QA_DT_F64},          {"I64", 64, QA_DT_I64},
    {"U64", 64, QA_DT_U64},
};
#define N_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

static int dtype_index(const char *name) {
    for (int i = 0; i < N_DTYPES; i++)
        if (!strcmp(DTYPES[i].name, name)) return i;
    return -1;
}

/* ---------------------------------------------------------------- reading */

typedef struct st_raw {
    qa_st_tensor t;
    uint64_t begin, end;
} st_raw;

static int cmp_raw_offsets(const void *a, const void *b) {
    const st_raw *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}
static int cmp_tensor_names(const void *a, const void *b) {
    return strcmp(((const qa_st_tensor *)a)->name, ((const qa_st_tensor *)b)->name);
}

static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ", %" PRId64 : "%" PRId64, shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static void free_raw(st_raw *r, size_t n) {
    for (size_t i = 0; i < n; i++) free(r[i].t.name);
    free(r);
}

/* Parse and validate one tensor entry of the header. */
static int parse_entry(const char *path, const char *name, json_t *v, st_raw *out, qa_err *e) {
    memset(out, 0, sizeof *out);
    if (!json_is_object(v))
        return QA_ERR(e, "%s: header entry '%s' is not an object {dtype, shape, data_offsets}", path, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return QA_ERR(e, "%s: tensor '%s': \"dtype\" is missing or not a string", path, name);
    int di = dtype_index(json_string_value(jd));
    if (di < 0) return QA_ERR(e, "%s: tensor '%s': unknown dtype \"%.32s\"", path, name, json_string_value(jd));
    if (!json_is_array(js)) return QA_ERR(e, "%s: tensor '%s': \"shape\" is missing or not an array", path, name);
    size_t nd = json_array_size(js);
    if (nd > QA_ST_MAX_DIMS)
        return QA_ERR(e, "%s: tensor '%s': %zu dimensions, more than the %d qalign supports", path, name, nd, QA_ST_MAX_DIMS);
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return QA_ERR(e, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, i);
        out->t.shape[i] = json_integer_value(d);
        if (__builtin_mul_overflow(numel, (uint64_t)out->t.shape[i], &numel)) overflow = 1;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return QA_ERR(e, "%s: tensor '%s': \"data_offsets\" is missing or not [BEGIN, END]", path, name);
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 || json_integer_value(je) < 0)
        return QA_ERR(e, "%s: tensor '%s': data_offsets are not non-negative integers", path, name);
    out->begin = (uint64_t)json_integer_value(jb);
    out->end = (uint64_t)json_integer_value(je);
    uint64_t bits;
    if (overflow || numel > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, (uint64_t)DTYPES[di].bits, &bits))
        return QA_ERR(e, "%s: tensor '%s': shape overflows 64 bits", path, name);
    char sh[256];
    fmt_shape(sh, sizeof sh, (int)nd, out->t.shape);
    if (bits % 8)
        return QA_ERR(e, "%s: tensor '%s': %s %s is not a whole number of bytes", path, name, DTYPES[di].name, sh);
    if (out->end < out->begin)
        return QA_ERR(e, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin", path, name,
                      out->begin, out->end);
    if (out->end - out->begin != bits / 8)
        return QA_ERR(e, "%s: tensor '%s': dtype %s shape %s needs %" PRIu64 " bytes but data_offsets [%" PRIu64 ", %" PRIu64
                      "] hold %" PRIu64, path, name, DTYPES[di].name, sh, bits / 8, out->begin, out->end,
                      out->end - out->begin);
    out->t.name = qa_strdup(name);
    out->t.dtype = DTYPES[di].dt;
    snprintf(out->t.dtype_name, sizeof out->t.dtype_name, "%s", DTYPES[di].name);
    out->t.ndim = (int)nd;
    out->t.numel = (int64_t)numel;
    out->t.nbytes = bits / 8;
    return 0;
}

/* Open and validate one file; on success fills map, *tensors (sorted by name, file index fidx), *meta. */
static int open_one(const char *path, int fidx, qa_mmap *map, qa_st_tensor **tensors, size_t *n_out, char **meta,
                    qa_err *e) {
    *tensors = NULL; *n_out = 0; if (meta) *meta = NULL;
    QA_TRY(qa_mmap_open(map, path, e));
    const uint8_t *d = map->data;
    size_t size = map->size;
    if (size < 8) {
        qa_mmap_close(map);
        return QA_ERR(e, "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)", path, size);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | d[i];
    if (n > QA_ST_MAX_HEADER) {
        qa_mmap_close(map);
        return QA_ERR(e, "%s: header length %" PRIu64 " exceeds the 100,000,000-byte limit (not a safetensors file?)",
                      path, n);
    }
    if (n + 8 > size) {
        qa_mmap_close(map);
        return QA_ERR(e, "%s: header length %" PRIu64 " points past the end of the file (%zu bytes; truncated?)", path, n,
                      size);
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)d + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        qa_mmap_close(map);
        return QA_ERR(e, "%s: header is not valid UTF-8 JSON: %s (header line %d column %d)", path, jerr.text,
                      jerr.line, jerr.column);
    }
    if (!json_is_object(root)) {
        json_decref(root); qa_mmap_close(map);
        return QA_ERR(e, "%s: header is not a JSON object", path);
    }
    size_t cap = json_object_size(root), cnt = 0;
    st_raw *raw = qa_calloc(cap ? cap : 1, sizeof *raw);
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val) && !json_is_null(val)) {
                rc = QA_ERR(e, "%s: \"__metadata__\" is not an object of strings", path);
                break;
            }
            const char *mk; json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) { rc = QA_ERR(e, "%s: __metadata__ key '%s' is not a string", path, mk); break; }
            }
            if (rc) break;
            if (meta && json_is_object(val)) *meta = json_dumps(val, JSON_COMPACT | JSON_PRESERVE_ORDER);
            continue;
        }
        if ((rc = parse_entry(path, key, val, &raw[cnt], e))) break;
        raw[cnt].t.file = fidx;
        cnt++;
    }
    json_decref(root);
    if (rc) goto fail;
    /* the buffer must be tiled from 0 by the tensors sorted by offset */
    uint64_t buf_size = (uint64_t)size - 8 - n;
    qsort(raw, cnt, sizeof *raw, cmp_raw_offsets);
    uint64_t pos = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (raw[i].end > buf_size) {
            rc = QA_ERR(e, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] extend past the end of the file "
                        "(data buffer is %" PRIu64 " bytes; truncated?)", path, raw[i].t.name, raw[i].begin, raw[i].end,
                        buf_size);
            goto fail;
        }
        if (raw[i].begin != pos) {
            if (i == 0)
                rc = QA_ERR(e, "%s: tensor '%s' starts at byte %" PRIu64 ", not 0: gap at the start of the data buffer",
                            path, raw[i].t.name, raw[i].begin);
            else
                rc = QA_ERR(e, "%s: tensor '%s' starts at byte %" PRIu64 " but tensor '%s' ends at %" PRIu64 " (%s)",
                            path, raw[i].t.name, raw[i].begin, raw[i - 1].t.name, pos,
                            raw[i].begin > pos ? "gap between tensors" : "overlapping ranges");
            goto fail;
        }
        pos = raw[i].end;
    }
    if (pos != buf_size) {
        rc = QA_ERR(e, "%s: tensors end at data byte %" PRIu64 " but the file holds %" PRIu64 " data bytes (%s)", path,
                    pos, buf_size, pos < buf_size ? "trailing bytes after the last tensor" : "truncated");
        goto fail;
    }
    qa_st_tensor *t = qa_calloc(cnt ? cnt : 1, sizeof *t);
    for (size_t i = 0; i < cnt; i++) {
        t[i] = raw[i].t;
        t[i].data = d + 8 + n + raw[i].begin;
    }
    free(raw);
    qsort(t, cnt, sizeof *t, cmp_tensor_names);
    *tensors = t;
    *n_out = cnt;
    return 0;
fail:
    free_raw(raw, cap);
    if (meta && *meta) { free(*meta); *meta = NULL; }
    qa_mmap_close(map);
    return -1;
}

int qa_st_open(qa_safetensors *st, const char *path, qa_err *e) {
    memset(st, 0, sizeof *st);
    qa_mmap map;
    qa_st_tensor *t;
    size_t n;
    char *meta;
    QA_TRY(open_one(path, 0, &map, &t, &n, &meta, e));
    st->n_files = 1;
    st->paths = qa_malloc(sizeof *st->paths);
    st->paths[0] = qa_strdup(path);
    st->maps = qa_malloc(sizeof *st->maps);
    st->maps[0] = map;
    st->tensors = t;
    st->n_tensors = n;
    st->metadata_json = meta;
    st->source = qa_strdup(path);
    return 0;
}

void qa_st_close(qa_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_files; i++) {
        if (st->maps) qa_mmap_close(&st->maps[i]);
        if (st->paths) free(st->paths[i]);
    }
    free(st->maps);
    free(st->paths);
    free(st->metadata_json);
    free(st->source);
    memset(st, 0, sizeof *st);
}

static int open_sharded(qa_safetensors *st, const char *dir, const char *index_path, qa_err *e) {
    char *text;
    QA_TRY(qa_read_file(index_path, QA_ST_MAX_HEADER, &text, NULL, e));
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) return QA_ERR(e, "%s: not valid JSON: %s (line %d column %d)", index_path, jerr.text, jerr.line, jerr.column);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm)) {
        json_decref(root);
        return QA_ERR(e, "%s: key \"weight_map\" is missing or not an object of tensor name -> shard file", index_path);
    }
    /* distinct shard names, in order of first appearance */
    size_t nmap = json_object_size(wm), nsh = 0;
    const char **shards = qa_calloc(nmap ? nmap : 1, sizeof *shards);
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) { rc = QA_ERR(e, "%s: weight_map['%s'] is not a file name", index_path, key); break; }
        const char *f = json_string_value(val);
        if (!*f || strchr(f, '/') || !strcmp(f, "..") || !strcmp(f, ".")) {
            rc = QA_ERR(e, "%s: weight_map['%s'] = \"%s\" is not a plain file name in the model directory", index_path,
                        key, f);
            break;
        }
        size_t k = 0;
        while (k < nsh && strcmp(shards[k], f)) k++;
        if (k == nsh) shards[nsh++] = f;
    }
    if (!rc && nsh == 0) rc = QA_ERR(e, "%s: weight_map is empty", index_path);
    if (rc) { free(shards); json_decref(root); return -1; }
    st->n_files = (int)nsh;
    st->paths = qa_calloc(nsh, sizeof *st->paths);
    st->maps = qa_calloc(nsh, sizeof *st->maps);
    for (size_t i = 0; i < nsh; i++) st->maps[i].fd = -1;
    qa_st_tensor **parts = qa_calloc(nsh, sizeof *parts);
    size_t *counts = qa_calloc(nsh, sizeof *counts), total = 0;
    for (size_t i = 0; i < nsh && !rc; i++) {
        st->paths[i] = qa_path_join(dir, shards[i]);
        if (!qa_path_exists(st->paths[i])) {
            const char *example = "?";
            json_object_foreach(wm, key, val)
                if (!strcmp(json_string_value(val), shards[i])) { example = key; break; }
            rc = QA_ERR(e, "%s: shard %s (weight_map['%s']) does not exist", index_path, st->paths[i], example);
            break;
        }
        rc = open_one(st->paths[i], (int)i, &st->maps[i], &parts[i], &counts[i],
                      i == 0 ? &st->metadata_json : NULL, e);
        total += counts[i];
    }
    if (!rc) {
        st->tensors = qa_calloc(total ? total : 1, sizeof *st->tensors);
        for (size_t i = 0; i < nsh; i++) {
            memcpy(st->tensors + st->n_tensors, parts[i], counts[i] * sizeof *st->tensors);
            st->n_tensors += counts[i];
            free(parts[i]);
            parts[i] = NULL;
        }
        qsort(st->tensors, st->n_tensors, sizeof *st->tensors, cmp_tensor_names);
        for (size_t i = 1; i < st->n_tensors && !rc; i++)
            if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name))
                rc = QA_ERR(e, "%s: tensor '%s' is in two shards: %s and %s", index_path, st->tensors[i].name,
                            st->paths[st->tensors[i - 1].file], st->paths[st->tensors[i].file]);
        /* the map and the shards must agree exactly */
        json_object_foreach(wm, key, val) {
            if (rc) break;
            const qa_st_tensor *t = qa_st_find(st, key);
            if (!t) {
                rc = QA_ERR(e, "%s: tensor '%s' is mapped to shard %s but that shard does not hold it", index_path, key,
                            json_string_value(val));
            } else if (strcmp(shards[t->file], json_string_value(val))) {
                rc = QA_ERR(e, "%s: tensor '%s' is mapped to shard %s but is stored in %s", index_path, key,
                            json_string_value(val), st->paths[t->file]);
            }
        }
        for (size_t i = 0; i < st->n_tensors && !rc; i++)
            if (!json_object_get(wm, st->tensors[i].name))
                rc = QA_ERR(e, "%s: tensor '%s' is not in the weight_map of %s", st->paths[st->tensors[i].file],
                            st->tensors[i].name, index_path);
    }
    for (size_t i = 0; i < nsh; i++)
        if (parts[i]) {
            for (size_t k = 0; k < counts[i]; k++) free(parts[i][k].name);
            free(parts[i]);
        }
    free(parts);
    free(counts);
    free(shards);
    json_decref(root);
    return rc ? -1 : 0;
}

int qa_st_open_dir(qa_safetensors *st, const char *dir, qa_err *e) {
    memset(st, 0, sizeof *st);
    if (!qa_is_dir(dir)) {
        if (qa_path_exists(dir)) return qa_st_open(st, dir, e);
        return QA_ERR(e, "%s: no such model directory or file", dir);
    }
    char *index = qa_path_join(dir, "model.safetensors.index.json");
    char *single = qa_path_join(dir, "model.safetensors");
    char *adapter = qa_path_join(dir, "adapter_model.safetensors");
    int rc;
    if (qa_path_exists(index)) {
        rc = open_sharded(st, dir, index, e);
        if (rc) qa_st_close(st);
        else st->source = qa_strdup(dir);
    } else if (qa_path_exists(single)) {
        rc = qa_st_open(st, single, e);
    } else if (qa_path_exists(adapter)) {
        rc = qa_st_open(st, adapter, e);
    } else {
        rc = QA_ERR(e, "%s: neither model.safetensors.index.json nor model.safetensors is in this directory", dir);
    }
    free(index); free(single); free(adapter);
    return rc;
}

const qa_st_tensor *qa_st_find(const qa_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

const char *qa_st_file_of(const qa_safetensors *st, const qa_st_tensor *t) {
    if (t && t->file >= 0 && t->file < st->n_files) return st->paths[t->file];
    return st->source ? st->source : (st->n_files ? st->paths[0] : "?");
}

int qa_st_get(const qa_safetensors *st, const char *name, int ndim, const int64_t *shape, const qa_st_tensor **out,
              qa_err *e) {
    if (out) *out = NULL;
    const qa_st_tensor *t = qa_st_find(st, name);
    char want[256], have[256];
    if (!t) {
        if (shape) fmt_shape(want, sizeof want, ndim, shape); else snprintf(want, sizeof want, "?");
        return QA_ERR(e, "%s: tensor '%s' %s is missing", qa_st_file_of(st, NULL), name, want);
    }
    if (shape) {
        int ok = t->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
        if (!ok) {
            fmt_shape(want, sizeof want, ndim, shape);
            fmt_shape(have, sizeof have, t->ndim, t->shape);
            return QA_ERR(e, "%s: tensor '%s' has shape %s but %s was expected", qa_st_file_of(st, t), name, have, want);
        }
    }
    if (out) *out = t;
    return 0;
}

int qa_st_read_f32(const qa_safetensors *st, const qa_st_tensor *t, float *dst, qa_err *e) {
    size_t n = (size_t)t->numel, es = qa_dtype_size(t->dtype);
    switch (t->dtype) {
    case QA_DT_F32: case QA_DT_BF16: case QA_DT_F16: case QA_DT_F64: break;
    default:
        return QA_ERR(e, "%s: tensor '%s' has dtype %s; only F32, F64, BF16 and F16 can be read as floats",
                      qa_st_file_of(st, t), t->name, t->dtype_name);
    }
    if (((uintptr_t)t->data % es) == 0) {
        qa_convert_to_f32(dst, t->data, t->dtype, n);
        return 0;
    }
    /* unaligned data (a header not padded to 8): convert through an aligned bounce buffer */
    uint64_t tmp[512];
    size_t per = sizeof tmp / es;
    for (size_t i = 0; i < n; i += per) {
        size_t k = n - i < per ? n - i : per;
        memcpy(tmp, (const uint8_t *)t->data + i * es, k * es);
        qa_convert_to_f32(dst + i, tmp, t->dtype, k);
    }
    return 0;
}

/* index of the first element of src[0..n) whose exponent bits are all ones (Inf / NaN), or n.
 * Blocks of 4096 are scanned branch-free (vectorized), then the block that has one is searched. */
static size_t first_nonfinite(const uint8_t *src, size_t n, size_t es, uint64_t mask) {
    for (size_t b = 0; b < n; b += 4096) {
        size_t m = n - b < 4096 ? n - b : 4096, bad = 0;
        const uint8_t *p = src + b * es;
        if (es == 2)
            for (size_t i = 0; i < m; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); bad |= (h & mask) == mask; }
        else if (es == 4)
            for (size_t i = 0; i < m; i++) { uint32_t h; memcpy(&h, p + 4 * i, 4); bad |= (h & mask) == mask; }
        else
            for (size_t i = 0; i < m; i++) { uint64_t h; memcpy(&h, p + 8 * i, 8); bad |= (h & mask) == mask; }
        if (!bad) continue;
        for (size_t i = 0; i < m; i++) {
            uint64_t h = 0;
            memcpy(&h, p + es * i, es);
            if ((h & mask) == mask) return b + i;
        }
    }
    return n;
}

int qa_st_check_finite(const qa_safetensors *st, const qa_st_tensor *t, qa_err *e) {
    uint64_t mask;
    switch (t->dtype) {
    case QA_DT_BF16: mask = 0x7f80u; break;
    case QA_DT_F16: mask = 0x7c00u; break;
    case QA_DT_F32: mask = 0x7f800000u; break;
    case QA_DT_F64: mask = 0x7ff0000000000000ull; break;
    default: return 0;
    }
    size_t n = (size_t)t->numel, i = first_nonfinite(t->data, n, qa_dtype_size(t->dtype), mask);
    if (i == n) return 0;
    uint64_t h = 0;
    memcpy(&h, (const uint8_t *)t->data + i * qa_dtype_size(t->dtype), qa_dtype_size(t->dtype));
    int nan = (h & ~mask & (t->dtype == QA_DT_F64 ? 0x000fffffffffffffull : t->dtype == QA_DT_F32 ? 0x7fffffu
                                                   : t->dtype == QA_DT_F16 ? 0x3ffu : 0x7fu)) != 0;
    return QA_ERR(e, "%s: tensor '%s' element %zu is %s: non-finite weights (a damaged or diverged checkpoint)",
                  qa_st_file_of(st, t), t->name, i, nan ? "NaN" : "infinite");
}

/* ---------------------------------------------------------------- writing */

typedef struct w_item {
    const qa_st_entry *ent;
    size_t index;
    int rank;                   /* DTYPES index */
    uint64_t nbytes;
} w_item;

static int cmp_witem(const void *a, const void *b) {
    const w_item *x = a, *y = b;
    if (x->rank != y->rank) return y->rank - x->rank;
    return strcmp(x->ent->name, y->ent->name);
}

/* a JSON string as serde_json writes it */
static void sb_json_str(qa_sbuf *b, const char *s) {
    qa_sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': qa_sb_puts(b, "\\\""); break;
        case '\\': qa_sb_puts(b, "\\\\"); break;
        case '\n': qa_sb_puts(b, "\\n"); break;
        case '\r': qa_sb_puts(b, "\\r"); break;
        case '\t': qa_sb_puts(b, "\\t"); break;
        case '\b': qa_sb_puts(b, "\\b"); break;
        case '\f': qa_sb_puts(b, "\\f"); break;
        default:
            if (*p < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *p); qa_sb_puts(b, esc); }
            else qa_sb_put(b, (const char *)p, 1);
        }
    }
    qa_sb_put(b, "\"", 1);
}

int qa_st_write_stream(const char *path, const qa_st_entry *entries, size_t n, const char *const *metadata_kv,
                       qa_st_fill_fn fill, void *ctx, qa_err *e) {
    w_item *items = qa_calloc(n ? n : 1, sizeof *items);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const qa_st_entry *en = &entries[i];
        const char *dn = en->dtype_name ? en->dtype_name : qa_dtype_name(en->dtype);
        int di = dtype_index(dn);
        if (!en->name || !*en->name || !strcmp(en->name, "__metadata__"))
            { rc = QA_ERR(e, "%s: entry %zu has an empty or reserved name", path, i); break; }
        if (di < 0) { rc = QA_ERR(e, "%s: tensor '%s': dtype %s cannot be written", path, en->name, dn); break; }
        if (en->ndim < 0 || en->ndim > QA_ST_MAX_DIMS)
            { rc = QA_ERR(e, "%s: tensor '%s': bad ndim %d", path, en->name, en->ndim); break; }
        uint64_t numel = 1, bits;
        int ovf = 0;
        for (int k = 0; k < en->ndim; k++) {
            if (en->shape[k] < 0) { rc = QA_ERR(e, "%s: tensor '%s': negative dimension", path, en->name); break; }
            if (__builtin_mul_overflow(numel, (uint64_t)en->shape[k], &numel)) ovf = 1;
        }
        if (rc) break;
        if (ovf || __builtin_mul_overflow(numel, (uint64_t)DTYPES[di].bits, &bits) || bits % 8)
            { rc = QA_ERR(e, "%s: tensor '%s': shape overflows or is not a whole number of bytes", path, en->name); break; }
        if (!en->data && numel && (!fill || DTYPES[di].bits % 8))
            { rc = QA_ERR(e, "%s: tensor '%s' has no data", path, en->name); break; }
        items[i] = (w_item){en, i, di, bits / 8};
    }
    if (rc) { free(items); return -1; }
    qsort(items, n, sizeof *items, cmp_witem);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(items[i].ent->name, items[i - 1].ent->name)) {
            QA_ERR(e, "%s: tensor '%s' is given twice", path, items[i].ent->name);
            free(items);
            return -1;
        }
    /* header: {"__metadata__":{...},"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]},...} */
    qa_sbuf h = {0};
    char num[64];
    qa_sb_puts(&h, "{");
    int first = 1;
    if (metadata_kv && metadata_kv[0]) {
        qa_sb_puts(&h, "\"__metadata__\":{");
        for (size_t k = 0; metadata_kv[k] && metadata_kv[k + 1]; k += 2) {
            if (k) qa_sb_puts(&h, ",");
            sb_json_str(&h, metadata_kv[k]);
            qa_sb_puts(&h, ":");
            sb_json_str(&h, metadata_kv[k + 1]);
        }
        qa_sb_puts(&h, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const qa_st_entry *en = items[i].ent;
        if (!first) qa_sb_puts(&h, ",");
        first = 0;
        sb_json_str(&h, en->name);
        qa_sb_puts(&h, ":{\"dtype\":\"");
        qa_sb_puts(&h, DTYPES[items[i].rank].name);
        qa_sb_puts(&h, "\",\"shape\":[");
        for (int k = 0; k < en->ndim; k++) {
            snprintf(num, sizeof num, k ? ",%" PRId64 : "%" PRId64, en->shape[k]);
            qa_sb_puts(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + items[i].nbytes);
        qa_sb_puts(&h, num);
        off += items[i].nbytes;
    }
    qa_sb_puts(&h, "}");
    while (h.n % 8) qa_sb_puts(&h, " ");
    uint8_t len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (uint8_t)((uint64_t)h.n >> (8 * k));

    qa_atomic a;
    if (qa_atomic_open(&a, path, 0644, e)) {
        free(h.p);
        free(items);
        return -1;
    }
    rc = qa_atomic_write(&a, len8, 8, e);
    if (!rc) rc = qa_atomic_write(&a, h.p, h.n, e);
    const size_t chunk_bytes = (size_t)32 << 20;
    uint8_t *chunk = NULL;
    for (size_t i = 0; i < n && !rc; i++) {
        const qa_st_entry *en = items[i].ent;
        if (en->data) { rc = qa_atomic_write(&a, en->data, items[i].nbytes, e); continue; }
        size_t es = (size_t)DTYPES[items[i].rank].bits / 8;
        if (!chunk) chunk = qa_aligned_alloc(64, chunk_bytes);
        uint64_t numel = items[i].nbytes / es, per = chunk_bytes / es;
        for (uint64_t s = 0; s < numel && !rc; s += per) {
            uint64_t k = numel - s < per ? numel - s : per;
            rc = fill(ctx, en, items[i].index, s, k, chunk, e);
            if (rc) {
                qa_err_prefix(e, "%s: tensor '%s'", path, en->name);
                qa_atomic_abort(&a);
                break;
            }
            rc = qa_atomic_write(&a, chunk, (size_t)(k * es), e);
        }
    }
    free(chunk);
    free(h.p);
    free(items);
    if (rc) return -1;   /* the failed write or the abort above removed the temporary */
    return qa_atomic_commit(&a, e);
}

int qa_st_write(const char *path, const qa_st_entry *entries, size_t n, const char *const *metadata_kv, qa_err *e) {
    return qa_st_write_stream(path, entries, n, metadata_kv, NULL, NULL, e);
}

int qa_st_dtype_bits(const char *name) {
    int i = dtype_index(name);
    return i < 0 ? 0 : DTYPES[i].bits;
}
