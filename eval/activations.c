/* activations.c — qa_eval_dump_activations: per item and layer, the hidden state at the last prompt
 * position and the mean over positions, through the plain forward, gathered on rank 0 into an
 * HDF5 activation dump (io/actdump.h). */
#include "eval/eval_internal.h"
#include "common/qa_log.h"
#include "io/actdump.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUND_BYTES ((size_t)256 << 20) /* rows gathered on rank 0 at a time */

void qa_eval_dump_opts_default(qa_eval_dump_opts *o) {
    memset(o, 0, sizeof *o);
    o->batch_rows = 4;
    o->batch_tokens = 4096;
    o->last = 1;
    o->mean = 1;
}

#define logf_(o, ...) qa_logf((o)->log, (o)->log_ctx, __VA_ARGS__)

typedef struct item_ref {
    int t, l, i;
} item_ref;

typedef struct dump_state {
    qa_acts acts;
    int have_acts, cap_tokens;
    float *host;                 /* [cap_tokens, D] one layer of the batch */
    double *acc;                 /* [D] */
} dump_state;

static int ensure_acts(dump_state *st, qa_model *m, const qa_lora *lora, int tokens, qa_err *e) {
    if (st->have_acts && tokens <= st->cap_tokens) return 0;
    if (st->have_acts) qa_acts_free(&st->acts);
    st->have_acts = 0;
    int cap = tokens > st->cap_tokens ? tokens : st->cap_tokens;
    if (st->cap_tokens) cap += cap / 4; /* growing: headroom for fewer reallocations */
    QA_TRY(qa_acts_alloc(&st->acts, m, lora, 1, cap, QA_ACTS_INFER, 1, e));
    st->have_acts = 1;
    st->cap_tokens = cap;
    free(st->host);
    st->host = qa_malloc(sizeof(float) * (size_t)cap * m->cfg.hidden);
    return 0;
}

/* One batch of rows (ids[r] of len[r] tokens): the forward, then per row and layer last / mean into
 * rec[r] = {int64 g, last [(L+1), D], mean [(L+1), D]} (pools that are off are skipped). */
static int run_batch(dump_state *st, qa_model *m, const qa_lora *lora, int32_t **ids, const int32_t *len, int B,
                     const int64_t *g, const qa_eval_dump_opts *o, char *rec, size_t rec_bytes, qa_err *e) {
    const int L = m->cfg.n_layers, D = m->cfg.hidden;
    int T = 0;
    for (int r = 0; r < B; r++) if (len[r] > T) T = len[r];
    QA_TRY(ensure_acts(st, m, lora, B * T, e));
    int32_t *bid = qa_malloc(sizeof(int32_t) * (size_t)B * T), *mask = qa_malloc(sizeof(int32_t) * (size_t)B * T);
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) {
            bid[(size_t)r * T + t] = t < len[r] ? ids[r][t] : ids[r][len[r] - 1];
            mask[(size_t)r * T + t] = t < len[r];
        }
    qa_batch b = {B, T, bid, mask, NULL, NULL, NULL};
    qa_fwd_opts fo = {QA_LOGITS_NONE, NULL, 0};
    int rc = qa_model_forward(m, lora, &st->acts, &b, &fo, e);
    free(bid);
    free(mask);
    if (rc) return -1;
    const size_t pool_floats = (size_t)(L + 1) * D;
    for (int r = 0; r < B; r++) memcpy(rec + (size_t)r * rec_bytes, &g[r], sizeof(int64_t));
    for (int layer = 0; layer <= L; layer++) {
        qa_model_to_host(m, st->host, st->acts.hidden[layer], (size_t)B * T * D);
        for (int r = 0; r < B; r++) {
            float *dst = (float *)(void *)(rec + (size_t)r * rec_bytes + sizeof(int64_t));
            const float *h = st->host + (size_t)r * T * D;
            if (o->last) memcpy(dst + (size_t)layer * D, h + (size_t)(len[r] - 1) * D, sizeof(float) * D);
            if (o->mean) {
                for (int j = 0; j < D; j++) st->acc[j] = 0;
                for (int t = 0; t < len[r]; t++)
                    for (int j = 0; j < D; j++) st->acc[j] += h[(size_t)t * D + j];
                float *mdst = dst + (o->last ? pool_floats : 0) + (size_t)layer * D;
                for (int j = 0; j < D; j++) mdst[j] = (float)(st->acc[j] / len[r]);
            }
        }
    }
    return 0;
}

