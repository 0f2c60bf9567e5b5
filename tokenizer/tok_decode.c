/* tok_decode.c — ids -> text with the decoder chain of the tokenizer.json, as HF `tokenizers`
 * decode(ids, skip_special_tokens) does: id -> token string (ids without a token are skipped),
 * then every decoder step maps the list of strings, then the strings are concatenated. */
#include "tokenizer/tok_internal.h"
#include "common/qa_mem.h"

#include <stdlib.h>
#include <string.h>

/* a list of strings in one buffer: string i is buf[off[i] .. off[i] + n[i]) */
typedef struct strv {
    char *buf;
    size_t blen, bcap;
    size_t *off, *n;
    size_t len, cap;
} strv;

static char *sv_alloc(strv *v, size_t n) { /* a new string of n bytes, to be filled by the caller */
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->off = qa_realloc(v->off, v->cap * sizeof *v->off);
        v->n = qa_realloc(v->n, v->cap * sizeof *v->n);
    }
    if (v->blen + n + 1 > v->bcap) {
        v->bcap = (v->blen + n + 1) * 2;
        v->buf = qa_realloc(v->buf, v->bcap);
    }
    v->off[v->len] = v->blen;
    v->n[v->len++] = n;
    v->blen += n;
    return v->buf + v->blen - n;
}
static void sv_shrink_last(strv *v, size_t n) { /* the last string is only n bytes long */
    v->blen -= v->n[v->len - 1] - n;
    v->n[v->len - 1] = n;
}
static void sv_push_copy(strv *v, const char *s, size_t n) { memcpy(sv_alloc(v, n), s, n); }
#define SV_S(v, i) ((v)->buf + (v)->off[i])
static void sv_free(strv *v) {
    free(v->buf);
    free(v->off);
    free(v->n);
    memset(v, 0, sizeof *v);
}
/* join all strings into one NUL-terminated heap string */
static char *sv_join(const strv *v, size_t *out_n) {
    size_t tot = 0;
    for (size_t i = 0; i < v->len; i++) tot += v->n[i];
    char *d = qa_malloc(tot + 1), *w = d;
    for (size_t i = 0; i < v->len; i++) { memcpy(w, SV_S(v, i), v->n[i]); w += v->n[i]; }
    *w = 0;
    *out_n = tot;
    return d;
}

