/* checkpoint.c — see checkpoint.h. */
#include "io/checkpoint.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/h5util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint checksums are defined over little-endian bytes: add a byte swap for this host"
#endif

#define CHECKSUM_SCHEME                                                                                  \
    "Each dataset's attr crc32c is CRC32C (Castagnoli, as in iSCSI/ext4) of its little-endian bytes in C " \
    "order. The root attr checksum is CRC32C over, for every dataset in byte-wise order of its path "     \
    "without the leading '/': the path bytes, one NUL byte, its crc32c as 4 little-endian bytes."

static uint32_t crc32c(uint32_t crc, const void *buf, size_t len) { return qa_crc32c(crc, buf, len); }

size_t qa_ckpt_dtype_size(qa_ckpt_dtype dt) {
    return dt >= QA_CKPT_F32 && dt <= QA_CKPT_U64 ? qa_h5_dt_size((qa_h5_dt)dt) : 0;
}
const char *qa_ckpt_dtype_name(qa_ckpt_dtype dt) {
    return dt >= QA_CKPT_F32 && dt <= QA_CKPT_U64 ? qa_h5_dt_name((qa_h5_dt)dt) : "?";
}

uint32_t qa_ckpt_crc32c(const void *data, size_t nbytes) { return crc32c(0, data, nbytes); }

uint32_t qa_ckpt_crc_chain(uint32_t total, const char *path, uint32_t dataset_crc) {
    static const char nul = 0;
    uint8_t le[4] = {(uint8_t)dataset_crc, (uint8_t)(dataset_crc >> 8), (uint8_t)(dataset_crc >> 16),
                     (uint8_t)(dataset_crc >> 24)};
    total = qa_crc32c(total, path, strlen(path));
    total = qa_crc32c(total, &nul, 1);
    return qa_crc32c(total, le, 4);
}

char *qa_ckpt_dir(const char *run_dir) { return qa_path_join(run_dir, QA_CKPT_SUBDIR); }

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static void default_log(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "qalign: warning: %s\n", msg);
    fflush(stderr);
}

static void logf_(qa_log_fn log, void *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(qa_log_fn log, void *ctx, const char *fmt, ...) {
    char buf[QA_ERR_MSG + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    (log ? log : default_log)(ctx, buf);
}

/* ---- listing ------------------------------------------------------------------------------ */
/* "step_<digits>.h5" → tmp 0; "step_<digits>.h5.tmp.<anything>" → tmp 1; else -1. */
static char *sidecar_path(const char *h5);
static int write_sidecar(const char *h5_final, const void *img, size_t len, qa_err *e);

static int parse_name(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5)) return -1;
    const char *p = name + 5;
    if (*p < '0' || *p > '9') return -1;
    int64_t s = 0;
    while (*p >= '0' && *p <= '9') {
        if (s > (INT64_MAX - 9) / 10) return -1;
        s = s * 10 + (*p++ - '0');
    }
    if (strncmp(p, ".h5", 3)) return -1;
    p += 3;
    *step = s;
    if (!*p) return 0;
    if (!strncmp(p, ".tmp.", 5)) return 1;
    return -1;
}

static int entry_cmp(const void *a, const void *b) {
    const qa_ckpt_entry *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    if (x->tmp != y->tmp) return x->tmp - y->tmp;
    return strcmp(x->path, y->path);
}

int qa_ckpt_list(const char *ckpt_dir, qa_ckpt_entry **out, size_t *n, qa_err *e) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(ckpt_dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return QA_ERRNO(e, errno, "cannot list checkpoint directory %s", ckpt_dir);
    }
    size_t cap = 16, k = 0;
    qa_ckpt_entry *v = qa_malloc(cap * sizeof *v);
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t step;
        int t = parse_name(de->d_name, &step);
        if (t < 0) continue;
        if (k == cap) v = qa_realloc(v, (cap *= 2) * sizeof *v);
        v[k].step = step;
        v[k].tmp = t;
        v[k].path = qa_path_join(ckpt_dir, de->d_name);
        k++;
    }
    closedir(d);
    qsort(v, k, sizeof *v, entry_cmp);
    *out = v;
    *n = k;
    return 0;
}

void qa_ckpt_list_free(qa_ckpt_entry *v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i].path);
    free(v);
}

/* ---- save ---------------------------------------------------------------------------------- */
typedef struct item {
    char *path;
    qa_ckpt_dtype dtype;
    int ndim;
    int64_t shape[QA_CKPT_MAX_DIMS];
    const void *data;
    const char *layout;
} item;

static int item_cmp(const void *a, const void *b) { return strcmp(((const item *)a)->path, ((const item *)b)->path); }

/* Largest dataset qalign stores or reads back (LoRA tensors of a 70B model at r = 256 are < 1 GiB). */
#define QA_CKPT_MAX_BYTES ((int64_t)1 << 36)

/* prod(shape), or -1 when a dimension is negative or the product overflows 2^62 (crafted shapes). */
static int64_t numel_of(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n) || n > ((int64_t)1 << 62)) return -1;
    }
    return n;
}

