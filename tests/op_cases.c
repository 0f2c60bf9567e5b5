/* op_cases.c — the op families and the case list (tests/op_cases.h). Each family: its buffers (init), the call of
 * its ops on any backend (run), a double-precision reference (ref), and where it applies an identity (alt) and
 * the scalar its backward differentiates (loss). The list at the end gives every case its shapes, parameters and
 * tolerances. */
#include "op_cases.h"
#include "testutil.h"
#include "common/qa_mem.h"
#include "kernels/nf4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ------------------------------------------------------------------------------------- */
int qt_buf_add(qt_inst *t, const char *name, qa_dtype type, qt_role role, size_t n) {
    if (t->nb >= QT_MAXBUF) { fprintf(stderr, "op_cases: more than %d buffers in one case\n", QT_MAXBUF); exit(2); }
    qt_buf *b = &t->b[t->nb];
    memset(b, 0, sizeof *b);
    b->name = name;
    b->type = type;
    b->role = role;
    b->n = n;
    b->h = qa_malloc(n ? qt_type_bytes(type, n) : qa_dtype_size(type) + 1);
    return t->nb++;
}
size_t qt_type_bytes(qa_dtype type, size_t n) { return type == QA_DT_NF4 ? qa_nf4_bytes(n) : n * qa_dtype_size(type); }
void qt_inst_free(qt_inst *t) {
    for (int i = 0; i < t->nb; i++) free(t->b[i].h);
    t->nb = 0;
}
uint64_t qt_case_seed(const qt_case *c) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = c->op->name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (const char *p = c->what; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h | 1;
}

#define F(t, i) ((float *)(t)->b[i].h)
#define I32(t, i) ((int32_t *)(t)->b[i].h)
#define U16(t, i) ((uint16_t *)(t)->b[i].h)
#define DF(d, i) ((float *)(d)[i])
#define DI(d, i) ((const int32_t *)(d)[i])

/* a buffer of n uniform numbers in [-s, s) */
static int add_rand(qt_inst *t, const char *name, qt_role role, size_t n, float s, uint64_t *rng) {
    int i = qt_buf_add(t, name, QA_DT_F32, role, n);
    for (size_t j = 0; j < n; j++) F(t, i)[j] = s * qt_frand(rng);
    return i;
}
/* a BF16 input of n random values in [-s, s) */
static int add_bf16(qt_inst *t, const char *name, size_t n, float s, uint64_t *rng) {
    int i = qt_buf_add(t, name, QA_DT_BF16, QT_IN, n);
    for (size_t j = 0; j < n; j++) U16(t, i)[j] = qa_f32_to_bf16(s * qt_frand(rng));
    return i;
}
static int add_copy(qt_inst *t, const char *name, qt_role role, int from) {
    int i = qt_buf_add(t, name, t->b[from].type, role, t->b[from].n);
    memcpy(t->b[i].h, t->b[from].h, qt_type_bytes(t->b[from].type, t->b[from].n));
    return i;
}
/* an NF4 weight input of n elements (n % 64 == 0): random values in [-s, s) quantized as bitsandbytes does */
static int add_nf4(qt_inst *t, const char *name, size_t n, float s, uint64_t *rng) {
    float *w = qa_malloc(sizeof(float) * n);
    for (size_t j = 0; j < n; j++) w[j] = s * qt_frand(rng);
    int i = qt_buf_add(t, name, QA_DT_NF4, QT_IN, n);
    qa_nf4_quantize(w, QA_DT_F32, n, t->b[i].h, (float *)qa_nf4_absmax(t->b[i].h, n));
    free(w);
    return i;
}
/* a weight input: F32 (0), BF16 (1) or NF4 (2) */
static int add_weight(qt_inst *t, const char *name, int kind, size_t n, float s, uint64_t *rng) {
    return kind == 2 ? add_nf4(t, name, n, s, rng) : kind == 1 ? add_bf16(t, name, n, s, rng)
                                                              : add_rand(t, name, QT_IN, n, s, rng);
}
/* element j of a F32, BF16 or NF4 host buffer as a double (NF4: the dequantized value) */
static double val(const qt_inst *t, int i, size_t j) {
    if (t->b[i].type == QA_DT_NF4) return qa_nf4_get(t->b[i].h, qa_nf4_absmax(t->b[i].h, t->b[i].n), j);
    return t->b[i].type == QA_DT_BF16 ? qa_bf16_to_f32(U16(t, i)[j]) : F(t, i)[j];
}
static double *dref(const qt_inst *t, double **r, int i) {
    r[i] = qa_malloc(sizeof(double) * (t->b[i].n ? t->b[i].n : 1));
    return r[i];
}
static qa_weight wt(const qt_inst *t, void *const *d, int i) {
    if (i < 0) return (qa_weight){QA_DT_F32, NULL};
    return (qa_weight){t->b[i].type, d[i]};
}
static double sigm(double g) { return 1.0 / (1.0 + exp(-g)); }
static double dot_out(const float *y, const float *w, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * w[i];
    return s;
}

/* Tolerances (qt_tol {ref, bf16, f32, fd}) and why:
 *   ref  the CPU (fp32) vs double. Elementwise ops: a few roundings of 2^-24 (6e-8) per element plus the CPU's
 *        vectorised exp (vecmath.h, ~2 ulp): 1e-6. Products of length K: ||err|| grows like sqrt(K) 2^-24 in the
 *        worst GEMM blocks: 2e-6 for the GEMM shapes and 1e-5 where K reaches 8192, attention and LoRA (the old
 *        per-file values, kept); measured errors are 3e-8 .. 3e-7, 10-50x inside. Copies, lookups and the clip
 *        product (x * alpha in double, one rounding) are exact; sumsq sums in double in index order, as the
 *        reference: exact. axpy / scatter_add: one or two roundings per element (2e-7, 1e-7).
 *   bf16 the "cuda" backend: attention operands and the products of BF16 weights in bf16 (8 bits of mantissa,
 *        4e-3 relative per operand): 1e-2 over a tensor (2e-2 absolute on the log-sum-exp); its fp32 ops: 2e-5,
 *        the CPU's bound vs double, twice, for another summation order.
 *   f32  "cuda-fp32": fp32 throughout: 2e-5 as above; attention 1e-4 (its backward subtracts rowsum(dO∘O) from dP,
 *        which magnifies the ordering differences of both).
 *   fd   central differences of an fp32 forward with step h: truncation O(h²) plus cancellation O(2^-24/h):
 *        1e-3 .. 2e-3 (the old values; measured 1e-6 .. 7e-5). */
#define TOL_COPY {0, 0, 0, 0}
#define T_EW(ref, fd) {ref, 2e-5, 2e-5, fd}  /* fp32 on every backend */
#define T_BF(ref, fd) {ref, 1e-2, 2e-5, fd}  /* products in bf16 on "cuda" */
#define T_AT(ref, fd) {ref, 1e-2, 1e-4, fd}  /* attention: bf16 on "cuda"; fp32 with a cancelling backward */

/* ---- memset0 + memcpy_d2d ------------------------------------------------------------------------
 * i: n. dst [2n] (random before) = 0, then dst[7 .. 7+n-11) = src[0 .. n-11). */
enum { CP_SRC, CP_DST };
static void copy_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    size_t n = (size_t)c->i[0];
    add_rand(t, "src", QT_IN, n, 1, rng);
    add_rand(t, "dst", QT_INOUT, 2 * n, 1, rng);
}
static void copy_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    size_t n = (size_t)c->i[0];
    o->memset0(s, d[CP_DST], sizeof(float) * 2 * n);
    o->memcpy_d2d(s, DF(d, CP_DST) + 7, d[CP_SRC], sizeof(float) * (n - 11));
}
static void copy_ref(const qt_case *c, const qt_inst *t, double **r) {
    size_t n = (size_t)c->i[0];
    double *y = dref(t, r, CP_DST);
    for (size_t j = 0; j < 2 * n; j++) y[j] = j >= 7 && j < 7 + n - 11 ? F(t, CP_SRC)[j - 7] : 0;
}
static const qt_family COPY = {.name = "memset0+memcpy_d2d", .slots = "memset0 memcpy_d2d", .init = copy_init,
    .run = copy_run, .ref = copy_ref};

/* ---- axpy: y += alpha x --------------------------------------------------------------------------
 * i: n; f: alpha. */
enum { AX_X, AX_Y };
static void axpy_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    add_rand(t, "x", QT_IN, (size_t)c->i[0], 1, rng);
    add_rand(t, "y", QT_INOUT, (size_t)c->i[0], 1, rng);
}
static void axpy_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->axpy(s, (size_t)c->i[0], c->f[0], DF(d, AX_X), DF(d, AX_Y));
}
static void axpy_ref(const qt_case *c, const qt_inst *t, double **r) {
    double *y = dref(t, r, AX_Y);
    for (int j = 0; j < c->i[0]; j++) y[j] = F(t, AX_Y)[j] + (double)c->f[0] * F(t, AX_X)[j];
}
static const qt_family AXPY = {.name = "axpy", .slots = "axpy", .init = axpy_init, .run = axpy_run, .ref = axpy_ref};

/* ---- gather_rows / scatter_add_rows ---------------------------------------------------------------
 * i: M rows moved, D columns, R rows of the table; idx[i] = (37 i + 11) mod R (distinct: 37 and R coprime). */
enum { GA_SRC, GA_IDX, GA_DST };
static void rows_idx(const qt_case *c, qt_inst *t) {
    int k = qt_buf_add(t, "idx", QA_DT_I32, QT_IN, (size_t)c->i[0]);
    for (int j = 0; j < c->i[0]; j++) I32(t, k)[j] = (j * 37 + 11) % c->i[2];
}
static void gather_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    add_rand(t, "src", QT_IN, (size_t)c->i[2] * c->i[1], 1, rng);
    rows_idx(c, t);
    qt_buf_add(t, "dst", QA_DT_F32, QT_OUT, (size_t)c->i[0] * c->i[1]);
}
static void gather_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->gather_rows(s, c->i[0], c->i[1], DF(d, GA_SRC), DI(d, GA_IDX), DF(d, GA_DST));
}
static void gather_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int M = c->i[0], D = c->i[1];
    double *y = dref(t, r, GA_DST);
    for (int m = 0; m < M; m++)
        for (int j = 0; j < D; j++) y[(size_t)m * D + j] = F(t, GA_SRC)[(size_t)I32(t, GA_IDX)[m] * D + j];
}
static const qt_family GATHER = {.name = "gather_rows", .slots = "gather_rows", .init = gather_init,
    .run = gather_run, .ref = gather_ref};

