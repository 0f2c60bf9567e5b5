/* plot.c — the figures of analysis/ drawn with PLplot: PNG through the pngcairo driver, SVG through
 * svgcairo (no display needed). Each figure is one PLplot stream, created and ended here. */
#include "analysis/analysis.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <math.h>
#include <plplot.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* colours: cmap0 index 0 background, 1 black, 2.. the palette (matplotlib's tab10) */
static const int PALETTE[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                                   {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
                                   {188, 189, 34},  {23, 190, 207}};
/* the lens quantities: target (orange), latent English (blue), all target (green), all English (red) */
static const int QCOLOR[4] = {1, 0, 2, 3};
static const char *QLABEL[4] = {"target language (gold label)", "latent English (gold label)",
                                "all target-language labels", "all English labels"};

int qa_plot_has_device(const char *dev) {
    /* the caller provides the arrays; n is their size on input, the device count on output */
    enum { MAXDEV = 128 };
    const char **menu = qa_calloc(MAXDEV, sizeof(char *)), **devs = qa_calloc(MAXDEV, sizeof(char *));
    int n = MAXDEV;
    plgFileDevs(&menu, &devs, &n);
    int found = 0;
    for (int i = 0; i < n && i < MAXDEV; i++)
        if (devs[i] && !strcmp(devs[i], dev)) found = 1;
    free((void *)menu);
    free((void *)devs);
    return found;
}

static void set_rgba(int idx, const int rgb[3], double alpha) { plscol0a(idx, rgb[0], rgb[1], rgb[2], alpha); }

/* plasma (matplotlib) for the entropy strip */
static void plasma_cmap1(void) {
    static const double pos[9] = {0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0};
    static const int rgb[9][3] = {{13, 8, 135},   {76, 2, 161},   {126, 3, 168},  {170, 35, 149}, {204, 71, 120},
                                  {230, 108, 92}, {248, 149, 64}, {253, 197, 39}, {240, 249, 33}};
    PLFLT p[9], r[9], g[9], b[9];
    for (int i = 0; i < 9; i++) {
        p[i] = pos[i];
        r[i] = rgb[i][0] / 255.0;
        g[i] = rgb[i][1] / 255.0;
        b[i] = rgb[i][2] / 255.0;
    }
    plscmap1n(256);
    plscmap1l(1, 9, p, r, g, b, NULL);
}

/* a new stream on device dev writing file, size w x h (pixels for PNG, points for SVG) */
static void begin(const char *dev, const char *file, int w, int h) {
    PLINT strm;
    plmkstrm(&strm);
    plsdev(dev);
    plsfnam(file);
    char geom[32];
    snprintf(geom, sizeof geom, "%dx%d", w, h);
    plsetopt("geometry", geom);
    plscmap0n(32);
    plscolbg(255, 255, 255);
    plscol0(1, 0, 0, 0);
    plinit();
    plfontld(1);
}

static int check_written(const char *file, const char *final, qa_err *e) {
    struct stat sb;
    if (stat(file, &sb) != 0 || sb.st_size == 0)
        return QA_ERR(e, "PLplot wrote no figure for %s (is the directory writable? is the disk full?)", final);
    return 0;
}

static int check_dev(const char *dev, qa_err *e) {
    if (!qa_plot_has_device(dev))
        return QA_ERR(e, "PLplot has no '%s' driver: install plplot-driver-cairo (scripts/setup.sh)", dev);
    return 0;
}

typedef void (*draw_fn)(const void *ctx);

/* draw the figure once per wanted format */
static int render(const char *stem, int png, int svg, int w, int h, draw_fn draw, const void *ctx, qa_err *e) {
    const char *devs[2] = {"pngcairo", "svgcairo"}, *ext[2] = {"png", "svg"};
    const int want[2] = {png, svg};
    for (int k = 0; k < 2; k++) {
        if (!want[k]) continue;
        QA_TRY(check_dev(devs[k], e));
        size_t n = strlen(stem) + 8;
        char *file = qa_malloc(n);
        snprintf(file, n, "%s.%s", stem, ext[k]);
        /* PLplot opens the file by name: it draws into a private staging directory (mode 0700, nothing
         * can be planted there), and the figure is committed like every output (qa_commit_rename) */
        char *stage = qa_check_output(file, e) ? NULL : qa_stage_dir_create(file, e);
        if (!stage) { free(file); return -1; }
        char *tmp = qa_path_join(stage, ext[k]);
        begin(devs[k], tmp, w, h);
        draw(ctx);
        plend1();
        int rc = check_written(tmp, file, e);
        if (!rc) rc = qa_commit_rename(tmp, file, e);
        qa_rm_tree(stage);
        free(stage);
        free(tmp);
        free(file);
        QA_TRY(rc);
    }
    return 0;
}

/* ---- the logit lens (paper Figure 1) ------------------------------------------------------------- */
typedef struct lens_ctx {
    const char *title;
    int L, n_series;
    double ymax;
    const qa_lens_plot_series *s;
} lens_ctx;

static int series_style(int s, int n_series) {
    /* 2 series: base dashed, aligned solid; more: solid, dashed, dotted, ... for the later ones */
    if (n_series == 2) return s == 0 ? 2 : 1;
    static const int st[4] = {1, 2, 3, 4};
    return st[s % 4];
}

static void draw_lens(const void *vctx) {
    const lens_ctx *c = vctx;
    const int L = c->L, S = c->n_series;
    const double x0 = 0.09, x1 = 0.64;
    const double strip_h = 0.04 * S, top = 0.84, strip_y0 = top - strip_h;
    const double xl = L > 1 ? 1 : 0.5, xr = L > 1 ? L : 1.5;
    pladv(0);
    plschr(0, 0.9);
    plwidth(1);
    plasma_cmap1();

    /* entropy strips: one row per series, a cell per layer */
    plvpor(x0, x1, strip_y0, top);
    plwind(xl - 0.5 * (L > 1 ? 1 : 0), xr + 0.5 * (L > 1 ? 1 : 0), 0, S);
    for (int s = 0; s < S; s++)
        for (int i = 0; i < L; i++) {
            double v = c->s[s].entropy ? c->s[s].entropy[i] : NAN;
            if (!isfinite(v)) continue;
            double t = v / 14.0;
            plcol1(t < 0 ? 0 : t > 1 ? 1 : t);
            PLFLT px[4] = {i + 0.5, i + 1.5, i + 1.5, i + 0.5}, py[4] = {S - s - 1, S - s - 1, S - s, S - s};
            plfill(4, px, py);
        }
    plcol0(1);
    plbox("bc", 0, 0, "bc", 0, 0);
    for (int s = 0; s < S; s++) {
        char lab[128];
        snprintf(lab, sizeof lab, "%s ", c->s[s].label ? c->s[s].label : "");
        plmtex("lv", 0.5, (S - s - 0.5) / S, 1.0, lab);
    }
    plmtex("t", 0.9, 0.0, 0.0, "entropy of the next-token distribution");

    /* its colour bar, right of the strip */
    plvpor(x1 + 0.04, x1 + 0.28, strip_y0 + 0.25 * strip_h, top - 0.25 * strip_h);
    plwind(0, 14, 0, 1);
    for (int k = 0; k < 56; k++) {
        plcol1((k + 0.5) / 56.0);
        PLFLT px[4] = {k * 0.25, (k + 1) * 0.25, (k + 1) * 0.25, k * 0.25}, py[4] = {0, 0, 1, 1};
        plfill(4, px, py);
    }
    plcol0(1);
    plbox("bcnst", 7, 7, "bc", 0, 0);
    plmtex("rv", 0.6, 0.5, 0.0, "bits");

    /* the masses with their 95% bands */
    plvpor(x0, x1, 0.10, strip_y0 - 0.06);
    /* a zoomed axis is drawn in units of 10^k: "probability (x10^-4)" */
    const double ymax = c->ymax > 0 ? c->ymax : 1;
    int expo = ymax < 0.1 ? (int)floor(log10(ymax) + 1e-9) : 0;
    const double mult = pow(10, -expo);
    plwind(xl, xr, 0, ymax * mult);
    int tick = L <= 12 ? 1 : L <= 24 ? 2 : L <= 48 ? 4 : 8;
    PLFLT *px = qa_malloc(sizeof(PLFLT) * 2 * (size_t)L), *py = qa_malloc(sizeof(PLFLT) * 2 * (size_t)L);
    for (int q = 0; q < 4; q++)
        for (int s = 0; s < S; s++) {
            const qa_lens_plot_series *ss = &c->s[s];
            if (!ss->mean[q]) continue;
            int n = 0;
            for (int i = 0; i < L; i++) {
                if (!isfinite(ss->hi[q][i])) continue;
                px[n] = i + 1;
                py[n++] = ss->hi[q][i] * mult;
            }
            for (int i = L - 1; i >= 0; i--) {
                if (!isfinite(ss->lo[q][i])) continue;
                px[n] = i + 1;
                py[n++] = ss->lo[q][i] * mult;
            }
            if (n >= 3) {
                set_rgba(2 + q, PALETTE[QCOLOR[q]], 0.13);
                plcol0(2 + q);
                plfill(n, px, py);
            }
        }
    for (int q = 0; q < 4; q++)
        for (int s = 0; s < S; s++) {
            const qa_lens_plot_series *ss = &c->s[s];
            if (!ss->mean[q]) continue;
            int n = 0;
            for (int i = 0; i < L; i++) {
                if (!isfinite(ss->mean[q][i])) continue;
                px[n] = i + 1;
                py[n++] = ss->mean[q][i] * mult;
            }
            set_rgba(2 + q, PALETTE[QCOLOR[q]], 1.0);
            plcol0(2 + q);
            pllsty(series_style(s, S));
            plwidth(2.0);
            if (n >= 2) plline(n, px, py);
            else if (n == 1) plpoin(1, px, py, 17);
        }
    free(px);
    free(py);
    pllsty(1);
    plwidth(1);
    plcol0(1);
    plbox("bcnst", tick, 0, "bcnstv", 0, 0);
    char ylab[96];
    if (expo) snprintf(ylab, sizeof ylab, "probability (\xC3\x97" "10#u%d#d, y axis zoomed)", expo);
    else snprintf(ylab, sizeof ylab, "probability%s", ymax < 1 ? " (y axis zoomed)" : "");
    pllab("layer", ylab, "");

    /* legend: the quantities (colours) and the series (line styles) */
    const int nl = 4 + S;
    PLINT opt[4 + QA_LENS_MAX_SERIES], tcol[4 + QA_LENS_MAX_SERIES], lcol[4 + QA_LENS_MAX_SERIES],
        lsty[4 + QA_LENS_MAX_SERIES];
    PLFLT lw[4 + QA_LENS_MAX_SERIES];
    const char *text[4 + QA_LENS_MAX_SERIES];
    char sl[QA_LENS_MAX_SERIES][160];
    for (int i = 0; i < nl; i++) {
        opt[i] = PL_LEGEND_LINE;
        tcol[i] = 1;
        lw[i] = 2.0;
        if (i < 4) {
            lcol[i] = 2 + i;
            lsty[i] = 1;
            text[i] = QLABEL[i];
        } else {
            int s = i - 4;
            lcol[i] = 1;
            lsty[i] = series_style(s, S);
            snprintf(sl[s], sizeof sl[s], "%s (n = %d)", c->s[s].label ? c->s[s].label : "", c->s[s].n_items);
            text[i] = sl[s];
        }
    }
    PLFLT lwid, lhei;
    plvpor(x1 + 0.03, 0.99, 0.10, strip_y0 - 0.06);
    plwind(0, 1, 0, 1);
    pllegend(&lwid, &lhei, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_LEFT | PL_POSITION_TOP | PL_POSITION_INSIDE, 0.0, 0.0, 0.08, 0, 1, 1, 0, 0, nl, opt, 0.8,
             0.85, 1.7, 0.0, tcol, text, NULL, NULL, NULL, NULL, lcol, lsty, lw, NULL, NULL, NULL, NULL);
    /* the title over the whole page */
    plvpor(0, 1, 0, 1);
    plwind(0, 1, 0, 1);
    plschr(0, 1.05);
    plmtex("t", -1.8, 0.5, 0.5, c->title);
}

int qa_plot_lens(const char *path_stem, const char *title, int L, int n_series, const qa_lens_plot_series *s,
                 double ymax, int png, int svg, qa_err *e) {
    if (L <= 0 || n_series <= 0 || n_series > QA_LENS_MAX_SERIES)
        return QA_ERR(e, "lens figure %s: %d layers, %d series", path_stem, L, n_series);
    lens_ctx c = {title ? title : "", L, n_series, ymax, s};
    return render(path_stem, png, svg, 1100, 620, draw_lens, &c, e);
}

/* ---- PCA scatter -------------------------------------------------------------------------------- */
typedef struct pca_ctx {
    const char *title;
    int n_panels, n_groups;
    const qa_pca_panel *p;
    const char *const *names;
} pca_ctx;

static void range_of(const double *v, int n, double *lo, double *hi) {
    double a = INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) {
            if (v[i] < a) a = v[i];
            if (v[i] > b) b = v[i];
        }
    if (!(a <= b)) a = -1, b = 1;
    if (b - a < 1e-12) a -= 1, b += 1;
    double pad = 0.06 * (b - a);
    *lo = a - pad;
    *hi = b + pad;
}

