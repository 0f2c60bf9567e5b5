/* op_cases.h — the one list of op cases of the compute backends (kernels/ops.h), after ggml's
 * tests/test-backend-ops.cpp: each case is an op (a forward/backward pair, or a short composition) with its
 * shapes, parameters and tolerances per precision. tests/test_ops.c runs the list in every mode:
 *   ref       the CPU backend against a double-precision reference, backward ops against central finite
 *             differences of their forward (cases marked fd), and the CPU identities of a case (alt: a fused op
 *             == the ops it fuses, a BF16 weight == its F32 value), bitwise;
 *   threads   the CPU backend without a stream and on streams of 1, 2 and 3 threads: bitwise equal;
 *   backend   another backend (emu, cuda, cuda-fp32) against the CPU backend on the same inputs;
 *   slots     every function-pointer slot a backend fills is called by some case.
 *
 * A case's data live in buffers (qt_buf): inputs, outputs, accumulators. The runner allocates them in the
 * backend's memory (ops->alloc), uploads inputs, fills outputs with NaN (an element an op does not write fails
 * every comparison), runs the case, and downloads what it compares. Adding an op: its slot in kernels/ops.h, each
 * backend, then one family (init / run / ref) and its cases in tests/op_cases.c. */
#ifndef QA_OP_CASES_H
#define QA_OP_CASES_H
#include "kernels/ops.h"
#include "common/qa_dtype.h"

#include <stddef.h>
#include <stdint.h>

enum { QT_MAXBUF = 16 };

typedef enum {
    QT_IN,      /* input: uploaded, not compared */
    QT_OUT,     /* output the op overwrites: NaN before the call, compared */
    QT_INOUT,   /* accumulated into or updated in place: its initial values uploaded, compared */
    QT_TMP,     /* scratch of a composition (alt): NaN before the call, not compared */
} qt_role;

/* Tolerances of a case (or of one of its outputs), per precision. Relative L2 error ||got - want|| / ||want|| (for
 * an output compared by max abs error, qt_buf.abs, that error); non-finite values must sit at the same places.
 *   ref   CPU backend (fp32) vs the double-precision reference
 *   bf16  "cuda" (bf16 tensor-core products for attention and BF16 weights, fp32 elsewhere) vs the CPU backend
 *   f32   "cuda-fp32" (fp32 throughout) vs the CPU backend
 *   fd    backward outputs vs central finite differences of the forward (CPU, fp32 forward: the error of the
 *         differences, not of the op, sets it)
 * The emulated device runs the CPU kernels: it must equal the CPU backend bitwise, whatever the case says. */
typedef struct qt_tol {
    double ref, bf16, f32, fd;
} qt_tol;

typedef struct qt_buf {
    const char *name;
    qa_dtype type;       /* QA_DT_F32, QA_DT_BF16, QA_DT_I32 or QA_DT_F64 */
    qt_role role;
    size_t n;            /* elements */
    void *h;             /* host values: the inputs' and accumulators' initial values (malloc'd, n >= 1) */
    int abs;             /* compared by max abs error, infinities where the reference has them (log-sum-exp) */
    const qt_tol *tol;   /* NULL: the case's */
} qt_buf;

/* One case made concrete: its buffers and the host-side arguments of its ops (descriptors, index lists). */
typedef struct qt_inst {
    int nb;
    qt_buf b[QT_MAXBUF];
} qt_inst;

typedef struct qt_case qt_case;

/* A finite-difference check: d(loss)/d(buffer wrt) against buffer grad after the case ran, where grad held
 * beta * (its initial value) + the gradient (beta 1: accumulating ops, 0: overwritten or in place). */
typedef struct qt_fd {
    int wrt, grad;
    float beta;
} qt_fd;

/* An op family: what every case of one op (or op pair) shares. */
typedef struct qt_family {
    const char *name;
    const char *slots;          /* the qa_ops slots run calls, space separated (the completeness test reads it) */
    /* buffers of case c: t->b[...] with host values drawn from *rng */
    void (*init)(const qt_case *c, qt_inst *t, uint64_t *rng);
    /* the case on backend o: d[i] is buffer i in o's memory */
    void (*run)(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d);
    /* double-precision reference: r[i] (malloc'd, b[i].n elements) for each output it knows; others stay NULL.
     * May QT_CHECK properties of the inputs that the case relies on. */
    void (*ref)(const qt_case *c, const qt_inst *t, double **r);
    /* optional: the same outputs through other ops (cases with alt set); must equal run's bitwise on the CPU
     * backend, and on every backend when alt_contract (the op's contract in kernels/ops.h says bitwise) */
    void (*alt)(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d);
    int alt_contract;
    const char *alt_what;
    /* optional: the scalar whose gradient the backward computes, from the host inputs t->b[].h, through the CPU
     * forward (ops o = the CPU backend, stream s) */
    double (*loss)(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s);
    qt_fd fd[3];
    int nfd;
    float h;                    /* finite-difference step */
} qt_family;

struct qt_case {
    const qt_family *op;
    const char *what;           /* shapes and variant, as printed */
    int i[10];                  /* shapes and integer parameters: meaning per family (tests/op_cases.c) */
    float f[3];                 /* float parameters */
    uint64_t u;                 /* a 64-bit parameter (dropout key) */
    qt_tol tol;
    int fd;                     /* also check the backward against finite differences (small shapes only) */
    int alt;                    /* also check the family's identity (alt) */
};

extern const qt_case qt_cases[];
extern const size_t qt_n_cases;

/* buffers: t->b[...] set from the arguments, host values allocated (uninitialised); returns the index */
int qt_buf_add(qt_inst *t, const char *name, qa_dtype type, qt_role role, size_t n);
/* bytes of a buffer of n elements of type (NF4: the codes and the fp32 absmax of kernels/nf4.h) */
size_t qt_type_bytes(qa_dtype type, size_t n);
void qt_inst_free(qt_inst *t);
/* the case's seed: a hash of its family name and description, so the data of a case do not depend on its place */
uint64_t qt_case_seed(const qt_case *c);
#endif
