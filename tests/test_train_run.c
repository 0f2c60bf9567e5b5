/* test_train_run.c — `qalign train` end to end on the fixture models (tests/train.cmake).
 *
 * Every case runs the real binary ($QALIGN_BIN) on tiny models: the Hugging Face fixtures under
 * $QALIGN_FIXTURES (default $QALIGN_FIXTURES_DEFAULT; every directory with golden.safetensors and
 * model/ is one fixture, nothing is hard-coded) and pre-tokenized data (data.template none) that the
 * test writes itself: the fixture batch, or seeded random ids below the model's vocab_size.
 *
 *   golden      per fixture and adapter_<tag>_init/: 2 steps of the loop (lr 1e-2, wd 0.01, constant,
 *               no clip) reproduce lora_<tag>.after2steps.* (rel <= 1e-4) and the logged losses
 *               lora_<tag>.loss / .loss_after_step1 (abs <= 1e-4); export-peft of the run directory
 *               has the layout of the fixture's adapter_<tag>_after2steps/ (config keys, names,
 *               shapes, F32, metadata format=pt) and the values of run/adapter
 *   adapter     export-peft output as lora.init_adapter continues the run exactly (loss of step 3,
 *               byte-equal); qalign merge --dtype f32 == base + adapter (logits rel <= 1e-5)
 *   validation  the logged val_loss is the adapter's loss on the held-out rows (golden logits), not the
 *               base model's
 *   resume      2N steps straight == N steps, then rerun to 2N (every logged loss and the adapter
 *               file byte-equal); SIGUSR1 mid-run (checkpoint, exit 0), rerun == straight
 *   packing     one step on packed rows == one step on unpacked rows (loss, gradient norm, adapter)
 *   ranks       np = 1, 2, 4 under mpirun (and no launcher): byte-equal losses and adapter
 *   kill R      SIGKILL of rank R mid-run: mpirun exits non-zero within 60 s, the newest checkpoint
 *               verifies (qalign ckpt-info), the rerun resumes and equals a straight run
 *   signal      SIGUSR1 to mpirun, SIGTERM to every rank (what scancel does): checkpoint, exit 0;
 *               the rerun resumes and equals a straight run
 *   corrupt     newest checkpoint bit-flipped, next one truncated: "falling back" twice, the rerun
 *               resumes from the oldest and equals a straight run; all corrupt: exit 1, names them
 *   diskfull    RLIMIT_FSIZE (SIGXFSZ ignored) lets the first checkpoints fit but not a later one:
 *               exit 1 with the reason, the previous checkpoint verifies, no temporaries, the rerun
 *               resumes and equals a straight run
 *   baddata     malformed pre-tokenized records: exit 1 naming file and record
 *
 * Environment: QALIGN_BIN, QALIGN_FIXTURES / QALIGN_FIXTURES_DEFAULT, QA_MPIRUN (launcher prefix up to
 * and including the rank-count flag, e.g. "mpirun --allow-run-as-root --oversubscribe -n"),
 * QA_KEEP=1 keeps the work directory. */
#include "testutil.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "model/model.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *bin, *mpirun;
static char work[512];
static char out[1 << 18];

/* ---- small helpers ------------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *wpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *wpath(const char *fmt, ...) {
    char rel[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    return qa_path_join(work, rel);
}

static void die(const char *what, const qa_err *e) {
    fprintf(stderr, "test_train_run: %s: %s\n", what, e ? e->msg : strerror(errno));
    exit(1);
}

static char *slurp(const char *path, size_t *len) {
    char *b = NULL;
    size_t n = 0;
    qa_err e = {0};
    if (qa_read_file(path, 0, &b, &n, &e)) return NULL;
    if (len) *len = n;
    return b;
}

static int same_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static void put(const char *path, const char *text) {
    qa_err e = {0};
    if (qa_write_file_atomic(path, text, strlen(text), &e)) die(path, &e);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = qt_run(cmd, out, sizeof out);
    return rc;
}

static void show_output(void) {
    size_t n = strlen(out);
    printf("--- output (last 3000 bytes) ---\n%s\n---\n", n > 3000 ? out + n - 3000 : out);
}

static void no_sanitizer_report(const char *text) {
    QT_CHECK(!strstr(text, "AddressSanitizer") && !strstr(text, "LeakSanitizer") && !strstr(text, "runtime error:"),
             "no sanitizer report");
}

/* ---- fixtures ----------------------------------------------------------------------------------- */


static int is_fixture(const char *dir, const char *name) {
    char p[1024], q[1024];
    snprintf(p, sizeof p, "%s/%s/golden.safetensors", dir, name);
    snprintf(q, sizeof q, "%s/%s/model/config.json", dir, name);
    return qa_path_exists(p) && qa_path_exists(q);
}
static int is_adapter_init(const char *dir, const char *name) {
    size_t n = strlen(name);
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/adapter_config.json", dir, name);
    return n > 13 && !strncmp(name, "adapter_", 8) && !strcmp(name + n - 5, "_init") && qa_path_exists(p);
}

static const char *fixtures_root(void) {
    return qt_fixtures_root();
}

/* the first fixture (sorted): the model of the cases that need any model */
static char *first_model(int *vocab) {
    char **names;
    const char *root = fixtures_root();
    int n = qt_list_dir(root, &names, is_fixture);
    if (n <= 0) {
        fprintf(stderr, "test_train_run: no fixture with golden.safetensors and model/ under %s (set QALIGN_FIXTURES)\n", root);
        exit(1);
    }
    char *m = qa_malloc(strlen(root) + strlen(names[0]) + 16);
    sprintf(m, "%s/%s/model", root, names[0]);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    qa_hf_config c;
    qa_err e = {0};
    char *cj = qa_path_join(m, "config.json");
    if (qa_hf_config_load(&c, cj, &e)) die(cj, &e);
    free(cj);
    *vocab = c.vocab;
    return m;
}

/* ---- data --------------------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* n pre-tokenized records: prompt of [4, 24) and response of [2, 24) random ids below vocab */
static void write_random_data(const char *path, int n, int vocab, uint64_t seed) {
    size_t cap = (size_t)n * 512 + 64, o = 0;
    char *s = qa_malloc(cap);
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
    o += (size_t)sprintf(s + o, "[\n");
    for (int i = 0; i < n; i++) {
        int src = 4 + (int)(mix64(st++) % 20), tgt = 2 + (int)(mix64(st++) % 22);
        int ids[64];
        for (int j = 0; j < src + tgt; j++) ids[j] = (int)(mix64(st++) % (uint64_t)vocab);
        o += (size_t)sprintf(s + o, " {\"input_ids\": [");
        for (int j = 0; j < src + tgt; j++) o += (size_t)sprintf(s + o, "%s%d", j ? "," : "", ids[j]);
        o += (size_t)sprintf(s + o, "], \"labels\": [");
        for (int j = 0; j < src + tgt; j++) o += (size_t)sprintf(s + o, "%s%d", j ? "," : "", j < src ? -100 : ids[j]);
        o += (size_t)sprintf(s + o, "]}%s\n", i + 1 < n ? "," : "");
    }
    o += (size_t)sprintf(s + o, "]\n");
    qa_err e = {0};
    if (qa_write_file_atomic(path, s, o, &e)) die(path, &e);
    free(s);
}

/* ---- runs --------------------------------------------------------------------------------------- */

/* The common settings of the random-data runs (--config), plus per-run --set flags. */
static char *base_yaml;

static void write_base(const char *model, const char *data) {
    base_yaml = wpath("base.yaml");
    char y[4096];
    snprintf(y, sizeof y,
             "model: {path: %s}\n"
             "data: {files: [%s], template: none, val_fraction: 0, packing: false, cutoff: 64}\n"
             "lora: {targets: [q_proj, v_proj], r: 4, alpha: 8}\n"
             "train: {micro_batch: 2, grad_accum: 4, schedule: constant, warmup_ratio: 0, lr: 1.0e-3, threads: 1,\n"
             "        log_every: 1000, eval_every: 0, seed: 7}\n"
             "checkpoint: {every: 0, keep_last: 2}\n",
             model, data);
    put(base_yaml, y);
}

/* qalign train [under mpirun -n np when np > 0] --config base --set checkpoint.dir=RUN EXTRA */
static int train(int np, const char *run, const char *extra) {
    char launch[1024] = "";
    if (np > 0) snprintf(launch, sizeof launch, "%s %d ", mpirun, np);
    int rc = sh("%s%s train --config %s --set checkpoint.dir=%s %s", launch, bin, base_yaml, run, extra);
    no_sanitizer_report(out);
    return rc;
}

