/* hf_json.c — Python-compatible JSON layout for the Hugging Face side files. */
#include "io/hf_json.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qa_py_float_repr(double x, char *buf, size_t n) {
    if (isnan(x)) { snprintf(buf, n, "NaN"); return; }
    if (isinf(x)) { snprintf(buf, n, x < 0 ? "-Infinity" : "Infinity"); return; }
    if (x == 0) { snprintf(buf, n, signbit(x) ? "-0.0" : "0.0"); return; }
    char tmp[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX : collect the digits and the exponent */
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') { neg = 1; p++; }
    char dig[32];
    int nd = 0;
    for (; *p && *p != 'e'; p++) if (*p >= '0' && *p <= '9') dig[nd++] = *p;
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = 0;
    int ex = atoi(p + 1), decpt = ex + 1;
    size_t k = 0;
    if (neg) buf[k++] = '-';
    if (decpt <= -4 || decpt > 16) {
        k += (size_t)snprintf(buf + k, n - k, "%c", dig[0]);
        if (nd > 1) k += (size_t)snprintf(buf + k, n - k, ".%s", dig + 1);
        snprintf(buf + k, n - k, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    } else if (decpt <= 0) {
        k += (size_t)snprintf(buf + k, n - k, "0.");
        for (int i = 0; i < -decpt; i++) buf[k++] = '0';
        snprintf(buf + k, n - k, "%s", dig);
    } else if (decpt >= nd) {
        k += (size_t)snprintf(buf + k, n - k, "%s", dig);
        for (int i = nd; i < decpt; i++) buf[k++] = '0';
        snprintf(buf + k, n - k, ".0");
    } else {
        snprintf(buf + k, n - k, "%.*s.%s", decpt, dig, dig + decpt);
    }
}

char *qa_json_dumps_py(const json_t *o) {
    /* jansson with 17 significant digits round-trips every double; rewrite each real in Python repr */
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY);
    if (!s) return NULL;
    size_t n = strlen(s), cap = n * 2 + 64, k = 0;
    char *out = qa_malloc(cap);
    int in_str = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (in_str) {
            out[k++] = c;
            if (c == '\\' && i + 1 < n) { out[k++] = s[i + 1]; i += 2; continue; }
            if (c == '"') in_str = 0;
            i++;
            continue;
        }
        if (c == '"') { in_str = 1; out[k++] = c; i++; continue; }
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            int real = 0;
            while (j < n && strchr("+-0123456789.eE", s[j])) { if (s[j] == '.' || s[j] == 'e' || s[j] == 'E') real = 1; j++; }
            if (real) {
                char num[64], rep[64];
                size_t l = j - i < sizeof num - 1 ? j - i : sizeof num - 1;
                memcpy(num, s + i, l);
                num[l] = 0;
                qa_py_float_repr(strtod(num, NULL), rep, sizeof rep);
                size_t rl = strlen(rep);
                if (k + rl + 2 > cap) { cap = (k + rl) * 2 + 64; out = qa_realloc(out, cap); }
                memcpy(out + k, rep, rl);
                k += rl;
            } else {
                if (k + (j - i) + 2 > cap) { cap = (k + j - i) * 2 + 64; out = qa_realloc(out, cap); }
                memcpy(out + k, s + i, j - i);
                k += j - i;
            }
            i = j;
            continue;
        }
        if (k + 4 > cap) { cap = cap * 2; out = qa_realloc(out, cap); }
        out[k++] = c;
        i++;
    }
    if (k + 2 > cap) out = qa_realloc(out, k + 2);
    out[k++] = '\n';
    out[k] = 0;
    free(s);
    return out;
}

int qa_json_write_py(const char *path, const json_t *o, qa_err *e) {
    char *s = qa_json_dumps_py(o);
    if (!s) return QA_ERR(e, "%s: cannot serialize JSON", path);
    int rc = qa_write_file_atomic(path, s, strlen(s), e);
    free(s);
    return rc;
}
