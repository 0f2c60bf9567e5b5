/* best.c — the checkpoint and adapter of the lowest validation loss (train/best.h). */
#include "train/best.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "eval/eval.h"
#include "io/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BEST_SUBDIR "best"

/* ---- metrics.jsonl ------------------------------------------------------------------------------- */
/* the number after "key": in line: 1 read, 0 key absent, -1 unreadable (null / nan / inf give NAN) */
static int num_after(const char *line, const char *key, double *v) {
    const char *p = strstr(line, key);
    if (!p) return 0;
    p += strlen(key);
    while (*p == ' ') p++;
    if (!strncmp(p, "null", 4)) { *v = NAN; return 1; }
    char *end;
    *v = strtod(p, &end);
    if (end == p || (*end && *end != ',' && *end != '}' && *end != ' ')) return -1;
    if (!isfinite(*v)) *v = NAN;
    return 1;
}

static void push(int64_t **s, double **a, double **b, int64_t *n, int64_t *cap, int64_t step, double x, double y) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *s = qa_realloc(*s, sizeof **s * (size_t)*cap);
        *a = qa_realloc(*a, sizeof **a * (size_t)*cap);
        if (b) *b = qa_realloc(*b, sizeof **b * (size_t)*cap);
    }
    (*s)[*n] = step;
    (*a)[*n] = x;
    if (b) (*b)[*n] = y;
    (*n)++;
}

