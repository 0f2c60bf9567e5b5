/* yaml_config.c — see yaml_config.h. */
#include "io/yaml_config.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_sbuf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* ---- string lists ------------------------------------------------------------------------- */

void qa_strlist_free(qa_strlist *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void qa_strlist_push(qa_strlist *l, const char *s) {
    l->v = qa_realloc(l->v, sizeof(char *) * (size_t)(l->n + 1));
    l->v[l->n++] = qa_strdup(s);
}

static const char *skip_ws(const char *p) {
    while (*p && isspace((unsigned char)*p)) p++;
    return p;
}

/* [b, e) trimmed of ASCII white space */
static void trim_range(const char **b, const char **e) {
    while (*b < *e && isspace((unsigned char)**b)) (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1])) (*e)--;
}

int qa_strlist_parse(qa_strlist *out, const char *text, qa_err *e) {
    qa_strlist l = {0};
    const char *b = skip_ws(text), *end = b + strlen(b);
    trim_range(&b, &end);
    if (end > b && *b == '[') {
        if (end[-1] != ']') return QA_ERR(e, "list '%s' opens '[' but does not end with ']'", text);
        b++;
        end--;
        trim_range(&b, &end);
    }
    if (b == end) {
        qa_strlist_free(out);
        *out = l;
        return 0;
    }
    const char *p = b;
    for (;;) {
        const char *q = p;
        char quote = 0;
        const char *ib, *ie;
        q = skip_ws(q);
        if (q < end && (*q == '"' || *q == '\'')) {
            quote = *q;
            const char *close = memchr(q + 1, quote, (size_t)(end - q - 1));
            if (!close) {
                qa_strlist_free(&l);
                return QA_ERR(e, "list '%s': unterminated quote", text);
            }
            ib = q + 1;
            ie = close;
            q = skip_ws(close + 1);
            if (q < end && *q != ',') {
                qa_strlist_free(&l);
                return QA_ERR(e, "list '%s': text after a quoted item", text);
            }
        } else {
            const char *comma = q < end ? memchr(q, ',', (size_t)(end - q)) : NULL;
            ib = q;
            ie = comma ? comma : end;
            q = ie;
            trim_range(&ib, &ie);
            if (ib == ie) {
                qa_strlist_free(&l);
                return QA_ERR(e, "list '%s' has an empty item (write items as a,b or [a, b])", text);
            }
        }
        char *item = qa_strndup(ib, (size_t)(ie - ib));
        qa_strlist_push(&l, item);
        free(item);
        if (q >= end) break;
        p = q + 1; /* past the comma */
        if (skip_ws(p) >= end) {
            qa_strlist_free(&l);
            return QA_ERR(e, "list '%s' ends with a comma", text);
        }
    }
    qa_strlist_free(out);
    *out = l;
    return 0;
}

/* ---- schema helpers ----------------------------------------------------------------------- */

static void *field(const qa_cfg *c, int i) { return (char *)c->target + c->keys[i].offset; }

static const char *type_name(qa_cfg_type t) {
    switch (t) {
    case QA_CFG_INT: return "int";
    case QA_CFG_FLOAT: return "float";
    case QA_CFG_BOOL: return "bool";
    case QA_CFG_STRING: return "string";
    case QA_CFG_LIST: return "list";
    }
    return "?";
}
/* "an int", "a float", ... */
static const char *type_phrase(qa_cfg_type t) {
    switch (t) {
    case QA_CFG_INT: return "an int";
    case QA_CFG_FLOAT: return "a float";
    case QA_CFG_BOOL: return "a bool";
    case QA_CFG_STRING: return "a string";
    case QA_CFG_LIST: return "a list";
    }
    return "?";
}

int qa_cfg_find(const qa_cfg *c, const char *key) {
    for (int i = 0; i < c->n_keys; i++)
        if (!strcmp(c->keys[i].name, key)) return i;
    return -1;
}

