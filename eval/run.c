/* run.c — qa_eval_run: plan (rank 0), sharded computation with the prefix KV cache and label-only
 * logits, gather on rank 0, scoring (paper-protocol.md §6.5) and accuracies. */
#include "eval/eval_internal.h"
#include "common/qa_clock.h"
#include "common/qa_log.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void qa_eval_run_opts_default(qa_eval_run_opts *o) {
    memset(o, 0, sizeof *o);
    o->batch_rows = 16;
    o->batch_tokens = 16384;
    o->prefix_cache = 1;
}

#define logf_(o, ...) qa_logf((o)->log, (o)->log_ctx, __VA_ARGS__)

/* ---- the plan: batches of each cell, assigned to ranks in contiguous chunks ----------------- */
typedef struct plan_batch {
    int32_t cell, start, count, rank;   /* items ord[cell_off[cell] + start .. + count) */
} plan_batch;

typedef struct plan {
    int n_cells, n_batches, total;
    int32_t *cell_off;                  /* [n_cells + 1] offsets into ord */
    int32_t *ord;                       /* [total] item indices, per cell sorted by computed tokens */
    plan_batch *b;                      /* [n_batches] */
} plan;

/* Prompt tokens this rank has computed, by global item g = cell_off[cell] + index; prefix tokens per cell. */
typedef struct tokcache {
    int total, n_cells;
    int32_t **ids;                      /* [total] NULL: not tokenized here */
    int32_t *n;                         /* [total] */
    int32_t **pids;                     /* [n_cells] prefix tokens (add_special_tokens) */
    int32_t *np;                        /* [n_cells] */
} tokcache;

static void tokcache_free(tokcache *tc) {
    for (int g = 0; g < tc->total; g++) free(tc->ids ? tc->ids[g] : NULL);
    for (int k = 0; k < tc->n_cells; k++) free(tc->pids ? tc->pids[k] : NULL);
    free(tc->ids);
    free(tc->n);
    free(tc->pids);
    free(tc->np);
    memset(tc, 0, sizeof *tc);
}

