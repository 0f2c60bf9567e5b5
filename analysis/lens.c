/* lens.c — the logit lens of activation dumps (paper-protocol.md §8): per layer the probability mass
 * of the gold target-language label set, of its English counterpart, of both label unions, and the
 * entropy; the paper's item filter; means with 95% intervals; CSV, HDF5 and one figure per language. */
#include "analysis/an_internal.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "eval/eval.h"
#include "io/h5util.h"
#include "model/unembed.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *QNAME[QA_LENS_NQ] = {"target", "latent_en", "all_target", "all_en", "entropy"};

const char *qa_lens_quantity_name(int q) { return q >= 0 && q < QA_LENS_NQ ? QNAME[q] : "?"; }

void qa_lens_opts_default(qa_lens_opts *o) {
    memset(o, 0, sizeof *o);
    o->png = 1;
    o->svg = 1;
}

int qa_lens_check_dump(const qa_actdump *d, const qa_model *m, qa_err *e) {
    const qa_hf_config *c = &m->cfg;
    if (d->n_layers != c->n_layers || d->hidden != c->hidden)
        return QA_ERR(e, "activation dump %s has %d layers of width %d but the model has %d layers of width %d: "
                         "the dump was made with another model (pass the model it was dumped from: %s)",
                      d->path, d->n_layers, d->hidden, c->n_layers, c->hidden, d->model && *d->model ? d->model : "?");
    if (d->vocab > 0 && d->vocab != c->vocab)
        return QA_ERR(e, "activation dump %s was made with a vocabulary of %d, the model has %d: another model (%s)",
                      d->path, d->vocab, c->vocab, d->model && *d->model ? d->model : "?");
    if (!d->has_last)
        return QA_ERR(e, "activation dump %s has no /last pool (the logit lens reads the last prompt position; dump "
                         "with --dump-pools last or last,mean)", d->path);
    return 0;
}

/* logits of rows of one layer already in memory (layer [N, D]) */
static int rows_logits(qa_model *m, const float *layer_data, int apply_norm, const int64_t *rows, int n, float *logits,
                       float *tmp, qa_err *e) {
    const int D = m->cfg.hidden;
    for (int i = 0; i < n; i++) memcpy(tmp + (size_t)i * D, layer_data + (size_t)rows[i] * D, sizeof(float) * D);
    return qa_model_unembed(m, tmp, n, apply_norm, logits, e);
}

int qa_lens_layer_logits(qa_model *m, const qa_actdump *d, int layer, const int64_t *rows, int n, float *logits,
                         qa_err *e) {
    if (qa_lens_check_dump(d, m, e)) return -1;
    for (int i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= d->n)
            return QA_ERR(e, "activation dump %s: row %lld outside [0, %lld)", d->path, (long long)rows[i],
                          (long long)d->n);
    const int D = d->hidden;
    float *buf = qa_malloc(sizeof(float) * (size_t)(d->n ? d->n : 1) * D);
    float *tmp = qa_malloc(sizeof(float) * (size_t)(n ? n : 1) * D);
    int rc = qa_actdump_read_layer(d, "last", layer, buf, e);
    if (!rc) rc = rows_logits(m, buf, layer < d->n_layers, rows, n, logits, tmp, e);
    free(buf);
    free(tmp);
    return rc;
}

/* Σ over the ids of p = exp(x - lse) */
static double set_mass(const float *x, double lse, const int32_t *ids, int n) {
    double s = 0;
    for (int j = 0; j < n; j++) s += exp((double)x[ids[j]] - lse);
    return s;
}

void qa_lens_quantities(const float *x, int V, const qa_lens_sets *s, double out[QA_LENS_NQ]) {
    double mx = -INFINITY;
    for (int i = 0; i < V; i++) if (x[i] > mx) mx = x[i];
    double z = 0, s1 = 0;
    for (int i = 0; i < V; i++) {
        double d = (double)x[i] - mx, p = exp(d);
        z += p;
        s1 += p * d;
    }
    const double lse = mx + log(z);
    for (int q = 0; q < 4; q++) out[q] = set_mass(x, lse, s->ids[q], s->n[q]);
    /* H = Σ p (lse - x) = log z - Σ p' d / z, in bits */
    out[QA_LENS_ENTROPY] = (log(z) - s1 / z) / log(2.0);
}

/* ---- label sets -------------------------------------------------------------------------------- */
typedef struct idset {
    int32_t *ids;
    int n;
} idset;

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void set_union(idset *u, const idset *a) {
    u->ids = qa_realloc(u->ids, sizeof(int32_t) * (size_t)(u->n + a->n + 1));
    memcpy(u->ids + u->n, a->ids, sizeof(int32_t) * (size_t)a->n);
    u->n += a->n;
    qsort(u->ids, u->n, sizeof(int32_t), cmp_i32);
    int k = 0;
    for (int i = 0; i < u->n; i++)
        if (k == 0 || u->ids[i] != u->ids[k - 1]) u->ids[k++] = u->ids[i];
    u->n = k;
}

