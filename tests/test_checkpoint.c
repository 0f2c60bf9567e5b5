/* test_checkpoint.c — the HDF5 checkpoint store (io/checkpoint.h).
 *
 *   test_checkpoint roundtrip|retention|corrupt|badinput|diskfull-rlimit   unit groups (temp dirs)
 *   test_checkpoint diskfull-tmpfs        ENOSPC on a small tmpfs; exit 77 (skip) if mount is refused
 *   test_checkpoint sample RUN_DIR        write a sample run dir (steps 1 and 2) for the h5py/CLI tests
 *   test_checkpoint cli QALIGN RUN_DIR    `qalign ckpt-info` on the sample and on damaged copies
 */
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/checkpoint.h"
#include "testutil.h"

#include <hdf5.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a synthetic training state ------------------------------------------------------------ */
#define N_LAYERS 2
#define N_LORA (N_LAYERS * 2 * 2) /* layers x {q_proj, v_proj} x {A, B} */
#define R 4
#define D 64
#define BIG_IN 40000 /* one lora_A of [R, BIG_IN] = 640 KB; [8, BIG_IN] over 1 MiB → several chunks */

typedef struct state {
    char names[N_LORA][128];
    qa_ckpt_tensor lora[N_LORA];
    float *w[N_LORA], *m[N_LORA], *v[N_LORA];
    uint64_t rng_host[4], rng_dropout[2];
    int64_t order[100];
    int64_t mstep[5];
    double mloss[5];
    qa_ckpt_tensor rng[2], data[1], metrics[2];
    qa_ckpt_state st;
    const char *tm[2];
    qa_ckpt_meta meta;
} state;

/* Values exactly representable in float32 so the python test can recompute them. */
static float sample_value(int t, int64_t j, int salt) { return (float)((j * 7 + t * 13 + salt * 101) % 1024) / 1024.0f - 0.5f; }

static void state_init(state *s, int salt, int64_t step) {
    memset(s, 0, sizeof *s);
    int k = 0;
    for (int l = 0; l < N_LAYERS; l++)
        for (int p = 0; p < 2; p++)
            for (int ab = 0; ab < 2; ab++, k++) {
                snprintf(s->names[k], sizeof s->names[k], "base_model.model.model.layers.%d.self_attn.%s.lora_%s.weight", l,
                         p ? "v_proj" : "q_proj", ab ? "B" : "A");
                qa_ckpt_tensor *t = &s->lora[k];
                t->name = s->names[k];
                t->dtype = QA_CKPT_F32;
                t->ndim = 2;
                int big = (l == 1 && p == 1 && ab == 0); /* one large tensor: several chunks */
                t->shape[0] = ab ? D : (big ? 8 : R);
                t->shape[1] = ab ? (big ? 8 : R) : (big ? BIG_IN : D);
                if (l == 1 && p == 1 && ab == 1) t->shape[1] = 8;
                t->layout = ab ? "[out_features, r]" : "[r, in_features]";
                int64_t n = t->shape[0] * t->shape[1];
                s->w[k] = qa_malloc((size_t)n * 4);
                s->m[k] = qa_malloc((size_t)n * 4);
                s->v[k] = qa_malloc((size_t)n * 4);
                for (int64_t j = 0; j < n; j++) {
                    s->w[k][j] = sample_value(k, j, salt);
                    s->m[k][j] = sample_value(k, j, salt + 1) * 1e-3f;
                    s->v[k][j] = sample_value(k, j, salt + 2) * sample_value(k, j, salt + 2) * 1e-6f;
                }
                t->data = s->w[k];
            }
    /* bit patterns that a lossy path would change */
    uint32_t nan_payload = 0x7fc12345u, denorm = 0x00000001u, negzero = 0x80000000u;
    memcpy(&s->w[0][0], &nan_payload, 4);
    memcpy(&s->w[0][1], &denorm, 4);
    memcpy(&s->w[0][2], &negzero, 4);
    s->w[0][3] = INFINITY;
    s->rng_host[0] = UINT64_MAX;
    s->rng_host[1] = 0x9e3779b97f4a7c15ull ^ (uint64_t)salt;
    s->rng_host[2] = (uint64_t)step;
    s->rng_host[3] = 1ull << 63;
    s->rng_dropout[0] = 42;
    s->rng_dropout[1] = 0xdeadbeefcafef00dull;
    for (int i = 0; i < 100; i++) s->order[i] = (i * 37 + salt) % 100;
    for (int i = 0; i < 5; i++) { s->mstep[i] = i * 10; s->mloss[i] = 2.5 / (i + 1) + salt * 1e-9; }
    s->rng[0] = (qa_ckpt_tensor){"host", QA_CKPT_U64, 1, {4}, s->rng_host, NULL};
    s->rng[1] = (qa_ckpt_tensor){"dropout", QA_CKPT_U64, 1, {2}, s->rng_dropout, NULL};
    s->data[0] = (qa_ckpt_tensor){"order", QA_CKPT_I64, 1, {100}, s->order, NULL};
    s->metrics[0] = (qa_ckpt_tensor){"step", QA_CKPT_I64, 1, {5}, s->mstep, NULL};
    s->metrics[1] = (qa_ckpt_tensor){"loss", QA_CKPT_F64, 1, {5}, s->mloss, NULL};
    s->st = (qa_ckpt_state){s->lora, N_LORA, s->m, s->v, s->rng, 2, s->data, 1, s->metrics, 2};
    s->tm[0] = "q_proj";
    s->tm[1] = "v_proj";
    s->meta = (qa_ckpt_meta){
        .step = step, .optim_step = step, .epoch = step / 7, .cursor = step * 16 % 1000, .tokens_seen = step * 4096,
        .skipped_steps = 1, .shuffle_seed = 1234567890123ull, .world_size = 4, .lora_r = R, .lora_alpha = 16.0,
        .target_modules = s->tm, .n_target_modules = 2, .base_model = "/models/llama-2-7b",
        .base_model_id = "meta-llama/Llama-2-7b-hf", .config_yaml = "model: llama\nlora:\n  r: 4\n  alpha: 16\n",
        .qalign_version = "0.1.0-test"};
}

