#include "testutil.h"
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

int qt_passed, qt_failed;

void qt_record(int ok, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (ok) {
        qt_passed++;
        if (getenv("QT_VERBOSE")) { printf("  ok   "); vprintf(fmt, ap); printf("\n"); }
    } else {
        qt_failed++;
        printf("  FAIL %s:%d: ", file, line);
        vprintf(fmt, ap);
        printf("\n");
    }
    va_end(ap);
    fflush(stdout);
}

int qt_finish(void) {
    printf("%d passed, %d failed\n", qt_passed, qt_failed);
    return qt_failed ? 1 : (qt_passed ? 0 : 1);
}

double qt_rel_err_f32(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}
double qt_rel_err_f32_f64(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; num += d * d; den += b[i] * b[i]; }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}
const char *qt_env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}
const char *qt_fixtures_root(void) {
    return qt_env_or("QALIGN_FIXTURES", qt_env_or("QALIGN_FIXTURES_DEFAULT", QT_FIXTURES_FALLBACK));
}
int qt_run(const char *cmd, char *buf, size_t buflen) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    if (buf && buflen) {
        size_t r;
        while ((r = fread(buf + n, 1, buflen - 1 - n, p)) > 0) { n += r; if (n >= buflen - 1) break; }
        buf[n] = 0;
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0) {}
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int cmpstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int qt_list_dir(const char *dir, char ***out, int (*keep)(const char *dir, const char *name)) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 16;
    char **v = malloc(sizeof(char *) * cap);
    struct dirent *de;
    while (v && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !keep(dir, de->d_name)) continue;
        if (n == cap) v = realloc(v, sizeof(char *) * (cap *= 2));
        if (v) v[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (!v) { fprintf(stderr, "qt_list_dir: out of memory\n"); exit(1); }
    qsort(v, n, sizeof *v, cmpstr);
    *out = v;
    return n;
}

static int has_model(const char *root, const char *name) {
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s/model/config.json", root, name);
    return stat(p, &st) == 0;
}

int qt_first_fixture(const char *root, char *out, size_t n) {
    char **names;
    int k = qt_list_dir(root, &names, has_model);
    if (k > 0) snprintf(out, n, "%s/%s/model", root, names[0]);
    for (int i = 0; i < k; i++) free(names[i]);
    free(names);
    return k > 0 ? 0 : -1;
}

float qt_frand(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

float *qt_rvec(uint64_t *state, size_t n, float s) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    if (!v) { fprintf(stderr, "qt_rvec: out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) v[i] = s * qt_frand(state);
    return v;
}

float *qt_fcopy(const float *x, size_t n) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    if (!v) { fprintf(stderr, "qt_fcopy: out of memory\n"); exit(1); }
    memcpy(v, x, n * sizeof(float));
    return v;
}