/* the items' tokens, prompts of the round [g0, g1) */
static int tokenize_round(const qa_eval_suite *s, const qa_tokenizer *tok, const item_ref *it, int64_t g0, int64_t g1,
                          int32_t **ids, int32_t *len, qa_err *e) {
    for (int64_t g = g0; g < g1; g++) {
        const item_ref *r = &it[g];
        size_t plen, n = 0;
        char *p = qa_eval_prompt(s, r->t, r->l, r->i, &plen);
        int bad = qa_tok_encode(tok, p, plen, 1, &ids[g - g0], &n, e);
        free(p);
        if (bad)
            return qa_err_prefix(e, "task '%s', language '%s', record %d: tokenizing the prompt", s->tasks[r->t].name,
                                 s->langs[r->l], r->i);
        if (n == 0)
            return QA_ERR(e, "task '%s', language '%s', record %d: the prompt has no tokens", s->tasks[r->t].name,
                          s->langs[r->l], r->i);
        len[g - g0] = (int32_t)n;
    }
    return 0;
}

static void join(char *buf, size_t cap, int n, const char *(*name)(const qa_eval_suite *, int), const qa_eval_suite *s) {
    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strncat(buf, ",", cap - strlen(buf) - 1);
        strncat(buf, name(s, i), cap - strlen(buf) - 1);
    }
}