static int intersects(const idset *a, const idset *b) {
    for (int i = 0, j = 0; i < a->n && j < b->n;) {
        if (a->ids[i] == b->ids[j]) return 1;
        if (a->ids[i] < b->ids[j]) i++;
        else j++;
    }
    return 0;
}

/* per language: label k's English and target-language sets, and the two unions */
typedef struct lang_sets {
    int K;
    idset en[8], tg[8], all_en, all_tg;
} lang_sets;

static void lang_sets_free(lang_sets *s) {
    for (int k = 0; k < s->K; k++) {
        free(s->en[k].ids);
        free(s->tg[k].ids);
    }
    free(s->all_en.ids);
    free(s->all_tg.ids);
    memset(s, 0, sizeof *s);
}

static int word_set(const qa_tokenizer *tok, const char *word, int V, idset *out, const char *what, qa_err *e) {
    if (qa_eval_label_tokens(tok, word, &out->ids, &out->n, e)) return qa_err_prefix(e, "%s \"%s\"", what, word);
    for (int j = 0; j < out->n; j++)
        if (out->ids[j] >= V)
            return QA_ERR(e, "%s \"%s\": token id %d is outside the model's vocabulary (%d): the tokenizer does not "
                             "belong to this model", what, word, out->ids[j], V);
    return 0;
}

static int make_sets(const qa_actdump_labelset *ls, const char *lang, const qa_tokenizer *tok, int V, lang_sets *s,
                     qa_err *e) {
    memset(s, 0, sizeof *s);
    if (ls->n_labels > 8) return QA_ERR(e, "task '%s' has %d labels; the lens supports 8", ls->task, ls->n_labels);
    s->K = ls->n_labels;
    for (int k = 0; k < s->K; k++) {
        const char *tw = qa_actdump_target_word(ls, lang, k);
        if (!tw)
            return QA_ERR(e, "the dump's /labels/%s has no target_%s words: cannot build the target-language sets",
                          ls->task, lang);
        QA_TRY(word_set(tok, ls->english[k], V, &s->en[k], "English label word", e));
        QA_TRY(word_set(tok, tw, V, &s->tg[k], "target-language label word", e));
        set_union(&s->all_en, &s->en[k]);
        set_union(&s->all_tg, &s->tg[k]);
    }
    return 0;
}

static int same_path(const char *a, const char *b) {
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = ra && rb ? !strcmp(ra, rb) : !strcmp(a, b);
    free(ra);
    free(rb);
    return same;
}

/* ---- the paper's "energy" (zsm_emotion_2shot.py; computed there, not plotted) ---------------------
 * U_w = lm_head rows times the final norm's weight, each row L2-normalised (U_n); avgUU =
 * sqrt(Σ (U_nᵀ U_n)² / V²); per item and layer, h = the last-position residual stream RMS- then
 * L2-normalised (together: h / |h|) and energy = sqrt(mean_v (U_n h)²) / avgUU. The lens logits give
 * U_n h without another pass over lm_head: below the last layer they are U_w h / sqrt(mean h² + eps), so
 * (U_n h)_v = logit_v · sqrt(mean h² + eps) / |h| / |U_w,v|; the dump's last layer is already normed
 * (w ⊙ h / s), so h's direction is that state divided by w and (U_n h)_v = logit_v / |state ⊘ w| /
 * |U_w,v| (undefined where some w_d is 0: NaN). A zero row of U_w contributes 0. */
typedef struct energy_ctx {
    int V, D;
    double *rinv;            /* [V] 1 / |U_w,v| (0 for a zero row) */
    double *winv;            /* [D] 1 / w_d */
    int w_zero;              /* some w_d is 0 */
    double avguu;
} energy_ctx;

static void energy_free(energy_ctx *ec) {
    free(ec->rinv);
    free(ec->winv);
    memset(ec, 0, sizeof *ec);
}

