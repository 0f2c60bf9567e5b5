/* pca.c — PCA of per-layer representations and the Pearson correlation of PC1 scores between
 * index-paired items of language pairs (paper-protocol.md §9), from an activation dump. */
#include "analysis/an_internal.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_rng.h"
#include "io/h5util.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qa_pca_opts_default(qa_pca_opts *o) {
    memset(o, 0, sizeof *o);
    o->pool = "mean";
    o->bucket_size = 100;
    o->png = 1;
    o->svg = 1;
}

/* ---- the fit ------------------------------------------------------------------------------------ */
/* eigen-decomposition of a symmetric b x b matrix A (row-major, destroyed): values w [b] descending,
 * vectors as columns of V [b, b] (cyclic Jacobi, to machine precision) */
static void jacobi_eig(double *A, int b, double *w, double *V) {
    for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++) V[i * b + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < b; i++) {
            diag += A[i * b + i] * A[i * b + i];
            for (int j = i + 1; j < b; j++) off += A[i * b + j] * A[i * b + j];
        }
        if (off <= 1e-30 * (diag > 0 ? diag : 1)) break;
        for (int p = 0; p < b; p++)
            for (int q = p + 1; q < b; q++) {
                double apq = A[p * b + q];
                if (apq == 0) continue;
                double theta = (A[q * b + q] - A[p * b + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < b; k++) { /* columns p, q */
                    double akp = A[k * b + p], akq = A[k * b + q];
                    A[k * b + p] = c * akp - s * akq;
                    A[k * b + q] = s * akp + c * akq;
                }
                for (int k = 0; k < b; k++) { /* rows p, q */
                    double apk = A[p * b + k], aqk = A[q * b + k];
                    A[p * b + k] = c * apk - s * aqk;
                    A[q * b + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < b; k++) {
                    double vkp = V[k * b + p], vkq = V[k * b + q];
                    V[k * b + p] = c * vkp - s * vkq;
                    V[k * b + q] = s * vkp + c * vkq;
                }
            }
    }
    /* sort descending */
    for (int i = 0; i < b; i++) w[i] = A[i * b + i];
    for (int i = 0; i < b; i++) {
        int best = i;
        for (int j = i + 1; j < b; j++) if (w[j] > w[best]) best = j;
        if (best != i) {
            double t = w[i];
            w[i] = w[best];
            w[best] = t;
            for (int k = 0; k < b; k++) {
                t = V[k * b + i];
                V[k * b + i] = V[k * b + best];
                V[k * b + best] = t;
            }
        }
    }
}

/* orthonormalize the b columns of Q [D, b] (row-major), modified Gram-Schmidt twice; a column that
 * vanishes is replaced by a deterministic pseudo-random one */
static void orthonormalize(double *Q, int D, int b, uint64_t *seed) {
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < b; j++) {
            for (int tries = 0; tries < 4; tries++) {
                for (int i = 0; i < j; i++) {
                    double d = 0;
                    for (int k = 0; k < D; k++) d += Q[(size_t)k * b + i] * Q[(size_t)k * b + j];
                    for (int k = 0; k < D; k++) Q[(size_t)k * b + j] -= d * Q[(size_t)k * b + i];
                }
                double nn = 0;
                for (int k = 0; k < D; k++) nn += Q[(size_t)k * b + j] * Q[(size_t)k * b + j];
                if (nn > 1e-200) {
                    double inv = 1 / sqrt(nn);
                    for (int k = 0; k < D; k++) Q[(size_t)k * b + j] *= inv;
                    break;
                }
                for (int k = 0; k < D; k++)
                    Q[(size_t)k * b + j] = (double)(qa_splitmix64(seed) >> 11) / 9007199254740992.0 - 0.5;
            }
        }
}