/* longest common prefix of two id sequences */
static int lcp(const int32_t *a, int na, const int32_t *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* Tokens of item g that reuse the prefix cache: the common token prefix of the whole prompt's
 * tokenization and the prefix's (BPE merges may cross the boundary), leaving >= 1 token to run. */
static int cached_len(const tokcache *tc, int cell, int g, int use_cache) {
    if (!use_cache) return 0;
    int c = lcp(tc->pids[cell], tc->np[cell], tc->ids[g], tc->n[g]);
    return c >= tc->n[g] ? tc->n[g] - 1 : c;
}

static int tokenize_item(tokcache *tc, const qa_eval_suite *s, const qa_tokenizer *tok, int cell, int index, int g,
                         qa_err *e) {
    if (tc->ids[g]) return 0;
    const int t = cell / s->n_langs, l = cell % s->n_langs;
    size_t n = 0;
    if (qa_eval_item_tokens(s, tok, t, l, index, &tc->ids[g], &n, e)) /* prompt (+ the scoring suffix) */
        return qa_err_prefix(e, "task '%s', language '%s', record %d: tokenizing the prompt", s->tasks[t].name,
                             s->langs[l], index);
    if (n == 0)
        return QA_ERR(e, "task '%s', language '%s', record %d: the prompt has no tokens", s->tasks[t].name, s->langs[l],
                      index);
    tc->n[g] = (int32_t)n;
    return 0;
}

/* Phase 1 (every rank): the prefixes of all cells, and the prompts of this rank's contiguous slice of
 * each cell; *lens gets the slice's computed-token counts (prompt minus cached prefix), cell order. */
static int measure_share(tokcache *tc, const qa_eval_suite *s, const int32_t *cell_off, int P, int me,
                         const qa_tokenizer *tok, int use_cache, int32_t **lens, int *n_lens, qa_err *e) {
    const int NC = s->n_tasks * s->n_langs;
    tc->n_cells = NC;
    tc->total = cell_off[NC];
    tc->ids = qa_calloc((size_t)(tc->total ? tc->total : 1), sizeof *tc->ids);
    tc->n = qa_calloc((size_t)(tc->total ? tc->total : 1), sizeof(int32_t));
    tc->pids = qa_calloc(NC, sizeof *tc->pids);
    tc->np = qa_calloc(NC, sizeof(int32_t));
    *lens = qa_malloc(sizeof(int32_t) * (size_t)(tc->total ? tc->total : 1));
    *n_lens = 0;
    for (int k = 0; k < NC; k++) {
        const int t = k / s->n_langs, l = k % s->n_langs, n = s->cells[k].n;
        size_t np = 0;
        if (qa_tok_encode(tok, s->tasks[t].prefix[l], s->tasks[t].prefix_len[l], 1, &tc->pids[k], &np, e))
            return qa_err_prefix(e, "task '%s', language '%s': tokenizing the prefix", s->tasks[t].name, s->langs[l]);
        tc->np[k] = (int32_t)np;
        for (int i = (int)((int64_t)me * n / P); i < (int)((int64_t)(me + 1) * n / P); i++) {
            const int g = cell_off[k] + i;
            QA_TRY(tokenize_item(tc, s, tok, k, i, g, e));
            (*lens)[(*n_lens)++] = tc->n[g] - cached_len(tc, k, g, use_cache);
        }
    }
    return 0;
}

typedef struct sort_key {
    int32_t len, index;
} sort_key;
static int key_cmp(const void *a, const void *b) {
    const sort_key *x = a, *y = b;
    if (x->len != y->len) return (x->len > y->len) - (x->len < y->len);
    return (x->index > y->index) - (x->index < y->index);
}

/* Rank 0: per cell, items sorted by computed tokens, cut into batches of <= batch_rows rows and
 * <= batch_tokens padded tokens; each cell's batches go to the ranks in contiguous chunks. The plan
 * depends on the data and options only, never on the number of ranks' timing, so the batch of every
 * item (and with it every floating-point sum) is the same for any world size. */
static void make_plan(const qa_eval_suite *s, const qa_eval_run_opts *o, int P, const int32_t *len_of, plan *pl) {
    const int NC = pl->n_cells;
    pl->ord = qa_malloc(sizeof(int32_t) * (size_t)(pl->total ? pl->total : 1));
    int cap = 64;
    pl->b = qa_malloc(sizeof(plan_batch) * cap);
    pl->n_batches = 0;
    for (int k = 0; k < NC; k++) {
        const int n = s->cells[k].n;
        sort_key *keys = qa_malloc(sizeof(sort_key) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) keys[i] = (sort_key){len_of[pl->cell_off[k] + i], i};
        qsort(keys, n, sizeof *keys, key_cmp);
        for (int i = 0; i < n; i++) pl->ord[pl->cell_off[k] + i] = keys[i].index;
        int first = pl->n_batches;
        for (int i = 0; i < n;) {
            int c = 1; /* ascending lengths: the newest row sets the padded length */
            while (i + c < n && c < o->batch_rows && (int64_t)(c + 1) * keys[i + c].len <= o->batch_tokens) c++;
            if (pl->n_batches == cap) pl->b = qa_realloc(pl->b, sizeof(plan_batch) * (cap *= 2));
            pl->b[pl->n_batches++] = (plan_batch){k, i, c, 0};
            i += c;
        }
        free(keys);
        /* rank r gets batches [r*nb/P, (r+1)*nb/P) of this cell */
        int nb = pl->n_batches - first;
        for (int r = 0; r < P; r++)
            for (int j = (int)((int64_t)r * nb / P); j < (int)((int64_t)(r + 1) * nb / P); j++) pl->b[first + j].rank = r;
    }
}

static void plan_free(plan *pl) {
    free(pl->cell_off);
    free(pl->ord);
    free(pl->b);
    memset(pl, 0, sizeof *pl);
}

/* The measured lengths go to rank 0, which plans; everyone receives the plan. */
static void share_plan(qa_dist *d, plan *pl, const qa_eval_suite *s, const qa_eval_run_opts *o, const int32_t *lens,
                       int n_lens) {
    const int P = d ? qa_dist_size(d) : 1, me = d ? qa_dist_rank(d) : 0, NC = pl->n_cells;
    if (P == 1) {
        make_plan(s, o, 1, lens, pl);
        return;
    }
    qa_dist_blobs bl;
    memset(&bl, 0, sizeof bl);
    qa_dist_gather_blobs(d, lens, sizeof(int32_t) * (size_t)n_lens, &bl, "eval lengths");
    if (me == 0) {
        /* rank r's blob: its slice of every cell, cell order */
        int32_t *len_of = qa_malloc(sizeof(int32_t) * (size_t)(pl->total ? pl->total : 1));
        for (int r = 0; r < P; r++) {
            const int32_t *src = (const int32_t *)(bl.data + bl.offset[r]);
            size_t at = 0;
            for (int k = 0; k < NC; k++) {
                const int n = s->cells[k].n;
                for (int i = (int)((int64_t)r * n / P); i < (int)((int64_t)(r + 1) * n / P); i++)
                    len_of[pl->cell_off[k] + i] = at < bl.len[r] / sizeof(int32_t) ? src[at++] : 0;
            }
        }
        make_plan(s, o, P, len_of, pl);
        free(len_of);
    }
    qa_dist_blobs_free(&bl);
    int32_t nb = pl->n_batches;
    qa_dist_bcast(d, &nb, sizeof nb, 0, "eval plan header");
    if (me != 0) {
        pl->n_batches = nb;
        pl->ord = qa_malloc(sizeof(int32_t) * (size_t)(pl->total ? pl->total : 1));
        pl->b = qa_malloc(sizeof(plan_batch) * (size_t)(nb ? nb : 1));
    }
    if (pl->total) qa_dist_bcast(d, pl->ord, sizeof(int32_t) * (size_t)pl->total, 0, "eval plan order");
    if (nb) qa_dist_bcast(d, pl->b, sizeof(plan_batch) * (size_t)nb, 0, "eval plan batches");
}

/* ---- per-task label sets -------------------------------------------------------------------- */
typedef struct task_heads {
    int n_labels;
    int32_t *uni;                       /* [n_uni] union of the label ids, sorted */
    int n_uni;
    int *pos[QA_EVAL_MAX_LABELS];       /* label k: its ids as positions in uni */
    int32_t *ids[QA_EVAL_MAX_LABELS];   /* label k: its ids */
    int n_ids[QA_EVAL_MAX_LABELS];
    qa_head_rows head;                  /* lm_head rows of uni (label-only logits) */
    int have_head;
} task_heads;

static void task_heads_free(task_heads *h) {
    for (int k = 0; k < QA_EVAL_MAX_LABELS; k++) { free(h->pos[k]); free(h->ids[k]); }
    free(h->uni);
    if (h->have_head) qa_head_rows_free(&h->head);
    memset(h, 0, sizeof *h);
}

/* The label sets of cell (t, l): the scoring mode's words (eval/scoring.c) */
static int task_heads_init(task_heads *h, const qa_eval_suite *s, int t, int l, const qa_model *m,
                           const qa_tokenizer *tok, int want_head, qa_err *e) {
    const qa_eval_taskdef *td = &s->tasks[t];
    memset(h, 0, sizeof *h);
    h->n_labels = td->n_labels;
    int total = 0;
    for (int k = 0; k < td->n_labels; k++) {
        const char *word = qa_eval_scored_word(s, t, l, k);
        if (qa_eval_label_tokens_opt(tok, word, qa_eval_label_token_flags(s), &h->ids[k], &h->n_ids[k], e))
            return qa_err_prefix(e, "task '%s', language '%s', label '%s'", td->name, s->langs[l], td->labels[k]);
        if (h->n_ids[k] == 0)
            return QA_ERR(e, "task '%s', language '%s', label '%s': the scored word \"%s\" (%s scoring) has no token "
                             "in the tokenizer's vocabulary (no prefix, no \"\xE2\x96\x81\" prefix, no byte token); "
                             "fix its label words in tasks.json or use the model's own tokenizer",
                          td->name, s->langs[l], td->labels[k], word, qa_eval_scoring_name(s->scoring));
        for (int j = 0; j < h->n_ids[k]; j++)
            if (h->ids[k][j] >= m->cfg.vocab)
                return QA_ERR(e, "task '%s', label '%s': token id %d of \"%s\" is outside the model's vocabulary "
                                 "(%d): the tokenizer does not belong to this model",
                              td->name, td->labels[k], h->ids[k][j], word, m->cfg.vocab);
        total += h->n_ids[k];
    }
    h->uni = qa_malloc(sizeof(int32_t) * total);
    for (int k = 0; k < td->n_labels; k++)
        for (int j = 0; j < h->n_ids[k]; j++) {
            int32_t id = h->ids[k][j], at = 0;
            while (at < h->n_uni && h->uni[at] < id) at++;
            if (at < h->n_uni && h->uni[at] == id) continue;
            memmove(h->uni + at + 1, h->uni + at, sizeof(int32_t) * (h->n_uni - at));
            h->uni[at] = id;
            h->n_uni++;
        }
    for (int k = 0; k < td->n_labels; k++) {
        h->pos[k] = qa_malloc(sizeof(int) * h->n_ids[k]);
        for (int j = 0; j < h->n_ids[k]; j++) {
            int at = 0;
            while (h->uni[at] != h->ids[k][j]) at++;
            h->pos[k][j] = at;
        }
    }
    if (want_head) {
        if (qa_head_rows_init(&h->head, m, h->uni, h->n_uni, e)) return qa_err_prefix(e, "task '%s'", td->name);
        h->have_head = 1;
    }
    return 0;
}

/* ---- scoring -------------------------------------------------------------------------------- */
/* log Σ exp(x[idx[j]]) in double */
static double lse_at(const float *x, const int *pos, const int32_t *ids, int n) {
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < n; j++) {
        double v = x[pos ? pos[j] : ids[j]];
        if (v > mx) mx = v;
    }
    if (mx == -INFINITY) return -INFINITY;
    for (int j = 0; j < n; j++) s += exp((double)x[pos ? pos[j] : ids[j]] - mx);
    return mx + log(s);
}