enum { SC_SRC, SC_IDX, SC_DST };
static void scatter_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    add_rand(t, "src", QT_IN, (size_t)c->i[0] * c->i[1], 1, rng);
    rows_idx(c, t);
    add_rand(t, "dst", QT_INOUT, (size_t)c->i[2] * c->i[1], 1, rng);
}
static void scatter_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->scatter_add_rows(s, c->i[0], c->i[1], DF(d, SC_SRC), DI(d, SC_IDX), DF(d, SC_DST));
}
static void scatter_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int M = c->i[0], D = c->i[1];
    double *y = dref(t, r, SC_DST);
    for (size_t j = 0; j < t->b[SC_DST].n; j++) y[j] = F(t, SC_DST)[j];
    for (int m = 0; m < M; m++)
        for (int j = 0; j < D; j++) y[(size_t)I32(t, SC_IDX)[m] * D + j] += F(t, SC_SRC)[(size_t)m * D + j];
}
static const qt_family SCATTER = {.name = "scatter_add_rows", .slots = "scatter_add_rows", .init = scatter_init,
    .run = scatter_run, .ref = scatter_ref};

/* ---- embedding_fwd --------------------------------------------------------------------------------
 * i: V, D, N, table BF16 (1) or F32 (0). table [V, D], ids [N]: (7 i) mod V, the last row (V-1) and a repeated id
 * among them; out [N, D]. alt (BF16): the same lookup of the table's F32 values. */
enum { EM_TAB, EM_IDS, EM_OUT, EM_TABF };
static void emb_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int V = c->i[0], D = c->i[1], N = c->i[2];
    if (c->i[3]) add_bf16(t, "table", (size_t)V * D, 1, rng);
    else add_rand(t, "table", QT_IN, (size_t)V * D, 1, rng);
    qt_buf_add(t, "ids", QA_DT_I32, QT_IN, (size_t)N);
    qt_buf_add(t, "out", QA_DT_F32, QT_OUT, (size_t)N * D);
    if (c->i[3]) {
        int tf = qt_buf_add(t, "table_f32", QA_DT_F32, QT_IN, (size_t)V * D);
        for (size_t j = 0; j < (size_t)V * D; j++) F(t, tf)[j] = qa_bf16_to_f32(U16(t, EM_TAB)[j]);
    }
    for (int n = 0; n < N; n++) I32(t, EM_IDS)[n] = (n * 7) % V;
    I32(t, EM_IDS)[1] = V - 1;
    I32(t, EM_IDS)[N - 1] = I32(t, EM_IDS)[0];
}
static void emb_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->embedding_fwd(s, c->i[2], c->i[1], wt(t, d, EM_TAB), DI(d, EM_IDS), DF(d, EM_OUT));
}
static void emb_alt(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->embedding_fwd(s, c->i[2], c->i[1], wt(t, d, EM_TABF), DI(d, EM_IDS), DF(d, EM_OUT));
}
static void emb_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int D = c->i[1], N = c->i[2];
    double *y = dref(t, r, EM_OUT);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < D; j++) y[(size_t)n * D + j] = val(t, EM_TAB, (size_t)I32(t, EM_IDS)[n] * D + j);
}
static const qt_family EMBEDDING = {.name = "embedding_fwd", .slots = "embedding_fwd", .init = emb_init,
    .run = emb_run, .ref = emb_ref, .alt = emb_alt, .alt_what = "BF16 table == its F32 values"};

/* ---- rmsnorm_fwd + rmsnorm_bwd ----------------------------------------------------------------------
 * i: N, D, weight BF16 (1) or F32 (0); f: bwd beta, x scale. eps 1e-5. x, y, dy, dx [N, D], w [D], rstd [N].
 * alt (BF16): the weight's F32 values. */
enum { RN_X, RN_W, RN_Y, RN_RSTD, RN_DY, RN_DX, RN_WF };
#define RN_EPS 1e-5f
static void rms_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int N = c->i[0], D = c->i[1];
    add_rand(t, "x", QT_IN, (size_t)N * D, c->f[1], rng);
    if (c->i[2]) add_bf16(t, "w", (size_t)D, 1, rng);
    else add_rand(t, "w", QT_IN, (size_t)D, 1, rng);
    qt_buf_add(t, "y", QA_DT_F32, QT_OUT, (size_t)N * D);
    qt_buf_add(t, "rstd", QA_DT_F32, QT_OUT, (size_t)N);
    add_rand(t, "dy", QT_IN, (size_t)N * D, 1, rng);
    add_rand(t, "dx", QT_INOUT, (size_t)N * D, 1, rng);
    if (c->i[2]) {
        int wf = qt_buf_add(t, "w_f32", QA_DT_F32, QT_IN, (size_t)D);
        for (int j = 0; j < D; j++) F(t, wf)[j] = qa_bf16_to_f32(U16(t, RN_W)[j]);
    }
}
static void rms_ops(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d, int w) {
    const int N = c->i[0], D = c->i[1];
    o->rmsnorm_fwd(s, N, D, RN_EPS, DF(d, RN_X), wt(t, d, w), DF(d, RN_Y), DF(d, RN_RSTD));
    o->rmsnorm_bwd(s, N, D, c->f[0], DF(d, RN_X), wt(t, d, w), DF(d, RN_RSTD), DF(d, RN_DY), DF(d, RN_DX));
}
static void rms_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    rms_ops(c, t, o, s, d, RN_W);
}
static void rms_alt(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    rms_ops(c, t, o, s, d, RN_WF);
}
static void rms_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int N = c->i[0], D = c->i[1];
    double *y = dref(t, r, RN_Y), *rs = dref(t, r, RN_RSTD), *dx = dref(t, r, RN_DX);
    for (int n = 0; n < N; n++) {
        const float *x = F(t, RN_X) + (size_t)n * D, *dy = F(t, RN_DY) + (size_t)n * D;
        double ss = 0, g = 0;
        for (int j = 0; j < D; j++) ss += (double)x[j] * x[j];
        double rr = 1 / sqrt(ss / D + RN_EPS);
        for (int j = 0; j < D; j++) g += dy[j] * val(t, RN_W, j) * x[j];
        rs[n] = rr;
        for (int j = 0; j < D; j++) {
            y[(size_t)n * D + j] = x[j] * rr * val(t, RN_W, j);
            dx[(size_t)n * D + j] = c->f[0] * F(t, RN_DX)[(size_t)n * D + j] + rr * val(t, RN_W, j) * dy[j] -
                                    x[j] * rr * rr * rr / D * g;
        }
    }
}
static double rms_loss(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s) {
    const size_t n = (size_t)c->i[0] * c->i[1];
    float *y = qa_malloc(sizeof(float) * n);
    o->rmsnorm_fwd(s, c->i[0], c->i[1], RN_EPS, F(t, RN_X), (qa_weight){t->b[RN_W].type, t->b[RN_W].h}, y, NULL);
    double l = dot_out(y, F(t, RN_DY), n);
    free(y);
    return l;
}
static const qt_family RMSNORM = {.name = "rmsnorm", .slots = "rmsnorm_fwd rmsnorm_bwd", .init = rms_init,
    .run = rms_run, .ref = rms_ref, .alt = rms_alt, .alt_what = "BF16 weight == its F32 values", .loss = rms_loss,
    .fd = {{RN_X, RN_DX, 1}}, .nfd = 1, .h = 1e-3f};

/* ---- rope_fwd + rope_bwd (in place) -----------------------------------------------------------------
 * i: N, H, hd, positions (0: 0 1 2 7 0 300, 1: 13 n mod 5000, 2: 3 n + 100); f: theta of fwd, theta of bwd.
 * pos [N]; y [N, H, hd] = x rotated by fwd; dx [N, H, hd] = dy rotated back by bwd. */
enum { RP_POS, RP_Y, RP_DX };
static void rope_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int N = c->i[0], H = c->i[1], hd = c->i[2];
    int p = qt_buf_add(t, "pos", QA_DT_I32, QT_IN, (size_t)N);
    static const int32_t P0[6] = {0, 1, 2, 7, 0, 300};
    for (int n = 0; n < N; n++)
        I32(t, p)[n] = c->i[3] == 0 ? P0[n % 6] : c->i[3] == 1 ? (n * 13) % 5000 : 3 * n + 100;
    add_rand(t, "y", QT_INOUT, (size_t)N * H * hd, 1, rng);
    add_rand(t, "dx", QT_INOUT, (size_t)N * H * hd, 1, rng);
}
static void rope_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->rope_fwd(s, c->i[0], c->i[1], c->i[2], c->f[0], DI(d, RP_POS), DF(d, RP_Y));
    o->rope_bwd(s, c->i[0], c->i[1], c->i[2], c->f[1], DI(d, RP_POS), DF(d, RP_DX));
}
/* x rotated by sign * angle; the angle in fp32 as Hugging Face computes it (kernels/ops.h), the rest in double */
static void rope_rot(const qt_case *c, const qt_inst *t, int i, float theta, double sign, double *y) {
    const int N = c->i[0], H = c->i[1], hd = c->i[2], half = hd / 2;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < half; k++) {
            float a = (float)I32(t, RP_POS)[n] * (1.0f / powf(theta, (float)(2 * k) / (float)hd));
            double cs = cos((double)a), sn = sign * sin((double)a);
            for (int h = 0; h < H; h++) {
                const float *v = F(t, i) + ((size_t)n * H + h) * hd;
                double *o = y + ((size_t)n * H + h) * hd;
                o[k] = v[k] * cs - v[k + half] * sn;
                o[k + half] = v[k + half] * cs + v[k] * sn;
            }
        }
}
static void rope_ref(const qt_case *c, const qt_inst *t, double **r) {
    rope_rot(c, t, RP_Y, c->f[0], 1, dref(t, r, RP_Y));
    rope_rot(c, t, RP_DX, c->f[1], -1, dref(t, r, RP_DX));
}
static double rope_loss(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s) {
    const size_t n = t->b[RP_Y].n;
    float *y = qt_fcopy(F(t, RP_Y), n);
    o->rope_fwd(s, c->i[0], c->i[1], c->i[2], c->f[0], I32(t, RP_POS), y);
    double l = dot_out(y, F(t, RP_DX), n);
    free(y);
    return l;
}
static const qt_family ROPE = {.name = "rope", .slots = "rope_fwd rope_bwd", .init = rope_init, .run = rope_run,
    .ref = rope_ref, .loss = rope_loss, .fd = {{RP_Y, RP_DX, 0}}, .nfd = 1, .h = 1e-2f};

