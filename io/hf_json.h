/* hf_json.h — JSON text exactly as Python's `json.dumps(obj, indent=2, sort_keys=True) + "\n"` writes it
 * (the layout of transformers' config.json / generation_config.json and PEFT's adapter_config.json):
 * two-space indent, sorted keys, floats in Python repr (shortest round-trip digits, "1e-05", "10000.0"). */
#ifndef QA_HF_JSON_H
#define QA_HF_JSON_H
#include "common/qa_err.h"
#include <jansson.h>

/* Heap string ending in "\n"; the caller frees it. */
char *qa_json_dumps_py(const json_t *o);
/* Python repr of a finite double into buf (at least 32 bytes). */
void qa_py_float_repr(double x, char *buf, size_t n);
/* Dump and commit atomically (tmp + fsync + rename). */
int qa_json_write_py(const char *path, const json_t *o, qa_err *e);
#endif
