/* report.c — `qalign sweep report`: the cells' evaluations against their base model's, as the paper's
 * tables (rows model x mix, columns the languages + average), a summary, heatmaps, the loss curves,
 * and every number in one long CSV and one HDF5 file. Δ of a (row, task, language) = mean over the
 * row's seeds of the cell's accuracy − the base model's accuracy; its 95% interval comes from the
 * per-item paired differences (correct_cell − correct_base on the same item; pooled over seeds):
 * Δ ± 1.96 · sd / √n (sd with ddof 1), the unpaired normal interval when predictions.jsonl is missing. */
#include "sweep/sweep_internal.h"

#include "analysis/analysis.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/h5util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- one evaluation --------------------------------------------------------------------------- */
typedef struct evres {
    int ok;
    double *acc;           /* [T*L] */
    int *n;                /* [T*L] */
    int *np;               /* [T*L] predictions read */
    int **idx;             /* [T*L][np] item index */
    unsigned char **cor;   /* [T*L][np] correct */
} evres;

static int find_str(char *const *v, int n, const char *s) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(v[i], s)) return i;
    return -1;
}

static void evres_free(evres *r, int TL) {
    if (r->idx)
        for (int k = 0; k < TL; k++) free(r->idx[k]), free(r->cor[k]);
    free(r->idx);
    free(r->cor);
    free(r->acc);
    free(r->n);
    free(r->np);
    memset(r, 0, sizeof *r);
}

static void evres_load(const qa_sweep *s, const char *dir, evres *r) {
    const int T = s->n_eval_tasks, L = s->n_eval_langs, TL = T * L;
    memset(r, 0, sizeof *r);
    if (!sw_eval_done(s, dir)) return;
    qa_err e = {0};
    char *p = qa_path_join(dir, "results.json");
    json_t *j = sw_json_load(p, &e);
    free(p);
    if (!j) return;
    r->acc = qa_calloc((size_t)TL, sizeof(double));
    r->n = qa_calloc((size_t)TL, sizeof(int));
    r->np = qa_calloc((size_t)TL, sizeof(int));
    r->idx = qa_calloc((size_t)TL, sizeof(int *));
    r->cor = qa_calloc((size_t)TL, sizeof(unsigned char *));
    json_t *acc = json_object_get(j, "accuracy"), *ns = json_object_get(j, "n");
    int ok = 1;
    for (int t = 0; t < T; t++)
        for (int l = 0; l < L; l++) {
            json_t *a = json_object_get(json_object_get(acc, s->eval_tasks[t]), s->eval_langs[l]);
            json_t *n = json_object_get(json_object_get(ns, s->eval_tasks[t]), s->eval_langs[l]);
            if (!json_is_number(a) || !json_is_integer(n)) ok = 0;
            r->acc[t * L + l] = a ? json_number_value(a) : NAN;
            r->n[t * L + l] = n ? (int)json_integer_value(n) : 0;
        }
    json_decref(j);
    r->ok = ok;
    /* predictions.jsonl: task, lang, index, correct per line (task, language, index order) */
    p = qa_path_join(dir, "predictions.jsonl");
    char *text = NULL;
    if (qa_path_exists(p) && qa_read_file(p, 0, &text, NULL, &e) == 0) {
        int *cap = qa_calloc((size_t)TL, sizeof(int));
        for (char *line = text; *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            json_error_t je;
            json_t *o = json_loads(line, 0, &je);
            int t = o ? find_str(s->eval_tasks, T, json_string_value(json_object_get(o, "task"))) : -1;
            int l = o ? find_str(s->eval_langs, L, json_string_value(json_object_get(o, "lang"))) : -1;
            if (t >= 0 && l >= 0) {
                int k = t * L + l;
                if (r->np[k] == cap[k]) {
                    cap[k] = cap[k] ? 2 * cap[k] : 64;
                    r->idx[k] = qa_realloc(r->idx[k], sizeof(int) * (size_t)cap[k]);
                    r->cor[k] = qa_realloc(r->cor[k], (size_t)cap[k]);
                }
                r->idx[k][r->np[k]] = (int)json_integer_value(json_object_get(o, "index"));
                r->cor[k][r->np[k]++] = json_is_true(json_object_get(o, "correct"));
            }
            json_decref(o);
            if (!nl) break;
            line = nl + 1;
        }
        free(text);
        free(cap);
    }
    free(p);
    /* predictions are usable for pairing only when complete */
    for (int k = 0; k < TL; k++)
        if (r->np[k] != r->n[k]) r->np[k] = 0;
}