/* ---- attention ---------------------------------------------------------------------------------------
 * i: B, T, H, Hk, hd, window, key mask pattern, segment pattern; f: scale (0: 1/sqrt(hd)), q/k magnitude.
 * Key masks: 1 right padding of row 1 (3 keys) + key 2 of row 0 + key 0 of row 2 (its query 0 sees nothing);
 *            2 left padding of row 1 (T/5 keys) + key T/2 of every row; 3 right padding of row 2 (19 keys).
 * Segments:  1 [0, T/3) [T/3, T/2) [T/2, T); 2 thirds; 3 blocks of 50.
 * q, o, dout, dq [B, T, H, hd]; k, v, dk, dv [B, T, Hk, hd]; key_mask, segment [B, T]; lse [B, H, T]. */
static void att_patterns(const qt_case *c, int32_t *mask, int32_t *seg) {
    const int B = c->i[0], T = c->i[1];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int m = 1, g = 0;
            switch (c->i[6]) {
            case 1: m = !(b == 1 && t >= T - 3) && !(b == 0 && t == 2) && !(b == 2 && t == 0); break;
            case 2: m = !(b == 1 && t < T / 5) && t != T / 2; break;
            case 3: m = !(b == 2 && t > T - 20); break;
            }
            switch (c->i[7]) {
            case 1: g = t < T / 3 ? 0 : t < T / 2 ? 1 : 2; break;
            case 2: g = t < T / 3 ? 0 : t < (2 * T) / 3 ? 1 : 2; break;
            case 3: g = t / 50; break;
            }
            if (mask) mask[b * T + t] = m;
            if (seg) seg[b * T + t] = g;
        }
}
static qa_attn_desc att_desc(const qt_case *c, const int32_t *mask, const int32_t *seg) {
    const int hd = c->i[4];
    return (qa_attn_desc){c->i[0], c->i[1], c->i[2], c->i[3], hd, c->i[5],
                          c->f[0] > 0 ? c->f[0] : 1.0f / sqrtf((float)hd), c->i[6] ? mask : NULL,
                          c->i[7] ? seg : NULL};
}
/* o [B,T,H,hd] and lse [B,H,T] (NULL: not wanted) of softmax(q kᵀ scale + mask) v, in double */
static void att_ref_all(const qa_attn_desc *d, const float *q, const float *k, const float *v, double *o,
                        double *lse) {
    const int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim;
    double *sc = qa_malloc(sizeof(double) * T);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / Hk);
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    int vis = j <= i && (!d->window || j > i - d->window) && (!d->key_mask || d->key_mask[b * T + j]) &&
                              (!d->segment || d->segment[b * T + i] == d->segment[b * T + j]);
                    if (!vis) { sc[j] = -INFINITY; continue; }
                    double acc = 0;
                    for (int e = 0; e < hd; e++)
                        acc += (double)q[((size_t)(b * T + i) * H + h) * hd + e] * k[((size_t)(b * T + j) * Hk + g) * hd + e];
                    sc[j] = acc * d->scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                double sum = 0;
                for (int j = 0; j < T; j++) { sc[j] = sc[j] == -INFINITY ? 0 : exp(sc[j] - mx); sum += sc[j]; }
                double *oi = o + ((size_t)(b * T + i) * H + h) * hd;
                for (int e = 0; e < hd; e++) oi[e] = 0;
                for (int j = 0; j < T; j++) {
                    if (sc[j] == 0) continue;
                    const float *vj = v + ((size_t)(b * T + j) * Hk + g) * hd;
                    for (int e = 0; e < hd; e++) oi[e] += sc[j] / sum * vj[e];
                }
                if (lse) lse[((size_t)b * H + h) * T + i] = sum > 0 ? mx + log(sum) : -INFINITY;
            }
        }
    free(sc);
}
/* log-sum-exp: compared by max abs error; -inf where a query sees no key */
static const qt_tol LSE_TOL = {1e-5, 2e-2, 1e-4, 0};

enum { AT_Q, AT_K, AT_V, AT_MASK, AT_SEG, AT_O, AT_LSE, AT_DOUT, AT_DQ, AT_DK, AT_DV };
static void att_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int B = c->i[0], T = c->i[1], H = c->i[2], Hk = c->i[3], hd = c->i[4];
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * Hk * hd;
    add_rand(t, "q", QT_IN, nq, c->f[1], rng);
    add_rand(t, "k", QT_IN, nk, c->f[1], rng);
    add_rand(t, "v", QT_IN, nk, 1, rng);
    qt_buf_add(t, "key_mask", QA_DT_I32, QT_IN, (size_t)B * T);
    qt_buf_add(t, "segment", QA_DT_I32, QT_IN, (size_t)B * T);
    att_patterns(c, I32(t, AT_MASK), I32(t, AT_SEG));
    qt_buf_add(t, "o", QA_DT_F32, QT_OUT, nq);
    int l = qt_buf_add(t, "lse", QA_DT_F32, QT_OUT, (size_t)B * H * T);
    t->b[l].abs = 1;
    t->b[l].tol = &LSE_TOL;
    add_rand(t, "dout", QT_IN, nq, 1, rng);
    qt_buf_add(t, "dq", QA_DT_F32, QT_OUT, nq);
    qt_buf_add(t, "dk", QA_DT_F32, QT_OUT, nk);
    qt_buf_add(t, "dv", QA_DT_F32, QT_OUT, nk);
}
static void att_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    qa_attn_desc ad = att_desc(c, DI(d, AT_MASK), DI(d, AT_SEG));
    o->attention_fwd(s, &ad, DF(d, AT_Q), DF(d, AT_K), DF(d, AT_V), DF(d, AT_O), DF(d, AT_LSE));
    o->attention_bwd(s, &ad, DF(d, AT_Q), DF(d, AT_K), DF(d, AT_V), DF(d, AT_O), DF(d, AT_LSE), DF(d, AT_DOUT),
                     DF(d, AT_DQ), DF(d, AT_DK), DF(d, AT_DV));
}
static void att_ref(const qt_case *c, const qt_inst *t, double **r) {
    qa_attn_desc ad = att_desc(c, I32(t, AT_MASK), I32(t, AT_SEG));
    att_ref_all(&ad, F(t, AT_Q), F(t, AT_K), F(t, AT_V), dref(t, r, AT_O), dref(t, r, AT_LSE));
}
static double att_loss(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s) {
    qa_attn_desc ad = att_desc(c, I32(t, AT_MASK), I32(t, AT_SEG));
    float *y = qa_malloc(sizeof(float) * t->b[AT_O].n), *lse = qa_malloc(sizeof(float) * t->b[AT_LSE].n);
    o->attention_fwd(s, &ad, F(t, AT_Q), F(t, AT_K), F(t, AT_V), y, lse);
    double l = dot_out(y, F(t, AT_DOUT), t->b[AT_O].n);
    free(y);
    free(lse);
    return l;
}
static const qt_family ATTENTION = {.name = "attention", .slots = "attention_fwd attention_bwd", .init = att_init,
    .run = att_run, .ref = att_ref, .loss = att_loss, .fd = {{AT_Q, AT_DQ, 0}, {AT_K, AT_DK, 0}, {AT_V, AT_DV, 0}},
    .nfd = 3, .h = 1e-2f};

/* ---- attention_rows_fwd: single queries ---------------------------------------------------------------
 * The attention shape and patterns as above (B = 3, T >= 65); queries: tokens 0, 5, T-1 of row 0, 37 of row 1,
 * 64, 63 and T-1 of row 2. q [B, T, H, hd], q_rows and o [7, H, hd], rows [7] (flat b T + t). alt (the op's
 * contract): attention_fwd of the whole batch into o_all [B, T, H, hd], then those rows. */
