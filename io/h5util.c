/* h5util.c — see h5util.h. */
#include "io/h5util.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* HDF5 1.10 cannot recover from a failed H5Fclose (a full disk while flushing a file written in
 * place, as an activation dump is): the file id stays, and the library's own atexit teardown later
 * crashes on it (segfault in H5F__close_cb, "HDF5: infinite loop closing library"). qalign closes every
 * handle it opens on every path, reports the write error itself and removes the file; so the teardown
 * has nothing to do but free memory at exit, and it is switched off before the library initializes
 * (H5dont_atexit must precede every other HDF5 call, hence a constructor of this file, which every
 * HDF5 user of qalign links). */
__attribute__((constructor)) static void h5_no_atexit_teardown(void) { H5dont_atexit(); }

size_t qa_h5_dt_size(qa_h5_dt dt) {
    switch (dt) {
    case QA_H5_F32: return 4;
    case QA_H5_F64: return 8;
    case QA_H5_I64: return 8;
    case QA_H5_U64: return 8;
    case QA_H5_U32: return 4;
    case QA_H5_U16: return 2;
    }
    return 0;
}

const char *qa_h5_dt_name(qa_h5_dt dt) {
    switch (dt) {
    case QA_H5_F32: return "float32";
    case QA_H5_F64: return "float64";
    case QA_H5_I64: return "int64";
    case QA_H5_U64: return "uint64";
    case QA_H5_U32: return "uint32";
    case QA_H5_U16: return "uint16";
    }
    return "?";
}

hid_t qa_h5_dt_file_type(qa_h5_dt dt) {
    switch (dt) {
    case QA_H5_F32: return H5T_IEEE_F32LE;
    case QA_H5_F64: return H5T_IEEE_F64LE;
    case QA_H5_I64: return H5T_STD_I64LE;
    case QA_H5_U64: return H5T_STD_U64LE;
    case QA_H5_U32: return H5T_STD_U32LE;
    case QA_H5_U16: return H5T_STD_U16LE;
    }
    return -1;
}

hid_t qa_h5_dt_mem_type(qa_h5_dt dt) {
    switch (dt) {
    case QA_H5_F32: return H5T_NATIVE_FLOAT;
    case QA_H5_F64: return H5T_NATIVE_DOUBLE;
    case QA_H5_I64: return H5T_NATIVE_INT64;
    case QA_H5_U64: return H5T_NATIVE_UINT64;
    case QA_H5_U32: return H5T_NATIVE_UINT32;
    case QA_H5_U16: return H5T_NATIVE_UINT16;
    }
    return -1;
}

qa_h5_dt qa_h5_dt_of_type(hid_t type) {
    H5T_class_t cls = H5Tget_class(type);
    size_t sz = H5Tget_size(type);
    if (cls == H5T_FLOAT) return sz == 4 ? QA_H5_F32 : sz == 8 ? QA_H5_F64 : 0;
    if (cls == H5T_INTEGER) {
        H5T_sign_t s = H5Tget_sign(type);
        if (s == H5T_SGN_2) return sz == 8 ? QA_H5_I64 : 0;
        return sz == 8 ? QA_H5_U64 : sz == 4 ? QA_H5_U32 : sz == 2 ? QA_H5_U16 : 0;
    }
    return 0;
}