static void draw_pca(const void *vctx) {
    const pca_ctx *c = vctx;
    const int np = c->n_panels, cols = np <= 3 ? np : (np <= 4 ? 2 : 3), rows = (np + cols - 1) / cols;
    const double left = 0.06, right = 0.86, bottom = 0.08, top = 0.88;
    const double cw = (right - left) / cols, rh = (top - bottom) / rows;
    pladv(0);
    plschr(0, np > 1 ? 0.8 : 0.9);
    for (int g = 0; g < c->n_groups; g++) set_rgba(2 + g % 30, PALETTE[g % 10], 0.75);
    for (int k = 0; k < np; k++) {
        const qa_pca_panel *p = &c->p[k];
        const int r = k / cols, cc = k % cols;
        plvpor(left + cc * cw + 0.06, left + (cc + 1) * cw - 0.01, top - (r + 1) * rh + 0.07, top - r * rh - 0.04);
        double xa, xb, ya, yb;
        range_of(p->x, p->n, &xa, &xb);
        range_of(p->y, p->n, &ya, &yb);
        plwind(xa, xb, ya, yb);
        PLFLT *px = qa_malloc(sizeof(PLFLT) * (size_t)(p->n ? p->n : 1)),
              *py = qa_malloc(sizeof(PLFLT) * (size_t)(p->n ? p->n : 1));
        for (int g = 0; g < c->n_groups; g++) {
            int n = 0;
            for (int i = 0; i < p->n; i++)
                if (p->group[i] == g) {
                    px[n] = p->x[i];
                    py[n++] = p->y[i];
                }
            plcol0(2 + g % 30);
            plschr(0, n > 400 ? 0.45 : 0.6);
            if (n) plstring(n, px, py, "\xE2\x97\x8F"); /* U+25CF black circle */
            plschr(0, np > 1 ? 0.8 : 0.9);
        }
        free(px);
        free(py);
        plcol0(1);
        plbox("bcnst", 0, 0, "bcnstv", 0, 0);
        pllab(p->xlabel ? p->xlabel : "PC1", p->ylabel ? p->ylabel : "PC2", p->title ? p->title : "");
    }
    plvpor(0, 1, 0, 1);
    plwind(0, 1, 0, 1);
    plcol0(1);
    plschr(0, 1.0);
    plmtex("t", -1.6, 0.5, 0.5, c->title);
    /* one legend: the languages */
    const int ng = c->n_groups;
    PLINT *opt = qa_malloc(sizeof(PLINT) * (size_t)ng), *tcol = qa_malloc(sizeof(PLINT) * (size_t)ng),
          *scol = qa_malloc(sizeof(PLINT) * (size_t)ng), *snum = qa_malloc(sizeof(PLINT) * (size_t)ng);
    PLFLT *ssc = qa_malloc(sizeof(PLFLT) * (size_t)ng);
    const char **sym = qa_malloc(sizeof(char *) * (size_t)ng);
    for (int g = 0; g < ng; g++) {
        opt[g] = PL_LEGEND_SYMBOL;
        tcol[g] = 1;
        scol[g] = 2 + g % 30;
        snum[g] = 1;
        ssc[g] = 1.2;
        sym[g] = "\xE2\x97\x8F";
        set_rgba(2 + g % 30, PALETTE[g % 10], 1.0);
    }
    PLFLT lwid, lhei;
    plvpor(right, 0.99, bottom, top);
    plwind(0, 1, 0, 1);
    pllegend(&lwid, &lhei, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX, PL_POSITION_LEFT | PL_POSITION_TOP |
             PL_POSITION_INSIDE, 0.05, 0.0, 0.05, 0, 1, 1, 0, 0, ng, opt, 0.8, 0.9, 1.8, 0.0, tcol, c->names, NULL, NULL,
             NULL, NULL, NULL, NULL, NULL, scol, ssc, snum, sym);
    free(opt);
    free(tcol);
    free(scol);
    free(snum);
    free(ssc);
    free(sym);
}

