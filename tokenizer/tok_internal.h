/* tok_internal.h — the tokenizer's data layout, shared by tokenizer/tok_*.c (not a public header).
 *
 * Everything here is built once by qa_tok_load and only read afterwards, so a qa_tokenizer can be
 * used by many threads at once. Per-call scratch lives in tok_scratch (tokenizer/tok_encode.c).
 */
#ifndef QA_TOK_INTERNAL_H
#define QA_TOK_INTERNAL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/tokenizer.h"
#include <pcre2.h>
#include <stdint.h>

/* ---- string -> id hash (open addressing; keys point into the tokenizer's string pool) ---- */
typedef struct tok_strslot {
    const char *key;       /* NULL = empty; owned by the tokenizer's string pool */
    uint32_t klen, hash;
    int32_t val;
} tok_strslot;
typedef struct tok_strmap {
    uint32_t cap;          /* power of two */
    uint32_t n;
    tok_strslot *slot;     /* [cap] */
} tok_strmap;

/* ---- (id_a, id_b) -> rank: 8-byte entries ((key + 1) << 22 | rank, key = a << 21 | b; 0 = empty),
 * small enough to stay in cache; the pair and the merged id of a rank are in tok_rank ---- */
#define WM_BLOOM_BITS (1u << 21) /* 256 KiB */
#define TOK_ID_BITS 21         /* ids < 2^21 - 1 */
#define TOK_RANK_BITS 22       /* merges < 2^22 */
typedef struct tok_mergemap {
    uint32_t cap;          /* power of two */
    uint64_t *ent;         /* [cap] */
} tok_mergemap;
typedef struct tok_rank { int32_t a, b, new_id; } tok_rank;

/* ---- added tokens (matched leftmost-longest in the raw or normalized text) ---- */
typedef struct tok_trie_node {
    int32_t first_child;   /* index into nodes, -1 none */
    int32_t next_sibling;
    int32_t token;         /* index into added[], -1 if no token ends here */
    uint8_t byte;
} tok_trie_node;
typedef struct tok_matcher {
    tok_trie_node *nodes;  /* node 0 is the root */
    int32_t n_nodes, cap_nodes;
    uint8_t first[256];    /* 1 if some pattern starts with this byte */
    int n_patterns;
} tok_matcher;

typedef struct tok_added {
    char *content;         /* pattern in the raw text (or normalized content for normalized tokens) */
    size_t len;
    int32_t id;
    int special, normalized, lstrip, rstrip;
} tok_added;

/* ---- pipeline steps ---- */
enum { NORM_NFC = 1, NORM_PREPEND, NORM_REPLACE };
typedef struct tok_norm {
    int kind;
    char *a; size_t alen;  /* PREPEND: the prefix; REPLACE: the pattern */
    char *b; size_t blen;  /* REPLACE: the content */
} tok_norm;

enum { SPLIT_REMOVED = 0, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PRE_SPLIT = 1, PRE_BYTELEVEL, PRE_METASPACE };
enum { PREPEND_ALWAYS = 0, PREPEND_FIRST, PREPEND_NEVER };
typedef struct tok_pre {
    int kind;
    pcre2_code *re;        /* SPLIT (also ByteLevel use_regex); compiled with UTF|UCP, JIT */
    int behavior, invert;  /* SPLIT */
    int add_prefix_space;  /* BYTELEVEL */
    char repl[8]; size_t repl_len; /* METASPACE replacement (UTF-8) */
    int prepend_scheme, split; /* METASPACE */
} tok_pre;

enum { DEC_BYTELEVEL = 1, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE };
typedef struct tok_dec {
    int kind;
    char *a; size_t alen;  /* REPLACE pattern; STRIP content char; METASPACE replacement */
    char *b; size_t blen;  /* REPLACE content */
    int start, stop;       /* STRIP */
    int prepend_scheme;    /* METASPACE */
} tok_dec;

/* bump allocator for the tokenizer's strings (freed all at once) */
typedef struct tok_chunk {
    struct tok_chunk *next;
    size_t used, cap;
    char data[];
} tok_chunk;
char *tok_pool_dup(tok_chunk **pool, const char *s, size_t n); /* NUL-terminated copy */