static int energy_setup(qa_model *m, energy_ctx *ec, qa_err *e) {
    const int V = m->cfg.vocab, D = m->cfg.hidden;
    memset(ec, 0, sizeof *ec);
    ec->V = V;
    ec->D = D;
    const char *hn = m->cfg.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    const qa_st_tensor *U = qa_st_find(&m->st, hn), *W = qa_st_find(&m->st, "model.norm.weight");
    if (!U || !W) return QA_ERR(e, "lens energy: the model's safetensors have no %s", !U ? hn : "model.norm.weight");
    if (U->ndim != 2 || U->shape[0] != V || U->shape[1] != D || W->numel != D ||
        !qa_dtype_size(U->dtype) || U->dtype == QA_DT_OTHER || !qa_dtype_size(W->dtype) || W->dtype == QA_DT_OTHER)
        return QA_ERR(e, "lens energy: %s / model.norm.weight have unexpected shapes or dtypes (%s, %s)", hn,
                      U->dtype_name, W->dtype_name);
    float *w = qa_malloc(sizeof(float) * (size_t)D);
    qa_convert_to_f32(w, W->data, W->dtype, (size_t)D);
    ec->winv = qa_malloc(sizeof(double) * (size_t)D);
    for (int d = 0; d < D; d++) {
        ec->winv[d] = w[d] != 0 ? 1.0 / w[d] : 0;
        if (w[d] == 0) ec->w_zero = 1;
    }
    ec->rinv = qa_malloc(sizeof(double) * (size_t)V);
    enum { CH = 256 };
    float *tmp = qa_malloc(sizeof(float) * CH * (size_t)D);
    double *A = qa_malloc(sizeof(double) * CH * (size_t)D), *G = qa_calloc((size_t)D * D, sizeof(double));
    const size_t esz = qa_dtype_size(U->dtype);
    for (int r0 = 0; r0 < V; r0 += CH) {
        const int n = V - r0 < CH ? V - r0 : CH;
        qa_convert_to_f32(tmp, (const char *)U->data + (size_t)r0 * D * esz, U->dtype, (size_t)n * D);
        for (int i = 0; i < n; i++) {
            double ss = 0, *a = A + (size_t)i * D;
            for (int d = 0; d < D; d++) {
                a[d] = (double)tmp[(size_t)i * D + d] * w[d];
                ss += a[d] * a[d];
            }
            const double ri = ss > 0 ? 1.0 / sqrt(ss) : 0;
            ec->rinv[r0 + i] = ri;
            for (int d = 0; d < D; d++) a[d] *= ri;
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, D, n, 1.0, A, D, 1.0, G, D); /* G += AᵀA */
    }
    double f = 0;
    for (int i = 0; i < D; i++) {
        f += G[(size_t)i * D + i] * G[(size_t)i * D + i];
        for (int j = i + 1; j < D; j++) f += 2 * G[(size_t)i * D + j] * G[(size_t)i * D + j];
    }
    ec->avguu = sqrt(f) / V;
    free(w);
    free(tmp);
    free(A);
    free(G);
    return 0;
}

/* energy of one lens row: logits [V] of the hidden state h [D] at `layer` (last: the normed state) */
static double energy_of(const energy_ctx *ec, const float *logits, const float *h, int last, double eps) {
    double factor;
    if (last) {
        if (ec->w_zero) return NAN;
        double q = 0;
        for (int d = 0; d < ec->D; d++) q += ((double)h[d] * ec->winv[d]) * ((double)h[d] * ec->winv[d]);
        factor = q > 0 ? 1.0 / sqrt(q) : NAN;
    } else {
        double ss = 0;
        for (int d = 0; d < ec->D; d++) ss += (double)h[d] * h[d];
        factor = ss > 0 ? sqrt(ss / ec->D + eps) / sqrt(ss) : NAN;
    }
    double s = 0;
    for (int v = 0; v < ec->V; v++) {
        const double z = logits[v] * ec->rinv[v];
        s += z * z;
    }
    return factor * sqrt(s / ec->V) / ec->avguu;
}

/* ---- the run ------------------------------------------------------------------------------------ */
typedef struct kept_counts {
    int items, no_gold, empty, overlap, kept;
} kept_counts;

typedef struct series {
    qa_actdump d;
    int open;
    char label[160];
    int n_kept;
    int64_t *rows;          /* [n_kept] dump rows */
    int *lang;              /* [n_kept] language index */
    double *val;            /* [n_kept, L, NQ] */
    double *energy;         /* [n_kept, L] the paper's energy */
    double *emean, *esd, *elo, *ehi; /* [n_langs, L] its aggregates */
    kept_counts *cnt;       /* [n_langs] */
    /* aggregates [n_langs, L, NQ] */
    double *mean, *sd, *lo, *hi;
    int *n;                 /* [n_langs] */
} series;

static void series_free(series *s) {
    if (s->open) qa_actdump_close(&s->d);
    free(s->rows);
    free(s->lang);
    free(s->val);
    free(s->energy);
    free(s->emean);
    free(s->esd);
    free(s->elo);
    free(s->ehi);
    free(s->cnt);
    free(s->mean);
    free(s->sd);
    free(s->lo);
    free(s->hi);
    free(s->n);
    memset(s, 0, sizeof *s);
}

