/* fuzz_tokenizer.c — tokenizer.json (tokenizer/tok_load.c) and, when it loads, encoding and decoding of
 * texts in several scripts (tokenizer/tok_encode.c, tokenizer/tok_decode.c). */
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static const char *const TEXTS[] = {
    "Hello world! Is this a question?", " leading space and  double", "Привет, как дела?", "你好，世界。",
    "नमस्ते दुनिया", "\xff\xfe invalid \xc3 utf-8", "<s>special</s><|endoftext|>", "a\nb\tc\r\n  ", "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    qa_tokenizer *t = NULL;
    qa_err e = {0};
    if (qa_tok_load_mem(&t, (const char *)data, size, "fuzz.json", &e)) return 0;
    for (size_t k = 0; k < sizeof TEXTS / sizeof TEXTS[0]; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (qa_tok_encode(t, TEXTS[k], strlen(TEXTS[k]), (int)(k & 1), &ids, &n, &e) == 0) {
            char *txt = NULL;
            size_t len = 0;
            if (qa_tok_decode(t, ids, n, (int)(k & 1), &txt, &len, &e) == 0) free(txt);
            for (size_t i = 0; i < n; i++) {
                const char *tok = qa_tok_id_to_token(t, ids[i]);
                if (tok) qa_tok_token_to_id(t, tok);
            }
        }
        free(ids);
    }
    int32_t odd[4] = {-1, 0, 2147483647, qa_tok_vocab_size(t)};
    char *txt = NULL;
    size_t len = 0;
    if (qa_tok_decode(t, odd, 4, 0, &txt, &len, &e) == 0) free(txt);
    qa_tok_free(t);
    return 0;
}