enum { AR_Q, AR_QR, AR_K, AR_V, AR_MASK, AR_SEG, AR_ROWS, AR_O, AR_OF, AR_LF };
#define AR_R 7
static void arows_list(int T, int32_t *rows) {
    const int32_t r[AR_R] = {0, 5, T - 1, T + 37, 2 * T + 64, 2 * T + 63, 3 * T - 1};
    memcpy(rows, r, sizeof r);
}
static void arows_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int B = c->i[0], T = c->i[1], H = c->i[2], Hk = c->i[3], hd = c->i[4];
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * Hk * hd, w = (size_t)H * hd;
    add_rand(t, "q", QT_IN, nq, c->f[1], rng);
    qt_buf_add(t, "q_rows", QA_DT_F32, QT_IN, AR_R * w);
    add_rand(t, "k", QT_IN, nk, c->f[1], rng);
    add_rand(t, "v", QT_IN, nk, 1, rng);
    qt_buf_add(t, "key_mask", QA_DT_I32, QT_IN, (size_t)B * T);
    qt_buf_add(t, "segment", QA_DT_I32, QT_IN, (size_t)B * T);
    att_patterns(c, I32(t, AR_MASK), I32(t, AR_SEG));
    qt_buf_add(t, "rows", QA_DT_I32, QT_IN, AR_R);
    arows_list(T, I32(t, AR_ROWS));
    for (int r = 0; r < AR_R; r++) memcpy(F(t, AR_QR) + r * w, F(t, AR_Q) + (size_t)I32(t, AR_ROWS)[r] * w, sizeof(float) * w);
    qt_buf_add(t, "o", QA_DT_F32, QT_OUT, AR_R * w);
    qt_buf_add(t, "o_all", QA_DT_F32, QT_TMP, nq);
    qt_buf_add(t, "lse_all", QA_DT_F32, QT_TMP, (size_t)B * H * T);
}
static void arows_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    qa_attn_desc ad = att_desc(c, DI(d, AR_MASK), DI(d, AR_SEG));
    o->attention_rows_fwd(s, &ad, AR_R, DI(d, AR_ROWS), DF(d, AR_QR), DF(d, AR_K), DF(d, AR_V), DF(d, AR_O));
}
static void arows_alt(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    qa_attn_desc ad = att_desc(c, DI(d, AR_MASK), DI(d, AR_SEG));
    o->attention_fwd(s, &ad, DF(d, AR_Q), DF(d, AR_K), DF(d, AR_V), DF(d, AR_OF), DF(d, AR_LF));
    o->gather_rows(s, AR_R, c->i[2] * c->i[4], DF(d, AR_OF), DI(d, AR_ROWS), DF(d, AR_O));
}
static void arows_ref(const qt_case *c, const qt_inst *t, double **r) {
    qa_attn_desc ad = att_desc(c, I32(t, AR_MASK), I32(t, AR_SEG));
    const size_t w = (size_t)c->i[2] * c->i[4];
    double *all = qa_malloc(sizeof(double) * t->b[AR_Q].n), *o = dref(t, r, AR_O);
    att_ref_all(&ad, F(t, AR_Q), F(t, AR_K), F(t, AR_V), all, NULL);
    for (int q = 0; q < AR_R; q++) memcpy(o + q * w, all + (size_t)I32(t, AR_ROWS)[q] * w, sizeof(double) * w);
    free(all);
}
static const qt_family ATTENTION_ROWS = {.name = "attention_rows_fwd", .slots = "attention_rows_fwd",
    .init = arows_init, .run = arows_run, .ref = arows_ref, .alt = arows_alt, .alt_contract = 1,
    .alt_what = "== rows of attention_fwd"};

/* ---- attention_prefix_fwd: suffix rows over a shared cached prefix ------------------------------------
 * i: B, T, Tc, H, Hk, hd, window. q, o [B, T, H, hd]; k, v [B, T, Hk, hd]; k_cache, v_cache [Tc, Hk, hd]; ctx [B]:
 * ctx[0] = Tc (the whole cache), ctx[b] = 13 b mod (Tc + 1). */
enum { AP_Q, AP_KC, AP_VC, AP_K, AP_V, AP_CTX, AP_O };
static qa_attn_prefix_desc apre_desc(const qt_case *c, const int32_t *ctx) {
    const int hd = c->i[5];
    return (qa_attn_prefix_desc){c->i[0], c->i[1], c->i[3], c->i[4], hd, c->i[6], 1.0f / sqrtf((float)hd), c->i[2],
                                 ctx};
}
static void apre_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int B = c->i[0], T = c->i[1], Tc = c->i[2], H = c->i[3], Hk = c->i[4], hd = c->i[5];
    add_rand(t, "q", QT_IN, (size_t)B * T * H * hd, 1.5f, rng);
    add_rand(t, "k_cache", QT_IN, (size_t)Tc * Hk * hd, 1.5f, rng);
    add_rand(t, "v_cache", QT_IN, (size_t)Tc * Hk * hd, 1, rng);
    add_rand(t, "k", QT_IN, (size_t)B * T * Hk * hd, 1.5f, rng);
    add_rand(t, "v", QT_IN, (size_t)B * T * Hk * hd, 1, rng);
    int x = qt_buf_add(t, "ctx", QA_DT_I32, QT_IN, (size_t)B);
    for (int b = 0; b < B; b++) I32(t, x)[b] = b == 0 ? Tc : (b * 13) % (Tc + 1);
    qt_buf_add(t, "o", QA_DT_F32, QT_OUT, (size_t)B * T * H * hd);
}
static void apre_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    qa_attn_prefix_desc pd = apre_desc(c, DI(d, AP_CTX));
    o->attention_prefix_fwd(s, &pd, DF(d, AP_Q), DF(d, AP_KC), DF(d, AP_VC), DF(d, AP_K), DF(d, AP_V), DF(d, AP_O));
}
static void apre_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int B = c->i[0], T = c->i[1], Tc = c->i[2], H = c->i[3], Hk = c->i[4], hd = c->i[5], W = c->i[6];
    const qa_attn_prefix_desc pd = apre_desc(c, I32(t, AP_CTX));
    double *o = dref(t, r, AP_O), *sc = qa_malloc(sizeof(double) * (Tc + T));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / Hk), C = I32(t, AP_CTX)[b];
            for (int i = 0; i < T; i++) {
                const float *q = F(t, AP_Q) + ((size_t)(b * T + i) * H + h) * hd;
                double mx = -INFINITY, sum = 0;
                /* keys: cached j at position j (j < C), own t at C + t (t <= i); visible when within the window */
                for (int j = 0; j < C + T; j++) {
                    const int pos = j, qpos = C + i;
                    int vis = j < C ? 1 : j - C <= i;
                    if (W && !(pos > qpos - W)) vis = 0;
                    if (!vis) { sc[j] = -INFINITY; continue; }
                    const float *k = j < C ? F(t, AP_KC) + ((size_t)j * Hk + g) * hd
                                           : F(t, AP_K) + ((size_t)(b * T + j - C) * Hk + g) * hd;
                    double acc = 0;
                    for (int e = 0; e < hd; e++) acc += (double)q[e] * k[e];
                    sc[j] = acc * pd.scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j < C + T; j++) { sc[j] = sc[j] == -INFINITY ? 0 : exp(sc[j] - mx); sum += sc[j]; }
                double *oi = o + ((size_t)(b * T + i) * H + h) * hd;
                for (int e = 0; e < hd; e++) oi[e] = 0;
                for (int j = 0; j < C + T; j++) {
                    if (sc[j] == 0) continue;
                    const float *v = j < C ? F(t, AP_VC) + ((size_t)j * Hk + g) * hd
                                           : F(t, AP_V) + ((size_t)(b * T + j - C) * Hk + g) * hd;
                    for (int e = 0; e < hd; e++) oi[e] += sc[j] / sum * v[e];
                }
            }
        }
    free(sc);
}
static const qt_family ATTENTION_PREFIX = {.name = "attention_prefix_fwd", .slots = "attention_prefix_fwd",
    .init = apre_init, .run = apre_run, .ref = apre_ref};

/* ---- swiglu_fwd + swiglu_bwd -------------------------------------------------------------------------
 * i: n, dg aliases dout (1); f: g magnitude, u magnitude. Every buffer [n]. */
enum { SW_G, SW_U, SW_O, SW_DOUT, SW_DU, SW_DG };
static void sw_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const size_t n = (size_t)c->i[0];
    add_rand(t, "g", QT_IN, n, c->f[0], rng);
    add_rand(t, "u", QT_IN, n, c->f[1], rng);
    qt_buf_add(t, "out", QA_DT_F32, QT_OUT, n);
    add_rand(t, c->i[1] ? "dout/dg" : "dout", c->i[1] ? QT_INOUT : QT_IN, n, 1, rng);
    qt_buf_add(t, "du", QA_DT_F32, QT_OUT, n);
    if (!c->i[1]) qt_buf_add(t, "dg", QA_DT_F32, QT_OUT, n);
}
static void sw_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    const size_t n = (size_t)c->i[0];
    o->swiglu_fwd(s, n, DF(d, SW_G), DF(d, SW_U), DF(d, SW_O));
    o->swiglu_bwd(s, n, DF(d, SW_G), DF(d, SW_U), DF(d, SW_DOUT), DF(d, c->i[1] ? SW_DOUT : SW_DG), DF(d, SW_DU));
}
static void sw_ref(const qt_case *c, const qt_inst *t, double **r) {
    double *o = dref(t, r, SW_O), *du = dref(t, r, SW_DU), *dg = dref(t, r, c->i[1] ? SW_DOUT : SW_DG);
    for (int j = 0; j < c->i[0]; j++) {
        double g = F(t, SW_G)[j], u = F(t, SW_U)[j], dy = F(t, SW_DOUT)[j], sg = sigm(g);
        o[j] = g * sg * u;
        du[j] = dy * g * sg;
        dg[j] = dy * u * sg * (1 + g * (1 - sg));
    }
}
static double sw_loss(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s) {
    const size_t n = (size_t)c->i[0];
    float *y = qa_malloc(sizeof(float) * n);
    o->swiglu_fwd(s, n, F(t, SW_G), F(t, SW_U), y);
    double l = dot_out(y, F(t, SW_DOUT), n);
    free(y);
    return l;
}
static const qt_family SWIGLU = {.name = "swiglu", .slots = "swiglu_fwd swiglu_bwd", .init = sw_init, .run = sw_run,
    .ref = sw_ref, .loss = sw_loss, .fd = {{SW_G, SW_DG, 0}, {SW_U, SW_DU, 0}}, .nfd = 2, .h = 1e-3f};

/* ---- linear_fwd + linear_bwd (frozen weight) ----------------------------------------------------------
 * i: N, K, M, weight F32 (0), BF16 (1) or NF4 (2), bias (0 none, 1 F32, 2 BF16); f: fwd beta, bwd beta, weight
 * magnitude. x, dx [N, K]; W [M, K]; bias [M]; y, dy [N, M]. y = beta y + x Wᵀ + b; dx = beta dx + dy W.
 * alt (BF16 / NF4 weight): the weight's (dequantized) and bias's F32 values. */