/* The per-item coin of the seeded tie-breaker: a pure function of (seed, task, language, index), so
 * it does not depend on sharding or batch order. 1 plays the role of Python's randint(0,1) == 1. */
static int tie_coin(uint64_t seed, const char *task, const char *lang, int index) {
    uint64_t h = qa_ops_hash64(seed ^ qa_fnv1a64(0xcbf29ce484222325ull, task, strlen(task)));
    h = qa_ops_hash64(h ^ qa_fnv1a64(0xcbf29ce484222325ull, lang, strlen(lang)));
    h = qa_ops_hash64(h ^ (uint64_t)(index + 1));
    return (int)(h >> 63);
}

/* paper-protocol.md §6.5: the label whose mass is strictly the largest; on a tie at the maximum the
 * scripts' coin: 1 -> the first tied label in tasks.json order, 0 -> the last (2 classes: 1 = positive
 * / same; SNLI: all three tied 1 = entailment, 0 = contradiction; pairs as in the scripts). */
static int decide(const double *lm, int K, int coin, int *tie) {
    double mx = lm[0];
    for (int k = 1; k < K; k++) if (lm[k] > mx) mx = lm[k];
    int first = -1, last = -1, n = 0;
    for (int k = 0; k < K; k++)
        if (lm[k] == mx) {
            if (first < 0) first = k;
            last = k;
            n++;
        }
    *tie = n > 1;
    if (n == 1) return first;
    return coin ? first : last;
}