static int check_tensor(const qa_ckpt_tensor *t, const char *group, int need_data, qa_err *e) {
    if (!t->name || !t->name[0]) return QA_ERR(e, "a tensor of /%s has no name", group);
    if (strchr(t->name, '/') || !strcmp(t->name, ".") || !strcmp(t->name, ".."))
        return QA_ERR(e, "tensor name '%s' of /%s contains '/' or is '.'/'..': not a valid HDF5 dataset name",
                      t->name, group);
    if (!qa_ckpt_dtype_size(t->dtype)) return QA_ERR(e, "tensor /%s/%s has an unknown dtype %d", group, t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > QA_CKPT_MAX_DIMS)
        return QA_ERR(e, "tensor /%s/%s has %d dimensions (0..%d allowed)", group, t->name, t->ndim, QA_CKPT_MAX_DIMS);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0) return QA_ERR(e, "tensor /%s/%s has a negative dimension", group, t->name);
    int64_t ne = numel_of(t->ndim, t->shape);
    if (ne < 0 || ne > QA_CKPT_MAX_BYTES / (int64_t)qa_ckpt_dtype_size(t->dtype))
        return QA_ERR(e, "tensor /%s/%s: its shape holds more than %lld bytes", group, t->name,
                      (long long)QA_CKPT_MAX_BYTES);
    if (need_data && !t->data && numel_of(t->ndim, t->shape) > 0)
        return QA_ERR(e, "tensor /%s/%s has no data pointer", group, t->name);
    return 0;
}

static char *join_path(const char *group, const char *name) {
    size_t n = strlen(group) + strlen(name) + 2;
    char *p = qa_malloc(n);
    snprintf(p, n, "%s/%s", group, name);
    return p;
}

static void items_free(item *v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i].path);
    free(v);
}

/* Flatten the state into path-sorted items; validates names, shapes and uniqueness. */
static int build_items(const qa_ckpt_state *st, item **out, size_t *n_out, qa_err *e) {
    size_t cap = st->n_lora * 3 + st->n_rng + st->n_data + st->n_metrics + 1, n = 0;
    item *v = qa_calloc(cap, sizeof *v);
    struct { const char *group; const qa_ckpt_tensor *t; size_t n; } groups[] = {
        {"lora", st->lora, st->n_lora}, {"rng", st->rng, st->n_rng},
        {"data", st->data, st->n_data}, {"metrics", st->metrics, st->n_metrics},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        for (size_t i = 0; i < groups[g].n; i++) {
            const qa_ckpt_tensor *t = &groups[g].t[i];
            if (check_tensor(t, groups[g].group, 1, e)) goto fail;
            if (g == 0 && t->dtype != QA_CKPT_F32) {
                QA_ERR(e, "LoRA tensor %s is %s; LoRA tensors are stored as float32", t->name, qa_ckpt_dtype_name(t->dtype));
                goto fail;
            }
            item *it = &v[n++];
            it->path = join_path(groups[g].group, t->name);
            it->dtype = t->dtype;
            it->ndim = t->ndim;
            memcpy(it->shape, t->shape, sizeof it->shape);
            it->data = t->data;
            it->layout = t->layout;
            if (g == 0) {
                const char *og[2] = {"optim/m", "optim/v"};
                float *const *src[2] = {st->adam_m, st->adam_v};
                for (int k = 0; k < 2; k++) {
                    if (!src[k]) continue;
                    if (!src[k][i] && numel_of(t->ndim, t->shape) > 0) {
                        QA_ERR(e, "AdamW %s buffer of %s is NULL", k ? "v" : "m", t->name);
                        goto fail;
                    }
                    item *o = &v[n++];
                    *o = *it;
                    o->path = join_path(og[k], t->name);
                    o->data = src[k][i];
                }
            }
        }
    }
    qsort(v, n, sizeof *v, item_cmp);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(v[i].path, v[i - 1].path)) {
            QA_ERR(e, "tensor /%s is given twice", v[i].path);
            goto fail;
        }
    *out = v;
    *n_out = n;
    return 0;
fail:
    items_free(v, n);
    return -1;
}

