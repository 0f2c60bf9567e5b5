/* tok_load.c — parse a Hugging Face tokenizer.json into an immutable qa_tokenizer.
 *
 * Only the pieces the Qwen and Llama/Mistral families use (see tokenizer/tokenizer.h) are accepted;
 * everything else fails with one line naming the file and the JSON key, so that a tokenizer of
 * another kind is never silently tokenized wrongly.
 */
#include "tokenizer/tok_internal.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS ((1 << TOK_ID_BITS) - 1) /* ids from here on are refused (a malformed file, not a tokenizer) */

/* ---- small JSON helpers ---- */
static const char *type_of(json_t *o) {
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}
/* optional boolean: absent/null -> dflt; a non-boolean is an error */
static int get_bool(const qa_tokenizer *t, json_t *o, const char *where, const char *key, int dflt, int *out,
                    qa_err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = dflt; return 0; }
    if (!json_is_boolean(v)) return QA_ERR(e, "%s: %s.%s must be true or false", t->name, where, key);
    *out = json_is_true(v);
    return 0;
}
/* required string (may contain NUL) copied into the pool */
static int get_str(qa_tokenizer *t, json_t *o, const char *where, const char *key, char **out, size_t *len,
                   qa_err *e) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return QA_ERR(e, "%s: %s.%s must be a string", t->name, where, key);
    *len = json_string_length(v);
    *out = tok_pool_dup(&t->pool, json_string_value(v), *len);
    return 0;
}
/* a pattern {"String": s} or {"Regex": r}: returns 0 and sets *is_regex */
static int get_pattern(qa_tokenizer *t, json_t *o, const char *where, char **s, size_t *n, int *is_regex,
                       qa_err *e) {
    json_t *p = json_object_get(o, "pattern");
    if (!json_is_object(p)) return QA_ERR(e, "%s: %s.pattern must be an object {\"String\"|\"Regex\": ...}", t->name, where);
    if (json_object_get(p, "String")) { *is_regex = 0; return get_str(t, p, where, "String", s, n, e); }
    if (json_object_get(p, "Regex")) { *is_regex = 1; return get_str(t, p, where, "Regex", s, n, e); }
    return QA_ERR(e, "%s: %s.pattern has neither \"String\" nor \"Regex\"", t->name, where);
}

/* ---- regex: Oniguruma semantics on PCRE2 ----
 * HF uses Oniguruma, whose \s is [\t-\r\x85\p{Zl}\p{Zp}\p{Zs}]; PCRE2's UCP \s also takes U+180E.
 * Rewrite \s (and \S outside classes) into explicit classes so both agree; the rest of the
 * pattern is compiled unchanged with PCRE2_UTF | PCRE2_UCP. */
#define ONIG_SPACE "\\t-\\r\\x{85}\\p{Z}"
static char *onig_to_pcre2(const char *p, size_t n, size_t *out_n) {
    size_t cap = n * 4 + 64, o = 0;
    char *out = qa_malloc(cap);
    int in_class = 0, class_start = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 40 > cap) { cap *= 2; out = qa_realloc(out, cap); }
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's' || d == 'S') {
                const char *rep = in_class ? (d == 's' ? ONIG_SPACE : "\\S")
                                           : (d == 's' ? "[" ONIG_SPACE "]" : "[^" ONIG_SPACE "]");
                size_t rl = strlen(rep);
                memcpy(out + o, rep, rl); o += rl; i++;
                class_start = 0;
                continue;
            }
            out[o++] = c; out[o++] = d; i++;
            class_start = 0;
            continue;
        }
        if (!in_class && c == '[') { in_class = 1; class_start = 1; out[o++] = c; continue; }
        if (in_class) {
            if (class_start == 1 && c == '^') { class_start = 2; out[o++] = c; continue; }
            if (c == ']' && !class_start) { in_class = 0; out[o++] = c; continue; }
            if (c == '[' && i + 1 < n && p[i + 1] == ':') { /* POSIX class [:alpha:] */
                const char *end = memchr(p + i + 2, ']', n - i - 2);
                if (end) {
                    size_t l = (size_t)(end - (p + i)) + 1;
                    if (o + l + 8 > cap) { cap += l + 64; out = qa_realloc(out, cap); }
                    memcpy(out + o, p + i, l); o += l; i += l - 1;
                    class_start = 0;
                    continue;
                }
            }
            class_start = 0;
        }
        out[o++] = c;
    }
    out[o] = 0;
    *out_n = o;
    return out;
}