/* ---- wire format of one prediction (same build on every rank) ----------------------------------- */
typedef struct wire_pred {
    int32_t cell, index, pred, tie, n_tokens, n_cached;
    double lm[QA_EVAL_MAX_LABELS], mass[QA_EVAL_MAX_LABELS];
} wire_pred;

typedef struct rank_state {
    qa_infer_ws ws;
    int have_ws;
    qa_kv_cache kv;
    int have_kv;
    tokcache tc;                /* prompt and prefix tokens */
    wire_pred *out;
    int n_out, cap_out;
    long long tokens, padded;
} rank_state;

static int ensure_ws(rank_state *rs, qa_model *m, const qa_lora *l, int rows, int tokens, int max_out, qa_err *e) {
    if (rs->have_ws && rows <= rs->ws.max_rows && tokens <= rs->ws.max_tokens && max_out <= rs->ws.max_out) return 0;
    int r = rows, t = tokens, o = max_out;
    if (rs->have_ws) {
        if (rs->ws.max_rows > r) r = rs->ws.max_rows;
        if (rs->ws.max_tokens > t) t = rs->ws.max_tokens;
        if (rs->ws.max_out > o) o = rs->ws.max_out;
        qa_infer_ws_free(&rs->ws);
        rs->have_ws = 0;
        t = t + t / 4; /* grow with headroom: fewer reallocations */
    }
    if (qa_infer_ws_alloc(&rs->ws, m, l, r, t, o, e))
        return qa_err_prefix(e, "the evaluation workspace for %d rows / %d tokens (lower --batch or --batch-tokens, or "
                             "use --device cpu)", r, t);
    rs->have_ws = 1;
    return 0;
}

