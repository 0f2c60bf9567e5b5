/* tokenizer.h — Hugging Face tokenizer.json, token-exact with the `tokenizers` library.
 *
 * Supported (anything else is rejected at load with an error naming the file and the key):
 *   model          BPE (vocab + merges as "a b" strings or ["a","b"] pairs; unk_token, fuse_unk,
 *                  byte_fallback, ignore_merges; no dropout, no subword prefix/suffix)
 *   normalizer     null, NFC, Prepend, Replace{String}, Sequence of those
 *   pre_tokenizer  null, Split{Regex, Isolated}, ByteLevel, Metaspace, Sequence of those
 *   post_processor null, ByteLevel, TemplateProcessing (special tokens around $A, e.g. BOS)
 *   decoder        null, ByteLevel, Metaspace, Replace{String}, ByteFallback, Fuse, Strip, Sequence
 *   added_tokens   matched in the raw text leftmost-longest (normalized:false), special or not
 * That covers the Qwen1.5/2/2.5/3 family (byte-level BPE, NFC, the Qwen regex) and the
 * Llama-2/Mistral family (SentencePiece-style BPE with byte fallback, legacy Prepend/Replace
 * normalizer or the non-legacy Metaspace pre-tokenizer, BOS via TemplateProcessing).
 *
 * Text in: bytes. Invalid UTF-8 is replaced by U+FFFD, one per maximal invalid subpart
 * (Rust String::from_utf8_lossy / Python bytes.decode("utf-8", "replace")), then tokenized.
 * Text out (decode): UTF-8, invalid byte sequences produced by byte tokens become U+FFFD as HF does.
 *
 * The tokenizer is immutable after qa_tok_load and may be used from several threads at once:
 * every call allocates its own scratch (PCRE2 match data included); nothing is cached globally.
 */
#ifndef QA_TOKENIZER_H
#define QA_TOKENIZER_H
#include "common/qa_err.h"
#include <stddef.h>
#include <stdint.h>

typedef struct qa_tokenizer qa_tokenizer;

/* Load a tokenizer.json. Returns 0, or -1 with e naming the file and the unsupported/bad key. */
int qa_tok_load(qa_tokenizer **out, const char *path, qa_err *e);
/* Same, from a JSON text in memory (name is used in messages only). */
int qa_tok_load_mem(qa_tokenizer **out, const char *json, size_t len, const char *name, qa_err *e);
void qa_tok_free(qa_tokenizer *t);

/* Encode text[0..len) (any bytes; see above) into *ids (heap, caller frees; *n_ids tokens).
 * add_special_tokens: apply the post-processor (BOS for Llama/Mistral; nothing for Qwen). */
int qa_tok_encode(const qa_tokenizer *t, const char *text, size_t len, int add_special_tokens,
                  int32_t **ids, size_t *n_ids, qa_err *e);

/* Decode ids[0..n) into *text (heap, NUL-terminated, caller frees; *len bytes without the NUL).
 * Ids without a token are skipped (as HF does). skip_special_tokens drops special added tokens. */
int qa_tok_decode(const qa_tokenizer *t, const int32_t *ids, size_t n, int skip_special_tokens,
                  char **text, size_t *len, qa_err *e);

/* Exact vocab or added-token key -> id, -1 if absent (get_vocab() semantics; added tokens first). */
int32_t qa_tok_token_to_id(const qa_tokenizer *t, const char *token);
/* id -> token string as stored in the vocab (byte-level form for Qwen, "▁x" / "<0x0A>" for Llama);
 * NULL if none. Valid while t lives. */
const char *qa_tok_id_to_token(const qa_tokenizer *t, int32_t id);
/* max id + 1, including added tokens. */
int32_t qa_tok_vocab_size(const qa_tokenizer *t);
/* the BOS id the post-processor puts first, -1 when it adds none (Qwen). */
int32_t qa_tok_bos_id(const qa_tokenizer *t);
/* 1 for byte-level BPE (the Qwen family), 0 otherwise. */
int qa_tok_is_byte_level(const qa_tokenizer *t);
/* 1 if id is a special added token (<s>, </s>, <|im_end|>, ...), 0 otherwise. */
int qa_tok_is_special(const qa_tokenizer *t, int32_t id);

#endif