int qa_eval_dump_activations(const qa_eval_suite *s, qa_model *m, const qa_lora *lora, const qa_tokenizer *tok,
                             qa_dist *d, const qa_eval_dump_opts *o_in, const char *path, qa_err *e) {
    qa_eval_dump_opts o = *o_in;
    if (o.batch_rows <= 0) o.batch_rows = 4;
    if (o.batch_tokens <= 0) o.batch_tokens = 4096;
    if (!o.last && !o.mean) o.last = o.mean = 1;
    const int P = d ? qa_dist_size(d) : 1, me = d ? qa_dist_rank(d) : 0;
    const int L = m->cfg.n_layers, D = m->cfg.hidden;
    const int npool = (o.last != 0) + (o.mean != 0);
    const size_t rec_bytes = sizeof(int64_t) + sizeof(float) * (size_t)npool * (L + 1) * D;

    /* the items, task-language-index order */
    int64_t N = 0;
    for (int k = 0; k < s->n_tasks * s->n_langs; k++) N += s->cells[k].n;
    item_ref *it = qa_malloc(sizeof *it * (size_t)(N ? N : 1));
    {
        int64_t g = 0;
        for (int t = 0; t < s->n_tasks; t++)
            for (int l = 0; l < s->n_langs; l++)
                for (int i = 0; i < qa_eval_cellsrc_at(s, t, l)->n; i++) it[g++] = (item_ref){t, l, i};
    }

    /* rank 0 creates the file */
    qa_actdump_writer *w = NULL;
    int ok = 1;
    if (qa_tok_vocab_size(tok) > m->cfg.vocab) {
        QA_ERR(e, "the tokenizer has %d ids but the model's vocabulary is %d: it is not this model's tokenizer",
               qa_tok_vocab_size(tok), m->cfg.vocab);
        ok = 0;
    }
    if (ok && me == 0) {
        qa_actdump_item *items = qa_malloc(sizeof *items * (size_t)(N ? N : 1));
        for (int64_t g = 0; g < N; g++) {
            const qa_eval_cellsrc *c = qa_eval_cellsrc_at(s, it[g].t, it[g].l);
            items[g] = (qa_actdump_item){s->tasks[it[g].t].name, s->langs[it[g].l], c->answer[it[g].i], it[g].i,
                                         c->gold[it[g].i], 0};
        }
        /* n_tokens: tokenize once here (cheap next to the forward) */
        for (int64_t g = 0; g < N && ok; g++) {
            int32_t *ids = NULL, len = 0;
            ok = tokenize_round(s, tok, it, g, g + 1, &ids, &len, e) == 0;
            free(ids);
            items[g].n_tokens = len;
        }
        qa_actdump_labels *lb = qa_calloc(s->n_tasks, sizeof *lb);
        for (int t = 0; t < s->n_tasks; t++) {
            const qa_eval_taskdef *td = &s->tasks[t];
            lb[t] = (qa_actdump_labels){td->name, td->n_labels, (const char *const *)td->labels,
                                        (const char *const *)td->label_words, s->n_langs,
                                        (const char *const *)s->langs, td->target_words};
        }
        char tasks[512], langs[512];
        join(tasks, sizeof tasks, s->n_tasks, qa_eval_task_name, s);
        join(langs, sizeof langs, s->n_langs, qa_eval_lang, s);
        char prec[256];
        qa_dtype dt = m->layers ? m->layers[0].wq.dtype : QA_DT_F32;
        snprintf(prec, sizeof prec, "weights %s, compute fp32 (%s backend)", dt == QA_DT_BF16 ? "bf16" : dt == QA_DT_NF4 ? "nf4" : "fp32",
                 m->ops->name);
        qa_actdump_info info = {o.model_id, o.adapter_id, m->cfg.model_type, o.precision ? o.precision : prec,
                                o.tokenizer_id, qa_eval_prompt_variant_name(s->prompt), qa_eval_gold_name(s->gold),
                                tasks, langs, L, D, m->cfg.vocab, N, o.last, o.mean};
        if (ok) ok = qa_actdump_create(&w, path, &info, items, lb, s->n_tasks, e) == 0;
        free(items);
        free(lb);
    }
    if (d && !qa_dist_all_true(d, ok, "dump setup")) {
        if (ok) QA_ERR(e, "activation dump setup failed on another rank (see its message)");
        ok = 0;
    }
    if (!ok) {
        qa_actdump_abort(w);
        free(it);
        return -1;
    }

    int64_t G = (int64_t)(ROUND_BYTES / rec_bytes);
    if (G < 1) G = 1;
    if (G > N) G = N;
    dump_state st;
    memset(&st, 0, sizeof st);
    st.acc = qa_malloc(sizeof(double) * (size_t)D);
    const int64_t n_rounds = G ? (N + G - 1) / G : 0;
    if (me == 0)
        logf_(&o, "dump: %lld items, %d layers x %d, pools%s%s, %lld round(s), %d rank(s) -> %s", (long long)N, L + 1, D,
              o.last ? " last" : "", o.mean ? " mean" : "", (long long)n_rounds, P, path);
    char *sendbuf = NULL;
    float *lastbuf = NULL, *meanbuf = NULL;
    if (me == 0 && N) {
        if (o.last) lastbuf = qa_malloc(sizeof(float) * (size_t)G * (L + 1) * D);
        if (o.mean) meanbuf = qa_malloc(sizeof(float) * (size_t)G * (L + 1) * D);
    }
    int32_t **ids = qa_calloc((size_t)(G ? G : 1), sizeof *ids);
    int32_t *len = qa_calloc((size_t)(G ? G : 1), sizeof(int32_t));
    int64_t *bstart = qa_malloc(sizeof(int64_t) * (size_t)(G + 1));
    for (int64_t r0 = 0; r0 < N && ok; r0 += G) {
        const int64_t r1 = r0 + G < N ? r0 + G : N, nr = r1 - r0;
        if (d) qa_dist_note(d, "dump: forward");
        ok = tokenize_round(s, tok, it, r0, r1, ids, len, e) == 0;
        /* batches: consecutive items, <= batch_rows rows and <= batch_tokens padded tokens */
        int nb = 0;
        if (ok) {
            for (int64_t i = 0; i < nr;) {
                int64_t c = 1, T = len[i];
                while (i + c < nr && c < o.batch_rows) {
                    int64_t T2 = len[i + c] > T ? len[i + c] : T;
                    if ((c + 1) * T2 > o.batch_tokens) break;
                    T = T2;
                    c++;
                }
                bstart[nb++] = i;
                i += c;
            }
            bstart[nb] = nr;
        }
        /* rank me: batches [me*nb/P, (me+1)*nb/P) */
        const int b0 = (int)((int64_t)me * nb / P), b1 = (int)((int64_t)(me + 1) * nb / P);
        const int64_t mine = ok ? bstart[b1] - bstart[b0] : 0;
        sendbuf = qa_realloc(sendbuf, rec_bytes * (size_t)(mine ? mine : 1));
        for (int b = b0; b < b1 && ok; b++) {
            const int64_t i0 = bstart[b], B = bstart[b + 1] - i0;
            int64_t g[64], *gp = B <= 64 ? g : qa_malloc(sizeof(int64_t) * (size_t)B);
            for (int64_t r = 0; r < B; r++) gp[r] = r0 + i0 + r;
            ok = run_batch(&st, m, lora, ids + i0, len + i0, (int)B, gp, &o,
                           sendbuf + (size_t)(i0 - bstart[b0]) * rec_bytes, rec_bytes, e) == 0;
            if (!ok) {
                const item_ref *ir = &it[r0 + i0];
                qa_err_prefix(e, "activation dump: batch of %lld items from task '%s', language '%s', record %d",
                              (long long)B, s->tasks[ir->t].name, s->langs[ir->l], ir->i);
            }
            if (gp != g) free(gp);
        }
        for (int64_t i = 0; i < nr; i++) { free(ids[i]); ids[i] = NULL; }
        if (d && !qa_dist_all_true(d, ok, "dump compute")) {
            if (ok) QA_ERR(e, "activation dump failed on another rank (see its message)");
            ok = 0;
        }
        if (!ok) break;
        /* gather on rank 0 */
        const char *recs = sendbuf;
        size_t nbytes = rec_bytes * (size_t)mine;
        qa_dist_blobs bl;
        memset(&bl, 0, sizeof bl);
        if (d && P > 1) {
            qa_dist_gather_blobs(d, sendbuf, nbytes, &bl, "dump gather");
            if (me == 0) {
                recs = bl.data;
                nbytes = 0;
                for (int i = 0; i < bl.count; i++) nbytes += bl.len[i];
            }
        }
        int bad = 0;
        if (me == 0) {
            if (nbytes != rec_bytes * (size_t)nr) {
                QA_ERR(e, "activation dump: gathered %zu bytes for %lld items (internal error)", nbytes, (long long)nr);
                bad = 1;
            }
            const size_t pf = (size_t)(L + 1) * D;
            for (int64_t k = 0; k < nr && !bad; k++) {
                const char *rp = recs + (size_t)k * rec_bytes;
                int64_t gg;
                memcpy(&gg, rp, sizeof gg);
                if (gg < r0 || gg >= r1) { bad = 1; QA_ERR(e, "activation dump: row %lld out of round", (long long)gg); break; }
                const char *fp = rp + sizeof(int64_t);
                if (o.last) memcpy(lastbuf + (size_t)(gg - r0) * pf, fp, sizeof(float) * pf);
                if (o.mean) memcpy(meanbuf + (size_t)(gg - r0) * pf, fp + (o.last ? sizeof(float) * pf : 0), sizeof(float) * pf);
            }
            if (!bad) bad = qa_actdump_write_rows(w, r0, nr, lastbuf, meanbuf, e) != 0;
            if (!bad && n_rounds > 1) logf_(&o, "dump: %lld / %lld items", (long long)r1, (long long)N);
        }
        qa_dist_blobs_free(&bl);
        if (d && P > 1) {
            int32_t b32 = bad;
            qa_dist_bcast(d, &b32, sizeof b32, 0, "dump status");
            if (b32 && !bad) QA_ERR(e, "activation dump failed on rank 0 (see its message)");
            bad = b32;
        }
        if (bad) ok = 0;
    }
    if (ok && me == 0) {
        ok = qa_actdump_finish(w, e) == 0;
        w = NULL;
    }
    if (d && P > 1) {
        int32_t b32 = !ok;
        qa_dist_bcast(d, &b32, sizeof b32, 0, "dump finish");
        if (b32 && ok) QA_ERR(e, "activation dump failed on rank 0 (see its message)");
        if (b32) ok = 0;
    }
    qa_actdump_abort(w);
    if (st.have_acts) qa_acts_free(&st.acts);
    free(st.host);
    free(st.acc);
    free(sendbuf);
    free(lastbuf);
    free(meanbuf);
    free(ids);
    free(len);
    free(bstart);
    free(it);
    return ok ? 0 : -1;
}