/* Build the whole checkpoint in memory (HDF5 core driver) and return its bytes. */
static int build_image(const char *path, const qa_ckpt_meta *m, const item *v, size_t n, int deflate, void **img,
                       size_t *img_len, qa_err *e) {
    hid_t f = -1, g = -1, d = -1;
    int rc = -1;
    char created[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);

    size_t data_bytes = 0;
    for (size_t i = 0; i < n; i++) data_bytes += (size_t)numel_of(v[i].ndim, v[i].shape) * qa_ckpt_dtype_size(v[i].dtype);
    /* grow the image in steps of ~1/8 of the data (≥ 1 MiB) */
    qa_h5_mem mem;
    f = qa_h5_create_mem_file(path, data_bytes / 8 > ((size_t)1 << 20) ? data_bytes / 8 : (size_t)1 << 20, &mem, e);
    if (f < 0) return -1;
    if (qa_h5_attr_str(f, "format", QA_CKPT_FORMAT, e) || qa_h5_attr_i64(f, "format_version", QA_CKPT_FORMAT_VERSION, e) ||
        qa_h5_attr_i64(f, "step", m->step, e) || qa_h5_attr_i64(f, "epoch", m->epoch, e) ||
        qa_h5_attr_i64(f, "cursor", m->cursor, e) || qa_h5_attr_i64(f, "tokens_seen", m->tokens_seen, e) ||
        qa_h5_attr_i64(f, "skipped_steps", m->skipped_steps, e) || qa_h5_attr_i64(f, "world_size", m->world_size, e) ||
        qa_h5_attr_i64(f, "lora_r", m->lora_r, e) || qa_h5_attr_f64(f, "lora_alpha", m->lora_alpha, e) ||
        qa_h5_attr_strs(f, "target_modules", m->target_modules, m->n_target_modules, e) ||
        qa_h5_attr_str(f, "base_model", m->base_model, e) || qa_h5_attr_str(f, "base_model_id", m->base_model_id, e) ||
        qa_h5_attr_str(f, "config_yaml", m->config_yaml, e) || qa_h5_attr_str(f, "created_utc", created, e) ||
        qa_h5_attr_str(f, "qalign_version", m->qalign_version, e) ||
        qa_h5_attr_str(f, "checksum_scheme", CHECKSUM_SCHEME, e))
        goto fail;
    static const char *const groups[] = {"lora", "optim", "optim/m", "optim/v", "rng", "data", "metrics"};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        if ((g = qa_h5_create_group(f, groups[i], e)) < 0) goto fail;
        if (!strcmp(groups[i], "optim") && qa_h5_attr_i64(g, "step", m->optim_step, e)) goto fail;
        if (!strcmp(groups[i], "data") &&
            (qa_h5_attr_u64(g, "shuffle_seed", m->shuffle_seed, e) || qa_h5_attr_i64(g, "epoch", m->epoch, e) ||
             qa_h5_attr_i64(g, "cursor", m->cursor, e)))
            goto fail;
        qa_h5_close(&g);
    }
    qa_h5_dset_opts o = {0, deflate, 1};
    uint32_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const item *it = &v[i];
        size_t nbytes = (size_t)numel_of(it->ndim, it->shape) * qa_ckpt_dtype_size(it->dtype);
        if (qa_h5_write(f, it->path, (qa_h5_dt)it->dtype, it->ndim, it->shape, it->data, &o, &d, e)) goto fail;
        uint32_t crc = crc32c(0, it->data, nbytes);
        total = qa_ckpt_crc_chain(total, it->path, crc);
        if (qa_h5_attr_u32(d, "crc32c", crc, e)) goto fail;
        if (it->layout && qa_h5_attr_str(d, "layout", it->layout, e)) goto fail;
        qa_h5_close(&d);
    }
    if (qa_h5_attr_u32(f, "checksum", total, e)) goto fail;
    qa_h5_close(&d);
    if (qa_h5_mem_close(&f, &mem, path, img, img_len, e)) goto fail;
    rc = 0;
fail:
    qa_h5_close(&d);
    qa_h5_close(&g);
    qa_h5_close(&f); /* in memory: nothing to flush to disk, cannot fail on a full disk */
    free(mem.kept);  /* set only when a close above handed the buffer over */
    return rc;
}

/* Retention after a commit of `step`: see checkpoint.h. */
static int retain(const char *dir, int64_t step, const qa_ckpt_save_opts *o, qa_err *e) {
    qa_ckpt_entry *v;
    size_t n;
    if (qa_ckpt_list(dir, &v, &n, e)) return qa_err_prefix(e, "checkpoint committed, but retention failed");
    int rc = 0, kept = 0;
    for (size_t k = n; k-- > 0;) { /* newest first */
        const qa_ckpt_entry *x = &v[k];
        const char *why = NULL;
        if (x->tmp) {
            if (x->step > step) continue;
            why = "an interrupted save";
        } else if (x->step > step) {
            why = "newer than the checkpoint just written: left from before a resume";
        } else if (x->step == step) {
            kept++;
            continue;
        } else if (o->keep_every > 0 && x->step % o->keep_every == 0) {
            continue; /* permanent */
        } else if (o->keep_last == 0 || kept < o->keep_last) {
            kept++;
            continue;
        }
        if (!x->tmp) {
            char *sc = sidecar_path(x->path);
            unlink(sc); /* its checksum file; absent for checkpoints copied without it */
            free(sc);
        }
        if (unlink(x->path) < 0 && errno != ENOENT) {
            if (x->tmp) { /* best effort: a temporary that cannot be removed never fails a save */
                qa_err w = {0};
                QA_ERRNO(&w, errno, "cannot remove %s (an interrupted save)", x->path);
                logf_(o->log, o->log_ctx, "%s", w.msg);
            } else {
                rc = QA_ERRNO(e, errno, "checkpoint committed, but removing %s failed", x->path);
            }
        } else if (why) {
            logf_(o->log, o->log_ctx, "removed %s (%s)", x->path, why);
        }
    }
    qa_ckpt_list_free(v, n);
    return rc;
}

