/* template.c — see template.h. */
#include "train/template.h"

#include "common/qa_datadir.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static const char *PH_INPUT = "{input}", *PH_ANSWER = "{answer}";

void qa_template_free(qa_template *t) {
    if (!t) return;
    qa_tpl_seg *lists[2] = {t->prompt, t->response};
    int ns[2] = {t->n_prompt, t->n_response};
    for (int l = 0; l < 2; l++) {
        for (int i = 0; i < ns[l]; i++) {
            free(lists[l][i].text);
            free(lists[l][i].ids);
        }
        free(lists[l]);
    }
    free(t->name);
    free(t->path);
    memset(t, 0, sizeof *t);
}

typedef struct tctx {
    yaml_document_t *doc;
    const char *name;
    const qa_tokenizer *tok;
    int32_t cfg_bos, cfg_eos;
} tctx;

static unsigned long line_of(const yaml_node_t *n) { return (unsigned long)n->start_mark.line + 1; }

static char *scalar(const yaml_node_t *n) {
    return qa_strndup((const char *)n->data.scalar.value, n->data.scalar.length);
}

static int is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || !strcmp(v, "~") || !strcmp(v, "null");
}

/* Resolve a token name to an id. */
static int resolve_token(const tctx *C, const char *tokname, const yaml_node_t *at, int32_t *id, qa_err *e) {
    if (!strcmp(tokname, "$eos") || !strcmp(tokname, "$bos")) {
        int32_t v = tokname[1] == 'e' ? C->cfg_eos : C->cfg_bos;
        if (v < 0)
            return QA_ERR(e, "template %s (line %lu): token '%s' needs the model's config.json %s_token_id, which is "
                             "absent; name the token explicitly (e.g. \"</s>\")",
                          C->name, line_of(at), tokname, tokname + 1);
        if (v >= qa_tok_vocab_size(C->tok))
            return QA_ERR(e, "template %s (line %lu): token '%s' = id %d from config.json is outside the tokenizer "
                             "(%d ids)", C->name, line_of(at), tokname, (int)v, (int)qa_tok_vocab_size(C->tok));
        *id = v;
        return 0;
    }
    int32_t v = qa_tok_token_to_id(C->tok, tokname);
    if (v < 0)
        return QA_ERR(e, "template %s (line %lu): token '%s' is not in the tokenizer; this template does not fit "
                         "this model (pick another data.template)", C->name, line_of(at), tokname);
    if (!qa_tok_is_special(C->tok, v))
        return QA_ERR(e, "template %s (line %lu): token '%s' is not in the tokenizer as a special token (only as the "
                         "ordinary vocabulary entry %d); this template does not fit this model (pick another "
                         "data.template)", C->name, line_of(at), tokname, (int)v);
    *id = v;
    return 0;
}

/* Encode literal template text and refuse special tokens inside it. */
static int check_literal(const tctx *C, const char *lit, size_t len, const yaml_node_t *at, qa_err *e) {
    if (!len) return 0;
    int32_t *ids = NULL;
    size_t n = 0;
    if (qa_tok_encode(C->tok, lit, len, 0, &ids, &n, e))
        return qa_err_prefix(e, "template %s (line %lu)", C->name, line_of(at));
    for (size_t i = 0; i < n; i++)
        if (qa_tok_is_special(C->tok, ids[i])) {
            const char *s = qa_tok_id_to_token(C->tok, ids[i]);
            free(ids);
            return QA_ERR(e, "template %s (line %lu): text contains the special token '%s'; write it as its own "
                             "segment '- token: \"%s\"'", C->name, line_of(at), s ? s : "?", s ? s : "?");
        }
    free(ids);
    return 0;
}

static int count_sub(const char *s, const char *sub) {
    int n = 0;
    size_t l = strlen(sub);
    for (const char *p = strstr(s, sub); p; p = strstr(p + l, sub)) n++;
    return n;
}