static int byte_token(const char *s, size_t n) {
    /* "<0xXX>" as HF's ByteFallback reads it (u8::from_str_radix on the two chars, which accepts a
     * leading '+'); -1 if not a byte token */
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char ch = s[i];
        int d;
        if (i == 3 && ch == '+') continue;
        if (ch >= '0' && ch <= '9') d = ch - '0';
        else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

static void step(const qa_tokenizer *t, const tok_dec *d, strv *in, strv *out) {
    switch (d->kind) {
    case DEC_REPLACE:
        for (size_t i = 0; i < in->len; i++) {
            const char *s = SV_S(in, i);
            size_t n = in->n[i], cnt = 0;
            for (size_t j = 0; j + d->alen <= n;) {
                if (!memcmp(s + j, d->a, d->alen)) { cnt++; j += d->alen; } else j++;
            }
            size_t nn = n - cnt * d->alen + cnt * d->blen, o = 0;
            char *w = sv_alloc(out, nn);
            for (size_t j = 0; j < n;) {
                if (j + d->alen <= n && !memcmp(s + j, d->a, d->alen)) { memcpy(w + o, d->b, d->blen); o += d->blen; j += d->alen; }
                else w[o++] = s[j++];
            }
        }
        break;
    case DEC_BYTEFALLBACK: {
        char *bytes = NULL;
        size_t nb = 0, cb = 0;
        for (size_t i = 0; i <= in->len; i++) {
            int b = i < in->len ? byte_token(SV_S(in, i), in->n[i]) : -1;
            if (b >= 0) {
                if (nb == cb) { cb = cb ? cb * 2 : 16; bytes = qa_realloc(bytes, cb); }
                bytes[nb++] = (char)b;
                continue;
            }
            if (nb) {
                if (tok_utf8_valid_prefix((const uint8_t *)bytes, nb) == nb) sv_push_copy(out, bytes, nb);
                else for (size_t k = 0; k < nb; k++) sv_push_copy(out, "\xEF\xBF\xBD", 3);
                nb = 0;
            }
            if (i < in->len) sv_push_copy(out, SV_S(in, i), in->n[i]);
        }
        free(bytes);
        break;
    }
    case DEC_FUSE: {
        char *w = sv_alloc(out, in->blen);
        for (size_t i = 0; i < in->len; i++) { memcpy(w, SV_S(in, i), in->n[i]); w += in->n[i]; }
        break;
    }
    case DEC_STRIP:
        for (size_t i = 0; i < in->len; i++) {
            const char *s = SV_S(in, i);
            size_t n = in->n[i], a = 0, b = n;
            for (int k = 0; k < d->start && a + d->alen <= b && !memcmp(s + a, d->a, d->alen); k++) a += d->alen;
            for (int k = 0; k < d->stop && b >= a + d->alen && !memcmp(s + b - d->alen, d->a, d->alen); k++) b -= d->alen;
            sv_push_copy(out, s + a, b - a);
        }
        break;
    case DEC_METASPACE:
        for (size_t i = 0; i < in->len; i++) {
            const char *s = SV_S(in, i);
            size_t n = in->n[i], o = 0;
            char *w = sv_alloc(out, n);
            for (size_t j = 0; j < n;) {
                if (j + d->alen <= n && !memcmp(s + j, d->a, d->alen)) {
                    if (!(i == 0 && d->prepend_scheme != PREPEND_NEVER)) w[o++] = ' ';
                    j += d->alen;
                } else w[o++] = s[j++];
            }
            sv_shrink_last(out, o);
        }
        break;
    case DEC_BYTELEVEL: {
        size_t tot = 0;
        for (size_t i = 0; i < in->len; i++) tot += in->n[i];
        char *bytes = qa_malloc(tot + 1);
        size_t nb = 0;
        for (size_t i = 0; i < in->len; i++) {
            const uint8_t *s = (const uint8_t *)SV_S(in, i);
            size_t n = in->n[i], start = nb;
            int ok = 1;
            for (size_t j = 0; j < n;) {
                uint32_t cp;
                /* (token strings are valid UTF-8: they come from the JSON) */
                j += (size_t)tok_utf8_next(s + j, &cp);
                if (cp >= 0x144 || t->char_byte[cp] < 0) { ok = 0; break; }
                bytes[nb++] = (char)t->char_byte[cp];
            }
            if (!ok) { nb = start; memcpy(bytes + nb, s, n); nb += n; } /* not byte-level: the token's own bytes */
        }
        size_t ln;
        char *txt = tok_utf8_lossy(bytes, nb, &ln);
        free(bytes);
        sv_push_copy(out, txt, ln);
        free(txt);
        break;
    }
    }
}

int qa_tok_decode(const qa_tokenizer *t, const int32_t *ids, size_t n, int skip_special_tokens, char **text,
                  size_t *len, qa_err *e) {
    (void)e;
    strv cur = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->tok_str[id]) continue;
        if (skip_special_tokens && t->is_special[id]) continue;
        sv_push_copy(&cur, t->tok_str[id], t->tok_len[id]);
    }
    if (!t->has_decoder) { /* HF: tokens.join(" ") */
        size_t tot = 0;
        for (size_t i = 0; i < cur.len; i++) tot += cur.n[i] + 1;
        char *d = qa_malloc(tot + 1), *w = d;
        for (size_t i = 0; i < cur.len; i++) {
            if (i) *w++ = ' ';
            memcpy(w, SV_S(&cur, i), cur.n[i]);
            w += cur.n[i];
        }
        *w = 0;
        *len = (size_t)(w - d);
        *text = d;
        sv_free(&cur);
        return 0;
    }
    for (int k = 0; k < t->n_decs; k++) {
        strv nx = {0};
        step(t, &t->decs[k], &cur, &nx);
        sv_free(&cur);
        cur = nx;
    }
    *text = sv_join(&cur, len);
    sv_free(&cur);
    return 0;
}