int qa_ckpt_save(const char *run_dir, const qa_ckpt_meta *meta, const qa_ckpt_state *st, const qa_ckpt_save_opts *opts,
                 char *out_path, size_t out_cap, qa_err *e) {
    qa_ckpt_save_opts o = {.keep_last = 3};
    if (opts) o = *opts;
    if (out_path && out_cap) out_path[0] = 0;
    if (meta->step < 0) return QA_ERR(e, "cannot save a checkpoint of negative step %lld", (long long)meta->step);
    if (o.keep_last < 0) return QA_ERR(e, "keep_last must be ≥ 0 (0 keeps all), got %d", o.keep_last);
    item *v = NULL;
    size_t n = 0;
    if (build_items(st, &v, &n, e)) return qa_err_prefix(e, "checkpoint of step %lld not saved", (long long)meta->step);

    char *dir = qa_ckpt_dir(run_dir);
    char name[64], *final = NULL;
    int rc = -1;
    qa_atomic a = {.fd = -1};
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    if (qa_mkdir_p_mode(dir, 0750, e)) goto out;
    /* temporaries of interrupted saves (step files, their checksum files, `latest`): one process saves
     * into a run directory, so every temporary found here is stale */
    qa_remove_stale_temps(dir, "");
    snprintf(name, sizeof name, "step_%08lld.h5", (long long)meta->step);
    final = qa_path_join(dir, name);
    {
        void *img = NULL;
        size_t img_len = 0;
        int r = build_image(final, meta, v, n, o.deflate, &img, &img_len, e);
        if (!r) r = qa_atomic_open(&a, final, 0640, e);
        if (!r) r = qa_atomic_write(&a, img, img_len, e);
        if (!r) r = qa_atomic_sync(&a, e);
        if (!r) r = write_sidecar(final, img, img_len, e);
        free(img);
        if (r) {
            qa_atomic_abort(&a);
            qa_err_prefix(e, "checkpoint of step %lld not saved (earlier checkpoints are intact)", (long long)meta->step);
            goto out;
        }
    }
    if (!o.no_verify) {
        qa_ckpt *c = NULL;
        if (qa_ckpt_open(&c, a.tmp, e)) {
            qa_atomic_abort(&a);
            qa_err_prefix(e, "checkpoint of step %lld not saved: the written file fails verification", (long long)meta->step);
            goto out;
        }
        qa_ckpt_close(c);
    }
    if (qa_atomic_commit(&a, e)) {
        qa_err_prefix(e, "checkpoint of step %lld not saved", (long long)meta->step);
        goto out;
    }
    {
        char line[80];
        snprintf(line, sizeof line, "%s\n", name);
        char *latest = qa_path_join(dir, "latest");
        int r = qa_write_file_atomic(latest, line, strlen(line), e);
        free(latest);
        if (r) {
            qa_err_prefix(e, "checkpoint %s committed but the 'latest' pointer was not updated", final);
            goto out;
        }
    }
    if (retain(dir, meta->step, &o, e)) goto out;
    rc = 0;
out:
    if (rc == 0 && out_path && out_cap) snprintf(out_path, out_cap, "%s", final);
    qa_h5_quiet_end(&q);
    qa_atomic_abort(&a);
    items_free(v, n);
    free(final);
    free(dir);
    return rc;
}

/* ---- open / verify --------------------------------------------------------------------------- */
struct qa_ckpt {
    char *path;
    hid_t file;
    qa_ckpt_meta meta;
    char **target_modules;
    size_t n_target_modules;
    char *base_model, *base_model_id, *config_yaml, *qalign_version, *created_utc;
    qa_ckpt_info *t;
    size_t n;
};

typedef struct visit_ctx {
    char **paths;
    size_t n, cap;
} visit_ctx;

static herr_t visit_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    visit_ctx *vc = data;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return -1;
    H5I_type_t ty = H5Iget_type(o);
    H5Oclose(o);
    if (ty != H5I_DATASET) return 0;
    if (vc->n == vc->cap) vc->paths = qa_realloc(vc->paths, (vc->cap = vc->cap ? vc->cap * 2 : 64) * sizeof *vc->paths);
    vc->paths[vc->n++] = qa_strdup(name);
    return 0;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int info_cmp(const void *a, const void *b) {
    return strcmp(((const qa_ckpt_info *)a)->path, ((const qa_ckpt_info *)b)->path);
}

void qa_ckpt_close(qa_ckpt *c) {
    if (!c) return;
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    qa_h5_close(&c->file);
    qa_h5_quiet_end(&q);
    for (size_t i = 0; i < c->n; i++) free((char *)c->t[i].path);
    free(c->t);
    qa_h5_free_strs(c->target_modules, c->n_target_modules);
    free(c->base_model);
    free(c->base_model_id);
    free(c->config_yaml);
    free(c->qalign_version);
    free(c->created_utc);
    free(c->path);
    free(c);
}

