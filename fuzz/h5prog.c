/* h5prog.c — see h5prog.h. */
#include "h5prog.h"
#include "fuzz_util.h"
#include "common/qa_file.h"
#include "io/h5util.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const uint8_t *p;
    size_t n, i;
} rd;

static int u8(rd *r, unsigned *v) {
    if (r->i >= r->n) return -1;
    *v = r->p[r->i++];
    return 0;
}
static int bytes(rd *r, void *dst, size_t k) {
    if (r->n - r->i < k) return -1;
    memcpy(dst, r->p + r->i, k);
    r->i += k;
    return 0;
}
static int str(rd *r, char *out, size_t cap) {
    unsigned l;
    if (u8(r, &l) || l >= cap || r->n - r->i < l) return -1;
    memcpy(out, r->p + r->i, l);
    out[l] = 0;
    r->i += l;
    return 0;
}

static hid_t vlen_str(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static hid_t lcpl_inter(void) {
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(l, 1);
    return l;
}

static void attr_write(hid_t loc, const char *obj, const char *name, hid_t ft, hid_t mt, hsize_t n, int scalar,
                       const void *buf) {
    hid_t o = H5Oopen(loc, obj, H5P_DEFAULT);
    if (o < 0) return;
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(o, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (scalar || n) H5Awrite(a, mt, buf);
        H5Aclose(a);
    }
    H5Sclose(sp);
    H5Oclose(o);
}

static int op_attr(hid_t f, rd *r) {
    char obj[256], name[128];
    unsigned kind;
    if (str(r, obj, sizeof obj) || str(r, name, sizeof name) || u8(r, &kind)) return -1;
    if (!obj[0]) strcpy(obj, "/");
    switch (kind % 8) {
    case 0: { int64_t v; if (bytes(r, &v, 8)) return -1; attr_write(f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, 1, &v); break; }
    case 1: { uint64_t v; if (bytes(r, &v, 8)) return -1; attr_write(f, obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, 1, &v); break; }
    case 2: { uint32_t v; if (bytes(r, &v, 4)) return -1; attr_write(f, obj, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, 0, 1, &v); break; }
    case 3: { double v; if (bytes(r, &v, 8)) return -1; attr_write(f, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, 1, &v); break; }
    case 6: { float v; if (bytes(r, &v, 4)) return -1; attr_write(f, obj, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, 1, &v); break; }
    case 4: {
        char s[256];
        if (str(r, s, sizeof s)) return -1;
        const char *p = s;
        hid_t t = vlen_str();
        attr_write(f, obj, name, t, t, 0, 1, &p);
        H5Tclose(t);
        break;
    }
    case 5: {
        unsigned k;
        if (u8(r, &k)) return -1;
        k %= 16;
        char s[16][64];
        const char *ps[16];
        for (unsigned i = 0; i < k; i++) {
            if (str(r, s[i], sizeof s[i])) return -1;
            ps[i] = s[i];
        }
        hid_t t = vlen_str();
        attr_write(f, obj, name, t, t, k, 0, ps);
        H5Tclose(t);
        break;
    }
    case 7: {
        unsigned k;
        if (u8(r, &k)) return -1;
        k %= 16;
        int64_t v[16];
        if (bytes(r, v, 8 * (size_t)k)) return -1;
        attr_write(f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, k, 0, v);
        break;
    }
    }
    return 0;
}

static const struct { hid_t *file, *mem; size_t size; } DT[8] = {
    {&H5T_IEEE_F32LE_g, &H5T_NATIVE_FLOAT_g, 4}, {&H5T_IEEE_F64LE_g, &H5T_NATIVE_DOUBLE_g, 8},
    {&H5T_STD_I64LE_g, &H5T_NATIVE_LLONG_g, 8},  {&H5T_STD_U64LE_g, &H5T_NATIVE_ULLONG_g, 8},
    {&H5T_STD_U32LE_g, &H5T_NATIVE_UINT_g, 4},   {NULL, NULL, sizeof(char *)},
    {&H5T_STD_U16LE_g, &H5T_NATIVE_USHORT_g, 2}, {&H5T_STD_I32LE_g, &H5T_NATIVE_INT_g, 4},
};

static int op_dset(hid_t f, rd *r, int external, const char *ext_file) {
    char path[256];
    unsigned dt = 0, nd = 0, flags = 0;
    if (str(r, path, sizeof path) || (!external && (u8(r, &dt) || u8(r, &nd)))) return -1;
    dt %= 8;
    nd %= 5;
    hsize_t dims[4] = {16, 1, 1, 1};
    size_t numel = 1;
    if (external) { nd = 1; dt = 4; }
    for (unsigned k = 0; k < nd && !external; k++) {
        uint16_t d;
        if (bytes(r, &d, 2)) return -1;
        dims[k] = d;
        numel *= d;
    }
    if (external) numel = 16;
    if (numel > 4096) return -1; /* keep every input small */
    uint32_t nb = 0;
    if (!external && (u8(r, &flags) || bytes(r, &nb, 4))) return -1;
    if (nb > r->n - r->i) nb = (uint32_t)(r->n - r->i);
    const uint8_t *src = r->p + r->i;
    r->i += nb;
    /* the data: the given bytes repeated */
    size_t es = DT[dt].size, total = numel * es;
    uint8_t *buf = calloc(total ? total : 1, 1);
    char **sv = NULL;
    char *sbuf = NULL;
    if (dt == 5) {
        sv = calloc(numel ? numel : 1, sizeof *sv);
        sbuf = malloc((size_t)nb + 1);
        memcpy(sbuf, src, nb);
        sbuf[nb] = 0;
        size_t pos = 0;
        for (size_t i = 0; i < numel; i++) {
            sv[i] = sbuf + (nb ? pos % (nb + 1) : 0);
            pos += strlen(sv[i]) + 1;
        }
    } else if (nb) {
        for (size_t i = 0; i < total; i++) buf[i] = src[i % nb];
    }
    hid_t sp = nd == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple((int)nd, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = lcpl_inter();
    int chunk = (flags & 1) && nd > 0 && numel > 0;
    if (chunk) {
        hsize_t ch[4];
        for (unsigned k = 0; k < nd; k++) ch[k] = dims[k] ? dims[k] : 1;
        H5Pset_chunk(dcpl, (int)nd, ch);
        if (flags & 4) H5Pset_deflate(dcpl, 1);
        if (flags & 2) H5Pset_fletcher32(dcpl);
    }
    if (external) H5Pset_external(dcpl, ext_file, 0, 64);
    hid_t ft = dt == 5 ? vlen_str() : H5Tcopy(*DT[dt].file), mt = dt == 5 ? vlen_str() : H5Tcopy(*DT[dt].mem);
    hid_t d = H5Dcreate2(f, path, ft, sp, lcpl, dcpl, H5P_DEFAULT);
    if (d >= 0) {
        if (numel && !external) H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, dt == 5 ? (void *)sv : buf);
        if (flags & 8) {
            uint32_t c = 0;
            if (dt == 5)
                for (size_t i = 0; i < numel; i++) c = qa_crc32c(c, sv[i], strlen(sv[i]) + 1);
            else
                c = qa_crc32c(0, buf, total);
            attr_write(d, ".", "crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, 0, 1, &c);
        }
        H5Dclose(d);
    }
    H5Tclose(ft);
    H5Tclose(mt);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(sp);
    free(buf);
    free(sv);
    free(sbuf);
    return 0;
}

typedef struct ck_ctx {
    char **paths;
    size_t n;
} ck_ctx;
static herr_t ck_cb(hid_t g, const char *name, const H5L_info_t *info, void *u) {
    ck_ctx *c = u;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;
    if (H5Iget_type(o) == H5I_DATASET && H5Aexists(o, "crc32c") > 0 && c->n < 512) c->paths[c->n++] = strdup(name);
    H5Oclose(o);
    return 0;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the checkpoint file checksum (io/checkpoint.h): CRC32C over, per dataset in path order, path NUL crc(LE) */
static void op_checksum(hid_t f) {
    ck_ctx c = {calloc(512, sizeof(char *)), 0};
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, ck_cb, &c);
    qsort(c.paths, c.n, sizeof *c.paths, cmp_str);
    uint32_t total = 0;
    for (size_t i = 0; i < c.n; i++) {
        uint32_t v = 0;
        hid_t d = H5Dopen2(f, c.paths[i], H5P_DEFAULT);
        hid_t a = H5Aopen(d, "crc32c", H5P_DEFAULT), sp = H5Aget_space(a), ty = H5Aget_type(a);
        /* the program may have made "crc32c" an array or a string: only a scalar integer is read (0 otherwise) */
        if (H5Sget_simple_extent_npoints(sp) == 1 && H5Tget_class(ty) == H5T_INTEGER) H5Aread(a, H5T_NATIVE_UINT32, &v);
        H5Tclose(ty);
        H5Sclose(sp);
        H5Aclose(a);
        H5Dclose(d);
        uint8_t le[5] = {0, (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
        total = qa_crc32c(total, c.paths[i], strlen(c.paths[i]));
        total = qa_crc32c(total, le, 5);
        free(c.paths[i]);
    }
    free(c.paths);
    attr_write(f, "/", "checksum", H5T_STD_U32LE, H5T_NATIVE_UINT32, 0, 1, &total);
}

int h5prog_build(const uint8_t *prog, size_t n, void **img, size_t *len) {
    *img = NULL;
    *len = 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    qa_h5_mem mem;
    qa_err e = {0};
    hid_t f = qa_h5_create_mem_file("fuzz.h5", 1 << 16, &mem, &e);
    if (f < 0) return -1;
    rd r = {prog, n, 0};
    const char *ext_file = getenv("QA_FUZZ_EXTERNAL");
    for (int ops = 0; ops < 96 && r.i < r.n; ops++) {
        unsigned op;
        if (u8(&r, &op)) break;
        char a[256], b[256], c[256];
        int bad = 0;
        switch (op % 8) {
        case 1:
            if (!(bad = str(&r, a, sizeof a)) && a[0]) {
                hid_t l = lcpl_inter();
                hid_t g = H5Gcreate2(f, a, l, H5P_DEFAULT, H5P_DEFAULT);
                if (g >= 0) H5Gclose(g);
                H5Pclose(l);
            }
            break;
        case 2: bad = op_attr(f, &r); break;
        case 3: bad = op_dset(f, &r, 0, NULL); break;
        case 4:
            if (!(bad = str(&r, a, sizeof a) || str(&r, b, sizeof b)) && a[0]) {
                hid_t l = lcpl_inter();
                H5Lcreate_soft(b, f, a, l, H5P_DEFAULT);
                H5Pclose(l);
            }
            break;
        case 5:
            if (!(bad = str(&r, a, sizeof a) || str(&r, b, sizeof b) || str(&r, c, sizeof c)) && a[0]) {
                hid_t l = lcpl_inter();
                H5Lcreate_external(b, c, f, a, l, H5P_DEFAULT);
                H5Pclose(l);
            }
            break;
        case 6: bad = op_dset(f, &r, 1, ext_file ? ext_file : "/nonexistent/qa_fuzz_external"); break;
        case 7: op_checksum(f); break;
        default: break;
        }
        if (bad) break;
        H5Eclear2(H5E_DEFAULT);
    }
    void *buf = NULL;
    size_t bl = 0;
    if (qa_h5_mem_close(&f, &mem, "fuzz", &buf, &bl, &e)) {
        free(mem.kept);
        return -1;
    }
    *img = buf;
    *len = bl;
    return 0;
}

/* ---- emitting the program of a trusted file ------------------------------------------------------------ */
typedef struct wr {
    uint8_t *p;
    size_t n, cap;
} wr;
static void put(wr *w, const void *d, size_t k) {
    if (w->n + k > w->cap) {
        w->cap = (w->n + k) * 2 + 256;
        w->p = realloc(w->p, w->cap);
    }
    memcpy(w->p + w->n, d, k);
    w->n += k;
}
static void put8(wr *w, unsigned v) { uint8_t b = (uint8_t)v; put(w, &b, 1); }
static void puts_(wr *w, const char *s) {
    size_t l = strlen(s);
    if (l > 255) l = 255;
    put8(w, (unsigned)l);
    put(w, s, l);
}

static void emit_attrs(hid_t o, const char *obj, wr *w) {
    H5O_info_t oi;
    if (H5Oget_info2(o, &oi, H5O_INFO_NUM_ATTRS) < 0) return;
    for (hsize_t k = 0; k < oi.num_attrs; k++) {
        hid_t a = H5Aopen_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, k, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0) continue;
        char name[128];
        H5Aget_name(a, sizeof name, name);
        hid_t t = H5Aget_type(a), s = H5Aget_space(a);
        hssize_t np = H5Sget_simple_extent_npoints(s);
        int scalar = H5Sget_simple_extent_type(s) == H5S_SCALAR;
        H5T_class_t cls = H5Tget_class(t);
        size_t sz = H5Tget_size(t);
        put8(w, 2);
        puts_(w, obj);
        puts_(w, name);
        if (cls == H5T_STRING && scalar) {
            char *v = NULL;
            hid_t mt = vlen_str();
            if (H5Tis_variable_str(t) > 0 && H5Aread(a, mt, &v) >= 0) {
                put8(w, 4);
                puts_(w, v ? v : "");
                H5free_memory(v);
            } else {
                put8(w, 4);
                puts_(w, "");
            }
            H5Tclose(mt);
        } else if (cls == H5T_STRING) {
            put8(w, 5);
            int k2 = np > 15 ? 15 : (int)np;
            put8(w, (unsigned)k2);
            char **v = calloc((size_t)(np > 0 ? np : 1), sizeof *v);
            hid_t mt = vlen_str();
            int ok = H5Aread(a, mt, v) >= 0;
            for (int i = 0; i < k2; i++) puts_(w, ok && v[i] ? v[i] : "");
            for (hssize_t i = 0; ok && i < np; i++) H5free_memory(v[i]);
            free(v);
            H5Tclose(mt);
        } else if (cls == H5T_FLOAT) {
            double v = 0;
            H5Aread(a, H5T_NATIVE_DOUBLE, &v);
            put8(w, 3);
            put(w, &v, 8);
        } else if (cls == H5T_INTEGER && !scalar) {
            int64_t v[16] = {0};
            int k2 = np > 15 ? 15 : (int)np;
            int64_t *all = calloc((size_t)(np > 0 ? np : 1), 8);
            H5Aread(a, H5T_NATIVE_INT64, all);
            memcpy(v, all, 8 * (size_t)k2);
            free(all);
            put8(w, 7);
            put8(w, (unsigned)k2);
            put(w, v, 8 * (size_t)k2);
        } else if (cls == H5T_INTEGER) {
            if (sz == 4 && H5Tget_sign(t) == H5T_SGN_NONE) {
                uint32_t v = 0;
                H5Aread(a, H5T_NATIVE_UINT32, &v);
                put8(w, 2);
                put(w, &v, 4);
            } else if (H5Tget_sign(t) == H5T_SGN_NONE) {
                uint64_t v = 0;
                H5Aread(a, H5T_NATIVE_UINT64, &v);
                put8(w, 1);
                put(w, &v, 8);
            } else {
                int64_t v = 0;
                H5Aread(a, H5T_NATIVE_INT64, &v);
                put8(w, 0);
                put(w, &v, 8);
            }
        } else {
            put8(w, 0);
            int64_t z = 0;
            put(w, &z, 8);
        }
        H5Tclose(t);
        H5Sclose(s);
        H5Aclose(a);
    }
}

typedef struct emit_ctx {
    wr *w;
    hid_t f;
} emit_ctx;

static herr_t emit_cb(hid_t g, const char *name, const H5L_info_t *info, void *u) {
    emit_ctx *c = u;
    wr *w = c->w;
    char path[300];
    snprintf(path, sizeof path, "/%s", name);
    if (info->type == H5L_TYPE_SOFT || info->type == H5L_TYPE_EXTERNAL) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;
    if (H5Iget_type(o) == H5I_GROUP) {
        put8(w, 1);
        puts_(w, path);
    } else if (H5Iget_type(o) == H5I_DATASET) {
        hid_t t = H5Dget_type(o), s = H5Dget_space(o), dcpl = H5Dget_create_plist(o);
        H5T_class_t cls = H5Tget_class(t);
        size_t sz = H5Tget_size(t);
        int dt = cls == H5T_FLOAT ? (sz == 4 ? 0 : 1)
                 : cls == H5T_STRING ? 5
                 : cls == H5T_INTEGER ? (H5Tget_sign(t) == H5T_SGN_2 ? (sz == 8 ? 2 : 7) : (sz == 8 ? 3 : sz == 4 ? 4 : 6))
                 : 0;
        int nd = H5Sget_simple_extent_ndims(s);
        hsize_t dims[4] = {0};
        if (nd > 4) nd = 4;
        H5Sget_simple_extent_dims(s, dims, NULL);
        size_t numel = 1;
        for (int k = 0; k < nd; k++) {
            if (dims[k] > 65535) dims[k] = 65535;
            numel *= dims[k];
        }
        if (numel > 4096) { /* too big for a seed: keep the leading rows */
            dims[0] = dims[0] ? (hsize_t)(4096 / (numel / dims[0])) : 0;
            numel = 1;
            for (int k = 0; k < nd; k++) numel *= dims[k];
        }
        put8(w, 3);
        puts_(w, path);
        put8(w, (unsigned)dt);
        put8(w, (unsigned)nd);
        for (int k = 0; k < nd; k++) {
            uint16_t d = (uint16_t)dims[k];
            put(w, &d, 2);
        }
        int flt = 0;
        for (int k = 0; k < H5Pget_nfilters(dcpl); k++) {
            unsigned fl;
            size_t ne = 0;
            H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)k, &fl, &ne, NULL, 0, NULL, NULL);
            if (id == H5Z_FILTER_FLETCHER32) flt |= 2;
            if (id == H5Z_FILTER_DEFLATE) flt |= 4;
        }
        if (H5Pget_layout(dcpl) == H5D_CHUNKED) flt |= 1;
        put8(w, (unsigned)flt); /* the crc32c attr (if any) comes with the attributes, as stored */
        size_t es = DT[dt].size;
        uint8_t *buf = calloc(numel * es + 1, 1);
        uint32_t nb = 0;
        if (numel) {
            hid_t ms = H5Screate_simple(nd, dims, NULL), fs = H5Dget_space(o);
            hsize_t start[4] = {0};
            if (nd) H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, dims, NULL);
            if (dt == 5) {
                char **v = calloc(numel, sizeof *v);
                hid_t mt = vlen_str();
                if (H5Dread(o, mt, nd ? ms : H5S_ALL, nd ? fs : H5S_ALL, H5P_DEFAULT, v) >= 0) {
                    wr sw = {0};
                    for (size_t i = 0; i < numel; i++) put(&sw, v[i] ? v[i] : "", strlen(v[i] ? v[i] : "") + 1);
                    for (size_t i = 0; i < numel; i++) H5free_memory(v[i]);
                    free(buf);
                    buf = sw.p;
                    nb = (uint32_t)(sw.n ? sw.n - 1 : 0);
                }
                free(v);
                H5Tclose(mt);
            } else if (H5Dread(o, *DT[dt].mem, nd ? ms : H5S_ALL, nd ? fs : H5S_ALL, H5P_DEFAULT, buf) >= 0) {
                nb = (uint32_t)(numel * es);
            }
            H5Sclose(ms);
            H5Sclose(fs);
        }
        put(w, &nb, 4);
        put(w, buf, nb);
        free(buf);
        H5Tclose(t);
        H5Sclose(s);
        H5Pclose(dcpl);
    }
    emit_attrs(o, path, w);
    H5Oclose(o);
    return 0;
}

int h5prog_emit(const char *h5path, uint8_t **out, size_t *n) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(h5path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    wr w = {0};
    hid_t root = H5Oopen(f, "/", H5P_DEFAULT);
    emit_ctx c = {&w, f};
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, emit_cb, &c);
    emit_attrs(root, "/", &w);
    H5Oclose(root);
    H5Fclose(f);
    *out = w.p;
    *n = w.n;
    return 0;
}

int h5prog_write_input(const uint8_t *data, size_t size, const char *name, char *path, size_t pathsz) {
    if (size < 1) return -1;
    void *img = NULL;
    size_t len = 0;
    if (h5prog_build(data + 1, size - 1, &img, &len)) return -1;
    snprintf(path, pathsz, "%s/%s", fz_dir(), name);
    fz_write(fz_dir(), name, img, len);
    qa_err e = {0};
    char *sc = qa_h5_sidecar_path(path);
    if (data[0] & 1) qa_h5_sidecar_write(path, qa_crc32c(0, img, len), len, &e);
    else remove(sc);
    free(sc);
    free(img);
    return 0;
}