/* An empty state with the same shapes (load destinations). */
static void state_blank(state *b, const state *ref) {
    state_init(b, 999, 0);
    for (int k = 0; k < N_LORA; k++) {
        int64_t n = ref->lora[k].shape[0] * ref->lora[k].shape[1];
        memset(b->w[k], 0, (size_t)n * 4);
        memset(b->m[k], 0, (size_t)n * 4);
        memset(b->v[k], 0, (size_t)n * 4);
    }
    memset(b->rng_host, 0, sizeof b->rng_host);
    memset(b->rng_dropout, 0, sizeof b->rng_dropout);
    memset(b->order, 0, sizeof b->order);
    memset(b->mstep, 0, sizeof b->mstep);
    memset(b->mloss, 0, sizeof b->mloss);
}

static void state_free(state *s) {
    for (int k = 0; k < N_LORA; k++) { free(s->w[k]); free(s->m[k]); free(s->v[k]); }
}

static int state_equal(const state *a, const state *b) {
    for (int k = 0; k < N_LORA; k++) {
        size_t n = (size_t)(a->lora[k].shape[0] * a->lora[k].shape[1]) * 4;
        if (memcmp(a->w[k], b->w[k], n) || memcmp(a->m[k], b->m[k], n) || memcmp(a->v[k], b->v[k], n)) return 0;
    }
    return !memcmp(a->rng_host, b->rng_host, sizeof a->rng_host) &&
           !memcmp(a->rng_dropout, b->rng_dropout, sizeof a->rng_dropout) && !memcmp(a->order, b->order, sizeof a->order) &&
           !memcmp(a->mstep, b->mstep, sizeof a->mstep) && !memcmp(a->mloss, b->mloss, sizeof a->mloss);
}

/* ---- helpers --------------------------------------------------------------------------------- */
typedef struct logbuf {
    char text[16384];
    size_t n;
} logbuf;
static void log_capture(void *ctx, const char *msg) {
    logbuf *l = ctx;
    if (l->n < sizeof l->text) l->n += (size_t)snprintf(l->text + l->n, sizeof l->text - l->n, "%s\n", msg);
    if (getenv("QT_VERBOSE")) printf("    log: %s\n", msg);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb; (void)flag; (void)f;
    return remove(p);
}
static void rm_rf(const char *dir) {
    if (getenv("QT_KEEP")) { printf("  kept %s\n", dir); return; }
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(const char *tag) {
    const char *base = qt_env_or("TMPDIR", "/tmp");
    char *p = qa_malloc(strlen(base) + 64);
    sprintf(p, "%s/qa_ckpt_%s_XXXXXX", base, tag);
    if (!mkdtemp(p)) { perror("mkdtemp"); exit(1); }
    return p;
}

static char *ckpt_path(const char *run, int64_t step) {
    char *p = qa_malloc(strlen(run) + 64);
    sprintf(p, "%s/checkpoints/step_%08lld.h5", run, (long long)step);
    return p;
}

static int save_step(const char *run, int salt, int64_t step, const qa_ckpt_save_opts *o, qa_err *e) {
    state s;
    state_init(&s, salt, step);
    int r = qa_ckpt_save(run, &s.meta, &s.st, o, NULL, 0, e);
    state_free(&s);
    return r;
}

static int count_files(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) if (strstr(de->d_name, needle)) n++;
    closedir(d);
    return n;
}

static char *read_text(const char *path) {
    char *buf;
    size_t n;
    qa_err e = {0};
    if (qa_read_file(path, 0, &buf, &n, &e)) return qa_strdup("");
    return buf;
}

/* Load the newest checkpoint into a blank state; returns the step (or -1 none, -2 error). */
static int64_t load_step(const char *run, logbuf *lb, qa_err *e, int salt_expect) {
    state ref, b;
    state_init(&ref, salt_expect, 0);
    state_blank(&b, &ref);
    qa_ckpt *c = NULL;
    int r = qa_ckpt_load_latest(run, &b.st, &c, lb ? log_capture : NULL, lb, e);
    int64_t step = r == 1 ? qa_ckpt_meta_of(c)->step : r == 0 ? -1 : -2;
    if (r == 1) {
        state_free(&ref);
        state_init(&ref, salt_expect, step);
        QT_CHECK(state_equal(&ref, &b), "state of step %lld loaded bit-exact", (long long)step);
        qa_ckpt_close(c);
    }
    state_free(&ref);
    state_free(&b);
    return step;
}