const qa_ckpt_meta *qa_ckpt_meta_of(const qa_ckpt *c) { return &c->meta; }
const char *qa_ckpt_path(const qa_ckpt *c) { return c->path; }
size_t qa_ckpt_count(const qa_ckpt *c) { return c->n; }
const qa_ckpt_info *qa_ckpt_at(const qa_ckpt *c, size_t i) { return i < c->n ? &c->t[i] : NULL; }
const qa_ckpt_info *qa_ckpt_find(const qa_ckpt *c, const char *path) {
    qa_ckpt_info key = {.path = path};
    return bsearch(&key, c->t, c->n, sizeof *c->t, info_cmp);
}

enum { OPEN_OK = 0, OPEN_CORRUPT = 1, OPEN_FATAL = 2 };

static int read_meta(qa_ckpt *c, int *kind, qa_err *e) {
    hid_t f = c->file, g = -1;
    const char *w = c->path;
    char *fmt = NULL;
    int64_t ver = 0, i64;
    if (qa_h5_get_attr_str(f, "format", w, &fmt, e)) return -1;
    if (strcmp(fmt, QA_CKPT_FORMAT)) {
        QA_ERR(e, "%s is an HDF5 file of format '%s', not a qalign checkpoint ('%s')", w, fmt, QA_CKPT_FORMAT);
        free(fmt);
        return -1;
    }
    free(fmt);
    if (qa_h5_get_attr_i64(f, "format_version", w, &ver, e)) return -1;
    if (ver < 1 || ver > QA_CKPT_FORMAT_VERSION) {
        if (ver > QA_CKPT_FORMAT_VERSION) *kind = OPEN_FATAL;
        return QA_ERR(e, "%s has format_version %lld; this qalign reads versions 1..%d (%s)", w, (long long)ver,
                      QA_CKPT_FORMAT_VERSION, ver > 1 ? "upgrade qalign" : "damaged");
    }
    qa_ckpt_meta *m = &c->meta;
    if (qa_h5_get_attr_i64(f, "step", w, &m->step, e) || qa_h5_get_attr_i64(f, "epoch", w, &m->epoch, e) ||
        qa_h5_get_attr_i64(f, "cursor", w, &m->cursor, e) || qa_h5_get_attr_i64(f, "tokens_seen", w, &m->tokens_seen, e) ||
        qa_h5_get_attr_i64(f, "skipped_steps", w, &m->skipped_steps, e))
        return -1;
    if (qa_h5_get_attr_i64(f, "world_size", w, &i64, e)) return -1;
    m->world_size = i64 < 1 || i64 > INT32_MAX ? 0 : (int)i64;
    if (qa_h5_get_attr_i64(f, "lora_r", w, &i64, e)) return -1;
    m->lora_r = i64 < 1 || i64 > 65536 ? 0 : (int)i64;
    if (qa_h5_get_attr_f64(f, "lora_alpha", w, &m->lora_alpha, e) ||
        qa_h5_get_attr_strs(f, "target_modules", w, &c->target_modules, &c->n_target_modules, e) ||
        qa_h5_get_attr_str(f, "base_model", w, &c->base_model, e) ||
        qa_h5_get_attr_str(f, "base_model_id", w, &c->base_model_id, e) ||
        qa_h5_get_attr_str(f, "config_yaml", w, &c->config_yaml, e) ||
        qa_h5_get_attr_str(f, "qalign_version", w, &c->qalign_version, e) ||
        qa_h5_get_attr_str(f, "created_utc", w, &c->created_utc, e) || qa_h5_get_attr_u32(f, "checksum", w, &m->checksum, e))
        return -1;
    /* the scalars a resume restores: each within what a real run can write */
    if (m->step < 0 || m->epoch < 0 || m->cursor < 0 || m->tokens_seen < 0 || m->skipped_steps < 0 ||
        m->skipped_steps > m->step || m->world_size < 1 || m->lora_r < 1 || m->lora_r > 65536 ||
        !isfinite(m->lora_alpha) || fabs(m->lora_alpha) > 1e6)
        return QA_ERR(e, "%s: attributes out of range (step %lld, epoch %lld, cursor %lld, tokens_seen %lld, "
                      "skipped_steps %lld, world_size %d, lora_r %d, lora_alpha %g): damaged or not written by qalign",
                      w, (long long)m->step, (long long)m->epoch, (long long)m->cursor, (long long)m->tokens_seen,
                      (long long)m->skipped_steps, m->world_size, m->lora_r, m->lora_alpha);
    m->target_modules = (const char *const *)c->target_modules;
    m->n_target_modules = c->n_target_modules;
    m->base_model = c->base_model;
    m->base_model_id = c->base_model_id;
    m->config_yaml = c->config_yaml;
    m->qalign_version = c->qalign_version;
    m->created_utc = c->created_utc;
    char what[1200];
    static const char *const need[] = {"lora", "optim", "data"};
    for (size_t i = 0; i < 3; i++)
        if (!qa_h5_exists(f, need[i])) return QA_ERR(e, "%s has no /%s group", w, need[i]);
    snprintf(what, sizeof what, "%s /optim", w);
    QA_H5(e, g = H5Gopen2(f, "optim", H5P_DEFAULT), "%s: cannot open /optim", w);
    if (qa_h5_get_attr_i64(g, "step", what, &m->optim_step, e)) goto fail;
    if (m->optim_step < 0 || m->optim_step > m->step) {
        QA_ERR(e, "%s: AdamW step %lld is outside [0, step %lld]: damaged or not written by qalign", what,
               (long long)m->optim_step, (long long)m->step);
        goto fail;
    }
    qa_h5_close(&g);
    snprintf(what, sizeof what, "%s /data", w);
    QA_H5(e, g = H5Gopen2(f, "data", H5P_DEFAULT), "%s: cannot open /data", w);
    if (qa_h5_get_attr_u64(g, "shuffle_seed", what, &m->shuffle_seed, e)) goto fail;
    qa_h5_close(&g);
    return 0;
fail:
    qa_h5_close(&g);
    return -1;
}