enum { LI_X, LI_W, LI_B, LI_Y, LI_DY, LI_DX, LI_WF, LI_BF };
static void lin_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int N = c->i[0], K = c->i[1], M = c->i[2];
    add_rand(t, "x", QT_IN, (size_t)N * K, 1, rng);
    add_weight(t, "W", c->i[3], (size_t)M * K, c->f[2], rng);
    if (c->i[4] == 2) add_bf16(t, "bias", (size_t)M, 1, rng);
    else add_rand(t, "bias", QT_IN, (size_t)M, 1, rng); /* unused when the case has no bias */
    add_rand(t, "y", c->f[0] != 0 ? QT_INOUT : QT_OUT, (size_t)N * M, 1, rng);
    add_rand(t, "dy", QT_IN, (size_t)N * M, 1, rng);
    add_rand(t, "dx", c->f[1] != 0 ? QT_INOUT : QT_OUT, (size_t)N * K, 1, rng);
    if (c->i[3]) {
        int wf = qt_buf_add(t, "W_f32", QA_DT_F32, QT_IN, (size_t)M * K);
        int bf = qt_buf_add(t, "bias_f32", QA_DT_F32, QT_IN, (size_t)M);
        for (size_t j = 0; j < (size_t)M * K; j++) F(t, wf)[j] = (float)val(t, LI_W, j);
        for (int j = 0; j < M; j++) F(t, bf)[j] = (float)val(t, LI_B, j);
    }
}
static void lin_ops(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d, int w, int b) {
    const int N = c->i[0], K = c->i[1], M = c->i[2];
    o->linear_fwd(s, N, K, M, c->f[0], DF(d, LI_X), wt(t, d, w), wt(t, d, c->i[4] ? b : -1), DF(d, LI_Y));
    o->linear_bwd(s, N, K, M, c->f[1], DF(d, LI_DY), wt(t, d, w), DF(d, LI_DX));
}
static void lin_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    lin_ops(c, t, o, s, d, LI_W, LI_B);
}
static void lin_alt(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    lin_ops(c, t, o, s, d, LI_WF, LI_BF);
}
static void lin_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int N = c->i[0], K = c->i[1], M = c->i[2];
    double *y = dref(t, r, LI_Y), *dx = dref(t, r, LI_DX);
    double *w = qa_malloc(sizeof(double) * (size_t)M * K);
    for (size_t j = 0; j < (size_t)M * K; j++) w[j] = val(t, LI_W, j);
    for (int n = 0; n < N; n++) {
        const float *x = F(t, LI_X) + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            double acc = (c->f[0] != 0 ? c->f[0] * F(t, LI_Y)[(size_t)n * M + m] : 0) + (c->i[4] ? val(t, LI_B, m) : 0);
            for (int k = 0; k < K; k++) acc += x[k] * w[(size_t)m * K + k];
            y[(size_t)n * M + m] = acc;
        }
        for (int k = 0; k < K; k++) dx[(size_t)n * K + k] = c->f[1] != 0 ? c->f[1] * F(t, LI_DX)[(size_t)n * K + k] : 0;
        for (int m = 0; m < M; m++) {
            const double g = F(t, LI_DY)[(size_t)n * M + m];
            for (int k = 0; k < K; k++) dx[(size_t)n * K + k] += g * w[(size_t)m * K + k];
        }
    }
    free(w);
}
static const qt_family LINEAR = {.name = "linear", .slots = "linear_fwd linear_bwd", .init = lin_init,
    .run = lin_run, .ref = lin_ref, .alt = lin_alt, .alt_what = "BF16 / NF4 weight and bias == their F32 values"};

/* ---- linear_multi_fwd: three frozen linears of one input -------------------------------------------------
 * i: N, K, M0, M1, M2, which output has an F32 bias (-1: none), weights F32 (1), BF16 (0) or NF4, BF16, NF4 (2).
 * x [N, K];
 * W_i [M_i, K]; y_i [N, M_i]. alt: linear_fwd of each. (The CUDA op converts x to bf16 once for BF16 weights and
 * runs the plain op per output for F32 weights: both paths have cases; NF4 weights share the bf16 input.) */
enum { LM_X, LM_W0, LM_B = LM_W0 + 3, LM_Y0 };
static void lmul_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int N = c->i[0], K = c->i[1];
    add_rand(t, "x", QT_IN, (size_t)N * K, 1, rng);
    static const char *wn[3] = {"W0", "W1", "W2"}, *yn[3] = {"y0", "y1", "y2"};
    for (int i = 0; i < 3; i++)
        add_weight(t, wn[i], c->i[6] == 2 ? (i == 1 ? 1 : 2) : c->i[6] ? 0 : 1, (size_t)c->i[2 + i] * K, 0.2f, rng);
    add_rand(t, "bias", QT_IN, (size_t)(c->i[5] >= 0 ? c->i[2 + c->i[5]] : 1), 1, rng);
    for (int i = 0; i < 3; i++) qt_buf_add(t, yn[i], QA_DT_F32, QT_OUT, (size_t)N * c->i[2 + i]);
}
static void lmul_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    qa_weight W[3], Bs[3];
    float *y[3];
    for (int i = 0; i < 3; i++) {
        W[i] = wt(t, d, LM_W0 + i);
        Bs[i] = wt(t, d, i == c->i[5] ? LM_B : -1);
        y[i] = DF(d, LM_Y0 + i);
    }
    o->linear_multi_fwd(s, c->i[0], c->i[1], 3, DF(d, LM_X), c->i + 2, W, Bs, y);
}
static void lmul_alt(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    for (int i = 0; i < 3; i++)
        o->linear_fwd(s, c->i[0], c->i[1], c->i[2 + i], 0.0f, DF(d, LM_X), wt(t, d, LM_W0 + i),
                      wt(t, d, i == c->i[5] ? LM_B : -1), DF(d, LM_Y0 + i));
}
static void lmul_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int N = c->i[0], K = c->i[1];
    for (int i = 0; i < 3; i++) {
        const int M = c->i[2 + i];
        double *y = dref(t, r, LM_Y0 + i);
        for (int n = 0; n < N; n++)
            for (int m = 0; m < M; m++) {
                double acc = i == c->i[5] ? F(t, LM_B)[m] : 0;
                for (int k = 0; k < K; k++) acc += (double)F(t, LM_X)[(size_t)n * K + k] * val(t, LM_W0 + i, (size_t)m * K + k);
                y[(size_t)n * M + m] = acc;
            }
    }
}
static const qt_family LINEAR_MULTI = {.name = "linear_multi_fwd", .slots = "linear_multi_fwd", .init = lmul_init,
    .run = lmul_run, .ref = lmul_ref, .alt = lmul_alt, .alt_what = "== linear_fwd of each output"};

/* ---- swiglu_linear_fwd: y = beta y + (silu(g) u) Wᵀ ------------------------------------------------------
 * i: N, F (the product's K), D (its M), weight F32 (1), BF16 (0) or NF4 (2), bias (0 none, 1 F32, 2 BF16); f: beta.
 * g, u, act [N, F]; W [D, F]; bias [D]; y [N, D]. alt: swiglu_fwd into act, then linear_fwd. (The CUDA op writes
 * silu(g) u as the bf16 operand for a BF16 weight, and runs the fp32 activation through the plain op for an F32
 * weight: both paths have cases.) */
enum { SL_G, SL_U, SL_W, SL_B, SL_Y, SL_ACT };
static void swl_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int N = c->i[0], Fk = c->i[1], D = c->i[2];
    add_rand(t, "g", QT_IN, (size_t)N * Fk, 3, rng);
    add_rand(t, "u", QT_IN, (size_t)N * Fk, 1, rng);
    add_weight(t, "W", c->i[3] == 2 ? 2 : c->i[3] ? 0 : 1, (size_t)D * Fk, 0.2f, rng);
    if (c->i[4] == 2) add_bf16(t, "bias", (size_t)D, 1, rng);
    else add_rand(t, "bias", QT_IN, (size_t)(c->i[4] ? D : 1), 1, rng);
    add_rand(t, "y", QT_INOUT, (size_t)N * D, 1, rng);
    qt_buf_add(t, "act", QA_DT_F32, QT_TMP, (size_t)N * Fk);
}
static void swl_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->swiglu_linear_fwd(s, c->i[0], c->i[1], c->i[2], c->f[0], DF(d, SL_G), DF(d, SL_U), wt(t, d, SL_W),
                         wt(t, d, c->i[4] ? SL_B : -1), DF(d, SL_Y));
}
static void swl_alt(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->swiglu_fwd(s, (size_t)c->i[0] * c->i[1], DF(d, SL_G), DF(d, SL_U), DF(d, SL_ACT));
    o->linear_fwd(s, c->i[0], c->i[1], c->i[2], c->f[0], DF(d, SL_ACT), wt(t, d, SL_W), wt(t, d, c->i[4] ? SL_B : -1),
                  DF(d, SL_Y));
}
static void swl_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int N = c->i[0], Fk = c->i[1], D = c->i[2];
    double *y = dref(t, r, SL_Y);
    for (int n = 0; n < N; n++)
        for (int m = 0; m < D; m++) {
            double acc = c->f[0] * F(t, SL_Y)[(size_t)n * D + m] + (c->i[4] ? val(t, SL_B, (size_t)m) : 0);
            for (int k = 0; k < Fk; k++) {
                double g = F(t, SL_G)[(size_t)n * Fk + k];
                acc += g * sigm(g) * F(t, SL_U)[(size_t)n * Fk + k] * val(t, SL_W, (size_t)m * Fk + k);
            }
            y[(size_t)n * D + m] = acc;
        }
}
static const qt_family SWIGLU_LINEAR = {.name = "swiglu_linear_fwd", .slots = "swiglu_linear_fwd", .init = swl_init,
    .run = swl_run, .ref = swl_ref, .alt = swl_alt, .alt_what = "== swiglu_fwd + linear_fwd"};

/* ---- lora_fwd + lora_bwd ---------------------------------------------------------------------------------
 * i: N, K, M, r, accumulators start at 0 (0) or random (1); f: scale, dropout p, A/B magnitude; u: dropout key.
 * x, dx [N, K]; A, dA [r, K]; B, dB [M, r]; xa [N, r]; y, dy [N, M]. y += scale (drop(x) Aᵀ) Bᵀ; dA, dB, dx
 * accumulated into. */