static int load_segments(const tctx *C, const yaml_node_t *list, const char *field, qa_tpl_seg **out, int *n_out,
                         qa_err *e) {
    if (list->type != YAML_SEQUENCE_NODE)
        return QA_ERR(e, "template %s (line %lu): '%s' must be a list of segments (- text: ... / - token: ...)",
                      C->name, line_of(list), field);
    int n = (int)(list->data.sequence.items.top - list->data.sequence.items.start);
    qa_tpl_seg *segs = qa_calloc((size_t)(n ? n : 1), sizeof *segs);
    *out = segs;
    *n_out = 0;
    for (int i = 0; i < n; i++) {
        yaml_node_t *it = yaml_document_get_node(C->doc, list->data.sequence.items.start[i]);
        if (it->type != YAML_MAPPING_NODE || it->data.mapping.pairs.top - it->data.mapping.pairs.start != 1)
            return QA_ERR(e, "template %s (line %lu): each '%s' segment is a mapping with one key, 'text' or 'token'",
                          C->name, line_of(it), field);
        yaml_node_pair_t *p = it->data.mapping.pairs.start;
        yaml_node_t *k = yaml_document_get_node(C->doc, p->key), *v = yaml_document_get_node(C->doc, p->value);
        if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE)
            return QA_ERR(e, "template %s (line %lu): a segment is 'text: \"...\"' or 'token: \"...\"'", C->name,
                          line_of(it));
        char *key = scalar(k);
        qa_tpl_seg *s = &segs[i];
        *n_out = i + 1;
        s->text = scalar(v);
        if (!strcmp(key, "token")) {
            free(key);
            s->kind = QA_SEG_TOKEN;
            QA_TRY(resolve_token(C, s->text, v, &s->id, e));
        } else if (!strcmp(key, "text")) {
            free(key);
            s->kind = QA_SEG_TEXT;
            int ni = count_sub(s->text, PH_INPUT), na = count_sub(s->text, PH_ANSWER);
            if (ni + na > 1)
                return QA_ERR(e, "template %s (line %lu): a text segment holds at most one placeholder", C->name,
                              line_of(v));
            s->slot = ni ? QA_SLOT_INPUT : na ? QA_SLOT_ANSWER : QA_SLOT_NONE;
            if (s->slot == QA_SLOT_NONE) {
                if (!*s->text)
                    return QA_ERR(e, "template %s (line %lu): empty text segment", C->name, line_of(v));
                QA_TRY(check_literal(C, s->text, strlen(s->text), v, e));
                if (qa_tok_encode(C->tok, s->text, strlen(s->text), 0, &s->ids, &s->n_ids, e))
                    return qa_err_prefix(e, "template %s (line %lu)", C->name, line_of(v));
            } else {
                const char *ph = s->slot == QA_SLOT_INPUT ? PH_INPUT : PH_ANSWER;
                const char *at = strstr(s->text, ph);
                QA_TRY(check_literal(C, s->text, (size_t)(at - s->text), v, e));
                const char *rest = at + strlen(ph);
                QA_TRY(check_literal(C, rest, strlen(rest), v, e));
            }
        } else {
            int rc = QA_ERR(e, "template %s (line %lu): unknown segment kind '%s' (use 'text' or 'token')", C->name,
                            line_of(k), key);
            free(key);
            return rc;
        }
    }
    return 0;
}

static int count_slot(const qa_tpl_seg *s, int n, int slot) {
    int c = 0;
    for (int i = 0; i < n; i++) c += s[i].kind == QA_SEG_TEXT && s[i].slot == slot;
    return c;
}