static int compile_re(qa_tokenizer *t, const char *pat, size_t n, int literal, pcre2_code **re, const char *where,
                      qa_err *e) {
    int errcode;
    PCRE2_SIZE erroff;
    char *p = NULL;
    size_t pn = n;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP;
    if (literal) opts = PCRE2_UTF | PCRE2_LITERAL; /* UCP is not allowed with LITERAL (and not needed) */
    else p = onig_to_pcre2(pat, n, &pn);
    *re = pcre2_compile((PCRE2_SPTR)(p ? p : pat), pn, opts, &errcode, &erroff, NULL);
    free(p);
    if (!*re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return QA_ERR(e, "%s: %s: the regex does not compile with PCRE2 at offset %zu: %s", t->name, where,
                      (size_t)erroff, (const char *)msg);
    }
    pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    return 0;
}

/* ---- model ---- */
static int load_model(qa_tokenizer *t, json_t *model, qa_err *e) {
    if (!json_is_object(model)) return QA_ERR(e, "%s: \"model\" is missing or not an object", t->name);
    const char *ty = type_of(model);
    if (!ty) return QA_ERR(e, "%s: model.type is missing (only \"BPE\" is supported)", t->name);
    if (strcmp(ty, "BPE"))
        return QA_ERR(e, "%s: unsupported model type '%s' (qalign supports BPE tokenizers of the Qwen and "
                         "Llama/Mistral families)", t->name, ty);
    json_t *v = json_object_get(model, "dropout");
    if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0.0))
        return QA_ERR(e, "%s: model.dropout is set; BPE dropout is random and not supported", t->name);
    const char *unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(model, unsupported[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return QA_ERR(e, "%s: model.%s is not supported", t->name, unsupported[i]);
    }
    QA_TRY(get_bool(t, model, "model", "fuse_unk", 0, &t->fuse_unk, e));
    QA_TRY(get_bool(t, model, "model", "byte_fallback", 0, &t->byte_fallback, e));
    QA_TRY(get_bool(t, model, "model", "ignore_merges", 0, &t->ignore_merges, e));

    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return QA_ERR(e, "%s: model.vocab must be an object {token: id}", t->name);
    size_t nv = json_object_size(vocab);
    tok_strmap_init(&t->vocab, nv);
    int32_t max_id = -1;
    const char *key;
    json_t *val;
    void *it;
    for (it = json_object_iter(vocab); it; it = json_object_iter_next(vocab, it)) {
        val = json_object_iter_value(it);
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_IDS)
            return QA_ERR(e, "%s: model.vocab[\"%s\"] must be an integer id in [0, %d)", t->name,
                          json_object_iter_key(it), MAX_IDS);
        if (json_integer_value(val) > max_id) max_id = (int32_t)json_integer_value(val);
    }
    t->model_vocab_n = (int32_t)nv;
    t->n_ids = max_id + 1;
    t->tok_str = qa_calloc((size_t)t->n_ids + 1, sizeof *t->tok_str);
    t->tok_len = qa_calloc((size_t)t->n_ids + 1, sizeof *t->tok_len);
    for (it = json_object_iter(vocab); it; it = json_object_iter_next(vocab, it)) {
        key = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        int32_t id = (int32_t)json_integer_value(json_object_iter_value(it));
        char *k = tok_pool_dup(&t->pool, key, kl);
        tok_strmap_put(&t->vocab, k, kl, id);
        if (!t->tok_str[id]) { t->tok_str[id] = k; t->tok_len[id] = (uint32_t)kl; }
    }

    /* unk */
    t->unk_id = -1;
    v = json_object_get(model, "unk_token");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) return QA_ERR(e, "%s: model.unk_token must be a string or null", t->name);
        t->unk_id = tok_strmap_get(&t->vocab, json_string_value(v), json_string_length(v));
        if (t->unk_id < 0)
            return QA_ERR(e, "%s: model.unk_token '%s' is not in model.vocab", t->name, json_string_value(v));
    }
    /* byte fallback tokens <0x00>..<0xFF> */
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        t->byte_fb_id[b] = tok_strmap_get(&t->vocab, s, 6);
    }

    /* merges */
    json_t *merges = json_object_get(model, "merges");
    if (!merges || json_is_null(merges)) merges = NULL;
    else if (!json_is_array(merges)) return QA_ERR(e, "%s: model.merges must be an array", t->name);
    size_t nm = merges ? json_array_size(merges) : 0;
    if (nm >= (1u << TOK_RANK_BITS)) return QA_ERR(e, "%s: %zu merges is more than qalign supports (%u)", t->name, nm, 1u << TOK_RANK_BITS);
    uint32_t cap = 16;
    while (cap * 3 < nm * 5 + 1) cap <<= 1; /* load factor <= 0.6: 8-byte entries, linear probing */
    t->merges.cap = cap;
    t->merges.ent = qa_calloc(cap, sizeof *t->merges.ent);
    t->ranks = qa_calloc(nm + 1, sizeof *t->ranks);
    char *buf = NULL;
    size_t buf_cap = 0;
    for (size_t r = 0; r < nm; r++) {
        json_t *m = json_array_get(merges, r);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t n = json_string_length(m);
            const char *sp = memchr(s, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
                free(buf);
                return QA_ERR(e, "%s: model.merges[%zu] \"%s\" must be two tokens separated by exactly one space",
                              t->name, r, s);
            }
            a = s; al = (size_t)(sp - s); b = sp + 1; bl = n - al - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)); al = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)); bl = json_string_length(json_array_get(m, 1));
        } else {
            free(buf);
            return QA_ERR(e, "%s: model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", t->name, r);
        }
        int32_t ia = tok_strmap_get(&t->vocab, a, al), ib = tok_strmap_get(&t->vocab, b, bl);
        if (ia < 0 || ib < 0) {
            free(buf);
            return QA_ERR(e, "%s: model.merges[%zu]: token '%.*s' is not in model.vocab", t->name, r,
                          (int)(ia < 0 ? al : bl), ia < 0 ? a : b);
        }
        if (al + bl + 1 > buf_cap) { buf_cap = (al + bl + 1) * 2; buf = qa_realloc(buf, buf_cap); }
        memcpy(buf, a, al);
        memcpy(buf + al, b, bl);
        int32_t nid = tok_strmap_get(&t->vocab, buf, al + bl);
        if (nid < 0) {
            free(buf);
            return QA_ERR(e, "%s: model.merges[%zu]: the merged token '%.*s%.*s' is not in model.vocab", t->name, r,
                          (int)al, a, (int)bl, b);
        }
        tok_merge_put(&t->merges, ia, ib, (int32_t)r);
        t->ranks[r] = (tok_rank){ia, ib, nid};
    }
    free(buf);
    return 0;
}

