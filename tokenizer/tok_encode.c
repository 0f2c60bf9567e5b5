/* tok_encode.c — text -> ids, step for step as Hugging Face `tokenizers` does it:
 *   (1) split the raw text on added tokens with normalized:false (leftmost-longest),
 *   (2) normalize every other piece (NFC / Prepend / Replace), split it on normalized added tokens,
 *   (3) pre-tokenize (Split regex, ByteLevel, Metaspace), (4) BPE each piece, (5) post-process.
 * All scratch is per call; the tokenizer is only read.
 */
#include "tokenizer/tok_internal.h"
#include "common/qa_mem.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- per-call context ---- */
typedef struct span {
    const char *p;
    size_t n;
    int orig0;             /* the piece starts at offset 0 of the original text (Metaspace "first") */
} span;
typedef struct spanvec { span *v; size_t n, cap; } spanvec;

typedef struct sym { int32_t id, prev, next; int16_t alive, small; } sym; /* small: index into pair256, -1 */

typedef struct enc {
    const qa_tokenizer *t;
    int32_t *ids; size_t n_ids, cap_ids;
    pcre2_match_data *md;
    pcre2_jit_stack *jit_stack;
    pcre2_match_context *mctx;
    spanvec sv[2];
    char **bufs; size_t n_bufs, cap_bufs; /* text made by pre-tokenizers, freed per segment */
    sym *syms; size_t cap_syms;
    uint64_t *heap; size_t cap_heap;
    char *tmp; size_t cap_tmp;
    qa_err *e;
} enc;

static void push_id(enc *c, int32_t id) {
    if (c->n_ids == c->cap_ids) {
        c->cap_ids = c->cap_ids ? c->cap_ids * 2 : 256;
        c->ids = qa_realloc(c->ids, c->cap_ids * sizeof *c->ids);
    }
    c->ids[c->n_ids++] = id;
}
static void push_span(spanvec *v, const char *p, size_t n, int orig0) {
    if (!n) return; /* HF drops empty splits */
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->v = qa_realloc(v->v, v->cap * sizeof *v->v);
    }
    v->v[v->n++] = (span){p, n, orig0};
}
static char *new_buf(enc *c, size_t n) {
    if (c->n_bufs == c->cap_bufs) {
        c->cap_bufs = c->cap_bufs ? c->cap_bufs * 2 : 8;
        c->bufs = qa_realloc(c->bufs, c->cap_bufs * sizeof *c->bufs);
    }
    return c->bufs[c->n_bufs++] = qa_malloc(n + 1);
}
static void free_bufs(enc *c) {
    for (size_t i = 0; i < c->n_bufs; i++) free(c->bufs[i]);
    c->n_bufs = 0;
}

/* Rust char::is_whitespace (the White_Space property) */
static int is_ws(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}
/* start of the whitespace run that ends at s[end] */
static size_t ws_back(const char *s, size_t end) {
    while (end > 0) {
        size_t b = end - 1;
        while (b > 0 && ((uint8_t)s[b] & 0xC0) == 0x80) b--;
        uint32_t cp;
        tok_utf8_next((const uint8_t *)s + b, &cp);
        if (!is_ws(cp)) break;
        end = b;
    }
    return end;
}
static size_t ws_fwd(const char *s, size_t n, size_t pos) {
    while (pos < n) {
        uint32_t cp;
        int k = tok_utf8_next((const uint8_t *)s + pos, &cp);
        if (!is_ws(cp)) break;
        pos += (size_t)k;
    }
    return pos;
}

/* ---- normalizers ---- */
/* NFC quick check (UAX #15): text is already NFC if every code point has NFC_QC = Yes and the
 * combining classes of each run of non-starters do not decrease. NFC_QC = No: the code point
 * changes under NFC on its own (a singleton, an excluded or non-starter decomposition);
 * Maybe: it can compose with what precedes it (utf8proc marks these comb_index >= 0x8000;
 * Hangul V and T jamo compose algorithmically). */
static int nfc_maybe(uint32_t cp, const utf8proc_property_t *p) {
    return (cp >= 0x1100 && cp <= 0x11FF) || (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000);
}
/* supplementary planes at run time: Yes if not Maybe and without any canonical decomposition
 * (conservative: a recomposing decomposition is treated as No, which only costs time) */
