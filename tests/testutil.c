#include "testutil.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
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