/* ---- added tokens (HF AddedVocabulary::add_tokens id assignment) ---- */
static int load_added(qa_tokenizer *t, json_t *arr, qa_err *e) {
    if (arr && !json_is_null(arr) && !json_is_array(arr)) return QA_ERR(e, "%s: \"added_tokens\" must be an array", t->name);
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    t->added = qa_calloc(n + 1, sizeof *t->added);
    tok_strmap_init(&t->added_map, n);
    int32_t max_added = -1;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_object(o)) return QA_ERR(e, "%s: %s must be an object", t->name, where);
        tok_added a = {0};
        QA_TRY(get_str(t, o, where, "content", &a.content, &a.len, e));
        json_t *jid = json_object_get(o, "id");
        if (!json_is_integer(jid) || json_integer_value(jid) < 0 || json_integer_value(jid) >= MAX_IDS)
            return QA_ERR(e, "%s: %s.id must be an integer in [0, %d)", t->name, where, MAX_IDS);
        int single_word = 0;
        QA_TRY(get_bool(t, o, where, "special", 0, &a.special, e));
        QA_TRY(get_bool(t, o, where, "normalized", !a.special, &a.normalized, e));
        QA_TRY(get_bool(t, o, where, "lstrip", 0, &a.lstrip, e));
        QA_TRY(get_bool(t, o, where, "rstrip", 0, &a.rstrip, e));
        QA_TRY(get_bool(t, o, where, "single_word", 0, &single_word, e));
        if (single_word)
            return QA_ERR(e, "%s: %s ('%s'): single_word added tokens are not supported", t->name, where, a.content);
        if (!a.len) continue;
        if (tok_strmap_get(&t->added_map, a.content, a.len) >= 0) continue; /* same content: HF ignores it */
        /* the id: the existing one if the content is in the vocab, else the next free id */
        int32_t id = tok_strmap_get(&t->vocab, a.content, a.len);
        if (id < 0) {
            if (max_added < 0) id = t->model_vocab_n;
            else id = (max_added >= t->model_vocab_n || t->model_vocab_n == 0) ? max_added + 1 : t->model_vocab_n;
        }
        if (id >= MAX_IDS) return QA_ERR(e, "%s: %s: too many ids", t->name, where);
        if (id > max_added) max_added = id;
        if (id != (int32_t)json_integer_value(jid))
            fprintf(stderr, "qalign: warning: %s: added token '%s' has id %lld in the file but gets id %d (as in "
                            "Hugging Face tokenizers)\n", t->name, a.content, (long long)json_integer_value(jid), id);
        a.id = id;
        tok_strmap_put(&t->added_map, a.content, a.len, id);
        t->added[t->n_added++] = a;
    }
    /* grow the id tables to cover the added ids */
    int32_t n_ids = t->n_ids;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id + 1 > n_ids) n_ids = t->added[i].id + 1;
    if (n_ids > t->n_ids) {
        t->tok_str = qa_realloc(t->tok_str, (size_t)n_ids * sizeof *t->tok_str);
        t->tok_len = qa_realloc(t->tok_len, (size_t)n_ids * sizeof *t->tok_len);
        for (int32_t i = t->n_ids; i < n_ids; i++) { t->tok_str[i] = NULL; t->tok_len[i] = 0; }
        t->n_ids = n_ids;
    }
    t->is_special = qa_calloc((size_t)t->n_ids + 1, 1);
    t->is_added = qa_calloc((size_t)t->n_ids + 1, 1);
    for (int i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        /* the added map wins over the model vocab for id -> token (HF id_to_token) */
        t->tok_str[a->id] = a->content;
        t->tok_len[a->id] = (uint32_t)a->len;
        t->is_added[a->id] = 1;
        if (a->special) t->is_special[a->id] = 1;
    }
    return 0;
}