int qa_pca_fit(const float *X, int n, int D, int k, double *scores, double *comp, double *var, double *total,
               int *iters, qa_err *e) {
    if (n < 2 || D < 1 || k < 1) return QA_ERR(e, "PCA: needs at least 2 samples and 1 component (n %d, D %d, k %d)", n, D, k);
    const int kk = k < D ? k : D;
    int b = kk + 8;
    if (b > D) b = D;
    double *Xc = qa_malloc(sizeof(double) * (size_t)n * D), *mu = qa_calloc((size_t)D, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) mu[j] += X[(size_t)i * D + j];
    for (int j = 0; j < D; j++) mu[j] /= n;
    double tot = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) {
            double v = X[(size_t)i * D + j] - mu[j];
            Xc[(size_t)i * D + j] = v;
            tot += v * v;
        }
    double *Q = qa_malloc(sizeof(double) * (size_t)D * b), *Y = qa_malloc(sizeof(double) * (size_t)n * b),
           *Z = qa_malloc(sizeof(double) * (size_t)D * b), *H = qa_malloc(sizeof(double) * (size_t)b * b),
           *W = qa_malloc(sizeof(double) * (size_t)b * b), *w = qa_malloc(sizeof(double) * (size_t)b),
           *T = qa_malloc(sizeof(double) * (size_t)(n > D ? n : D) * b);
    uint64_t seed = 0x5eed5eedull;
    for (size_t i = 0; i < (size_t)D * b; i++) Q[i] = 0;
    orthonormalize(Q, D, b, &seed); /* all columns vanish: random start */
    int it = 0;
    const int max_it = b >= D ? 1 : 3000;
    for (;;) {
        /* Rayleigh-Ritz on span(Q): H = (Xc Q)ᵀ (Xc Q) */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, b, D, 1.0, Xc, D, Q, b, 0.0, Y, b);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, b, b, n, 1.0, Y, b, Y, b, 0.0, H, b);
        jacobi_eig(H, b, w, W);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, b, b, 1.0, Q, b, W, b, 0.0, T, b);
        memcpy(Q, T, sizeof(double) * (size_t)D * b);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, b, b, 1.0, Y, b, W, b, 0.0, T, b);
        memcpy(Y, T, sizeof(double) * (size_t)n * b);
        it++;
        /* Z = Xcᵀ Y = C Q; residuals of the wanted Ritz pairs */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, b, n, 1.0, Xc, D, Y, b, 0.0, Z, b);
        double worst = 0, scale = w[0] > 0 ? w[0] : 1;
        for (int j = 0; j < kk; j++) {
            double r = 0;
            for (int i = 0; i < D; i++) {
                double d = Z[(size_t)i * b + j] - w[j] * Q[(size_t)i * b + j];
                r += d * d;
            }
            r = sqrt(r) / scale;
            if (r > worst) worst = r;
        }
        if (worst <= 1e-12 || it >= max_it) break;
        memcpy(Q, Z, sizeof(double) * (size_t)D * b);
        orthonormalize(Q, D, b, &seed);
    }
    for (int j = 0; j < k; j++) {
        const int ok = j < kk && w[j] > 1e-12 * (w[0] > 0 ? w[0] : 1) && w[j] > 0;
        /* sign: the largest-magnitude score positive */
        double big = 0;
        for (int i = 0; i < n && ok; i++)
            if (fabs(Y[(size_t)i * b + j]) > fabs(big)) big = Y[(size_t)i * b + j];
        const double sg = big < 0 ? -1 : 1;
        for (int i = 0; i < n; i++) scores[(size_t)i * k + j] = ok ? sg * Y[(size_t)i * b + j] : 0;
        for (int i = 0; i < D; i++) comp[(size_t)j * D + i] = ok ? sg * Q[(size_t)i * b + j] : 0;
        var[j] = ok ? w[j] / (n - 1) : 0;
    }
    *total = tot / (n - 1);
    if (iters) *iters = it;
    free(Xc);
    free(mu);
    free(Q);
    free(Y);
    free(Z);
    free(H);
    free(W);
    free(w);
    free(T);
    return 0;
}

double qa_pearson(const double *a, const double *b, int n) {
    if (n < 2) return NAN;
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) { ma += a[i]; mb += b[i]; }
    ma /= n;
    mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    if (saa <= 0 || sbb <= 0) return NAN;
    return sab / sqrt(saa * sbb);
}

/* ---- the run ------------------------------------------------------------------------------------ */
static const char *PAPER_PAIRS[][2] = {{"en", "de"}, {"en", "fr"}, {"en", "hi"}, {"de", "fr"}, {"de", "hi"},
                                       {"fr", "hi"}, {"en", "th"}, {"en", "sw"}, {"en", "ms"}};

static int lang_index(char **langs, int nl, const char *l) {
    for (int i = 0; i < nl; i++) if (!strcmp(langs[i], l)) return i;
    return -1;
}