int qa_plot_pca(const char *path_stem, const char *title, int n_panels, const qa_pca_panel *p, int n_groups,
                const char *const *group_names, int png, int svg, qa_err *e) {
    if (n_panels <= 0 || n_groups <= 0) return QA_ERR(e, "PCA figure %s: %d panels, %d groups", path_stem, n_panels, n_groups);
    pca_ctx c = {title ? title : "", n_panels, n_groups, p, group_names};
    const int cols = n_panels <= 3 ? n_panels : (n_panels <= 4 ? 2 : 3), rows = (n_panels + cols - 1) / cols;
    int w = 160 + 420 * cols, h = 90 + 380 * rows;
    return render(path_stem, png, svg, w, h, draw_pca, &c, e);
}

/* ---- heatmaps (qalign sweep report) ---------------------------------------------------------------- */
typedef struct heat_ctx {
    const char *title, *unit;
    int rows, cols;
    const double *v;
    const char *const *rl, *const *cl;
    const unsigned char *mark;
    double vmax, x0;
} heat_ctx;

/* blue (-vmax) .. white (0) .. red (+vmax), matplotlib's RdBu reversed */
static void diverging_cmap1(void) {
    static const double pos[5] = {0, 0.25, 0.5, 0.75, 1.0};
    static const int rgb[5][3] = {{33, 102, 172}, {146, 197, 222}, {247, 247, 247}, {244, 165, 130}, {178, 24, 43}};
    PLFLT p[5], r[5], g[5], b[5];
    for (int i = 0; i < 5; i++) {
        p[i] = pos[i];
        r[i] = rgb[i][0] / 255.0;
        g[i] = rgb[i][1] / 255.0;
        b[i] = rgb[i][2] / 255.0;
    }
    plscmap1n(256);
    plscmap1l(1, 5, p, r, g, b, NULL);
}