/* Flip one byte inside the stored data of dataset dset (first chunk, middle). */
static int flip_data_byte(const char *file, const char *dset) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) return -1;
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0, off[8];
    unsigned mask;
    int rc = sp >= 0 ? H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    if (rc < 0 || addr == HADDR_UNDEF || !size) return -1;
    int fd = open(file, O_RDWR);
    if (fd < 0) return -1;
    off_t at = (off_t)(addr + size / 2);
    unsigned char c;
    if (pread(fd, &c, 1, at) != 1) { close(fd); return -1; }
    c ^= 0x40;
    rc = pwrite(fd, &c, 1, at) == 1 ? 0 : -1;
    close(fd);
    return rc;
}

/* Rewrite a dataset's values through HDF5 (fletcher32 stays consistent; only crc32c can tell). */
static int tamper_values(const char *file, const char *dset) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (f < 0) return -1;
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    float *buf = qa_malloc((size_t)n * 4);
    int rc = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    buf[n / 2] += 1.0f;
    if (rc >= 0) rc = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    free(buf);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return rc < 0 ? -1 : 0;
}

static int set_root_attr_i64(const char *file, const char *name, int64_t v) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (f < 0) return -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    int rc = H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Fclose(f);
    return rc < 0 ? -1 : 0;
}

static void truncate_half(const char *file) {
    struct stat sb;
    if (stat(file, &sb) == 0 && truncate(file, sb.st_size / 2) == 0) return;
    printf("  cannot truncate %s\n", file);
}

/* ---- test groups ------------------------------------------------------------------------------- */
static void t_crc(void) {
    /* the file's CRC32C (hardware path when available) equals the portable qa_crc32c */
    uint8_t buf[4096 + 16];
    uint64_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) { x = x * 6364136223846793005ull + 1442695040888963407ull; buf[i] = (uint8_t)(x >> 56); }
    int ok = 1;
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len < 300; len += 7) ok &= qa_ckpt_crc32c(buf + off, len) == qa_crc32c(0, buf + off, len);
    ok &= qa_ckpt_crc32c(buf, 4096) == qa_crc32c(0, buf, 4096);
    QT_CHECK(ok, "qa_ckpt_crc32c == qa_crc32c on all offsets / lengths");
    QT_CHECK(qa_ckpt_crc32c("123456789", 9) == 0xe3069283u, "CRC32C check value of \"123456789\"");
}

