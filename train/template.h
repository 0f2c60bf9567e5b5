/* template.h — prompt templates as data (configs/templates/NAME.yaml), applied segment by segment.
 *
 * A template file:
 *
 *     name: qwen                        # optional; defaults to the file name
 *     bos: null                         # a token put first in every example, or null
 *     prompt:                           # segments before the response: label -100
 *       - token: "<|im_start|>"         #   a special token, looked up by its string -> one id
 *       - text: "user\n{input}"         #   text encoded on its own (add_special_tokens=False);
 *       - token: "<|im_end|>"           #   {input} is replaced by the record's input
 *     response:                         # segments of the answer: labelled
 *       - text: "{answer}"
 *     end: "<|im_end|>"                 # appended after the response, labelled
 *
 * Token names are special tokens of the tokenizer ("<s>", "<|im_end|>"; an ordinary vocabulary
 * entry with the same spelling, like "<s>" in Qwen's vocab, is refused) or "$eos" / "$bos", the ids of the
 * model's config.json (eos_token_id / bos_token_id). Every text segment is encoded by a separate
 * tokenizer call, exactly as LLaMA-Factory encodes each template element (with the legacy
 * Llama/Mistral tokenizer each call gets its own leading "▁", formats.md §5.2), and template text
 * must not contain special-token strings: those are written as token segments. {input} appears in
 * exactly one prompt text segment, {answer} in exactly one response text segment.
 *
 * An example is  source = [bos] + prompt segments,  target = response segments + [end];
 * on overflow both are cut (LLaMA-Factory@6ebde4f data/utils.py infer_max_len, reserved_label_len 1):
 *     max_target = max(int(cutoff * (tgt / (src + tgt))), 1),  max_source = cutoff - max_target,
 * keeping the first max_source / max_target ids of each. The cut is applied to every example, as
 * LLaMA-Factory does, with the same double arithmetic; so an example of exactly cutoff tokens can
 * lose its last target token when the product rounds down (src 7, tgt 15, cutoff 22 -> 7 + 14).
 */
#ifndef QA_TEMPLATE_H
#define QA_TEMPLATE_H
#include "common/qa_err.h"
#include "tokenizer/tokenizer.h"
#include <stddef.h>
#include <stdint.h>

enum { QA_SEG_TEXT = 0, QA_SEG_TOKEN = 1 };
enum { QA_SLOT_NONE = 0, QA_SLOT_INPUT = 1, QA_SLOT_ANSWER = 2 };

typedef struct qa_tpl_seg {
    int kind;           /* QA_SEG_TEXT or QA_SEG_TOKEN */
    char *text;         /* TEXT: the literal, with "{input}"/"{answer}" still in it; TOKEN: the name */
    int slot;           /* TEXT: which placeholder it holds */
    int32_t id;         /* TOKEN: the id */
    int32_t *ids;       /* TEXT without placeholder: its ids, encoded once at load */
    size_t n_ids;
} qa_tpl_seg;

typedef struct qa_template {
    char *name;
    char *path;         /* the file, for messages */
    int32_t bos_id;     /* -1: none */
    int32_t end_id;
    qa_tpl_seg *prompt, *response;
    int n_prompt, n_response;
} qa_template;

/* Load and resolve a template against a tokenizer. cfg_bos / cfg_eos: the ids of config.json's
 * bos_token_id / eos_token_id (-1 when unknown) for "$bos" / "$eos". Errors name the file, the
 * line and the token ("template configs/templates/mistral.yaml (line 6): token '<s>' is not in
 * the tokenizer ..."). */
int qa_template_load(qa_template *t, const char *path, const qa_tokenizer *tok, int32_t cfg_bos, int32_t cfg_eos,
                     qa_err *e);
int qa_template_load_text(qa_template *t, const char *text, size_t len, const char *name,
                          const qa_tokenizer *tok, int32_t cfg_bos, int32_t cfg_eos, qa_err *e);
void qa_template_free(qa_template *t);

/* Find a template file: name_or_path itself when it contains '/' or ends in .yaml/.yml, otherwise
 * NAME.yaml in, in order: $QALIGN_TEMPLATES, CONFIG_DIR/templates (config_path's directory; may be
 * NULL/""), ./configs/templates. *out is a heap path; the error lists the places tried. */
int qa_template_find(const char *name_or_path, const char *config_path, char **out, qa_err *e);

/* Encode one record without truncation: *src = [bos] + prompt, *tgt = response + [end] (heap,
 * caller frees). */
int qa_template_encode(const qa_template *t, const qa_tokenizer *tok, const char *input, const char *answer,
                       int32_t **src, size_t *n_src, int32_t **tgt, size_t *n_tgt, qa_err *e);

/* The LLaMA-Factory cut: lengths to keep of source and target under cutoff (see above). */
void qa_truncate_lengths(int64_t src, int64_t tgt, int64_t cutoff, int64_t *keep_src, int64_t *keep_tgt);
#endif