/* Start `cmd` in the background with its output in log; the pid is the command's own (sh execs it).
 * rlimit_fsize != 0: SIGXFSZ ignored (write() beyond RLIMIT_FSIZE fails with EFBIG instead); > 0: that
 * RLIMIT_FSIZE in bytes. */
static pid_t spawn(const char *cmd, const char *log, long rlimit_fsize) {
    pid_t p = fork();
    if (p < 0) die("fork", NULL);
    if (p == 0) {
        if (rlimit_fsize) signal(SIGXFSZ, SIG_IGN); /* inherited through exec */
        if (rlimit_fsize > 0) {
            struct rlimit rl = {(rlim_t)rlimit_fsize, (rlim_t)rlimit_fsize};
            if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(126);
        }
        size_t fl = strlen(cmd) + strlen(log) + 32;
        char *full = malloc(fl);
        snprintf(full, fl, "exec %s > '%s' 2>&1", cmd, log);
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    return p;
}

/* Wait for p up to timeout seconds (then SIGKILL it and return -2). Exit status, 128+signal. */
static int wait_for(pid_t p, double timeout) {
    double t0 = now_s();
    for (;;) {
        int st;
        pid_t r = waitpid(p, &st, WNOHANG);
        if (r == p) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        if (r < 0) return -1;
        if (now_s() - t0 > timeout) {
            kill(p, SIGKILL);
            waitpid(p, &st, 0);
            return -2;
        }
        usleep(10000);
    }
}

static int count_lines(const char *path) {
    size_t n;
    char *b = slurp(path, &n);
    if (!b) return 0;
    int k = 0;
    for (size_t i = 0; i < n; i++) k += b[i] == '\n';
    free(b);
    return k;
}

/* Poll until `cond(arg)` or timeout / the process ended. 1 when cond held. */
static int wait_until(pid_t p, double timeout, int (*cond)(const char *), const char *arg) {
    double t0 = now_s();
    while (now_s() - t0 < timeout) {
        if (cond(arg)) return 1;
        if (waitpid(p, NULL, WNOHANG) == p) return -1; /* ended (reaped: the caller must not wait) */
        usleep(5000);
    }
    return 0;
}
static int metrics_lines_ge(const char *arg) {
    /* arg: "N PATH" */
    int want = atoi(arg);
    const char *path = strchr(arg, ' ') + 1;
    return count_lines(path) >= want;
}
static int file_exists(const char *path) { return qa_path_exists(path); }

/* The "loss" values of metrics.jsonl as written (the text, so comparisons are byte-exact). */
typedef struct losses {
    int n;
    long long step[8192];
    char text[8192][32];
} losses;

static int read_losses(const char *run, losses *L) {
    L->n = 0;
    char *p = qa_path_join(run, "metrics.jsonl");
    char *b = slurp(p, NULL);
    free(p);
    if (!b) return -1;
    for (char *line = b; *line && L->n < 8192;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        const char *s = strstr(line, "\"step\":"), *l = strstr(line, "\"loss\":");
        if (s && l) {
            L->step[L->n] = atoll(s + 7);
            l += 7;
            size_t k = strcspn(l, ",}");
            snprintf(L->text[L->n], sizeof L->text[0], "%.*s", (int)k, l);
            L->n++;
        }
        if (!nl) break;
        line = nl + 1;
    }
    free(b);
    return 0;
}

/* Every logged loss and the final adapter file byte-equal; steps 1..n in order. */
static void same_run(const char *what, const char *a, const char *b, int n_steps) {
    static losses La, Lb;
    read_losses(a, &La);
    read_losses(b, &Lb);
    int ok = La.n == n_steps && Lb.n == n_steps, first_diff = -1;
    for (int i = 0; ok && i < n_steps; i++) {
        if (La.step[i] != i + 1 || Lb.step[i] != i + 1 || strcmp(La.text[i], Lb.text[i])) { ok = 0; first_diff = i; }
    }
    QT_CHECK(ok, "%s: %d logged losses byte-equal, steps 1..%d in order (got %d and %d lines; first difference at "
             "line %d: %s vs %s)", what, n_steps, n_steps, La.n, Lb.n, first_diff + 1,
             first_diff >= 0 ? La.text[first_diff] : "-", first_diff >= 0 ? Lb.text[first_diff] : "-");
    char *fa = qa_path_join(a, "adapter/adapter_model.safetensors"), *fb = qa_path_join(b, "adapter/adapter_model.safetensors");
    QT_CHECK(same_bytes(fa, fb), "%s: adapter_model.safetensors byte-equal (%s vs %s)", what, fa, fb);
    free(fa);
    free(fb);
}

/* The step of the newest checkpoint (the `latest` pointer), -1 if none. */
static long long latest_step(const char *run) {
    char *p = qa_path_join(run, "checkpoints/latest");
    char *b = slurp(p, NULL);
    free(p);
    if (!b) return -1;
    long long s = -1;
    const char *q = strstr(b, "step_");
    if (q) s = atoll(q + 5);
    free(b);
    return s;
}

/* The newest committed step file (what a resume picks when it is valid): newer than `latest` when a kill lands
 * between a step file's rename and the pointer's update. */
static long long newest_step(const char *run) {
    char *d = qa_path_join(run, "checkpoints");
    DIR *dd = opendir(d);
    free(d);
    if (!dd) return -1;
    long long best = -1;
    struct dirent *de;
    while ((de = readdir(dd))) {
        long long s;
        char tail[8] = "";
        if (sscanf(de->d_name, "step_%lld.h%7s", &s, tail) == 2 && !strcmp(tail, "5") && s > best) best = s;
    }
    closedir(dd);
    return best;
}

static int count_tmp(const char *run) {
    char *d = qa_path_join(run, "checkpoints");
    DIR *dd = opendir(d);
    free(d);
    if (!dd) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dd))) n += strstr(de->d_name, ".tmp") != NULL;
    closedir(dd);
    return n;
}

/* ---- safetensors / PEFT comparisons ------------------------------------------------------------- */

static double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static float *read_f32(const qa_safetensors *st, const qa_st_tensor *t) {
    float *v = qa_malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    qa_err e = {0};
    if (qa_st_read_f32(st, t, v, &e)) die(t->name, &e);
    return v;
}

/* max rel error of every tensor of adapter file `ad` against golden "<prefix>.<name with .default>" */
static double cmp_adapter_golden(const char *ad, const qa_safetensors *g, const char *prefix, int *n_cmp, int *missing) {
    qa_safetensors a;
    qa_err e = {0};
    *n_cmp = 0;
    *missing = 0;
    if (qa_st_open(&a, ad, &e)) { printf("  %s\n", e.msg); *missing = 1; return INFINITY; }
    double worst = 0;
    for (size_t i = 0; i < a.n_tensors; i++) {
        const qa_st_tensor *t = &a.tensors[i];
        char name[600];
        const char *w = strstr(t->name, ".weight");
        if (!w) { (*missing)++; continue; }
        snprintf(name, sizeof name, "%s.%.*s.default.weight", prefix, (int)(w - t->name), t->name);
        const qa_st_tensor *r = qa_st_find(g, name);
        if (!r || r->numel != t->numel) { (*missing)++; printf("  no golden %s\n", name); continue; }
        float *x = read_f32(&a, t), *y = read_f32(g, r);
        double er = rel_err(x, y, (size_t)t->numel);
        if (er > worst) worst = er;
        free(x);
        free(y);
        (*n_cmp)++;
    }
    qa_st_close(&a);
    return worst;
}

static double golden_scalar(const qa_safetensors *g, const char *name) {
    const qa_st_tensor *t = qa_st_find(g, name);
    if (!t || t->numel != 1) return NAN;
    float *v = read_f32(g, t);
    double r = v[0];
    free(v);
    return r;
}