/* choose the kept rows of series s (filter of §8) */
static void select_rows(series *s, const char *task, char **langs, int nl, const lang_sets *sets) {
    s->cnt = qa_calloc(nl, sizeof *s->cnt);
    s->rows = qa_malloc(sizeof(int64_t) * (size_t)(s->d.n ? s->d.n : 1));
    s->lang = qa_malloc(sizeof(int) * (size_t)(s->d.n ? s->d.n : 1));
    for (int li = 0; li < nl; li++) {
        const lang_sets *ls = &sets[li];
        const int is_en = !strcmp(langs[li], "en");
        for (int64_t r = 0; r < s->d.n; r++) {
            if (strcmp(s->d.task[r], task) || strcmp(s->d.lang[r], langs[li])) continue;
            kept_counts *c = &s->cnt[li];
            c->items++;
            const int64_t g = s->d.gold[r];
            if (g < 0 || g >= ls->K) { c->no_gold++; continue; }
            if (ls->tg[g].n == 0 || ls->en[g].n == 0) { c->empty++; continue; }
            if (!is_en && intersects(&ls->tg[g], &ls->en[g])) { c->overlap++; continue; }
            c->kept++;
            s->rows[s->n_kept] = r;
            s->lang[s->n_kept++] = li;
        }
    }
}

#define CHUNK 64

static int compute_series(series *s, qa_model *m, const lang_sets *sets, const energy_ctx *ec, qa_err *e) {
    const int L = m->cfg.n_layers, D = m->cfg.hidden, V = m->cfg.vocab;
    s->val = qa_malloc(sizeof(double) * (size_t)(s->n_kept ? s->n_kept : 1) * L * QA_LENS_NQ);
    s->energy = qa_malloc(sizeof(double) * (size_t)(s->n_kept ? s->n_kept : 1) * L);
    if (!s->n_kept) return 0;
    float *layer = qa_malloc(sizeof(float) * (size_t)s->d.n * D);
    float *tmp = qa_malloc(sizeof(float) * CHUNK * (size_t)D), *logits = qa_malloc(sizeof(float) * CHUNK * (size_t)V);
    int rc = 0;
    for (int l = 1; l <= L && !rc; l++) {
        rc = qa_actdump_read_layer(&s->d, "last", l, layer, e);
        for (int i0 = 0; i0 < s->n_kept && !rc; i0 += CHUNK) {
            int n = s->n_kept - i0 < CHUNK ? s->n_kept - i0 : CHUNK;
            rc = rows_logits(m, layer, l < L, s->rows + i0, n, logits, tmp, e);
            for (int i = 0; i < n && !rc; i++) {
                const int k = i0 + i;
                const lang_sets *ls = &sets[s->lang[k]];
                const int64_t g = s->d.gold[s->rows[k]];
                qa_lens_sets q = {{ls->tg[g].ids, ls->en[g].ids, ls->all_tg.ids, ls->all_en.ids},
                                  {ls->tg[g].n, ls->en[g].n, ls->all_tg.n, ls->all_en.n}};
                qa_lens_quantities(logits + (size_t)i * V, V, &q, s->val + ((size_t)k * L + (l - 1)) * QA_LENS_NQ);
                s->energy[(size_t)k * L + (l - 1)] = energy_of(ec, logits + (size_t)i * V, tmp + (size_t)i * D, l == L,
                                                               m->cfg.rms_eps);
            }
        }
    }
    free(layer);
    free(tmp);
    free(logits);
    return rc;
}

/* mean, sd (ddof 0) and 95% interval over the kept items of each language: x [n_kept, L, stride] at
 * offset q -> [nl, L, ostride] at offset oq */
static void agg_one(const series *s, const double *x, int stride, int q, int nl, int L, double *mean, double *sd,
                    double *lo, double *hi, int ostride, int oq) {
    for (int li = 0; li < nl; li++)
        for (int l = 0; l < L; l++) {
            double sum = 0, ss = 0;
            const int n = s->n[li];
            for (int k = 0; k < s->n_kept; k++)
                if (s->lang[k] == li) sum += x[((size_t)k * L + l) * stride + q];
            const double mu = n ? sum / n : NAN;
            for (int k = 0; k < s->n_kept; k++)
                if (s->lang[k] == li) {
                    double d = x[((size_t)k * L + l) * stride + q] - mu;
                    ss += d * d;
                }
            const double sdv = n ? sqrt(ss / n) : NAN, h = n ? 1.96 * sdv / sqrt((double)n) : NAN;
            const size_t at = ((size_t)li * L + l) * ostride + oq;
            mean[at] = mu;
            sd[at] = sdv;
            lo[at] = mu - h;
            hi[at] = mu + h;
        }
}