/* Read every dataset, check its crc32c and the file checksum. */
static int verify_data(qa_ckpt *c, qa_err *e) {
    visit_ctx vc = {0};
    int rc = -1;
    hid_t d = -1;
    void *buf = NULL;
    size_t buf_cap = 0;
    if (qa_h5_check_self_contained(c->file, c->path, e)) goto fail;
    if (H5Lvisit(c->file, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &vc) < 0) {
        qa_h5_fail(e, __FILE__, __LINE__, "%s: cannot walk its groups", c->path);
        goto fail;
    }
    qsort(vc.paths, vc.n, sizeof *vc.paths, str_cmp);
    c->t = qa_calloc(vc.n ? vc.n : 1, sizeof *c->t);
    uint32_t total = 0;
    for (size_t i = 0; i < vc.n; i++) {
        char what[1200];
        snprintf(what, sizeof what, "%s: dataset /%s", c->path, vc.paths[i]);
        qa_ckpt_info *t = &c->t[c->n];
        QA_H5(e, d = H5Dopen2(c->file, vc.paths[i], H5P_DEFAULT), "%s: cannot open it", what);
        int ndim;
        int64_t shape[QA_CKPT_MAX_DIMS];
        qa_h5_dt dt;
        if (qa_h5_dset_shape(d, what, QA_CKPT_MAX_DIMS, &ndim, shape, &dt, e)) goto fail;
        if (dt < QA_H5_F32 || dt > QA_H5_U64) {
            QA_ERR(e, "%s has a type qalign does not store (float32/float64/int64/uint64 expected)", what);
            goto fail;
        }
        t->path = vc.paths[i];
        vc.paths[i] = NULL;
        c->n++;
        t->dtype = (qa_ckpt_dtype)dt;
        t->ndim = ndim;
        memcpy(t->shape, shape, sizeof shape);
        t->numel = numel_of(ndim, shape);
        if (t->numel < 0 || t->numel > QA_CKPT_MAX_BYTES / (int64_t)qa_h5_dt_size(dt)) {
            QA_ERR(e, "%s: its shape holds more than %lld bytes (damaged or crafted)", what, (long long)QA_CKPT_MAX_BYTES);
            goto fail;
        }
        size_t nbytes = (size_t)t->numel * qa_h5_dt_size(dt);
        if (nbytes > buf_cap) {
            free(buf);
            buf = qa_malloc(nbytes);
            buf_cap = nbytes;
        }
        if (qa_h5_read_all(d, what, dt, buf, e)) goto fail;
        uint32_t want;
        if (qa_h5_get_attr_u32(d, "crc32c", what, &want, e)) goto fail;
        uint32_t got = crc32c(0, buf, nbytes);
        if (got != want) {
            QA_ERR(e, "%s: crc32c mismatch (stored %08x, data %08x): the data was modified or damaged", what, want, got);
            goto fail;
        }
        t->crc32c = got;
        total = qa_ckpt_crc_chain(total, t->path, got);
        qa_h5_close(&d);
    }
    if (total != c->meta.checksum) {
        QA_ERR(e, "%s: file checksum mismatch (stored %08x, datasets give %08x): a dataset was added, removed or renamed",
               c->path, c->meta.checksum, total);
        goto fail;
    }
    /* /optim/{m,v} mirror /lora; /lora is float32 */
    for (size_t i = 0; i < c->n; i++) {
        const qa_ckpt_info *t = &c->t[i];
        if (!strncmp(t->path, "lora/", 5) && t->dtype != QA_CKPT_F32) {
            QA_ERR(e, "%s: /%s is %s, LoRA tensors must be float32", c->path, t->path, qa_ckpt_dtype_name(t->dtype));
            goto fail;
        }
        const char *base = !strncmp(t->path, "optim/m/", 8) || !strncmp(t->path, "optim/v/", 8) ? t->path + 8 : NULL;
        if (!base) continue;
        char lp[1100];
        snprintf(lp, sizeof lp, "lora/%s", base);
        const qa_ckpt_info *l = qa_ckpt_find(c, lp);
        if (!l || l->ndim != t->ndim || memcmp(l->shape, t->shape, sizeof l->shape[0] * (size_t)t->ndim) ||
            t->dtype != QA_CKPT_F32) {
            QA_ERR(e, "%s: /%s has no float32 /lora tensor of the same shape", c->path, t->path);
            goto fail;
        }
    }
    rc = 0;
fail:
    qa_h5_close(&d);
    for (size_t i = 0; i < vc.n; i++) free(vc.paths[i]);
    free(vc.paths);
    free(buf);
    return rc;
}