int qa_template_load_text(qa_template *t, const char *text, size_t len, const char *name,
                          const qa_tokenizer *tok, int32_t cfg_bos, int32_t cfg_eos, qa_err *e) {
    memset(t, 0, sizeof *t);
    t->bos_id = -1;
    t->end_id = -1;
    t->path = qa_strdup(name);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return QA_ERR(e, "template %s: cannot initialize the YAML parser", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = QA_ERR(e, "template %s (line %lu): YAML syntax error: %s", name,
                        (unsigned long)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        qa_template_free(t);
        return rc;
    }
    tctx C = {&doc, name, tok, cfg_bos, cfg_eos};
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *prompt = NULL, *response = NULL, *end = NULL;
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = QA_ERR(e, "template %s: expected a mapping with prompt, response and end", name);
        goto out;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top && !rc; p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key), *v = yaml_document_get_node(&doc, p->value);
        char *key = k->type == YAML_SCALAR_NODE ? scalar(k) : qa_strdup("?");
        if (!strcmp(key, "name") && v->type == YAML_SCALAR_NODE) {
            free(t->name);
            t->name = scalar(v);
        } else if (!strcmp(key, "description")) {
            /* free text */
        } else if (!strcmp(key, "bos") && v->type == YAML_SCALAR_NODE) {
            if (!is_null(v)) {
                char *s = scalar(v);
                rc = resolve_token(&C, s, v, &t->bos_id, e);
                free(s);
            }
        } else if (!strcmp(key, "end") && v->type == YAML_SCALAR_NODE) {
            end = v;
        } else if (!strcmp(key, "prompt")) {
            prompt = v;
        } else if (!strcmp(key, "response")) {
            response = v;
        } else {
            rc = QA_ERR(e, "template %s (line %lu): unknown or malformed key '%s' (expected name, description, bos, "
                           "prompt, response, end)", name, line_of(k), key);
        }
        free(key);
    }
    if (rc) goto out;
    if (!prompt || !response || !end) {
        rc = QA_ERR(e, "template %s: needs 'prompt', 'response' and 'end' (missing '%s')", name,
                    !prompt ? "prompt" : !response ? "response" : "end");
        goto out;
    }
    if (is_null(end)) {
        rc = QA_ERR(e, "template %s (line %lu): 'end' must name the token that ends the response", name, line_of(end));
        goto out;
    }
    if ((rc = load_segments(&C, prompt, "prompt", &t->prompt, &t->n_prompt, e))) goto out;
    if ((rc = load_segments(&C, response, "response", &t->response, &t->n_response, e))) goto out;
    char *endname = scalar(end);
    rc = resolve_token(&C, endname, end, &t->end_id, e);
    free(endname);
    if (rc) goto out;
    if (count_slot(t->prompt, t->n_prompt, QA_SLOT_INPUT) != 1 ||
        count_slot(t->prompt, t->n_prompt, QA_SLOT_ANSWER) != 0) {
        rc = QA_ERR(e, "template %s: {input} must appear in exactly one prompt text segment and {answer} in none", name);
        goto out;
    }
    if (count_slot(t->response, t->n_response, QA_SLOT_ANSWER) != 1 ||
        count_slot(t->response, t->n_response, QA_SLOT_INPUT) != 0) {
        rc = QA_ERR(e, "template %s: {answer} must appear in exactly one response text segment and {input} in none",
                    name);
        goto out;
    }
    if (!t->name) {
        const char *b = strrchr(name, '/');
        b = b ? b + 1 : name;
        const char *dot = strrchr(b, '.');
        t->name = qa_strndup(b, dot ? (size_t)(dot - b) : strlen(b));
    }
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc) qa_template_free(t);
    return rc;
}

