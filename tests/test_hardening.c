/* test_hardening.c — hostile inputs and hostile file systems against the library (issue "Hardening").
 * Each case reproduces one failure mode: it crashed, hung, lost data or read out of bounds before, and
 * must now give one clear error (or the right result). Cases that could crash or hang run in a forked
 * child under alarm(), so a regression is reported as a failure, not as a dead test binary.
 *   usage: test_hardening CASE [FIXTURES_HF_ROOT]
 * Built twice: plainly, and in the sanitizer build (labels badinput / asan) where the UB cases
 * (expf of NaN, misaligned loads, signed overflows) are the point. */
#include "testutil.h"
#include "common/qa_dtype.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_sbuf.h"
#include "io/actdump.h"
#include "io/checkpoint.h"
#include "io/h5util.h"
#include "io/hf_config.h"
#include "io/peft.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"
#include "kernels/cpu/fastmath.h"
#include "model/model.h"
#include "train/data.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_tmp[512];

static char *P(const char *name) { return qa_path_join(g_tmp, name); }

static void make_tmp(const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/qa_hard_%s_XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(g_tmp)) { perror("mkdtemp"); exit(1); }
}

static int file_is(const char *path, const char *content) {
    char *b = NULL;
    size_t n = 0;
    qa_err e = {0};
    if (qa_read_file(path, 0, &b, &n, &e)) return 0;
    int ok = n == strlen(content) && !memcmp(b, content, n);
    free(b);
    return ok;
}

/* Run fn in a child with a time limit. Returns its exit status (0..255), -SIG when it was killed by a
 * signal (SIGALRM: it hung past `seconds`). The child's stdout/stderr go to the test's. */
static int in_child(int (*fn)(void *), void *arg, unsigned seconds) {
    fflush(stdout);
    fflush(stderr);
    pid_t p = fork();
    if (p == 0) {
        alarm(seconds);
        _exit(fn(arg) & 255);
    }
    int st = 0;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
    if (WIFSIGNALED(st)) return -WTERMSIG(st);
    return WEXITSTATUS(st);
}

static const char *what_status(int st) {
    static char b[64];
    if (st == -SIGALRM) return "hung (killed after the time limit)";
    if (st < 0) snprintf(b, sizeof b, "crashed (signal %d)", -st);
    else snprintf(b, sizeof b, "exit %d", st);
    return b;
}

/* ---- a small activation dump ------------------------------------------------------------------------ */
enum { DL = 2, DD = 8, DN = 6 };
static int write_dump(const char *path, float bad_value, int with_bad) {
    qa_actdump_item it[DN];
    static const char *langs_of[DN] = {"en", "en", "en", "de", "de", "de"};
    for (int i = 0; i < DN; i++) it[i] = (qa_actdump_item){"emotion", langs_of[i], "positive", i % 3, i % 2, 5 + i};
    const char *labels[2] = {"negative", "positive"}, *langs[2] = {"en", "de"},
               *target[4] = {"negative", "positive", "negativ", "positiv"};
    qa_actdump_labels lb = {"emotion", 2, labels, labels, 2, langs, target};
    qa_actdump_info info = {"tiny", "", "qwen2", "test", "tok", "target-labels", "corrected", "emotion", "en,de",
                            DL, DD, 100, DN, 1, 1};
    float *blk = qa_malloc(sizeof(float) * DN * (DL + 1) * DD);
    uint64_t s = 7;
    for (int i = 0; i < DN * (DL + 1) * DD; i++) blk[i] = qt_frand(&s);
    if (with_bad) blk[3] = bad_value;
    qa_err e = {0};
    qa_actdump_writer *w = NULL;
    int rc = qa_actdump_create(&w, path, &info, it, &lb, 1, &e);
    if (!rc) rc = qa_actdump_write_rows(w, 0, DN, blk, blk, &e);
    if (!rc) rc = qa_actdump_finish(w, &e);
    if (rc) printf("  write_dump %s: %s\n", path, e.msg);
    free(blk);
    return rc;
}

/* open a dump and read every layer of both pools: 0 = all fine, 1 = a clean error */
static int read_dump(void *arg) {
    const char *path = arg;
    qa_actdump d;
    qa_err e = {0};
    if (qa_actdump_open(&d, path, &e)) return 1;
    float *buf = qa_malloc(sizeof(float) * (size_t)(d.n ? d.n : 1) * (size_t)d.hidden);
    int rc = 0;
    for (int p = 0; p < 2 && !rc; p++)
        for (int l = 0; l <= d.n_layers && !rc; l++)
            if ((p ? d.has_mean : d.has_last) && qa_actdump_read_layer(&d, p ? "mean" : "last", l, buf, &e)) rc = 1;
    for (int64_t i = 0; i < d.n && !rc; i++)
        if (!d.task[i][0] || !d.lang[i][0]) rc = 2; /* an "ok" dump with an empty name: a silent wrong result */
    free(buf);
    qa_actdump_close(&d);
    return rc;
}

/* HDF5 files and objects in them still open in this process (a file left open on an error path is what
 * HDF5's teardown trips over) */
static long h5_ids(void) { return (long)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL); }

typedef struct flip_arg { const char *intact, *flipped; } flip_arg;
/* read the intact dump once (HDF5 sets up what it keeps), then the flipped one: 0 / 1 as read_dump, 4 when
 * the flipped read left HDF5 identifiers open */
static int read_flipped(void *arg) {
    flip_arg *a = arg;
    if (read_dump((void *)a->intact) != 0) return 5;
    long before = h5_ids();
    int rc = read_dump((void *)a->flipped);
    long after = h5_ids();
    if (after != before) {
        printf("  %ld HDF5 identifiers left open (%ld before, %ld after)\n", after - before, before, after);
        return 4;
    }
    return rc;
}

/* 1. A flipped bit anywhere in a dump: a clear error, never a crash or a silent success, no identifier
 * left open on the error path. */