struct qa_tokenizer {
    char *name;            /* file name, for messages */
    tok_chunk *pool;       /* all token / pattern strings */
    /* vocab: id -> string (model vocab and added tokens) */
    int32_t n_ids;         /* max id + 1 */
    char **tok_str;        /* [n_ids], NULL where no token; NUL-terminated */
    uint32_t *tok_len;     /* [n_ids] */
    uint8_t *is_special;   /* [n_ids] */
    uint8_t *is_added;     /* [n_ids] */
    tok_strmap vocab;      /* model vocab: string -> id */
    int32_t *cp_id;        /* [0x10000] BMP code point -> vocab id of that one-character token, -1 none */
    int32_t *pair256;      /* [256 * 256] rank of the merge of two initial symbols (bytes for byte-level,
                            * code points < 256 otherwise), -1 none: no hashing for most first pairs */
    tok_strmap word_map;   /* byte-level: raw bytes of a vocab token whose own BPE is that token -> id
                            * (exact shortcut: BPE is a function of the piece) */
    uint64_t *wm_bloom;    /* [WM_BLOOM_BITS / 64] Bloom filter of word_map keys: most pieces that are
                            * not vocab words are turned away without touching the big table */
    tok_strmap added_map;  /* added tokens: content -> id */
    int32_t model_vocab_n; /* number of model vocab entries */
    /* BPE */
    tok_mergemap merges;
    tok_rank *ranks;         /* [n_merges] rank -> (a, b, merged id) */
    int32_t unk_id;        /* -1 none */
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_fb_id[256]; /* id of "<0xXX>", -1 if absent */
    /* byte-level */
    int byte_level;          /* a ByteLevel pre-tokenizer maps bytes to chars before the model */
    int32_t byte_char_id[256]; /* vocab id of bytes_to_unicode(b), -1 if absent */
    char byte_char[256][3]; uint8_t byte_char_len[256];
    int32_t char_byte[0x144]; /* code point (< 0x144) -> byte, -1 if not a byte char */
    /* pipeline */
    tok_added *added; int n_added;
    tok_matcher m_raw, m_norm;
    tok_norm *norms; int n_norms;
    tok_pre *pres; int n_pres;
    tok_dec *decs; int n_decs; int has_decoder;
    int32_t *post_prefix; int n_post_prefix; /* ids before $A when add_special_tokens */
    int32_t *post_suffix; int n_post_suffix;
    int has_nfc;
    uint8_t *nfc_qc;       /* [0x10000] NFC quick check of a BMP code point: its combining class if
                            * NFC_QC = Yes, 0xFF if No or Maybe (built when there is an NFC step) */
};

/* helpers shared between the files */
uint32_t tok_hash(const void *s, size_t n);
int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t n); /* -1 if absent */
/* insert key (kept by pointer) -> val; returns 0 if inserted, 1 if the key existed (value kept) */
int tok_strmap_put(tok_strmap *m, const char *key, size_t n, int32_t val);
void tok_strmap_init(tok_strmap *m, size_t expected);
/* rank of the merge (a, b), -1 if none */
static inline int32_t tok_merge_rank(const tok_mergemap *m, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << TOK_ID_BITS | (uint32_t)b) + 1, h = key * 0x9E3779B97F4A7C15ULL;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)(h >> 40) & mask;; i = (i + 1) & mask) {
        uint64_t x = m->ent[i];
        if (!x) return -1;
        if (x >> TOK_RANK_BITS == key) return (int32_t)(x & ((1u << TOK_RANK_BITS) - 1));
    }
}
/* insert or overwrite (a later duplicate merge replaces the earlier one, as in HF's HashMap) */
void tok_merge_put(tok_mergemap *m, int32_t a, int32_t b, int32_t rank);
void tok_matcher_add(tok_matcher *m, const char *pat, size_t len, int32_t token);
int tok_matcher_find(const tok_matcher *m, const char *s, size_t n, size_t from, size_t *start, size_t *end,
                     int32_t *token);
void tok_matcher_free(tok_matcher *m);
/* build cp_id and word_map once the model and pre-tokenizers are known (tokenizer/tok_encode.c) */
void tok_build_caches(qa_tokenizer *t);
void tok_build_nfc_qc(qa_tokenizer *t);
/* normalize s[0..n) with the tokenizer's normalizers into a heap string (tokenizer/tok_encode.c) */
int tok_normalize(const qa_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len, qa_err *e);
/* decode one UTF-8 code point of a VALID string; returns its length */
static inline int tok_utf8_next(const uint8_t *s, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xE0) { *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (c < 0xF0) { *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F); return 3; }
    *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}
int tok_utf8_put(uint32_t cp, char *out); /* returns 1..4 */
/* length of the longest valid UTF-8 prefix of s[0..n) */
size_t tok_utf8_valid_prefix(const uint8_t *s, size_t n);
/* copy with invalid sequences replaced by U+FFFD (Rust from_utf8_lossy); returns heap buffer */
char *tok_utf8_lossy(const char *s, size_t n, size_t *out_len);

#endif