/* parse a layer list ("all" or "0,12,24") into sorted unique layers within [0, L] */
static int parse_layers(const char *s, int L, int **out, int *n, const char *opt, qa_err *e) {
    *out = qa_calloc((size_t)L + 1, sizeof(int));
    *n = 0;
    if (!s || !strcmp(s, "all")) {
        for (int l = 0; l <= L; l++) (*out)[(*n)++] = l;
        return 0;
    }
    int nw = 0;
    char **w = qa_an_split(s, &nw);
    char *mark = qa_calloc((size_t)L + 1, 1);
    int rc = 0;
    for (int i = 0; i < nw && !rc; i++) {
        char *end;
        long v = strtol(w[i], &end, 10);
        if (*end || end == w[i] || v < 0 || v > L)
            rc = QA_ERR(e, "%s: '%s' is no layer of 0..%d (0 = embeddings, %d = after the final norm)", opt, w[i], L, L);
        else mark[v] = 1;
    }
    for (int l = 0; l <= L; l++) if (mark[l]) (*out)[(*n)++] = l;
    if (!rc && *n == 0) rc = QA_ERR(e, "%s: no layer given", opt);
    free(mark);
    qa_an_free_list(w, nw);
    return rc;
}

/* index-paired items of languages a and b: positions ia[m], ib[m] into the rows (sorted merge on the
 * record index); returns m */
typedef struct key_pos {
    int64_t key;
    int pos;
} key_pos;
static int cmp_key(const void *x, const void *y) {
    const key_pos *a = x, *b = y;
    if (a->key != b->key) return (a->key > b->key) - (a->key < b->key);
    return (a->pos > b->pos) - (a->pos < b->pos);
}
static int match_pairs(const int *grp, const int64_t *key, int n, int a, int b, int *ia, int *ib) {
    key_pos *A = qa_malloc(sizeof *A * (size_t)n), *B = qa_malloc(sizeof *B * (size_t)n);
    int na = 0, nb = 0, m = 0;
    for (int i = 0; i < n; i++) {
        if (grp[i] == a) A[na++] = (key_pos){key[i], i};
        if (grp[i] == b) B[nb++] = (key_pos){key[i], i};
    }
    qsort(A, na, sizeof *A, cmp_key);
    qsort(B, nb, sizeof *B, cmp_key);
    for (int i = 0, j = 0; i < na && j < nb;) {
        if (A[i].key == B[j].key) {
            ia[m] = A[i].pos;
            ib[m++] = B[j].pos;
            /* one partner per item: skip duplicates of the key on both sides */
            int64_t k = A[i].key;
            while (i < na && A[i].key == k) i++;
            while (j < nb && B[j].key == k) j++;
        } else if (A[i].key < B[j].key) i++;
        else j++;
    }
    free(A);
    free(B);
    return m;
}

/* Pearson of PC1 (column 0 of scores [n, 2]) over matched positions */
static double pc1_pearson(const double *scores, const int *ia, const int *ib, int m, double *pa, double *pb) {
    for (int i = 0; i < m; i++) {
        pa[i] = scores[(size_t)ia[i] * 2];
        pb[i] = scores[(size_t)ib[i] * 2];
    }
    return qa_pearson(pa, pb, m);
}

typedef struct layer_res {
    int layer, iters;
    double *scores;          /* [n, 2] */
    double *comp;            /* [2, D] */
    double var[2], total;
    double *r;               /* [n_pairs] */
    int *rn;                 /* [n_pairs] paired items */
} layer_res;