/* The few-shot prefix of a cell through the model once: its K/V of every layer into the cache. */
static int set_prefix(rank_state *rs, const qa_eval_suite *s, int k, qa_model *m, const qa_lora *lora,
                      const qa_head_rows *head, int max_out, qa_err *e) {
    const int t = k / s->n_langs, l = k % s->n_langs, n = rs->tc.np[k];
    if (n == 0) return 0;
    if (rs->have_kv && rs->kv.cap < n) { qa_kv_cache_free(&rs->kv); rs->have_kv = 0; }
    if (!rs->have_kv) {
        QA_TRY(qa_kv_cache_alloc(&rs->kv, m, n, e));
        rs->have_kv = 1;
    }
    QA_TRY(ensure_ws(rs, m, lora, 1, n, max_out, e));
    int32_t len = n;
    qa_infer_batch b = {1, n, rs->tc.pids[k], &len, NULL};
    float *tmp = qa_malloc(sizeof(float) * (size_t)max_out);
    int rc = qa_model_infer(m, lora, &rs->ws, NULL, &b, &rs->kv, head, tmp, e); /* logits unused */
    free(tmp);
    if (rc) return qa_err_prefix(e, "task '%s', language '%s': prefix", s->tasks[t].name, s->langs[l]);
    rs->tokens += n;
    return 0;
}

static int run_batch(rank_state *rs, const qa_eval_suite *s, const plan *pl, const plan_batch *pb, qa_model *m,
                     const qa_lora *lora, const qa_tokenizer *tok, const task_heads *th, const qa_eval_run_opts *o,
                     qa_err *e) {
    const int k = pb->cell, t = k / s->n_langs, l = k % s->n_langs, B = pb->count, K = th->n_labels;
    const qa_eval_taskdef *td = &s->tasks[t];
    const int V = m->cfg.vocab, nout = o->full_vocab ? V : th->n_uni;
    int32_t **full = qa_calloc(B, sizeof *full);
    int32_t *nfull = qa_calloc(B, sizeof(int32_t)), *ctx = qa_calloc(B, sizeof(int32_t)),
            *len = qa_calloc(B, sizeof(int32_t));
    int32_t *ids = NULL;
    float *out = NULL;
    int rc = -1, T = 0;
    const int use_cache = o->prefix_cache && rs->have_kv;
    for (int r = 0; r < B; r++) {
        int idx = pl->ord[pl->cell_off[k] + pb->start + r], g = pl->cell_off[k] + idx;
        if (tokenize_item(&rs->tc, s, tok, k, idx, g, e)) goto out;
        full[r] = rs->tc.ids[g];
        nfull[r] = rs->tc.n[g];
        ctx[r] = cached_len(&rs->tc, k, g, use_cache);
        len[r] = nfull[r] - ctx[r];
        if (len[r] > T) T = len[r];
    }
    if (ensure_ws(rs, m, lora, B, B * T, nout, e)) goto out;
    ids = qa_malloc(sizeof(int32_t) * (size_t)B * T);
    for (int r = 0; r < B; r++) rs->padded += T - len[r];
    for (int r = 0; r < B; r++)
        for (int j = 0; j < T; j++) ids[(size_t)r * T + j] = j < len[r] ? full[r][ctx[r] + j] : full[r][nfull[r] - 1];
    out = qa_malloc(sizeof(float) * (size_t)B * nout);
    qa_infer_batch b = {B, T, ids, len, ctx};
    if (qa_model_infer(m, lora, &rs->ws, use_cache ? &rs->kv : NULL, &b, NULL,
                       o->full_vocab ? NULL : &th->head, out, e)) {
        qa_err_prefix(e, "task '%s', language '%s', batch of %d records", td->name, s->langs[l], B);
        goto out;
    }
    for (int r = 0; r < B; r++) {
        int idx = pl->ord[pl->cell_off[k] + pb->start + r];
        const float *row = out + (size_t)r * nout;
        wire_pred w;
        memset(&w, 0, sizeof w);
        w.cell = k;
        w.index = idx;
        w.n_tokens = nfull[r];
        w.n_cached = ctx[r];
        for (int c = 0; c < K; c++) {
            w.lm[c] = o->full_vocab ? lse_at(row, NULL, th->ids[c], th->n_ids[c]) : lse_at(row, th->pos[c], NULL, th->n_ids[c]);
            if (!isfinite(w.lm[c]) && !(w.lm[c] == -INFINITY)) {
                QA_ERR(e, "task '%s', language '%s', record %d: the model's logits are not finite (label '%s')",
                       td->name, s->langs[l], idx, td->labels[c]);
                goto out;
            }
            w.mass[c] = NAN;
        }
        if (o->full_vocab) {
            double mx = -INFINITY, z = 0;
            for (int j = 0; j < V; j++) if (row[j] > mx) mx = row[j];
            for (int j = 0; j < V; j++) z += exp((double)row[j] - mx);
            double lz = mx + log(z);
            for (int c = 0; c < K; c++) w.mass[c] = exp(w.lm[c] - lz);
        }
        int tie = 0;
        w.pred = decide(w.lm, K, tie_coin(o->seed, td->name, s->langs[l], idx), &tie);
        w.tie = tie;
        if (rs->n_out == rs->cap_out)
            rs->out = qa_realloc(rs->out, sizeof(wire_pred) * (size_t)(rs->cap_out = rs->cap_out ? rs->cap_out * 2 : 256));
        rs->out[rs->n_out++] = w;
        rs->tokens += len[r];
    }
    rc = 0;
out:
    for (int r = 0; r < B; r++) { /* a prompt is computed once: drop its tokens */
        int g = pl->cell_off[k] + pl->ord[pl->cell_off[k] + pb->start + r];
        free(rs->tc.ids[g]);
        rs->tc.ids[g] = NULL;
    }
    free(full);
    free(nfull);
    free(ctx);
    free(len);
    free(ids);
    free(out);
    return rc;
}

