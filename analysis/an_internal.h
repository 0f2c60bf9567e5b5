/* an_internal.h — helpers shared by the analysis/ sources (not part of the API). */
#ifndef QA_AN_INTERNAL_H
#define QA_AN_INTERNAL_H
#include "analysis/analysis.h"

#include <stddef.h>

#include "common/qa_sbuf.h"

/* split "a,b , c" into a heap array of heap strings (*n entries); free with qa_an_free_list */
char **qa_an_split(const char *s, int *n);
void qa_an_free_list(char **v, int n);

/* the single task of a dump's rows, or `want` checked against them; *out points into the dump */
int qa_an_pick_task(const qa_actdump *d, const char *want, const char **out, qa_err *e);
/* the languages of the task's rows in first-appearance order, or `want` (a list) checked against them;
 * heap array of heap strings */
int qa_an_pick_langs(const qa_actdump *d, const char *task, const char *want, char ***out, int *n, qa_err *e);
/* the last path component ("models/Mistral-7B/" -> "Mistral-7B") into buf */
void qa_an_basename(const char *path, char *buf, size_t cap);
#include "common/qa_log.h"
#endif