/* 1 if some key starts with "prefix." */
static int is_section(const qa_cfg *c, const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < c->n_keys; i++)
        if (!strncmp(c->keys[i].name, prefix, n) && c->keys[i].name[n] == '.') return 1;
    return 0;
}

static const char *first_in_section(const qa_cfg *c, const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < c->n_keys; i++)
        if (!strncmp(c->keys[i].name, prefix, n) && c->keys[i].name[n] == '.') return c->keys[i].name;
    return "?";
}

int qa_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int *row = qa_malloc(sizeof(int) * (lb + 1));
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    int d = row[lb];
    free(row);
    return d;
}

static const char *leaf(const char *name) {
    const char *d = strrchr(name, '.');
    return d ? d + 1 : name;
}

const char *qa_cfg_suggest(const qa_cfg *c, const char *unknown) {
    int best = INT_MAX, bi = -1;
    for (int i = 0; i < c->n_keys; i++) {
        int d = qa_edit_distance(unknown, c->keys[i].name);
        int dl = qa_edit_distance(leaf(unknown), leaf(c->keys[i].name)) + 1;
        if (dl < d) d = dl;
        if (d < best) { best = d; bi = i; }
    }
    int len = (int)strlen(unknown);
    int limit = len / 3 > 2 ? len / 3 : 2;
    if (bi < 0 || best > limit) return NULL;
    return c->keys[bi].name;
}

const char *qa_cfg_origin(const qa_cfg *c, const char *key) {
    int i = qa_cfg_find(c, key);
    if (i < 0 || !c->origin[i]) return "default";
    return c->origin[i];
}

void qa_cfg_set_origin(qa_cfg *c, const char *key, const char *origin) {
    int i = qa_cfg_find(c, key);
    QA_ASSERT(i >= 0, "qa_cfg_set_origin: unknown key '%s'", key);
    free(c->origin[i]);
    c->origin[i] = origin ? qa_strdup(origin) : NULL;
}

#define TYPED_PTR(fn, T, TY)                                          \
    T *fn(const qa_cfg *c, const char *key) {                         \
        int i = qa_cfg_find(c, key);                                  \
        if (i < 0 || c->keys[i].type != TY) return NULL;              \
        return (T *)field(c, i);                                      \
    }
TYPED_PTR(qa_cfg_float_ptr, double, QA_CFG_FLOAT)
TYPED_PTR(qa_cfg_string_ptr, char *, QA_CFG_STRING)
TYPED_PTR(qa_cfg_list_ptr, qa_strlist, QA_CFG_LIST)
int *qa_cfg_int_ptr(const qa_cfg *c, const char *key) {
    int i = qa_cfg_find(c, key);
    if (i < 0 || (c->keys[i].type != QA_CFG_INT && c->keys[i].type != QA_CFG_BOOL)) return NULL;
    return (int *)field(c, i);
}

/* ---- value parsing ------------------------------------------------------------------------ */

static int in_choices(const char *choices, const char *v) {
    size_t n = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t m = bar ? (size_t)(bar - p) : strlen(p);
        if (m == n && !strncmp(p, v, n)) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* Check v against a range "[lo,hi)" etc.; returns 1 if inside. */
static int in_range(const char *range, double v) {
    const char *p = range;
    char open = *p++;
    char *q;
    double lo = -INFINITY, hi = INFINITY;
    if (*p != ',') lo = strtod(p, &q), p = q;
    p++; /* ',' */
    if (*p != ']' && *p != ')') hi = strtod(p, &q), p = q;
    char close = *p;
    if (open == '[' ? v < lo : v <= lo) return 0;
    if (close == ']' ? v > hi : v >= hi) return 0;
    return 1;
}

static int parse_bool(const char *s, int *out) {
    static const char *T[] = {"true", "yes", "on", "1"}, *F[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, T[i])) { *out = 1; return 0; }
        if (!strcasecmp(s, F[i])) { *out = 0; return 0; }
    }
    return -1;
}