static int write_pca_h5(const qa_pca_opts *o, const qa_actdump *d, const char *task, char **langs, int nl,
                        const int64_t *rows, const int *grp, int n, const layer_res *R, int nr, int (*pairs)[2],
                        int npairs, qa_err *e) {
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    qa_h5_mem mem;
    int rc = -1;
    void *buf = NULL;
    size_t len = 0;
    hid_t f = qa_h5_create_mem_file("pca.h5", 0, &mem, e);
    if (f < 0) goto out;
    const int D = d->hidden;
    char **pn = qa_calloc((size_t)(npairs ? npairs : 1), sizeof(char *));
    for (int p = 0; p < npairs; p++) {
        size_t k = strlen(langs[pairs[p][0]]) + strlen(langs[pairs[p][1]]) + 2;
        pn[p] = qa_malloc(k);
        snprintf(pn[p], k, "%s-%s", langs[pairs[p][0]], langs[pairs[p][1]]);
    }
    int bad = qa_h5_attr_str(f, "format", "qalign-pca", e) || qa_h5_attr_str(f, "dump", d->path, e) ||
              qa_h5_attr_str(f, "model", d->model, e) || qa_h5_attr_str(f, "adapter", d->adapter, e) ||
              qa_h5_attr_str(f, "task", task, e) || qa_h5_attr_str(f, "pool", o->pool, e) ||
              qa_h5_attr_strs(f, "languages", (const char *const *)langs, (size_t)nl, e) ||
              qa_h5_attr_strs(f, "pairs", (const char *const *)pn, (size_t)npairs, e) ||
              qa_h5_attr_str(f, "fit", "PCA of the mean-centred rows of every selected language together (no "
                                       "whitening); scores = centred rows x components; sign: largest |score| "
                                       "positive; variance with ddof 1", e);
    qa_h5_dset_opts op = {0, 4, 1};
    int64_t sh1[1] = {n};
    int64_t *tmp = qa_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n && !bad; i++) tmp[i] = rows[i];
    bad = bad || qa_h5_write(f, "items/row", QA_H5_I64, 1, sh1, tmp, &op, NULL, e);
    for (int i = 0; i < n; i++) tmp[i] = d->index[rows[i]];
    bad = bad || qa_h5_write(f, "items/index", QA_H5_I64, 1, sh1, tmp, &op, NULL, e);
    for (int i = 0; i < n; i++) tmp[i] = grp[i];
    bad = bad || qa_h5_write(f, "items/lang_id", QA_H5_I64, 1, sh1, tmp, &op, NULL, e);
    free(tmp);
    int64_t *layers = qa_malloc(sizeof(int64_t) * (size_t)nr);
    double *rr = qa_malloc(sizeof(double) * (size_t)nr * (npairs ? npairs : 1));
    for (int j = 0; j < nr && !bad; j++) {
        char name[64];
        snprintf(name, sizeof name, d->n_layers >= 100 ? "layer_%03d" : "layer_%02d", R[j].layer);
        hid_t g = qa_h5_create_group(f, name, e);
        if (g < 0) { bad = 1; break; }
        int64_t s2[2] = {n, 2}, c2[2] = {2, D};
        double ratio[2] = {R[j].total > 0 ? R[j].var[0] / R[j].total : 0, R[j].total > 0 ? R[j].var[1] / R[j].total : 0};
        bad = qa_h5_write(g, "scores", QA_H5_F64, 2, s2, R[j].scores, &op, NULL, e) ||
              qa_h5_write(g, "components", QA_H5_F64, 2, c2, R[j].comp, &op, NULL, e) ||
              qa_h5_attr_i64(g, "layer", R[j].layer, e) || qa_h5_attr_f64(g, "explained_variance_1", R[j].var[0], e) ||
              qa_h5_attr_f64(g, "explained_variance_2", R[j].var[1], e) ||
              qa_h5_attr_f64(g, "explained_variance_ratio_1", ratio[0], e) ||
              qa_h5_attr_f64(g, "explained_variance_ratio_2", ratio[1], e) ||
              qa_h5_attr_f64(g, "total_variance", R[j].total, e) || qa_h5_attr_i64(g, "iterations", R[j].iters, e);
        qa_h5_close(&g);
        layers[j] = R[j].layer;
        for (int p = 0; p < npairs; p++) rr[(size_t)j * npairs + p] = R[j].r[p];
    }
    int64_t shl[1] = {nr}, shr[2] = {nr, npairs};
    bad = bad || qa_h5_write(f, "pearson/layers", QA_H5_I64, 1, shl, layers, &op, NULL, e) ||
          qa_h5_write(f, "pearson/r", QA_H5_F64, 2, shr, rr, &op, NULL, e);
    free(layers);
    free(rr);
    for (int p = 0; p < npairs; p++) free(pn[p]);
    free(pn);
    if (bad) goto out;
    if (qa_h5_mem_close(&f, &mem, "pca.h5", &buf, &len, e)) goto out;
    char *path = qa_path_join(o->out_dir, "pca.h5");
    rc = qa_write_file_atomic(path, buf, len, e);
    free(path);