void qa_h5_quiet_begin(qa_h5_quiet *q) {
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void qa_h5_quiet_end(const qa_h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

/* ---- error stack -> one line --------------------------------------------------------- */
typedef struct walk_ctx {
    char inner[512];   /* description of the innermost error */
    char oserr[160];   /* "error message = '...'" quoted by the sec2 driver, if any */
    int en;            /* "errno = N" quoted by the sec2 driver, if any */
    int n;
} walk_ctx;

static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data) {
    walk_ctx *w = data;
    const char *d = err->desc ? err->desc : "";
    if (n == 0) {
        /* the innermost error; sec2 descriptions are long: keep the first clause */
        snprintf(w->inner, sizeof w->inner, "%s", d);
        static const char *const cuts[] = {", time = ", ": time = ", "\n"};
        for (int k = 0; k < 3; k++) {
            char *cut = strstr(w->inner, cuts[k]);
            if (cut) *cut = 0;
        }
        if (!w->inner[0] && err->func_name) snprintf(w->inner, sizeof w->inner, "%s failed", err->func_name);
    }
    if (!w->en) {
        const char *m = strstr(d, "errno = ");
        if (m) w->en = atoi(m + 8);
    }
    if (!w->oserr[0]) {
        const char *m = strstr(d, "error message = '");
        if (m) {
            m += strlen("error message = '");
            const char *end = strchr(m, '\'');
            size_t len = end ? (size_t)(end - m) : strlen(m);
            if (len >= sizeof w->oserr) len = sizeof w->oserr - 1;
            memcpy(w->oserr, m, len);
            w->oserr[len] = 0;
        }
    }
    w->n++;
    return 0;
}

int qa_h5_fail(qa_err *e, const char *file, int line, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    walk_ctx w;
    memset(&w, 0, sizeof w);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    if (w.oserr[0]) {
        qa_err_setf(e, file, line, "%s: %s%s (HDF5: %s)", what, w.oserr, qa_errno_hint(w.en), w.inner);
        if (e && w.en) e->code = w.en;
        return -1;
    }
    if (w.inner[0]) return qa_err_setf(e, file, line, "%s (HDF5: %s)", what, w.inner);
    return qa_err_setf(e, file, line, "%s (HDF5 gave no reason)", what);
}

void qa_h5_close(hid_t *id) {
    if (!id || *id < 0) return;
    hid_t h = *id;
    *id = -1;
    switch (H5Iget_type(h)) {
    case H5I_FILE: H5Fclose(h); break;
    case H5I_GROUP: H5Gclose(h); break;
    case H5I_DATASET: H5Dclose(h); break;
    case H5I_ATTR: H5Aclose(h); break;
    case H5I_DATATYPE: H5Tclose(h); break;
    case H5I_DATASPACE: H5Sclose(h); break;
    case H5I_GENPROP_LST: H5Pclose(h); break;
    default: break;
    }
    H5Eclear2(H5E_DEFAULT);
}

/* ---- files ----------------------------------------------------------------------------- */
static hid_t make_fapl(size_t core_increment, qa_err *e) {
    hid_t fapl = -1;
    QA_H5(e, fapl = H5Pcreate(H5P_FILE_ACCESS), "cannot create an HDF5 file-access property list");
    if (core_increment)
        QA_H5(e, H5Pset_fapl_core(fapl, core_increment, 0), "cannot select the HDF5 core (in-memory) driver");
    else
        QA_H5(e, H5Pset_fapl_sec2(fapl), "cannot select the HDF5 sec2 driver");
    /* no flock(): NFS / Lustre without lock support refuse it (errno 37/38/524) */
    QA_H5(e, H5Pset_file_locking(fapl, 0, 1), "cannot disable HDF5 file locking");
    /* v2 object headers and superblock carry checksums: damaged metadata fails to open */
    QA_H5(e, H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST), "cannot set HDF5 version bounds");
    QA_H5(e, H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "cannot set the HDF5 close degree");
    return fapl;
fail:
    qa_h5_close(&fapl);
    return -1;
}

hid_t qa_h5_fapl(qa_err *e) { return make_fapl(0, e); }

/* The core driver allocates the in-memory file through these callbacks; at close we keep the buffer
 * instead of freeing it (HDF5 has then flushed everything and rewritten the superblock as closed). */
static void *mem_malloc(size_t size, H5FD_file_image_op_t op, void *u) {
    (void)op;
    qa_h5_mem *m = u;
    void *p = malloc(size ? size : 1);
    if (p) m->cap = size;
    return p;
}
static void *mem_memcpy(void *d, const void *s, size_t n, H5FD_file_image_op_t op, void *u) {
    (void)op; (void)u;
    return memcpy(d, s, n);
}
static void *mem_realloc(void *p, size_t size, H5FD_file_image_op_t op, void *u) {
    (void)op;
    qa_h5_mem *m = u;
    void *q = realloc(p, size ? size : 1);
    if (q) m->cap = size;
    return q;
}
static herr_t mem_free(void *p, H5FD_file_image_op_t op, void *u) {
    qa_h5_mem *m = u;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && !m->kept) {
        m->kept = p;
        return 0;
    }
    free(p);
    return 0;
}
static void *mem_udata_copy(void *u) { return u; } /* shared: the tracker outlives the file */
static herr_t mem_udata_free(void *u) { (void)u; return 0; }