static int nfc_qc_yes_fast(uint32_t cp) {
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
    return !nfc_maybe(cp, p) && (p->decomp_seqindex == UINT16_MAX || p->decomp_type != 0);
}

/* the BMP table, at load: Yes if not Maybe and NFC leaves the code point alone */
void tok_build_nfc_qc(qa_tokenizer *t) {
    t->nfc_qc = qa_malloc(0x10000);
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
        int yes = !(cp >= 0xD800 && cp <= 0xDFFF) && !nfc_maybe(cp, p);
        if (yes && cp >= 0x300 && p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0) {
            utf8proc_uint8_t in[4], *o = NULL;
            utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)cp, in);
            utf8proc_ssize_t r = utf8proc_map(in, k, &o, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            yes = r == k && !memcmp(o, in, (size_t)k);
            free(o);
        }
        t->nfc_qc[cp] = yes ? (uint8_t)p->combining_class : 0xFF;
    }
}

static int nfc(const qa_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len, qa_err *e) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    unsigned last_ccc = 0;
    while (i < n) {
        if (p[i] < 0xCC) { i++; last_ccc = 0; continue; } /* lead bytes < 0xCC: code points < U+0300 */
        uint32_t cp;
        int k = tok_utf8_next(p + i, &cp);
        unsigned ccc;
        if (cp < 0x10000) ccc = t->nfc_qc[cp];
        else ccc = nfc_qc_yes_fast(cp) ? utf8proc_get_property((utf8proc_int32_t)cp)->combining_class : 0xFF;
        if (ccc == 0xFF || (ccc && last_ccc > ccc)) break;
        last_ccc = ccc;
        i += (size_t)k;
    }
    if (i == n) {
        *out = qa_malloc(n + 1);
        memcpy(*out, s, n);
        (*out)[n] = 0;
        *out_len = n;
        return 0;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r < 0) return QA_ERR(e, "NFC normalization failed: %s", utf8proc_errmsg(r));
    *out = (char *)dst;
    *out_len = (size_t)r;
    return 0;
}

/* Normalizers may lengthen the text (Prepend, Replace with a longer content, NFC of a few scripts), but
 * never by more than this: a chain of Replace normalizers that doubles the text each time (a -> aa,
 * 26 times: 256 MiB from 4 bytes) is refused instead of eating memory and minutes. */
#define QA_TOK_NORM_GROWTH 16
#define QA_TOK_NORM_SLACK 4096

int tok_normalize(const qa_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len, qa_err *e) {
    const size_t limit = n * QA_TOK_NORM_GROWTH + QA_TOK_NORM_SLACK;
    char *cur = qa_malloc(n + 1);
    memcpy(cur, s, n);
    cur[n] = 0;
    size_t cn = n;
    for (int k = 0; k < t->n_norms; k++) {
        const tok_norm *nm = &t->norms[k];
        char *nx = NULL;
        size_t nn = 0;
        if (nm->kind == NORM_NFC) {
            if (nfc(t, cur, cn, &nx, &nn, e)) { free(cur); return -1; }
        } else if (nm->kind == NORM_PREPEND) {
            if (!cn) continue;
            nn = nm->alen + cn;
            nx = qa_malloc(nn + 1);
            memcpy(nx, nm->a, nm->alen);
            memcpy(nx + nm->alen, cur, cn);
            nx[nn] = 0;
        } else { /* REPLACE: all non-overlapping occurrences, left to right */
            size_t cnt = 0;
            for (size_t i = 0; i + nm->alen <= cn;) {
                if (!memcmp(cur + i, nm->a, nm->alen)) { cnt++; i += nm->alen; } else i++;
            }
            if (!cnt) continue;
            if (nm->blen > nm->alen && (cnt > (limit - cn) / (nm->blen - nm->alen) || cn > limit)) {
                free(cur);
                return QA_ERR(e, "%s: normalizer %d (Replace) would make the %zu-byte input longer than %zu bytes (%d x "
                              "its length + %d): the tokenizer's normalizers grow the text without bound", t->name, k,
                              n, limit, QA_TOK_NORM_GROWTH, QA_TOK_NORM_SLACK);
            }
            nn = cn - cnt * nm->alen + cnt * nm->blen;
            nx = qa_malloc(nn + 1);
            size_t o = 0;
            for (size_t i = 0; i < cn;) {
                if (i + nm->alen <= cn && !memcmp(cur + i, nm->a, nm->alen)) {
                    memcpy(nx + o, nm->b, nm->blen); o += nm->blen; i += nm->alen;
                } else nx[o++] = cur[i++];
            }
            nx[nn] = 0;
        }
        free(cur);
        cur = nx;
        cn = nn;
        if (cn > limit) {
            free(cur);
            return QA_ERR(e, "%s: normalizer %d made the %zu-byte input %zu bytes long, more than %d x its length + %d: "
                          "the tokenizer's normalizers grow the text without bound", t->name, k, n, cn,
                          QA_TOK_NORM_GROWTH, QA_TOK_NORM_SLACK);
        }
    }
    *out = cur;
    *out_len = cn;
    return 0;
}