out:
    free(buf);
    qa_h5_close(&f);
    free(mem.kept);
    qa_h5_quiet_end(&q);
    return rc;
}

/* The notebook's other scatter (knowledge_finding.ipynb, pca_decomp_seperate): the same points coloured by
 * the bucket of their record index (0-100, 100-200, ...) over all languages together. */
static int plot_buckets(const qa_pca_opts *o, const qa_pca_panel *pp, int nplot, const int64_t *keys, int n,
                        const char *task, qa_err *e) {
    enum { MAX_BUCKETS = 30 };
    int64_t top = 0;
    for (int i = 0; i < n; i++) if (keys[i] > top) top = keys[i];
    const int64_t nb = top / o->bucket_size + 1;
    if (nb > MAX_BUCKETS)
        return QA_ERR(e, "PCA: record indices up to %lld in buckets of %d make %lld buckets; at most %d can be told apart "
                         "(raise --bucket-size)", (long long)top, o->bucket_size, (long long)nb, MAX_BUCKETS);
    int *bg = qa_malloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) bg[i] = (int)(keys[i] / o->bucket_size);
    char (*names)[48] = qa_calloc((size_t)nb, sizeof *names);
    const char **np = qa_calloc((size_t)nb, sizeof *np);
    for (int64_t b = 0; b < nb; b++) {
        snprintf(names[b], sizeof names[b], "%lld-%lld", (long long)(b * o->bucket_size),
                 (long long)((b + 1) * o->bucket_size));
        np[b] = names[b];
    }
    qa_pca_panel *bp = qa_calloc((size_t)nplot, sizeof *bp);
    for (int k = 0; k < nplot; k++) {
        bp[k] = pp[k];
        bp[k].group = bg;
    }
    char title[700];
    snprintf(title, sizeof title, "PCA by record index (buckets of %d), task %s", o->bucket_size, task);
    char *path = qa_path_join(o->out_dir, "pca_buckets");
    int rc = qa_plot_pca(path, title, nplot, bp, (int)nb, np, o->png, o->svg, e);
    free(path);
    free(bp);
    free(np);
    free(names);
    free(bg);
    return rc;
}