/* The whole-file checksum sidecar "<file>.crc32c" (io/h5util.h): written at commit before the rename,
 * checked before HDF5 opens the file, because some HDF5 metadata carries no checksum and a damaged
 * file can crash the library itself. A checkpoint copied without its sidecar is still verified
 * dataset by dataset. */
static char *sidecar_path(const char *h5) { return qa_h5_sidecar_path(h5); }

static int write_sidecar(const char *h5_final, const void *img, size_t len, qa_err *e) {
    return qa_h5_sidecar_write(h5_final, qa_crc32c(0, img, len), len, e);
}

static int check_sidecar(const char *path, qa_err *e) { return qa_h5_sidecar_check(path, 0, e); }

static int open_ex(qa_ckpt **out, const char *path, int *kind, qa_err *e) {
    *out = NULL;
    *kind = OPEN_CORRUPT;
    if (access(path, R_OK) < 0) {
        *kind = OPEN_FATAL;
        return QA_ERRNO(e, errno, "cannot read checkpoint %s", path);
    }
    if (qa_check_input(path, e)) {  /* a FIFO or device where a checkpoint is expected: refused, never opened */
        *kind = OPEN_FATAL;
        return -1;
    }
    if (check_sidecar(path, e)) return -1; /* kind stays OPEN_CORRUPT: fall back */
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    qa_ckpt *c = qa_calloc(1, sizeof *c);
    c->path = qa_strdup(path);
    c->file = qa_h5_open_file_ro(path, e);
    if (c->file < 0 || read_meta(c, kind, e) || verify_data(c, e)) goto fail;
    {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        int64_t fstep;
        if (parse_name(base, &fstep) >= 0 && fstep != c->meta.step) {
            QA_ERR(e, "%s: the file name says step %lld but the file holds step %lld (renamed?)", path, (long long)fstep,
                   (long long)c->meta.step);
            goto fail;
        }
    }
    qa_h5_quiet_end(&q);
    *kind = OPEN_OK;
    *out = c;
    return 0;
fail:
    qa_h5_quiet_end(&q);
    qa_ckpt_close(c);
    return -1;
}

int qa_ckpt_open(qa_ckpt **out, const char *path, qa_err *e) {
    int kind;
    return open_ex(out, path, &kind, e);
}

int qa_ckpt_read(qa_ckpt *c, const char *path, qa_ckpt_dtype dtype, int ndim, const int64_t *shape, void *out,
                 qa_err *e) {
    const qa_ckpt_info *t = qa_ckpt_find(c, path);
    if (!t) return QA_ERR(e, "checkpoint %s has no dataset /%s", c->path, path);
    if (t->dtype != dtype)
        return QA_ERR(e, "checkpoint %s: /%s is %s, expected %s", c->path, path, qa_ckpt_dtype_name(t->dtype),
                      qa_ckpt_dtype_name(dtype));
    if (shape && ndim >= 0 && (ndim != t->ndim || memcmp(shape, t->shape, sizeof *shape * (size_t)ndim))) {
        char a[128], b[128];
        shape_str(a, sizeof a, t->ndim, t->shape);
        shape_str(b, sizeof b, ndim, shape);
        return QA_ERR(e, "checkpoint %s: /%s has shape %s, the model expects %s (different lora_r or model?)", c->path,
                      path, a, b);
    }
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    hid_t d = -1;
    int rc = -1;
    char what[1200];
    snprintf(what, sizeof what, "%s: dataset /%s", c->path, path);
    QA_H5(e, d = H5Dopen2(c->file, path, H5P_DEFAULT), "%s: cannot open it", what);
    if (qa_h5_read_all(d, what, (qa_h5_dt)dtype, out, e)) goto fail;
    uint32_t got = crc32c(0, out, (size_t)t->numel * qa_ckpt_dtype_size(dtype));
    if (got != t->crc32c) {
        QA_ERR(e, "%s: crc32c changed since the checkpoint was opened (the file was modified)", what);
        goto fail;
    }
    rc = 0;
fail:
    qa_h5_close(&d);
    qa_h5_quiet_end(&q);
    return rc;
}

static int read_group(qa_ckpt *c, const char *group, const qa_ckpt_tensor *v, size_t n, qa_err *e) {
    for (size_t i = 0; i < n; i++) {
        if (!v[i].data) continue;
        if (check_tensor(&v[i], group, 0, e)) return -1;
        char *p = join_path(group, v[i].name);
        int r = qa_ckpt_read(c, p, v[i].dtype, v[i].ndim, v[i].shape, v[i].data, e);
        free(p);
        if (r) return -1;
    }
    return 0;
}

