/* analysis.h — looking inside a model (docs/analysis.md, paper-protocol.md §8-§9):
 *   - the logit lens of activation dumps (io/actdump.h): per layer the probability mass of the gold
 *     target-language label, of its English counterpart (the "latent" answer), of both label sets,
 *     and the entropy, mean and 95% interval over items, base and aligned on one figure;
 *   - PCA of per-layer representations: a 2-D scatter per layer coloured by language, and the
 *     Pearson correlation of the first component's scores between index-paired items of language
 *     pairs.
 * Every number goes to CSV (and HDF5); figures are drawn with PLplot (PNG via pngcairo, SVG via
 * svgcairo; headless).
 *
 *   qa_lens_opts o; qa_lens_opts_default(&o); o.n_series = 2; o.dumps[0] = "base.h5"; ...
 *   qa_lens_run(&model, tok, &o, &e);        // the model provides the final norm and lm_head
 *   qa_pca_opts p; qa_pca_opts_default(&p); p.dump = "aligned.h5"; p.out_dir = "out";
 *   qa_pca_run(&p, &e);                      // no model needed
 */
#ifndef QA_ANALYSIS_H
#define QA_ANALYSIS_H
#include "common/qa_err.h"
#include "common/qa_log.h"
#include "io/actdump.h"
#include "tokenizer/tokenizer.h"
#include "model/model.h"

#include <stdint.h>

/* ---- logit lens (§8) ------------------------------------------------------------------------- */
enum {
    QA_LENS_TARGET = 0,    /* mass of the gold label's target-language token set */
    QA_LENS_LATENT = 1,    /* mass of the gold label's English token set ("latent English") */
    QA_LENS_ALL_TARGET = 2,/* mass of the union of every label's target-language set */
    QA_LENS_ALL_ENGLISH = 3,/* mass of the union of every label's English set */
    QA_LENS_ENTROPY = 4,   /* Σ -p log2 p of the full next-token distribution, bits */
    QA_LENS_NQ = 5
};
const char *qa_lens_quantity_name(int q);   /* "target", "latent_en", "all_target", "all_en", "entropy" */

#define QA_LENS_MAX_SERIES 8
typedef struct qa_lens_opts {
    int n_series;
    const char *dumps[QA_LENS_MAX_SERIES];   /* activation dumps (the /last pool), e.g. base and aligned */
    const char *labels[QA_LENS_MAX_SERIES];  /* legend names (NULL: "base"/"aligned" for 2 series, else the
                                                dump's adapter or file name) */
    const char *task;        /* NULL: the dumps' only task */
    const char *langs;       /* "ru,zh"; NULL = every language of the dumps */
    const char *out_dir;     /* lens.csv, lens_items.csv, lens.h5, lens_kept.csv, lens_<lang>.png/.svg */
    const char *title;       /* figure title prefix (NULL: the model's directory name) */
    const char *model_id;    /* the model's directory: a dump recording another one gets a warning (the shapes
                                must match in any case) */
    int png, svg;            /* figure formats (default both) */
    double ymax;             /* y axis top: 1 (the paper's [0, 1]); 0 = auto (default): 1, unless every
                                band stays below 0.25 (random or tiny models), then zoomed to the data */
    qa_log_fn log;
    void *log_ctx;
} qa_lens_opts;
void qa_lens_opts_default(qa_lens_opts *o);

/* Everything: per series and language, the kept items (filter of §8), per item and layer 1..L the
 * five quantities, their means and 95% intervals (mean ± 1.96·sd/√n, sd with ddof 0), the files
 * and one figure per language. m provides final_norm and lm_head (an adapter does not change them);
 * tok the label-token sets (eval/ process_tokens). Fails, naming the file, when a dump was made
 * with another model (layer count or width) or misses a dataset. */
int qa_lens_run(qa_model *m, const qa_tokenizer *tok, const qa_lens_opts *o, qa_err *e);

/* Building blocks (tests): a dump must match the model (n_layers, hidden, vocab when recorded). */
int qa_lens_check_dump(const qa_actdump *d, const qa_model *m, qa_err *e);
/* The lens logits [n, V] of dump rows rows[0..n) at `layer` (1..L; 0 = embeddings also works):
 * lm_head(final_norm(h)) of /last/layer_XX, without the norm for layer L (already normed). */
int qa_lens_layer_logits(qa_model *m, const qa_actdump *d, int layer, const int64_t *rows, int n, float *logits,
                         qa_err *e);
/* The five quantities of one logits row [V] (softmax in double). Sets are sorted id lists. */
typedef struct qa_lens_sets {
    const int32_t *ids[4];   /* QA_LENS_TARGET .. QA_LENS_ALL_ENGLISH */
    int n[4];
} qa_lens_sets;
void qa_lens_quantities(const float *logits, int V, const qa_lens_sets *s, double out[QA_LENS_NQ]);