static void draw_heat(const void *vctx) {
    const heat_ctx *c = vctx;
    const int R = c->rows, C = c->cols;
    pladv(0);
    diverging_cmap1();
    plscol0(15, 210, 210, 210);
    const double x0 = c->x0, x1 = 0.86, y0 = 0.14, y1 = 0.86;
    plvpor(x0, x1, y0, y1);
    plwind(0, C, 0, R);
    const double cs = C > 16 ? 0.55 : C > 8 ? 0.7 : 0.85;
    for (int r = 0; r < R; r++)
        for (int k = 0; k < C; k++) {
            double v = c->v[(size_t)r * C + k];
            PLFLT px[4] = {k, k + 1, k + 1, k}, py[4] = {R - r - 1, R - r - 1, R - r, R - r};
            if (isfinite(v)) {
                double t = 0.5 + 0.5 * v / c->vmax;
                plcol1(t < 0 ? 0 : t > 1 ? 1 : t);
            } else {
                plcol0(15);
            }
            plfill(4, px, py);
            plcol0(1);
            plschr(0, cs);
            char lab[32];
            if (isfinite(v)) snprintf(lab, sizeof lab, "%+.1f", v);
            else snprintf(lab, sizeof lab, "n/a");
            plptex(k + 0.5, R - r - 0.5 - 0.12, 1, 0, 0.5, lab);
        }
    /* cells of a language seen in training: a frame */
    if (c->mark) {
        plcol0(1);
        plwidth(2.5);
        for (int r = 0; r < R; r++)
            for (int k = 0; k < C; k++)
                if (c->mark[(size_t)r * C + k]) {
                    PLFLT px[5] = {k + 0.04, k + 0.96, k + 0.96, k + 0.04, k + 0.04},
                          py[5] = {R - r - 0.96, R - r - 0.96, R - r - 0.04, R - r - 0.04, R - r - 0.96};
                    plline(5, px, py);
                }
        plwidth(1);
    }
    plcol0(1);
    plschr(0, 0.8);
    plbox("bc", 0, 0, "bc", 0, 0);
    for (int k = 0; k < C; k++) plmtex("b", 1.2, (k + 0.5) / C, 0.5, c->cl[k]);
    for (int r = 0; r < R; r++) plmtex("lv", 0.8, (R - r - 0.5) / R, 1.0, c->rl[r]);
    /* colour bar */
    plvpor(x1 + 0.03, x1 + 0.06, y0, y1);
    plwind(0, 1, -c->vmax, c->vmax);
    for (int k = 0; k < 64; k++) {
        double a = -c->vmax + 2 * c->vmax * k / 64.0, b = -c->vmax + 2 * c->vmax * (k + 1) / 64.0;
        plcol1((k + 0.5) / 64.0);
        PLFLT px[4] = {0, 1, 1, 0}, py[4] = {a, a, b, b};
        plfill(4, px, py);
    }
    plcol0(1);
    plschr(0, 0.7);
    plbox("bc", 0, 0, "bcmstv", 0, 0);
    plmtex("r", 4.2, 0.5, 0.5, c->unit);
    plvpor(0, 1, 0, 1);
    plwind(0, 1, 0, 1);
    plschr(0, 1.0);
    plmtex("t", -1.8, 0.5, 0.5, c->title);
}