static void aggregate_energy(series *s, int nl, int L) {
    const size_t cells = (size_t)(nl ? nl : 1) * L;
    s->emean = qa_calloc(cells, sizeof(double));
    s->esd = qa_calloc(cells, sizeof(double));
    s->elo = qa_calloc(cells, sizeof(double));
    s->ehi = qa_calloc(cells, sizeof(double));
    agg_one(s, s->energy, 1, 0, nl, L, s->emean, s->esd, s->elo, s->ehi, 1, 0);
}

static void aggregate(series *s, int nl, int L) {
    const size_t cells = (size_t)nl * L * QA_LENS_NQ;
    s->mean = qa_calloc(cells, sizeof(double));
    s->sd = qa_calloc(cells, sizeof(double));
    s->lo = qa_calloc(cells, sizeof(double));
    s->hi = qa_calloc(cells, sizeof(double));
    s->n = qa_calloc(nl, sizeof(int));
    for (int k = 0; k < s->n_kept; k++) s->n[s->lang[k]]++;
    for (int li = 0; li < nl; li++)
        for (int l = 0; l < L; l++)
            for (int q = 0; q < QA_LENS_NQ; q++) {
                double sum = 0, ss = 0;
                const int n = s->n[li];
                for (int k = 0; k < s->n_kept; k++)
                    if (s->lang[k] == li) sum += s->val[((size_t)k * L + l) * QA_LENS_NQ + q];
                const double mu = n ? sum / n : NAN;
                for (int k = 0; k < s->n_kept; k++)
                    if (s->lang[k] == li) {
                        double d = s->val[((size_t)k * L + l) * QA_LENS_NQ + q] - mu;
                        ss += d * d;
                    }
                const double sd = n ? sqrt(ss / n) : NAN, h = n ? 1.96 * sd / sqrt((double)n) : NAN;
                const size_t at = ((size_t)li * L + l) * QA_LENS_NQ + q;
                s->mean[at] = mu;
                s->sd[at] = sd;
                s->lo[at] = mu - h;
                s->hi[at] = mu + h;
            }
}