/* PEFT layout of OUT against the reference adapter dir REF (a PEFT save_pretrained output). */
static void cmp_peft_layout(const char *what, const char *outdir, const char *refdir) {
    char *oc = qa_path_join(outdir, "adapter_config.json"), *rc = qa_path_join(refdir, "adapter_config.json");
    json_error_t je;
    json_t *o = json_load_file(oc, 0, &je), *r = json_load_file(rc, 0, &je);
    QT_CHECK(o && r, "%s: adapter_config.json of both parse (%s)", what, je.text);
    if (o && r) {
        /* the fields that decide how PEFT builds and scales the adapter */
        static const char *keys[] = {"peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "bias",
                                     "fan_in_fan_out", "use_rslora", "use_dora", "init_lora_weights",
                                     "modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            json_t *a = json_object_get(o, keys[k]), *b = json_object_get(r, keys[k]);
            int eq = a && b && (json_equal(a, b) || (json_is_number(a) && json_is_number(b) &&
                                                    json_number_value(a) == json_number_value(b)));
            if (!strcmp(keys[k], "init_lora_weights")) eq = a != NULL; /* a training choice: present is enough */
            QT_CHECK(eq, "%s: adapter_config.json \"%s\" %s", what, keys[k], eq ? "agrees" : "differs or is missing");
        }
        json_t *ta = json_object_get(o, "target_modules"), *tb = json_object_get(r, "target_modules");
        int same = json_is_array(ta) && json_is_array(tb) && json_array_size(ta) == json_array_size(tb);
        for (size_t i = 0; same && i < json_array_size(tb); i++) {
            int found = 0;
            for (size_t j = 0; j < json_array_size(ta); j++)
                found |= json_equal(json_array_get(tb, i), json_array_get(ta, j));
            same = found;
        }
        QT_CHECK(same, "%s: target_modules the same set", what);
    }
    json_decref(o);
    json_decref(r);
    free(oc);
    free(rc);

    char *om = qa_path_join(outdir, "adapter_model.safetensors"), *rm = qa_path_join(refdir, "adapter_model.safetensors");
    qa_safetensors a, b;
    qa_err e = {0};
    int ao = qa_st_open(&a, om, &e) == 0, bo = ao && qa_st_open(&b, rm, &e) == 0;
    QT_CHECK(ao && bo, "%s: both adapter_model.safetensors open (%s)", what, e.msg);
    if (ao && bo) {
        int ok = a.n_tensors == b.n_tensors;
        for (size_t i = 0; ok && i < a.n_tensors; i++) {
            const qa_st_tensor *x = &a.tensors[i], *y = qa_st_find(&b, x->name);
            ok = y && x->ndim == y->ndim && x->numel == y->numel && x->dtype == QA_DT_F32 &&
                 !memcmp(x->shape, y->shape, sizeof(x->shape[0]) * (size_t)x->ndim);
            if (!ok) printf("  tensor %s: %s\n", x->name, y ? "shape or dtype differs" : "not in the reference");
        }
        QT_CHECK(ok, "%s: the same %zu tensor names and shapes as the reference, all F32", what, b.n_tensors);
        json_t *m = a.metadata_json ? json_loads(a.metadata_json, 0, &je) : NULL;
        const char *fmt = json_string_value(json_object_get(m, "format"));
        QT_CHECK(fmt && !strcmp(fmt, "pt"), "%s: metadata format=pt (%s)", what, a.metadata_json ? a.metadata_json : "none");
        json_decref(m);
    }
    if (bo) qa_st_close(&b);
    if (ao) qa_st_close(&a);
    free(om);
    free(rm);
}

static double metric_of(const char *run, const char *key);

/* ---- golden through the loop -------------------------------------------------------------------- */

static void lora_settings(const char *adapter_dir, char *buf, size_t n) {
    char *p = qa_path_join(adapter_dir, "adapter_config.json");
    json_error_t je;
    json_t *c = json_load_file(p, 0, &je);
    if (!c) { fprintf(stderr, "%s: %s\n", p, je.text); exit(1); }
    char tg[512] = "";
    json_t *t = json_object_get(c, "target_modules");
    for (size_t i = 0; i < json_array_size(t); i++)
        snprintf(tg + strlen(tg), sizeof tg - strlen(tg), "%s%s", i ? "," : "", json_string_value(json_array_get(t, i)));
    snprintf(buf, n, "--set lora.r=%lld --set lora.alpha=%.17g --set lora.targets=%s --set lora.init_adapter=%s",
             (long long)json_integer_value(json_object_get(c, "r")), json_number_value(json_object_get(c, "lora_alpha")),
             tg, adapter_dir);
    json_decref(c);
    free(p);
}

/* The fixture batch as pre-tokenized records: each row without its padding. */
static void write_golden_data(const qa_safetensors *g, const char *path) {
    const qa_st_tensor *ids = qa_st_find(g, "input_ids"), *mask = qa_st_find(g, "attention_mask"),
                       *lab = qa_st_find(g, "labels");
    if (!ids || !mask || !lab || ids->dtype != QA_DT_I32 || ids->ndim != 2) {
        fprintf(stderr, "golden.safetensors: input_ids/attention_mask/labels (I32 [B,T]) missing\n");
        exit(1);
    }
    int B = (int)ids->shape[0], T = (int)ids->shape[1];
    const int32_t *I = ids->data, *M = mask->data, *Lb = lab->data;
    size_t cap = (size_t)B * T * 24 + 64, o = 0;
    char *s = qa_malloc(cap);
    o += (size_t)sprintf(s + o, "[");
    for (int b = 0; b < B; b++) {
        int n = 0;
        while (n < T && M[b * T + n]) n++;
        o += (size_t)sprintf(s + o, "%s\n {\"input_ids\": [", b ? "," : "");
        for (int t = 0; t < n; t++) o += (size_t)sprintf(s + o, "%s%d", t ? "," : "", (int)I[b * T + t]);
        o += (size_t)sprintf(s + o, "], \"labels\": [");
        for (int t = 0; t < n; t++) o += (size_t)sprintf(s + o, "%s%d", t ? "," : "", (int)Lb[b * T + t]);
        o += (size_t)sprintf(s + o, "]}");
    }
    o += (size_t)sprintf(s + o, "\n]\n");
    qa_err e = {0};
    if (qa_write_file_atomic(path, s, o, &e)) die(path, &e);
    free(s);
}

static double worst_rel, worst_loss;

/* `qalign train` of the golden recipe: micro-batch = the batch, 2 steps, lr 1e-2, wd 0.01, constant lr,
 * no warmup, no clipping, no validation, no packing. */
static int golden_train(const char *model, const char *data, const char *run, const char *lora, int steps, int B) {
    return sh("%s train --set model.path=%s --set data.files=%s --set data.template=none --set data.val_fraction=0 "
              "--set data.packing=false --set train.micro_batch=%d --set train.grad_accum=1 --set train.max_steps=%d "
              "--set train.schedule=constant --set train.warmup_ratio=0 --set train.max_grad_norm=0 --set train.lr=1e-2 "
              "--set train.weight_decay=0.01 --set train.threads=1 --set train.eval_every=0 --set checkpoint.dir=%s %s",
              bin, model, data, B, steps, run, lora);
}