/* ---- rows: model x mix x axes, seeds pooled ------------------------------------------------------ */
typedef struct row {
    int model, mix, first;  /* first: a cell of the row (its axis values) */
    int n;
    int *cells;
} row;

static int same_row(const qa_sweep *s, const qa_sweep_cell *a, const qa_sweep_cell *b) {
    if (a->model != b->model || a->mix != b->mix) return 0;
    for (int k = 0; k < s->n_axes; k++)
        if (strcmp(a->axis_text[k], b->axis_text[k])) return 0;
    return 1;
}

/* "zh" or "zh lora.r=8" */
static char *row_label(const qa_sweep *s, const row *r) {
    qa_sbuf b = {0};
    qa_sb_puts(&b, s->mixes[r->mix].name);
    for (int k = 0; k < s->n_axes; k++) qa_sb_printf(&b, " %s=%s", s->axes[k].key, s->cells[r->first].axis_text[k]);
    return b.p;
}

typedef struct stat_acc {
    double n, sum, sumsq;   /* paired differences */
} stat_acc;

typedef struct cellv {
    double acc, base, delta, lo, hi;
    int n, seeds, paired;
} cellv;

static void interval(cellv *v, const stat_acc *p, double acc, int nc, double base, int nb, int paired) {
    v->delta = 100.0 * (acc - base);
    double half = NAN;
    if (paired && p->n >= 2) {
        double var = (p->sumsq - p->sum * p->sum / p->n) / (p->n - 1);
        half = 1.96 * sqrt(var > 0 ? var : 0) / sqrt(p->n);
    } else if (!paired && nc > 0 && nb > 0) {
        half = 1.96 * sqrt(acc * (1 - acc) / nc + base * (1 - base) / nb);
    }
    v->lo = v->delta - 100.0 * half;
    v->hi = v->delta + 100.0 * half;
    v->paired = paired;
}

/* pairs of one (cell, base) at k = t*L + l into p */
static int pair_items(const evres *c, const evres *b, int k, stat_acc *p) {
    if (!c->np[k] || !b->np[k]) return 0;
    int i = 0, j = 0, m = 0;
    while (i < c->np[k] && j < b->np[k]) {
        if (c->idx[k][i] < b->idx[k][j]) i++;
        else if (c->idx[k][i] > b->idx[k][j]) j++;
        else {
            double d = (double)c->cor[k][i] - (double)b->cor[k][j];
            p->n += 1, p->sum += d, p->sumsq += d * d;
            i++, j++, m++;
        }
    }
    return m == c->n[k];
}

/* ---- output helpers ---------------------------------------------------------------------------- */
static void csv_num(qa_sbuf *b, double v) {
    if (isfinite(v)) qa_sb_printf(b, "%.6f", v);
}

static void csv_str(qa_sbuf *b, const char *s) {
    if (strpbrk(s, ",\"\n")) {
        qa_sb_puts(b, "\"");
        for (const char *p = s; *p; p++) {
            if (*p == '"') qa_sb_puts(b, "\"\"");
            else qa_sb_put(b, p, 1);
        }
        qa_sb_puts(b, "\"");
    } else {
        qa_sb_puts(b, s);
    }
}

static int trained_lang(const qa_sweep *s, int mix, const char *lang) {
    const qa_strlist *l = &s->mixes[mix].langs;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], lang)) return 1;
    return 0;
}

static void md_delta(qa_sbuf *b, const cellv *v, int mark) {
    if (!isfinite(v->delta)) {
        qa_sb_puts(b, " – |");
        return;
    }
    qa_sb_printf(b, " %+.1f%s", v->delta, mark ? "*" : "");
    if (isfinite(v->lo)) qa_sb_printf(b, " ±%.1f", 0.5 * (v->hi - v->lo));
    qa_sb_puts(b, " |");
}

