/* an_util.c — lists and dump selections shared by lens.c and pca.c. */
#include "analysis/an_internal.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char **qa_an_split(const char *s, int *n) {
    *n = 0;
    char **v = NULL;
    const char *p = s;
    while (p && *p) {
        while (*p == ',' || *p == ' ') p++;
        if (!*p) break;
        size_t k = strcspn(p, ",");
        size_t m = k;
        while (m > 0 && p[m - 1] == ' ') m--;
        v = qa_realloc(v, sizeof(char *) * (size_t)(*n + 1));
        v[*n] = qa_malloc(m + 1);
        memcpy(v[*n], p, m);
        v[*n][m] = 0;
        (*n)++;
        p += k;
    }
    return v;
}

void qa_an_free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

int qa_an_pick_task(const qa_actdump *d, const char *want, const char **out, qa_err *e) {
    *out = NULL;
    if (want) {
        for (int64_t i = 0; i < d->n; i++)
            if (!strcmp(d->task[i], want)) {
                *out = d->task[i];
                return 0;
            }
        return QA_ERR(e, "activation dump %s holds no item of task '%s'", d->path, want);
    }
    for (int64_t i = 0; i < d->n; i++) {
        if (!*out) *out = d->task[i];
        else if (strcmp(*out, d->task[i]))
            return QA_ERR(e, "activation dump %s holds several tasks (%s, %s, ...): choose one with --task", d->path,
                          *out, d->task[i]);
    }
    if (!*out) return QA_ERR(e, "activation dump %s holds no items", d->path);
    return 0;
}

int qa_an_pick_langs(const qa_actdump *d, const char *task, const char *want, char ***out, int *n, qa_err *e) {
    char **have = NULL;
    int nh = 0;
    for (int64_t i = 0; i < d->n; i++) {
        if (strcmp(d->task[i], task)) continue;
        int seen = 0;
        for (int k = 0; k < nh && !seen; k++) seen = !strcmp(have[k], d->lang[i]);
        if (seen) continue;
        have = qa_realloc(have, sizeof(char *) * (size_t)(nh + 1));
        have[nh++] = qa_strdup(d->lang[i]);
    }
    if (!want) {
        *out = have;
        *n = nh;
        return 0;
    }
    int nw = 0;
    char **w = qa_an_split(want, &nw);
    for (int j = 0; j < nw; j++) {
        int ok = 0;
        for (int k = 0; k < nh && !ok; k++) ok = !strcmp(have[k], w[j]);
        if (!ok) {
            qa_sbuf b = {0};
            for (int k = 0; k < nh; k++) qa_sb_printf(&b, "%s%s", k ? "," : "", have[k]);
            QA_ERR(e, "activation dump %s has no item of task '%s' in language '%s' (languages: %s)", d->path, task,
                   w[j], b.p ? b.p : "none");
            qa_sb_free(&b);
            qa_an_free_list(w, nw);
            qa_an_free_list(have, nh);
            return -1;
        }
    }
    qa_an_free_list(have, nh);
    if (nw == 0) {
        qa_an_free_list(w, nw);
        return QA_ERR(e, "no language selected");
    }
    *out = w;
    *n = nw;
    return 0;
}

void qa_an_basename(const char *path, char *buf, size_t cap) {
    if (!cap) return;
    buf[0] = 0;
    if (!path || !*path) return;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    size_t k = n - s < cap - 1 ? n - s : cap - 1;
    memcpy(buf, path + s, k);
    buf[k] = 0;
}