static void case_golden(void) {
    const char *root = fixtures_root();
    char **names;
    int n = qt_list_dir(root, &names, is_fixture);
    QT_CHECK(n > 0, "fixtures under %s", root);
    for (int i = 0; i < n; i++) {
        char dir[1024], gp[1100], model[1100];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        snprintf(gp, sizeof gp, "%s/golden.safetensors", dir);
        snprintf(model, sizeof model, "%s/model", dir);
        qa_safetensors g;
        qa_err e = {0};
        if (qa_st_open(&g, gp, &e)) die(gp, &e);
        char *data = wpath("%s.json", names[i]);
        write_golden_data(&g, data);
        int B = (int)qa_st_find(&g, "input_ids")->shape[0];
        char **ads;
        int na = qt_list_dir(dir, &ads, is_adapter_init);
        QT_CHECK(na > 0, "%s: adapter_*_init directories", names[i]);
        for (int k = 0; k < na; k++) {
            char tag[256], lora[2048], prefix[300], ref[1300];
            snprintf(tag, sizeof tag, "%.*s", (int)strlen(ads[k]) - 13, ads[k] + 8);
            snprintf(prefix, sizeof prefix, "lora_%s", tag);
            char *ad = qa_path_join(dir, ads[k]);
            lora_settings(ad, lora, sizeof lora);
            char *run = wpath("golden_%s_%s", names[i], tag);
            double t0 = now_s();
            int rc = sh("%s train --set model.path=%s --set data.files=%s --set data.template=none "
                        "--set data.val_fraction=0 --set data.packing=false --set train.micro_batch=%d "
                        "--set train.grad_accum=1 --set train.max_steps=2 --set train.schedule=constant "
                        "--set train.warmup_ratio=0 --set train.max_grad_norm=0 --set train.lr=1e-2 "
                        "--set train.weight_decay=0.01 --set train.threads=1 --set train.eval_every=0 "
                        "--set checkpoint.dir=%s %s",
                        bin, model, data, B, run, lora);
            double secs = now_s() - t0;
            QT_CHECK(rc == 0, "%s/%s: qalign train exits 0 (got %d)", names[i], tag, rc);
            no_sanitizer_report(out);
            if (rc) { show_output(); free(run); free(ad); continue; }
            /* losses of step 1 (before any update) and step 2 */
            static losses L;
            read_losses(run, &L);
            double l1 = L.n > 0 ? atof(L.text[0]) : NAN, l2 = L.n > 1 ? atof(L.text[1]) : NAN;
            double g1, g2;
            char nm[400];
            snprintf(nm, sizeof nm, "%s.loss", prefix);
            g1 = golden_scalar(&g, nm);
            snprintf(nm, sizeof nm, "%s.loss_after_step1", prefix);
            g2 = golden_scalar(&g, nm);
            double e1 = fabs(l1 - g1), e2 = fabs(l2 - g2);
            QT_CHECK(L.n == 2 && e1 <= 1e-4 && e2 <= 1e-4, "%s/%s: logged losses %.6f %.6f vs golden %.6f %.6f (abs err "
                     "%.2e %.2e)", names[i], tag, l1, l2, g1, g2, e1, e2);
            if (e1 > worst_loss) worst_loss = e1;
            if (e2 > worst_loss) worst_loss = e2;
            /* the adapter the loop wrote */
            char *adf = qa_path_join(run, "adapter/adapter_model.safetensors");
            int nc, miss;
            double er = cmp_adapter_golden(adf, &g, strcat(strcpy(nm, prefix), ".after2steps"), &nc, &miss);
            QT_CHECK(nc > 0 && miss == 0 && er <= 1e-4, "%s/%s: run/adapter vs %s.*: %d tensors, worst rel err %.3e",
                     names[i], tag, nm, nc, er);
            if (er > worst_rel) worst_rel = er;
            printf("  %-8s %-4s loss %.3e %.3e  adapter rel %.3e (%d tensors)  %.2f s\n", names[i], tag, e1, e2, er, nc, secs);
            /* export-peft from the run directory: PEFT's layout, the same values */
            char *exp = wpath("export_%s_%s", names[i], tag);
            rc = sh("%s export-peft %s %s", bin, run, exp);
            QT_CHECK(rc == 0, "%s/%s: qalign export-peft RUN OUT exits 0 (got %d)", names[i], tag, rc);
            if (rc) show_output();
            snprintf(ref, sizeof ref, "%s/adapter_%s_after2steps", dir, tag);
            if (qa_is_dir(ref)) cmp_peft_layout(names[i], exp, ref);
            char *ef = qa_path_join(exp, "adapter_model.safetensors");
            double er2 = cmp_adapter_golden(ef, &g, nm, &nc, &miss);
            QT_CHECK(nc > 0 && miss == 0 && er2 <= 1e-4, "%s/%s: export-peft values vs golden: rel err %.3e", names[i], tag, er2);
            QT_CHECK(same_bytes(ef, adf), "%s/%s: export-peft of the final checkpoint == run/adapter byte for byte", names[i], tag);
            free(ef);
            free(exp);
            free(adf);
            free(run);
            free(ad);
        }
        for (int k = 0; k < na; k++) free(ads[k]);
        if (na > 0) free(ads);
        free(data);
        qa_st_close(&g);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    if (n > 0) free(names);
    printf("golden through the loop: worst adapter rel err %.3e, worst loss abs err %.3e\n", worst_rel, worst_loss);
}

/* Mean next-token cross-entropy of the rows in `rows_mask` (bit b = row b) from logits [B,T,V]. */
static double ce_rows(const float *logits, const int32_t *labels, int B, int T, int V, unsigned rows_mask, int64_t *ntok) {
    double sum = 0;
    int64_t n = 0;
    for (int b = 0; b < B; b++) {
        if (!(rows_mask >> b & 1)) continue;
        for (int t = 0; t + 1 < T; t++) {
            int y = labels[b * T + t + 1];
            if (y < 0) continue;
            const float *z = logits + ((size_t)b * T + t) * V;
            double mx = z[0], se = 0;
            for (int v = 1; v < V; v++) if (z[v] > mx) mx = z[v];
            for (int v = 0; v < V; v++) se += exp((double)z[v] - mx);
            sum += mx + log(se) - z[y];
            n++;
        }
    }
    *ntok = n;
    return n ? sum / (double)n : NAN;
}

/* Validation uses the adapter: with lr 0 the adapter stays at adapter_<tag>_init, so the logged
 * val_loss must be the golden lora_<tag>.logits cross-entropy of the held-out rows (which rows the
 * seeded split holds out is found by their token count and loss among all subsets), not the base
 * model's. */
static void case_validation(void) {
    const char *root = fixtures_root();
    char **names;
    int n = qt_list_dir(root, &names, is_fixture);
    QT_CHECK(n > 0, "fixtures under %s", root);
    for (int i = 0; i < n; i++) {
        char dir[1024], gp[1100], model[1100];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        snprintf(gp, sizeof gp, "%s/golden.safetensors", dir);
        snprintf(model, sizeof model, "%s/model", dir);
        qa_safetensors g;
        qa_err e = {0};
        if (qa_st_open(&g, gp, &e)) die(gp, &e);
        char *data = wpath("%s.json", names[i]);
        write_golden_data(&g, data);
        const qa_st_tensor *ti = qa_st_find(&g, "input_ids"), *tl = qa_st_find(&g, "labels");
        int B = (int)ti->shape[0], T = (int)ti->shape[1];
        char **ads;
        int na = qt_list_dir(dir, &ads, is_adapter_init);
        for (int k = 0; k < na && B <= 16; k++) {
            char tag[256], lora[2048], nm[300];
            snprintf(tag, sizeof tag, "%.*s", (int)strlen(ads[k]) - 13, ads[k] + 8);
            char *ad = qa_path_join(dir, ads[k]);
            lora_settings(ad, lora, sizeof lora);
            char *run = wpath("val_%s_%s", names[i], tag);
            int rc = sh("%s train --set model.path=%s --set data.files=%s --set data.template=none "
                        "--set data.val_fraction=0.5 --set data.packing=false --set train.micro_batch=%d "
                        "--set train.grad_accum=1 --set train.max_steps=1 --set train.lr=0 --set train.threads=1 "
                        "--set train.eval_every=1 --set checkpoint.dir=%s %s", bin, model, data, B, run, lora);
            QT_CHECK(rc == 0, "%s/%s: a run with validation (exit %d)", names[i], tag, rc);
            if (rc) show_output();
            double val = metric_of(run, "val_loss");
            snprintf(nm, sizeof nm, "lora_%s.logits", tag);
            const qa_st_tensor *tlg = qa_st_find(&g, nm), *tbase = qa_st_find(&g, "logits");
            if (!tlg || !tbase) { QT_CHECK(0, "%s: golden %s and logits", names[i], nm); continue; }
            int V = (int)tlg->shape[2];
            float *L = read_f32(&g, tlg), *L0 = read_f32(&g, tbase);
            double best = INFINITY, base_of_best = NAN;
            for (unsigned m = 1; m < (1u << B) - 1; m++) {
                int64_t nt, nt0;
                double ce = ce_rows(L, tl->data, B, T, V, m, &nt), ce0 = ce_rows(L0, tl->data, B, T, V, m, &nt0);
                if (fabs(ce - val) < fabs(best - val)) { best = ce; base_of_best = ce0; }
            }
            QT_CHECK(fabs(best - val) <= 1e-4 && fabs(base_of_best - val) > 1e-3,
                     "%s/%s: val_loss %.6f = the adapter's loss on the held-out rows %.6f (abs %.1e; the base model "
                     "gives %.6f)", names[i], tag, val, best, fabs(best - val), base_of_best);
            printf("  %-8s %-4s val_loss %.6f, adapter on the held-out rows %.6f (abs %.1e), base model %.6f\n", names[i],
                   tag, val, best, fabs(best - val), base_of_best);
            free(L);
            free(L0);
            free(run);
            free(ad);
        }
        for (int k = 0; k < na; k++) free(ads[k]);
        if (na > 0) free(ads);
        free(data);
        qa_st_close(&g);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    if (n > 0) free(names);
}

/* ---- adapters out: export as init, merge -------------------------------------------------------- */

static int forward_logits(const char *model_dir, const char *adapter, const int32_t *ids, const int32_t *mask, int B,
                          int T, float **logits, int *V) {
    qa_model m;
    qa_err e = {0};
    if (qa_model_load(&m, model_dir, NULL, &e)) { printf("  %s\n", e.msg); return -1; }
    qa_lora l;
    int have_l = 0;
    if (adapter) {
        if (qa_lora_load_peft(&l, &m, adapter, &e)) { printf("  %s\n", e.msg); qa_model_free(&m); return -1; }
        have_l = 1;
    }
    qa_acts a;
    if (qa_acts_alloc(&a, &m, have_l ? &l : NULL, B, T, QA_ACTS_INFER, 0, &e)) die("acts", &e);
    qa_batch b = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask};
    qa_fwd_opts fo = {.logits = QA_LOGITS_ALL};
    int rc = qa_model_forward(&m, have_l ? &l : NULL, &a, &b, &fo, &e);
    if (rc) printf("  forward: %s\n", e.msg);
    *V = m.cfg.vocab;
    *logits = qa_malloc(sizeof(float) * (size_t)B * T * m.cfg.vocab);
    qa_model_to_host(&m, *logits, a.logits, (size_t)B * T * m.cfg.vocab);
    qa_acts_free(&a);
    if (have_l) qa_lora_free(&l);
    qa_model_free(&m);
    return rc;
}

static void case_adapter(void) {
    const char *root = fixtures_root();
    char **names;
    int n = qt_list_dir(root, &names, is_fixture);
    QT_CHECK(n > 0, "fixtures under %s", root);
    for (int i = 0; i < n; i++) {
        char dir[1024], gp[1100], model[1100];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        snprintf(gp, sizeof gp, "%s/golden.safetensors", dir);
        snprintf(model, sizeof model, "%s/model", dir);
        qa_safetensors g;
        qa_err e = {0};
        if (qa_st_open(&g, gp, &e)) die(gp, &e);
        char *data = wpath("%s.json", names[i]);
        write_golden_data(&g, data);
        const qa_st_tensor *ti = qa_st_find(&g, "input_ids");
        int B = (int)ti->shape[0], T = (int)ti->shape[1];
        char **ads;
        int na = qt_list_dir(dir, &ads, is_adapter_init);
        if (na <= 0) { QT_CHECK(0, "%s: an adapter_*_init directory", names[i]); continue; }
        char lora[2048];
        char *ad0 = qa_path_join(dir, ads[0]);
        lora_settings(ad0, lora, sizeof lora);
        /* 2 steps, export, then the same run extended to 3 steps */
        char *run = wpath("adapter_%s", names[i]), *exp = wpath("adapter_%s_peft", names[i]);
        int rc = golden_train(model, data, run, lora, 2, B);
        QT_CHECK(rc == 0, "%s: 2 steps (exit %d)", names[i], rc);
        if (rc) show_output();
        rc = sh("%s export-peft %s %s", bin, run, exp);
        QT_CHECK(rc == 0, "%s: export-peft (exit %d)", names[i], rc);
        rc = golden_train(model, data, run, lora, 3, B);
        QT_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: the run extended to 3 steps resumes (exit %d)", names[i], rc);
        /* a fresh run from the exported adapter: its first loss is the loss of step 3 above, bit for bit */
        char *run2 = wpath("adapter_%s_from_peft", names[i]);
        char lora2[2048];
        lora_settings(ad0, lora2, sizeof lora2);
        char *cut = strstr(lora2, "--set lora.init_adapter=");
        snprintf(cut, sizeof lora2 - (size_t)(cut - lora2), "--set lora.init_adapter=%s", exp);
        rc = golden_train(model, data, run2, lora2, 1, B);
        QT_CHECK(rc == 0, "%s: a run with lora.init_adapter = the export-peft directory (exit %d)", names[i], rc);
        if (rc) show_output();
        static losses L1, L2;
        read_losses(run, &L1);
        read_losses(run2, &L2);
        /* (the rows of step 3 come in another epoch order: the same mean up to summation order) */
        double la = L1.n == 3 ? atof(L1.text[2]) : NAN, lb = L2.n == 1 ? atof(L2.text[0]) : NAN;
        double l2 = L1.n == 3 ? atof(L1.text[1]) : NAN;
        QT_CHECK(fabs(la - lb) <= 1e-6 * fabs(la) && fabs(l2 - la) > 1e3 * fabs(la - lb),
                 "%s: first loss from the exported adapter %.9f == loss of step 3 of the run %.9f (rel %.1e; step 2: %.6f)",
                 names[i], lb, la, fabs(la - lb) / fabs(la), l2);
        /* merge: base + alpha/r BA in f32 == base model with the adapter */
        char *merged = wpath("merged_%s", names[i]);
        rc = sh("%s merge --model %s --adapter %s --out %s --dtype f32", bin, model, exp, merged);
        QT_CHECK(rc == 0, "%s: qalign merge --dtype f32 (exit %d)", names[i], rc);
        if (rc) show_output();
        float *x = NULL, *y = NULL;
        int V1 = 0, V2 = 0;
        const int32_t *ids = ti->data, *mask = qa_st_find(&g, "attention_mask")->data;
        int r1 = forward_logits(model, exp, ids, mask, B, T, &x, &V1);
        int r2 = forward_logits(merged, NULL, ids, mask, B, T, &y, &V2);
        QT_CHECK(r1 == 0 && r2 == 0 && V1 == V2, "%s: the merged directory loads and runs like the original", names[i]);
        if (!r1 && !r2 && V1 == V2) {
            double num = 0, den = 0;
            for (int r = 0; r < B * T; r++) {
                if (!mask[r]) continue;
                for (int v = 0; v < V1; v++) {
                    double d = (double)y[(size_t)r * V1 + v] - x[(size_t)r * V1 + v];
                    num += d * d;
                    den += (double)x[(size_t)r * V1 + v] * x[(size_t)r * V1 + v];
                }
            }
            double er = sqrt(num / den);
            QT_CHECK(er <= 1e-5, "%s: logits of the merged model vs base + adapter: rel err %.3e (<= 1e-5)", names[i], er);
            printf("  %-8s merged (f32) vs base + adapter: logits rel err %.3e\n", names[i], er);
        }
        {   /* --dtype f32: every tensor F32 and config.json saying so (transformers loads in the config's dtype) */
            char *c2 = qa_path_join(merged, "config.json"), *txt = NULL;
            size_t len = 0;
            qa_err ce = {0};
            QT_CHECK(qa_read_file(c2, 0, &txt, &len, &ce) == 0 && strstr(txt, "\"torch_dtype\": \"float32\"") &&
                     !strstr(txt, "bfloat16"), "%s: merged (f32) config.json says torch_dtype float32", names[i]);
            free(txt); free(c2);
        }
        free(x); free(y);
        /* the default dtype (the checkpoint's) loads too */
        char *merged2 = wpath("merged_%s_same", names[i]);
        rc = sh("%s merge --model %s --adapter %s --out %s", bin, model, run, merged2);
        QT_CHECK(rc == 0, "%s: qalign merge from a run directory, dtype as stored (exit %d)", names[i], rc);
        float *z = NULL;
        int V3 = 0;
        QT_CHECK(forward_logits(merged2, NULL, ids, mask, B, T, &z, &V3) == 0, "%s: that merged model runs", names[i]);
        char *c1 = qa_path_join(model, "config.json"), *c3 = qa_path_join(merged2, "config.json");
        QT_CHECK(same_bytes(c1, c3), "%s: merged (dtype as stored) config.json is the original's", names[i]);
        free(c1); free(c3);
        free(z);
        free(merged2);
        free(merged);
        free(run2);
        free(exp);
        free(run);
        free(ad0);
        for (int k = 0; k < na; k++) free(ads[k]);
        free(ads);
        free(data);
        qa_st_close(&g);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    if (n > 0) free(names);
}

/* ---- resume ------------------------------------------------------------------------------------- */

static void case_resume(void) {
    const int N = 60;
    char extra[512];
    char *straight = wpath("straight"), *split = wpath("split"), *sig = wpath("sigusr1");
    snprintf(extra, sizeof extra, "--set train.max_steps=%d --set checkpoint.every=25", 2 * N);
    double t0 = now_s();
    int rc = train(0, straight, extra);
    QT_CHECK(rc == 0, "straight %d steps (exit %d)", 2 * N, rc);
    if (rc) show_output();
    printf("  straight run of %d steps: %.2f s\n", 2 * N, now_s() - t0);
    snprintf(extra, sizeof extra, "--set train.max_steps=%d --set checkpoint.every=25", N);
    rc = train(0, split, extra);
    QT_CHECK(rc == 0, "first %d steps (exit %d)", N, rc);
    snprintf(extra, sizeof extra, "--set train.max_steps=%d --set checkpoint.every=25", 2 * N);
    rc = train(0, split, extra);
    char want[128];
    snprintf(want, sizeof want, "step %d, epoch", N);
    QT_CHECK(rc == 0 && strstr(out, "resumed from") && strstr(out, want), "rerun with max_steps %d resumes from step %d "
             "(exit %d)", 2 * N, N, rc);
    QT_CHECK(!strstr(out, "not the continuation"), "no warning about changed settings (max_steps is not one)");
    /* a rerun with nothing left to do writes the adapter again and leaves the checkpoints alone */
    rc = train(0, split, extra);
    QT_CHECK(rc == 0 && strstr(out, "nothing to train"), "a finished run rerun: nothing to train (exit %d)", rc);
    if (rc) show_output();
    same_run("N, stop, resume to 2N vs 2N straight", straight, split, 2 * N);

    /* SIGUSR1 mid-run (no launcher: the process itself), then resume */
    snprintf(extra, sizeof extra, "--set train.max_steps=%d --set checkpoint.every=25", 2 * N);
    char cmd[4096], *log = wpath("sigusr1.log");
    snprintf(cmd, sizeof cmd, "%s train --config %s --set checkpoint.dir=%s %s", bin, base_yaml, sig, extra);
    qa_mkdir_p(sig, NULL);
    pid_t p = spawn(cmd, log, 0);
    char arg[1024];
    snprintf(arg, sizeof arg, "%d %s/metrics.jsonl", 5, sig);
    int seen = wait_until(p, 60, metrics_lines_ge, arg);
    if (seen == 1) kill(p, SIGUSR1);
    rc = seen == -1 ? 0 : wait_for(p, 60);
    char *lg = slurp(log, NULL);
    int stopped = lg && strstr(lg, "stop requested");
    long long at = latest_step(sig);
    QT_CHECK(seen == 1 && rc == 0 && stopped && at > 0 && at < 2 * N, "SIGUSR1 after step 5: checkpoint committed at step "
             "%lld, exit 0 (exit %d%s)", at, rc, seen == 1 ? "" : "; the run ended before the signal");
    if (!stopped && lg) printf("%s\n", lg);
    free(lg);
    rc = train(0, sig, extra);
    QT_CHECK(rc == 0 && strstr(out, "resumed from"), "the rerun resumes from step %lld and finishes (exit %d)", at, rc);
    same_run("SIGUSR1, resume vs straight", straight, sig, 2 * N);
    free(log);
    free(straight);
    free(split);
    free(sig);
}

/* ---- packing ------------------------------------------------------------------------------------ */

static double metric_of(const char *run, const char *key) {
    char *p = qa_path_join(run, "metrics.jsonl");
    char *b = slurp(p, NULL);
    free(p);
    if (!b) return NAN;
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *s = strstr(b, k);
    double v = s ? atof(s + strlen(k)) : NAN;
    free(b);
    return v;
}

static void case_packing(void) {
    /* the whole data set in one micro-batch: 24 examples unpacked, or their packed rows (at most 24) */
    char *data = wpath("pack.json"), *a = wpath("unpacked"), *b = wpath("packed");
    int vocab;
    char *model = first_model(&vocab);
    write_random_data(data, 24, vocab, 11);
    char extra[1024];
    snprintf(extra, sizeof extra, "--set data.files=%s --set train.micro_batch=24 --set train.grad_accum=1 "
             "--set train.max_steps=1 --set data.packing=false", data);
    int rc = train(0, a, extra);
    QT_CHECK(rc == 0, "unpacked step (exit %d)", rc);
    if (rc) show_output();
    snprintf(extra, sizeof extra, "--set data.files=%s --set train.micro_batch=24 --set train.grad_accum=1 "
             "--set train.max_steps=1 --set data.packing=true --set data.pack_length=96", data);
    rc = train(0, b, extra);
    QT_CHECK(rc == 0 && strstr(out, "examples per row"), "packed step (exit %d)", rc);
    if (rc) show_output();
    double la = metric_of(a, "loss"), lb = metric_of(b, "loss"), ga = metric_of(a, "grad_norm"), gb = metric_of(b, "grad_norm");
    QT_CHECK(fabs(la - lb) <= 1e-6 * fabs(la), "loss packed %.9f == unpacked %.9f (rel %.2e)", lb, la, fabs(la - lb) / fabs(la));
    QT_CHECK(fabs(ga - gb) <= 1e-5 * fabs(ga), "gradient norm packed %.9g == unpacked %.9g (rel %.2e)", gb, ga,
             fabs(ga - gb) / fabs(ga));
    char *fa = qa_path_join(a, "adapter/adapter_model.safetensors"), *fb = qa_path_join(b, "adapter/adapter_model.safetensors");
    qa_safetensors sa, sb;
    qa_err e = {0};
    if (!qa_st_open(&sa, fa, &e) && !qa_st_open(&sb, fb, &e)) {
        double worst = 0;
        for (size_t i = 0; i < sa.n_tensors; i++) {
            const qa_st_tensor *y = qa_st_find(&sb, sa.tensors[i].name);
            if (!y) { worst = INFINITY; break; }
            float *u = read_f32(&sa, &sa.tensors[i]), *v = read_f32(&sb, y);
            /* B starts at 0: compare the update of every tensor */
            double er = rel_err(v, u, (size_t)y->numel);
            if (er > worst) worst = er;
            free(u);
            free(v);
        }
        /* (the first AdamW update is ~lr * sign(g): entries with tiny gradients amplify rounding) */
        QT_CHECK(worst <= 1e-4, "adapter after one step, packed vs unpacked: worst rel err %.3e", worst);
        printf("  packed vs unpacked: loss rel %.2e, grad norm rel %.2e, adapter rel %.2e\n", fabs(la - lb) / fabs(la),
               fabs(ga - gb) / fabs(ga), worst);
        qa_st_close(&sa);
        qa_st_close(&sb);
    } else {
        QT_CHECK(0, "both adapters open (%s)", e.msg);
    }
    free(fa); free(fb); free(model); free(data); free(a); free(b);
}

/* ---- ranks -------------------------------------------------------------------------------------- */

static void case_ranks(void) {
    const int S = 12;
    char extra[256];
    snprintf(extra, sizeof extra, "--set train.max_steps=%d --set checkpoint.every=5", S);
    char *r0 = wpath("np0");
    double t0 = now_s();
    int rc = train(0, r0, extra);
    QT_CHECK(rc == 0, "no launcher (exit %d)", rc);
    printf("  no launcher: %.2f s\n", now_s() - t0);
    for (int np = 1; np <= 4; np *= 2) {
        char *r = wpath("np%d", np);
        t0 = now_s();
        rc = train(np, r, extra);
        char want[64];
        snprintf(want, sizeof want, "%d ranks x %d micro-batches", np, 4 / np);
        QT_CHECK(rc == 0 && strstr(out, want), "mpirun -n %d (exit %d)", np, rc);
        if (rc) show_output();
        printf("  mpirun -n %d: %.2f s\n", np, now_s() - t0);
        char what[64];
        snprintf(what, sizeof what, "np %d vs no launcher", np);
        same_run(what, r0, r, S);
        free(r);
    }
    free(r0);
}

/* ---- failures under mpirun ---------------------------------------------------------------------- */

static pid_t spawn_ranks(int np, const char *run, const char *extra, const char *log) {
    char cmd[8192];
    /* every rank records its pid (sh execs qalign, so the pid is qalign's) */
    snprintf(cmd, sizeof cmd, "%s %d sh -c 'echo $$ > %s/pid.$OMPI_COMM_WORLD_RANK; exec \"$0\" \"$@\"' %s train "
             "--config %s --set checkpoint.dir=%s %s", mpirun, np, run, bin, base_yaml, run, extra);
    qa_mkdir_p(run, NULL);
    return spawn(cmd, log, 0);
}

static pid_t rank_pid(const char *run, int r) {
    char nm[32];
    snprintf(nm, sizeof nm, "pid.%d", r);
    char *p = qa_path_join(run, nm);
    char *b = slurp(p, NULL);
    free(p);
    pid_t x = b ? (pid_t)atol(b) : 0;
    free(b);
    return x;
}

static void case_kill(int victim) {
    char *run = wpath("kill%d", victim), *log = wpath("kill%d.log", victim), *ref = wpath("kill%d_straight", victim);
    const char *extra = "--set train.max_steps=100000 --set checkpoint.every=10";
    pid_t p = spawn_ranks(2, run, extra, log);
    char *latest = qa_path_join(run, "checkpoints/latest");
    int seen = wait_until(p, 60, file_exists, latest);
    /* one more checkpoint interval, so that the kill lands mid-run, maybe mid-save */
    usleep(150000);
    pid_t rp = rank_pid(run, victim);
    QT_CHECK(seen == 1 && rp > 0, "first checkpoint committed, rank %d pid %d", victim, (int)rp);
    double t0 = now_s();
    if (seen == 1 && rp > 0) kill(rp, SIGKILL);
    int rc = seen == -1 ? -1 : wait_for(p, 90);
    double dt = now_s() - t0;
    QT_CHECK(rc != 0 && rc != -2 && dt < 60, "SIGKILL of rank %d: mpirun exits non-zero (%d) after %.1f s (< 60 s)", victim,
             rc, dt);
    printf("  rank %d killed: job ended with %d after %.2f s\n", victim, rc, dt);
    rc = sh("%s ckpt-info --brief %s", bin, run);
    QT_CHECK(rc == 0, "qalign ckpt-info: a valid checkpoint remains (exit %d)", rc);
    if (rc) show_output();
    long long at = newest_step(run);
    char *ck = qa_path_join(run, "checkpoints");
    printf("  newest checkpoint: step %lld ('latest' names step %lld); temporaries left: %d\n", at, latest_step(run),
           count_tmp(run));
    free(ck);
    /* resume to a few steps past it; the same from scratch must give the same bits */
    char extra2[256];
    snprintf(extra2, sizeof extra2, "--set train.max_steps=%lld --set checkpoint.every=10", at + 6);
    rc = train(2, run, extra2);
    QT_CHECK(rc == 0 && strstr(out, "resumed from"), "rerun resumes from step %lld and finishes (exit %d)", at, rc);
    if (rc) show_output();
    rc = train(2, ref, extra2);
    QT_CHECK(rc == 0, "straight run of %lld steps (exit %d)", at + 6, rc);
    same_run("killed + resumed vs straight", ref, run, (int)at + 6);
    /* a resume from a checkpoint past the run's length is refused, naming both */
    snprintf(extra2, sizeof extra2, "--set train.max_steps=%lld --set checkpoint.every=10", at + 2);
    rc = train(0, run, extra2);
    QT_CHECK(rc == 1 && strstr(out, "past this run's") && strstr(out, "train.max_steps"),
             "a resume from step %lld with train.max_steps %lld is refused (exit %d)", at + 6, at + 2, rc);
    if (rc != 1) show_output();
    free(latest); free(run); free(log); free(ref);
}

static void case_signal(void) {
    const int S = 120;
    char extra[256];
    /* cosine with warmup: the schedule depends on the total, which stays the same across the stop */
    snprintf(extra, sizeof extra, "--set train.max_steps=%d --set checkpoint.every=50 --set train.schedule=cosine "
             "--set train.warmup_ratio=0.1 --set train.grad_accum=2", S);
    char *ref = wpath("sig_straight");
    int rc = train(2, ref, extra);
    QT_CHECK(rc == 0, "straight run, 2 ranks (exit %d)", rc);
    const char *how[2] = {"SIGUSR1 to mpirun", "SIGTERM to every rank"};
    for (int v = 0; v < 2; v++) {
        char *run = wpath("sig%d", v), *log = wpath("sig%d.log", v);
        pid_t p = spawn_ranks(2, run, extra, log);
        char arg[1024];
        snprintf(arg, sizeof arg, "%d %s/metrics.jsonl", 5, run);
        int seen = wait_until(p, 60, metrics_lines_ge, arg);
        if (seen == 1) {
            if (v == 0) kill(p, SIGUSR1);
            else for (int r = 0; r < 2; r++) kill(rank_pid(run, r), SIGTERM);
        }
        rc = seen == -1 ? -1 : wait_for(p, 60);
        char *lg = slurp(log, NULL);
        long long at = latest_step(run);
        QT_CHECK(seen == 1 && rc == 0 && lg && strstr(lg, "stop requested") && at > 0 && at < S,
                 "%s: checkpoint at step %lld committed, exit %d", how[v], at, rc);
        if (rc && lg) printf("%s\n", lg);
        free(lg);
        rc = train(2, run, extra);
        QT_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: the next run resumes from step %lld (exit %d)", how[v], at, rc);
        same_run(how[v], ref, run, S);
        free(run);
        free(log);
    }
    free(ref);
}

/* ---- bad input: corrupt checkpoints, full disk, bad data ---------------------------------------- */

/* Flip one byte inside the stored values of a LoRA tensor: find the first 32 bytes of `tensor`
 * (its f32 values, as the adapter file of the same step holds them) in the checkpoint file. */
static int flip_in_tensor(const char *ckpt, const char *adapter_file) {
    qa_safetensors a;
    qa_err e = {0};
    if (qa_st_open(&a, adapter_file, &e)) return -1;
    const qa_st_tensor *t = NULL;
    for (size_t i = 0; i < a.n_tensors && !t; i++)
        if (a.tensors[i].numel >= 8 && strstr(a.tensors[i].name, "lora_A")) t = &a.tensors[i];
    size_t n = 0;
    char *b = slurp(ckpt, &n);
    const char *hit = t && b ? memmem(b, n, t->data, 32) : NULL;
    int rc = -1;
    if (hit) {
        b[hit - b + 13] ^= 0x10;
        FILE *f = fopen(ckpt, "wb");
        rc = f && fwrite(b, 1, n, f) == n ? 0 : -1;
        if (f) fclose(f);
    }
    free(b);
    qa_st_close(&a);
    return rc;
}

/* Overwrite the middle third of a file with zeros (a lost block). */
static void zero_middle(const char *path) {
    size_t n = 0;
    char *b = slurp(path, &n);
    if (!b) die(path, NULL);
    memset(b + n / 3, 0, n / 3);
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    free(b);
}

static void case_corrupt(void) {
    char *ref = wpath("corrupt_straight"), *run = wpath("corrupt");
    int rc = train(0, ref, "--set train.max_steps=10 --set checkpoint.every=2 --set checkpoint.keep_last=0");
    QT_CHECK(rc == 0, "straight 10 steps (exit %d)", rc);
    rc = train(0, run, "--set train.max_steps=8 --set checkpoint.every=2 --set checkpoint.keep_last=0");
    QT_CHECK(rc == 0, "8 steps, checkpoints at 2, 4, 6, 8 (exit %d)", rc);
    char *c8 = qa_path_join(run, "checkpoints/step_00000008.h5"), *c6 = qa_path_join(run, "checkpoints/step_00000006.h5");
    char *ad8 = qa_path_join(run, "adapter/adapter_model.safetensors");
    QT_CHECK(flip_in_tensor(c8, ad8) == 0, "flip a bit in a LoRA tensor of step 8");
    free(ad8);
    struct stat sb6;
    QT_CHECK(stat(c6, &sb6) == 0 && truncate(c6, sb6.st_size / 2) == 0, "truncate step 6 to half");
    rc = train(0, run, "--set train.max_steps=10 --set checkpoint.every=2 --set checkpoint.keep_last=0");
    const char *f1 = strstr(out, "step_00000008.h5 is corrupt"), *f2 = strstr(out, "step_00000006.h5 is corrupt");
    QT_CHECK(rc == 0 && f1 && f2 && strstr(out, "falling back") && strstr(out, "step 4, epoch"),
             "a bit flipped in step 8 and step 6 truncated: the warnings say so, falling back, resumed from step 4 (exit %d)", rc);
    if (rc || !f1 || !f2) show_output();
    else printf("  %.*s\n", (int)strcspn(f1, "\n"), f1);
    same_run("resumed from the fallback vs straight", ref, run, 10);

    /* every checkpoint corrupt: nothing to resume from is an error, not a silent fresh start */
    char *ck = qa_path_join(run, "checkpoints");
    DIR *d = opendir(ck);
    struct dirent *de;
    int nc = 0;
    while (d && (de = readdir(d))) {
        if (!strstr(de->d_name, ".h5")) continue;
        char *p = qa_path_join(ck, de->d_name);
        if (nc++ % 2) zero_middle(p);
        else {
            struct stat sb;
            if (stat(p, &sb) == 0 && truncate(p, sb.st_size - 4096)) {}
        }
        free(p);
    }
    if (d) closedir(d);
    rc = train(0, run, "--set train.max_steps=12 --set checkpoint.every=2 --set checkpoint.keep_last=0");
    QT_CHECK(rc == 1 && strstr(out, "corrupt") && strstr(out, "step_00000010.h5"), "all %d checkpoints corrupt: exit 1 "
             "naming them (exit %d)", nc, rc);
    if (rc != 1) show_output();
    else {
        const char *m = strstr(out, "error");
        printf("  %.*s\n", m ? (int)strcspn(m, "\n") : 0, m ? m : "");
    }
    free(ck); free(c8); free(c6); free(ref); free(run);
}

static void case_diskfull(void) {
    /* RLIMIT_FSIZE on the running trainer once its first checkpoint is committed (prlimit: set before
     * the start it would also fail MPI_Init's shared-memory files), SIGXFSZ ignored: the next
     * checkpoint's write() fails with EFBIG, as on a full disk */
    char *run = wpath("full"), *ref = wpath("full_straight"), *log = wpath("full.log");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train --config %s --set checkpoint.dir=%s --set train.max_steps=100000 "
             "--set checkpoint.every=40", bin, base_yaml, run);
    qa_mkdir_p(run, NULL);
    pid_t p = spawn(cmd, log, -1);
    char *latest = qa_path_join(run, "checkpoints/latest"), *c40 = qa_path_join(run, "checkpoints/step_00000040.h5");
    int seen = wait_until(p, 60, file_exists, latest);
    struct stat sb;
    long limit = 0;
    if (seen == 1 && stat(c40, &sb) == 0) {
        limit = (long)sb.st_size / 2;
        struct rlimit rl = {(rlim_t)limit, (rlim_t)limit};
        QT_CHECK(prlimit(p, RLIMIT_FSIZE, &rl, NULL) == 0, "prlimit RLIMIT_FSIZE %ld on the trainer: %s", limit,
                 strerror(errno));
    }
    QT_CHECK(seen == 1 && limit > 0, "first checkpoint committed (step_00000040.h5)");
    int rc = seen == -1 ? -1 : wait_for(p, 120);
    char *lg = slurp(log, NULL);
    long long at = latest_step(run);
    const char *msg = lg ? strstr(lg, "error") : NULL;
    QT_CHECK(rc == 1 && msg && strstr(msg, "checkpoint") && (strstr(msg, "too large") || strstr(msg, "space")),
             "file size limit %ld bytes (a checkpoint has %lld): exit 1 with the reason (exit %d)", limit,
             (long long)sb.st_size, rc);
    if (msg) printf("  %.*s\n", (int)strcspn(msg, "\n"), msg);
    else if (lg) printf("%s\n", lg);
    QT_CHECK(at >= 40 && at % 40 == 0, "the previous checkpoint (step %lld) is still the newest", at);
    QT_CHECK(count_tmp(run) == 0, "no temporary checkpoint left behind");
    rc = sh("%s ckpt-info --brief %s", bin, run);
    QT_CHECK(rc == 0, "it verifies (qalign ckpt-info exit %d)", rc);
    char extra[256];
    snprintf(extra, sizeof extra, "--set train.max_steps=%lld --set checkpoint.every=40", at + 5);
    rc = train(0, run, extra);
    QT_CHECK(rc == 0 && strstr(out, "resumed from"), "with space again the rerun resumes from step %lld (exit %d)", at, rc);
    rc = train(0, ref, extra);
    QT_CHECK(rc == 0, "straight run (exit %d)", rc);
    same_run("disk full, resumed vs straight", ref, run, (int)at + 5);
    free(lg); free(log); free(latest); free(c40); free(run); free(ref);
}

static void case_baddata(void) {
    int vocab;
    char *model = first_model(&vocab);
    struct {
        const char *name, *json, *needle;
    } cases[] = {
        {"labels_shifted", "[{\"input_ids\": [1,2,3,4], \"labels\": [-100,-100,3,4]},\n {\"input_ids\": [1,2,3], \"labels\": [-100,3,4]}]",
         "record 1: labels[1] = 3 but input_ids[1] = 2"},
        {"label_hole", "[{\"input_ids\": [1,2,3,4], \"labels\": [-100,2,-100,4]}]", "record 0: labels[2] = -100 but input_ids[2] = 3"},
        {"length", "[{\"input_ids\": [1,2,3,4], \"labels\": [-100,2,3]}]", "record 0: \"labels\" has 3 entries but \"input_ids\" has 4"},
        {"no_labels", "[{\"input_ids\": [1,2,3,4]}]", "record 0 has \"input_ids\" but no \"labels\""},
        {"negative", "[{\"input_ids\": [1,-2,3], \"labels\": [-100,-100,3]}]", "record 0: input_ids[1] is out of range"},
        {"not_int", "[{\"input_ids\": [1,2.5,3], \"labels\": [-100,-100,3]}]", "record 0: input_ids[1] is a number"},
        {"empty", "[{\"input_ids\": [], \"labels\": []}]", "record 0: \"input_ids\" is empty"},
        {"mixed", "[{\"input_ids\": [1,2], \"labels\": [-100,2]}, {\"input\": \"a\", \"answer\": \"b\"}]",
         "record 1 is text (no \"input_ids\") but record 0 is pre-tokenized"},
        {"text_no_template", "[{\"input\": \"a\", \"answer\": \"b\"}]", "record 0: a text record (\"input\"/\"answer\") needs a template"},
        {"vocab", NULL, "record 1: input_ids[2] = "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *f = wpath("bad_%s.json", cases[i].name);
        if (cases[i].json) put(f, cases[i].json);
        else {
            char j[512];
            snprintf(j, sizeof j, "[{\"input_ids\": [1,2,3], \"labels\": [-100,2,3]},\n {\"input_ids\": [1,2,%d,4], "
                     "\"labels\": [-100,-100,%d,4]}]", vocab, vocab);
            put(f, j);
        }
        for (int dry = 0; dry < 2; dry++) {
            char *run = wpath("bad_%s_run", cases[i].name);
            /* the dry run starts no MPI: leak checking stays on there under a sanitizer build */
            int rc = sh("%s%s train --config %s --set data.files=%s --set checkpoint.dir=%s --set train.max_steps=1%s",
                        dry ? "env ASAN_OPTIONS=detect_leaks=1 " : "", bin, base_yaml, f, run, dry ? " --dry-run" : "");
            const char *hit = strstr(out, cases[i].needle);
            QT_CHECK(rc == 1 && hit && strstr(out, f), "%s%s: exit 1 naming the file and \"%s\" (exit %d)", cases[i].name,
                     dry ? " (dry run)" : "", cases[i].needle, rc);
            no_sanitizer_report(out);
            if (rc != 1 || !hit) show_output();
            else if (dry) {
                const char *m = strstr(out, "error");
                printf("  %.*s\n", m ? (int)strcspn(m, "\n") : 0, m ? m : "");
            }
            free(run);
        }
        free(f);
    }
    free(model);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_train_run golden|adapter|validation|resume|packing|ranks|kill RANK|signal|corrupt|diskfull|baddata\n");
        return 2;
    }
    bin = qt_env_or("QALIGN_BIN", "qalign");
    mpirun = qt_env_or("QA_MPIRUN", "mpirun --allow-run-as-root --oversubscribe -n");
    const char *tmp = qt_env_or("TMPDIR", "/tmp");
    snprintf(work, sizeof work, "%s/qa_train_run_%s.XXXXXX", tmp, argv[1]);
    if (!mkdtemp(work)) { perror("mkdtemp"); return 1; }
    int vocab;
    char *model = first_model(&vocab);
    char *data = wpath("random.json");
    write_random_data(data, 48, vocab, 5);
    write_base(model, data);
    double t0 = now_s();
    const char *c = argv[1];
    if (!strcmp(c, "golden")) case_golden();
    else if (!strcmp(c, "adapter")) case_adapter();
    else if (!strcmp(c, "validation")) case_validation();
    else if (!strcmp(c, "resume")) case_resume();
    else if (!strcmp(c, "packing")) case_packing();
    else if (!strcmp(c, "ranks")) case_ranks();
    else if (!strcmp(c, "kill")) case_kill(argc > 2 ? atoi(argv[2]) : 1);
    else if (!strcmp(c, "signal")) case_signal();
    else if (!strcmp(c, "corrupt")) case_corrupt();
    else if (!strcmp(c, "diskfull")) case_diskfull();
    else if (!strcmp(c, "baddata")) case_baddata();
    else { fprintf(stderr, "unknown case '%s'\n", c); return 2; }
    printf("%s: %.1f s in %s\n", c, now_s() - t0, work);
    int rc = qt_finish();
    if (!rc && !getenv("QA_KEEP")) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
        if (system(cmd)) {}
    }
    free(model);
    free(data);
    free(base_yaml);
    return rc;
}