hid_t qa_h5_create_mem_file(const char *name, size_t increment, qa_h5_mem *m, qa_err *e) {
    memset(m, 0, sizeof *m);
    hid_t fapl = make_fapl(increment ? increment : (size_t)16 << 20, e), f = -1;
    if (fapl < 0) return -1;
    H5FD_file_image_callbacks_t cb = {mem_malloc, mem_memcpy, mem_realloc, mem_free, mem_udata_copy, mem_udata_free, m};
    QA_H5(e, H5Pset_file_image_callbacks(fapl, &cb), "cannot install the in-memory file callbacks");
    /* The core driver reads a file that exists under the name it is given, even for a new file without a
     * backing store: a "pca.h5" in the working directory, or the damaged checkpoint a save replaces,
     * would become the start of the image. A path below /dev/null cannot exist. */
    char label[600];
    snprintf(label, sizeof label, "/dev/null/qalign-in-memory/%s", name);
    QA_H5(e, f = H5Fcreate(label, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "cannot create the in-memory HDF5 file %s", name);
fail:
    qa_h5_close(&fapl);
    return f;
}

int qa_h5_mem_close(hid_t *file, qa_h5_mem *m, const char *what, void **buf, size_t *len, qa_err *e) {
    *buf = NULL;
    *len = 0;
    hid_t f = *file;
    *file = -1;
    if (H5Fclose(f) < 0) return qa_h5_fail(e, __FILE__, __LINE__, "%s: closing the in-memory file failed", what);
    uint8_t *p = m->kept;
    m->kept = NULL;
    if (!p) return QA_ERR(e, "%s: HDF5 released the in-memory file without handing it over", what);
    /* the length is the end-of-file address of the superblock (version 2/3: signature, version,
     * sizes of offsets and lengths, flags, base address, extension address, EOF, root, checksum) */
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    size_t so = m->cap >= 12 ? p[9] : 0;
    int ver = m->cap >= 9 ? p[8] : -1;
    if (m->cap < 12 + 4 * 8 + 4 || memcmp(p, sig, 8) || (ver != 2 && ver != 3) || so != 8) {
        free(p);
        return QA_ERR(e, "%s: unexpected superblock in the in-memory file (version %d)", what, ver);
    }
    uint64_t eof = 0;
    for (int i = 7; i >= 0; i--) eof = eof << 8 | p[12 + 2 * 8 + (size_t)i];
    if (eof < 48 || eof > m->cap) {
        free(p);
        return QA_ERR(e, "%s: the in-memory file claims %llu bytes but holds %zu", what, (unsigned long long)eof, m->cap);
    }
    *buf = p;
    *len = (size_t)eof;
    return 0;
}

hid_t qa_h5_create_file(const char *path, qa_err *e) {
    hid_t fapl = qa_h5_fapl(e), f = -1;
    if (fapl < 0) return -1;
    /* H5F_ACC_EXCL: O_CREAT | O_EXCL, so a file or link planted at the name is never truncated or followed */
    QA_H5(e, f = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, fapl), "cannot create HDF5 file %s", path);
fail:
    qa_h5_close(&fapl);
    return f;
}

hid_t qa_h5_open_file_ro(const char *path, qa_err *e) {
    if (qa_check_input(path, e)) return -1;
    hid_t fapl = qa_h5_fapl(e), f = -1;
    if (fapl < 0) return -1;
    QA_H5(e, f = H5Fopen(path, H5F_ACC_RDONLY, fapl), "cannot open %s as HDF5 (truncated or not an HDF5 file?)",
          path);
fail:
    qa_h5_close(&fapl);
    return f;
}