static void t_roundtrip(void) {
    t_crc();
    char *run = make_tmpdir("rt");
    qa_err e = {0};
    state s;
    state_init(&s, 1, 10);
    char out[4096];
    QT_CHECK(qa_ckpt_save(run, &s.meta, &s.st, NULL, out, sizeof out, &e) == 0, "save: %s", e.msg);
    char *p10 = ckpt_path(run, 10);
    QT_CHECK(!strcmp(out, p10), "committed path %s", out);
    char *lp = qa_path_join(run, "checkpoints/latest");
    char *latest = read_text(lp);
    QT_CHECK(!strcmp(latest, "step_00000010.h5\n"), "latest = '%s'", latest);
    free(latest);
    char *cd = qa_ckpt_dir(run);
    QT_CHECK(count_files(cd, ".tmp.") == 0, "no temporary left");
    free(cd);

    state b;
    state_blank(&b, &s);
    qa_ckpt *c = NULL;
    logbuf lb = {0};
    int r = qa_ckpt_load_latest(run, &b.st, &c, log_capture, &lb, &e);
    QT_CHECK(r == 1, "load_latest found it (r=%d: %s)", r, e.msg);
    if (r == 1) {
        QT_CHECK(state_equal(&s, &b), "every tensor bit-exact (f32 NaN payload, denormal, -0, inf; u64; i64; f64)");
        const qa_ckpt_meta *m = qa_ckpt_meta_of(c);
        QT_CHECK(m->step == 10 && m->optim_step == 10 && m->epoch == 1 && m->cursor == 160 && m->tokens_seen == 40960 &&
                     m->skipped_steps == 1 && m->shuffle_seed == 1234567890123ull && m->world_size == 4 && m->lora_r == R &&
                     m->lora_alpha == 16.0,
                 "scalars round trip");
        QT_CHECK(m->n_target_modules == 2 && !strcmp(m->target_modules[0], "q_proj") && !strcmp(m->target_modules[1], "v_proj"),
                 "target_modules round trip");
        QT_CHECK(!strcmp(m->config_yaml, s.meta.config_yaml) && !strcmp(m->base_model, s.meta.base_model) &&
                     !strcmp(m->base_model_id, s.meta.base_model_id) && !strcmp(m->qalign_version, "0.1.0-test"),
                 "strings round trip");
        QT_CHECK(strlen(m->created_utc) == 20 && m->created_utc[19] == 'Z', "created_utc '%s'", m->created_utc);
        QT_CHECK(!strcmp(qa_ckpt_path(c), p10), "path of the handle");
        QT_CHECK(qa_ckpt_count(c) == 3 * N_LORA + 2 + 1 + 2, "dataset count %zu", qa_ckpt_count(c));
        /* variable-length metrics through find + read */
        const qa_ckpt_info *li = qa_ckpt_find(c, "metrics/loss");
        QT_CHECK(li && li->ndim == 1 && li->shape[0] == 5 && li->dtype == QA_CKPT_F64, "metrics/loss info");
        if (li) {
            double *loss = qa_malloc((size_t)li->numel * 8);
            QT_CHECK(qa_ckpt_read(c, "metrics/loss", QA_CKPT_F64, -1, NULL, loss, &e) == 0 &&
                         !memcmp(loss, s.mloss, sizeof s.mloss), "metrics/loss read: %s", e.msg);
            free(loss);
        }
        /* a wrong shape names the dataset */
        float tmp[4];
        int64_t bad[2] = {2, 2};
        qa_err e2 = {0};
        QT_CHECK(qa_ckpt_read(c, "lora/base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", QA_CKPT_F32, 2, bad,
                              tmp, &e2) < 0 && strstr(e2.msg, "q_proj.lora_A.weight") && strstr(e2.msg, "[4, 64]"),
                 "shape mismatch message: %s", e2.msg);
        qa_ckpt_close(c);
    }
    QT_CHECK(lb.n == 0, "no warnings on a clean load: %s", lb.text);
    state_free(&b);

    /* deflate round trip, same bits */
    char *run2 = make_tmpdir("rtz");
    qa_ckpt_save_opts oz = {.keep_last = 2, .deflate = 1};
    QT_CHECK(qa_ckpt_save(run2, &s.meta, &s.st, &oz, NULL, 0, &e) == 0, "deflate save: %s", e.msg);
    QT_CHECK(load_step(run2, NULL, &e, 1) == 10, "deflate load: %s", e.msg);

    /* no checkpoint → 0 */
    char *run3 = make_tmpdir("none");
    qa_ckpt *c3 = NULL;
    QT_CHECK(qa_ckpt_load_latest(run3, NULL, &c3, NULL, NULL, &e) == 0 && !c3, "empty run dir → 0");

    /* state mismatch on resume is an error, not a fallback */
    state s4;
    state_init(&s4, 1, 0);
    s4.names[0][0] = 'X';
    qa_err e4 = {0};
    QT_CHECK(qa_ckpt_load_latest(run, &s4.st, &c3, NULL, NULL, &e4) == -1 && strstr(e4.msg, "does not have"),
             "unknown LoRA tensor in file: %s", e4.msg);
    state_free(&s4);
    state_init(&s4, 1, 0);
    s4.st.n_lora = N_LORA - 1;
    e4 = (qa_err){0};
    QT_CHECK(qa_ckpt_load_latest(run, &s4.st, &c3, NULL, NULL, &e4) == -1 && strstr(e4.msg, "does not have"),
             "fewer LoRA tensors in the model: %s", e4.msg);
    state_free(&s4);
    /* no optimizer state in the file while the trainer wants it */
    state s5;
    state_init(&s5, 1, 11);
    s5.st.adam_m = s5.st.adam_v = NULL;
    QT_CHECK(qa_ckpt_save(run3, &s5.meta, &s5.st, NULL, NULL, 0, &e) == 0, "save without optimizer: %s", e.msg);
    state_free(&s5);
    state_init(&s5, 1, 11);
    e4 = (qa_err){0};
    QT_CHECK(qa_ckpt_load_latest(run3, &s5.st, &c3, NULL, NULL, &e4) == -1 && strstr(e4.msg, "no AdamW state"),
             "missing optimizer state: %s", e4.msg);
    state_free(&s5);

    state_free(&s);
    free(lp);
    free(p10);
    rm_rf(run);
    rm_rf(run2);
    rm_rf(run3);
    free(run);
    free(run2);
    free(run3);
}

static void t_retention(void) {
    char *run = make_tmpdir("ret");
    qa_err e = {0};
    qa_ckpt_save_opts o = {.keep_last = 2};
    for (int s = 1; s <= 5; s++) QT_CHECK(save_step(run, 2, s, &o, &e) == 0, "save %d: %s", s, e.msg);
    char *d = qa_ckpt_dir(run);
    qa_ckpt_entry *v;
    size_t n;
    QT_CHECK(qa_ckpt_list(d, &v, &n, &e) == 0 && n == 2 && v[0].step == 4 && v[1].step == 5, "keep_last 2 → steps 4, 5 (n=%zu)", n);
    qa_ckpt_list_free(v, n);

    char *run2 = make_tmpdir("ret2");
    qa_ckpt_save_opts o2 = {.keep_last = 1, .keep_every = 2};
    for (int s = 1; s <= 5; s++) QT_CHECK(save_step(run2, 2, s, &o2, &e) == 0, "save %d: %s", s, e.msg);
    char *d2 = qa_ckpt_dir(run2);
    QT_CHECK(qa_ckpt_list(d2, &v, &n, &e) == 0 && n == 3 && v[0].step == 2 && v[1].step == 4 && v[2].step == 5,
             "keep_last 1 + keep_every 2 → steps 2, 4, 5 (n=%zu)", n);
    qa_ckpt_list_free(v, n);

    /* keep all */
    char *run3 = make_tmpdir("ret3");
    qa_ckpt_save_opts o3 = {.keep_last = 0};
    for (int s = 1; s <= 4; s++) save_step(run3, 2, s, &o3, &e);
    char *d3 = qa_ckpt_dir(run3);
    QT_CHECK(qa_ckpt_list(d3, &v, &n, &e) == 0 && n == 4, "keep_last 0 keeps all (n=%zu)", n);
    qa_ckpt_list_free(v, n);

    /* a save of an earlier step (resume from an older checkpoint) drops the abandoned newer ones */
    logbuf lb = {0};
    qa_ckpt_save_opts o4 = {.keep_last = 0, .log = log_capture, .log_ctx = &lb};
    QT_CHECK(save_step(run3, 2, 2, &o4, &e) == 0, "re-save step 2: %s", e.msg);
    QT_CHECK(qa_ckpt_list(d3, &v, &n, &e) == 0 && n == 2 && v[1].step == 2, "steps 3, 4 removed (n=%zu)", n);
    qa_ckpt_list_free(v, n);
    QT_CHECK(strstr(lb.text, "step_00000004.h5") && strstr(lb.text, "before a resume"), "removal logged: %s", lb.text);
    QT_CHECK(load_step(run3, NULL, &e, 2) == 2, "loads step 2");
    rm_rf(run);
    rm_rf(run2);
    rm_rf(run3);
    free(d); free(d2); free(d3);
    free(run); free(run2); free(run3);
}