int qa_plot_heatmap(const char *path_stem, const char *title, int rows, int cols, const double *v,
                    const char *const *row_labels, const char *const *col_labels, const unsigned char *mark,
                    const char *unit, int png, int svg, qa_err *e) {
    if (rows <= 0 || cols <= 0) return QA_ERR(e, "heatmap %s: %d rows, %d columns", path_stem, rows, cols);
    double vmax = 0;
    for (int i = 0; i < rows * cols; i++)
        if (isfinite(v[i]) && fabs(v[i]) > vmax) vmax = fabs(v[i]);
    if (vmax <= 0) vmax = 1;
    size_t lw = 0;
    for (int r = 0; r < rows; r++)
        if (strlen(row_labels[r]) > lw) lw = strlen(row_labels[r]);
    int w = 300 + 58 * cols + 8 * (int)lw, h = 200 + 40 * rows;
    if (w < 760) w = 760;
    if (h < 360) h = 360;
    double x0 = (8.5 * (double)lw + 40) / w;
    heat_ctx c = {title ? title : "", unit ? unit : "", rows, cols, v, row_labels, col_labels, mark, vmax,
                  x0 < 0.08 ? 0.08 : x0 > 0.45 ? 0.45 : x0};
    return render(path_stem, png, svg, w, h, draw_heat, &c, e);
}