hid_t qa_h5_create_group(hid_t loc, const char *path, qa_err *e) {
    hid_t lcpl = -1, g = -1;
    QA_H5(e, lcpl = H5Pcreate(H5P_LINK_CREATE), "cannot create an HDF5 link-create property list");
    QA_H5(e, H5Pset_create_intermediate_group(lcpl, 1), "cannot enable HDF5 intermediate groups");
    QA_H5(e, H5Pset_char_encoding(lcpl, H5T_CSET_UTF8), "cannot set UTF-8 link names");
    QA_H5(e, g = H5Gcreate2(loc, path, lcpl, H5P_DEFAULT, H5P_DEFAULT), "cannot create HDF5 group %s", path);
fail:
    qa_h5_close(&lcpl);
    return g;
}

typedef struct contained_ctx {
    char bad[1024];
} contained_ctx;

static herr_t contained_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    contained_ctx *c = data;
    if (info->type != H5L_TYPE_HARD) {
        snprintf(c->bad, sizeof c->bad, "/%s is a%s link", name,
                 info->type == H5L_TYPE_SOFT ? " soft" : info->type == H5L_TYPE_EXTERNAL ? "n external" : " user-defined");
        return 1;
    }
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        snprintf(c->bad, sizeof c->bad, "/%s cannot be opened", name);
        return 1;
    }
    int stop = 0;
    if (H5Iget_type(o) == H5I_DATASET) {
        hid_t dcpl = H5Dget_create_plist(o);
        if (dcpl < 0) {
            snprintf(c->bad, sizeof c->bad, "the storage of dataset /%s cannot be read", name);
            stop = 1;
        } else {
            H5D_layout_t lay = H5Pget_layout(dcpl);
            int ext = H5Pget_external_count(dcpl);
            if (lay == H5D_VIRTUAL) {
                snprintf(c->bad, sizeof c->bad, "dataset /%s is a virtual dataset (its data lives in other files)", name);
                stop = 1;
            } else if (ext != 0) {
                snprintf(c->bad, sizeof c->bad, "dataset /%s has external storage (its data lives in another file)", name);
                stop = 1;
            } else if (lay < 0) {
                snprintf(c->bad, sizeof c->bad, "the layout of dataset /%s cannot be read", name);
                stop = 1;
            }
            H5Pclose(dcpl);
        }
    }
    H5Oclose(o);
    return stop;
}

int qa_h5_check_self_contained(hid_t file, const char *what, qa_err *e) {
    contained_ctx c;
    c.bad[0] = 0;
    herr_t r = H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, contained_cb, &c);
    if (c.bad[0]) {
        H5Eclear2(H5E_DEFAULT);
        return QA_ERR(e, "%s: %s; qalign reads only self-contained files (no external storage, virtual datasets, "
                      "soft or external links)", what, c.bad);
    }
    if (r < 0) return qa_h5_fail(e, __FILE__, __LINE__, "%s: cannot walk its groups", what);
    return 0;
}

int qa_h5_exists(hid_t loc, const char *path) {
    /* check each prefix: H5Lexists fails (not 0) when a parent is missing */
    char buf[1024];
    size_t n = strlen(path);
    if (n >= sizeof buf) return 0;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            htri_t r = H5Lexists(loc, buf, H5P_DEFAULT);
            buf[i] = c;
            if (r <= 0) { H5Eclear2(H5E_DEFAULT); return 0; }
        }
    }
    return 1;
}

/* ---- whole-file checksum sidecar ---------------------------------------------------------- */
char *qa_h5_sidecar_path(const char *path) {
    size_t n = strlen(path) + 8;
    char *p = qa_malloc(n);
    snprintf(p, n, "%s.crc32c", path);
    return p;
}

int qa_h5_sidecar_write(const char *path, uint32_t crc, uint64_t size, qa_err *e) {
    char line[96];
    snprintf(line, sizeof line, "crc32c %08x size %llu\n", crc, (unsigned long long)size);
    char *sc = qa_h5_sidecar_path(path);
    int rc = qa_write_file_atomic(sc, line, strlen(line), e);
    free(sc);
    return rc;
}

int qa_h5_file_crc32c(const char *path, uint32_t *crc, uint64_t *size, qa_err *e) {
    qa_mmap m;
    QA_TRY(qa_mmap_open(&m, path, e));
    *size = m.size;
    *crc = m.size ? qa_crc32c(0, m.data, m.size) : 0;
    qa_mmap_close(&m);
    return 0;
}