/* Parse text per the key's type into the field; where names the source for messages. */
static int set_typed(qa_cfg *c, int i, const char *text, const char *where, qa_err *e) {
    const qa_cfg_key *k = &c->keys[i];
    void *f = field(c, i);
    const char *t = skip_ws(text);
    size_t tl = strlen(t);
    while (tl && isspace((unsigned char)t[tl - 1])) tl--;
    char *s = qa_strndup(t, tl);
    int rc = 0;
    switch (k->type) {
    case QA_CFG_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (!*s || *end || errno || v < INT_MIN || v > INT_MAX) {
            rc = QA_ERR(e, "key '%s' in %s expects an int, got '%s'", k->name, where, text);
            break;
        }
        if (k->range && !in_range(k->range, (double)v)) {
            rc = QA_ERR(e, "key '%s' in %s must be in %s, got %lld", k->name, where, k->range, v);
            break;
        }
        *(int *)f = (int)v;
        break;
    }
    case QA_CFG_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (!*s || *end || errno == ERANGE || !isfinite(v)) {
            rc = QA_ERR(e, "key '%s' in %s expects a float, got '%s'", k->name, where, text);
            break;
        }
        if (k->range && !in_range(k->range, v)) {
            rc = QA_ERR(e, "key '%s' in %s must be in %s, got %s", k->name, where, k->range, s);
            break;
        }
        *(double *)f = v;
        break;
    }
    case QA_CFG_BOOL: {
        int v;
        if (parse_bool(s, &v)) {
            rc = QA_ERR(e, "key '%s' in %s expects a bool (true/false), got '%s'", k->name, where, text);
            break;
        }
        *(int *)f = v;
        break;
    }
    case QA_CFG_STRING: {
        if (k->choices && !in_choices(k->choices, s)) {
            rc = QA_ERR(e, "key '%s' in %s must be one of %s, got '%s'", k->name, where, k->choices, text);
            break;
        }
        char **sp = (char **)f;
        free(*sp);
        *sp = qa_strdup(s);
        break;
    }
    case QA_CFG_LIST: {
        qa_strlist l = {0};
        if (qa_strlist_parse(&l, s, e)) {
            qa_err_prefix(e, "key '%s' in %s", k->name, where);
            rc = -1;
            break;
        }
        for (int j = 0; k->choices && j < l.n; j++)
            if (!in_choices(k->choices, l.v[j])) {
                rc = QA_ERR(e, "key '%s' in %s: item '%s' is not one of %s", k->name, where, l.v[j], k->choices);
                break;
            }
        if (rc) { qa_strlist_free(&l); break; }
        qa_strlist_free((qa_strlist *)f);
        *(qa_strlist *)f = l;
        break;
    }
    }
    free(s);
    return rc;
}

static int set_list(qa_cfg *c, int i, const qa_strlist *items, const char *where, qa_err *e) {
    const qa_cfg_key *k = &c->keys[i];
    for (int j = 0; k->choices && j < items->n; j++)
        if (!in_choices(k->choices, items->v[j]))
            return QA_ERR(e, "key '%s' in %s: item '%s' is not one of %s", k->name, where, items->v[j], k->choices);
    qa_strlist *f = field(c, i);
    qa_strlist_free(f);
    for (int j = 0; j < items->n; j++) qa_strlist_push(f, items->v[j]);
    return 0;
}

static int unknown_key(const qa_cfg *c, const char *key, const char *where, qa_err *e) {
    const char *s = qa_cfg_suggest(c, key);
    if (s) return QA_ERR(e, "unknown key '%s' in %s; did you mean '%s'?", key, where, s);
    return QA_ERR(e, "unknown key '%s' in %s (qalign train --help-config lists the training keys)", key, where);
}

static int set_value_at(qa_cfg *c, const char *key, const char *value, const char *origin, const char *where,
                        qa_err *e) {
    int i = qa_cfg_find(c, key);
    if (i < 0) {
        if (is_section(c, key))
            return QA_ERR(e, "'%s' in %s is a section, not a key; set one of its keys (e.g. %s)", key, where,
                          first_in_section(c, key));
        return unknown_key(c, key, where, e);
    }
    QA_TRY(set_typed(c, i, value, where, e));
    char *o = qa_strdup(origin); /* origin may be c->origin[i] itself (qa_cfg_origin) */
    free(c->origin[i]);
    c->origin[i] = o;
    return 0;
}