/* ---- normalizer ---- */
static int add_norm(qa_tokenizer *t, json_t *o, int depth, qa_err *e) {
    if (!o || json_is_null(o)) return 0;
    const char *ty = json_is_object(o) ? type_of(o) : NULL;
    if (!ty) return QA_ERR(e, "%s: normalizer must be null or an object with a \"type\"", t->name);
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(o, "normalizers");
        if (!json_is_array(arr) || depth > 8) return QA_ERR(e, "%s: normalizer Sequence needs a \"normalizers\" array", t->name);
        for (size_t i = 0; i < json_array_size(arr); i++) QA_TRY(add_norm(t, json_array_get(arr, i), depth + 1, e));
        return 0;
    }
    tok_norm n = {0};
    if (!strcmp(ty, "NFC")) { n.kind = NORM_NFC; t->has_nfc = 1; }
    else if (!strcmp(ty, "Prepend")) { n.kind = NORM_PREPEND; QA_TRY(get_str(t, o, "normalizer.Prepend", "prepend", &n.a, &n.alen, e)); }
    else if (!strcmp(ty, "Replace")) {
        int is_re;
        n.kind = NORM_REPLACE;
        QA_TRY(get_pattern(t, o, "normalizer.Replace", &n.a, &n.alen, &is_re, e));
        if (is_re) return QA_ERR(e, "%s: normalizer Replace with a Regex pattern is not supported", t->name);
        if (!n.alen) return QA_ERR(e, "%s: normalizer Replace has an empty pattern", t->name);
        QA_TRY(get_str(t, o, "normalizer.Replace", "content", &n.b, &n.blen, e));
    } else
        return QA_ERR(e, "%s: unsupported normalizer type '%s' (supported: NFC, Prepend, Replace, Sequence)", t->name, ty);
    t->norms = qa_realloc(t->norms, (size_t)(t->n_norms + 1) * sizeof *t->norms);
    t->norms[t->n_norms++] = n;
    return 0;
}