int qa_ckpt_read_state(qa_ckpt *c, const qa_ckpt_state *st, qa_err *e) {
    /* the file's /lora set must equal the model's */
    size_t in_file = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (strncmp(c->t[i].path, "lora/", 5)) continue;
        in_file++;
        size_t j = 0;
        while (j < st->n_lora && strcmp(st->lora[j].name, c->t[i].path + 5)) j++;
        if (j == st->n_lora)
            return QA_ERR(e, "checkpoint %s has LoRA tensor %s that the model does not have (different target_modules or "
                             "model?)", c->path, c->t[i].path + 5);
    }
    if (in_file != st->n_lora) {
        for (size_t j = 0; j < st->n_lora; j++) {
            char *p = join_path("lora", st->lora[j].name ? st->lora[j].name : "");
            int have = qa_ckpt_find(c, p) != NULL;
            free(p);
            if (!have)
                return QA_ERR(e, "checkpoint %s has no LoRA tensor %s (different target_modules or model?)", c->path,
                              st->lora[j].name);
        }
        return QA_ERR(e, "checkpoint %s: the model lists a LoRA tensor twice", c->path);
    }
    for (size_t j = 0; j < st->n_lora; j++) {
        const qa_ckpt_tensor *t = &st->lora[j];
        if (check_tensor(t, "lora", 1, e)) return -1;
        const char *grp[3] = {"lora", "optim/m", "optim/v"};
        void *dst[3] = {t->data, st->adam_m ? st->adam_m[j] : NULL, st->adam_v ? st->adam_v[j] : NULL};
        for (int k = 0; k < 3; k++) {
            if (!dst[k]) continue;
            char *p = join_path(grp[k], t->name);
            int r;
            if (k && !qa_ckpt_find(c, p))
                r = QA_ERR(e, "checkpoint %s has no AdamW state /%s (saved without optimizer state?)", c->path, p);
            else
                r = qa_ckpt_read(c, p, QA_CKPT_F32, t->ndim, t->shape, dst[k], e);
            free(p);
            if (r) return -1;
        }
    }
    QA_TRY(read_group(c, "rng", st->rng, st->n_rng, e));
    QA_TRY(read_group(c, "data", st->data, st->n_data, e));
    QA_TRY(read_group(c, "metrics", st->metrics, st->n_metrics, e));
    return 0;
}

/* ---- load latest ------------------------------------------------------------------------------ */
int qa_ckpt_load_latest(const char *run_dir, const qa_ckpt_state *st, qa_ckpt **out, qa_log_fn log, void *log_ctx,
                        qa_err *e) {
    *out = NULL;
    char *dir = qa_ckpt_dir(run_dir);
    qa_ckpt_entry *v = NULL;
    size_t n = 0;
    int rc = -1;
    char failed[QA_ERR_MSG];
    size_t fl = 0;
    failed[0] = 0;
    if (qa_ckpt_list(dir, &v, &n, e)) goto out;
    size_t n_real = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].tmp) logf_(log, log_ctx, "ignoring %s: an interrupted save, never committed", v[i].path);
        else n_real++;
    }
    if (!n_real) {
        rc = 0;
        goto out;
    }
    for (size_t k = n; k-- > 0;) {
        if (v[k].tmp) continue;
        qa_ckpt *c = NULL;
        int kind;
        qa_err ce = {0};
        if (open_ex(&c, v[k].path, &kind, &ce) == 0) {
            if (st && qa_ckpt_read_state(c, st, e)) {
                qa_err_prefix(e, "resuming from %s", v[k].path);
                qa_ckpt_close(c);
                goto out;
            }
            *out = c;
            rc = 1;
            goto out;
        }
        if (kind == OPEN_FATAL) {
            *e = ce;
            goto out;
        }
        /* the reason usually starts with the path again: drop it */
        const char *why = ce.msg;
        size_t pl = strlen(v[k].path);
        if (!strncmp(why, v[k].path, pl) && !strncmp(why + pl, ": ", 2)) why += pl + 2;
        const char *prev = NULL;
        for (size_t j = k; j-- > 0;)
            if (!v[j].tmp) { prev = v[j].path; break; }
        if (prev) logf_(log, log_ctx, "checkpoint %s is corrupt (%s); falling back to %s", v[k].path, why, prev);
        else logf_(log, log_ctx, "checkpoint %s is corrupt (%s); no earlier checkpoint to fall back to", v[k].path, why);
        if (fl < sizeof failed)
            fl += (size_t)snprintf(failed + fl, sizeof failed - fl, "%s%s", fl ? ", " : "", strrchr(v[k].path, '/') + 1);
    }
    QA_ERR(e, "no valid checkpoint in %s: every one is corrupt (%s); move them away to start from scratch", dir, failed);
out:
    qa_ckpt_list_free(v, n);
    free(dir);
    return rc;
}