/* ---- curves (loss of every cell) -------------------------------------------------------------------- */
typedef struct curves_ctx {
    const char *title, *xl, *yl;
    int n;
    const qa_plot_curve *c;
} curves_ctx;

static void draw_curves(const void *vctx) {
    const curves_ctx *c = vctx;
    double xa = INFINITY, xb = -INFINITY, ya = INFINITY, yb = -INFINITY;
    for (int k = 0; k < c->n; k++)
        for (int i = 0; i < c->c[k].n; i++) {
            double x = c->c[k].x[i], y = c->c[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            if (x < xa) xa = x;
            if (x > xb) xb = x;
            if (y < ya) ya = y;
            if (y > yb) yb = y;
        }
    if (!(xa < xb)) xa -= 1, xb += 1;
    if (!(ya < yb)) ya -= 1, yb += 1;
    double pad = 0.05 * (yb - ya);
    pladv(0);
    plvpor(0.08, 0.68, 0.12, 0.88);
    plwind(xa, xb, ya - pad, yb + pad);
    PLFLT *px = NULL, *py = NULL;
    for (int k = 0; k < c->n; k++) {
        const qa_plot_curve *q = &c->c[k];
        px = qa_realloc(px, sizeof(PLFLT) * (size_t)(q->n ? q->n : 1));
        py = qa_realloc(py, sizeof(PLFLT) * (size_t)(q->n ? q->n : 1));
        int m = 0;
        for (int i = 0; i < q->n; i++)
            if (isfinite(q->x[i]) && isfinite(q->y[i])) px[m] = q->x[i], py[m++] = q->y[i];
        set_rgba(2 + k % 30, PALETTE[k % 10], 1.0);
        plcol0(2 + k % 30);
        pllsty(1 + (k / 10) % 4);
        plwidth(1.6);
        if (m >= 2) plline(m, px, py);
        else if (m == 1) plpoin(1, px, py, 17);
    }
    free(px);
    free(py);
    pllsty(1);
    plwidth(1);
    plcol0(1);
    plschr(0, 0.85);
    plbox("bcnst", 0, 0, "bcnstv", 0, 0);
    pllab(c->xl, c->yl, "");
    int n = c->n < 30 ? c->n : 30;
    if (n > 0) {
        PLINT *opt = qa_malloc(sizeof(PLINT) * (size_t)n), *tcol = qa_malloc(sizeof(PLINT) * (size_t)n),
              *lcol = qa_malloc(sizeof(PLINT) * (size_t)n), *lsty = qa_malloc(sizeof(PLINT) * (size_t)n);
        PLFLT *lw = qa_malloc(sizeof(PLFLT) * (size_t)n);
        const char **text = qa_malloc(sizeof(char *) * (size_t)n);
        for (int k = 0; k < n; k++) {
            opt[k] = PL_LEGEND_LINE;
            tcol[k] = 1;
            lcol[k] = 2 + k % 30;
            lsty[k] = 1 + (k / 10) % 4;
            lw[k] = 1.6;
            text[k] = c->c[k].label ? c->c[k].label : "";
        }
        PLFLT lwid, lhei;
        plvpor(0.70, 0.99, 0.12, 0.88);
        plwind(0, 1, 0, 1);
        pllegend(&lwid, &lhei, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
                 PL_POSITION_LEFT | PL_POSITION_TOP | PL_POSITION_INSIDE, 0.0, 0.0, 0.06, 0, 1, 1, 0, 0, n, opt, 0.6,
                 0.8, 1.6, 0.0, tcol, text, NULL, NULL, NULL, NULL, lcol, lsty, lw, NULL, NULL, NULL, NULL);
        free(opt);
        free(tcol);
        free(lcol);
        free(lsty);
        free(lw);
        free(text);
    }
    plvpor(0, 1, 0, 1);
    plwind(0, 1, 0, 1);
    plschr(0, 1.0);
    plmtex("t", -1.6, 0.5, 0.5, c->title);
}

int qa_plot_curves(const char *path_stem, const char *title, int n, const qa_plot_curve *curves, const char *xlabel,
                   const char *ylabel, int png, int svg, qa_err *e) {
    if (n <= 0) return QA_ERR(e, "figure %s: no curves", path_stem);
    curves_ctx c = {title ? title : "", xlabel ? xlabel : "", ylabel ? ylabel : "", n, curves};
    return render(path_stem, png, svg, 1100, 560, draw_curves, &c, e);
}

/* ---- the training curve ------------------------------------------------------------------------- */
typedef struct loss_ctx {
    const char *title;
    const qa_loss_curve *c;
} loss_ctx;

static void draw_loss(const void *vctx) {
    const loss_ctx *lc = vctx;
    const qa_loss_curve *c = lc->c;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int64_t i = 0; i < c->n; i++)
        if (isfinite(c->loss[i])) {
            x0 = fmin(x0, (double)c->step[i]), x1 = fmax(x1, (double)c->step[i]);
            y0 = fmin(y0, c->loss[i]), y1 = fmax(y1, c->loss[i]);
        }
    for (int64_t i = 0; i < c->n_val; i++)
        if (isfinite(c->val_loss[i])) {
            x0 = fmin(x0, (double)c->val_step[i]), x1 = fmax(x1, (double)c->val_step[i]);
            y0 = fmin(y0, c->val_loss[i]), y1 = fmax(y1, c->val_loss[i]);
        }
    if (!(x0 <= x1)) x0 = 0, x1 = 1;
    if (!(y0 <= y1)) y0 = 0, y1 = 1;
    if (x1 - x0 < 1) x0 -= 0.5, x1 += 0.5;
    if (y1 - y0 < 1e-9 * (fabs(y1) + 1)) y0 -= 0.5, y1 += 0.5;
    const double px = 0.02 * (x1 - x0), py = 0.06 * (y1 - y0);
    pladv(0);
    plschr(0, 0.9);
    plvpor(0.09, 0.68, 0.12, 0.88);
    plwind(x0 - px, x1 + px, y0 - py, y1 + py);
    set_rgba(2, PALETTE[0], 1.0);
    set_rgba(3, PALETTE[1], 1.0);
    set_rgba(4, PALETTE[7], 1.0);
    /* the best step */
    if (c->best_step >= 0) {
        PLFLT bx[2] = {(double)c->best_step, (double)c->best_step}, by[2] = {y0 - py, y1 + py};
        plcol0(4);
        pllsty(2);
        plwidth(1.5);
        plline(2, bx, by);
        pllsty(1);
    }
    PLFLT *ax = qa_malloc(sizeof(PLFLT) * (size_t)(c->n + c->n_val + 1)),
          *ay = qa_malloc(sizeof(PLFLT) * (size_t)(c->n + c->n_val + 1));
    /* training loss: one line per run of finite values */
    plcol0(2);
    plwidth(1.5);
    int64_t k = 0;
    for (int64_t i = 0; i <= c->n; i++) {
        if (i < c->n && isfinite(c->loss[i])) {
            ax[k] = (double)c->step[i];
            ay[k++] = c->loss[i];
            continue;
        }
        if (k >= 2) plline((PLINT)k, ax, ay);
        else if (k == 1) plpoin(1, ax, ay, 17);
        k = 0;
    }
    /* validation loss */
    plcol0(3);
    plwidth(2.0);
    k = 0;
    for (int64_t i = 0; i < c->n_val; i++)
        if (isfinite(c->val_loss[i])) {
            ax[k] = (double)c->val_step[i];
            ay[k++] = c->val_loss[i];
        }
    if (k >= 2) plline((PLINT)k, ax, ay);
    plschr(0, 0.6);
    if (k) plstring((PLINT)k, ax, ay, "\xE2\x97\x8F");
    plschr(0, 0.9);
    if (c->best_step >= 0 && isfinite(c->best_val)) {
        PLFLT bx = (double)c->best_step, by = c->best_val;
        plcol0(4);
        plschr(0, 1.1);
        plstring(1, &bx, &by, "\xE2\x97\x8B"); /* U+25CB white circle around the best point */
        plschr(0, 0.9);
    }
    free(ax);
    free(ay);
    plwidth(1);
    plcol0(1);
    plbox("bcnst", 0, 0, "bcnstv", 0, 0);
    pllab("optimizer step", "loss (mean token cross-entropy)", "");
    /* legend */
    char best[160];
    if (c->best_step >= 0)
        snprintf(best, sizeof best, "best: step %lld (%.4g)", (long long)c->best_step, c->best_val);
    else
        snprintf(best, sizeof best, "no validation loss");
    const char *text[3] = {"training loss", "validation loss", best};
    PLINT opt[3] = {PL_LEGEND_LINE, PL_LEGEND_LINE | PL_LEGEND_SYMBOL, PL_LEGEND_LINE}, tcol[3] = {1, 1, 1},
          lcol[3] = {2, 3, 4}, lsty[3] = {1, 1, 2}, scol[3] = {2, 3, 4}, snum[3] = {1, 1, 1};
    PLFLT lw[3] = {1.5, 2.0, 1.5}, ssc[3] = {0.6, 0.6, 0.6};
    const char *sym[3] = {"", "\xE2\x97\x8F", ""};
    PLFLT lwid, lhei;
    plvpor(0.70, 0.99, 0.12, 0.88);
    plwind(0, 1, 0, 1);
    pllegend(&lwid, &lhei, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_LEFT | PL_POSITION_TOP | PL_POSITION_INSIDE, 0.0, 0.0, 0.08, 0, 1, 1, 0, 0, 3, opt, 0.8, 0.8,
             1.6, 0.0, tcol, text, NULL, NULL, NULL, NULL, lcol, lsty, lw, scol, ssc, snum, sym);
    plvpor(0, 1, 0, 1);
    plwind(0, 1, 0, 1);
    plschr(0, 1.05);
    plmtex("t", -1.8, 0.5, 0.5, lc->title);
}

int qa_plot_loss(const char *path_stem, const char *title, const qa_loss_curve *c, int png, int svg, qa_err *e) {
    if (c->n <= 0 && c->n_val <= 0) return QA_ERR(e, "loss figure %s: no loss values to draw", path_stem);
    loss_ctx lc = {title ? title : "", c};
    return render(path_stem, png, svg, 1000, 560, draw_loss, &lc, e);
}