/* ---- pre-tokenizer ---- */
#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
static int push_pre(qa_tokenizer *t, tok_pre p) {
    t->pres = qa_realloc(t->pres, (size_t)(t->n_pres + 1) * sizeof *t->pres);
    t->pres[t->n_pres++] = p;
    return 0;
}
static int add_pre(qa_tokenizer *t, json_t *o, int depth, qa_err *e) {
    if (!o || json_is_null(o)) return 0;
    const char *ty = json_is_object(o) ? type_of(o) : NULL;
    if (!ty) return QA_ERR(e, "%s: pre_tokenizer must be null or an object with a \"type\"", t->name);
    if (t->byte_level)
        return QA_ERR(e, "%s: pre_tokenizer '%s' after ByteLevel is not supported (ByteLevel must be last)", t->name, ty);
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(o, "pretokenizers");
        if (!json_is_array(arr) || depth > 8) return QA_ERR(e, "%s: pre_tokenizer Sequence needs a \"pretokenizers\" array", t->name);
        for (size_t i = 0; i < json_array_size(arr); i++) QA_TRY(add_pre(t, json_array_get(arr, i), depth + 1, e));
        return 0;
    }
    tok_pre p = {0};
    if (!strcmp(ty, "Split")) {
        char *pat; size_t pl; int is_re;
        p.kind = PRE_SPLIT;
        QA_TRY(get_pattern(t, o, "pre_tokenizer.Split", &pat, &pl, &is_re, e));
        if (!pl) return QA_ERR(e, "%s: pre_tokenizer Split has an empty pattern", t->name);
        json_t *b = json_object_get(o, "behavior");
        const char *bs = json_is_string(b) ? json_string_value(b) : "";
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        p.behavior = -1;
        for (int i = 0; i < 5; i++) if (!strcmp(bs, names[i])) p.behavior = i;
        if (p.behavior < 0) return QA_ERR(e, "%s: pre_tokenizer Split: unknown behavior '%s'", t->name, bs);
        QA_TRY(get_bool(t, o, "pre_tokenizer.Split", "invert", 0, &p.invert, e));
        QA_TRY(compile_re(t, pat, pl, !is_re, &p.re, "pre_tokenizer.Split", e));
        return push_pre(t, p);
    }
    if (!strcmp(ty, "ByteLevel")) {
        int use_regex = 0;
        p.kind = PRE_BYTELEVEL;
        QA_TRY(get_bool(t, o, "pre_tokenizer.ByteLevel", "add_prefix_space", 1, &p.add_prefix_space, e));
        QA_TRY(get_bool(t, o, "pre_tokenizer.ByteLevel", "use_regex", 1, &use_regex, e));
        if (use_regex) QA_TRY(compile_re(t, GPT2_RE, strlen(GPT2_RE), 0, &p.re, "pre_tokenizer.ByteLevel", e));
        t->byte_level = 1;
        return push_pre(t, p);
    }
    if (!strcmp(ty, "Metaspace")) {
        char *r = NULL; size_t rl = 0;
        p.kind = PRE_METASPACE;
        QA_TRY(get_str(t, o, "pre_tokenizer.Metaspace", "replacement", &r, &rl, e));
        if (rl == 0 || rl > 4 || tok_utf8_valid_prefix((const uint8_t *)r, rl) != rl) return QA_ERR(e, "%s: pre_tokenizer Metaspace.replacement must be one character", t->name);
        uint32_t cp;
        if ((size_t)tok_utf8_next((const uint8_t *)r, &cp) != rl) return QA_ERR(e, "%s: pre_tokenizer Metaspace.replacement must be one character", t->name);
        memcpy(p.repl, r, rl); p.repl_len = rl;
        json_t *ps = json_object_get(o, "prepend_scheme");
        p.prepend_scheme = PREPEND_ALWAYS;
        if (ps && !json_is_null(ps)) {
            const char *s = json_is_string(ps) ? json_string_value(ps) : "";
            if (!strcmp(s, "always")) p.prepend_scheme = PREPEND_ALWAYS;
            else if (!strcmp(s, "first")) p.prepend_scheme = PREPEND_FIRST;
            else if (!strcmp(s, "never")) p.prepend_scheme = PREPEND_NEVER;
            else return QA_ERR(e, "%s: pre_tokenizer Metaspace: unknown prepend_scheme '%s'", t->name, s);
        }
        json_t *aps = json_object_get(o, "add_prefix_space");
        if (json_is_false(aps)) {
            if (p.prepend_scheme != PREPEND_NEVER)
                return QA_ERR(e, "%s: pre_tokenizer Metaspace: add_prefix_space does not match declared prepend_scheme", t->name);
        }
        QA_TRY(get_bool(t, o, "pre_tokenizer.Metaspace", "split", 1, &p.split, e));
        if (p.split) QA_TRY(compile_re(t, p.repl, p.repl_len, 1, &p.re, "pre_tokenizer.Metaspace", e));
        return push_pre(t, p);
    }
    return QA_ERR(e, "%s: unsupported pre_tokenizer type '%s' (supported: Split, ByteLevel, Metaspace, Sequence)",
                  t->name, ty);
}