int qa_pca_run(const qa_pca_opts *o, qa_err *e) {
    if (!o->dump || !o->out_dir) return QA_ERR(e, "PCA: needs a dump and an output directory");
    const char *pool = o->pool ? o->pool : "mean";
    if (strcmp(pool, "mean") && strcmp(pool, "last"))
        return QA_ERR(e, "PCA: pool '%s' is unknown (mean or last)", pool);
    qa_actdump d;
    if (qa_actdump_open(&d, o->dump, e)) return -1;
    int rc = -1, nl = 0, nlay = 0, nplot = 0, n = 0, npairs = 0, nr = 0;
    char **langs = NULL;
    int *lay = NULL, *plot = NULL, *grp = NULL, (*pairs)[2] = NULL;
    int64_t *rows = NULL, *keys = NULL;
    int *ia = NULL, *ib = NULL, *pm = NULL;
    float *layer = NULL, *X = NULL;
    layer_res *R = NULL;
    qa_sbuf sc = {0}, pr = {0}, md = {0}, vr = {0};
    const char *task = NULL;
    const int L = d.n_layers, D = d.hidden;
    if (!strcmp(pool, "mean") ? !d.has_mean : !d.has_last) {
        QA_ERR(e, "activation dump %s has no /%s pool (dumped with --dump-pools %s?); use --pool %s", d.path, pool,
               d.has_mean ? "mean" : "last", d.has_mean ? "mean" : "last");
        goto out;
    }
    if (qa_an_pick_task(&d, o->task, &task, e) || qa_an_pick_langs(&d, task, o->langs, &langs, &nl, e)) goto out;
    if (parse_layers(o->layers, L, &lay, &nlay, "--layers", e)) goto out;
    if (o->plot_layers) {
        if (parse_layers(o->plot_layers, L, &plot, &nplot, "--plot-layers", e)) goto out;
    } else {
        int cand[4] = {(L + 2) / 4, (L + 1) / 2, (3 * L + 2) / 4, L};
        plot = qa_calloc(4, sizeof(int));
        for (int i = 0; i < 4; i++) {
            int dup = 0;
            for (int j = 0; j < nplot; j++) dup |= plot[j] == cand[i];
            if (!dup) plot[nplot++] = cand[i];
        }
    }
    /* computed layers: the union */
    {
        char *mark = qa_calloc((size_t)L + 1, 1);
        for (int i = 0; i < nlay; i++) mark[lay[i]] = 1;
        for (int i = 0; i < nplot; i++) mark[plot[i]] = 1;
        nlay = 0;
        for (int l = 0; l <= L; l++) if (mark[l]) lay[nlay++] = l;
        free(mark);
    }
    /* rows: language order, then the dump's order */
    rows = qa_malloc(sizeof(int64_t) * (size_t)(d.n ? d.n : 1));
    grp = qa_malloc(sizeof(int) * (size_t)(d.n ? d.n : 1));
    for (int li = 0; li < nl; li++)
        for (int64_t r = 0; r < d.n; r++)
            if (!strcmp(d.task[r], task) && !strcmp(d.lang[r], langs[li])) {
                rows[n] = r;
                grp[n++] = li;
            }
    if (n < 2) {
        QA_ERR(e, "activation dump %s: %d item(s) of task '%s' in the chosen languages; PCA needs at least 2", d.path, n,
               task);
        goto out;
    }
    /* pairs */
    pairs = qa_malloc(sizeof *pairs * (size_t)(nl * nl + 9));
    if (!o->all_pairs)
        for (size_t p = 0; p < sizeof PAPER_PAIRS / sizeof PAPER_PAIRS[0]; p++) {
            int a = lang_index(langs, nl, PAPER_PAIRS[p][0]), b = lang_index(langs, nl, PAPER_PAIRS[p][1]);
            if (a >= 0 && b >= 0) {
                pairs[npairs][0] = a;
                pairs[npairs++][1] = b;
            }
        }
    if (npairs == 0)
        for (int a = 0; a < nl; a++)
            for (int b = a + 1; b < nl; b++) {
                pairs[npairs][0] = a;
                pairs[npairs++][1] = b;
            }
    if (qa_mkdir_p(o->out_dir, e)) goto out;
    qa_logf(o->log, o->log_ctx, "pca: %s: task %s, %d languages, %d items, pool %s, %d layers, %d pairs", d.path,
               task, nl, n, pool, nlay, npairs);

    layer = qa_malloc(sizeof(float) * (size_t)d.n * D);
    X = qa_malloc(sizeof(float) * (size_t)n * D);
    R = qa_calloc(nlay, sizeof *R);
    double *pa = qa_malloc(sizeof(double) * (size_t)n), *pb = qa_malloc(sizeof(double) * (size_t)n);
    keys = qa_malloc(sizeof(int64_t) * (size_t)n);
    for (int i = 0; i < n; i++) keys[i] = d.index[rows[i]];
    ia = qa_malloc(sizeof(int) * (size_t)n * (npairs ? npairs : 1));
    ib = qa_malloc(sizeof(int) * (size_t)n * (npairs ? npairs : 1));
    pm = qa_malloc(sizeof(int) * (size_t)(npairs ? npairs : 1));
    for (int p = 0; p < npairs; p++)
        pm[p] = match_pairs(grp, keys, n, pairs[p][0], pairs[p][1], ia + (size_t)p * n, ib + (size_t)p * n);
    for (int j = 0; j < nlay; j++) {
        layer_res *res = &R[j];
        res->layer = lay[j];
        if (qa_actdump_read_layer(&d, pool, lay[j], layer, e)) { free(pa); free(pb); goto out; }
        for (int i = 0; i < n; i++) memcpy(X + (size_t)i * D, layer + (size_t)rows[i] * D, sizeof(float) * D);
        res->scores = qa_malloc(sizeof(double) * (size_t)n * 2);
        res->comp = qa_malloc(sizeof(double) * 2 * (size_t)D);
        res->r = qa_malloc(sizeof(double) * (size_t)(npairs ? npairs : 1));
        res->rn = qa_calloc((size_t)(npairs ? npairs : 1), sizeof(int));
        nr = j + 1;
        if (qa_pca_fit(X, n, D, 2, res->scores, res->comp, res->var, &res->total, &res->iters, e)) {
            free(pa);
            free(pb);
            goto out;
        }
        /* Pearson of PC1 between index-paired items */
        for (int p = 0; p < npairs; p++) {
            res->r[p] = pc1_pearson(res->scores, ia + (size_t)p * n, ib + (size_t)p * n, pm[p], pa, pb);
            res->rn[p] = pm[p];
        }
    }
    free(pa);
    free(pb);

    /* files */
    qa_sb_printf(&sc, "layer,lang,index,pc1,pc2\n");
    qa_sb_printf(&vr, "layer,explained_variance_1,explained_variance_2,ratio_1,ratio_2,total_variance,iterations\n");
    qa_sb_printf(&pr, "layer,lang_a,lang_b,n,r\n");
    for (int j = 0; j < nr; j++) {
        for (int i = 0; i < n; i++)
            qa_sb_printf(&sc, "%d,%s,%lld,%.9g,%.9g\n", R[j].layer, langs[grp[i]], (long long)d.index[rows[i]],
                         R[j].scores[(size_t)i * 2], R[j].scores[(size_t)i * 2 + 1]);
        qa_sb_printf(&vr, "%d,%.9g,%.9g,%.6f,%.6f,%.9g,%d\n", R[j].layer, R[j].var[0], R[j].var[1],
                     R[j].total > 0 ? R[j].var[0] / R[j].total : 0, R[j].total > 0 ? R[j].var[1] / R[j].total : 0,
                     R[j].total, R[j].iters);
        for (int p = 0; p < npairs; p++)
            qa_sb_printf(&pr, "%d,%s,%s,%d,%.6f\n", R[j].layer, langs[pairs[p][0]], langs[pairs[p][1]], R[j].rn[p],
                         R[j].r[p]);
    }
    char model_name[256];
    qa_an_basename(d.model, model_name, sizeof model_name);
    qa_sb_printf(&md, "# PCA and Pearson: %s%s%s\n\n", model_name, d.adapter[0] ? " + " : "", d.adapter);
    qa_sb_printf(&md, "- dump: `%s`; task %s; pool: %s over the prompt; %d items (%d languages); prompt %s\n",
                 d.path, task, !strcmp(pool, "mean") ? "mean" : "last position", n, nl, d.prompt_variant);
    qa_sb_printf(&md, "- PCA fitted on all selected languages together per layer; r = Pearson correlation of the "
                      "PC1 scores of index-paired items (paper-protocol.md §9); layer 0 = embeddings, layer %d = "
                      "after the final norm\n\n", L);
    qa_sb_printf(&md, "Pearson r of PC1 scores by layer:\n\n| layer | PC1 var |");
    for (int p = 0; p < npairs; p++) qa_sb_printf(&md, " %s–%s |", langs[pairs[p][0]], langs[pairs[p][1]]);
    qa_sb_printf(&md, "\n|---:|---:|");
    for (int p = 0; p < npairs; p++) qa_sb_printf(&md, "---:|");
    qa_sb_printf(&md, "\n");
    for (int j = 0; j < nr; j++) {
        qa_sb_printf(&md, "| %d | %.1f%% |", R[j].layer, R[j].total > 0 ? 100 * R[j].var[0] / R[j].total : 0);
        for (int p = 0; p < npairs; p++) {
            if (isfinite(R[j].r[p])) qa_sb_printf(&md, " %.4f |", R[j].r[p]);
            else qa_sb_printf(&md, " – |");
        }
        qa_sb_printf(&md, "\n");
    }
    /* per plotted layer, every language pair */
    if (nl > 1) {
        for (int pi = 0; pi < nplot; pi++) {
            int j = 0;
            while (j < nr && R[j].layer != plot[pi]) j++;
            if (j == nr) continue;
            qa_sb_printf(&md, "\nLayer %d, every pair (PC1 scores of index-paired items):\n\n|  |", plot[pi]);
            for (int b = 0; b < nl; b++) qa_sb_printf(&md, " %s |", langs[b]);
            qa_sb_printf(&md, "\n|---|");
            for (int b = 0; b < nl; b++) qa_sb_printf(&md, "---:|");
            qa_sb_printf(&md, "\n");
            double *pa2 = qa_malloc(sizeof(double) * (size_t)n), *pb2 = qa_malloc(sizeof(double) * (size_t)n);
            int *ja = qa_malloc(sizeof(int) * (size_t)n), *jb = qa_malloc(sizeof(int) * (size_t)n);
            for (int a = 0; a < nl; a++) {
                qa_sb_printf(&md, "| %s |", langs[a]);
                for (int b = 0; b < nl; b++) {
                    int m = match_pairs(grp, keys, n, a, b, ja, jb);
                    double r = pc1_pearson(R[j].scores, ja, jb, m, pa2, pb2);
                    if (isfinite(r)) qa_sb_printf(&md, " %.3f |", r);
                    else qa_sb_printf(&md, " – |");
                }
                qa_sb_printf(&md, "\n");
            }
            free(pa2);
            free(pb2);
            free(ja);
            free(jb);
        }
    }
    if (qa_sb_write(&sc, o->out_dir, "pca_scores.csv", e) || qa_sb_write(&vr, o->out_dir, "pca_variance.csv", e) ||
        qa_sb_write(&pr, o->out_dir, "pearson.csv", e) || qa_sb_write(&md, o->out_dir, "pearson.md", e))
        goto out;
    if (write_pca_h5(o, &d, task, langs, nl, rows, grp, n, R, nr, pairs, npairs, e)) goto out;

    /* figures: one per plotted layer and the plotted layers side by side */
    {
        qa_pca_panel *pp = qa_calloc((size_t)nplot, sizeof *pp);
        double *xy = qa_malloc(sizeof(double) * (size_t)nplot * 2 * n);
        char (*titles)[64] = qa_calloc((size_t)nplot, sizeof *titles), (*xl)[64] = qa_calloc((size_t)nplot, sizeof *xl),
             (*yl)[64] = qa_calloc((size_t)nplot, sizeof *yl);
        int bad = 0;
        char head[600];
        snprintf(head, sizeof head, "PCA of the %s hidden state: %s%s, task %s",
                 !strcmp(pool, "mean") ? "mean" : "last-position", o->title ? o->title : model_name,
                 d.adapter[0] && !o->title ? " + adapter" : "", task);
        for (int pi = 0; pi < nplot && !bad; pi++) {
            int j = 0;
            while (j < nr && R[j].layer != plot[pi]) j++;
            double *x = xy + (size_t)pi * 2 * n, *y = x + n;
            for (int i = 0; i < n; i++) {
                x[i] = R[j].scores[(size_t)i * 2];
                y[i] = R[j].scores[(size_t)i * 2 + 1];
            }
            snprintf(titles[pi], sizeof titles[pi], "layer %d%s", plot[pi],
                     plot[pi] == 0 ? " (embeddings)" : plot[pi] == L ? " (final norm)" : "");
            snprintf(xl[pi], sizeof xl[pi], "PC1 (%.1f%%)", R[j].total > 0 ? 100 * R[j].var[0] / R[j].total : 0);
            snprintf(yl[pi], sizeof yl[pi], "PC2 (%.1f%%)", R[j].total > 0 ? 100 * R[j].var[1] / R[j].total : 0);
            pp[pi] = (qa_pca_panel){titles[pi], n, x, y, grp, xl[pi], yl[pi]};
            char stem[64];
            snprintf(stem, sizeof stem, L >= 100 ? "pca_layer_%03d" : "pca_layer_%02d", plot[pi]);
            char *path = qa_path_join(o->out_dir, stem);
            bad = qa_plot_pca(path, head, 1, &pp[pi], nl, (const char *const *)langs, o->png, o->svg, e);
            free(path);
        }
        if (!bad) {
            char *path = qa_path_join(o->out_dir, "pca");
            bad = qa_plot_pca(path, head, nplot, pp, nl, (const char *const *)langs, o->png, o->svg, e);
            free(path);
        }
        if (!bad && o->bucket_size > 0) bad = plot_buckets(o, pp, nplot, keys, n, task, e);
        free(pp);
        free(xy);
        free(titles);
        free(xl);
        free(yl);
        if (bad) goto out;
    }
    rc = 0;
out:
    if (R)
        for (int j = 0; j < nr; j++) {
            free(R[j].scores);
            free(R[j].comp);
            free(R[j].r);
            free(R[j].rn);
        }
    free(R);
    free(keys);
    free(ia);
    free(ib);
    free(pm);
    free(layer);
    free(X);
    free(rows);
    free(grp);
    free(pairs);
    free(lay);
    free(plot);
    qa_an_free_list(langs, nl);
    qa_sb_free(&sc);
    qa_sb_free(&pr);
    qa_sb_free(&md);
    qa_sb_free(&vr);
    qa_actdump_close(&d);
    return rc;
}