int qa_cfg_set_value(qa_cfg *c, const char *key, const char *value, const char *origin, qa_err *e) {
    return set_value_at(c, key, value, origin, origin, e);
}

int qa_cfg_set(qa_cfg *c, const char *assignment, qa_err *e) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return QA_ERR(e, "--set '%s': expected key=value (e.g. --set train.lr=1e-4)", assignment);
    const char *kb = assignment, *ke = eq;
    trim_range(&kb, &ke);
    char *key = qa_strndup(kb, (size_t)(ke - kb));
    char where[600];
    snprintf(where, sizeof where, "--set %.500s", assignment);
    int rc = set_value_at(c, key, eq + 1, "--set", where, e);
    free(key);
    return rc;
}

/* ---- init / free -------------------------------------------------------------------------- */

void qa_cfg_init(qa_cfg *c, const qa_cfg_key *keys, int n_keys, void *target) {
    c->keys = keys;
    c->n_keys = n_keys;
    c->target = target;
    c->origin = qa_calloc((size_t)n_keys, sizeof(char *));
    for (int i = 0; i < n_keys; i++) {
        const qa_cfg_key *k = &keys[i];
        void *f = field(c, i);
        switch (k->type) {
        case QA_CFG_STRING: *(char **)f = NULL; break;
        case QA_CFG_LIST: memset(f, 0, sizeof(qa_strlist)); break;
        default: break;
        }
    }
    for (int i = 0; i < n_keys; i++) {
        const qa_cfg_key *k = &keys[i];
        QA_ASSERT(k->name && *k->name && k->dflt && k->help, "config schema: key %d is incomplete", i);
        for (int j = 0; j < i; j++)
            QA_ASSERT(strcmp(keys[j].name, k->name), "config schema: key '%s' appears twice", k->name);
        QA_ASSERT(!is_section(c, k->name), "config schema: '%s' is both a key and a section", k->name);
        qa_err e = {0};
        if (set_typed(c, i, k->dflt, "the schema default", &e))
            QA_DIE("config schema: bad default for '%s': %s", k->name, e.msg);
    }
}

void qa_cfg_free(qa_cfg *c) {
    if (!c || !c->keys) return;
    for (int i = 0; i < c->n_keys; i++) {
        void *f = field(c, i);
        if (c->keys[i].type == QA_CFG_STRING) { free(*(char **)f); *(char **)f = NULL; }
        if (c->keys[i].type == QA_CFG_LIST) qa_strlist_free(f);
        if (c->origin) free(c->origin[i]);
    }
    free(c->origin);
    c->origin = NULL;
    c->keys = NULL;
}

/* ---- YAML --------------------------------------------------------------------------------- */

typedef struct load_ctx {
    qa_cfg *c;
    yaml_document_t *doc;
    const char *name;
    int *line_set;  /* [n_keys]: line (1-based) where this load set the key, 0 = not yet */
} load_ctx;

static void where_at(char *buf, size_t n, const char *name, const yaml_node_t *node) {
    snprintf(buf, n, "%s (line %lu)", name, (unsigned long)node->start_mark.line + 1);
}

static char *scalar_text(const yaml_node_t *n) {
    return qa_strndup((const char *)n->data.scalar.value, n->data.scalar.length);
}