static int write_h5(series *S, int ns, char **langs, int nl, int L, const char *task, const char *model_id,
                    double avguu, const char *out_dir, qa_err *e) {
    qa_h5_quiet q;
    qa_h5_quiet_begin(&q);
    qa_h5_mem mem;
    int rc = -1;
    hid_t f = qa_h5_create_mem_file("lens.h5", 0, &mem, e), g = -1;
    void *buf = NULL;
    size_t len = 0;
    if (f < 0) goto out;
    const char *qn[QA_LENS_NQ];
    for (int k = 0; k < QA_LENS_NQ; k++) qn[k] = QNAME[k];
    if (qa_h5_attr_str(f, "format", "qalign-lens", e) || qa_h5_attr_str(f, "task", task, e) ||
        qa_h5_attr_str(f, "model", model_id, e) || qa_h5_attr_strs(f, "quantities", qn, QA_LENS_NQ, e) ||
        qa_h5_attr_strs(f, "languages", (const char *const *)langs, (size_t)nl, e) ||
        qa_h5_attr_i64(f, "n_layers", L, e) ||
        qa_h5_attr_str(f, "layers", "axis 'layer' = decoder layers 1..L (index 0 = layer 1); masses and entropy "
                                    "(bits) at the last prompt position; ci = mean +- 1.96 sd / sqrt(n), sd ddof 0", e) ||
        qa_h5_attr_f64(f, "energy_avgUU", avguu, e) ||
        qa_h5_attr_str(f, "energy", "<lang>/energy [n, L]: sqrt(mean_v (U_n h)^2) / avgUU per item and layer, U_n = "
                                    "lm_head rows times the final norm weight, L2-normalised; h = the last-position "
                                    "residual stream, L2-normalised (zsm_emotion_2shot.py)", e))
        goto out;
    qa_h5_dset_opts o = {0, 4, 1};
    for (int s = 0; s < ns; s++) {
        char name[64];
        snprintf(name, sizeof name, "series_%d", s);
        g = qa_h5_create_group(f, name, e);
        if (g < 0) goto out;
        if (qa_h5_attr_str(g, "label", S[s].label, e) || qa_h5_attr_str(g, "dump", S[s].d.path, e) ||
            qa_h5_attr_str(g, "adapter", S[s].d.adapter, e))
            goto out;
        for (int li = 0; li < nl; li++) {
            char p[160];
            const int n = S[s].n[li];
            int64_t *idx = qa_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
            double *v = qa_malloc(sizeof(double) * (size_t)(n ? n : 1) * L * QA_LENS_NQ);
            int j = 0;
            for (int k = 0; k < S[s].n_kept; k++)
                if (S[s].lang[k] == li) {
                    idx[j] = S[s].d.index[S[s].rows[k]];
                    memcpy(v + (size_t)j * L * QA_LENS_NQ, S[s].val + (size_t)k * L * QA_LENS_NQ,
                           sizeof(double) * (size_t)L * QA_LENS_NQ);
                    j++;
                }
            int64_t sh1[1] = {n}, sh3[3] = {n, L, QA_LENS_NQ}, sh2[2] = {L, QA_LENS_NQ};
            int bad = 0;
            snprintf(p, sizeof p, "%s/index", langs[li]);
            bad = bad || qa_h5_write(g, p, QA_H5_I64, 1, sh1, idx, &o, NULL, e);
            snprintf(p, sizeof p, "%s/values", langs[li]);
            bad = bad || qa_h5_write(g, p, QA_H5_F64, 3, sh3, v, &o, NULL, e);
            {
                double *en = qa_malloc(sizeof(double) * (size_t)(n ? n : 1) * L);
                int jj = 0;
                for (int k = 0; k < S[s].n_kept; k++)
                    if (S[s].lang[k] == li)
                        memcpy(en + (size_t)jj++ * L, S[s].energy + (size_t)k * L, sizeof(double) * (size_t)L);
                int64_t she[2] = {n, L}, shl[1] = {L};
                snprintf(p, sizeof p, "%s/energy", langs[li]);
                bad = bad || qa_h5_write(g, p, QA_H5_F64, 2, she, en, &o, NULL, e);
                const double *eagg[4] = {S[s].emean, S[s].esd, S[s].elo, S[s].ehi};
                const char *ean[4] = {"energy_mean", "energy_sd", "energy_ci_lo", "energy_ci_hi"};
                for (int a = 0; a < 4 && !bad; a++) {
                    snprintf(p, sizeof p, "%s/%s", langs[li], ean[a]);
                    bad = qa_h5_write(g, p, QA_H5_F64, 1, shl, eagg[a] + (size_t)li * L, &o, NULL, e);
                }
                free(en);
            }
            const double *agg[4] = {S[s].mean, S[s].sd, S[s].lo, S[s].hi};
            const char *an[4] = {"mean", "sd", "ci_lo", "ci_hi"};
            for (int a = 0; a < 4 && !bad; a++) {
                snprintf(p, sizeof p, "%s/%s", langs[li], an[a]);
                bad = qa_h5_write(g, p, QA_H5_F64, 2, sh2, agg[a] + (size_t)li * L * QA_LENS_NQ, &o, NULL, e);
            }
            const kept_counts *c = &S[s].cnt[li];
            if (!bad) {
                snprintf(p, sizeof p, "%s", langs[li]);
                hid_t lg = H5Gopen2(g, p, H5P_DEFAULT);
                bad = lg < 0 || qa_h5_attr_i64(lg, "items", c->items, e) || qa_h5_attr_i64(lg, "kept", c->kept, e) ||
                      qa_h5_attr_i64(lg, "dropped_no_gold", c->no_gold, e) ||
                      qa_h5_attr_i64(lg, "dropped_empty_set", c->empty, e) ||
                      qa_h5_attr_i64(lg, "dropped_overlap", c->overlap, e);
                if (lg >= 0) H5Gclose(lg);
            }
            free(idx);
            free(v);
            if (bad) goto out;
        }
        qa_h5_close(&g);
    }
    if (qa_h5_mem_close(&f, &mem, "lens.h5", &buf, &len, e)) goto out;
    char *path = qa_path_join(out_dir, "lens.h5");
    rc = qa_write_file_atomic(path, buf, len, e);
    free(path);
out:
    free(buf);
    qa_h5_close(&g);
    qa_h5_close(&f);
    free(mem.kept);
    qa_h5_quiet_end(&q);
    return rc;
}