static int case_dump_flips(void) {
    make_tmp("flips");
    char *src = P("d.h5"), *f = P("f.h5"), *fs = P("f.h5.crc32c"), *ss = P("d.h5.crc32c");
    QT_CHECK(write_dump(src, 0, 0) == 0, "dump written");
    char *img = NULL, *side = NULL;
    size_t n = 0, sn = 0;
    qa_err e = {0};
    QT_CHECK(qa_read_file(src, 0, &img, &n, &e) == 0, "dump read back");
    int has_side = qa_read_file(ss, 0, &side, &sn, &e) == 0;
    QT_CHECK(has_side, "the dump has a whole-file checksum %s", ss);
    QT_CHECK(in_child(read_dump, src, 30) == 0, "the intact dump reads");
    uint64_t st = 12345;
    int crashes = 0, silent = 0, errors = 0, leaks = 0;
    for (int k = 0; k < 200 && img; k++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        size_t pos = (size_t)(st >> 33) % n;
        int bit = (int)((st >> 20) & 7);
        img[pos] ^= (char)(1 << bit);
        qa_write_file_atomic(f, img, n, &e);
        if (has_side) qa_write_file_atomic(fs, side, sn, &e);
        img[pos] ^= (char)(1 << bit);
        flip_arg fa = {src, f};
        int r = in_child(read_flipped, &fa, 30);
        if (r < 0) { crashes++; printf("  flip of bit %d at byte %zu: %s\n", bit, pos, what_status(r)); }
        else if (r == 1) errors++;
        else if (r == 4) { leaks++; printf("  flip of bit %d at byte %zu: identifiers left open\n", bit, pos); }
        else { silent++; if (silent <= 3) printf("  flip of bit %d at byte %zu read without an error\n", bit, pos); }
    }
    QT_CHECK(crashes == 0, "200 single-bit flips: %d crashed or hung", crashes);
    QT_CHECK(silent == 0, "200 single-bit flips: %d read without an error", silent);
    QT_CHECK(leaks == 0, "200 single-bit flips: %d left HDF5 identifiers open", leaks);
    QT_CHECK(errors == 200, "200 single-bit flips: %d clean errors", errors);
    free(img); free(side); free(src); free(f); free(fs); free(ss);
    return qt_finish();
}

/* ---- 12, 13, 18: atomic outputs ---------------------------------------------------------------------- */
static void plant_links(const char *path, const char *victim) {
    /* the names the temporaries had: "<path>.tmp.<pid>" (and "<path>.partial" for dumps) */
    char l[1200];
    snprintf(l, sizeof l, "%s.tmp.%d", path, (int)getpid());
    unlink(l);
    if (symlink(victim, l)) perror("symlink");
    snprintf(l, sizeof l, "%s.partial", path);
    unlink(l);
    if (symlink(victim, l)) perror("symlink");
}

