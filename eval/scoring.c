/* scoring.c — the scoring modes of the paper's evaluation scripts (docs/evaluation.md "Scoring modes"):
 *
 *   english-labels     emotion/snli/paws_eval_*_enout.py: English label words scored in every language,
 *                      the prediction mapped to target_label_words[L] and compared with the gold string.
 *   target-labels      emotion_eval_2shot.py: target-language demo labels (prefix_target_labels), the
 *                      target-language label words scored, correct iff the predicted word starts with the
 *                      gold string. When all label words share a prefix (Thai เชิงบวก / เชิงลบ: เชิง), the
 *                      script appends tokenizer(prefix)["input_ids"] (add_special_tokens=True: a BOS for
 *                      Mistral/Llama, mid-sequence) to the prompt ids and compares the remainders (บวก / ลบ)
 *                      at the new last position.
 *   irrelevant-labels  emotion_eval_2shot_irrelative.py, the control: the demos' label words are "ox"
 *                      (positive) and "horse" (negative) in every language, the English sets of "ox" and
 *                      "horse" are scored (process_tokens without the Qwen first-token rule), ox counts as
 *                      positive, horse as negative.
 * The prompts of the control are prefix_target_labels[L] with every quoted demo label word "w_k" replaced
 * by the control word of label k (checked byte for byte against the script's prompt_prefix in
 * tests/test_eval.c). */
#include "eval/eval_internal.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the control's words, by label index (tasks.json order: positive, negative) */
static const char *const CONTROL_WORDS[2] = {"ox", "horse"};

const char *qa_eval_scoring_name(qa_eval_scoring m) {
    return m == QA_EVAL_SCORING_TARGET ? "target-labels" : m == QA_EVAL_SCORING_IRRELEVANT ? "irrelevant-labels"
                                                                                          : "english-labels";
}

int qa_eval_scoring_parse(const char *s, qa_eval_scoring *m, qa_err *e) {
    if (!strcmp(s, "english-labels")) *m = QA_EVAL_SCORING_ENGLISH;
    else if (!strcmp(s, "target-labels")) *m = QA_EVAL_SCORING_TARGET;
    else if (!strcmp(s, "irrelevant-labels")) *m = QA_EVAL_SCORING_IRRELEVANT;
    else return QA_ERR(e, "scoring mode '%s' is unknown (use english-labels, target-labels or irrelevant-labels)", s);
    return 0;
}

const char *qa_eval_scoring_protocol(qa_eval_scoring m) {
    return m == QA_EVAL_SCORING_TARGET       ? "zhang2024-target-labels"
           : m == QA_EVAL_SCORING_IRRELEVANT ? "zhang2024-irrelevant-labels"
                                             : QA_EVAL_PROTOCOL;
}