enum { LO_X, LO_A, LO_B, LO_XA, LO_Y, LO_DY, LO_DA, LO_DB, LO_DX };
static void lora_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int N = c->i[0], K = c->i[1], M = c->i[2], r = c->i[3];
    const float acc = c->i[4] ? 1.0f : 0.0f;
    add_rand(t, "x", QT_IN, (size_t)N * K, 1, rng);
    add_rand(t, "A", QT_IN, (size_t)r * K, c->f[2], rng);
    add_rand(t, "B", QT_IN, (size_t)M * r, c->f[2], rng);
    qt_buf_add(t, "xa", QA_DT_F32, QT_OUT, (size_t)N * r);
    add_rand(t, "y", QT_INOUT, (size_t)N * M, acc, rng);
    add_rand(t, "dy", QT_IN, (size_t)N * M, 1, rng);
    add_rand(t, "dA", QT_INOUT, (size_t)r * K, acc, rng);
    add_rand(t, "dB", QT_INOUT, (size_t)M * r, acc, rng);
    add_rand(t, "dx", QT_INOUT, (size_t)N * K, acc, rng);
}
static void lora_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    const int N = c->i[0], K = c->i[1], M = c->i[2], r = c->i[3];
    o->lora_fwd(s, N, K, M, r, c->f[0], c->f[1], c->u, DF(d, LO_X), DF(d, LO_A), DF(d, LO_B), DF(d, LO_XA), DF(d, LO_Y));
    o->lora_bwd(s, N, K, M, r, c->f[0], c->f[1], c->u, DF(d, LO_X), DF(d, LO_A), DF(d, LO_B), DF(d, LO_XA),
                DF(d, LO_DY), DF(d, LO_DA), DF(d, LO_DB), DF(d, LO_DX));
}
static void lora_ref(const qt_case *c, const qt_inst *t, double **rr) {
    const int N = c->i[0], K = c->i[1], M = c->i[2], r = c->i[3];
    const double p = c->f[1], sc = c->f[0];
    double *xa = dref(t, rr, LO_XA), *y = dref(t, rr, LO_Y), *dA = dref(t, rr, LO_DA), *dB = dref(t, rr, LO_DB),
           *dx = dref(t, rr, LO_DX);
    double *xd = qa_malloc(sizeof(double) * (size_t)N * K), *dxa = qa_malloc(sizeof(double) * (size_t)N * r);
    long kept = 0;
    for (size_t j = 0; j < (size_t)N * K; j++) {
        int keep = p > 0 ? qa_dropout_keep(c->u, j / K, j % K, (float)p) : 1;
        kept += keep;
        xd[j] = keep ? F(t, LO_X)[j] / (1 - p) : 0;
    }
    if (p > 0) QT_CHECK(kept > 0 && kept < (long)N * K, "lora p=%.2f: dropout keeps some and drops some (%ld of %d)", p, kept, N * K);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < r; j++) {
            double a = 0;
            for (int k = 0; k < K; k++) a += xd[(size_t)n * K + k] * F(t, LO_A)[(size_t)j * K + k];
            xa[(size_t)n * r + j] = a;
        }
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double a = 0;
            for (int j = 0; j < r; j++) a += F(t, LO_B)[(size_t)m * r + j] * xa[(size_t)n * r + j];
            y[(size_t)n * M + m] = F(t, LO_Y)[(size_t)n * M + m] + sc * a;
        }
    for (size_t j = 0; j < t->b[LO_DA].n; j++) dA[j] = F(t, LO_DA)[j];
    for (size_t j = 0; j < t->b[LO_DB].n; j++) dB[j] = F(t, LO_DB)[j];
    for (size_t j = 0; j < t->b[LO_DX].n; j++) dx[j] = F(t, LO_DX)[j];
    for (int n = 0; n < N; n++)
        for (int j = 0; j < r; j++) {
            double a = 0;
            for (int m = 0; m < M; m++) {
                const double g = F(t, LO_DY)[(size_t)n * M + m];
                a += sc * g * F(t, LO_B)[(size_t)m * r + j];
                dB[(size_t)m * r + j] += sc * g * xa[(size_t)n * r + j];
            }
            dxa[(size_t)n * r + j] = a;
        }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double a = 0;
            for (int j = 0; j < r; j++) {
                a += dxa[(size_t)n * r + j] * F(t, LO_A)[(size_t)j * K + k];
                dA[(size_t)j * K + k] += dxa[(size_t)n * r + j] * xd[(size_t)n * K + k];
            }
            if (p == 0 || qa_dropout_keep(c->u, n, k, (float)p)) dx[(size_t)n * K + k] += a / (1 - p);
        }
    free(xd);
    free(dxa);
}
static double lora_loss(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s) {
    const int N = c->i[0], K = c->i[1], M = c->i[2], r = c->i[3];
    float *y = qa_calloc((size_t)N * M, sizeof(float)), *xa = qa_malloc(sizeof(float) * (size_t)N * r);
    o->lora_fwd(s, N, K, M, r, c->f[0], c->f[1], c->u, F(t, LO_X), F(t, LO_A), F(t, LO_B), xa, y);
    double l = dot_out(y, F(t, LO_DY), (size_t)N * M);
    free(y);
    free(xa);
    return l;
}
static const qt_family LORA = {.name = "lora", .slots = "lora_fwd lora_bwd", .init = lora_init, .run = lora_run,
    .ref = lora_ref, .loss = lora_loss, .fd = {{LO_A, LO_DA, 1}, {LO_B, LO_DB, 1}, {LO_X, LO_DX, 1}}, .nfd = 3,
    .h = 1e-2f};

/* ---- cross_entropy_fwd + cross_entropy_bwd ------------------------------------------------------------------
 * i: M, V, targets (0: mult i mod V, 1: 0, V-1, 7, 7), mult, bwd in place (dlogits = logits), row i's bwd scale
 * i + 1 (one call per row; else one call with scale f[0]); f: scale, logit magnitude. logits, dlogits [M, V];
 * target, loss, lse [M]. */
enum { CE_LG, CE_TG, CE_LOSS, CE_LSE, CE_D };
static void ce_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int M = c->i[0], V = c->i[1];
    add_rand(t, "logits", QT_IN, (size_t)M * V, c->f[1], rng);
    int tg = qt_buf_add(t, "target", QA_DT_I32, QT_IN, (size_t)M);
    for (int i = 0; i < M; i++) I32(t, tg)[i] = c->i[2] == 1 ? (i == 0 ? 0 : i == 1 ? V - 1 : 7) : (i * c->i[3]) % V;
    qt_buf_add(t, "loss", QA_DT_F32, QT_OUT, (size_t)M);
    qt_buf_add(t, "lse", QA_DT_F32, QT_OUT, (size_t)M);
    if (c->i[4]) add_copy(t, "dlogits (in place)", QT_INOUT, CE_LG);
    else qt_buf_add(t, "dlogits", QA_DT_F32, QT_OUT, (size_t)M * V);
}
static double ce_scale(const qt_case *c, int i) { return c->i[5] ? i + 1 : c->f[0]; }
static void ce_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    const int M = c->i[0], V = c->i[1];
    const float *lg = DF(d, c->i[4] ? CE_D : CE_LG);
    o->cross_entropy_fwd(s, M, V, DF(d, CE_LG), DI(d, CE_TG), DF(d, CE_LOSS), DF(d, CE_LSE));
    if (c->i[5])
        for (int i = 0; i < M; i++)
            o->cross_entropy_bwd(s, 1, V, (float)(i + 1), lg + (size_t)i * V, DI(d, CE_TG) + i, DF(d, CE_LSE) + i,
                                 DF(d, CE_D) + (size_t)i * V);
    else
        o->cross_entropy_bwd(s, M, V, c->f[0], lg, DI(d, CE_TG), DF(d, CE_LSE), DF(d, CE_D));
}
static void ce_ref(const qt_case *c, const qt_inst *t, double **r) {
    const int M = c->i[0], V = c->i[1];
    double *loss = dref(t, r, CE_LOSS), *lse = dref(t, r, CE_LSE), *dl = dref(t, r, CE_D);
    for (int i = 0; i < M; i++) {
        const float *x = F(t, CE_LG) + (size_t)i * V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, x[j]);
        for (int j = 0; j < V; j++) s += exp(x[j] - mx);
        lse[i] = mx + log(s);
        loss[i] = lse[i] - x[I32(t, CE_TG)[i]];
        for (int j = 0; j < V; j++)
            dl[(size_t)i * V + j] = ce_scale(c, i) * (exp(x[j] - lse[i]) - (j == I32(t, CE_TG)[i]));
    }
}
static double ce_loss(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s) {
    const int M = c->i[0];
    float *loss = qa_malloc(sizeof(float) * M), *lse = qa_malloc(sizeof(float) * M);
    o->cross_entropy_fwd(s, M, c->i[1], F(t, CE_LG), I32(t, CE_TG), loss, lse);
    double l = 0;
    for (int i = 0; i < M; i++) l += ce_scale(c, i) * loss[i];
    free(loss);
    free(lse);
    return l;
}
static const qt_family CROSS_ENTROPY = {.name = "cross_entropy", .slots = "cross_entropy_fwd cross_entropy_bwd",
    .init = ce_init, .run = ce_run, .ref = ce_ref, .loss = ce_loss, .fd = {{CE_LG, CE_D, 0}}, .nfd = 1, .h = 1e-2f};

/* ---- adamw_step ------------------------------------------------------------------------------------------------
 * i: n, steps, a new gradient every step (g_t = g_{t-1}/2 + noise/10), m and v start random (else 0);
 * f: lr. beta1 0.9, beta2 0.999, eps 1e-8, weight decay 0.01. p, m, v [n]; g [n] or [steps, n]. */