/* This rank's share: every batch of the plan assigned to it, cell by cell. */
static int compute_share(rank_state *rs, const qa_eval_suite *s, const plan *pl, int me, qa_model *m,
                         const qa_lora *lora, const qa_tokenizer *tok, const qa_eval_run_opts *o, qa_err *e) {
    task_heads th; /* the label sets of the current cell */
    int th_ok = 0, rc = -1, cur = -1;
    for (int j = 0; j < pl->n_batches; j++) {
        const plan_batch *pb = &pl->b[j];
        if (pb->rank != me) continue;
        const int t = pb->cell / s->n_langs, l = pb->cell % s->n_langs;
        if (pb->cell != cur) {
            if (th_ok) task_heads_free(&th);
            th_ok = 0;
            if (task_heads_init(&th, s, t, l, m, tok, !o->full_vocab, e)) {
                task_heads_free(&th);
                goto out;
            }
            th_ok = 1;
        }
        const int nout = o->full_vocab ? m->cfg.vocab : th.n_uni;
        if (pb->cell != cur) {
            if (me == 0) logf_(o, "eval: %s/%s: %d items", s->tasks[t].name, s->langs[l], s->cells[pb->cell].n);
            if (o->prefix_cache) {
                if (set_prefix(rs, s, pb->cell, m, lora, o->full_vocab ? NULL : &th.head, nout, e)) goto out;
            } else if (rs->have_kv) {
                qa_kv_cache_free(&rs->kv);
                rs->have_kv = 0;
            }
            cur = pb->cell;
        }
        if (run_batch(rs, s, pl, pb, m, lora, tok, &th, o, e)) goto out;
    }
    rc = 0;
out:
    if (th_ok) task_heads_free(&th);
    return rc;
}

static void precision_string(const qa_model *m, char *buf, size_t n) {
    qa_dtype dt = m->layers ? m->layers[0].wq.dtype : QA_DT_F32;
    snprintf(buf, n, "weights %s, compute fp32 (%s backend)", dt == QA_DT_BF16 ? "bf16" : dt == QA_DT_NF4 ? "nf4" : "fp32", m->ops->name);
}