/* ---- regex matches with Oniguruma's find_iter semantics ---- */
typedef struct mt { size_t s, e; int is_match; } mt;
typedef struct mtvec { mt *v; size_t n, cap; } mtvec;
static void push_mt(mtvec *m, size_t s, size_t e, int is_match) {
    if (m->n == m->cap) { m->cap = m->cap ? m->cap * 2 : 64; m->v = qa_realloc(m->v, m->cap * sizeof *m->v); }
    m->v[m->n++] = (mt){s, e, is_match};
}

static int re_match(enc *c, const pcre2_code *re, const char *s, size_t n, size_t from, size_t *ms, size_t *me) {
    for (;;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !c->jit_stack) {
            /* a long run needs more than the default 32 KiB JIT stack: retry with up to 64 MiB */
            c->jit_stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
            if (c->jit_stack) { pcre2_jit_stack_assign(c->mctx, NULL, c->jit_stack); continue; }
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            QA_ERR(c->e, "%s: pre-tokenizer regex failed on a %zu-byte piece: %s", c->t->name, n, (const char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        *ms = ov[0];
        *me = ov[1];
        return 1;
    }
}

/* HF Pattern::find_matches for a regex, then SplitDelimiterBehavior; pushes pieces to out */
static int split_span(enc *c, const tok_pre *p, const span *in, spanvec *out, mtvec *m) {
    const char *s = in->p;
    size_t n = in->n;
    m->n = 0;
    size_t prev = 0, last_end = 0;
    int have_last = 0;
    size_t pos = 0;
    while (pos <= n) {
        size_t ms, me;
        int r = re_match(c, p->re, s, n, pos, &ms, &me);
        if (r < 0) return -1;
        if (!r) break;
        if (ms == me && have_last && ms == last_end) { /* no empty match right after a match */
            if (ms >= n) break;
            uint32_t cp;
            pos = ms + (size_t)tok_utf8_next((const uint8_t *)s + ms, &cp);
            continue;
        }
        if (prev != ms) push_mt(m, prev, ms, 0);
        push_mt(m, ms, me, 1);
        prev = me;
        last_end = me;
        have_last = 1;
        if (me > pos) pos = me;
        else { /* empty match: move on by one character */
            if (pos >= n) break;
            uint32_t cp;
            pos += (size_t)tok_utf8_next((const uint8_t *)s + pos, &cp);
        }
    }
    if (prev != n) push_mt(m, prev, n, 0);
    if (p->invert) for (size_t i = 0; i < m->n; i++) m->v[i].is_match = !m->v[i].is_match;

    /* behaviours (HF NormalizedString::split) */
    size_t k = 0; /* compacted pieces written into m->v[0..k) with is_match = "remove" */
    switch (p->behavior) {
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < m->n; i++) m->v[i].is_match = 0;
        k = m->n;
        break;
    case SPLIT_REMOVED:
        k = m->n;
        break;
    case SPLIT_CONTIGUOUS: {
        int prev_match = 0;
        for (size_t i = 0; i < m->n; i++) {
            mt x = m->v[i];
            if (x.is_match == prev_match && k) m->v[k - 1].e = x.e;
            else m->v[k++] = (mt){x.s, x.e, 0};
            prev_match = x.is_match;
        }
        break;
    }
    case SPLIT_MERGED_PREV: {
        int prev_match = 0;
        for (size_t i = 0; i < m->n; i++) {
            mt x = m->v[i];
            if (x.is_match && !prev_match && k) m->v[k - 1].e = x.e;
            else m->v[k++] = (mt){x.s, x.e, 0};
            prev_match = x.is_match;
        }
        break;
    }
    case SPLIT_MERGED_NEXT: { /* fold from the right */
        int prev_match = 0;
        size_t w = m->n; /* write from the end */
        for (size_t i = m->n; i-- > 0;) {
            mt x = m->v[i];
            if (x.is_match && !prev_match && w < m->n) m->v[w].s = x.s;
            else m->v[--w] = (mt){x.s, x.e, 0};
            prev_match = x.is_match;
        }
        for (size_t i = w; i < m->n; i++) m->v[k++] = m->v[i];
        break;
    }
    }
    for (size_t i = 0; i < k; i++)
        if (!m->v[i].is_match) push_span(out, s + m->v[i].s, m->v[i].e - m->v[i].s, in->orig0 && m->v[i].s == 0);
    return 0;
}

/* ---- BPE (HF models/bpe/model.rs merge_word + word.rs merge_all) ----
 * The queue holds (rank << 32 | pos): the smallest rank first, the leftmost position among equal
 * ranks, as HF's BinaryHeap<Merge> orders them. A 4-ary heap of 8-byte keys keeps the cache misses
 * of very long words (a Llama segment is one word) down. The merged id of an entry is
 * ranks[rank].new_id; an entry is stale when the pair at pos is no longer ranks[rank] (HF's check). */
static void heap_push(enc *c, size_t *hn, uint64_t x) {
    if (*hn == c->cap_heap) {
        c->cap_heap = c->cap_heap ? c->cap_heap * 2 : 256;
        c->heap = qa_realloc(c->heap, c->cap_heap * sizeof *c->heap);
    }
    uint64_t *h = c->heap;
    size_t i = (*hn)++;
    while (i > 0) {
        size_t par = (i - 1) / 4;
        if (h[par] <= x) break;
        h[i] = h[par];
        i = par;
    }
    h[i] = x;
}
static uint64_t heap_pop(enc *c, size_t *hn) {
    uint64_t *h = c->heap, top = h[0], x = h[--(*hn)];
    size_t n = *hn, i = 0;
    for (;;) {
        size_t f = 4 * i + 1, m = i;
        uint64_t best = x;
        size_t end = f + 4 < n ? f + 4 : n;
        for (size_t k = f; k < end; k++)
            if (h[k] < best) { best = h[k]; m = k; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (n) h[i] = x;
    return top;
}

#define SMALL_WORD 16 /* words up to this many symbols merge without a heap */
static void add_sym(enc *c, size_t *ns, int32_t id, int small) {
    if (*ns == c->cap_syms) {
        c->cap_syms = c->cap_syms ? c->cap_syms * 2 : 256;
        c->syms = qa_realloc(c->syms, c->cap_syms * sizeof *c->syms);
    }
    sym *x = &c->syms[*ns];
    x->id = id;
    x->prev = (int32_t)*ns - 1;
    x->next = (int32_t)*ns + 1;
    x->alive = 1;
    x->small = (int16_t)small;
    (*ns)++;
}

static void bpe(enc *c, const char *s, size_t n) {
    const qa_tokenizer *t = c->t;
    if (!n) return;
    int bl = t->byte_level;
    if (bl && t->word_map.n) { /* a whole piece that is a token BPE rebuilds as itself */
        uint32_t h = tok_hash(s, n), h2 = h * 0x9E3779B1u;
        uint32_t b1 = h & (WM_BLOOM_BITS - 1), b2 = (h2 >> 11) & (WM_BLOOM_BITS - 1);
        if ((t->wm_bloom[b1 >> 6] >> (b1 & 63) & 1) && (t->wm_bloom[b2 >> 6] >> (b2 & 63) & 1)) {
            int32_t id = tok_strmap_get(&t->word_map, s, n);
            if (id >= 0) { push_id(c, id); return; }
        }
    }
    if (t->ignore_merges) {
        const char *w = s;
        size_t wn = n;
        if (bl) {
            if (c->cap_tmp < 2 * n + 1) { c->cap_tmp = 2 * n + 1; c->tmp = qa_realloc(c->tmp, c->cap_tmp); }
            wn = 0;
            for (size_t i = 0; i < n; i++) {
                uint8_t b = (uint8_t)s[i];
                memcpy(c->tmp + wn, t->byte_char[b], t->byte_char_len[b]);
                wn += t->byte_char_len[b];
            }
            w = c->tmp;
        }
        int32_t id = tok_strmap_get(&t->vocab, w, wn);
        if (id >= 0) { push_id(c, id); return; }
    }
    /* initial symbols */
    size_t ns = 0;
    int32_t unk_pending = 0; /* 1 if an unk symbol waits to be added */
    for (size_t i = 0; i < n;) {
        const char *ch;
        size_t chn;
        int32_t id;
        int small;
        if (bl) {
            uint8_t b = (uint8_t)s[i];
            small = b;
            id = t->byte_char_id[b];
            ch = t->byte_char[b];
            chn = t->byte_char_len[b];
            i++;
        } else {
            uint32_t cp;
            int k = tok_utf8_next((const uint8_t *)s + i, &cp);
            ch = s + i;
            chn = (size_t)k;
            id = cp < 0x10000 && t->cp_id ? t->cp_id[cp] : tok_strmap_get(&t->vocab, ch, chn);
            small = cp < 256 ? (int)cp : -1;
            i += (size_t)k;
        }
        if (id >= 0) {
            if (unk_pending) { add_sym(c, &ns, t->unk_id, -1); unk_pending = 0; }
            add_sym(c, &ns, id, small);
            continue;
        }
        if (t->byte_fallback) {
            int ok = 1;
            for (size_t k = 0; k < chn; k++) if (t->byte_fb_id[(uint8_t)ch[k]] < 0) ok = 0;
            if (ok) {
                for (size_t k = 0; k < chn; k++) add_sym(c, &ns, t->byte_fb_id[(uint8_t)ch[k]], -1);
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (unk_pending && !t->fuse_unk) add_sym(c, &ns, t->unk_id, -1);
            unk_pending = 1;
        }
    }
    if (unk_pending) add_sym(c, &ns, t->unk_id, -1);
    if (!ns) return;
    sym *y = c->syms;
    y[ns - 1].next = -1;
    if (ns > 1 && ns <= SMALL_WORD) {
        /* short words: the ranks of the current pairs in an array, the smallest found by a scan
         * (left to right, so the leftmost wins ties): the same choice as the heap, without it */
        const tok_mergemap *mm = &t->merges;
        const tok_rank *rk = t->ranks;
        int32_t pr[SMALL_WORD];
        for (size_t i = 0; i + 1 < ns; i++)
            pr[i] = y[i].small >= 0 && y[i + 1].small >= 0 && t->pair256 ? t->pair256[y[i].small << 8 | y[i + 1].small]
                                                                        : tok_merge_rank(mm, y[i].id, y[i + 1].id);
        pr[ns - 1] = -1;
        for (;;) {
            int32_t best = -1;
            uint32_t best_rank = UINT32_MAX;
            for (int32_t i = 0; i >= 0; i = y[i].next)
                if ((uint32_t)pr[i] < best_rank) { best_rank = (uint32_t)pr[i]; best = i; }
            if (best < 0) break;
            const tok_rank *m = &rk[best_rank];
            int32_t j = y[best].next;
            y[best].id = m->new_id;
            y[best].next = y[j].next;
            y[j].alive = 0;
            if (y[j].next >= 0) {
                y[y[j].next].prev = best;
                pr[best] = tok_merge_rank(mm, y[best].id, y[y[best].next].id);
            } else
                pr[best] = -1;
            if (y[best].prev >= 0) pr[y[best].prev] = tok_merge_rank(mm, y[y[best].prev].id, y[best].id);
        }
    } else if (ns > 1) {
        const tok_mergemap *mm = &t->merges;
        const tok_rank *rk = t->ranks;
        size_t hn = 0;
        for (size_t i = 0; i + 1 < ns; i++) {
            int32_t rank = y[i].small >= 0 && y[i + 1].small >= 0 && t->pair256
                               ? t->pair256[y[i].small << 8 | y[i + 1].small]
                               : tok_merge_rank(mm, y[i].id, y[i + 1].id);
            if (rank >= 0) heap_push(c, &hn, (uint64_t)rank << 32 | i);
        }
        while (hn) {
            uint64_t top = heap_pop(c, &hn);
            int32_t top_pos = (int32_t)(uint32_t)top;
            const tok_rank *m = &rk[top >> 32];
            sym *cur = &y[top_pos];
            if (!cur->alive || cur->next < 0) continue;
            int32_t next_pos = cur->next;
            sym right = y[next_pos];
            /* stale entry? HF checks that the pair still merges into the same id; a pair's text only
             * grows when a neighbour merges, so that is the same as: the pair is still (a, b) */
            if (cur->id != m->a || right.id != m->b) continue;
            cur->id = m->new_id;
            cur->next = right.next;
            y[next_pos].alive = 0;
            if (right.next >= 0) y[right.next].prev = top_pos;
            if (cur->prev >= 0) {
                int32_t rank = tok_merge_rank(mm, y[cur->prev].id, cur->id);
                if (rank >= 0) heap_push(c, &hn, (uint64_t)rank << 32 | (uint32_t)cur->prev);
            }
            if (cur->next >= 0) {
                int32_t rank = tok_merge_rank(mm, cur->id, y[cur->next].id);
                if (rank >= 0) heap_push(c, &hn, (uint64_t)rank << 32 | (uint32_t)top_pos);
            }
        }
    }
    for (size_t i = 0; i < ns; i++)
        if (c->syms[i].alive) push_id(c, c->syms[i].id);
}

void tok_build_caches(qa_tokenizer *t) {
    t->cp_id = qa_malloc(0x10000 * sizeof *t->cp_id);
    for (uint32_t i = 0; i < 0x10000; i++) t->cp_id[i] = -1;
    for (uint32_t i = 0; i < t->vocab.cap; i++) {
        const tok_strslot *x = &t->vocab.slot[i];
        if (!x->key || !x->klen || tok_utf8_valid_prefix((const uint8_t *)x->key, x->klen) != x->klen) continue;
        uint32_t cp;
        if ((uint32_t)tok_utf8_next((const uint8_t *)x->key, &cp) == x->klen && cp < 0x10000) t->cp_id[cp] = x->val;
    }
    int32_t small_id[256];
    for (int b = 0; b < 256; b++) small_id[b] = t->byte_level ? t->byte_char_id[b] : t->cp_id[b];
    t->pair256 = qa_malloc(256 * 256 * sizeof *t->pair256);
    for (int a = 0; a < 256; a++)
        for (int b = 0; b < 256; b++)
            t->pair256[a << 8 | b] = small_id[a] >= 0 && small_id[b] >= 0 ? tok_merge_rank(&t->merges, small_id[a], small_id[b]) : -1;
    if (!t->byte_level) return;
    enc c = {0};
    c.t = t;
    tok_strmap wm;
    tok_strmap_init(&wm, t->vocab.n);
    uint64_t *bloom = qa_calloc(WM_BLOOM_BITS / 64, sizeof *bloom);
    char *raw = NULL;
    size_t cap = 0;
    for (uint32_t i = 0; i < t->vocab.cap; i++) {
        const tok_strslot *x = &t->vocab.slot[i];
        if (!x->key || !x->klen || tok_utf8_valid_prefix((const uint8_t *)x->key, x->klen) != x->klen) continue;
        if (cap < x->klen) { cap = x->klen; raw = qa_realloc(raw, cap); }
        size_t n = 0;
        int ok = 1;
        for (size_t j = 0; j < x->klen && ok;) {
            uint32_t cp;
            j += (size_t)tok_utf8_next((const uint8_t *)x->key + j, &cp);
            if (cp >= 0x144 || t->char_byte[cp] < 0) ok = 0;
            else raw[n++] = (char)t->char_byte[cp];
        }
        if (!ok) continue;
        c.n_ids = 0;
        bpe(&c, raw, n);
        if (c.n_ids == 1 && c.ids[0] == x->val) {
            tok_strmap_put(&wm, tok_pool_dup(&t->pool, raw, n), n, x->val);
            uint32_t h = tok_hash(raw, n), h2 = h * 0x9E3779B1u;
            uint32_t b1 = h & (WM_BLOOM_BITS - 1), b2 = (h2 >> 11) & (WM_BLOOM_BITS - 1);
            bloom[b1 >> 6] |= 1ull << (b1 & 63);
            bloom[b2 >> 6] |= 1ull << (b2 & 63);
        }
    }
    free(raw);
    free(c.ids);
    free(c.syms);
    free(c.heap);
    free(c.tmp);
    t->word_map = wm;
    t->wm_bloom = bloom;
}

/* ---- pre-tokenizers, then the model ---- */
static int pretok_and_model(enc *c, const char *s, size_t n, int orig0) {
    const qa_tokenizer *t = c->t;
    if (!n) return 0;
    spanvec *in = &c->sv[0], *out = &c->sv[1];
    in->n = 0;
    push_span(in, s, n, orig0);
    mtvec m = {0};
    int rc = 0;
    for (int k = 0; k < t->n_pres && !rc; k++) {
        const tok_pre *p = &t->pres[k];
        out->n = 0;
        if (p->kind == PRE_SPLIT) {
            for (size_t i = 0; i < in->n && !rc; i++) rc = split_span(c, p, &in->v[i], out, &m);
        } else if (p->kind == PRE_BYTELEVEL) {
            if (!p->add_prefix_space && !p->re) continue; /* the byte mapping happens in bpe() */
            spanvec *src = in;
            spanvec tmp = {0};
            if (p->add_prefix_space) {
                size_t tot = 0;
                for (size_t i = 0; i < in->n; i++) tot += in->v[i].n + 1;
                char *b = new_buf(c, tot), *w = b;
                for (size_t i = 0; i < in->n; i++) {
                    const span *x = &in->v[i];
                    char *st = w;
                    if (x->p[0] != ' ') *w++ = ' ';
                    memcpy(w, x->p, x->n);
                    w += x->n;
                    push_span(&tmp, st, (size_t)(w - st), x->orig0);
                }
                src = &tmp;
            }
            if (p->re) {
                tok_pre iso = *p;
                iso.behavior = SPLIT_ISOLATED;
                iso.invert = 0;
                for (size_t i = 0; i < src->n && !rc; i++) rc = split_span(c, &iso, &src->v[i], out, &m);
            } else {
                for (size_t i = 0; i < src->n; i++) push_span(out, src->v[i].p, src->v[i].n, src->v[i].orig0);
            }
            free(tmp.v);
        } else { /* METASPACE */
            size_t tot = 0;
            for (size_t i = 0; i < in->n; i++) tot += in->v[i].n * p->repl_len + p->repl_len;
            char *b = new_buf(c, tot), *w = b;
            spanvec tmp = {0};
            for (size_t i = 0; i < in->n; i++) {
                const span *x = &in->v[i];
                char *st = w;
                int starts = x->n >= p->repl_len && !memcmp(x->p, p->repl, p->repl_len);
                /* spaces first: a piece that starts with ' ' starts with the replacement afterwards */
                if (x->p[0] == ' ') starts = 1;
                if ((p->prepend_scheme == PREPEND_ALWAYS && !starts) ||
                    (p->prepend_scheme == PREPEND_FIRST && !starts && x->orig0)) {
                    memcpy(w, p->repl, p->repl_len);
                    w += p->repl_len;
                }
                for (size_t j = 0; j < x->n; j++) {
                    if (x->p[j] == ' ') { memcpy(w, p->repl, p->repl_len); w += p->repl_len; }
                    else *w++ = x->p[j];
                }
                push_span(&tmp, st, (size_t)(w - st), x->orig0);
            }
            if (p->split) {
                tok_pre sp = *p;
                sp.kind = PRE_SPLIT;
                sp.behavior = SPLIT_MERGED_NEXT;
                sp.invert = 0;
                for (size_t i = 0; i < tmp.n && !rc; i++) rc = split_span(c, &sp, &tmp.v[i], out, &m);
            } else {
                for (size_t i = 0; i < tmp.n; i++) push_span(out, tmp.v[i].p, tmp.v[i].n, tmp.v[i].orig0);
            }
            free(tmp.v);
        }
        spanvec *sw = in; in = out; out = sw;
    }
    free(m.v);
    if (!rc)
        for (size_t i = 0; i < in->n; i++) bpe(c, in->v[i].p, in->v[i].n);
    free_bufs(c);
    return rc;
}

/* split s on the added tokens of matcher m (HF AddedVocabulary::find_matches); pieces that are not
 * tokens go to the next stage */
static int split_added(enc *c, const tok_matcher *m, const char *s, size_t n, size_t orig_off, int normalize);

static int segment(enc *c, const char *s, size_t n, size_t orig_off) {
    const qa_tokenizer *t = c->t;
    if (!n) return 0;
    if (!t->n_norms) {
        if (t->m_norm.n_patterns) return split_added(c, &t->m_norm, s, n, orig_off, 0);
        return pretok_and_model(c, s, n, orig_off == 0);
    }
    char *ns;
    size_t nn;
    if (tok_normalize(t, s, n, &ns, &nn, c->e)) return -1;
    int rc;
    if (t->m_norm.n_patterns) rc = split_added(c, &t->m_norm, ns, nn, orig_off, 0);
    else rc = pretok_and_model(c, ns, nn, orig_off == 0);
    free(ns);
    return rc;
}

static int split_added(enc *c, const tok_matcher *m, const char *s, size_t n, size_t orig_off, int normalize) {
    const qa_tokenizer *t = c->t;
    size_t start_offset = 0, search = 0, ms, me;
    int32_t ti;
    while (tok_matcher_find(m, s, n, search, &ms, &me, &ti)) {
        const tok_added *a = &t->added[ti];
        size_t st = ms, sp = me;
        if (a->lstrip) { st = ws_back(s, ms); if (st < start_offset) st = start_offset; }
        if (a->rstrip) sp = ws_fwd(s, n, me);
        if (start_offset < st) {
            int rc = normalize ? segment(c, s + start_offset, st - start_offset, orig_off + start_offset)
                               : pretok_and_model(c, s + start_offset, st - start_offset, orig_off + start_offset == 0);
            if (rc) return -1;
        }
        push_id(c, a->id);
        start_offset = sp;
        search = me > sp ? me : sp;
    }
    if (start_offset < n) {
        int rc = normalize ? segment(c, s + start_offset, n - start_offset, orig_off + start_offset)
                           : pretok_and_model(c, s + start_offset, n - start_offset, orig_off + start_offset == 0);
        if (rc) return -1;
    }
    return 0;
}

int qa_tok_encode(const qa_tokenizer *t, const char *text, size_t len, int add_special_tokens, int32_t **ids,
                  size_t *n_ids, qa_err *e) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return QA_ERR(e, "qa_tok_encode: NULL text with length %zu", len);
    if (len > (size_t)INT32_MAX / 4)
        return QA_ERR(e, "%s: a text of %zu bytes is too long to tokenize at once (limit 512 MiB); split it",
                      t->name, len);
    enc c = {0};
    c.t = t;
    c.e = e;
    char *fixed = NULL;
    const char *s = text ? text : "";
    size_t n = len;
    if (tok_utf8_valid_prefix((const uint8_t *)s, n) != n) { fixed = tok_utf8_lossy(s, n, &n); s = fixed; }
    c.md = pcre2_match_data_create(1, NULL);
    c.mctx = pcre2_match_context_create(NULL);
    if (!c.md || !c.mctx) QA_DIE("out of memory creating PCRE2 match data");
    /* HF (Oniguruma) has no backtracking limit: a 10 MB whitespace run is one legitimate match */
    pcre2_set_match_limit(c.mctx, UINT32_MAX);
    pcre2_set_depth_limit(c.mctx, UINT32_MAX);
    if (add_special_tokens)
        for (int i = 0; i < t->n_post_prefix; i++) push_id(&c, t->post_prefix[i]);
    int rc = split_added(&c, &t->m_raw, s, n, 0, 1);
    if (add_special_tokens)
        for (int i = 0; i < t->n_post_suffix; i++) push_id(&c, t->post_suffix[i]);
    free(fixed);
    pcre2_match_data_free(c.md);
    pcre2_match_context_free(c.mctx);
    if (c.jit_stack) pcre2_jit_stack_free(c.jit_stack);
    free(c.sv[0].v);
    free(c.sv[1].v);
    free(c.bufs);
    free(c.syms);
    free(c.heap);
    free(c.tmp);
    if (rc) { free(c.ids); return -1; }
    if (!c.ids) c.ids = qa_malloc(sizeof *c.ids);
    *ids = c.ids;
    *n_ids = c.n_ids;
    return 0;
}