/* bytes of the UTF-8 sequence at s (1 for a stray byte) */
static size_t u8_len(unsigned char c) {
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

/* Longest common prefix of the words, in whole code points (bytes). */
static size_t common_prefix(const char *const *w, int n) {
    size_t at = 0;
    for (;;) {
        size_t k = u8_len((unsigned char)w[0][at]);
        if (!w[0][at]) return at;
        for (int i = 1; i < n; i++)
            if (strncmp(w[0] + at, w[i] + at, k) || strlen(w[i] + at) < k) return at;
        at += k;
    }
}

/* prefix with every `"tw[k]"` replaced by `"cw[k]"` (one left-to-right pass); *count[k] = replacements */
static char *replace_quoted(const char *pre, size_t len, const char *const *tw, const char *const *cw, int K,
                            int *count, size_t *out_len) {
    size_t cap = len + 1;
    for (int k = 0; k < K; k++) cap += (strlen(cw[k]) + 2) * (len / 2 + 1);
    char *out = qa_malloc(cap);
    size_t n = 0;
    for (size_t p = 0; p < len;) {
        int hit = -1;
        size_t wl = 0;
        if (pre[p] == '"')
            for (int k = 0; k < K && hit < 0; k++) {
                wl = strlen(tw[k]);
                if (wl && p + wl + 1 < len && !memcmp(pre + p + 1, tw[k], wl) && pre[p + 1 + wl] == '"') hit = k;
            }
        if (hit >= 0) {
            size_t cl = strlen(cw[hit]);
            out[n++] = '"';
            memcpy(out + n, cw[hit], cl);
            n += cl;
            out[n++] = '"';
            p += wl + 2;
            count[hit]++;
            continue;
        }
        out[n++] = pre[p++];
    }
    out[n] = 0;
    *out_len = n;
    return out;
}

int qa_eval_scoring_setup(const qa_eval_suite *s, qa_eval_taskdef *td, const char *path, qa_err *e) {
    const int nl = s->n_langs, K = td->n_labels;
    td->score_words = qa_calloc((size_t)nl * K, sizeof *td->score_words);
    td->score_suffix = qa_calloc(nl, sizeof *td->score_suffix);
    if ((s->scoring == QA_EVAL_SCORING_IRRELEVANT || s->prompt == QA_EVAL_PROMPT_IRRELEVANT_LABELS) && K != 2)
        return QA_ERR(e, "%s: task '%s' has %d labels; the irrelevant-label control has two control words (%s, %s) "
                         "for a 2-label task (emotion in the paper)", path, td->name, K, CONTROL_WORDS[0],
                      CONTROL_WORDS[1]);
    if (s->prompt == QA_EVAL_PROMPT_IRRELEVANT_LABELS) {
        td->owned_prefix = qa_calloc(nl, sizeof *td->owned_prefix);
        for (int l = 0; l < nl; l++) {
            int count[2] = {0, 0};
            size_t n = 0;
            const char *const *tw = td->target_words + (size_t)l * K;
            td->owned_prefix[l] = replace_quoted(td->prefix[l], td->prefix_len[l], tw, CONTROL_WORDS, K, count, &n);
            for (int k = 0; k < K; k++)
                if (count[k] == 0)
                    return QA_ERR(e, "%s: task '%s', language '%s': prefix_target_labels has no demonstration label "
                                     "\"\\\"%s\\\"\" (target_label_words.%s.%s) to replace by the control word \"%s\"",
                                  path, td->name, s->langs[l], tw[k], s->langs[l], td->labels[k], CONTROL_WORDS[k]);
            td->prefix[l] = td->owned_prefix[l];
            td->prefix_len[l] = n;
        }
    }
    for (int l = 0; l < nl; l++) {
        const char **tw = td->target_words + (size_t)l * K;
        const char **sw = td->score_words + (size_t)l * K;
        if (s->scoring == QA_EVAL_SCORING_TARGET) {
            size_t cp = common_prefix(tw, K);
            int rest = 1;
            for (int k = 0; k < K; k++) rest = rest && tw[k][cp];
            if (cp > 0 && rest) td->score_suffix[l] = qa_strndup(tw[0], cp);
            else cp = 0;
            for (int k = 0; k < K; k++) {
                if (!tw[k][0])
                    return QA_ERR(e, "%s: task '%s', language '%s': target_label_words.%s.%s is empty: nothing to score "
                                     "in target-labels mode", path, td->name, s->langs[l], s->langs[l], td->labels[k]);
                sw[k] = tw[k] + cp;
            }
        } else {
            for (int k = 0; k < K; k++)
                sw[k] = s->scoring == QA_EVAL_SCORING_IRRELEVANT ? CONTROL_WORDS[k] : td->label_words[k];
        }
    }
    return 0;
}

void qa_eval_scoring_free(const qa_eval_suite *s, qa_eval_taskdef *td) {
    if (td->owned_prefix)
        for (int l = 0; l < s->n_langs; l++) free(td->owned_prefix[l]);
    if (td->score_suffix)
        for (int l = 0; l < s->n_langs; l++) free(td->score_suffix[l]);
    free(td->owned_prefix);
    free(td->score_suffix);
    free(td->score_words);
    td->owned_prefix = td->score_suffix = NULL;
    td->score_words = NULL;
}

qa_eval_scoring qa_eval_scoring_of(const qa_eval_suite *s) { return s->scoring; }

const char *qa_eval_scored_word(const qa_eval_suite *s, int t, int l, int k) {
    return s->tasks[t].score_words[(size_t)l * s->tasks[t].n_labels + k];
}

const char *qa_eval_pred_word(const qa_eval_suite *s, int t, int l, int k) {
    const qa_eval_taskdef *td = &s->tasks[t];
    if (s->scoring == QA_EVAL_SCORING_TARGET) return td->target_words[(size_t)l * td->n_labels + k];
    if (s->scoring == QA_EVAL_SCORING_IRRELEVANT) return CONTROL_WORDS[k];
    return td->label_words[k];
}

const char *qa_eval_score_suffix(const qa_eval_suite *s, int t, int l) { return s->tasks[t].score_suffix[l]; }

unsigned qa_eval_label_token_flags(const qa_eval_suite *s) {
    return s->scoring == QA_EVAL_SCORING_IRRELEVANT ? QA_EVAL_LT_NO_FIRST_TOKEN : 0;
}

int qa_eval_item_tokens(const qa_eval_suite *s, const qa_tokenizer *tok, int t, int l, int i, int32_t **ids,
                        size_t *n, qa_err *e) {
    size_t plen;
    *ids = NULL;
    *n = 0;
    char *prompt = qa_eval_prompt(s, t, l, i, &plen);
    int bad = qa_tok_encode(tok, prompt, plen, 1, ids, n, e);
    free(prompt);
    if (bad) return -1;
    const char *suf = qa_eval_score_suffix(s, t, l);
    if (!suf) return 0;
    int32_t *sids = NULL;
    size_t ns = 0;
    if (qa_tok_encode(tok, suf, strlen(suf), 1, &sids, &ns, e)) {
        free(*ids);
        *ids = NULL;
        *n = 0;
        return qa_err_prefix(e, "the labels' shared prefix \"%s\"", suf);
    }
    *ids = qa_realloc(*ids, sizeof(int32_t) * (*n + ns + 1));
    memcpy(*ids + *n, sids, sizeof(int32_t) * ns);
    *n += ns;
    free(sids);
    return 0;
}

int qa_eval_item_correct(const qa_eval_suite *s, int t, int l, int i, int pred) {
    const qa_eval_cellsrc *c = qa_eval_cellsrc_at(s, t, l);
    if (s->gold == QA_EVAL_GOLD_CORRECTED) return c->gold[i] == pred;
    const char *gold = c->answer[i], *tw = s->tasks[t].target_words[(size_t)l * s->tasks[t].n_labels + pred];
    if (s->scoring == QA_EVAL_SCORING_TARGET) return strncmp(tw, gold, strlen(gold)) == 0; /* startswith */
    return strcmp(gold, tw) == 0;
}