static int is_null_scalar(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

static int load_value(load_ctx *L, int i, yaml_node_t *v, qa_err *e) {
    qa_cfg *c = L->c;
    const qa_cfg_key *k = &c->keys[i];
    char where[700];
    where_at(where, sizeof where, L->name, v);
    if (v->type == YAML_MAPPING_NODE)
        return QA_ERR(e, "key '%s' in %s expects %s, got a mapping", k->name, where, type_phrase(k->type));
    if (v->type == YAML_SEQUENCE_NODE) {
        if (k->type != QA_CFG_LIST)
            return QA_ERR(e, "key '%s' in %s expects %s, got a list", k->name, where, type_phrase(k->type));
        qa_strlist items = {0};
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *x = yaml_document_get_node(L->doc, *it);
            if (!x || x->type != YAML_SCALAR_NODE) {
                qa_strlist_free(&items);
                return QA_ERR(e, "key '%s' in %s: list items must be plain values", k->name, where);
            }
            char *s = scalar_text(x);
            qa_strlist_push(&items, s);
            free(s);
        }
        int rc = set_list(c, i, &items, where, e);
        qa_strlist_free(&items);
        return rc;
    }
    if (is_null_scalar(v)) {
        if (k->type == QA_CFG_STRING || k->type == QA_CFG_LIST) return set_typed(c, i, "", where, e);
        return QA_ERR(e, "key '%s' in %s expects %s, got nothing", k->name, where, type_phrase(k->type));
    }
    char *s = scalar_text(v);
    int rc;
    if (k->type == QA_CFG_STRING && (v->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                                     v->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)) {
        /* quoted strings are taken verbatim (no trimming) */
        if (k->choices && !in_choices(k->choices, s)) {
            rc = QA_ERR(e, "key '%s' in %s must be one of %s, got '%s'", k->name, where, k->choices, s);
        } else {
            char **sp = (char **)field(c, i);
            free(*sp);
            *sp = qa_strdup(s);
            rc = 0;
        }
    } else if (k->type == QA_CFG_LIST && v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        qa_strlist one = {0};
        qa_strlist_push(&one, s);
        rc = set_list(c, i, &one, where, e);
        qa_strlist_free(&one);
    } else {
        rc = set_typed(c, i, s, where, e);
    }
    free(s);
    return rc;
}

static int load_mapping(load_ctx *L, yaml_node_t *m, const char *prefix, qa_err *e) {
    qa_cfg *c = L->c;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        char where[700];
        where_at(where, sizeof where, L->name, kn);
        if (!kn || kn->type != YAML_SCALAR_NODE) return QA_ERR(e, "%s: a mapping key must be a plain name", where);
        char *k = scalar_text(kn), *full = qa_key_join(prefix, k);
        free(k);
        int rc = 0;
        int i = qa_cfg_find(c, full);
        if (i >= 0) {
            if (L->line_set[i])
                rc = QA_ERR(e, "key '%s' appears twice in %s (lines %d and %lu)", full, L->name, L->line_set[i],
                            (unsigned long)kn->start_mark.line + 1);
            else if (!(rc = load_value(L, i, vn, e))) {
                L->line_set[i] = (int)kn->start_mark.line + 1;
                free(c->origin[i]);
                c->origin[i] = qa_strdup(where);
            }
        } else if (is_section(c, full)) {
            if (vn->type == YAML_MAPPING_NODE)
                rc = load_mapping(L, vn, full, e);
            else if (!is_null_scalar(vn))
                rc = QA_ERR(e, "'%s' in %s is a section; give it a mapping of keys (e.g. %s)", full, where,
                            first_in_section(c, full));
        } else {
            rc = unknown_key(c, full, where, e);
        }
        free(full);
        if (rc) return rc;
    }
    return 0;
}

