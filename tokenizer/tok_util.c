/* tok_util.c — hashing, UTF-8 helpers and the added-token trie used by the tokenizer. */
#include "tokenizer/tok_internal.h"
#include "common/qa_mem.h"

#include <stdlib.h>
#include <string.h>

uint32_t tok_hash(const void *s, size_t n) {
    /* FNV-1a, 32-bit, with a final avalanche */
    const uint8_t *p = s;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 16777619u; }
    h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15;
    return h;
}

void tok_strmap_init(tok_strmap *m, size_t expected) {
    uint32_t cap = 16;
    while (cap < expected * 2 + 1) cap <<= 1;
    m->cap = cap;
    m->n = 0;
    m->slot = qa_calloc(cap, sizeof *m->slot);
}

int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t n) {
    if (!m->cap) return -1;
    uint32_t h = tok_hash(s, n), mask = m->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        const tok_strslot *x = &m->slot[i];
        if (!x->key) return -1;
        if (x->hash == h && x->klen == n && !memcmp(x->key, s, n)) return x->val;
    }
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t n, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) { /* grow */
        tok_strmap g;
        tok_strmap_init(&g, m->cap);
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->slot[i].key) tok_strmap_put(&g, m->slot[i].key, m->slot[i].klen, m->slot[i].val);
        free(m->slot);
        *m = g;
    }
    uint32_t h = tok_hash(key, n), mask = m->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        tok_strslot *x = &m->slot[i];
        if (!x->key) { x->key = key; x->klen = (uint32_t)n; x->hash = h; x->val = val; m->n++; return 0; }
        if (x->hash == h && x->klen == n && !memcmp(x->key, key, n)) return 1;
    }
}

void tok_merge_put(tok_mergemap *m, int32_t a, int32_t b, int32_t rank) {
    uint64_t key = ((uint64_t)(uint32_t)a << TOK_ID_BITS | (uint32_t)b) + 1, h = key * 0x9E3779B97F4A7C15ULL;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)(h >> 40) & mask;; i = (i + 1) & mask) {
        uint64_t x = m->ent[i];
        if (!x || x >> TOK_RANK_BITS == key) { m->ent[i] = key << TOK_RANK_BITS | (uint32_t)rank; return; }
    }
}

int tok_utf8_put(uint32_t cp, char *out) {
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = 0xC0 | (cp >> 6); o[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) { o[0] = 0xE0 | (cp >> 12); o[1] = 0x80 | ((cp >> 6) & 0x3F); o[2] = 0x80 | (cp & 0x3F); return 3; }
    o[0] = 0xF0 | (cp >> 18); o[1] = 0x80 | ((cp >> 12) & 0x3F); o[2] = 0x80 | ((cp >> 6) & 0x3F);
    o[3] = 0x80 | (cp & 0x3F);
    return 4;
}

/* Length of one UTF-8 sequence at s (n bytes available): >0 if valid; otherwise -(length of the
 * maximal subpart to replace by one U+FFFD), as Unicode §3.9 / Rust's from_utf8_lossy define it. */
static int utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        uint8_t d = s[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return -i;
    }
    return need + 1;
}

size_t tok_utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        int k = utf8_seq(s + i, n - i);
        if (k < 0) return i;
        i += (size_t)k;
    }
    return n;
}

char *tok_utf8_lossy(const char *s, size_t n, size_t *out_len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t v = tok_utf8_valid_prefix(p, n);
    /* worst case: every byte becomes 3 bytes */
    char *out = qa_malloc(v + (n - v) * 3 + 1);
    memcpy(out, s, v);
    size_t o = v, i = v;
    while (i < n) {
        int k = utf8_seq(p + i, n - i);
        if (k > 0) { memcpy(out + o, p + i, (size_t)k); o += (size_t)k; i += (size_t)k; }
        else { memcpy(out + o, "\xEF\xBF\xBD", 3); o += 3; i += (size_t)(-k); }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

/* ---- added-token trie ---- */
static int32_t trie_new_node(tok_matcher *m, uint8_t byte) {
    if (m->n_nodes == m->cap_nodes) {
        m->cap_nodes = m->cap_nodes ? m->cap_nodes * 2 : 64;
        m->nodes = qa_realloc(m->nodes, (size_t)m->cap_nodes * sizeof *m->nodes);
    }
    tok_trie_node *x = &m->nodes[m->n_nodes];
    x->first_child = x->next_sibling = x->token = -1;
    x->byte = byte;
    return m->n_nodes++;
}

void tok_matcher_add(tok_matcher *m, const char *pat, size_t len, int32_t token) {
    if (!len) return;
    if (!m->n_nodes) trie_new_node(m, 0);
    int32_t cur = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)pat[i];
        int32_t c = m->nodes[cur].first_child;
        while (c >= 0 && m->nodes[c].byte != b) c = m->nodes[c].next_sibling;
        if (c < 0) {
            c = trie_new_node(m, b);
            m->nodes[c].next_sibling = m->nodes[cur].first_child;
            m->nodes[cur].first_child = c;
        }
        cur = c;
    }
    /* with duplicate patterns the first one added wins (Aho-Corasick leftmost-longest) */
    if (m->nodes[cur].token < 0) m->nodes[cur].token = token;
    m->first[(uint8_t)pat[0]] = 1;
    m->n_patterns++;
}

/* Find the leftmost-longest match at or after position `from`: returns 1 and sets *start, *end,
 * *token, or 0 if none. */
int tok_matcher_find(const tok_matcher *m, const char *s, size_t n, size_t from, size_t *start, size_t *end,
                     int32_t *token) {
    if (!m->n_patterns) return 0;
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = from; i < n; i++) {
        if (!m->first[p[i]]) continue;
        int32_t cur = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < n; j++) {
            int32_t c = m->nodes[cur].first_child;
            while (c >= 0 && m->nodes[c].byte != p[j]) c = m->nodes[c].next_sibling;
            if (c < 0) break;
            cur = c;
            if (m->nodes[cur].token >= 0) { best = m->nodes[cur].token; best_end = j + 1; }
        }
        if (best >= 0) { *start = i; *end = best_end; *token = best; return 1; }
    }
    return 0;
}

void tok_matcher_free(tok_matcher *m) {
    free(m->nodes);
    memset(m, 0, sizeof *m);
}

char *tok_pool_dup(tok_chunk **pool, const char *s, size_t n) {
    tok_chunk *c = *pool;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
        c = qa_malloc(sizeof *c + cap);
        c->next = *pool;
        c->used = 0;
        c->cap = cap;
        *pool = c;
    }
    char *d = c->data + c->used;
    memcpy(d, s, n);
    d[n] = 0;
    c->used += n + 1;
    return d;
}