int qa_template_load(qa_template *t, const char *path, const qa_tokenizer *tok, int32_t cfg_bos, int32_t cfg_eos,
                     qa_err *e) {
    char *text;
    size_t len;
    memset(t, 0, sizeof *t);
    if (qa_read_file(path, 1u << 20, &text, &len, e)) return qa_err_prefix(e, "reading template");
    int rc = qa_template_load_text(t, text, len, path, tok, cfg_bos, cfg_eos, e);
    free(text);
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int qa_template_find(const char *name_or_path, const char *config_path, char **out, qa_err *e) {
    *out = NULL;
    if (!name_or_path || !*name_or_path) return QA_ERR(e, "data.template is empty; name a template (qwen, mistral, vanilla)");
    if (strchr(name_or_path, '/') || ends_with(name_or_path, ".yaml") || ends_with(name_or_path, ".yml")) {
        if (!qa_path_exists(name_or_path)) return QA_ERR(e, "template file %s does not exist", name_or_path);
        *out = qa_strdup(name_or_path);
        return 0;
    }
    char file[300];
    snprintf(file, sizeof file, "%s.yaml", name_or_path);
    char *dirs[4] = {NULL, NULL, NULL, NULL};
    const char *env = getenv("QALIGN_TEMPLATES");
    if (env && *env) dirs[0] = qa_strdup(env);
    if (config_path && *config_path) {
        const char *slash = strrchr(config_path, '/');
        char *cdir = slash ? qa_strndup(config_path, (size_t)(slash - config_path)) : qa_strdup(".");
        dirs[1] = qa_path_join(cdir, "templates");
        free(cdir);
    }
    dirs[2] = qa_strdup("configs/templates");
    dirs[3] = qa_data_dir(); /* an installed qalign: PREFIX/share/qalign (common/qa_datadir.h) */
    if (dirs[3]) { char *d = qa_path_join(dirs[3], "configs/templates"); free(dirs[3]); dirs[3] = d; }
    char tried[1500] = "";
    for (int i = 0; i < 4 && !*out; i++) {
        if (!dirs[i]) continue;
        char *p = qa_path_join(dirs[i], file);
        if (qa_path_exists(p)) {
            *out = p;
        } else {
            size_t l = strlen(tried);
            snprintf(tried + l, sizeof tried - l, "%s%s", l ? ", " : "", p);
            free(p);
        }
    }
    for (int i = 0; i < 4; i++) free(dirs[i]);
    if (!*out)
        return QA_ERR(e, "template '%s' not found (tried %s); give data.template as a .yaml path or set "
                         "QALIGN_TEMPLATES to the templates directory", name_or_path, tried);
    return 0;
}

typedef struct ivec {
    int32_t *v;
    size_t n, cap;
} ivec;

static void iv_push(ivec *a, const int32_t *x, size_t n) {
    if (!n) return;
    if (a->n + n > a->cap) {
        a->cap = (a->n + n) * 2 + 16;
        a->v = qa_realloc(a->v, a->cap * sizeof(int32_t));
    }
    memcpy(a->v + a->n, x, n * sizeof(int32_t));
    a->n += n;
}

static int encode_segments(const qa_template *t, const qa_tokenizer *tok, const qa_tpl_seg *segs, int n,
                           const char *value, ivec *out, qa_err *e) {
    for (int i = 0; i < n; i++) {
        const qa_tpl_seg *s = &segs[i];
        if (s->kind == QA_SEG_TOKEN) {
            iv_push(out, &s->id, 1);
        } else if (s->slot == QA_SLOT_NONE) {
            iv_push(out, s->ids, s->n_ids);
        } else {
            const char *ph = s->slot == QA_SLOT_INPUT ? PH_INPUT : PH_ANSWER;
            const char *at = strstr(s->text, ph);
            size_t pre = (size_t)(at - s->text), vl = strlen(value), post = strlen(at + strlen(ph));
            char *buf = qa_malloc(pre + vl + post + 1);
            memcpy(buf, s->text, pre);
            memcpy(buf + pre, value, vl);
            memcpy(buf + pre + vl, at + strlen(ph), post + 1);
            int32_t *ids = NULL;
            size_t nid = 0;
            int rc = qa_tok_encode(tok, buf, pre + vl + post, 0, &ids, &nid, e);
            free(buf);
            if (rc) return qa_err_prefix(e, "template %s", t->name);
            iv_push(out, ids, nid);
            free(ids);
        }
    }
    return 0;
}

int qa_template_encode(const qa_template *t, const qa_tokenizer *tok, const char *input, const char *answer,
                       int32_t **src, size_t *n_src, int32_t **tgt, size_t *n_tgt, qa_err *e) {
    ivec s = {0}, g = {0};
    if (t->bos_id >= 0) iv_push(&s, &t->bos_id, 1);
    if (encode_segments(t, tok, t->prompt, t->n_prompt, input, &s, e) ||
        encode_segments(t, tok, t->response, t->n_response, answer, &g, e)) {
        free(s.v);
        free(g.v);
        return -1;
    }
    iv_push(&g, &t->end_id, 1);
    *src = s.v ? s.v : qa_malloc(sizeof(int32_t));
    *n_src = s.n;
    *tgt = g.v;
    *n_tgt = g.n;
    return 0;
}

void qa_truncate_lengths(int64_t src, int64_t tgt, int64_t cutoff, int64_t *keep_src, int64_t *keep_tgt) {
    /* the same double arithmetic as Python: int(max_len * (target_len / (source_len + target_len))) */
    int64_t max_tgt = src + tgt > 0 ? (int64_t)((double)cutoff * ((double)tgt / (double)(src + tgt))) : 0;
    if (max_tgt < 1) max_tgt = 1;
    int64_t max_src = cutoff - max_tgt;
    if (max_src < 0) max_src = 0;
    *keep_src = src < max_src ? src : max_src;
    *keep_tgt = tgt < max_tgt ? tgt : max_tgt;
}