int qa_cfg_load_text(qa_cfg *c, const char *text, size_t len, const char *name, qa_err *e) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return QA_ERR(e, "%s: cannot initialize the YAML parser", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = QA_ERR(e, "%s (line %lu, column %lu): YAML syntax error: %s%s%s", name,
                        (unsigned long)parser.problem_mark.line + 1, (unsigned long)parser.problem_mark.column + 1,
                        parser.problem ? parser.problem : "?", parser.context ? " " : "",
                        parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null_scalar(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            rc = QA_ERR(e, "%s (line %lu): the top level must be a mapping of keys (e.g. 'train: {lr: 5e-5}')", name,
                        (unsigned long)root->start_mark.line + 1);
        } else {
            /* pass 1 into a scratch struct checks everything; pass 2 applies, so a file with an
             * error changes nothing */
            size_t bound = 0;
            for (int i = 0; i < c->n_keys; i++) {
                size_t end = c->keys[i].offset + sizeof(qa_strlist) + sizeof(double);
                if (end > bound) bound = end;
            }
            qa_cfg scratch = {c->keys, c->n_keys, qa_calloc(bound, 1), qa_calloc((size_t)c->n_keys, sizeof(char *))};
            load_ctx L = {&scratch, &doc, name, qa_calloc((size_t)c->n_keys, sizeof(int))};
            rc = load_mapping(&L, root, NULL, e);
            qa_cfg_free(&scratch);
            free(scratch.target);
            if (rc == 0) {
                memset(L.line_set, 0, sizeof(int) * (size_t)c->n_keys);
                L.c = c;
                rc = load_mapping(&L, root, NULL, e);
            }
            free(L.line_set);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int qa_cfg_load_file(qa_cfg *c, const char *path, qa_err *e) {
    char *text;
    size_t len;
    if (qa_read_file(path, 16u << 20, &text, &len, e)) return qa_err_prefix(e, "reading config");
    int rc = qa_cfg_load_text(c, text, len, path, e);
    free(text);
    return rc;
}

/* ---- dumping ------------------------------------------------------------------------------ */


/* JSON-style double-quoted string (also valid YAML). */
static void sb_quoted(qa_sbuf *b, const char *s) {
    qa_sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': qa_sb_puts(b, "\\\""); break;
        case '\\': qa_sb_puts(b, "\\\\"); break;
        case '\n': qa_sb_puts(b, "\\n"); break;
        case '\t': qa_sb_puts(b, "\\t"); break;
        case '\r': qa_sb_puts(b, "\\r"); break;
        default:
            if (*p < 0x20) qa_sb_printf(b, "\\u%04x", *p);
            else qa_sb_put(b, (const char *)p, 1);
        }
    }
    qa_sb_puts(b, "\"");
}

/* Shortest text that reads back as the same double, with a '.' so YAML 1.1 readers see a float. */
static void format_double(char *out, size_t n, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    if (strchr(out, '.') || strchr(out, 'n') || strchr(out, 'i')) return;
    /* insert ".0" before the exponent (or at the end): "5e-05" -> "5.0e-05", "16" -> "16.0" */
    size_t len = strlen(out);
    if (len + 3 > n) return;
    char *ex = strchr(out, 'e');
    size_t at = ex ? (size_t)(ex - out) : len;
    memmove(out + at + 2, out + at, len - at + 1);
    out[at] = '.';
    out[at + 1] = '0';
}

static void value_text(const qa_cfg *c, int i, qa_sbuf *b, int quoted) {
    void *f = field(c, i);
    char num[64];
    switch (c->keys[i].type) {
    case QA_CFG_INT: qa_sb_printf(b, "%d", *(int *)f); break;
    case QA_CFG_FLOAT: format_double(num, sizeof num, *(double *)f); qa_sb_puts(b, num); break;
    case QA_CFG_BOOL: qa_sb_puts(b, *(int *)f ? "true" : "false"); break;
    case QA_CFG_STRING:
        if (quoted) sb_quoted(b, *(char **)f);
        else qa_sb_puts(b, *(char **)f);
        break;
    case QA_CFG_LIST: {
        const qa_strlist *l = f;
        if (quoted) qa_sb_puts(b, "[");
        for (int j = 0; j < l->n; j++) {
            if (j) qa_sb_puts(b, quoted ? ", " : ",");
            if (quoted) sb_quoted(b, l->v[j]);
            else qa_sb_puts(b, l->v[j]);
        }
        if (quoted) qa_sb_puts(b, "]");
        break;
    }
    }
}

char *qa_cfg_value_text(const qa_cfg *c, int i) {
    qa_sbuf b = {0};
    qa_sb_puts(&b, "");
    value_text(c, i, &b, 0);
    return b.p;
}

/* number of dot-separated components of name */
static int depth_of(const char *name) {
    int d = 1;
    for (; *name; name++) d += *name == '.';
    return d;
}

/* component idx of name as [*b, *e) */
static void component(const char *name, int idx, const char **b, const char **e) {
    const char *p = name;
    for (int k = 0; k < idx; k++) p = strchr(p, '.') + 1;
    const char *d = strchr(p, '.');
    *b = p;
    *e = d ? d : p + strlen(p);
}

/* 1 if name starts with the first `depth` components of prefix_name */
static int same_prefix(const char *name, const char *prefix_name, int depth) {
    if (depth == 0) return 1;
    const char *b, *e;
    component(prefix_name, depth - 1, &b, &e);
    size_t n = (size_t)(e - prefix_name);
    return !strncmp(name, prefix_name, n) && (name[n] == '.' || name[n] == 0) && depth_of(name) > depth;
}

/* Emit the keys under the first `depth` components of keys[anchor] (all keys when depth == 0). */
static void emit(const qa_cfg *c, qa_sbuf *b, int fmt, int with_origin, int anchor, int depth, char *done) {
    int first = 1;
    for (int i = 0; i < c->n_keys; i++) {
        if (done[i] || !same_prefix(c->keys[i].name, c->keys[anchor].name, depth)) continue;
        const char *cb, *ce;
        component(c->keys[i].name, depth, &cb, &ce);
        int is_leaf = depth_of(c->keys[i].name) == depth + 1;
        if (fmt == QA_CFG_JSON) {
            qa_sb_puts(b, first ? "\n" : ",\n");
            for (int k = 0; k <= depth; k++) qa_sb_puts(b, "  ");
            char *nm = qa_strndup(cb, (size_t)(ce - cb));
            sb_quoted(b, nm);
            free(nm);
            qa_sb_puts(b, ": ");
        } else {
            for (int k = 0; k < depth; k++) qa_sb_puts(b, "  ");
            qa_sb_put(b, cb, (size_t)(ce - cb));
            qa_sb_puts(b, ":");
        }
        first = 0;
        if (is_leaf) {
            done[i] = 1;
            if (fmt == QA_CFG_YAML) qa_sb_puts(b, " ");
            value_text(c, i, b, 1);
            if (fmt == QA_CFG_YAML) {
                if (with_origin && c->origin[i]) qa_sb_printf(b, "   # %s", c->origin[i]);
                qa_sb_puts(b, "\n");
            }
        } else {
            if (fmt == QA_CFG_JSON) qa_sb_puts(b, "{");
            else qa_sb_puts(b, "\n");
            emit(c, b, fmt, with_origin, i, depth + 1, done);
            if (fmt == QA_CFG_JSON) {
                qa_sb_puts(b, "\n");
                for (int k = 0; k <= depth; k++) qa_sb_puts(b, "  ");
                qa_sb_puts(b, "}");
            }
        }
    }
}

char *qa_cfg_dump(const qa_cfg *c, int format, int with_origin) {
    qa_sbuf b = {0};
    qa_sb_puts(&b, format == QA_CFG_JSON ? "{" : "");
    char *done = qa_calloc((size_t)c->n_keys + 1, 1);
    if (c->n_keys) emit(c, &b, format, with_origin, 0, 0, done);
    free(done);
    if (format == QA_CFG_JSON) qa_sb_puts(&b, "\n}\n");
    return b.p;
}

void qa_cfg_print_help(const qa_cfg *c, FILE *f) {
    int w = 0;
    for (int i = 0; i < c->n_keys; i++)
        if ((int)strlen(c->keys[i].name) > w) w = (int)strlen(c->keys[i].name);
    for (int i = 0; i < c->n_keys; i++) {
        const qa_cfg_key *k = &c->keys[i];
        fprintf(f, "  %-*s  %-6s  %s", w, k->name, type_name(k->type), k->help);
        if (k->choices) fprintf(f, " (%s)", k->choices);
        if (k->range) fprintf(f, " %s", k->range);
        fprintf(f, " [default: %s]\n", *k->dflt ? k->dflt : "\"\"");
    }
}
