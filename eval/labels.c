/* labels.c — the paper's label-token sets (paper-protocol.md §6.4), as the evaluation scripts'
 * process_tokens(word) computes them with a Hugging Face tokenizer:
 *   1. P = the character prefixes word[:1] .. word[:n] (code points);
 *   2. candidates P ∪ {"▁" + p}; keep those that are exactly a key of get_vocab();
 *   3. unicode_prefix_tokid(word[0]): when Python's repr of word[0].encode() starts with "\x" (a
 *      non-ASCII character, or an ASCII control character other than \t \n \r), the token
 *      "<0xHH>" of its first byte, if that key exists (SentencePiece byte fallback; Llama/Mistral);
 *   4. Qwen only ("Qwen" in model_size in the scripts; here: the tokenizer is byte-level BPE): for
 *      every p in P the first id of tokenizer(p)["input_ids"] (add_special_tokens=True; Qwen adds no BOS);
 *   5. the de-duplicated set (here sorted ascending).
 * Step 4 is skipped with QA_EVAL_LT_NO_FIRST_TOKEN (the irrelevant-label control script has no such step). */
#include "eval/eval.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* bytes of the UTF-8 sequence starting at s[0] (1 for an invalid lead byte) */
static size_t u8_len(const unsigned char *s, size_t avail) {
    size_t n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 1;
    return n <= avail ? n : avail;
}

static void add_id(int32_t **v, int *n, int *cap, int32_t id) {
    if (id < 0) return;
    if (*n == *cap) *v = qa_realloc(*v, sizeof(int32_t) * (size_t)(*cap = *cap ? *cap * 2 : 16));
    (*v)[(*n)++] = id;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int qa_eval_label_tokens(const qa_tokenizer *tok, const char *word, int32_t **ids, int *n, qa_err *e) {
    return qa_eval_label_tokens_opt(tok, word, 0, ids, n, e);
}

int qa_eval_label_tokens_opt(const qa_tokenizer *tok, const char *word, unsigned flags, int32_t **ids, int *n,
                             qa_err *e) {
    *ids = NULL;
    *n = 0;
    size_t len = strlen(word);
    if (len == 0) return QA_ERR(e, "label word is empty");
    int32_t *v = NULL;
    int nv = 0, cap = 0;
    const size_t SP = 3; /* "▁" U+2581 = E2 96 81 */
    char *buf = qa_malloc(len + SP + 1);
    memcpy(buf, "\xE2\x96\x81", SP);
    const int byte_level = qa_tok_is_byte_level(tok) && !(flags & QA_EVAL_LT_NO_FIRST_TOKEN);
    for (size_t end = 0; end < len;) {
        end += u8_len((const unsigned char *)word + end, len - end);
        /* p = word[:end] and "▁" + p */
        memcpy(buf + SP, word, end);
        buf[SP + end] = 0;
        add_id(&v, &nv, &cap, qa_tok_token_to_id(tok, buf + SP));
        add_id(&v, &nv, &cap, qa_tok_token_to_id(tok, buf));
        if (byte_level) {
            int32_t *enc = NULL;
            size_t ne = 0;
            if (qa_tok_encode(tok, word, end, 1, &enc, &ne, e)) {
                free(buf);
                free(v);
                return qa_err_prefix(e, "label word \"%s\"", word);
            }
            if (ne > 0) add_id(&v, &nv, &cap, enc[0]);
            free(enc);
        }
    }
    /* byte fallback: bytes(word[0]) repr starts with \x */
    unsigned char b0 = (unsigned char)word[0];
    if (b0 >= 0x7F || (b0 < 0x20 && b0 != '\t' && b0 != '\n' && b0 != '\r')) {
        char key[8];
        snprintf(key, sizeof key, "<0x%02X>", b0);
        add_id(&v, &nv, &cap, qa_tok_token_to_id(tok, key));
    }
    free(buf);
    if (nv > 1) {
        qsort(v, nv, sizeof *v, cmp_i32);
        int k = 1;
        for (int i = 1; i < nv; i++) if (v[i] != v[k - 1]) v[k++] = v[i];
        nv = k;
    }
    *ids = v;
    *n = nv;
    return 0;
}