/* ---- the report ---------------------------------------------------------------------------------- */
int qa_sweep_report(const qa_sweep *s, const qa_sweep_report_opts *o, qa_err *e) {
    const int T = s->n_eval_tasks, L = s->n_eval_langs, TL = T * L;
    if (T == 0 || L == 0) return QA_ERR(e, "sweep %s: the evaluation selects no task or language", s->set.name);
    char *out = qa_sweep_path(s, "report");
    QA_TRY(qa_mkdir_p(out, e));
    /* inputs */
    evres *base = qa_calloc((size_t)s->n_models, sizeof *base), *cell = qa_calloc((size_t)s->n_cells, sizeof *cell);
    for (int m = 0; m < s->n_models; m++) {
        char *bd = qa_sweep_base_dir(s, m);
        evres_load(s, bd, &base[m]);
        free(bd);
    }
    int n_missing = 0;
    for (int i = 0; i < s->n_cells; i++) {
        char *d = qa_path_join(s->cells[i].run_dir, "eval");
        evres_load(s, d, &cell[i]);
        free(d);
        n_missing += !cell[i].ok;
    }
    row *rows = NULL;
    int R = 0;
    for (int i = 0; i < s->n_cells; i++) {
        int r = -1;
        for (int k = 0; k < R && r < 0; k++)
            if (same_row(s, &s->cells[rows[k].first], &s->cells[i])) r = k;
        if (r < 0) {
            rows = qa_realloc(rows, sizeof *rows * (size_t)(R + 1));
            r = R++;
            memset(&rows[r], 0, sizeof rows[r]);
            rows[r].model = s->cells[i].model;
            rows[r].mix = s->cells[i].mix;
            rows[r].first = i;
        }
        rows[r].cells = qa_realloc(rows[r].cells, sizeof(int) * (size_t)(rows[r].n + 1));
        rows[r].cells[rows[r].n++] = i;
    }
    /* values: [R][T][L+1] (L = the average) and the summary [R] */
    const int W = L + 1;
    cellv *V = qa_calloc((size_t)R * T * W, sizeof *V), *S = qa_calloc((size_t)R, sizeof *S);
    for (int r = 0; r < R; r++) {
        const evres *b = &base[rows[r].model];
        stat_acc all = {0};
        int all_paired = 1, seeds_min = 1 << 30;
        double sum_task_delta = 0, sum_task_base = 0, sum_task_acc = 0;
        int n_tasks_ok = 0, n_all = 0;
        for (int t = 0; t < T; t++) {
            stat_acc avg = {0};
            int avg_paired = 1, lang_ok = 0, n_tot = 0;
            double sum_delta = 0, sum_acc = 0, sum_base = 0;
            for (int l = 0; l < L; l++) {
                const int k = t * L + l;
                cellv *v = &V[((size_t)r * T + t) * W + l];
                stat_acc p = {0};
                double acc = 0;
                int seeds = 0, paired = 1, n = 0;
                for (int c = 0; c < rows[r].n; c++) {
                    const evres *ce = &cell[rows[r].cells[c]];
                    if (!ce->ok) continue;
                    acc += ce->acc[k];
                    n = ce->n[k];
                    seeds++;
                    if (b->ok) paired &= pair_items(ce, b, k, &p);
                }
                v->seeds = seeds;
                v->n = n;
                v->acc = seeds ? 100.0 * acc / seeds : NAN;
                v->base = b->ok ? 100.0 * b->acc[k] : NAN;
                v->delta = v->lo = v->hi = NAN;
                if (seeds && b->ok) {
                    interval(v, &p, acc / seeds, n * seeds, b->acc[k], b->n[k], paired);
                    avg.n += p.n, avg.sum += p.sum, avg.sumsq += p.sumsq;
                    avg_paired &= paired;
                    sum_delta += v->delta;
                    sum_acc += acc / seeds;
                    sum_base += b->acc[k];
                    n_tot += n;
                    lang_ok++;
                }
                if (seeds < seeds_min) seeds_min = seeds;
            }
            cellv *v = &V[((size_t)r * T + t) * W + L];
            v->delta = v->lo = v->hi = NAN;
            v->acc = v->base = NAN;
            v->n = n_tot;
            if (lang_ok == L) {
                interval(v, &avg, sum_acc / L, n_tot, sum_base / L, n_tot, avg_paired);
                v->delta = sum_delta / L; /* the paper's Avg: the mean of the languages */
                double half_lo = v->lo - 100.0 * (sum_acc / L - sum_base / L), half_hi = v->hi - 100.0 * (sum_acc / L - sum_base / L);
                v->lo = v->delta + half_lo;
                v->hi = v->delta + half_hi;
                v->acc = 100.0 * sum_acc / L;
                v->base = 100.0 * sum_base / L;
                all.n += avg.n, all.sum += avg.sum, all.sumsq += avg.sumsq;
                all_paired &= avg_paired;
                sum_task_delta += v->delta;
                sum_task_acc += sum_acc / L;
                sum_task_base += sum_base / L;
                n_all += n_tot;
                n_tasks_ok++;
            }
        }
        cellv *sv = &S[r];
        sv->delta = sv->lo = sv->hi = sv->acc = sv->base = NAN;
        sv->seeds = seeds_min == (1 << 30) ? 0 : seeds_min;
        sv->n = n_all;
        if (n_tasks_ok == T) {
            interval(sv, &all, sum_task_acc / T, n_all, sum_task_base / T, n_all, all_paired);
            double c0 = 100.0 * (sum_task_acc / T - sum_task_base / T);
            sv->delta = sum_task_delta / T;
            sv->lo += sv->delta - c0;
            sv->hi += sv->delta - c0;
            sv->acc = 100.0 * sum_task_acc / T;
            sv->base = 100.0 * sum_task_base / T;
        }
    }
    int rc = 0;
    qa_sbuf b = {0}, c = {0};
    /* per task: Markdown + CSV in the paper's layout */
    for (int t = 0; t < T && !rc; t++) {
        qa_sb_free(&b);
        qa_sb_free(&c);
        qa_sb_printf(&b, "# %s: Δ accuracy against the base model (percentage points)\n\n", s->eval_tasks[t]);
        qa_sb_printf(&b, "Sweep `%s`. Rows: model × training mix%s; columns: the evaluation languages and their "
                         "average. A value is the row's accuracy − its base model's on the same items (mean over "
                         "the row's seeds) ± the half-width of its 95%% interval (paired per-item differences); `*` marks a "
                         "language of the training mix; – = no results yet. The base rows give the base model's "
                         "accuracy (%%).\n\n", s->set.name, s->n_axes ? " × axes" : "");
        qa_sb_puts(&b, "| model | mix | seeds |");
        for (int l = 0; l < L; l++) qa_sb_printf(&b, " %s |", s->eval_langs[l]);
        qa_sb_puts(&b, " Avg |\n|---|---|---:|");
        for (int l = 0; l <= L; l++) qa_sb_puts(&b, "---:|");
        qa_sb_puts(&b, "\n");
        qa_sb_puts(&c, "model,mix");
        for (int k = 0; k < s->n_axes; k++) qa_sb_printf(&c, ",%s", s->axes[k].key);
        qa_sb_puts(&c, ",seeds,trained_langs");
        for (int l = 0; l <= L; l++) {
            const char *ln = l < L ? s->eval_langs[l] : "avg";
            qa_sb_printf(&c, ",%s,%s_lo,%s_hi,%s_n", ln, ln, ln, ln);
        }
        qa_sb_puts(&c, "\n");
        int last_model = -1;
        for (int r = 0; r < R; r++) {
            const int m = rows[r].model;
            if (m != last_model) {
                last_model = m;
                qa_sb_printf(&b, "| %s | base (accuracy %%) | |", s->models[m].name);
                for (int l = 0; l < L; l++) {
                    if (base[m].ok) qa_sb_printf(&b, " %.1f |", 100.0 * base[m].acc[t * L + l]);
                    else qa_sb_puts(&b, " – |");
                }
                const cellv *av = &V[((size_t)r * T + t) * W + L];
                if (isfinite(av->base)) qa_sb_printf(&b, " %.1f |\n", av->base);
                else qa_sb_puts(&b, " – |\n");
            }
            char *lab = row_label(s, &rows[r]);
            qa_sb_printf(&b, "| %s | %s | %d |", s->models[m].name, lab, V[((size_t)r * T + t) * W].seeds);
            free(lab);
            csv_str(&c, s->models[m].name);
            qa_sb_puts(&c, ",");
            csv_str(&c, s->mixes[rows[r].mix].name);
            for (int k = 0; k < s->n_axes; k++) {
                qa_sb_puts(&c, ",");
                csv_str(&c, s->cells[rows[r].first].axis_text[k]);
            }
            qa_sb_printf(&c, ",%d,", V[((size_t)r * T + t) * W].seeds);
            const qa_strlist *tl = &s->mixes[rows[r].mix].langs;
            for (int i = 0; i < tl->n; i++) qa_sb_printf(&c, "%s%s", i ? ";" : "", tl->v[i]);
            for (int l = 0; l <= L; l++) {
                const cellv *v = &V[((size_t)r * T + t) * W + l];
                md_delta(&b, v, l < L && trained_lang(s, rows[r].mix, s->eval_langs[l]));
                qa_sb_puts(&c, ",");
                csv_num(&c, v->delta);
                qa_sb_puts(&c, ",");
                csv_num(&c, v->lo);
                qa_sb_puts(&c, ",");
                csv_num(&c, v->hi);
                qa_sb_printf(&c, ",%d", v->n);
            }
            qa_sb_puts(&b, "\n");
            qa_sb_puts(&c, "\n");
        }
        qa_sb_printf(&b, "\nItems per language and seed: %d%s.\n", V[(size_t)t * W].n,
                     s->set.evaluation.limit ? " (evaluation.limit)" : "");
        char name[300];
        snprintf(name, sizeof name, "%s.md", s->eval_tasks[t]);
        rc = qa_sb_write(&b, out, name, e);
        snprintf(name, sizeof name, "%s.csv", s->eval_tasks[t]);
        if (!rc) rc = qa_sb_write(&c, out, name, e);
    }
    /* the summary: model x mix, the average over tasks and languages */
    if (!rc) {
        qa_sb_free(&b);
        qa_sb_free(&c);
        qa_sb_printf(&b, "# Sweep `%s`: Δ accuracy against the base model, averaged over %d task(s) x %d languages "
                         "(percentage points)\n\n", s->set.name, T, L);
        qa_sb_printf(&b, "%d cells, %d with results. ± the half-width of the 95%% interval from the paired per-item differences of all "
                         "tasks and languages. Per task: %s.\n\n", s->n_cells, s->n_cells - n_missing, "the <task>.md "
                         "tables");
        qa_sb_puts(&b, "| model | params | base accuracy % |");
        /* columns: the distinct row labels in order of appearance */
        char **cols = NULL;
        int nc = 0;
        for (int r = 0; r < R; r++) {
            char *lab = row_label(s, &rows[r]);
            if (find_str(cols, nc, lab) < 0) {
                cols = qa_realloc(cols, sizeof(char *) * (size_t)(nc + 1));
                cols[nc++] = lab;
            } else {
                free(lab);
            }
        }
        for (int k = 0; k < nc; k++) qa_sb_printf(&b, " %s |", cols[k]);
        qa_sb_puts(&b, "\n|---|---:|---:|");
        for (int k = 0; k < nc; k++) qa_sb_puts(&b, "---:|");
        qa_sb_puts(&b, "\n");
        qa_sb_puts(&c, "model,params,mix");
        for (int k = 0; k < s->n_axes; k++) qa_sb_printf(&c, ",%s", s->axes[k].key);
        qa_sb_puts(&c, ",seeds,n,base_acc,acc,delta,delta_lo,delta_hi\n");
        for (int m = 0; m < s->n_models; m++) {
            int any = 0;
            double bacc = NAN;
            for (int r = 0; r < R; r++)
                if (rows[r].model == m) any = 1, bacc = isfinite(S[r].base) ? S[r].base : bacc;
            if (!any) continue;
            if (!isfinite(bacc) && base[m].ok) {
                double sum = 0;
                for (int k = 0; k < TL; k++) sum += base[m].acc[k];
                bacc = 100.0 * sum / TL;
            }
            qa_sb_printf(&b, "| %s | %.3gM |", s->models[m].name, s->models[m].params / 1e6);
            if (isfinite(bacc)) qa_sb_printf(&b, " %.1f |", bacc);
            else qa_sb_puts(&b, " – |");
            for (int k = 0; k < nc; k++) {
                int rr = -1;
                for (int r = 0; r < R && rr < 0; r++) {
                    if (rows[r].model != m) continue;
                    char *lab = row_label(s, &rows[r]);
                    if (!strcmp(lab, cols[k])) rr = r;
                    free(lab);
                }
                if (rr < 0) qa_sb_puts(&b, " |");
                else md_delta(&b, &S[rr], 0);
            }
            qa_sb_puts(&b, "\n");
        }
        for (int r = 0; r < R; r++) {
            const cellv *v = &S[r];
            csv_str(&c, s->models[rows[r].model].name);
            qa_sb_printf(&c, ",%lld,", (long long)s->models[rows[r].model].params);
            csv_str(&c, s->mixes[rows[r].mix].name);
            for (int k = 0; k < s->n_axes; k++) {
                qa_sb_puts(&c, ",");
                csv_str(&c, s->cells[rows[r].first].axis_text[k]);
            }
            qa_sb_printf(&c, ",%d,%d,", v->seeds, v->n);
            csv_num(&c, v->base);
            qa_sb_puts(&c, ",");
            csv_num(&c, v->acc);
            qa_sb_puts(&c, ",");
            csv_num(&c, v->delta);
            qa_sb_puts(&c, ",");
            csv_num(&c, v->lo);
            qa_sb_puts(&c, ",");
            csv_num(&c, v->hi);
            qa_sb_puts(&c, "\n");
        }
        if (n_missing) {
            qa_sb_puts(&b, "\nCells without results (failed, running or not run; qalign sweep status):");
            for (int i = 0; i < s->n_cells; i++)
                if (!cell[i].ok) qa_sb_printf(&b, " %s", s->cells[i].name);
            qa_sb_puts(&b, "\n");
        }
        for (int m = 0; m < s->n_models; m++)
            if (!base[m].ok) qa_sb_printf(&b, "\nThe base evaluation of %s is missing: no Δ for its rows.\n",
                                          s->models[m].name);
        rc = qa_sb_write(&b, out, "summary.md", e);
        if (!rc) rc = qa_sb_write(&c, out, "summary.csv", e);
        if (!rc && o && o->out) fputs(b.p, o->out);
        /* model size x mix heatmap */
        if (!rc && (o ? o->png || o->svg : 1)) {
            int *order = qa_malloc(sizeof(int) * (size_t)s->n_models), nm = 0;
            for (int m = 0; m < s->n_models; m++) order[nm++] = m;
            for (int i = 1; i < nm; i++)
                for (int j = i; j > 0 && s->models[order[j]].params < s->models[order[j - 1]].params; j--) {
                    int t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
            double *hv = qa_malloc(sizeof(double) * (size_t)nm * (size_t)nc);
            char **rl = qa_calloc((size_t)nm, sizeof(char *));
            for (int i = 0; i < nm; i++) {
                char lb[400];
                snprintf(lb, sizeof lb, "%s (%.3gM) ", s->models[order[i]].name, s->models[order[i]].params / 1e6);
                rl[i] = qa_strdup(lb);
                for (int k = 0; k < nc; k++) {
                    hv[(size_t)i * nc + k] = NAN;
                    for (int r = 0; r < R; r++) {
                        if (rows[r].model != order[i]) continue;
                        char *lab = row_label(s, &rows[r]);
                        if (!strcmp(lab, cols[k])) hv[(size_t)i * nc + k] = S[r].delta;
                        free(lab);
                    }
                }
            }
            char *stem = qa_path_join(out, "heatmap_size_mix"), title[600];
            snprintf(title, sizeof title, "%s: model size x training mix, mean Δ accuracy over %d task(s) x %d languages",
                     s->set.name, T, L);
            rc = qa_plot_heatmap(stem, title, nm, nc, hv, (const char *const *)rl, (const char *const *)cols, NULL,
                                 "Δ accuracy (pp)", o ? o->png : 1, o ? o->svg : 1, e);
            free(stem);
            for (int i = 0; i < nm; i++) free(rl[i]);
            free(rl);
            free(hv);
            free(order);
        }
        for (int k = 0; k < nc; k++) free(cols[k]);
        free(cols);
    }
    /* per model and task: training mix x evaluation language */
    for (int m = 0; m < s->n_models && !rc && (o ? o->png || o->svg : 1); m++) {
        int nr = 0;
        for (int r = 0; r < R; r++) nr += rows[r].model == m;
        if (!nr) continue;
        for (int t = 0; t < T && !rc; t++) {
            double *hv = qa_malloc(sizeof(double) * (size_t)nr * L);
            unsigned char *mk = qa_calloc((size_t)nr * L, 1);
            char **rl = qa_calloc((size_t)nr, sizeof(char *));
            int i = 0;
            for (int r = 0; r < R; r++) {
                if (rows[r].model != m) continue;
                char *lab = row_label(s, &rows[r]);
                size_t ll = strlen(lab);
                rl[i] = qa_realloc(lab, ll + 2);
                rl[i][ll] = ' ', rl[i][ll + 1] = 0;
                for (int l = 0; l < L; l++) {
                    hv[(size_t)i * L + l] = V[((size_t)r * T + t) * W + l].delta;
                    mk[(size_t)i * L + l] = (unsigned char)trained_lang(s, rows[r].mix, s->eval_langs[l]);
                }
                i++;
            }
            char name[600], title[800];
            snprintf(name, sizeof name, "heatmap_%s_%s", s->models[m].name, s->eval_tasks[t]);
            snprintf(title, sizeof title, "%s, %s: Δ accuracy vs the base model (framed: languages of the training mix)",
                     s->models[m].name, s->eval_tasks[t]);
            char *stem = qa_path_join(out, name);
            rc = qa_plot_heatmap(stem, title, nr, L, hv, (const char *const *)rl, (const char *const *)s->eval_langs, mk,
                                 "Δ accuracy (pp)", o ? o->png : 1, o ? o->svg : 1, e);
            free(stem);
            for (int k = 0; k < nr; k++) free(rl[k]);
            free(rl);
            free(hv);
            free(mk);
        }
    }
    /* loss curves of every cell, and the long CSV / HDF5 */
    double **lx = qa_calloc((size_t)s->n_cells, sizeof(double *)), **ly = qa_calloc((size_t)s->n_cells, sizeof(double *));
    int *ln = qa_calloc((size_t)s->n_cells, sizeof(int));
    for (int i = 0; i < s->n_cells; i++) {
        char *p = qa_path_join(s->cells[i].run_dir, "metrics.jsonl"), *text = NULL;
        qa_err le = {0};
        if (qa_path_exists(p) && qa_read_file(p, 0, &text, NULL, &le) == 0) {
            int cap = 0;
            for (char *line = text; *line;) {
                char *nl = strchr(line, '\n');
                if (nl) *nl = 0;
                json_error_t je;
                json_t *j = json_loads(line, 0, &je);
                if (j && json_object_get(j, "loss")) {
                    if (ln[i] == cap) {
                        cap = cap ? 2 * cap : 64;
                        lx[i] = qa_realloc(lx[i], sizeof(double) * (size_t)cap);
                        ly[i] = qa_realloc(ly[i], sizeof(double) * (size_t)cap);
                    }
                    lx[i][ln[i]] = (double)json_integer_value(json_object_get(j, "step"));
                    ly[i][ln[i]++] = json_number_value(json_object_get(j, "loss"));
                }
                json_decref(j);
                if (!nl) break;
                line = nl + 1;
            }
        }
        free(text);
        free(p);
    }
    if (!rc && (o ? o->png || o->svg : 1)) {
        qa_plot_curve *cv = qa_calloc((size_t)s->n_cells, sizeof *cv);
        int n = 0;
        for (int i = 0; i < s->n_cells; i++)
            if (ln[i]) cv[n].label = s->cells[i].name, cv[n].n = ln[i], cv[n].x = lx[i], cv[n++].y = ly[i];
        if (n) {
            char *stem = qa_path_join(out, "loss"), title[600];
            snprintf(title, sizeof title, "%s: training loss of every cell", s->set.name);
            rc = qa_plot_curves(stem, title, n, cv, "optimizer step", "training loss", o ? o->png : 1, o ? o->svg : 1, e);
            free(stem);
        }
        free(cv);
    }
    if (!rc) {
        /* results.csv: everything, one line per (row, task, language or avg) */
        qa_sb_free(&c);
        qa_sb_puts(&c, "model,params,mix");
        for (int k = 0; k < s->n_axes; k++) qa_sb_printf(&c, ",%s", s->axes[k].key);
        qa_sb_puts(&c, ",seeds,task,lang,trained,n,base_acc,acc,delta,delta_lo,delta_hi,paired\n");
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++)
                for (int l = 0; l <= L; l++) {
                    const cellv *v = &V[((size_t)r * T + t) * W + l];
                    csv_str(&c, s->models[rows[r].model].name);
                    qa_sb_printf(&c, ",%lld,", (long long)s->models[rows[r].model].params);
                    csv_str(&c, s->mixes[rows[r].mix].name);
                    for (int k = 0; k < s->n_axes; k++) {
                        qa_sb_puts(&c, ",");
                        csv_str(&c, s->cells[rows[r].first].axis_text[k]);
                    }
                    qa_sb_printf(&c, ",%d,%s,%s,%d,%d,", V[((size_t)r * T + t) * W].seeds, s->eval_tasks[t],
                                 l < L ? s->eval_langs[l] : "avg",
                                 l < L ? trained_lang(s, rows[r].mix, s->eval_langs[l]) : 0, v->n);
                    csv_num(&c, v->base);
                    qa_sb_puts(&c, ",");
                    csv_num(&c, v->acc);
                    qa_sb_puts(&c, ",");
                    csv_num(&c, v->delta);
                    qa_sb_puts(&c, ",");
                    csv_num(&c, v->lo);
                    qa_sb_puts(&c, ",");
                    csv_num(&c, v->hi);
                    qa_sb_printf(&c, ",%d\n", isfinite(v->delta) ? v->paired : 0);
                }
        rc = qa_sb_write(&c, out, "results.csv", e);
    }
    if (!rc) {
        /* sweep.h5: per task [rows, languages + avg] arrays, the summary, every loss curve */
        qa_h5_quiet q;
        qa_h5_quiet_begin(&q);
        qa_h5_mem mem = {0};
        void *buf = NULL;
        size_t len = 0;
        hid_t f = qa_h5_create_mem_file("sweep.h5", 0, &mem, e);
        int bad = f < 0;
        char **rlab = qa_calloc((size_t)R, sizeof(char *)), **clab = qa_calloc((size_t)W, sizeof(char *));
        for (int r = 0; r < R; r++) {
            char *lab = row_label(s, &rows[r]);
            size_t n = strlen(lab) + strlen(s->models[rows[r].model].name) + 4;
            rlab[r] = qa_malloc(n);
            snprintf(rlab[r], n, "%s / %s", s->models[rows[r].model].name, lab);
            free(lab);
        }
        for (int l = 0; l < W; l++) clab[l] = l < L ? s->eval_langs[l] : "avg";
        qa_h5_dset_opts op = {0, 4, 1};
        bad = bad || qa_h5_attr_str(f, "format", "qalign-sweep-report", e) || qa_h5_attr_str(f, "sweep", s->set.name, e) ||
              qa_h5_attr_strs(f, "rows", (const char *const *)rlab, (size_t)R, e) ||
              qa_h5_attr_strs(f, "columns", (const char *const *)clab, (size_t)W, e) ||
              qa_h5_attr_str(f, "units", "accuracy in %, delta in percentage points; delta = row accuracy (mean over "
                                         "seeds) - base accuracy; [lo, hi] a 95% interval", e);
        double *buf2 = qa_malloc(sizeof(double) * (size_t)R * W);
        int64_t *nb = qa_malloc(sizeof(int64_t) * (size_t)R * W);
        for (int t = 0; t < T && !bad; t++) {
            static const char *const Q[] = {"delta", "delta_lo", "delta_hi", "acc", "base_acc"};
            for (int q = 0; q < 5 && !bad; q++) {
                for (int r = 0; r < R; r++)
                    for (int l = 0; l < W; l++) {
                        const cellv *v = &V[((size_t)r * T + t) * W + l];
                        const double x[5] = {v->delta, v->lo, v->hi, v->acc, v->base};
                        buf2[(size_t)r * W + l] = x[q];
                        nb[(size_t)r * W + l] = v->n;
                    }
                char name[400];
                snprintf(name, sizeof name, "tasks/%s/%s", s->eval_tasks[t], Q[q]);
                int64_t sh[2] = {R, W};
                bad = qa_h5_write(f, name, QA_H5_F64, 2, sh, buf2, &op, NULL, e);
            }
            char name[400];
            snprintf(name, sizeof name, "tasks/%s/n", s->eval_tasks[t]);
            int64_t sh[2] = {R, W};
            if (!bad) bad = qa_h5_write(f, name, QA_H5_I64, 2, sh, nb, &op, NULL, e);
        }
        for (int r = 0; r < R && !bad; r++) buf2[r] = S[r].delta;
        int64_t shr[1] = {R};
        if (!bad) bad = qa_h5_write(f, "summary/delta", QA_H5_F64, 1, shr, buf2, &op, NULL, e);
        for (int i = 0; i < s->n_cells && !bad; i++) {
            if (!ln[i]) continue;
            char name[64];
            snprintf(name, sizeof name, "loss/cell_%03d", i);
            hid_t g = qa_h5_create_group(f, name, e);
            int64_t sh[1] = {ln[i]};
            bad = g < 0 || qa_h5_attr_str(g, "cell", s->cells[i].id, e) ||
                  qa_h5_write(g, "step", QA_H5_F64, 1, sh, lx[i], &op, NULL, e) ||
                  qa_h5_write(g, "loss", QA_H5_F64, 1, sh, ly[i], &op, NULL, e);
            qa_h5_close(&g);
        }
        free(buf2);
        free(nb);
        for (int r = 0; r < R; r++) free(rlab[r]);
        free(rlab);
        free(clab);
        if (!bad && qa_h5_mem_close(&f, &mem, "sweep.h5", &buf, &len, e) == 0) {
            char *p = qa_path_join(out, "sweep.h5");
            rc = qa_write_file_atomic(p, buf, len, e);
            free(p);
        } else {
            rc = -1;
        }
        free(buf);
        qa_h5_close(&f);
        free(mem.kept);
        qa_h5_quiet_end(&q);
    }
    if (!rc && o && o->out)
        fprintf(o->out, "\nreport: %s/ (<task>.md/.csv, summary.md/.csv, results.csv, sweep.h5, heatmap_*.png/.svg, "
                        "loss.png/.svg)\n", out);
    for (int i = 0; i < s->n_cells; i++) free(lx[i]), free(ly[i]);
    free(lx);
    free(ly);
    free(ln);
    qa_sb_free(&b);
    qa_sb_free(&c);
    for (int r = 0; r < R; r++) free(rows[r].cells);
    free(rows);
    free(V);
    free(S);
    for (int m = 0; m < s->n_models; m++) evres_free(&base[m], TL);
    for (int i = 0; i < s->n_cells; i++) evres_free(&cell[i], TL);
    free(base);
    free(cell);
    free(out);
    return rc;
}
