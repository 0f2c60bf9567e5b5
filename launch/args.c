/* args.c — see args.h. */
#include "launch/args.h"
#include "common/qa_mem.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* strtoll over the whole of [s, s+n): no sign-less junk, no spaces, no overflow */
static int int_of(const char *s, size_t n, long long *out) {
    if (!n || n > 40) return -1;
    char buf[48];
    memcpy(buf, s, n);
    buf[n] = 0;
    const char *p = buf;
    if (*p == '+' || *p == '-') p++;
    if (*p < '0' || *p > '9') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

int qa_arg_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out) {
    long long v;
    if (int_of(s, strlen(s), &v) || v < lo || v > hi) {
        fprintf(stderr, "qalign %s: %s needs an integer in [%lld, %lld], got '%s'\n", cmd, opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int qa_arg_num(const char *cmd, const char *opt, const char *s, double lo, double hi, int lo_open, double *out) {
    char *end;
    errno = 0;
    double v = *s ? strtod(s, &end) : NAN;
    if (!*s || *end || !isfinite(v) || v < lo || v > hi || (lo_open && v == lo)) {
        fprintf(stderr, "qalign %s: %s needs a finite number in %c%g, %g], got '%s'\n", cmd, opt, lo_open ? '(' : '[',
                lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int qa_arg_int_list(const char *cmd, const char *opt, const char *s, long long lo, long long hi, int32_t **v,
                    int *n) {
    int cap = 16, k = 0;
    int32_t *a = qa_malloc(sizeof *a * (size_t)cap);
    const char *p = s;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        while (len && *p == ' ') { p++; len--; }
        while (len && p[len - 1] == ' ') len--;
        long long x;
        if (int_of(p, len, &x) || x < lo || x > hi) {
            fprintf(stderr, "qalign %s: %s needs a comma-separated list of integers in [%lld, %lld], got '%s'%s\n", cmd,
                    opt, lo, hi, s, len ? "" : " (an empty item)");
            free(a);
            return -1;
        }
        if (k == cap) a = qa_realloc(a, sizeof *a * (size_t)(cap *= 2));
        a[k++] = (int32_t)x;
        if (!c) break;
        p = c + 1;
    }
    *v = a;
    *n = k;
    return 0;
}