enum { AD_P, AD_G, AD_M, AD_V };
static void adamw_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const size_t n = (size_t)c->i[0], ng = c->i[2] ? n * c->i[1] : n;
    const float mv = c->i[3] ? 0.1f : 0.0f;
    add_rand(t, "p", QT_INOUT, n, 1, rng);
    int g = add_rand(t, "g", QT_IN, ng, 1, rng);
    for (size_t j = n; j < ng; j++) F(t, g)[j] = 0.5f * F(t, g)[j - n] + 0.1f * qt_frand(rng);
    add_rand(t, "m", QT_INOUT, n, mv, rng);
    int v = add_rand(t, "v", QT_INOUT, n, mv, rng);
    for (size_t j = 0; j < n; j++) F(t, v)[j] = fabsf(F(t, v)[j]);
}
static void adamw_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    const size_t n = (size_t)c->i[0];
    for (int st = 1; st <= c->i[1]; st++)
        o->adamw_step(s, n, c->f[0], 0.9f, 0.999f, 1e-8f, 0.01f, st, DF(d, AD_P),
                      DF(d, AD_G) + (c->i[2] ? (size_t)(st - 1) * n : 0), DF(d, AD_M), DF(d, AD_V));
}
static void adamw_ref(const qt_case *c, const qt_inst *t, double **r) {
    const size_t n = (size_t)c->i[0];
    const double lr = c->f[0], b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    double *p = dref(t, r, AD_P), *m = dref(t, r, AD_M), *v = dref(t, r, AD_V);
    for (size_t j = 0; j < n; j++) { p[j] = F(t, AD_P)[j]; m[j] = F(t, AD_M)[j]; v[j] = F(t, AD_V)[j]; }
    for (int st = 1; st <= c->i[1]; st++) {
        const float *g = F(t, AD_G) + (c->i[2] ? (size_t)(st - 1) * n : 0);
        for (size_t j = 0; j < n; j++) {
            p[j] *= 1 - lr * wd;
            m[j] = b1 * m[j] + (1 - b1) * g[j];
            v[j] = b2 * v[j] + (1 - b2) * (double)g[j] * g[j];
            p[j] -= lr * (m[j] / (1 - pow(b1, st))) / (sqrt(v[j] / (1 - pow(b2, st))) + eps);
        }
    }
}
static const qt_family ADAMW = {.name = "adamw_step", .slots = "adamw_step", .init = adamw_init, .run = adamw_run,
    .ref = adamw_ref};

/* ---- sumsq: sum of squares in double (gradient norm) -------------------------------------------------------------
 * i: n, a non-finite element (0 none, 1 +inf at n/2, 2 NaN at n/3): the sum must be non-finite too. */
enum { SS_X, SS_OUT };
static void sumsq_init(const qt_case *c, qt_inst *t, uint64_t *rng) {
    const int n = c->i[0];
    int x = add_rand(t, "x", QT_IN, (size_t)n, 1, rng);
    if (c->i[1] == 1) F(t, x)[n / 2] = INFINITY;
    if (c->i[1] == 2) F(t, x)[n / 3] = NAN;
    qt_buf_add(t, "sum", QA_DT_F64, QT_OUT, 1);
}
static void sumsq_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->sumsq(s, (size_t)c->i[0], DF(d, SS_X), (double *)d[SS_OUT]);
}
static void sumsq_ref(const qt_case *c, const qt_inst *t, double **r) {
    double ss = 0;
    for (int j = 0; j < c->i[0]; j++) ss += (double)F(t, SS_X)[j] * F(t, SS_X)[j];
    *dref(t, r, SS_OUT) = ss;
}
static const qt_family SUMSQ = {.name = "sumsq", .slots = "sumsq", .init = sumsq_init, .run = sumsq_run,
    .ref = sumsq_ref};

/* ---- scale: x = (float)(x * alpha), the product in double (gradient clipping) -------------------------------------
 * i: n; f: alpha = 1 / f[0] in double (a clipping coefficient: not a float). */
enum { SA_X };
static void scale_init(const qt_case *c, qt_inst *t, uint64_t *rng) { add_rand(t, "x", QT_INOUT, (size_t)c->i[0], 1, rng); }
static void scale_run(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, void *const *d) {
    o->scale(s, (size_t)c->i[0], 1.0 / c->f[0], DF(d, SA_X));
}
static void scale_ref(const qt_case *c, const qt_inst *t, double **r) {
    double *y = dref(t, r, SA_X);
    for (int j = 0; j < c->i[0]; j++) y[j] = (float)(F(t, SA_X)[j] * (1.0 / c->f[0]));
}
static const qt_family SCALE = {.name = "scale", .slots = "scale", .init = scale_init, .run = scale_run,
    .ref = scale_ref};

/* ---- the cases ------------------------------------------------------------------------------------------------------
 * Shapes: small ones for finite differences (2 forward calls per input element); shapes that cross the CPU's
 * blocking and thread-split edges (GEMM: MR 6, NR 16, KC 256, NC 3072; BF16 panels; lengths that are not a
 * multiple of the vector width or the split); and the shapes of the GPU kernels' paths (head_dim 64 / 128, long
 * windows, an empty cache). */