int qa_eval_run(const qa_eval_suite *s, qa_model *m, const qa_lora *lora, const qa_tokenizer *tok, qa_dist *d,
                const qa_eval_run_opts *o_in, qa_eval_results *r, qa_err *e) {
    memset(r, 0, sizeof *r);
    qa_eval_run_opts o = *o_in;
    if (o.batch_rows <= 0) o.batch_rows = 16;
    if (o.batch_tokens <= 0) o.batch_tokens = 16384;
    const int P = d ? qa_dist_size(d) : 1, me = d ? qa_dist_rank(d) : 0;
    const double t0 = qa_now_s();
    int ok = 1;
    if (qa_tok_vocab_size(tok) > m->cfg.vocab) {
        QA_ERR(e, "the tokenizer has %d ids but the model's vocabulary is %d: it is not this model's tokenizer",
               qa_tok_vocab_size(tok), m->cfg.vocab);
        ok = 0;
    }
    if (o.prefix_cache && !m->ops->attention_prefix_fwd) {
        logf_(&o, "eval: backend '%s' has no prefix attention: running without the prefix cache", m->ops->name);
        o.prefix_cache = 0;
    }
    if (d && !qa_dist_all_true(d, ok, "eval setup")) {
        if (ok) QA_ERR(e, "evaluation setup failed on another rank (see its message)");
        return -1;
    }
    if (!ok) return -1;

    /* phase 1: every rank tokenizes a slice; rank 0 plans the batches from the token counts */
    const int NC = s->n_tasks * s->n_langs;
    plan pl;
    memset(&pl, 0, sizeof pl);
    pl.n_cells = NC;
    pl.cell_off = qa_calloc((size_t)NC + 1, sizeof(int32_t));
    for (int k = 0; k < NC; k++) pl.cell_off[k + 1] = pl.cell_off[k] + s->cells[k].n;
    pl.total = pl.cell_off[NC];
    rank_state rs;
    memset(&rs, 0, sizeof rs);
    int32_t *lens = NULL;
    int n_lens = 0;
    if (d) qa_dist_note(d, "eval: tokenize");
    ok = measure_share(&rs.tc, s, pl.cell_off, P, me, tok, o.prefix_cache, &lens, &n_lens, e) == 0;
    if (d && !qa_dist_all_true(d, ok, "eval tokenize")) {
        if (ok) QA_ERR(e, "evaluation failed on another rank (see its message)");
        ok = 0;
    }
    if (ok) {
        if (d) qa_dist_note(d, "eval: plan");
        share_plan(d, &pl, s, &o, lens, n_lens);
        if (d) qa_dist_note(d, "eval: forward");
        ok = compute_share(&rs, s, &pl, me, m, lora, tok, &o, e) == 0;
    }
    free(lens);
    if (rs.have_ws) qa_infer_ws_free(&rs.ws);
    if (rs.have_kv) qa_kv_cache_free(&rs.kv);
    tokcache_free(&rs.tc);
    if (d && !qa_dist_all_true(d, ok, "eval compute")) {
        if (ok) QA_ERR(e, "evaluation failed on another rank (see its message)");
        ok = 0;
    }
    if (!ok) {
        free(rs.out);
        plan_free(&pl);
        return -1;
    }

    /* gather on rank 0 */
    wire_pred *all = NULL;
    int n_all = 0;
    if (d && P > 1) {
        qa_dist_blobs bl;
        memset(&bl, 0, sizeof bl);
        qa_dist_gather_blobs(d, rs.out, sizeof(wire_pred) * (size_t)rs.n_out, &bl, "eval gather");
        if (me == 0) {
            size_t tot = 0;
            for (int i = 0; i < bl.count; i++) tot += bl.len[i];
            all = qa_malloc(tot ? tot : 1);
            memcpy(all, bl.data, tot);
            n_all = (int)(tot / sizeof(wire_pred));
        }
        qa_dist_blobs_free(&bl);
        free(rs.out);
    } else {
        all = rs.out;
        n_all = rs.n_out;
    }
    long long tokens = rs.tokens, padded = rs.padded;
    if (d && P > 1) {
        int64_t tk[2] = {tokens, padded};
        qa_dist_allreduce_i64(d, tk, 2, QA_DIST_SUM, "eval tokens");
        tokens = tk[0];
        padded = tk[1];
    }

    r->suite = s;
    r->gold = s->gold;
    r->seed = o.seed;
    r->world_size = P;
    r->prefix_cache = o.prefix_cache;
    r->full_vocab = o.full_vocab;
    snprintf(r->model_id, sizeof r->model_id, "%s", o.model_id ? o.model_id : "");
    snprintf(r->adapter_id, sizeof r->adapter_id, "%s", o.adapter_id ? o.adapter_id : "");
    if (o.precision) snprintf(r->precision, sizeof r->precision, "%s", o.precision);
    else precision_string(m, r->precision, sizeof r->precision);
    snprintf(r->tokenizer_kind, sizeof r->tokenizer_kind, "%s",
             qa_tok_is_byte_level(tok) ? "byte-level (qwen rule)" : "sentencepiece-bpe");
    r->n_cells = NC;
    r->cells = qa_calloc(NC, sizeof *r->cells);
    r->task_avg = qa_calloc(s->n_tasks, sizeof(double));
    r->n_items = pl.total;
    r->tokens_computed = tokens;
    r->tokens_padded = padded;
    /* counts: [NC][3] correct, ties, prefix tokens; rank 0 fills them, everyone receives them */
    int32_t *cnt = qa_calloc((size_t)NC * 3, sizeof(int32_t));
    int bad = 0;
    if (me == 0) {
        if (n_all != pl.total) {
            QA_ERR(e, "evaluation gathered %d predictions, expected %d (internal error)", n_all, pl.total);
            bad = 1;
        }
        r->preds = qa_calloc((size_t)(pl.total ? pl.total : 1), sizeof *r->preds);
        for (int i = 0; i < n_all && !bad; i++) {
            const wire_pred *w = &all[i];
            if (w->cell < 0 || w->cell >= NC || w->index < 0 || w->index >= s->cells[w->cell].n) { bad = 1; break; }
            qa_eval_pred *p = &r->preds[pl.cell_off[w->cell] + w->index];
            const qa_eval_cellsrc *c = &s->cells[w->cell];
            const int t = w->cell / s->n_langs, l = w->cell % s->n_langs, K = s->tasks[t].n_labels;
            p->task = t;
            p->lang = l;
            p->index = w->index;
            p->pred = w->pred;
            p->tie = w->tie;
            p->n_tokens = w->n_tokens;
            p->n_cached = w->n_cached;
            for (int k = 0; k < QA_EVAL_MAX_LABELS; k++) {
                p->log_mass[k] = k < K ? w->lm[k] : NAN;
                p->mass[k] = k < K ? w->mass[k] : NAN;
            }
            p->gold = c->gold[w->index];
            p->gold_text = c->answer[w->index];
            p->correct = qa_eval_item_correct(s, t, l, w->index, w->pred); /* the scoring mode's rule */
            cnt[w->cell * 3] += p->correct;
            cnt[w->cell * 3 + 1] += p->tie;
        }
        if (bad && !e->msg[0]) QA_ERR(e, "evaluation gathered an inconsistent prediction (internal error)");
        for (int k = 0; k < NC && !bad; k++) {
            double sc = 0, ss = 0;
            for (int i = 0; i < s->cells[k].n; i++) {
                sc += r->preds[pl.cell_off[k] + i].n_cached;
                ss += r->preds[pl.cell_off[k] + i].n_tokens - r->preds[pl.cell_off[k] + i].n_cached;
            }
            r->cells[k].mean_cached = s->cells[k].n ? sc / s->cells[k].n : 0;
            r->cells[k].mean_suffix = s->cells[k].n ? ss / s->cells[k].n : 0;
        }
    }
    free(all);
    if (d && P > 1) {
        int32_t b32 = bad;
        qa_dist_bcast(d, &b32, sizeof b32, 0, "eval status");
        bad = b32;
        if (bad && me != 0) QA_ERR(e, "evaluation failed on rank 0 (see its message)");
    }
    if (bad) {
        free(cnt);
        plan_free(&pl);
        qa_eval_results_free(r);
        return -1;
    }
    /* prefix tokens per cell (tokenizer only, cheap) */
    if (me == 0)
        for (int k = 0; k < NC; k++) {
            const int t = k / s->n_langs, l = k % s->n_langs;
            int32_t *ids = NULL;
            size_t n = 0;
            if (!qa_tok_encode(tok, s->tasks[t].prefix[l], s->tasks[t].prefix_len[l], 1, &ids, &n, NULL))
                cnt[k * 3 + 2] = (int32_t)n;
            free(ids);
        }
    if (d && P > 1) qa_dist_bcast(d, cnt, sizeof(int32_t) * (size_t)NC * 3, 0, "eval counts");
    for (int k = 0; k < NC; k++) {
        qa_eval_cell *c = &r->cells[k];
        c->task = k / s->n_langs;
        c->lang = k % s->n_langs;
        c->n = s->cells[k].n;
        c->correct = cnt[k * 3];
        c->ties = cnt[k * 3 + 1];
        c->prefix_tokens = cnt[k * 3 + 2];
        c->accuracy = c->n ? (double)c->correct / c->n : 0;
        r->ties += c->ties;
        r->task_avg[c->task] += c->accuracy / s->n_langs;
    }
    for (int t = 0; t < s->n_tasks; t++) r->avg += r->task_avg[t] / s->n_tasks;
    free(cnt);
    plan_free(&pl);
    r->seconds = qa_now_s() - t0;
    r->items_per_s = r->seconds > 0 ? r->n_items / r->seconds : 0;
    return 0;
}

void qa_eval_results_free(qa_eval_results *r) {
    if (!r) return;
    free(r->cells);
    free(r->task_avg);
    free(r->preds);
    memset(r, 0, sizeof *r);
}