int qa_lens_run(qa_model *m, const qa_tokenizer *tok, const qa_lens_opts *o, qa_err *e) {
    const int ns = o->n_series, L = m->cfg.n_layers, V = m->cfg.vocab;
    if (ns < 1 || ns > QA_LENS_MAX_SERIES)
        return QA_ERR(e, "logit lens: %d dumps given, 1 to %d are supported", ns, QA_LENS_MAX_SERIES);
    if (!o->out_dir) return QA_ERR(e, "logit lens: no output directory");
    series *S = qa_calloc(ns, sizeof *S);
    char **langs = NULL;
    int nl = 0, rc = -1;
    lang_sets *sets = NULL;
    qa_sbuf csv = {0}, items = {0}, kept = {0}, ecsv = {0};
    energy_ctx ec;
    int have_ec = 0;
    const char *task = NULL;
    for (int s = 0; s < ns; s++) {
        if (qa_actdump_open(&S[s].d, o->dumps[s], e)) goto out;
        S[s].open = 1;
        if (qa_lens_check_dump(&S[s].d, m, e)) goto out;
        if (o->model_id && S[s].d.model[0] && !same_path(o->model_id, S[s].d.model))
            qa_logf(o->log, o->log_ctx, "lens: warning: %s was dumped from model %s; unembedding with %s (same "
                       "shape)", S[s].d.path, S[s].d.model, o->model_id);
    }
    if (qa_an_pick_task(&S[0].d, o->task, &task, e)) goto out;
    for (int s = 1; s < ns; s++) {
        const char *t2;
        if (qa_an_pick_task(&S[s].d, task, &t2, e)) goto out;
    }
    const qa_actdump_labelset *ls = qa_actdump_labels_of(&S[0].d, task);
    if (!ls) {
        QA_ERR(e, "activation dump %s: group /labels/%s is missing (the label words of the task)", S[0].d.path, task);
        goto out;
    }
    if (qa_an_pick_langs(&S[0].d, task, o->langs, &langs, &nl, e)) goto out;
    sets = qa_calloc(nl, sizeof *sets);
    for (int li = 0; li < nl; li++)
        if (make_sets(ls, langs[li], tok, V, &sets[li], e)) {
            qa_err_prefix(e, "logit lens, task '%s', language '%s'", task, langs[li]);
            goto out;
        }
    /* labels of the series */
    for (int s = 0; s < ns; s++) {
        const char *lab = o->labels[s];
        if (lab) snprintf(S[s].label, sizeof S[s].label, "%s", lab);
        else snprintf(S[s].label, sizeof S[s].label, "%s", S[s].d.adapter[0] ? "aligned" : "base");
        for (int t = 0; t < s; t++)
            if (!strcmp(S[t].label, S[s].label)) {
                size_t k = strlen(S[s].label);
                snprintf(S[s].label + k, sizeof S[s].label - k, " (%d)", s + 1);
                break;
            }
    }
    if (qa_mkdir_p(o->out_dir, e)) goto out;
    if (energy_setup(m, &ec, e)) goto out;
    have_ec = 1;
    for (int s = 0; s < ns; s++) {
        select_rows(&S[s], task, langs, nl, sets);
        qa_sbuf kl = {0};
        for (int li = 0; li < nl; li++) {
            const kept_counts *c = &S[s].cnt[li];
            qa_sb_printf(&kl, "%s%s %d/%d", li ? ", " : "", langs[li], c->kept, c->items);
            if (c->overlap || c->empty || c->no_gold)
                qa_sb_printf(&kl, " (dropped: %d overlap, %d empty set, %d no gold)", c->overlap, c->empty, c->no_gold);
        }
        qa_logf(o->log, o->log_ctx, "lens: %s (%s): kept %s; %d layers x %d vocabulary", S[s].label, S[s].d.path,
                   kl.p ? kl.p : "", L, V);
        qa_sb_free(&kl);
        if (compute_series(&S[s], m, sets, &ec, e)) goto out;
        aggregate(&S[s], nl, L);
        aggregate_energy(&S[s], nl, L);
    }

    /* files */
    qa_sb_printf(&csv, "series,label,task,lang,layer,quantity,n,mean,sd,ci_lo,ci_hi\n");
    qa_sb_printf(&items, "series,label,lang,index,gold,layer,target,latent_en,all_target,all_en,entropy,energy\n");
    qa_sb_printf(&ecsv, "series,label,task,lang,layer,n,mean,sd,ci_lo,ci_hi\n");
    qa_sb_printf(&kept, "series,label,lang,items,dropped_no_gold,dropped_empty_set,dropped_overlap,kept\n");
    for (int s = 0; s < ns; s++) {
        for (int li = 0; li < nl; li++) {
            const kept_counts *c = &S[s].cnt[li];
            qa_sb_printf(&kept, "%d,%s,%s,%d,%d,%d,%d,%d\n", s, S[s].label, langs[li], c->items, c->no_gold, c->empty,
                         c->overlap, c->kept);
            for (int l = 0; l < L; l++)
                for (int q = 0; q < QA_LENS_NQ; q++) {
                    const size_t at = ((size_t)li * L + l) * QA_LENS_NQ + q;
                    qa_sb_printf(&csv, "%d,%s,%s,%s,%d,%s,%d,%.9g,%.9g,%.9g,%.9g\n", s, S[s].label, task, langs[li],
                                 l + 1, QNAME[q], S[s].n[li], S[s].mean[at], S[s].sd[at], S[s].lo[at], S[s].hi[at]);
                }
            for (int l = 0; l < L; l++) {
                const size_t at = (size_t)li * L + l;
                qa_sb_printf(&ecsv, "%d,%s,%s,%s,%d,%d,%.9g,%.9g,%.9g,%.9g\n", s, S[s].label, task, langs[li], l + 1,
                             S[s].n[li], S[s].emean[at], S[s].esd[at], S[s].elo[at], S[s].ehi[at]);
            }
        }
        for (int k = 0; k < S[s].n_kept; k++) {
            const int64_t r = S[s].rows[k];
            for (int l = 0; l < L; l++) {
                const double *v = S[s].val + ((size_t)k * L + l) * QA_LENS_NQ;
                qa_sb_printf(&items, "%d,%s,%s,%lld,%lld,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", s, S[s].label,
                             langs[S[s].lang[k]], (long long)S[s].d.index[r], (long long)S[s].d.gold[r], l + 1, v[0],
                             v[1], v[2], v[3], v[4], S[s].energy[(size_t)k * L + l]);
            }
        }
    }
    if (qa_sb_write(&csv, o->out_dir, "lens.csv", e) || qa_sb_write(&items, o->out_dir, "lens_items.csv", e) ||
        qa_sb_write(&kept, o->out_dir, "lens_kept.csv", e) || qa_sb_write(&ecsv, o->out_dir, "lens_energy.csv", e))
        goto out;
    if (write_h5(S, ns, langs, nl, L, task, S[0].d.model, ec.avguu, o->out_dir, e)) goto out;

    /* one figure per language */
    char model_name[256];
    qa_an_basename(S[0].d.model, model_name, sizeof model_name);
    for (int li = 0; li < nl; li++) {
        qa_lens_plot_series ps[QA_LENS_MAX_SERIES];
        int np = 0, any = 0;
        double *buf = qa_malloc(sizeof(double) * (size_t)ns * 13 * L);
        for (int s = 0; s < ns; s++) {
            qa_lens_plot_series *p = &ps[np++];
            memset(p, 0, sizeof *p);
            p->label = S[s].label;
            p->n_items = S[s].n[li];
            if (!S[s].n[li]) continue;
            any = 1;
            double *b = buf + (size_t)s * 13 * L;
            for (int q = 0; q < 4; q++) {
                double *mu = b + (size_t)(3 * q) * L, *lo = mu + L, *hi = lo + L;
                for (int l = 0; l < L; l++) {
                    const size_t at = ((size_t)li * L + l) * QA_LENS_NQ + q;
                    mu[l] = S[s].mean[at];
                    lo[l] = S[s].lo[at] < 0 ? 0 : S[s].lo[at];
                    hi[l] = S[s].hi[at] > 1 ? 1 : S[s].hi[at];
                }
                p->mean[q] = mu;
                p->lo[q] = lo;
                p->hi[q] = hi;
            }
            double *ent = b + (size_t)12 * L;
            for (int l = 0; l < L; l++) ent[l] = S[s].mean[((size_t)li * L + l) * QA_LENS_NQ + QA_LENS_ENTROPY];
            p->entropy = ent;
        }
        if (!any) {
            qa_logf(o->log, o->log_ctx, "lens: %s: no item kept (shared label prefixes, §8 filter): no figure",
                       langs[li]);
            free(buf);
            continue;
        }
        double ymax = o->ymax;
        if (ymax <= 0) { /* auto: [0, 1] unless everything stays small, then a nice ceiling */
            double hi = 0;
            for (int s = 0; s < ns; s++)
                for (int q = 0; q < 4 && ps[s].n_items; q++)
                    for (int l = 0; l < L; l++)
                        if (ps[s].hi[q] && isfinite(ps[s].hi[q][l]) && ps[s].hi[q][l] > hi) hi = ps[s].hi[q][l];
            ymax = 1;
            if (hi < 0.25) {
                double p10 = pow(10, floor(log10(hi > 1e-12 ? hi * 1.15 : 1e-12)));
                const double steps[3] = {2, 5, 10};
                ymax = p10;
                for (int k = 0; k < 3 && ymax < hi * 1.15; k++) ymax = steps[k] * p10;
            }
        }
        char title[600], stem[64];
        snprintf(title, sizeof title, "Logit lens: %s, task %s, language %s (last prompt position)",
                 o->title ? o->title : model_name, task, langs[li]);
        snprintf(stem, sizeof stem, "lens_%s", langs[li]);
        char *path = qa_path_join(o->out_dir, stem);
        int bad = qa_plot_lens(path, title, L, np, ps, ymax, o->png, o->svg, e);
        free(path);
        free(buf);
        if (bad) goto out;
    }
    rc = 0;
out:
    for (int s = 0; s < ns; s++) series_free(&S[s]);
    free(S);
    if (sets)
        for (int li = 0; li < nl; li++) lang_sets_free(&sets[li]);
    free(sets);
    qa_an_free_list(langs, nl);
    qa_sb_free(&csv);
    qa_sb_free(&items);
    qa_sb_free(&kept);
    qa_sb_free(&ecsv);
    if (have_ec) energy_free(&ec);
    return rc;
}
