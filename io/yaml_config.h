/* yaml_config.h — typed configuration from YAML files and `--set key=value` overrides.
 *
 * A schema is a table of keys with dotted names ("train.lr"), a type, a default, help text and an
 * optional constraint. Each key is bound to a field of a caller-owned struct through offsetof, so
 * after loading the program reads plain struct fields:
 *
 *     static const qa_cfg_key KEYS[] = {
 *         {"train.lr", QA_CFG_FLOAT, offsetof(my_cfg, lr), "5e-5", "peak learning rate", .range = "(0,)"},
 *         ...
 *     };
 *     my_cfg s; qa_cfg c; qa_cfg_init(&c, KEYS, n, &s);           // defaults
 *     qa_cfg_load_file(&c, "run.yaml", &e);                       // nested mappings -> dotted keys
 *     qa_cfg_set(&c, "train.lr=1e-4", &e);                        // --set, parsed per the key's type
 *
 * Field types: QA_CFG_INT -> int, QA_CFG_FLOAT -> double, QA_CFG_BOOL -> int (0/1),
 * QA_CFG_STRING -> char * (heap, never NULL; "" when empty), QA_CFG_LIST -> qa_strlist.
 *
 * YAML: the root is a mapping; nested mappings form dotted names (`train: {lr: 1e-4}` and
 * `train.lr: 1e-4` are the same key); a list is a YAML sequence of scalars, a flow sequence
 * `[a, b]`, or a comma-separated scalar "a,b". Since YAML is a superset of JSON, the JSON dump
 * loads back through the same path. Later sources override earlier ones (defaults < files in order
 * < --set in order); a key given twice in one file is an error.
 *
 * Errors name the key and where it came from:
 *     unknown key 'train.lrr' in run.yaml (line 7); did you mean 'train.lr'?
 *     key 'train.lr' in --set expects a float, got 'fast'
 */
#ifndef QA_YAML_CONFIG_H
#define QA_YAML_CONFIG_H
#include "common/qa_err.h"
#include <stddef.h>
#include <stdio.h>

typedef enum qa_cfg_type { QA_CFG_INT = 1, QA_CFG_FLOAT, QA_CFG_BOOL, QA_CFG_STRING, QA_CFG_LIST } qa_cfg_type;

/* A list of strings (heap; v[i] heap). */
typedef struct qa_strlist {
    char **v;
    int n;
} qa_strlist;
void qa_strlist_free(qa_strlist *l);
void qa_strlist_push(qa_strlist *l, const char *s);
/* Parse "a,b", "[a, b]", "['a', \"b\"]", "" or "[]" into *out (replacing its contents).
 * Items are trimmed and may be quoted; an empty item ("a,,b") is an error. */
int qa_strlist_parse(qa_strlist *out, const char *text, qa_err *e);

typedef struct qa_cfg_key {
    const char *name;      /* dotted name, e.g. "train.lr" */
    qa_cfg_type type;
    size_t offset;         /* offsetof(struct, field) of the bound field */
    const char *dflt;      /* default as written in --set syntax: "5e-5", "q_proj,v_proj", "" */
    const char *help;      /* one line */
    const char *choices;   /* STRING / LIST items: "cpu|cuda"; NULL = anything */
    const char *range;     /* INT / FLOAT: "[0,1)", "[1,)", "(0,)"; NULL = anything */
} qa_cfg_key;

typedef struct qa_cfg {
    const qa_cfg_key *keys;
    int n_keys;
    void *target;          /* the struct the keys are bound to */
    char **origin;         /* [n_keys]: NULL = default, else "FILE (line N)", "--set" or a note */
} qa_cfg;

/* Bind the schema to target and apply every default. A malformed schema (bad default, duplicate
 * name, a name that is also a section) is a programming error and aborts with a message. */
void qa_cfg_init(qa_cfg *c, const qa_cfg_key *keys, int n_keys, void *target);
/* Free the strings and lists in target and the origins. */
void qa_cfg_free(qa_cfg *c);

/* Load a YAML (or JSON) file / text. name is used in messages ("FILE (line N)"). */
int qa_cfg_load_file(qa_cfg *c, const char *path, qa_err *e);
int qa_cfg_load_text(qa_cfg *c, const char *text, size_t len, const char *name, qa_err *e);
/* Apply one "key=value" override (the argument of --set). */
int qa_cfg_set(qa_cfg *c, const char *assignment, qa_err *e);
/* Set one key from text; origin is recorded and used in messages ("--set", "run.yaml (line 3)"). */
int qa_cfg_set_value(qa_cfg *c, const char *key, const char *value, const char *origin, qa_err *e);
/* Record a derived value's origin (e.g. "derived from model.path"); key must exist. */
void qa_cfg_set_origin(qa_cfg *c, const char *key, const char *origin);

int qa_cfg_find(const qa_cfg *c, const char *key);             /* index, -1 if unknown */
/* The valid key closest to an unknown name (Levenshtein on the whole name, or on the last
 * component + 1), NULL if nothing is reasonably close. */
const char *qa_cfg_suggest(const qa_cfg *c, const char *unknown);
const char *qa_cfg_origin(const qa_cfg *c, const char *key);   /* "default" when not set */
/* The value of key i formatted as on the command line (heap). */
char *qa_cfg_value_text(const qa_cfg *c, int i);
/* Typed field pointers (NULL when the key is unknown or of another type). */
int *qa_cfg_int_ptr(const qa_cfg *c, const char *key);
double *qa_cfg_float_ptr(const qa_cfg *c, const char *key);
char **qa_cfg_string_ptr(const qa_cfg *c, const char *key);
qa_strlist *qa_cfg_list_ptr(const qa_cfg *c, const char *key);

enum { QA_CFG_YAML = 0, QA_CFG_JSON = 1 };
/* The resolved configuration as nested YAML or JSON (heap, NUL-terminated). with_origin adds a
 * "# <origin>" comment to non-default YAML values (ignored for JSON). Both load back unchanged. */
char *qa_cfg_dump(const qa_cfg *c, int format, int with_origin);
/* "name  type  default  help" for every key. */
void qa_cfg_print_help(const qa_cfg *c, FILE *f);

/* Levenshtein distance (exposed for tests). */
int qa_edit_distance(const char *a, const char *b);
#endif