int qa_h5_sidecar_check(const char *path, int required, qa_err *e) {
    char *sc = qa_h5_sidecar_path(path), *txt = NULL;
    size_t tl = 0;
    int rc = 0;
    struct stat st;
    if (lstat(sc, &st) < 0) {
        if (required) rc = QA_ERR(e, "%s: its checksum file %s is missing", path, sc);
        free(sc);
        return rc;
    }
    if (qa_read_file(sc, 4096, &txt, &tl, e)) { free(sc); return -1; }
    unsigned crc = 0;
    unsigned long long size = 0;
    if (sscanf(txt, "crc32c %x size %llu", &crc, &size) != 2) {
        rc = QA_ERR(e, "%s: the checksum file %s is malformed", path, sc);
    } else {
        uint32_t got;
        uint64_t have;
        if (qa_h5_file_crc32c(path, &got, &have, e)) rc = -1;
        else if (have != size)
            rc = QA_ERR(e, "%s: %llu bytes, but %llu were committed (truncated or overwritten)", path,
                        (unsigned long long)have, size);
        else if (got != crc)
            rc = QA_ERR(e, "%s: whole-file checksum mismatch (stored %08x, file %08x): damaged on disk", path, crc, got);
    }
    free(txt);
    free(sc);
    return rc;
}

/* ---- attributes -------------------------------------------------------------------------- */
static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) { H5Tclose(t); return -1; }
    return t;
}

/* Write an attribute of file type ftype / memory type mtype with n elements (n == 0 → scalar). */
static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, size_t n, int scalar,
                      const void *buf, qa_err *e) {
    hid_t space = -1, a = -1;
    int rc = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex > 0) QA_H5(e, H5Adelete(obj, name), "cannot replace HDF5 attribute %s", name);
    H5Eclear2(H5E_DEFAULT);
    if (scalar) {
        QA_H5(e, space = H5Screate(H5S_SCALAR), "cannot create a scalar dataspace");
    } else {
        hsize_t d = n;
        QA_H5(e, space = H5Screate_simple(1, &d, NULL), "cannot create a dataspace of %zu elements", n);
    }
    QA_H5(e, a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT), "cannot create attribute %s", name);
    if (scalar || n > 0) QA_H5(e, H5Awrite(a, mtype, buf), "cannot write attribute %s", name);
    rc = 0;
fail:
    qa_h5_close(&a);
    qa_h5_close(&space);
    return rc;
}

int qa_h5_attr_str(hid_t obj, const char *name, const char *val, qa_err *e) {
    hid_t t = vlen_utf8();
    if (t < 0) return qa_h5_fail(e, __FILE__, __LINE__, "cannot create a UTF-8 string type");
    const char *p = val ? val : "";
    int rc = attr_write(obj, name, t, t, 0, 1, &p, e);
    H5Tclose(t);
    return rc;
}

int qa_h5_attr_strs(hid_t obj, const char *name, const char *const *vals, size_t n, qa_err *e) {
    hid_t t = vlen_utf8();
    if (t < 0) return qa_h5_fail(e, __FILE__, __LINE__, "cannot create a UTF-8 string type");
    const char **p = qa_calloc(n ? n : 1, sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = vals[i] ? vals[i] : "";
    int rc = attr_write(obj, name, t, t, n, 0, p, e);
    free(p);
    H5Tclose(t);
    return rc;
}

int qa_h5_attr_i64(hid_t obj, const char *name, int64_t v, qa_err *e) {
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, 1, &v, e);
}
int qa_h5_attr_u64(hid_t obj, const char *name, uint64_t v, qa_err *e) {
    return attr_write(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, 1, &v, e);
}
int qa_h5_attr_u32(hid_t obj, const char *name, uint32_t v, qa_err *e) {
    return attr_write(obj, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, 0, 1, &v, e);
}
int qa_h5_attr_f64(hid_t obj, const char *name, double v, qa_err *e) {
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, 1, &v, e);
}
int qa_h5_attr_i64s(hid_t obj, const char *name, const int64_t *v, size_t n, qa_err *e) {
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, n, 0, v, e);
}