/* ---- decoder ---- */
static int add_dec(qa_tokenizer *t, json_t *o, int depth, qa_err *e) {
    if (!o || json_is_null(o)) return 0;
    const char *ty = json_is_object(o) ? type_of(o) : NULL;
    if (!ty) return QA_ERR(e, "%s: decoder must be null or an object with a \"type\"", t->name);
    t->has_decoder = 1;
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(o, "decoders");
        if (!json_is_array(arr) || depth > 8) return QA_ERR(e, "%s: decoder Sequence needs a \"decoders\" array", t->name);
        for (size_t i = 0; i < json_array_size(arr); i++) QA_TRY(add_dec(t, json_array_get(arr, i), depth + 1, e));
        return 0;
    }
    tok_dec d = {0};
    if (!strcmp(ty, "ByteLevel")) d.kind = DEC_BYTELEVEL;
    else if (!strcmp(ty, "ByteFallback")) d.kind = DEC_BYTEFALLBACK;
    else if (!strcmp(ty, "Fuse")) d.kind = DEC_FUSE;
    else if (!strcmp(ty, "Replace")) {
        int is_re;
        d.kind = DEC_REPLACE;
        QA_TRY(get_pattern(t, o, "decoder.Replace", &d.a, &d.alen, &is_re, e));
        if (is_re) return QA_ERR(e, "%s: decoder Replace with a Regex pattern is not supported", t->name);
        if (!d.alen) return QA_ERR(e, "%s: decoder Replace has an empty pattern", t->name);
        QA_TRY(get_str(t, o, "decoder.Replace", "content", &d.b, &d.blen, e));
    } else if (!strcmp(ty, "Strip")) {
        d.kind = DEC_STRIP;
        QA_TRY(get_str(t, o, "decoder.Strip", "content", &d.a, &d.alen, e));
        uint32_t cp;
        if (!d.alen || tok_utf8_valid_prefix((const uint8_t *)d.a, d.alen) != d.alen ||
            (size_t)tok_utf8_next((const uint8_t *)d.a, &cp) != d.alen)
            return QA_ERR(e, "%s: decoder Strip.content must be one character", t->name);
        json_t *s = json_object_get(o, "start"), *p = json_object_get(o, "stop");
        if (!json_is_integer(s) || !json_is_integer(p) || json_integer_value(s) < 0 || json_integer_value(p) < 0 ||
            json_integer_value(s) > 1 << 20 || json_integer_value(p) > 1 << 20)
            return QA_ERR(e, "%s: decoder Strip needs non-negative integers start and stop", t->name);
        d.start = (int)json_integer_value(s);
        d.stop = (int)json_integer_value(p);
    } else if (!strcmp(ty, "Metaspace")) {
        d.kind = DEC_METASPACE;
        QA_TRY(get_str(t, o, "decoder.Metaspace", "replacement", &d.a, &d.alen, e));
        uint32_t cp;
        if (!d.alen || tok_utf8_valid_prefix((const uint8_t *)d.a, d.alen) != d.alen ||
            (size_t)tok_utf8_next((const uint8_t *)d.a, &cp) != d.alen)
            return QA_ERR(e, "%s: decoder Metaspace.replacement must be one character", t->name);
        json_t *ps = json_object_get(o, "prepend_scheme");
        d.prepend_scheme = PREPEND_ALWAYS;
        if (json_is_string(ps)) {
            const char *s = json_string_value(ps);
            if (!strcmp(s, "first")) d.prepend_scheme = PREPEND_FIRST;
            else if (!strcmp(s, "never")) d.prepend_scheme = PREPEND_NEVER;
            else if (strcmp(s, "always")) return QA_ERR(e, "%s: decoder Metaspace: unknown prepend_scheme '%s'", t->name, s);
        }
        if (json_is_false(json_object_get(o, "add_prefix_space"))) d.prepend_scheme = PREPEND_NEVER;
    } else
        return QA_ERR(e, "%s: unsupported decoder type '%s' (supported: ByteLevel, Metaspace, Replace, ByteFallback, "
                         "Fuse, Strip, Sequence)", t->name, ty);
    t->decs = qa_realloc(t->decs, (size_t)(t->n_decs + 1) * sizeof *t->decs);
    t->decs[t->n_decs++] = d;
    return 0;
}