const qt_case qt_cases[] = {
    /* memory and row moves: exact everywhere */
    {&COPY, "memset0 2n + memcpy_d2d n-11 at +7, n 300001 (1.2 MB)", {300001}, .tol = TOL_COPY},
    {&AXPY, "n 3500 alpha -0.3", {3500}, {-0.3f}, .tol = {2e-7, 1e-7, 1e-7, 0}},
    {&GATHER, "M50 D70 of R80", {50, 70, 80}, .tol = TOL_COPY},
    {&SCATTER, "M50 D70 into R80", {50, 70, 80}, .tol = {1e-7, 1e-7, 1e-7, 0}},
    {&EMBEDDING, "V60 D200 N33 f32", {60, 200, 33, 0}, .tol = TOL_COPY},
    {&EMBEDDING, "V60 D200 N33 bf16", {60, 200, 33, 1}, .tol = TOL_COPY, .alt = 1},
    /* rmsnorm */
    {&RMSNORM, "N5 D24 f32 w, bwd beta 1", {5, 24, 0}, {1.0f, 1.5f}, .tol = T_EW(1e-6, 2e-3), .fd = 1},
    {&RMSNORM, "N301 D40 f32 w, bwd beta 0.5", {301, 40, 0}, {0.5f, 2.0f}, .tol = T_EW(1e-6, 0)},
    {&RMSNORM, "N33 D200 bf16 w, bwd beta 1", {33, 200, 1}, {1.0f, 2.0f}, .tol = T_EW(1e-6, 0), .alt = 1},
    /* rope */
    {&ROPE, "N6 H3 hd16 pos 0..300 theta 1e4", {6, 3, 16, 0}, {1e4f, 1e4f}, .tol = T_EW(1e-5, 1e-3), .fd = 1},
    /* positions up to 4999: the angle pos * inv_freq is fp32 from powf (kernels/ops.h), and a GPU's powf may differ
     * from the host's by a few ulp; at inv_freq 0.1 (dim pair 1 of hd 8) 4 ulp are 1.2e-4 rad at position 4999: on
     * a quarter of the elements, ~4e-5 relative L2 over the tensor */
    {&ROPE, "N301 H4 hd8 pos 13n mod 5000, fwd theta 1e4 bwd 5e5", {301, 4, 8, 1}, {1e4f, 5e5f},
     .tol = {1e-6, 1e-4, 1e-4, 0}},
    {&ROPE, "N33 H4 hd32 pos 3n+100, fwd theta 1e4 bwd 1e6", {33, 4, 32, 2}, {1e4f, 1e6f}, .tol = T_EW(1e-6, 0)},
    /* attention: finite-difference shapes */
    {&ATTENTION, "B2 T9 H4/2 hd8 causal", {2, 9, 4, 2, 8, 0, 0, 0}, {0, 1.5f}, .tol = T_AT(1e-5, 2e-3), .fd = 1},
    {&ATTENTION, "B3 T9 H4/2 hd8 padding mask", {3, 9, 4, 2, 8, 0, 1, 0}, {0, 1.5f}, .tol = T_AT(1e-5, 2e-3), .fd = 1},
    {&ATTENTION, "B3 T9 H2/1 hd8 window 3 + mask", {3, 9, 2, 1, 8, 3, 1, 0}, {0, 1.5f}, .tol = T_AT(1e-5, 2e-3), .fd = 1},
    {&ATTENTION, "B3 T12 H4/4 hd4 segments + mask", {3, 12, 4, 4, 4, 0, 1, 1}, {0, 1.5f}, .tol = T_AT(1e-5, 2e-3), .fd = 1},
    {&ATTENTION, "B1 T150 H2/1 hd4 window 70 (query blocks)", {1, 150, 2, 1, 4, 70, 0, 0}, {0, 1.5f},
     .tol = T_AT(1e-5, 2e-3), .fd = 1},
    /* attention: thread splits (3 rows x 130 tokens over 1..3 threads) */
    {&ATTENTION, "B3 T130 H4/2 hd8 causal scale 0.35", {3, 130, 4, 2, 8, 0, 0, 0}, {0.35f, 1}, .tol = T_AT(1e-5, 0)},
    {&ATTENTION, "B3 T130 H4/2 hd8 window 37 + padding", {3, 130, 4, 2, 8, 37, 3, 0}, {0.35f, 1}, .tol = T_AT(1e-5, 0)},
    {&ATTENTION, "B3 T130 H4/2 hd8 segments + padding", {3, 130, 4, 2, 8, 0, 3, 3}, {0.35f, 1}, .tol = T_AT(1e-5, 0)},
    /* attention: the GPU kernels' shapes */
    {&ATTENTION, "B2 T37 H4/2 hd16 causal", {2, 37, 4, 2, 16, 0, 0, 0}, {0, 1.5f}, .tol = T_AT(1e-5, 0)},
    {&ATTENTION, "B2 T37 H4/2 hd16 left padding + segments", {2, 37, 4, 2, 16, 0, 2, 2}, {0, 1.5f}, .tol = T_AT(1e-5, 0)},
    {&ATTENTION, "B3 T150 H4/1 hd16 left padding", {3, 150, 4, 1, 16, 0, 2, 0}, {0, 1.5f}, .tol = T_AT(1e-5, 0)},
    {&ATTENTION, "B2 T300 H8/2 hd128 left padding + segments", {2, 300, 8, 2, 128, 0, 2, 2}, {0, 1.5f},
     .tol = T_AT(1e-5, 0)},
    {&ATTENTION, "B2 T300 H8/8 hd64 window 48 + left padding", {2, 300, 8, 8, 64, 48, 2, 0}, {0, 1.5f},
     .tol = T_AT(1e-5, 0)},
    {&ATTENTION, "B1 T520 H4/2 hd128 window 200", {1, 520, 4, 2, 128, 200, 0, 0}, {0, 1.5f}, .tol = T_AT(1e-5, 0)},
    /* single-query attention (inference) */
    {&ATTENTION_ROWS, "B3 T130 H4/2 hd8 causal, 7 queries", {3, 130, 4, 2, 8, 0, 0, 0}, {0.35f, 1},
     .tol = T_BF(1e-5, 0), .alt = 1},
    {&ATTENTION_ROWS, "B3 T130 H4/2 hd8 window 37 + padding, 7 queries", {3, 130, 4, 2, 8, 37, 3, 0}, {0.35f, 1},
     .tol = T_BF(1e-5, 0), .alt = 1},
    {&ATTENTION_ROWS, "B3 T130 H4/2 hd8 segments + padding, 7 queries", {3, 130, 4, 2, 8, 0, 3, 3}, {0.35f, 1},
     .tol = T_BF(1e-5, 0), .alt = 1},
    /* attention over a cached prefix (inference) */
    {&ATTENTION_PREFIX, "B3 T20 Tc50 H4/2 hd16", {3, 20, 50, 4, 2, 16, 0}, .tol = T_BF(1e-5, 0)},
    {&ATTENTION_PREFIX, "B4 T70 Tc333 H8/2 hd128", {4, 70, 333, 8, 2, 128, 0}, .tol = T_BF(1e-5, 0)},
    {&ATTENTION_PREFIX, "B3 T20 Tc50 H4/2 hd16 window 24", {3, 20, 50, 4, 2, 16, 24}, .tol = T_BF(1e-5, 0)},
    {&ATTENTION_PREFIX, "B2 T150 Tc0 H4/4 hd64 (empty cache)", {2, 150, 0, 4, 4, 64, 0}, .tol = T_BF(1e-5, 0)},
    /* swiglu */
    {&SWIGLU, "n50", {50, 0}, {3, 2}, .tol = T_EW(1e-6, 1e-3), .fd = 1},
    {&SWIGLU, "n100003 (not a multiple of the vector width)", {100003, 0}, {6, 1}, .tol = T_EW(1e-6, 0)},
    {&SWIGLU, "n6600, dg aliasing dout", {6600, 1}, {4, 2}, .tol = T_EW(1e-6, 0)},
    /* frozen linear: several BF16 panels; GEMM blocking edges; the GPU's beta / bias / dtype variants */
    {&LINEAR, "N3 K40 M17 bf16, beta 1, f32 bias", {3, 40, 17, 1, 1}, {1, 0, 0.1f}, .tol = T_BF(1e-5, 0), .alt = 1},
    {&LINEAR, "N3 K8192 M300 bf16 (BF16 panels), beta 1, f32 bias", {3, 8192, 300, 1, 1}, {1, 0, 0.1f},
     .tol = T_BF(1e-5, 0), .alt = 1},
    {&LINEAR, "N2 K8192 M100 bf16, beta 1, f32 bias", {2, 8192, 100, 1, 1}, {1, 0, 0.1f}, .tol = T_BF(1e-5, 0), .alt = 1},
    {&LINEAR, "N2 K64 M5000 bf16, f32 bias", {2, 64, 5000, 1, 1}, {0, 0, 0.1f}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N4 K520 M3500 bf16, f32 bias", {4, 520, 3500, 1, 1}, {0, 0, 0.1f}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N9 K300 M777 bf16, f32 bias", {9, 300, 777, 1, 1}, {0, 0, 0.1f}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N120 K264 M40 bf16, f32 bias", {120, 264, 40, 1, 1}, {0, 0, 0.1f}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N200 K1030 M300 bf16, f32 bias", {200, 1030, 300, 1, 1}, {0, 0, 0.1f}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N513 K96 M3100 bf16, f32 bias", {513, 96, 3100, 1, 1}, {0, 0, 0.1f}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N70 K96 M136 f32, f32 bias, beta 1, bwd beta 0.5", {70, 96, 136, 0, 1}, {1, 0.5f, 0.1f},
     .tol = T_EW(2e-6, 0)},
    {&LINEAR, "N70 K96 M136 bf16, bf16 bias, beta 1, bwd beta 0.5", {70, 96, 136, 1, 2}, {1, 0.5f, 0.1f},
     .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N70 K96 M136 f32, no bias, beta 0", {70, 96, 136, 0, 0}, {0, 0, 0.1f}, .tol = T_EW(2e-6, 0)},
    {&LINEAR, "N70 K96 M136 bf16, no bias, beta 0", {70, 96, 136, 1, 0}, {0, 0, 0.1f}, .tol = T_BF(2e-6, 0), .alt = 1},
    /* NF4 weights (kernels/nf4.h): 64-blocks that straddle rows (K 160); over the GPU's 16M-element dequantization
     * chunk (M K = 20.5M: two chunks, the second partial); alt: == the F32 dequantized weight, bitwise */
    {&LINEAR, "N70 K160 M96 nf4, f32 bias, beta 1, bwd beta 0.5", {70, 160, 96, 2, 1}, {1, 0.5f, 0.1f},
     .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N3 K40 M48 nf4, bf16 bias, beta 0", {3, 40, 48, 2, 2}, {0, 0, 0.1f}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR, "N9 K4096 M5000 nf4 (two GPU chunks), no bias", {9, 4096, 5000, 2, 0}, {0, 0, 0.1f},
     .tol = T_BF(1e-5, 0), .alt = 1},
    /* fused forms */
    {&LINEAR_MULTI, "N3 K72 M40/17/33, bias on 17", {3, 72, 40, 17, 33, 1}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR_MULTI, "N250 K72 M40/17/33, bias on 17", {250, 72, 40, 17, 33, 1}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR_MULTI, "N40 K72 M40/17/33, no bias", {40, 72, 40, 17, 33, -1}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&LINEAR_MULTI, "N40 K72 M40/17/33 f32 weights, bias on 40", {40, 72, 40, 17, 33, 0, 1}, .tol = T_EW(2e-6, 0),
     .alt = 1},
    {&LINEAR_MULTI, "N40 K160 M64/32/96 nf4, bf16, nf4, bias on 32", {40, 160, 64, 32, 96, 1, 2}, .tol = T_BF(2e-6, 0),
     .alt = 1},
    {&SWIGLU_LINEAR, "N40 F160 D64 nf4 weight, f32 bias, beta 1", {40, 160, 64, 2, 1}, {1}, .tol = T_BF(2e-6, 0),
     .alt = 1},
    {&SWIGLU_LINEAR, "N3 F90 D24 beta 1", {3, 90, 24}, {1}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&SWIGLU_LINEAR, "N250 F90 D24 beta 1", {250, 90, 24}, {1}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&SWIGLU_LINEAR, "N40 F90 D24 bf16 bias, beta 0", {40, 90, 24, 0, 2}, {0}, .tol = T_BF(2e-6, 0), .alt = 1},
    {&SWIGLU_LINEAR, "N40 F90 D24 f32 weight, f32 bias, beta 0.5", {40, 90, 24, 1, 1}, {0.5f}, .tol = T_EW(2e-6, 0),
     .alt = 1},
    /* lora */
    {&LORA, "N7 K12 M9 r3 scale 2.5 p 0", {7, 12, 9, 3, 0}, {2.5f, 0, 1}, 0xabcdef, .tol = T_EW(1e-5, 1e-3), .fd = 1},
    {&LORA, "N7 K12 M9 r3 scale 2.5 p 0.3", {7, 12, 9, 3, 0}, {2.5f, 0.3f, 1}, 0xabcdef, .tol = T_EW(1e-5, 1e-3), .fd = 1},
    {&LORA, "N301 K40 M56 r8 scale 2 p 0.1", {301, 40, 56, 8, 0}, {2, 0.1f, 1}, 99, .tol = T_EW(1e-5, 0)},
    {&LORA, "N45 K80 M72 r8 scale 2 p 0, accumulating", {45, 80, 72, 8, 1}, {2, 0, 0.3f}, 0x1234567890abcdefull,
     .tol = T_EW(1e-5, 0)},
    {&LORA, "N45 K80 M72 r8 scale 2 p 0.1, accumulating", {45, 80, 72, 8, 1}, {2, 0.1f, 0.3f}, 0x1234567890abcdefull,
     .tol = T_EW(1e-5, 0)},
    /* cross-entropy */
    {&CROSS_ENTROPY, "M4 V30 targets 0 29 7 7, row scales 1..4, in place", {4, 30, 1, 0, 1, 1}, {0, 4},
     .tol = T_EW(1e-6, 1e-3), .fd = 1},
    {&CROSS_ENTROPY, "M37 V1111 scale 0.25", {37, 1111, 0, 101, 0, 0}, {0.25f, 8}, .tol = T_EW(1e-6, 0)},
    {&CROSS_ENTROPY, "M9 V5003 scale 0.25, in place", {9, 5003, 0, 811, 1, 0}, {0.25f, 8}, .tol = T_EW(1e-6, 0)},
    /* optimizer */
    {&ADAMW, "n40, 3 steps, new gradient each step", {40, 3, 1, 0}, {1e-2f}, .tol = {1e-6, 1e-6, 1e-6, 0}},
    {&ADAMW, "n300001, 2 steps", {300001, 2, 0, 0}, {1e-3f}, .tol = {1e-6, 1e-6, 1e-6, 0}},
    {&ADAMW, "n10007, 3 steps, m and v from earlier steps", {10007, 3, 0, 1}, {1e-2f}, .tol = {1e-6, 1e-6, 1e-6, 0}},
    /* the LoRA state's step: norm (sum in double: CPU in index order, bitwise the reference; other backends another
     * order: n 2^-53 relative at most) and clipping (one rounding of a double product: bitwise everywhere) */
    {&SUMSQ, "n100003", {100003, 0}, .tol = {0, 1e-11, 1e-11, 0}},
    {&SUMSQ, "n1000 with +inf", {1000, 1}, .tol = {0, 1e-11, 1e-11, 0}},
    {&SUMSQ, "n1000 with NaN", {1000, 2}, .tol = {0, 1e-11, 1e-11, 0}},
    {&SCALE, "n100003 alpha 1/1.37", {100003}, {1.37f}, .tol = TOL_COPY},
};
const size_t qt_n_cases = sizeof qt_cases / sizeof qt_cases[0];