int qa_h5_has_attr(hid_t obj, const char *name) {
    htri_t r = H5Aexists(obj, name);
    if (r < 0) H5Eclear2(H5E_DEFAULT);
    return r > 0;
}

/* Open attribute `name` and check its class; returns the attribute id or -1 (e filled). */
static hid_t attr_open(hid_t obj, const char *name, const char *what, H5T_class_t want, const char *want_name,
                       hssize_t *npoints, qa_err *e) {
    hid_t a = -1, t = -1, s = -1;
    if (!qa_h5_has_attr(obj, name)) {
        QA_ERR(e, "%s has no attribute '%s'", what, name);
        return -1;
    }
    QA_H5(e, a = H5Aopen(obj, name, H5P_DEFAULT), "%s: cannot open attribute '%s'", what, name);
    QA_H5(e, t = H5Aget_type(a), "%s: cannot read the type of attribute '%s'", what, name);
    H5T_class_t c = H5Tget_class(t);
    if (c != want) {
        QA_ERR(e, "%s: attribute '%s' is not %s", what, name, want_name);
        goto fail;
    }
    QA_H5(e, s = H5Aget_space(a), "%s: cannot read the shape of attribute '%s'", what, name);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    if (npoints) *npoints = np;
    qa_h5_close(&t);
    qa_h5_close(&s);
    return a;
fail:
    qa_h5_close(&t);
    qa_h5_close(&s);
    qa_h5_close(&a);
    return -1;
}

static int num_attr(hid_t obj, const char *name, const char *what, H5T_class_t cls, const char *cls_name, hid_t mtype,
                    void *out, qa_err *e) {
    hssize_t np = 0;
    hid_t a = attr_open(obj, name, what, cls, cls_name, &np, e);
    if (a < 0) return -1;
    int rc = -1;
    if (np != 1) {
        QA_ERR(e, "%s: attribute '%s' has %lld values, expected one", what, name, (long long)np);
        goto fail;
    }
    QA_H5(e, H5Aread(a, mtype, out), "%s: cannot read attribute '%s'", what, name);
    rc = 0;
fail:
    qa_h5_close(&a);
    return rc;
}

int qa_h5_get_attr_i64(hid_t obj, const char *name, const char *what, int64_t *out, qa_err *e) {
    return num_attr(obj, name, what, H5T_INTEGER, "an integer", H5T_NATIVE_INT64, out, e);
}
int qa_h5_get_attr_u64(hid_t obj, const char *name, const char *what, uint64_t *out, qa_err *e) {
    return num_attr(obj, name, what, H5T_INTEGER, "an integer", H5T_NATIVE_UINT64, out, e);
}
int qa_h5_get_attr_u32(hid_t obj, const char *name, const char *what, uint32_t *out, qa_err *e) {
    return num_attr(obj, name, what, H5T_INTEGER, "an integer", H5T_NATIVE_UINT32, out, e);
}
int qa_h5_get_attr_f64(hid_t obj, const char *name, const char *what, double *out, qa_err *e) {
    return num_attr(obj, name, what, H5T_FLOAT, "a floating-point number", H5T_NATIVE_DOUBLE, out, e);
}

/* Read n (≥1) string values, variable- or fixed-length, into heap strings. */
static int read_strs(hid_t a, const char *name, const char *what, size_t n, char **out, qa_err *e) {
    hid_t ft = -1, mt = -1;
    int rc = -1;
    QA_H5(e, ft = H5Aget_type(a), "%s: cannot read the type of attribute '%s'", what, name);
    htri_t vl = H5Tis_variable_str(ft);
    QA_H5(e, vl, "%s: cannot inspect attribute '%s'", what, name);
    if (vl) {
        QA_H5(e, mt = vlen_utf8(), "cannot create a UTF-8 string type");
        char **p = qa_calloc(n, sizeof *p);
        if (H5Aread(a, mt, p) < 0) {
            free(p);
            QA_H5(e, -1, "%s: cannot read attribute '%s'", what, name);
        }
        for (size_t i = 0; i < n; i++) {
            out[i] = qa_strdup(p[i] ? p[i] : "");
            if (p[i]) H5free_memory(p[i]);
        }
        free(p);
    } else {
        size_t sz = H5Tget_size(ft);
        QA_H5(e, mt = H5Tcopy(H5T_C_S1), "cannot create a string type");
        QA_H5(e, H5Tset_size(mt, sz), "cannot size a string type");
        char *raw = qa_calloc(n, sz ? sz : 1);
        if (H5Aread(a, mt, raw) < 0) {
            free(raw);
            QA_H5(e, -1, "%s: cannot read attribute '%s'", what, name);
        }
        for (size_t i = 0; i < n; i++) out[i] = qa_strndup(raw + i * sz, strnlen(raw + i * sz, sz));
        free(raw);
    }
    rc = 0;
fail:
    qa_h5_close(&mt);
    qa_h5_close(&ft);
    return rc;
}

