/* testutil.h — a tiny test harness. Each test binary ends with `return qt_finish();`, which
 * prints "N passed, N failed" (read by CI) and returns non-zero if anything failed. */
#ifndef QA_TESTUTIL_H
#define QA_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int qt_passed, qt_failed;
void qt_record(int ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int qt_finish(void);
#define QT_CHECK(cond, ...) qt_record(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* relative error ||a-b|| / ||b|| (b the reference), in double */
double qt_rel_err_f32(const float *a, const float *b, size_t n);
double qt_rel_err_f32_f64(const float *a, const double *b, size_t n);
/* directory of the fixtures: $QALIGN_FIXTURES or the compiled-in default */
const char *qt_env_or(const char *name, const char *dflt);
/* run a shell command, capture stdout+stderr into buf (NUL-terminated), return exit status */
int qt_run(const char *cmd, char *buf, size_t buflen);
/* sorted names of the entries of dir (no dot files) that satisfy keep(dir, name); returns how many and
 * sets *out (free each name and the array); an unreadable dir gives 0 and *out NULL */
int qt_list_dir(const char *dir, char ***out, int (*keep)(const char *dir, const char *name));
/* The HF golden fixture root: $QALIGN_FIXTURES, else $QALIGN_FIXTURES_DEFAULT (ctest sets it: the shared set
 * or the generated one, tests/CMakeLists.txt), else QT_FIXTURES_FALLBACK — the documented fallback for a test
 * binary run by hand beside a checkout with the shared folder (docs/testing.md). */
#define QT_FIXTURES_FALLBACK "../shared/fixtures/hf"
const char *qt_fixtures_root(void);
/* root/<first fixture name in sort order with model/config.json>/model into out; -1: none */
int qt_first_fixture(const char *root, char *out, size_t n);
/* deterministic uniform numbers in [-1, 1) from a 64-bit LCG state; qt_rvec: n of them times s (malloc'd) */
float qt_frand(uint64_t *state);
float *qt_rvec(uint64_t *state, size_t n, float s);
/* a malloc'd copy of n floats */
float *qt_fcopy(const float *x, size_t n);
#endif