static void t_corrupt(void) {
    qa_err e = {0};
    qa_ckpt_save_opts o = {.keep_last = 5};
    const char *big = "lora/base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight";
    const char *small = "optim/v/base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
    struct { const char *tag; int how; } cases[] = {
        {"flip-big", 0}, {"flip-small", 1}, {"truncate", 2}, {"tamper", 3}, {"garbage", 4}, {"renamed", 5}, {"empty", 6},
    };
    /* pass 0: the damage is caught by the whole-file checksum file written at commit (before HDF5
     * opens the file); pass 1: the checksum file is gone (a checkpoint copied alone), so the
     * HDF5-level checks (fletcher32, per-dataset crc32c, format, file name) must catch it */
    for (int pass = 0; pass < 2; pass++)
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        char *run = make_tmpdir(cases[ci].tag);
        for (int s = 1; s <= 3; s++) save_step(run, 3, s, &o, &e);
        char *p3 = ckpt_path(run, 3), *p2 = ckpt_path(run, 2);
        const char *expect = "";
        switch (cases[ci].how) {
        case 0: QT_CHECK(flip_data_byte(p3, big) == 0, "flip a byte in a chunk of %s", big); expect = "fletcher32"; break;
        case 1: QT_CHECK(flip_data_byte(p3, small) == 0, "flip a byte in %s", small); expect = "fletcher32"; break;
        case 2: truncate_half(p3); expect = "truncated"; break;
        case 3: QT_CHECK(tamper_values(p3, big) == 0, "rewrite a value through HDF5"); expect = "crc32c mismatch"; break;
        case 4: { char junk[5000]; memset(junk, 0x5a, sizeof junk); qa_write_file_atomic(p3, junk, sizeof junk, &e); expect = "HDF5"; break; }
        case 5: { char *p9 = ckpt_path(run, 9); qa_copy_file(p2, p9, &e); free(p3); p3 = p9; expect = "file name says step 9"; break; }
        case 6: qa_write_file_atomic(p3, "", 0, &e); expect = "HDF5"; break;
        }
        {
            char sc[4200];
            snprintf(sc, sizeof sc, "%s.crc32c", p3);
            if (pass == 1) unlink(sc);
            else if (cases[ci].how != 5) {
                QT_CHECK(qa_path_exists(sc), "%s: checksum file %s written at commit", cases[ci].tag, sc);
                expect = (cases[ci].how == 2 || cases[ci].how == 4 || cases[ci].how == 6) ? "were committed"
                                                                                          : "whole-file checksum";
            }
        }
        logbuf lb = {0};
        qa_err le = {0};
        int64_t got = load_step(run, &lb, &le, 3), want = cases[ci].how == 5 ? 3 : 2;
        QT_CHECK(got == want, "%s: fell back to step %lld (got %lld: %s)", cases[ci].tag, (long long)want, (long long)got, le.msg);
        QT_CHECK(strstr(lb.text, "is corrupt") && strstr(lb.text, "falling back to") &&
                     strstr(lb.text, want == 2 ? "step_00000002.h5" : "step_00000003.h5") &&
                     strstr(lb.text, strrchr(p3, '/') + 1),
                 "%s: fallback reported: %s", cases[ci].tag, lb.text);
        QT_CHECK(strstr(lb.text, expect), "%s: reason mentions '%s': %s", cases[ci].tag, expect, lb.text);
        free(p3);
        free(p2);
        rm_rf(run);
        free(run);
    }

    /* all corrupt → error naming them */
    char *run = make_tmpdir("allbad");
    for (int s = 1; s <= 2; s++) save_step(run, 3, s, &o, &e);
    char *p1 = ckpt_path(run, 1), *p2 = ckpt_path(run, 2);
    truncate_half(p1);
    flip_data_byte(p2, big);
    logbuf lb = {0};
    qa_err ae = {0};
    qa_ckpt *c = NULL;
    int r = qa_ckpt_load_latest(run, NULL, &c, log_capture, &lb, &ae);
    QT_CHECK(r == -1 && !c, "all corrupt → -1");
    QT_CHECK(strstr(ae.msg, "no valid checkpoint") && strstr(ae.msg, "step_00000001.h5") && strstr(ae.msg, "step_00000002.h5"),
             "message lists them: %s", ae.msg);
    QT_CHECK(strstr(lb.text, "no earlier checkpoint"), "last one says there is nothing to fall back to: %s", lb.text);
    free(p1);
    free(p2);
    rm_rf(run);
    free(run);

    /* a newer format_version is not silently skipped */
    run = make_tmpdir("newer");
    for (int s = 1; s <= 2; s++) save_step(run, 3, s, &o, &e);
    p2 = ckpt_path(run, 2);
    {   /* a file written by a newer qalign comes with a matching checksum file: drop ours */
        char sc[4200];
        snprintf(sc, sizeof sc, "%s.crc32c", p2);
        unlink(sc);
    }
    QT_CHECK(set_root_attr_i64(p2, "format_version", 7) == 0, "set format_version 7");
    ae = (qa_err){0};
    r = qa_ckpt_load_latest(run, NULL, &c, NULL, NULL, &ae);
    QT_CHECK(r == -1 && strstr(ae.msg, "format_version 7") && strstr(ae.msg, "upgrade"), "newer version: %s", ae.msg);
    /* changing the step attribute: caught by the file name check */
    QT_CHECK(set_root_attr_i64(p2, "format_version", 1) == 0 && set_root_attr_i64(p2, "step", 5) == 0, "set step 5");
    lb = (logbuf){0};
    QT_CHECK(load_step(run, &lb, &ae, 3) == 1 && strstr(lb.text, "holds step 5"), "step attr edit detected: %s", lb.text);
    free(p2);
    rm_rf(run);
    free(run);

    /* a stale temporary is ignored by load and removed by the next save */
    run = make_tmpdir("tmp");
    save_step(run, 3, 1, &o, &e);
    char *stale = qa_malloc(strlen(run) + 64);
    sprintf(stale, "%s/checkpoints/step_00000002.h5.tmp.123", run);
    qa_write_file_atomic(stale, "partial", 7, &e);
    lb = (logbuf){0};
    QT_CHECK(load_step(run, &lb, &e, 3) == 1, "stale tmp ignored, step 1 loaded");
    QT_CHECK(strstr(lb.text, "ignoring") && strstr(lb.text, "tmp.123"), "stale tmp mentioned: %s", lb.text);
    QT_CHECK(save_step(run, 3, 2, &o, &e) == 0, "save step 2 with a stale tmp of step 2 around: %s", e.msg);
    QT_CHECK(!qa_path_exists(stale), "stale tmp removed by the save");
    /* only a temporary → "no checkpoint" (0) */
    char *run2 = make_tmpdir("onlytmp");
    char *d2 = qa_ckpt_dir(run2);
    qa_mkdir_p(d2, &e);
    char *st2 = qa_path_join(d2, "step_00000005.h5.tmp.77");
    qa_write_file_atomic(st2, "x", 1, &e);
    QT_CHECK(qa_ckpt_load_latest(run2, NULL, &c, log_capture, &lb, &e) == 0, "only a temporary → 0");
    free(st2);
    free(d2);
    free(stale);
    rm_rf(run);
    rm_rf(run2);
    free(run);
    free(run2);
}