int qa_h5_get_attr_str(hid_t obj, const char *name, const char *what, char **out, qa_err *e) {
    *out = NULL;
    hssize_t np = 0;
    hid_t a = attr_open(obj, name, what, H5T_STRING, "a string", &np, e);
    if (a < 0) return -1;
    int rc = -1;
    if (np != 1) {
        QA_ERR(e, "%s: attribute '%s' has %lld strings, expected one", what, name, (long long)np);
    } else {
        rc = read_strs(a, name, what, 1, out, e);
    }
    qa_h5_close(&a);
    return rc;
}

int qa_h5_get_attr_strs(hid_t obj, const char *name, const char *what, char ***out, size_t *n, qa_err *e) {
    *out = NULL;
    *n = 0;
    hssize_t np = 0;
    hid_t a = attr_open(obj, name, what, H5T_STRING, "a string", &np, e);
    if (a < 0) return -1;
    int rc = 0;
    if (np > 0) {
        char **v = qa_calloc((size_t)np, sizeof *v);
        rc = read_strs(a, name, what, (size_t)np, v, e);
        if (rc) free(v);
        else { *out = v; *n = (size_t)np; }
    }
    qa_h5_close(&a);
    return rc;
}

void qa_h5_free_strs(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ---- datasets ----------------------------------------------------------------------------- */
void qa_h5_chunk_dims(int ndim, const int64_t *shape, size_t elem, size_t target, hsize_t *chunk) {
    if (!target) target = (size_t)1 << 20;
    for (int i = 0; i < ndim; i++) chunk[i] = (hsize_t)shape[i];
    for (int i = 0; i < ndim; i++) {
        /* bytes of one slice along dim i with all trailing dims whole */
        double rest = (double)elem;
        for (int j = i + 1; j < ndim; j++) rest *= (double)shape[j];
        if (rest * (double)shape[i] <= (double)target) break;
        if (rest >= (double)target) { chunk[i] = 1; continue; }
        hsize_t k = (hsize_t)((double)target / rest);
        if (!k) k = 1;
        /* balance: edge chunks are stored whole, so split the dim into equal parts */
        hsize_t d = (hsize_t)shape[i], nch = (d + k - 1) / k;
        chunk[i] = (d + nch - 1) / nch;
        break;
    }
    /* HDF5 caps a chunk at 4 GiB; trailing dims that alone exceed it are split too */
    for (int i = ndim - 1; i >= 0; i--) {
        double b = (double)elem;
        for (int j = 0; j < ndim; j++) b *= (double)chunk[j];
        if (b < 4.0e9) break;
        hsize_t k = (hsize_t)((double)chunk[i] * (double)target / b);
        chunk[i] = k ? k : 1;
    }
}

int qa_h5_write(hid_t loc, const char *name, qa_h5_dt dt, int ndim, const int64_t *shape, const void *data,
                const qa_h5_dset_opts *opts, hid_t *out_dset, qa_err *e) {
    hid_t space = -1, dcpl = -1, lcpl = -1, d = -1;
    int rc = -1;
    if (out_dset) *out_dset = -1;
    if (ndim < 0 || ndim > 32) return QA_ERR(e, "dataset %s: %d dimensions is not supported", name, ndim);
    qa_h5_dset_opts o = {0, 0, 1};
    if (opts) o = *opts;
    hsize_t dims[32], chunk[32];
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return QA_ERR(e, "dataset %s: negative dimension %lld", name, (long long)shape[i]);
        dims[i] = (hsize_t)shape[i];
        numel *= shape[i];
    }
    if (ndim == 0) QA_H5(e, space = H5Screate(H5S_SCALAR), "cannot create a scalar dataspace");
    else QA_H5(e, space = H5Screate_simple(ndim, dims, NULL), "cannot create the dataspace of %s", name);
    QA_H5(e, dcpl = H5Pcreate(H5P_DATASET_CREATE), "cannot create a dataset-create property list");
    if (ndim > 0 && numel > 0) {
        qa_h5_chunk_dims(ndim, shape, qa_h5_dt_size(dt), o.chunk_bytes, chunk);
        QA_H5(e, H5Pset_chunk(dcpl, ndim, chunk), "cannot set the chunking of %s", name);
        if (o.deflate > 0) {
            QA_H5(e, H5Pset_shuffle(dcpl), "cannot add the shuffle filter to %s", name);
            QA_H5(e, H5Pset_deflate(dcpl, (unsigned)(o.deflate > 9 ? 9 : o.deflate)),
                  "cannot add the deflate filter to %s (HDF5 built without zlib?)", name);
        }
        if (o.fletcher32) QA_H5(e, H5Pset_fletcher32(dcpl), "cannot add the fletcher32 filter to %s", name);
    }
    QA_H5(e, lcpl = H5Pcreate(H5P_LINK_CREATE), "cannot create an HDF5 link-create property list");
    QA_H5(e, H5Pset_create_intermediate_group(lcpl, 1), "cannot enable HDF5 intermediate groups");
    QA_H5(e, H5Pset_char_encoding(lcpl, H5T_CSET_UTF8), "cannot set UTF-8 link names");
    QA_H5(e, d = H5Dcreate2(loc, name, qa_h5_dt_file_type(dt), space, lcpl, dcpl, H5P_DEFAULT),
          "cannot create dataset %s", name);
    if (numel > 0) QA_H5(e, H5Dwrite(d, qa_h5_dt_mem_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                         "writing dataset %s failed", name);
    rc = 0;
    if (out_dset) { *out_dset = d; d = -1; }
fail:
    qa_h5_close(&d);
    qa_h5_close(&lcpl);
    qa_h5_close(&dcpl);
    qa_h5_close(&space);
    return rc;
}

int qa_h5_dset_shape(hid_t dset, const char *what, int max_dims, int *ndim, int64_t *shape, qa_h5_dt *dt,
                     qa_err *e) {
    hid_t s = -1, t = -1;
    int rc = -1;
    QA_H5(e, s = H5Dget_space(dset), "%s: cannot read its shape", what);
    int nd = H5Sget_simple_extent_ndims(s);
    QA_H5(e, nd, "%s: cannot read its rank", what);
    if (nd > max_dims) {
        QA_ERR(e, "%s has %d dimensions, at most %d are expected", what, nd, max_dims);
        goto fail;
    }
    hsize_t dims[32];
    QA_H5(e, H5Sget_simple_extent_dims(s, dims, NULL), "%s: cannot read its dimensions", what);
    *ndim = nd;
    for (int i = 0; i < nd; i++) shape[i] = (int64_t)dims[i];
    if (dt) {
        QA_H5(e, t = H5Dget_type(dset), "%s: cannot read its type", what);
        *dt = qa_h5_dt_of_type(t);
    }
    rc = 0;
fail:
    qa_h5_close(&t);
    qa_h5_close(&s);
    return rc;
}

int qa_h5_read_all(hid_t dset, const char *what, qa_h5_dt dt, void *out, qa_err *e) {
    hid_t s = -1;
    int rc = -1;
    QA_H5(e, s = H5Dget_space(dset), "%s: cannot read its shape", what);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    QA_H5(e, np, "%s: cannot count its elements", what);
    if (np > 0)
        QA_H5(e, H5Dread(dset, qa_h5_dt_mem_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
              "%s: reading the data failed (damaged chunk: fletcher32 or decompression error)", what);
    rc = 0;
fail:
    qa_h5_close(&s);
    return rc;
}