/* ---- PCA and Pearson (§9) ------------------------------------------------------------------- */
typedef struct qa_pca_opts {
    const char *dump;        /* activation dump */
    const char *task;        /* NULL: the dump's only task */
    const char *langs;       /* NULL: every language of the dump, in its order (the fit uses exactly these) */
    const char *pool;        /* "mean" (default, the paper) or "last" */
    const char *layers;      /* "all" (default) or a list "0,12,24" */
    const char *plot_layers; /* scatter figures; NULL: about L/4, L/2, 3L/4 and L */
    int bucket_size;         /* items per record-index bucket of pca_buckets.png/.svg, the notebook's scatter
                                coloured by index (0-100, 100-200, ...; default 100); 0 = no such figure */
    int all_pairs;           /* 1: every language pair; 0 (default): the paper's pairs among the present
                                languages (en-de en-fr en-hi de-fr de-hi fr-hi en-th en-sw en-ms), all pairs
                                when none of them is present */
    const char *out_dir;     /* pca.h5, pca_scores.csv, pca_variance.csv, pearson.csv, pearson.md,
                                pca_layer_XX.png/.svg, pca.png/.svg (the plotted layers side by side),
                                pca_buckets.png/.svg (the same points coloured by record-index bucket) */
    const char *title;
    int png, svg;
    qa_log_fn log;
    void *log_ctx;
} qa_pca_opts;
void qa_pca_opts_default(qa_pca_opts *o);
int qa_pca_run(const qa_pca_opts *o, qa_err *e);

/* The first k principal components of X [n, D] (rows = samples, mean-centred here, no whitening, as
 * sklearn's PCA): scores [n, k], components [k, D] (unit rows), variance [k] (eigenvalues of the
 * covariance, ddof 1), *total = the total variance. Sign: the largest-magnitude score of each
 * component is positive (sklearn's svd_flip). Blocked subspace iteration with Rayleigh-Ritz in
 * double, to a relative residual of 1e-12 (exact for D <= k + 8). Components beyond the rank of X
 * come out as zeros. *iters (may be NULL) = iterations used; returns -1 only on bad shapes. */
int qa_pca_fit(const float *X, int n, int D, int k, double *scores, double *components, double *variance,
               double *total, int *iters, qa_err *e);
/* Pearson r of a and b [n]; NAN when n < 2 or either has zero variance. */
double qa_pearson(const double *a, const double *b, int n);

/* ---- the training curve (metrics.jsonl of qalign train; analysis/loss.c) ---------------------- */
typedef struct qa_loss_curve {
    int64_t n;               /* training loss per optimizer step */
    const int64_t *step;
    const double *loss, *lr; /* NAN where not finite; lr may be NULL */
    int64_t n_val;           /* validation passes */
    const int64_t *val_step;
    const double *val_loss;
    int64_t best_step;       /* the lowest validation loss (-1: none) */
    double best_val;
} qa_loss_curve;
/* out_dir/loss.csv (step, loss, lr, val_loss; one row per step that has either) and loss.png / loss.svg:
 * the training loss per step, the validation loss per pass, the best step marked. */
int qa_loss_curve_write(const qa_loss_curve *c, const char *out_dir, const char *title, int png, int svg, qa_err *e);

/* ---- figures (PLplot) -------------------------------------------------------------------------- */
/* 1 if PLplot has the driver ("pngcairo", "svgcairo"). */
int qa_plot_has_device(const char *dev);

typedef struct qa_lens_plot_series {
    const char *label;       /* legend */
    const double *mean[4], *lo[4], *hi[4]; /* [L] per quantity QA_LENS_TARGET..ALL_ENGLISH, layers 1..L */
    const double *entropy;   /* [L] mean entropy (bits) */
    int n_items;
} qa_lens_plot_series;
/* The paper's Figure 1: x = layer 1..L, y in [0, ymax] (ymax <= 0: 1), a line and a 95% band per
 * quantity and series (2 series: the first dashed, the second solid), an entropy strip per series on
 * top (plasma, 0..14 bits). Writes path_stem.png and/or path_stem.svg. */
int qa_plot_lens(const char *path_stem, const char *title, int L, int n_series, const qa_lens_plot_series *s,
                 double ymax, int png, int svg, qa_err *e);

typedef struct qa_pca_panel {
    const char *title;       /* "layer 18" */
    int n;                   /* points */
    const double *x, *y;     /* [n] PC1, PC2 scores */
    const int *group;        /* [n] language index */
    const char *xlabel, *ylabel;
} qa_pca_panel;
/* Scatter panels side by side (one row up to 3 panels, then a grid), coloured by group with a legend of
 * group_names. */
int qa_plot_pca(const char *path_stem, const char *title, int n_panels, const qa_pca_panel *p, int n_groups,
                const char *const *group_names, int png, int svg, qa_err *e);
/* A heatmap: rows x cols values (NaN: no value, grey), coloured on a diverging scale symmetric around
 * 0 (blue < 0 < red), each cell labelled with its value; mark (may be NULL) frames cells; a colour
 * bar labelled unit. For the sweep report (training mix x evaluation language, model size x mix). */
int qa_plot_heatmap(const char *path_stem, const char *title, int rows, int cols, const double *v,
                    const char *const *row_labels, const char *const *col_labels, const unsigned char *mark,
                    const char *unit, int png, int svg, qa_err *e);

typedef struct qa_plot_curve {
    const char *label;       /* legend */
    int n;
    const double *x, *y;     /* [n]; non-finite points are skipped */
} qa_plot_curve;
/* Lines in one axes with a legend (the first 30 curves), e.g. the loss of every cell of a sweep. */
int qa_plot_curves(const char *path_stem, const char *title, int n, const qa_plot_curve *curves, const char *xlabel,
                   const char *ylabel, int png, int svg, qa_err *e);

/* The training curve: x = optimizer step, the training loss (line), the validation loss (line and points),
 * a dashed vertical line at the best step. */
int qa_plot_loss(const char *path_stem, const char *title, const qa_loss_curve *c, int png, int svg, qa_err *e);
#endif