static void t_badinput(void) {
    char *run = make_tmpdir("bad");
    qa_err e = {0};
    state s;
    state_init(&s, 4, 1);
    s.names[1][5] = '/';
    QT_CHECK(qa_ckpt_save(run, &s.meta, &s.st, NULL, NULL, 0, &e) == -1 && strstr(e.msg, "contains '/'"), "name with '/': %s",
             e.msg);
    state_free(&s);
    state_init(&s, 4, 1);
    strcpy(s.names[1], s.names[0]);
    e = (qa_err){0};
    QT_CHECK(qa_ckpt_save(run, &s.meta, &s.st, NULL, NULL, 0, &e) == -1 && strstr(e.msg, "given twice"), "duplicate: %s", e.msg);
    state_free(&s);
    state_init(&s, 4, 1);
    s.lora[2].dtype = QA_CKPT_F64;
    e = (qa_err){0};
    QT_CHECK(qa_ckpt_save(run, &s.meta, &s.st, NULL, NULL, 0, &e) == -1 && strstr(e.msg, "float32"), "f64 LoRA: %s", e.msg);
    s.lora[2].dtype = QA_CKPT_F32;
    s.lora[2].ndim = 7;
    e = (qa_err){0};
    QT_CHECK(qa_ckpt_save(run, &s.meta, &s.st, NULL, NULL, 0, &e) == -1 && strstr(e.msg, "dimensions"), "7 dims: %s", e.msg);
    state_free(&s);
    char *d = qa_ckpt_dir(run);
    QT_CHECK(count_files(d, "step_") == 0, "nothing written by refused saves");
    /* an unwritable run dir */
    state_init(&s, 4, 1);
    e = (qa_err){0};
    QT_CHECK(qa_ckpt_save("/proc/qalign-no-such/run", &s.meta, &s.st, NULL, NULL, 0, &e) == -1 && strstr(e.msg, "/proc/"),
             "unwritable dir: %s", e.msg);
    state_free(&s);
    /* opening a non-checkpoint HDF5 file */
    char *other = qa_path_join(run, "other.h5");
    hid_t f = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    qa_ckpt *c = NULL;
    e = (qa_err){0};
    QT_CHECK(qa_ckpt_open(&c, other, &e) == -1 && strstr(e.msg, "no attribute 'format'"), "plain HDF5: %s", e.msg);
    e = (qa_err){0};
    QT_CHECK(qa_ckpt_open(&c, "/nonexistent/x.h5", &e) == -1 && strstr(e.msg, "No such file"), "missing file: %s", e.msg);
    free(other);
    free(d);
    rm_rf(run);
    free(run);
}