static int case_atomic(void) {
    make_tmp("atomic");
    char *victim = P("victim.txt");
    qa_err e = {0};
    const char *orig = "precious data of someone else\n";
    qa_write_file_atomic(victim, orig, strlen(orig), &e);

    /* a planted symbolic link at a temporary's name is never followed */
    char *p1 = P("results.json");
    plant_links(p1, victim);
    QT_CHECK(qa_write_file_atomic(p1, "{}\n", 3, &e) == 0, "atomic write with a planted link: %s", e.msg);
    QT_CHECK(file_is(victim, orig), "the link's target is untouched (qa_write_file_atomic)");
    QT_CHECK(file_is(p1, "{}\n"), "the output is written");

    char *p2 = P("w.safetensors");
    plant_links(p2, victim);
    float x[4] = {1, 2, 3, 4};
    qa_st_entry en = {.name = "x", .dtype = QA_DT_F32, .ndim = 1, .shape = {4}, .data = x};
    QT_CHECK(qa_st_write(p2, &en, 1, NULL, &e) == 0, "safetensors write with a planted link: %s", e.msg);
    QT_CHECK(file_is(victim, orig), "the link's target is untouched (qa_st_write)");

    char *p3 = P("dump.h5");
    plant_links(p3, victim);
    QT_CHECK(write_dump(p3, 0, 0) == 0, "activation dump with a planted link");
    QT_CHECK(file_is(victim, orig), "the link's target is untouched (activation dump)");

    /* checkpoints: step file, its checksum file and `latest` */
    char *run = P("run"), *ck = P("run/checkpoints");
    qa_mkdir_p(ck, &e);
    static const char *const names[] = {"step_00000001.h5", "step_00000001.h5.crc32c", "latest"};
    for (int i = 0; i < 3; i++) {
        char *q = qa_path_join(ck, names[i]);
        plant_links(q, victim);
        free(q);
    }
    float w[8] = {0};
    qa_ckpt_tensor lt = {.name = "a", .dtype = QA_CKPT_F32, .ndim = 2, .shape = {2, 4}, .data = w};
    qa_ckpt_state cs = {.lora = &lt, .n_lora = 1};
    const char *tm[1] = {"q_proj"};
    qa_ckpt_meta m = {.step = 1, .world_size = 1, .lora_r = 2, .lora_alpha = 4, .target_modules = tm,
                      .n_target_modules = 1, .base_model = "x", .base_model_id = "x", .config_yaml = "",
                      .qalign_version = "test"};
    QT_CHECK(qa_ckpt_save(run, &m, &cs, NULL, NULL, 0, &e) == 0, "checkpoint save with planted links: %s", e.msg);
    QT_CHECK(file_is(victim, orig), "the link's target is untouched (checkpoint)");

    /* an output that exists and is not a regular file is refused, and stays what it was */
    char *fifo = P("out.fifo");
    QT_CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
    e = (qa_err){0};
    int rc = qa_write_file_atomic(fifo, "x", 1, &e);
    struct stat sb;
    QT_CHECK(rc != 0 && strstr(e.msg, "out.fifo") && strstr(e.msg, "FIFO"), "a FIFO output is refused: %s", e.msg);
    QT_CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO is still a FIFO");
    char *fd5 = P("dump-fifo.h5");
    QT_CHECK(mkfifo(fd5, 0600) == 0, "mkfifo");
    QT_CHECK(write_dump(fd5, 0, 0) != 0, "an activation dump onto a FIFO is refused");
    QT_CHECK(lstat(fd5, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO is still a FIFO");
    char *dir = P("adir");
    mkdir(dir, 0755);
    e = (qa_err){0};
    QT_CHECK(qa_write_file_atomic(dir, "x", 1, &e) != 0 && strstr(e.msg, "directory"), "a directory output is refused: %s",
             e.msg);
    free(victim); free(p1); free(p2); free(p3); free(run); free(ck); free(fifo); free(fd5); free(dir);
    return qt_finish();
}

/* 13. Temporaries left by killed saves (with a reused pid) never make a later save fail, and are removed. */
static int case_ckpt_stale(void) {
    make_tmp("stale");
    char *run = P("run"), *ck = P("run/checkpoints");
    qa_err e = {0};
    qa_mkdir_p(ck, &e);
    char n1[600], n2[600], n3[600], n4[600], n5[600];
    snprintf(n1, sizeof n1, "%s/step_00000001.h5.tmp.%d", ck, (int)getpid());
    snprintf(n2, sizeof n2, "%s/latest.tmp.%d", ck, (int)getpid());
    snprintf(n3, sizeof n3, "%s/step_00000001.h5.crc32c.tmp.%d", ck, (int)getpid());
    snprintf(n4, sizeof n4, "%s/latest.tmp.4242", ck);
    snprintf(n5, sizeof n5, "%s/step_00000001.h5.crc32c.tmp.4242", ck);
    /* what a killed save leaves: half-written files (unwritable ones where the pid is reused) */
    mkdir(n1, 0755); mkdir(n2, 0755); mkdir(n3, 0755);
    qa_write_file_atomic(n4, "step_0000", 9, &e);
    qa_write_file_atomic(n5, "crc32c 0", 8, &e);
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    qa_ckpt_tensor lt = {.name = "a", .dtype = QA_CKPT_F32, .ndim = 2, .shape = {2, 4}, .data = w};
    qa_ckpt_state cs = {.lora = &lt, .n_lora = 1};
    const char *tm[1] = {"q_proj"};
    qa_ckpt_meta m = {.step = 1, .world_size = 1, .lora_r = 2, .lora_alpha = 4, .target_modules = tm,
                      .n_target_modules = 1, .base_model = "x", .base_model_id = "x", .config_yaml = "",
                      .qalign_version = "test"};
    int rc = qa_ckpt_save(run, &m, &cs, NULL, NULL, 0, &e);
    QT_CHECK(rc == 0, "save with stale temporaries of the same pid: %s", e.msg);
    qa_ckpt *c = NULL;
    QT_CHECK(qa_ckpt_load_latest(run, NULL, &c, NULL, NULL, &e) == 1, "the checkpoint loads: %s", e.msg);
    if (c) qa_ckpt_close(c);
    QT_CHECK(!qa_path_exists(n4) && !qa_path_exists(n5), "stale latest.tmp.* and *.crc32c.tmp.* files are removed");
    free(run); free(ck);
    return qt_finish();
}

/* ---- 7. FIFOs where a file is expected --------------------------------------------------------------- */
static int open_fifo_st(void *arg) {
    qa_safetensors st;
    qa_err e = {0};
    if (qa_st_open_dir(&st, arg, &e) == 0) { qa_st_close(&st); return 0; }
    printf("  %s\n", e.msg);
    return strstr(e.msg, "FIFO") ? 1 : 3;
}
static int open_fifo_ckpt(void *arg) {
    qa_ckpt *c = NULL;
    qa_err e = {0};
    if (qa_ckpt_open(&c, arg, &e) == 0) { qa_ckpt_close(c); return 0; }
    printf("  %s\n", e.msg);
    return strstr(e.msg, "FIFO") ? 1 : 3;
}
static int open_fifo_dump(void *arg) {
    qa_actdump d;
    qa_err e = {0};
    if (qa_actdump_open(&d, arg, &e) == 0) { qa_actdump_close(&d); return 0; }
    printf("  %s\n", e.msg);
    return strstr(e.msg, "FIFO") ? 1 : 3;
}
static int open_fifo_read(void *arg) {
    char *b = NULL;
    size_t n;
    qa_err e = {0};
    if (qa_read_file(arg, 0, &b, &n, &e) == 0) { free(b); return 0; }
    printf("  %s\n", e.msg);
    return strstr(e.msg, "FIFO") ? 1 : 3;
}

static int case_fifo(void) {
    make_tmp("fifo");
    char *md = P("model"), *st = P("model/model.safetensors"), *ck = P("step_00000001.h5"), *dp = P("d.h5"),
         *js = P("config.json");
    mkdir(md, 0755);
    mkfifo(st, 0600);
    mkfifo(ck, 0600);
    mkfifo(dp, 0600);
    mkfifo(js, 0600);
    int r = in_child(open_fifo_st, md, 10);
    QT_CHECK(r == 1, "model.safetensors is a FIFO: a clear error, not a hang (%s)", what_status(r));
    r = in_child(open_fifo_ckpt, ck, 10);
    QT_CHECK(r == 1, "a checkpoint that is a FIFO: a clear error, not a hang (%s)", what_status(r));
    r = in_child(open_fifo_dump, dp, 10);
    QT_CHECK(r == 1, "an activation dump that is a FIFO: a clear error, not a hang (%s)", what_status(r));
    r = in_child(open_fifo_read, js, 10);
    QT_CHECK(r == 1, "a JSON input that is a FIFO: a clear error, not a hang (%s)", what_status(r));
    free(md); free(st); free(ck); free(dp); free(js);
    return qt_finish();
}

/* ---- 19. HDF5 files that point outside themselves ---------------------------------------------------- */
static int save_small_ckpt(const char *run, char *out, size_t cap) {
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    qa_ckpt_tensor lt = {.name = "a", .dtype = QA_CKPT_F32, .ndim = 2, .shape = {2, 4}, .data = w};
    qa_ckpt_state cs = {.lora = &lt, .n_lora = 1};
    const char *tm[1] = {"q_proj"};
    qa_ckpt_meta m = {.step = 1, .world_size = 1, .lora_r = 2, .lora_alpha = 4, .target_modules = tm,
                      .n_target_modules = 1, .base_model = "x", .base_model_id = "x", .config_yaml = "",
                      .qalign_version = "test"};
    qa_err e = {0};
    int rc = qa_ckpt_save(run, &m, &cs, NULL, out, cap, &e);
    if (rc) printf("  save: %s\n", e.msg);
    return rc;
}

/* add an object to an existing HDF5 file (kind: external storage, soft link, external link, virtual) */
static int add_foreign(const char *file, const char *kind, const char *target, const char *grp) {
    char nm[64];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return -1;
    herr_t r = 0;
    hsize_t dims[1] = {16};
    hid_t sp = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (!strcmp(kind, "external")) {
        H5Pset_external(dcpl, target, 0, 64);
        snprintf(nm, sizeof nm, "%sext", grp);
        hid_t d = H5Dcreate2(f, nm, H5T_STD_U32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        r = d < 0 ? -1 : H5Dclose(d);
    } else if (!strcmp(kind, "soft")) {
        snprintf(nm, sizeof nm, "%ssoft", grp);
        r = H5Lcreate_soft("/items", f, nm, H5P_DEFAULT, H5P_DEFAULT);
    } else if (!strcmp(kind, "elink")) {
        snprintf(nm, sizeof nm, "%selink", grp);
        r = H5Lcreate_external(target, "/x", f, nm, H5P_DEFAULT, H5P_DEFAULT);
    } else if (!strcmp(kind, "virtual")) {
        hid_t src = H5Screate_simple(1, dims, NULL);
        H5Pset_virtual(dcpl, sp, target, "/x", src);
        snprintf(nm, sizeof nm, "%svirt", grp);
        hid_t d = H5Dcreate2(f, nm, H5T_STD_U32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        r = d < 0 ? -1 : H5Dclose(d);
        H5Sclose(src);
    }
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    return r < 0 ? -1 : 0;
}

typedef struct foreign_arg { const char *path; const char *want; int dump; } foreign_arg;
static int open_foreign(void *arg) {
    foreign_arg *a = arg;
    qa_err e = {0};
    int rc;
    if (a->dump) {
        rc = read_dump((void *)a->path) == 0 ? 0 : 1;
        qa_actdump d;
        if (qa_actdump_open(&d, a->path, &e) == 0) qa_actdump_close(&d);
    } else {
        qa_ckpt *c = NULL;
        rc = qa_ckpt_open(&c, a->path, &e) == 0 ? 0 : 1;
        if (c) qa_ckpt_close(c);
    }
    printf("  %s\n", e.msg);
    if (!rc) return 0;
    return strstr(e.msg, a->want) ? 1 : 3;
}

static int case_h5_foreign(void) {
    make_tmp("foreign");
    char *fifo = P("secret.fifo"), *other = P("other.h5");
    mkfifo(fifo, 0600);
    static const char *const kinds[4] = {"external", "soft", "elink", "virtual"};
    static const char *const want[4] = {"external storage", "soft link", "external link", "virtual dataset"};
    for (int k = 0; k < 4; k++) {
        char run[700], ck[1200], dump[700], sc[1300];
        snprintf(run, sizeof run, "%s/run_%s", g_tmp, kinds[k]);
        if (save_small_ckpt(run, ck, sizeof ck)) { QT_CHECK(0, "checkpoint for %s", kinds[k]); continue; }
        snprintf(sc, sizeof sc, "%s.crc32c", ck);
        unlink(sc); /* copied without its checksum file: the datasets are all qalign has to go by */
        const char *target = k == 0 ? fifo : other;
        QT_CHECK(add_foreign(ck, kinds[k], target, "/data/") == 0, "%s added to the checkpoint", kinds[k]);
        foreign_arg a = {ck, want[k], 0};
        int r = in_child(open_foreign, &a, 20);
        QT_CHECK(r == 1, "checkpoint with a %s: refused naming it (%s)", want[k], what_status(r));
        snprintf(dump, sizeof dump, "%s/dump_%s.h5", g_tmp, kinds[k]);
        write_dump(dump, 0, 0);
        snprintf(sc, sizeof sc, "%s.crc32c", dump);
        unlink(sc);
        QT_CHECK(add_foreign(dump, kinds[k], target, "/") == 0, "%s added to the dump", kinds[k]);
        foreign_arg b = {dump, want[k], 1};
        r = in_child(open_foreign, &b, 20);
        QT_CHECK(r == 1, "activation dump with a %s: refused naming it (%s)", want[k], what_status(r));
    }
    free(fifo); free(other);
    return qt_finish();
}

/* ---- 4. exp of NaN / Inf (UB: a NaN converted to int, a negative value shifted) ------------------------ */
static int case_expf(void) {
    volatile float nan_in = NAN, inf_in = INFINITY, ninf_in = -INFINITY;
    float a = qa_expf(nan_in), b = qa_expf(inf_in), c = qa_expf(ninf_in), d = qa_expf(1.0f);
    QT_CHECK(a != a, "exp(NaN) is NaN (%g)", a);
    QT_CHECK(b > 1e38f, "exp(+Inf) is huge (%g)", b);
    QT_CHECK(c >= 0 && c < 1e-37f, "exp(-Inf) is ~0 (%g)", c);
    QT_CHECK(fabsf(d - 2.7182817f) < 1e-6f, "exp(1) (%g)", d);
    return qt_finish();
}

/* ---- 5. a legal safetensors file whose header length is not a multiple of 8 --------------------------- */
static int case_misaligned(void) {
    make_tmp("misal");
    char *p = P("m.safetensors");
    double d[3] = {1.5, -2.25, 3.0};
    uint16_t h[2] = {qa_f32_to_f16(0.5f), qa_f32_to_f16(-4.0f)};
    /* header of 8k+1 bytes: the data buffer (and every tensor) starts at an odd address */
    char hdr[256];
    int hl = snprintf(hdr, sizeof hdr,
                      "{\"a\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]},"
                      "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]}}");
    while (hl % 8 != 1) hdr[hl++] = ' ';
    uint8_t buf[512];
    uint64_t n = (uint64_t)hl;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, hdr, (size_t)hl);
    memcpy(buf + 8 + hl, d, 24);
    memcpy(buf + 8 + hl + 24, h, 4);
    qa_err e = {0};
    QT_CHECK(qa_write_file_atomic(p, buf, (size_t)(8 + hl + 28), &e) == 0, "write");
    qa_safetensors st;
    QT_CHECK(qa_st_open(&st, p, &e) == 0, "a header of %d bytes is legal: %s", hl, e.msg);
    if (!e.msg[0]) {
        float o[3];
        const qa_st_tensor *ta = qa_st_find(&st, "a"), *tb = qa_st_find(&st, "b");
        QT_CHECK(((uintptr_t)ta->data & 7) != 0, "the F64 tensor is misaligned (the case under test)");
        qa_convert_to_f32(o, ta->data, ta->dtype, 3);   /* what model loading does with F16/F64 weights */
        QT_CHECK(o[0] == 1.5f && o[1] == -2.25f && o[2] == 3.0f, "F64 converted from a misaligned address");
        qa_convert_to_f32(o, tb->data, tb->dtype, 2);
        QT_CHECK(o[0] == 0.5f && o[1] == -4.0f, "F16 converted from a misaligned address");
        qa_st_close(&st);
    }
    free(p);
    return qt_finish();
}

/* ---- 6. sizes whose products overflow ---------------------------------------------------------------- */
static int open_ckpt_child(void *arg) {
    qa_ckpt *c = NULL;
    qa_err e = {0};
    if (qa_ckpt_open(&c, arg, &e) == 0) { qa_ckpt_close(c); return 0; }
    printf("  %s\n", e.msg);
    return 1;
}

static int set_attr_i64(const char *file, const char *obj, const char *name, int64_t v) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
    if (a >= 0) H5Aclose(a);
    H5Oclose(o);
    H5Fclose(f);
    char sc[1200];
    snprintf(sc, sizeof sc, "%s.crc32c", file);
    unlink(sc); /* an edited copy has no checksum file */
    return r < 0 ? -1 : 0;
}

static int case_overflow(void) {
    make_tmp("ovf");
    qa_err e = {0};
    /* config.json: num_attention_heads x head_dim past int */
    qa_hf_config c;
    const char *cj = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                     "\"num_attention_heads\":1000000000,\"num_key_value_heads\":1000000000,\"head_dim\":16,"
                     "\"vocab_size\":100,\"rms_norm_eps\":1e-5}";
    int rc = qa_hf_config_parse(&c, cj, "config.json", &e);
    QT_CHECK(rc != 0 && strstr(e.msg, "num_attention_heads"), "heads 1e9 x head_dim 16 refused: %s", e.msg);
    /* a checkpoint dataset whose dims multiply past 2^63 (unallocated: the file stays small) */
    char run[700], ck[1200];
    snprintf(run, sizeof run, "%s/run", g_tmp);
    if (!save_small_ckpt(run, ck, sizeof ck)) {
        char sc[1300];
        snprintf(sc, sizeof sc, "%s.crc32c", ck);
        unlink(sc);
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        hid_t f = H5Fopen(ck, H5F_ACC_RDWR, H5P_DEFAULT);
        hsize_t dims[3] = {(hsize_t)1 << 40, (hsize_t)1 << 40, 8};
        hid_t sp = H5Screate_simple(3, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        hsize_t ch[3] = {1, 1, 8};
        H5Pset_chunk(dcpl, 3, ch);
        hid_t d = H5Dcreate2(f, "/data/huge", H5T_STD_I64LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        QT_CHECK(d >= 0, "a [2^40, 2^40, 8] dataset added");
        if (d >= 0) H5Dclose(d);
        H5Pclose(dcpl); H5Sclose(sp); H5Fclose(f);
        int r = in_child(open_ckpt_child, ck, 30);
        QT_CHECK(r == 1, "checkpoint with a dataset of 2^83 elements: a clear error (%s)", what_status(r));
    }
    /* dumps declaring 2^32 + 1 and 1e9 layers */
    static const int64_t bad_layers[2] = {((int64_t)1 << 32) + 1, 1000000000};
    for (int k = 0; k < 2; k++) {
        char dp[700];
        snprintf(dp, sizeof dp, "%s/layers%d.h5", g_tmp, k);
        write_dump(dp, 0, 0);
        QT_CHECK(set_attr_i64(dp, "/", "n_layers", bad_layers[k]) == 0, "n_layers set to %lld", (long long)bad_layers[k]);
        qa_actdump dd;
        e = (qa_err){0};
        int r = qa_actdump_open(&dd, dp, &e);
        if (!r) qa_actdump_close(&dd);
        QT_CHECK(r != 0 && strstr(e.msg, "n_layers"), "a dump with n_layers = %lld is refused: %s",
                 (long long)bad_layers[k], e.msg);
    }
    return qt_finish();
}

/* 3 (format side). A checkpoint's scalar state out of range is refused when it is opened. */
static int case_ckpt_meta(void) {
    make_tmp("meta");
    static const struct { const char *obj, *attr; int64_t v; } edits[] = {
        {"/optim", "step", -1}, {"/", "cursor", -5}, {"/", "epoch", -1}, {"/", "skipped_steps", 7},
        {"/", "lora_r", ((int64_t)1 << 32) + 2}, {"/", "step", -3},
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        char run[700], ck[1200];
        snprintf(run, sizeof run, "%s/run%zu", g_tmp, k);
        if (save_small_ckpt(run, ck, sizeof ck)) continue;
        QT_CHECK(set_attr_i64(ck, edits[k].obj, edits[k].attr, edits[k].v) == 0, "edit %s %s", edits[k].obj,
                 edits[k].attr);
        qa_ckpt *c = NULL;
        qa_err e = {0};
        int r = qa_ckpt_open(&c, ck, &e);
        if (c) qa_ckpt_close(c);
        QT_CHECK(r != 0, "%s attr %s = %lld is refused at open: %s", edits[k].obj, edits[k].attr, (long long)edits[k].v,
                 e.msg);
    }
    return qt_finish();
}

/* ---- 11. PEFT export never deletes what qalign did not write ----------------------------------------- */
static int case_peft_dir(const char *fixtures) {
    make_tmp("peft");
    char cfgp[1200];
    snprintf(cfgp, sizeof cfgp, "%s/llama/model/config.json", fixtures);
    qa_hf_config hc;
    qa_err e = {0};
    if (qa_hf_config_load(&hc, cfgp, &e)) { QT_CHECK(0, "fixture config: %s", e.msg); return qt_finish(); }
    qa_peft_config pc = {.r = 2, .alpha = 4, .module_mask = QA_LORA_MASK_QV};
    qa_peft_shape sh;
    qa_lora_peft_shape(&hc, &sh);
    qa_peft_adapter a;
    QT_CHECK(qa_peft_alloc(&a, &sh, &pc, &e) == 0, "alloc");
    /* a directory with a user's files */
    char *d = P("results"), *f1 = P("results/paper_draft.tex"), *sub = P("results/figs"), *f2 = P("results/figs/a.png");
    qa_mkdir_p(sub, &e);
    qa_write_file_atomic(f1, "draft", 5, &e);
    qa_write_file_atomic(f2, "png", 3, &e);
    e = (qa_err){0};
    int rc = qa_peft_save(&a, d, &e);
    QT_CHECK(rc != 0 && strstr(e.msg, "results"), "saving into a directory of other files is refused: %s", e.msg);
    QT_CHECK(file_is(f1, "draft") && file_is(f2, "png"), "the files already there are untouched");
    /* an existing adapter directory: the adapter files are replaced, a README next to them stays */
    char *ad = P("adapter"), *readme = P("adapter/README.md");
    QT_CHECK(qa_peft_save(&a, ad, &e) == 0, "a new adapter directory: %s", e.msg);
    qa_write_file_atomic(readme, "notes", 5, &e);
    a.params[0] = 0.25f;
    QT_CHECK(qa_peft_save(&a, ad, &e) == 0, "an adapter directory is updated: %s", e.msg);
    QT_CHECK(file_is(readme, "notes"), "its README stays");
    qa_peft_adapter b;
    QT_CHECK(qa_peft_load(&b, ad, &sh, &e) == 0 && b.params[0] == 0.25f, "the new adapter is there: %s", e.msg);
    qa_peft_free(&b);
    /* non-finite weights in an adapter are refused at load, naming the tensor */
    a.params[1] = NAN;
    QT_CHECK(qa_peft_save(&a, ad, &e) == 0, "saved a NaN adapter");
    e = (qa_err){0};
    rc = qa_peft_load(&b, ad, &sh, &e);
    QT_CHECK(rc != 0 && strstr(e.msg, "lora_A") && strstr(e.msg, "NaN"), "a NaN adapter is refused: %s", e.msg);
    if (!rc) qa_peft_free(&b);
    /* lora_alpha 1e308 would overflow every update */
    qa_peft_config pc2;
    e = (qa_err){0};
    rc = qa_peft_config_parse(&pc2, "{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":1e308}", "adapter_config.json", &e);
    QT_CHECK(rc != 0 && strstr(e.msg, "lora_alpha"), "lora_alpha 1e308 refused: %s", e.msg);
    qa_peft_free(&a);
    free(d); free(f1); free(sub); free(f2); free(ad); free(readme);
    return qt_finish();
}

/* ---- 9. normalizers that grow the text without bound -------------------------------------------------- */
static int tok_child(void *arg) {
    const char *json = arg;
    qa_tokenizer *t = NULL;
    qa_err e = {0};
    if (qa_tok_load_mem(&t, json, strlen(json), "chain.json", &e)) { printf("  load: %s\n", e.msg); return 3; }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = qa_tok_encode(t, "aaaa", 4, 0, &ids, &n, &e);
    free(ids);
    qa_tok_free(t);
    if (rc == 0) return 0;
    printf("  %s\n", e.msg);
    return strstr(e.msg, "chain.json") && strstr(e.msg, "normalizer") ? 1 : 3;
}

static int case_tok_norm(void) {
    qa_sbuf b = {0};
    qa_sb_puts(&b, "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[");
    for (int i = 0; i < 26; i++) qa_sb_printf(&b, "%s{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"aa\"}", i ? "," : "");
    qa_sb_puts(&b, "]},\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,"
                   "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[\"a a\"]}}");
    int r = in_child(tok_child, b.p, 20);
    QT_CHECK(r == 1, "26 chained Replace a->aa on 4 bytes: a clear error within seconds (%s)", what_status(r));
    qa_sb_free(&b);
    return qt_finish();
}

/* ---- also: rope_scaling without a type, rope_theta inf ----------------------------------------------- */
static int case_rope(void) {
    qa_hf_config c;
    qa_err e = {0};
    const char *base = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                       "\"num_attention_heads\":4,\"vocab_size\":100,\"rms_norm_eps\":1e-5,";
    char js[1024];
    snprintf(js, sizeof js, "%s\"rope_scaling\":{\"factor\":0}}", base);
    int rc = qa_hf_config_parse(&c, js, "config.json", &e);
    QT_CHECK(rc != 0 && strstr(e.msg, "factor"), "rope_scaling {factor: 0} without a type is refused: %s", e.msg);
    snprintf(js, sizeof js, "%s\"rope_scaling\":{\"rope_type\":\"default\",\"rope_theta\":500000}}", base);
    e = (qa_err){0};
    QT_CHECK(qa_hf_config_parse(&c, js, "config.json", &e) == 0 && c.rope_theta == 500000, "default RoPE accepted: %s",
             e.msg);
    snprintf(js, sizeof js, "%s\"rope_theta\":1e999}", base);
    e = (qa_err){0};
    rc = qa_hf_config_parse(&c, js, "config.json", &e);
    QT_CHECK(rc != 0, "rope_theta 1e999 (inf) refused: %s", e.msg);
    return qt_finish();
}

/* ---- 15. non-finite weights and activations are errors naming the tensor ---------------------------- */
static int case_nonfinite(const char *fixtures) {
    make_tmp("nan");
    qa_err e = {0};
    char src[1200];
    snprintf(src, sizeof src, "%s/llama/model", fixtures);
    char *md = P("model");
    mkdir(md, 0755);
    char *cj = qa_path_join(src, "config.json"), *cjd = qa_path_join(md, "config.json");
    qa_copy_file(cj, cjd, &e);
    qa_safetensors st;
    char *sp = qa_path_join(src, "model.safetensors");
    if (qa_st_open(&st, sp, &e)) { QT_CHECK(0, "fixture: %s", e.msg); return qt_finish(); }
    qa_st_entry *en = qa_calloc(st.n_tensors, sizeof *en);
    uint16_t *bad = NULL;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const qa_st_tensor *t = &st.tensors[i];
        en[i] = (qa_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(en[i].shape, t->shape, sizeof t->shape);
        if (!strcmp(t->name, "model.layers.1.mlp.up_proj.weight")) {
            bad = qa_malloc(t->nbytes);
            memcpy(bad, t->data, t->nbytes);
            bad[5] = 0x7fc0; /* BF16 NaN */
            en[i].data = bad;
        }
    }
    char *mp = qa_path_join(md, "model.safetensors");
    QT_CHECK(bad && qa_st_write(mp, en, st.n_tensors, NULL, &e) == 0, "model with one NaN weight written");
    qa_st_close(&st);
    qa_model m;
    e = (qa_err){0};
    int rc = qa_model_load(&m, md, NULL, &e);
    QT_CHECK(rc != 0 && strstr(e.msg, "model.layers.1.mlp.up_proj.weight") && strstr(e.msg, "NaN"),
             "a model with a NaN weight is refused at load, naming it: %s", e.msg);
    if (!rc) qa_model_free(&m);
    /* activation dumps with an infinite value */
    char *dp = P("inf.h5");
    write_dump(dp, INFINITY, 1);
    qa_actdump d;
    QT_CHECK(qa_actdump_open(&d, dp, &e) == 0, "dump opens");
    float *buf = qa_malloc(sizeof(float) * DN * DD);
    e = (qa_err){0};
    rc = qa_actdump_read_layer(&d, "last", 0, buf, &e);
    QT_CHECK(rc != 0 && strstr(e.msg, "layer_00") && strstr(e.msg, "infinite"), "an infinite activation is refused: %s",
             e.msg);
    qa_actdump_close(&d);
    free(buf); free(bad); free(en); free(md); free(cj); free(cjd); free(sp); free(mp); free(dp);
    return qt_finish();
}

/* ---- 16. data without one supervised token ------------------------------------------------------------- */
static int case_data_labels(void) {
    make_tmp("labels");
    char *f = P("all_ignored.json"), *g = P("ok.json");
    const char *all = "[{\"input_ids\":[5,6,7],\"labels\":[-100,-100,-100]},{\"input_ids\":[8,9],\"labels\":[-100,-100]},"
                      "{\"input_ids\":[4],\"labels\":[4]}]";
    const char *ok = "[{\"input_ids\":[5,6,7],\"labels\":[-100,6,7]}]";
    qa_err e = {0};
    qa_write_file_atomic(f, all, strlen(all), &e);
    qa_write_file_atomic(g, ok, strlen(ok), &e);
    const char *files[2] = {g, f};
    qa_data_opts o = {.files = files, .n_files = 2, .cutoff = 64, .packing = 0, .pack_length = 64, .threads = 1,
                      .vocab = 100};
    qa_dataset d;
    int rc = qa_data_build(&d, &o, NULL, NULL, &e);
    QT_CHECK(rc != 0 && strstr(e.msg, "all_ignored.json") && strstr(e.msg, "supervised"),
             "a file with no supervised token is refused, naming it: %s", e.msg);
    if (!rc) qa_data_free(&d);
    o.n_files = 1;
    e = (qa_err){0};
    QT_CHECK(qa_data_build(&d, &o, NULL, NULL, &e) == 0, "a file with one is fine: %s", e.msg);
    qa_data_free(&d);
    free(f); free(g);
    return qt_finish();
}

/* ---- 14. packing never changes the loss ---------------------------------------------------------------- */
/* the summed loss over the training rows, mbs rows per micro-batch */
static double total_loss(qa_model *m, const qa_dataset *d, int mbs, int64_t *n_tok) {
    qa_microbatch mb;
    int cap_B, cap_T;
    qa_data_batch_shape(d, mbs, &cap_B, &cap_T);
    qa_microbatch_alloc(&mb, cap_B, cap_T);
    qa_acts a;
    qa_err e = {0};
    if (qa_acts_alloc(&a, m, NULL, cap_B, cap_T, QA_ACTS_TRAIN, 64, &e)) { printf("acts: %s\n", e.msg); return NAN; }
    double sum = 0;
    *n_tok = 0;
    const qa_rows *R = &d->rows[QA_SPLIT_TRAIN];
    int64_t ids[16];
    for (int64_t r = 0; r < R->n_rows; r += mbs) {
        int cnt = (int)(R->n_rows - r < mbs ? R->n_rows - r : mbs);
        for (int k = 0; k < cnt; k++) ids[k] = r + k;
        qa_data_fill_batch(d, QA_SPLIT_TRAIN, ids, cnt, &mb);
        qa_batch v;
        qa_microbatch_view(&mb, &v);
        qa_train_opts to = {.grad_scale = 1.0f};
        qa_loss lo;
        if (qa_model_forward_backward(m, NULL, &a, &v, &to, &lo, &e)) { printf("fwd: %s\n", e.msg); sum = NAN; break; }
        sum += lo.loss_sum;
        *n_tok += lo.n_tokens;
    }
    qa_acts_free(&a);
    qa_microbatch_free(&mb);
    return sum;
}

static int case_packing(const char *fixtures) {
    char md[1200];
    snprintf(md, sizeof md, "%s/llama/model", fixtures);
    qa_model m;
    qa_err e = {0};
    if (qa_model_load(&m, md, NULL, &e)) { QT_CHECK(0, "model: %s", e.msg); return qt_finish(); }
    uint64_t s = 99;
    for (int trial = 0; trial < 6; trial++) {
        /* random pre-tokenized records: labels -100 on a prefix of random length (often empty: labels =
         * input_ids from the first token, the case that leaked), single-token records included */
        int n = 12 + trial;
        qa_record *r = qa_calloc((size_t)n, sizeof *r);
        for (int i = 0; i < n; i++) {
            int len = 1 + (int)((qt_frand(&s) + 1) * 4.5f);
            r[i].ids = qa_malloc(sizeof(int32_t) * (size_t)len);
            for (int j = 0; j < len; j++) r[i].ids[j] = (int32_t)((qt_frand(&s) + 1) * 150) + 3;
            r[i].n_ids = len;
            r[i].n_src = trial % 2 ? 0 : (int)((qt_frand(&s) + 1) * 0.5f * (float)len) % len;
        }
        qa_record *recs[1] = {r};
        int64_t nr[1] = {n};
        const char *files[1] = {"random.json"};
        /* unpacked; packed; unpacked and packed padding-free (a micro-batch's rows end to end in one row) */
        static const char *const mode[4] = {"unpacked", "packed", "padding-free", "packed padding-free"};
        double tot[4];
        int64_t tok[4];
        for (int md_ = 0; md_ < 4; md_++) {
            int pk = md_ & 1, pf = md_ >> 1;
            qa_data_opts o = {.files = files, .n_files = 1, .cutoff = 16, .packing = pk, .pack_length = 24,
                              .padding_free = pf, .threads = 1, .vocab = m.cfg.vocab, .seed = (uint64_t)trial};
            qa_dataset d;
            e = (qa_err){0};
            tot[md_] = NAN;
            tok[md_] = -1;
            if (qa_data_build_records(&d, &o, NULL, NULL, recs, nr, &e)) {
                QT_CHECK(0, "build: %s", e.msg);
                continue;
            }
            tot[md_] = total_loss(&m, &d, pf ? 3 : 1, &tok[md_]);
            qa_data_free(&d);
        }
        for (int md_ = 1; md_ < 4; md_++) {
            QT_CHECK(tok[0] == tok[md_], "trial %d: %s and unpacked count the same loss tokens (%lld vs %lld)", trial,
                     mode[md_], (long long)tok[md_], (long long)tok[0]);
            QT_CHECK(fabs(tot[0] - tot[md_]) <= 1e-4 * fabs(tot[0]) + 1e-6,
                     "trial %d: %s and unpacked give the same summed loss (%.6f vs %.6f)", trial, mode[md_], tot[md_],
                     tot[0]);
        }
        qa_records_free(r, n);
    }
    qa_model_free(&m);
    return qt_finish();
}

/* ---- helpers for tests/hardening_cli.sh ----------------------------------------------------------------- */
/* set-attr FILE OBJECT NAME VALUE: an integer attribute edited in place (the checksum file is dropped) */
static int helper_set_attr(int argc, char **argv) {
    if (argc < 6) return 2;
    return set_attr_i64(argv[2], argv[3], argv[4], strtoll(argv[5], NULL, 10)) ? 1 : 0;
}
/* fill-adapter DIR VALUE: every weight of the PEFT adapter in DIR set to VALUE ("nan" allowed) */
static int helper_fill_adapter(int argc, char **argv) {
    if (argc < 4) return 2;
    char *p = qa_path_join(argv[2], "adapter_model.safetensors");
    qa_safetensors st;
    qa_err e = {0};
    if (qa_st_open(&st, p, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    float v = strtof(argv[3], NULL);
    qa_st_entry *en = qa_calloc(st.n_tensors, sizeof *en);
    float **bufs = qa_calloc(st.n_tensors, sizeof *bufs);
    for (size_t i = 0; i < st.n_tensors; i++) {
        const qa_st_tensor *t = &st.tensors[i];
        bufs[i] = qa_malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        for (int64_t k = 0; k < t->numel; k++) bufs[i][k] = v;
        en[i] = (qa_st_entry){.name = t->name, .dtype = QA_DT_F32, .ndim = t->ndim, .data = bufs[i]};
        memcpy(en[i].shape, t->shape, sizeof t->shape);
    }
    static const char *const meta[] = {"format", "pt", NULL};
    char *q = qa_path_join(argv[2], "new.safetensors");
    size_t nt = st.n_tensors;
    int rc = qa_st_write(q, en, nt, meta, &e);
    qa_st_close(&st);
    if (!rc && rename(q, p)) rc = -1;
    for (size_t i = 0; i < nt; i++) free(bufs[i]);
    free(bufs); free(en); free(p); free(q);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_hardening CASE [FIXTURES_HF]\n");
        return 2;
    }
    const char *c = argv[1], *fx = argc > 2 ? argv[2] : "";
    if (!strcmp(c, "set-attr")) return helper_set_attr(argc, argv);
    if (!strcmp(c, "fill-adapter")) return helper_fill_adapter(argc, argv);
    if (!strcmp(c, "dump-flips")) return case_dump_flips();
    if (!strcmp(c, "atomic")) return case_atomic();
    if (!strcmp(c, "ckpt-stale")) return case_ckpt_stale();
    if (!strcmp(c, "fifo")) return case_fifo();
    if (!strcmp(c, "h5-foreign")) return case_h5_foreign();
    if (!strcmp(c, "expf")) return case_expf();
    if (!strcmp(c, "misaligned")) return case_misaligned();
    if (!strcmp(c, "overflow")) return case_overflow();
    if (!strcmp(c, "ckpt-meta")) return case_ckpt_meta();
    if (!strcmp(c, "peft-dir")) return case_peft_dir(fx);
    if (!strcmp(c, "tok-norm")) return case_tok_norm();
    if (!strcmp(c, "rope")) return case_rope();
    if (!strcmp(c, "nonfinite")) return case_nonfinite(fx);
    if (!strcmp(c, "data-labels")) return case_data_labels();
    if (!strcmp(c, "packing")) return case_packing(fx);
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
}
