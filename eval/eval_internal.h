/* eval_internal.h — the suite's layout, shared by the eval/ sources (not part of the API). */
#ifndef QA_EVAL_INTERNAL_H
#define QA_EVAL_INTERNAL_H
#include "eval/eval.h"

#include <jansson.h>

typedef struct qa_eval_taskdef {
    char *name;                               /* "emotion" */
    char *test_file;                          /* "ap_emotion/emotion_{lang}500_test.json" */
    int shots;
    int n_fields;
    char *fields[QA_EVAL_MAX_FIELDS];         /* record keys filled into the query */
    int n_labels;
    char *labels[QA_EVAL_MAX_LABELS];         /* class names, tasks.json order */
    char *label_words[QA_EVAL_MAX_LABELS];    /* english_label_words: the scored words */
    /* per selected language l */
    const char **prefix;                      /* [n_langs] prefix_english_labels[L] (or _target_labels) */
    size_t *prefix_len;
    const char **query;                       /* [n_langs] query[L] */
    size_t *query_len;
    const char **target_words;                /* [n_langs * n_labels] target_label_words[L][label] */
    /* the scoring mode's view (eval/scoring.c, set by qa_eval_scoring_setup) */
    char **owned_prefix;                      /* [n_langs] prefixes built here (irrelevant-labels), else NULL */
    const char **score_words;                 /* [n_langs * n_labels] the words whose sets are scored */
    char **score_suffix;                      /* [n_langs] text appended to the prompt ids, or NULL */
} qa_eval_taskdef;

typedef struct qa_eval_cellsrc {
    char *path;                               /* the test file (for messages) */
    json_t *root;                             /* the parsed array (owns the strings below) */
    int n_file;                               /* records in the file */
    int n;                                    /* items evaluated: min(limit, n_file) */
    const char **vals;                        /* [n_file * n_fields] */
    size_t *lens;                             /* [n_file * n_fields] bytes */
    const char **answer;                      /* [n_file] the file's gold strings */
    int *gold;                                /* [n_file] gold class under the gold mode, -1 = none */
} qa_eval_cellsrc;

struct qa_eval_suite {
    char *data_dir;
    qa_eval_gold gold;
    qa_eval_prompt_variant prompt;
    qa_eval_scoring scoring;
    int limit;
    json_t *tasks_json;                       /* owns the prefix / query / word strings */
    int n_tasks;
    qa_eval_taskdef *tasks;                   /* [n_tasks] */
    int n_langs;
    char **langs;                             /* [n_langs] */
    qa_eval_cellsrc *cells;                   /* [n_tasks * n_langs], task-major */
};

/* The scoring mode's prefixes, scored words and suffixes of one task (after its prefixes, queries and
 * target words are loaded); errors name tasks.json (path) and the task. Freed by qa_eval_scoring_free. */
int qa_eval_scoring_setup(const qa_eval_suite *s, qa_eval_taskdef *td, const char *path, qa_err *e);
void qa_eval_scoring_free(const qa_eval_suite *s, qa_eval_taskdef *td);

static inline qa_eval_cellsrc *qa_eval_cellsrc_at(const qa_eval_suite *s, int t, int l) {
    return &s->cells[(size_t)t * s->n_langs + l];
}
#endif