/* A save whose writes fail (EFBIG via RLIMIT_FSIZE in a child, or ENOSPC on a tmpfs):
 * the save returns -1 with a clear message; step 1 and `latest` stay; no temporary is left. */
static void check_failed_save_left_nothing(const char *run, const char *latest_before) {
    char *d = qa_ckpt_dir(run);
    QT_CHECK(count_files(d, ".tmp.") == 0, "no temporary left behind");
    char *p2 = ckpt_path(run, 2);
    QT_CHECK(!qa_path_exists(p2), "step 2 not visible");
    char *lp = qa_path_join(d, "latest");
    char *latest = read_text(lp);
    QT_CHECK(!strcmp(latest, latest_before), "latest unchanged ('%s')", latest);
    qa_err e = {0};
    logbuf lb = {0};
    QT_CHECK(load_step(run, &lb, &e, 5) == 1, "step 1 still loads bit-exact: %s", e.msg);
    QT_CHECK(lb.n == 0, "and without warnings: %s", lb.text);
    free(latest);
    free(lp);
    free(p2);
    free(d);
}

static void t_diskfull_rlimit(void) {
    char *run = make_tmpdir("efbig");
    qa_err e = {0};
    QT_CHECK(save_step(run, 5, 1, NULL, &e) == 0, "save step 1: %s", e.msg);
    char *d = qa_ckpt_dir(run);
    char *lp = qa_path_join(d, "latest");
    char *before = read_text(lp);
    /* several limits: the failure lands in different places (dataset write, metadata flush) */
    long limits[] = {4096, 100000, 600000, 1500000};
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        int pfd[2];
        if (pipe(pfd) < 0) { perror("pipe"); return; }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(pfd[0]);
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {(rlim_t)limits[li], (rlim_t)limits[li]};
            setrlimit(RLIMIT_FSIZE, &rl);
            qa_err ce = {0};
            int r = save_step(run, 5, 2, NULL, &ce);
            dprintf(pfd[1], "%d|%s", r, ce.msg);
            close(pfd[1]);
            _exit(0);
        }
        close(pfd[1]);
        char msg[QA_ERR_MSG + 32] = {0};
        size_t got = 0;
        ssize_t k;
        while ((k = read(pfd[0], msg + got, sizeof msg - 1 - got)) > 0) got += (size_t)k;
        close(pfd[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        QT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "limit %ld: child exited cleanly (status %d)", limits[li], status);
        QT_CHECK(!strncmp(msg, "-1|", 3), "limit %ld: save failed: %s", limits[li], msg);
        QT_CHECK(strstr(msg, "File too large") && strstr(msg, "not saved") && strstr(msg, "intact"),
                 "limit %ld: message says why and that earlier checkpoints are intact: %s", limits[li], msg);
        if (getenv("QT_VERBOSE")) printf("    %s\n", msg);
        check_failed_save_left_nothing(run, before);
    }
    free(before);
    free(lp);
    free(d);
    rm_rf(run);
    free(run);
}

static int t_diskfull_tmpfs(void) {
    /* measure one checkpoint, then mount a tmpfs with room for one but not two */
    char *probe = make_tmpdir("probe");
    qa_err e = {0};
    QT_CHECK(save_step(probe, 5, 1, NULL, &e) == 0, "probe save: %s", e.msg);
    char *pp = ckpt_path(probe, 1);
    struct stat sb = {0};
    stat(pp, &sb);
    free(pp);
    rm_rf(probe);
    free(probe);
    long kb = (long)(sb.st_size * 3 / 2 / 1024) + 64;
    char opt[64];
    snprintf(opt, sizeof opt, "size=%ldk", kb);
    char *mnt = make_tmpdir("tmpfs");
    if (mount("tmpfs", mnt, "tmpfs", 0, opt) < 0) {
        printf("SKIP: cannot mount a tmpfs (%s): needs root / CAP_SYS_ADMIN; the RLIMIT_FSIZE test covers the failure path\n",
               strerror(errno));
        rmdir(mnt);
        free(mnt);
        return 77;
    }
    printf("  checkpoint %lld bytes, tmpfs %s\n", (long long)sb.st_size, opt);
    QT_CHECK(save_step(mnt, 5, 1, NULL, &e) == 0, "save step 1 on the tmpfs: %s", e.msg);
    char *p1 = ckpt_path(mnt, 1);
    char *d = qa_ckpt_dir(mnt);
    char *lp = qa_path_join(d, "latest");
    char *before = read_text(lp);
    e = (qa_err){0};
    int r = save_step(mnt, 5, 2, NULL, &e);
    QT_CHECK(r == -1, "save step 2 fails on the full tmpfs");
    QT_CHECK(strstr(e.msg, "No space left on device") && strstr(e.msg, "intact"), "message: %s", e.msg);
    if (getenv("QT_VERBOSE")) printf("    %s\n", e.msg);
    check_failed_save_left_nothing(mnt, before);
    /* once space is freed, the next save goes through */
    unlink(p1);
    e = (qa_err){0};
    QT_CHECK(save_step(mnt, 5, 2, NULL, &e) == 0, "save after freeing space: %s", e.msg);
    free(before);
    free(lp);
    free(d);
    free(p1);
    if (umount2(mnt, 0) < 0) printf("  umount %s: %s\n", mnt, strerror(errno));
    rmdir(mnt);
    free(mnt);
    return 0;
}