/* ---- post-processor: the special ids around $A of the "single" template ---- */
static int add_post(qa_tokenizer *t, json_t *o, int depth, qa_err *e) {
    if (!o || json_is_null(o)) return 0;
    const char *ty = json_is_object(o) ? type_of(o) : NULL;
    if (!ty) return QA_ERR(e, "%s: post_processor must be null or an object with a \"type\"", t->name);
    if (!strcmp(ty, "ByteLevel")) return 0; /* offsets only */
    if (!strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(o, "processors");
        if (!json_is_array(arr) || depth > 8) return QA_ERR(e, "%s: post_processor Sequence needs a \"processors\" array", t->name);
        for (size_t i = 0; i < json_array_size(arr); i++) QA_TRY(add_post(t, json_array_get(arr, i), depth + 1, e));
        return 0;
    }
    if (strcmp(ty, "TemplateProcessing"))
        return QA_ERR(e, "%s: unsupported post_processor type '%s' (supported: TemplateProcessing, ByteLevel, Sequence)",
                      t->name, ty);
    if (t->n_post_prefix || t->n_post_suffix)
        return QA_ERR(e, "%s: more than one TemplateProcessing post-processor is not supported", t->name);
    json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
    if (!json_is_array(single)) return QA_ERR(e, "%s: post_processor.single must be an array", t->name);
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *item = json_array_get(single, i), *x;
        if ((x = json_object_get(item, "Sequence"))) {
            json_t *id = json_object_get(x, "id");
            if (!json_is_string(id) || strcmp(json_string_value(id), "A") || seen_a)
                return QA_ERR(e, "%s: post_processor.single[%zu]: only one sequence $A is supported", t->name, i);
            seen_a = 1;
        } else if ((x = json_object_get(item, "SpecialToken"))) {
            json_t *name = json_object_get(x, "id");
            if (!json_is_string(name)) return QA_ERR(e, "%s: post_processor.single[%zu].SpecialToken.id must be a string", t->name, i);
            json_t *st = json_object_get(specials, json_string_value(name));
            json_t *ids = json_object_get(st, "ids");
            if (!json_is_array(ids))
                return QA_ERR(e, "%s: post_processor.special_tokens[\"%s\"].ids is missing", t->name, json_string_value(name));
            for (size_t k = 0; k < json_array_size(ids); k++) {
                json_t *v = json_array_get(ids, k);
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_IDS)
                    return QA_ERR(e, "%s: post_processor.special_tokens[\"%s\"].ids must be ids", t->name, json_string_value(name));
                int32_t **arr = seen_a ? &t->post_suffix : &t->post_prefix;
                int *n = seen_a ? &t->n_post_suffix : &t->n_post_prefix;
                *arr = qa_realloc(*arr, (size_t)(*n + 1) * sizeof **arr);
                (*arr)[(*n)++] = (int32_t)json_integer_value(v);
            }
        } else
            return QA_ERR(e, "%s: post_processor.single[%zu] must be a Sequence or a SpecialToken", t->name, i);
    }
    if (!seen_a) return QA_ERR(e, "%s: post_processor.single has no $A", t->name);
    return 0;
}

/* GPT-2 bytes_to_unicode */
static void init_byte_level(qa_tokenizer *t) {
    for (int i = 0; i < 0x144; i++) t->char_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp;
        if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) cp = (uint32_t)b;
        else cp = 0x100 + (uint32_t)n++;
        t->byte_char_len[b] = (uint8_t)tok_utf8_put(cp, t->byte_char[b]);
        t->char_byte[cp] = b;
        t->byte_char_id[b] = tok_strmap_get(&t->vocab, t->byte_char[b], t->byte_char_len[b]);
    }
}