int qa_metrics_read(const char *path, int64_t max_step, qa_metrics *m, qa_err *e) {
    memset(m, 0, sizeof *m);
    char *buf = NULL;
    size_t len = 0;
    if (qa_read_file(path, 0, &buf, &len, e)) return -1;
    int64_t cap_t = 0, cap_v = 0;
    int lineno = 0, rc = 0;
    for (char *line = buf; *line && !rc;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        lineno++;
        double st, v, lr = NAN;
        const int has_step = num_after(line, "\"step\":", &st);
        const int has_val = num_after(line, "\"val_loss\":", &v);
        const int has_loss = has_val ? 0 : num_after(line, "\"loss\":", &v);
        if (has_val || has_loss) {
            if (has_step != 1 || !(st >= 0) || st != floor(st))
                rc = QA_ERR(e, "%s line %d: a %s without a readable \"step\" (not a metrics.jsonl of qalign train?)",
                            path, lineno, has_val ? "validation loss" : "training loss");
            else if (has_val < 0 || has_loss < 0)
                rc = QA_ERR(e, "%s line %d: the value of \"%s\" is not a number", path, lineno,
                            has_val ? "val_loss" : "loss");
            else if (max_step < 0 || (int64_t)st <= max_step) {
                if (has_val)
                    push(&m->val_step, &m->val_loss, NULL, &m->n_val, &cap_v, (int64_t)st, v, 0);
                else {
                    if (num_after(line, "\"lr\":", &lr) != 1) lr = NAN;
                    push(&m->step, &m->loss, &m->lr, &m->n_train, &cap_t, (int64_t)st, v, lr);
                }
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    free(buf);
    if (rc) qa_metrics_free(m);
    return rc;
}

void qa_metrics_free(qa_metrics *m) {
    free(m->step);
    free(m->loss);
    free(m->lr);
    free(m->val_step);
    free(m->val_loss);
    memset(m, 0, sizeof *m);
}

qa_best_val qa_metrics_best(const qa_metrics *m) {
    qa_best_val b = {-1, NAN, m->n_val};
    for (int64_t i = 0; i < m->n_val; i++)
        if (isfinite(m->val_loss[i]) && (b.step < 0 || m->val_loss[i] < b.val_loss)) {
            b.step = m->val_step[i];
            b.val_loss = m->val_loss[i];
        }
    return b;
}

/* ---- files of RUN_DIR/best ---------------------------------------------------------------------- */
static char *best_dir(const char *run_dir) { return qa_path_join(run_dir, BEST_SUBDIR); }

/* the step of a path named .../step_N.h5, -1 otherwise */
static int64_t step_of(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    int64_t s;
    int used = 0;
    if (sscanf(b, "step_%" SCNd64 ".h5%n", &s, &used) != 1 || used == 0 || b[used]) return -1;
    return s;
}

static void remove_ckpt(const char *path) {
    size_t n = strlen(path) + 8;
    char *sc = qa_malloc(n);
    snprintf(sc, n, "%s.crc32c", path);
    unlink(sc);
    unlink(path);
    free(sc);
}

/* dst becomes the same file as src: a hard link under a fresh random name ("<dst>.tmp.<12 hex>", never a
 * reused pid's name) put in place by rename, or an atomic copy where the file system has no hard links (or
 * src and dst are on different ones). A temporary a killed run left is removed by the next init_coord. */
static int keep_file(const char *src, const char *dst, qa_err *e) {
    char *tmp = qa_tmp_name(dst);
    int rc = 0;
    if (link(src, tmp) == 0) {
        if (rename(tmp, dst) < 0) {
            rc = QA_ERRNO(e, errno, "keeping %s as %s: cannot rename %s", src, dst, tmp);
            unlink(tmp);
        }
    } else {
        rc = qa_copy_file(src, dst, e);
        if (rc) qa_err_prefix(e, "keeping %s as %s (copy; no hard link possible)", src, dst);
    }
    free(tmp);
    return rc;
}

static void logline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logline(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("qalign: ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

/* ---- the trainer's side ------------------------------------------------------------------------- */
/* rank 0 of qa_best_init: the lowest loss so far and the pinned checkpoint of it */
static int init_coord(qa_best *b, int64_t step, qa_err *e) {
    char *mp = qa_path_join(b->run_dir, "metrics.jsonl");
    int rc = 0;
    if (qa_path_exists(mp)) {
        qa_metrics m;
        rc = qa_metrics_read(mp, step, &m, e);
        if (!rc) {
            b->best = qa_metrics_best(&m);
            qa_metrics_free(&m);
        }
    }
    free(mp);
    if (rc) return -1;
    char *bd = best_dir(b->run_dir), *cd = qa_ckpt_dir(bd);
    qa_remove_stale_temps(bd, "");   /* best.json.tmp.* of an interrupted pin */
    qa_remove_stale_temps(cd, "");   /* step_N.h5[.crc32c].tmp.* links and copies of an interrupted pin */
    qa_ckpt_entry *v = NULL;
    size_t n = 0;
    rc = qa_ckpt_list(cd, &v, &n, e);
    for (size_t i = 0; i < n && !rc; i++) {
        if (v[i].tmp || v[i].step > step) {
            if (!v[i].tmp)
                logline("best: removing %s (step %" PRId64 ", after the resumed step %" PRId64 ")", v[i].path,
                        v[i].step, step);
            remove_ckpt(v[i].path);
        } else if (v[i].step == b->best.step) {
            b->pinned_step = v[i].step;
            snprintf(b->pinned, sizeof b->pinned, "%s", v[i].path);
        }
    }
    qa_ckpt_list_free(v, n);
    free(cd);
    free(bd);
    if (!rc && b->best.step >= 0 && b->pinned_step != b->best.step)
        logline("best: warning: the lowest validation loss so far (%.6f, step %" PRId64 ") has no checkpoint in %s/%s; "
                "the next lower one will be kept", b->best.val_loss, b->best.step, b->run_dir, BEST_SUBDIR);
    return rc;
}

int qa_best_init(qa_best *b, qa_dist *d, const char *run_dir, int enabled, int64_t step, qa_err *e) {
    memset(b, 0, sizeof *b);
    b->best = (qa_best_val){-1, NAN, 0};
    b->pinned_step = -1;
    snprintf(b->run_dir, sizeof b->run_dir, "%s", run_dir);
    b->enabled = enabled;
    if (!enabled) return 0;
    int32_t ok = 1;
    if (qa_dist_is_coordinator(d)) ok = init_coord(b, step, e) == 0;
    double msg[4] = {ok, (double)b->best.step, b->best.val_loss, (double)b->best.n_val};
    qa_dist_bcast(d, msg, sizeof msg, 0, "best checkpoint: state");
    if (!(msg[0] > 0)) {
        if (!qa_dist_is_coordinator(d)) QA_ERR(e, "rank 0 could not read the best-checkpoint state (see its message)");
        return -1;
    }
    b->best = (qa_best_val){(int64_t)msg[1], msg[2], (int64_t)msg[3]};
    return 0;
}

void qa_best_observe(qa_best *b, qa_dist *d, int64_t step, double val_loss) {
    if (!b->enabled) return;
    int32_t better = 0;
    if (qa_dist_is_coordinator(d))
        better = isfinite(val_loss) && (b->best.step < 0 || val_loss < b->best.val_loss); /* first best kept on ties */
    qa_dist_bcast(d, &better, sizeof better, 0, "best checkpoint: observe");
    b->best.n_val++;
    if (!better) return;
    b->best.step = step;
    b->best.val_loss = val_loss;
    b->pending = 1;
}

int qa_best_pending(const qa_best *b) { return b->enabled && b->pending; }

int qa_best_have_checkpoint(const qa_best *b, qa_dist *d, int64_t step, const char *last_ckpt) {
    int32_t have = qa_dist_is_coordinator(d) && last_ckpt && step_of(last_ckpt) == step;
    qa_dist_bcast(d, &have, sizeof have, 0, "best checkpoint: committed?");
    (void)b;
    return have;
}

static int pin_coord(qa_best *b, const char *last_ckpt, qa_err *e) {
    const int64_t step = b->best.step;
    if (!last_ckpt || step_of(last_ckpt) != step)
        return QA_ERR(e, "best checkpoint: the newest committed checkpoint '%s' is not the one of step %" PRId64
                         " (internal error)", last_ckpt ? last_ckpt : "", step);
    char *bd = best_dir(b->run_dir), *cd = qa_ckpt_dir(bd), *dst = NULL, *json = NULL;
    int rc = qa_mkdir_p(cd, e);
    if (!rc) {
        const char *base = strrchr(last_ckpt, '/');
        dst = qa_path_join(cd, base ? base + 1 : last_ckpt);
        size_t n = strlen(last_ckpt) + 8, m = strlen(dst) + 8;
        char *ssc = qa_malloc(n), *dsc = qa_malloc(m);
        snprintf(ssc, n, "%s.crc32c", last_ckpt);
        snprintf(dsc, m, "%s.crc32c", dst);
        if (qa_path_exists(ssc)) rc = keep_file(ssc, dsc, e); /* the checksum first: a kept file always has it */
        if (!rc) rc = keep_file(last_ckpt, dst, e);
        free(ssc);
        free(dsc);
    }
    if (!rc) {
        json_t *j = json_object();
        json_object_set_new(j, "step", json_integer(step));
        json_object_set_new(j, "val_loss", json_real(b->best.val_loss));
        json_object_set_new(j, "validation_pass", json_integer(b->best.n_val)); /* 1-based: the pass that gave it */
        char rel[512];
        const char *base = strrchr(dst, '/');
        snprintf(rel, sizeof rel, "%s/%s", QA_CKPT_SUBDIR, base ? base + 1 : dst);
        json_object_set_new(j, "checkpoint", json_string(rel));
        json_object_set_new(j, "metric", json_string("val_loss: mean token cross-entropy of the validation split; "
                                                      "the lowest wins, the earliest step on ties"));
        char *txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        json_decref(j);
        json = qa_path_join(bd, "best.json");
        size_t tl = strlen(txt);
        txt = qa_realloc(txt, tl + 2);
        txt[tl] = '\n';
        rc = qa_write_file_atomic(json, txt, tl + 1, e);
        free(txt);
    }
    if (!rc) { /* the earlier best (and anything else) goes */
        qa_ckpt_entry *v = NULL;
        size_t n = 0;
        if (qa_ckpt_list(cd, &v, &n, NULL) == 0)
            for (size_t i = 0; i < n; i++)
                if (v[i].step != step) remove_ckpt(v[i].path);
        qa_ckpt_list_free(v, n);
        b->pinned_step = step;
        snprintf(b->pinned, sizeof b->pinned, "%s", dst);
        logline("best: validation loss %.6f at step %" PRId64 " is the lowest so far: checkpoint kept as %s", b->best.val_loss,
                step, dst);
    }
    free(json);
    free(dst);
    free(cd);
    free(bd);
    return rc;
}

int qa_best_pin(qa_best *b, qa_dist *d, const char *last_ckpt, qa_err *e) {
    if (!qa_best_pending(b)) return 0;
    b->pending = 0;
    int32_t ok = 1;
    if (qa_dist_is_coordinator(d)) ok = pin_coord(b, last_ckpt, e) == 0;
    qa_dist_bcast(d, &ok, sizeof ok, 0, "best checkpoint: kept");
    if (ok) return 0;
    if (!qa_dist_is_coordinator(d)) QA_ERR(e, "rank 0 could not keep the best checkpoint (see its message)");
    return -1;
}

int qa_best_export(const qa_best *b, const qa_model *m, int64_t last_step, qa_err *e) {
    if (!b->enabled) return 0;
    if (b->pinned_step < 0) {
        if (b->best.step >= 0)
            logline("best: warning: the lowest validation loss (step %" PRId64 ") has no kept checkpoint: no adapter-best",
                    b->best.step);
        return 0;
    }
    qa_lora l;
    char id[1200];
    QA_TRY(qa_eval_load_adapter(&l, m, b->pinned, id, sizeof id, e));
    char *dir = qa_path_join(b->run_dir, "adapter-best");
    int rc = qa_lora_save_peft(&l, m, dir, e);
    qa_lora_free(&l);
    if (!rc) {
        char *src = qa_path_join(b->run_dir, BEST_SUBDIR "/best.json"), *dst = qa_path_join(dir, "best.json");
        rc = qa_copy_file(src, dst, e);
        free(src);
        free(dst);
    }
    if (!rc)
        logline("best adapter written: %s (PEFT layout) from step %" PRId64 ", validation loss %.6f, the lowest of %" PRId64
                " validation(s); %s/adapter is the last step, %" PRId64, dir, b->pinned_step, b->best.val_loss,
                b->best.n_val, b->run_dir, last_step);
    free(dir);
    return rc;
}

/* ---- a finished run --------------------------------------------------------------------------------- */
static int find_step(const char *ckpt_dir, int64_t step, char *out, size_t cap) {
    qa_ckpt_entry *v = NULL;
    size_t n = 0;
    int found = 0;
    if (qa_ckpt_list(ckpt_dir, &v, &n, NULL) == 0)
        for (size_t i = 0; i < n && !found; i++)
            if (!v[i].tmp && v[i].step == step) {
                snprintf(out, cap, "%s", v[i].path);
                found = 1;
            }
    qa_ckpt_list_free(v, n);
    return found;
}

int qa_best_find(const char *run_dir, char *ckpt, size_t cap, qa_best_val *bv, qa_err *e) {
    char *mp = qa_path_join(run_dir, "metrics.jsonl");
    if (!qa_path_exists(mp)) {
        QA_ERR(e, "%s does not exist: %s is not the run directory of qalign train", mp, run_dir);
        free(mp);
        return -1;
    }
    qa_metrics m;
    int rc = qa_metrics_read(mp, -1, &m, e);
    if (rc) { free(mp); return -1; }
    *bv = qa_metrics_best(&m);
    qa_metrics_free(&m);
    if (bv->step < 0) {
        QA_ERR(e, "%s has no validation loss (train.eval_every 0 or no validation split): there is no best step; export "
                  "the run's newest checkpoint instead (without --best)", mp);
        free(mp);
        return -1;
    }
    free(mp);
    char *bd = best_dir(run_dir), *bcd = qa_ckpt_dir(bd), *cd = qa_ckpt_dir(run_dir);
    int found = find_step(bcd, bv->step, ckpt, cap) || find_step(cd, bv->step, ckpt, cap);
    if (!found)
        QA_ERR(e, "the lowest validation loss of %s/metrics.jsonl (%.6f) is at step %" PRId64 ", but neither %s nor %s "
                  "holds its checkpoint (checkpoint.keep_last removed it and checkpoint.keep_best was off)",
               run_dir, bv->val_loss, bv->step, bcd, cd);
    free(bd);
    free(bcd);
    free(cd);
    return found ? 0 : -1;
}