/* ---- sample + CLI ----------------------------------------------------------------------------- */
static int write_sample(const char *run) {
    qa_err e = {0};
    qa_ckpt_save_opts o = {.keep_last = 3, .deflate = 1};
    for (int s = 1; s <= 2; s++)
        if (save_step(run, 7, s, &o, &e)) { qa_err_print(&e); return 1; }
    printf("sample checkpoints written under %s/checkpoints\n", run);
    return 0;
}

static void t_cli(const char *qalign, const char *sample) {
    char cmd[8192], out[65536];
    snprintf(cmd, sizeof cmd, "'%s' ckpt-info --help", qalign);
    int r = qt_run(cmd, out, sizeof out);
    QT_CHECK(r == 0 && strstr(out, "usage"), "ckpt-info --help (rc %d)", r);
    snprintf(cmd, sizeof cmd, "'%s' ckpt-info '%s'", qalign, sample);
    r = qt_run(cmd, out, sizeof out);
    QT_CHECK(r == 0, "ckpt-info RUN_DIR exits 0 (rc %d): %s", r, out);
    QT_CHECK(strstr(out, "step_00000002.h5") && strstr(out, "step_00000001.h5") && strstr(out, "resume from"),
             "lists both and says which resumes: %s", out);
    char p2[4096];
    snprintf(p2, sizeof p2, "%s/checkpoints/step_00000002.h5", sample);
    snprintf(cmd, sizeof cmd, "'%s' ckpt-info '%s'", qalign, p2);
    r = qt_run(cmd, out, sizeof out);
    QT_CHECK(r == 0 && strstr(out, "step 2") && strstr(out, "cursor") && strstr(out, "q_proj.lora_A.weight") &&
                 strstr(out, "checksum") && strstr(out, "ok"),
             "ckpt-info FILE prints step, cursor, tensors, checksum status (rc %d): %s", r, out);
    /* a damaged copy */
    char *bad = make_tmpdir("cli");
    char dst[4096];
    snprintf(dst, sizeof dst, "%s/checkpoints", bad);
    qa_err e = {0};
    qa_mkdir_p(dst, &e);
    char p1[4096], d1[4200], d2[4200];
    snprintf(p1, sizeof p1, "%s/checkpoints/step_00000001.h5", sample);
    snprintf(d1, sizeof d1, "%s/step_00000001.h5", dst);
    snprintf(d2, sizeof d2, "%s/step_00000002.h5", dst);
    qa_copy_file(p1, d1, &e);
    qa_copy_file(p2, d2, &e);
    truncate_half(d2);
    snprintf(cmd, sizeof cmd, "'%s' ckpt-info '%s'", qalign, d2);
    r = qt_run(cmd, out, sizeof out);
    QT_CHECK(r == 1 && strstr(out, "corrupt"), "damaged file → exit 1 and says corrupt (rc %d): %s", r, out);
    snprintf(cmd, sizeof cmd, "'%s' ckpt-info '%s'", qalign, bad);
    r = qt_run(cmd, out, sizeof out);
    QT_CHECK(r == 0 && strstr(out, "corrupt") && strstr(out, "resume from") && strstr(out, "step_00000001.h5"),
             "run dir with a damaged newest → exit 0, resume from step 1 (rc %d): %s", r, out);
    truncate_half(d1);
    r = qt_run(cmd, out, sizeof out);
    QT_CHECK(r == 1 && strstr(out, "no valid checkpoint"), "all damaged → exit 1 (rc %d): %s", r, out);
    snprintf(cmd, sizeof cmd, "'%s' ckpt-info /nonexistent/qalign-run", qalign);
    r = qt_run(cmd, out, sizeof out);
    QT_CHECK(r != 0 && strstr(out, "nonexistent"), "missing path → non-zero (rc %d): %s", r, out);
    rm_rf(bad);
    free(bad);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    int all = !strcmp(what, "all");
    if (!strcmp(what, "sample")) {
        if (argc < 3) { fprintf(stderr, "usage: test_checkpoint sample RUN_DIR\n"); return 2; }
        return write_sample(argv[2]);
    }
    if (!strcmp(what, "cli")) {
        if (argc < 4) { fprintf(stderr, "usage: test_checkpoint cli QALIGN RUN_DIR\n"); return 2; }
        t_cli(argv[2], argv[3]);
        return qt_finish();
    }
    if (!strcmp(what, "diskfull-tmpfs")) {
        int r = t_diskfull_tmpfs();
        if (r == 77) return 77;
        return qt_finish();
    }
    if (all || !strcmp(what, "roundtrip")) t_roundtrip();
    if (all || !strcmp(what, "retention")) t_retention();
    if (all || !strcmp(what, "corrupt")) t_corrupt();
    if (all || !strcmp(what, "badinput")) t_badinput();
    if (all || !strcmp(what, "diskfull-rlimit")) t_diskfull_rlimit();
    return qt_finish();
}