int qa_tok_load_mem(qa_tokenizer **out, const char *json, size_t len, const char *name, qa_err *e) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
    if (!root)
        return QA_ERR(e, "%s: not valid JSON at line %d column %d: %s (is this a tokenizer.json?)", name, je.line,
                      je.column, je.text);
    qa_tokenizer *t = qa_calloc(1, sizeof *t);
    t->name = qa_strdup(name);
    int rc = -1;
    if (!json_is_object(root)) { QA_ERR(e, "%s: the top level must be a JSON object", name); goto done; }
    json_t *tr = json_object_get(root, "truncation"), *pad = json_object_get(root, "padding");
    if ((tr && !json_is_null(tr)) || (pad && !json_is_null(pad))) {
        QA_ERR(e, "%s: truncation/padding are set; qalign supports tokenizer.json files without them", name);
        goto done;
    }
    if (load_model(t, json_object_get(root, "model"), e)) goto done;
    if (load_added(t, json_object_get(root, "added_tokens"), e)) goto done;
    if (add_norm(t, json_object_get(root, "normalizer"), 0, e)) goto done;
    if (add_pre(t, json_object_get(root, "pre_tokenizer"), 0, e)) goto done;
    if (add_dec(t, json_object_get(root, "decoder"), 0, e)) goto done;
    if (add_post(t, json_object_get(root, "post_processor"), 0, e)) goto done;
    init_byte_level(t);
    if (t->has_nfc) tok_build_nfc_qc(t); /* before anything normalizes (normalized added tokens) */
    tok_build_caches(t);
    for (int i = 0; i < t->n_post_prefix; i++)
        if (t->post_prefix[i] >= t->n_ids) { QA_ERR(e, "%s: post_processor id %d is not a token", name, t->post_prefix[i]); goto done; }
    for (int i = 0; i < t->n_post_suffix; i++)
        if (t->post_suffix[i] >= t->n_ids) { QA_ERR(e, "%s: post_processor id %d is not a token", name, t->post_suffix[i]); goto done; }
    /* added-token matchers: raw text for normalized:false, normalized text for normalized:true */
    for (int i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        if (!a->normalized) { tok_matcher_add(&t->m_raw, a->content, a->len, i); continue; }
        char *nc; size_t nl;
        if (tok_normalize(t, a->content, a->len, &nc, &nl, e)) goto done;
        tok_matcher_add(&t->m_norm, nc, nl, i);
        /* HF's id_to_token (and so decode) gives a normalized token's normalized content
         * ("▁<x>" under a Prepend normalizer); token_to_id still takes the raw content */
        t->tok_str[a->id] = tok_pool_dup(&t->pool, nc, nl);
        t->tok_len[a->id] = (uint32_t)nl;
        free(nc);
    }
    rc = 0;
done:
    json_decref(root);
    if (rc) { qa_tok_free(t); return -1; }
    *out = t;
    return 0;
}

int qa_tok_load(qa_tokenizer **out, const char *path, qa_err *e) {
    char *buf;
    size_t len;
    *out = NULL;
    QA_TRY(qa_read_file(path, (size_t)1 << 30, &buf, &len, e));
    int rc = qa_tok_load_mem(out, buf, len, path, e);
    free(buf);
    return rc;
}

void qa_tok_free(qa_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_pres; i++) if (t->pres[i].re) pcre2_code_free(t->pres[i].re);
    free(t->pres);
    free(t->norms);
    free(t->decs);
    free(t->post_prefix);
    free(t->post_suffix);
    tok_matcher_free(&t->m_raw);
    tok_matcher_free(&t->m_norm);
    free(t->added);
    free(t->vocab.slot);
    free(t->word_map.slot);
    free(t->wm_bloom);
    free(t->cp_id);
    free(t->pair256);
    free(t->nfc_qc);
    free(t->added_map.slot);
    free(t->merges.ent);
    free(t->ranks);
    free(t->tok_str);
    free(t->tok_len);
    free(t->is_special);
    free(t->is_added);
    for (tok_chunk *c = t->pool; c;) { tok_chunk *n = c->next; free(c); c = n; }
    free(t->name);
    free(t);
}

int32_t qa_tok_token_to_id(const qa_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = tok_strmap_get(&t->added_map, token, n);
    return id >= 0 ? id : tok_strmap_get(&t->vocab, token, n);
}
const char *qa_tok_id_to_token(const qa_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->tok_str[id] : NULL;
}
int32_t qa_tok_vocab_size(const qa_tokenizer *t) { return t->n_ids; }
int32_t qa_tok_bos_id(const qa_tokenizer *t) { return t->n_post_prefix ? t->post_prefix[0] : -1; }
int qa_tok_is_byte_level(const qa_tokenizer *t) { return t->byte_level; }
int qa_tok_is_special(const qa_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && t->is_special[id];
}
