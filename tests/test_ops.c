/* test_ops.c — runs the op case list (tests/op_cases.c) in one mode:
 *   test_ops ref            the CPU backend vs a double-precision reference; backward ops vs central finite
 *                           differences (cases marked fd); a case's identity (alt) bitwise
 *   test_ops threads        the CPU backend without a stream and on 1, 2, 3 threads: bitwise equal
 *   test_ops slots          every qa_ops slot that a backend here fills (cpu, emu; cuda and cuda-fp32 where usable)
 *                           is called by some case, and every slot of the struct is named below
 *   test_ops backend NAME   backend NAME (emu, cuda, cuda-fp32) vs the CPU backend on the same inputs: emu bitwise,
 *                           cuda / cuda-fp32 within the case's bf16 / f32 tolerance; NAME's slots as in `slots`
 * Without an argument: ref, threads, slots and backend emu. Built as test_ops_cuda (QT_OPS_CUDA) the default is
 * backend cuda, then backend cuda-fp32; a backend that is not usable here (no GPU, not compiled in) is skipped,
 * and the program exits 77 (ctest: skipped) when no backend ran.
 * QT_CASE=substring runs the cases whose name contains it. */
#include "op_cases.h"
#include "testutil.h"
#include "cpu_stream.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "family shapes", e.g. "rmsnorm N5 D24 f32 w, bwd beta 1" (a static buffer: one name at a time) */
static const char *name_of(const qt_case *c) {
    static char name[256];
    snprintf(name, sizeof name, "%s %s", c->op->name, c->what);
    return name;
}
static const char *case_filter;
static int selected(const qt_case *c) { return !case_filter || strstr(name_of(c), case_filter); }

/* ---- running a case on a backend --------------------------------------------------------------------------- */
static int compared(const qt_buf *b) { return b->role == QT_OUT || b->role == QT_INOUT; }
static size_t bytes_of(const qt_buf *b) { return qt_type_bytes(b->type, b->n); }

static void *nan_fill(const qt_buf *b) {
    void *p = qa_malloc(bytes_of(b) ? bytes_of(b) : 1);
    for (size_t i = 0; i < b->n; i++) {
        if (b->type == QA_DT_F32) ((float *)p)[i] = NAN;
        else if (b->type == QA_DT_F64) ((double *)p)[i] = NAN;
        else if (b->type == QA_DT_BF16) ((uint16_t *)p)[i] = 0x7fc0;
        else ((int32_t *)p)[i] = INT32_MIN;
    }
    return p;
}

/* Case c on backend o, stream s (alt: its identity instead): every buffer in o's memory, inputs uploaded, outputs
 * NaN; out[i] gets a host copy of each compared buffer (others NULL). 0, or -1 with the backend's error printed. */
static int run_on(const qt_case *c, const qt_inst *t, const qa_ops *o, qa_stream *s, int alt, void **out) {
    void *d[QT_MAXBUF] = {0}, *nan[QT_MAXBUF] = {0};
    qa_err e = {0};
    int rc = 0;
    for (int i = 0; i < QT_MAXBUF; i++) out[i] = NULL;
    for (int i = 0; i < t->nb; i++) {
        const qt_buf *b = &t->b[i];
        if (!(d[i] = o->alloc(bytes_of(b) ? bytes_of(b) : 4, &e))) { rc = -1; break; }
        const void *src = b->role == QT_IN || b->role == QT_INOUT ? b->h : (nan[i] = nan_fill(b));
        if (bytes_of(b)) o->memcpy_h2d(s, d[i], src, bytes_of(b));
    }
    if (!rc) {
        (alt ? c->op->alt : c->op->run)(c, t, o, s, d);
        rc = o->sync(s, &e) ? -1 : 0;
    }
    for (int i = 0; i < t->nb && !rc; i++)
        if (compared(&t->b[i])) {
            out[i] = qa_malloc(bytes_of(&t->b[i]) ? bytes_of(&t->b[i]) : 1);
            o->memcpy_d2h(s, out[i], d[i], bytes_of(&t->b[i]));
        }
    if (!rc && o->sync(s, &e)) rc = -1;
    for (int i = 0; i < t->nb; i++) {
        if (d[i]) o->free(d[i]);
        free(nan[i]);
    }
    if (rc) {
        printf("  %s on %s: %s\n", name_of(c), o->name, e.msg);
        for (int i = 0; i < t->nb; i++) { free(out[i]); out[i] = NULL; }
    }
    return rc;
}
static void free_out(const qt_inst *t, void **out) {
    for (int i = 0; i < t->nb; i++) { free(out[i]); out[i] = NULL; }
}

/* ---- comparisons ----------------------------------------------------------------------------------------------- */
static double *as_double(const void *p, qa_dtype ty, size_t n) {
    double *r = qa_malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        r[i] = ty == QA_DT_F32 ? ((const float *)p)[i] : ty == QA_DT_F64 ? ((const double *)p)[i]
             : ty == QA_DT_BF16 ? qa_bf16_to_f32(((const uint16_t *)p)[i]) : ((const int32_t *)p)[i];
    return r;
}
/* relative L2 error of got against want over the finite entries (abs: max abs error); *bad counts the entries where
 * one is not finite and the other is not the same non-finite value (NaN where NaN, inf of the same sign) */
static double dist(const double *got, const double *want, size_t n, int abs, size_t *bad) {
    double num = 0, den = 0, mx = 0;
    *bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double g = got[i], w = want[i];
        if (!isfinite(g) || !isfinite(w)) {
            if (!(isnan(g) && isnan(w)) && g != w) (*bad)++;
            continue;
        }
        const double e = g - w;
        num += e * e;
        den += w * w;
        if (fabs(e) > mx) mx = fabs(e);
    }
    if (abs) return mx;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static const qt_tol *tol_of(const qt_case *c, const qt_buf *b) { return b->tol ? b->tol : &c->tol; }

/* ---- ref: the CPU backend vs double precision, finite differences, identities ------------------------------------ */
static void fd_check(const qt_case *c, qt_inst *t, void **out, qa_stream *s) {
    const qa_ops *C = qa_ops_cpu();
    for (int k = 0; k < c->op->nfd; k++) {
        const qt_fd *f = &c->op->fd[k];
        qt_buf *x = &t->b[f->wrt], *g = &t->b[f->grad];
        const float h = c->op->h;
        double *fd = qa_malloc(sizeof(double) * x->n), *an = qa_malloc(sizeof(double) * x->n);
        for (size_t i = 0; i < x->n; i++) {
            float *xi = (float *)x->h + i, x0 = *xi;
            *xi = x0 + h;
            double lp = c->op->loss(c, t, C, s);
            *xi = x0 - h;
            double lm = c->op->loss(c, t, C, s);
            *xi = x0;
            fd[i] = (lp - lm) / (2.0 * h);
            an[i] = ((float *)out[f->grad])[i] - (g->role == QT_INOUT ? f->beta * ((float *)g->h)[i] : 0.0);
        }
        size_t bad;
        double err = dist(an, fd, x->n, 0, &bad);
        QT_CHECK(err <= c->tol.fd && !bad, "%s %s: %s vs finite differences of d/d%s: rel err %.2e (tol %.0e)",
                 c->op->name, c->what, g->name, x->name, err, c->tol.fd);
        printf("    %s vs finite differences %.2e\n", g->name, err);
        free(fd);
        free(an);
    }
}

static void mode_ref(void) {
    const qa_ops *C = qa_ops_cpu();
    qa_stream *s = qt_cpu_stream(1);
    printf("== ref: the CPU backend vs double precision, finite differences, identities ==\n");
    for (size_t ci = 0; ci < qt_n_cases; ci++) {
        const qt_case *c = &qt_cases[ci];
        if (!selected(c)) continue;
        qt_inst t = {0};
        uint64_t rng = qt_case_seed(c);
        void *out[QT_MAXBUF];
        double *r[QT_MAXBUF] = {0};
        c->op->init(c, &t, &rng);
        printf("  %s %s\n", c->op->name, c->what);
        if (run_on(c, &t, C, s, 0, out)) {
            QT_CHECK(0, "%s runs on the CPU backend", name_of(c));
            qt_inst_free(&t);
            continue;
        }
        c->op->ref(c, &t, r);
        int nref = 0;
        for (int i = 0; i < t.nb; i++) {
            if (!r[i]) continue;
            const qt_buf *b = &t.b[i];
            double *got = as_double(out[i], b->type, b->n);
            size_t bad;
            double err = dist(got, r[i], b->n, b->abs, &bad), tol = tol_of(c, b)->ref;
            QT_CHECK(err <= tol && !bad, "%s %s: %s vs double: %s %.2e (tol %.0e), %zu misplaced non-finite", c->op->name,
                     c->what, b->name, b->abs ? "max abs err" : "rel err", err, tol, bad);
            printf("    %-20s vs double %.2e%s\n", b->name, err, b->abs ? " (max abs)" : "");
            free(got);
            free(r[i]);
            nref++;
        }
        QT_CHECK(nref > 0, "%s %s: the reference covers some output", c->op->name, c->what);
        if (c->fd) {
            QT_CHECK(c->op->loss && c->op->nfd > 0, "%s %s: marked fd, its family has a loss", c->op->name, c->what);
            if (c->op->loss) fd_check(c, &t, out, s);
        }
        if (c->alt) {
            void *alt[QT_MAXBUF];
            QT_CHECK(c->op->alt != NULL, "%s %s: marked alt, its family has one", c->op->name, c->what);
            if (c->op->alt && !run_on(c, &t, C, s, 1, alt)) {
                int same = 1;
                for (int i = 0; i < t.nb; i++)
                    if (compared(&t.b[i])) same &= !memcmp(out[i], alt[i], bytes_of(&t.b[i]));
                QT_CHECK(same, "%s %s: %s, bitwise", c->op->name, c->what, c->op->alt_what);
                printf("    %s, bitwise: %s\n", c->op->alt_what, same ? "yes" : "NO");
                free_out(&t, alt);
            }
        }
        free_out(&t, out);
        qt_inst_free(&t);
    }
    C->stream_destroy(s);
}

/* ---- threads: no stream, 1, 2, 3 threads ------------------------------------------------------------------------- */
static void mode_threads(void) {
    enum { NS = 4 };
    const qa_ops *C = qa_ops_cpu();
    qa_stream *ss[NS] = {NULL, qt_cpu_stream(1), qt_cpu_stream(2), qt_cpu_stream(3)};
    static const char *sname[NS] = {"no stream", "1 thread", "2 threads", "3 threads"};
    printf("== threads: the CPU backend without a stream and on 1, 2, 3 threads, bitwise ==\n");
    for (size_t ci = 0; ci < qt_n_cases; ci++) {
        const qt_case *c = &qt_cases[ci];
        if (!selected(c)) continue;
        qt_inst t = {0};
        uint64_t rng = qt_case_seed(c);
        void *out[NS][QT_MAXBUF];
        c->op->init(c, &t, &rng);
        int ok = 1, same = 1;
        for (int k = 0; k < NS; k++) ok &= !run_on(c, &t, C, ss[k], 0, out[k]);
        for (int k = 0; ok && k < NS; k++)
            for (int i = 0; i < t.nb; i++)
                if (compared(&t.b[i]) && memcmp(out[k][i], out[1][i], bytes_of(&t.b[i]))) {
                    same = 0;
                    printf("    %s differs on %s from 1 thread\n", t.b[i].name, sname[k]);
                }
        QT_CHECK(ok && same, "%s %s: bitwise equal without a stream and on 1, 2, 3 threads", c->op->name, c->what);
        printf("  %-80.80s %s\n", name_of(c), ok && same ? "same" : "DIFFERENT");
        for (int k = 0; k < NS; k++) free_out(&t, out[k]);
        qt_inst_free(&t);
    }
    for (int k = 1; k < NS; k++) C->stream_destroy(ss[k]);
}

/* ---- slots: every filled slot has a case ------------------------------------------------------------------------- */
typedef void (*qt_fn)(void);
enum { RUNNER = 1, OPTIONAL = 2 };
/* Every function-pointer slot of qa_ops. RUNNER: the runner's own plumbing (opening the backend, streams, memory,
 * the copies in and out), which every case exercises; the other slots must be called by a case. OPTIONAL: a backend
 * may leave it NULL (kernels/ops.h). */
#define SLOT(s, k) {#s, offsetof(qa_ops, s), k}
static const struct { const char *name; size_t off; int kind; } SLOTS[] = {
    SLOT(select_device, RUNNER | OPTIONAL), SLOT(stream_create, RUNNER), SLOT(stream_destroy, RUNNER),
    SLOT(sync, RUNNER), SLOT(alloc, RUNNER), SLOT(free, RUNNER), SLOT(memcpy_h2d, RUNNER), SLOT(memcpy_d2h, RUNNER),
    SLOT(memcpy_d2d, 0), SLOT(memset0, 0), SLOT(axpy, 0), SLOT(gather_rows, 0), SLOT(scatter_add_rows, 0),
    SLOT(embedding_fwd, 0), SLOT(rmsnorm_fwd, 0), SLOT(rmsnorm_bwd, 0), SLOT(rope_fwd, 0), SLOT(rope_bwd, 0),
    SLOT(attention_fwd, 0), SLOT(attention_bwd, 0), SLOT(swiglu_fwd, 0), SLOT(swiglu_bwd, 0), SLOT(linear_fwd, 0),
    SLOT(linear_bwd, 0), SLOT(lora_fwd, 0), SLOT(lora_bwd, 0), SLOT(cross_entropy_fwd, 0),
    SLOT(cross_entropy_bwd, 0), SLOT(adamw_step, 0), SLOT(sumsq, 0), SLOT(scale, 0),
    SLOT(attention_prefix_fwd, OPTIONAL), SLOT(linear_multi_fwd, OPTIONAL), SLOT(attention_rows_fwd, OPTIONAL),
    SLOT(swiglu_linear_fwd, OPTIONAL),
};
enum { NSLOTS = sizeof SLOTS / sizeof SLOTS[0] };

static int slot_index(const char *name, size_t len) {
    for (int i = 0; i < NSLOTS; i++)
        if (strlen(SLOTS[i].name) == len && !strncmp(SLOTS[i].name, name, len)) return i;
    return -1;
}
static qt_fn slot_fn(const qa_ops *o, int i) {
    qt_fn f;
    memcpy(&f, (const char *)o + SLOTS[i].off, sizeof f);
    return f;
}
/* does family f call slot i (its slot list names it)? */
static int calls(const qt_family *f, int i) {
    for (const char *p = f->slots; *p;) {
        while (*p == ' ') p++;
        size_t n = strcspn(p, " ");
        if (n && slot_index(p, n) == i) return 1;
        p += n;
    }
    return 0;
}

/* The slot list above names every function pointer of qa_ops (a slot added to kernels/ops.h must be added here,
 * and get a case), and every case's slot list names real slots. */
static void check_slot_list(void) {
    const size_t start = (offsetof(qa_ops, host_memory) + sizeof(int) + alignof(qt_fn) - 1) / alignof(qt_fn) * alignof(qt_fn);
    int covered = 1;
    for (size_t off = start; off < sizeof(qa_ops); off += sizeof(qt_fn)) {
        int found = 0;
        for (int i = 0; i < NSLOTS; i++) found |= SLOTS[i].off == off;
        if (!found) { printf("  qa_ops has a slot at byte %zu that tests/test_ops.c does not name\n", off); covered = 0; }
    }
    QT_CHECK(covered && NSLOTS * sizeof(qt_fn) == sizeof(qa_ops) - start,
             "the slot list names every function pointer of qa_ops (%d slots)", NSLOTS);
    int names_ok = 1;
    for (size_t ci = 0; ci < qt_n_cases; ci++)
        for (const char *p = qt_cases[ci].op->slots; *p;) {
            while (*p == ' ') p++;
            size_t n = strcspn(p, " ");
            if (n && slot_index(p, n) < 0) { printf("  case family %s names no slot '%.*s'\n", qt_cases[ci].op->name, (int)n, p); names_ok = 0; }
            p += n;
        }
    QT_CHECK(names_ok, "every case family names real qa_ops slots");
}

/* Every slot backend o fills is called by a case (or is the runner's); every slot it must fill, it fills. */
static void check_slots(const qa_ops *o) {
    int missing = 0, unfilled = 0, ops = 0;
    for (int i = 0; i < NSLOTS; i++) {
        const int filled = slot_fn(o, i) != NULL;
        if (!filled) {
            if (!(SLOTS[i].kind & OPTIONAL)) { printf("  %s leaves %s NULL (not optional in kernels/ops.h)\n", o->name, SLOTS[i].name); unfilled++; }
            continue;
        }
        if (SLOTS[i].kind & RUNNER) continue;
        ops++;
        int n = 0;
        for (size_t ci = 0; ci < qt_n_cases; ci++) n += calls(qt_cases[ci].op, i);
        if (!n) { printf("  %s fills %s, but no case in tests/op_cases.c calls it\n", o->name, SLOTS[i].name); missing++; }
    }
    QT_CHECK(!missing, "%s: every op slot it fills (%d) has a case (%d without)", o->name, ops, missing);
    QT_CHECK(!unfilled, "%s: every slot it must fill is filled (%d NULL)", o->name, unfilled);
}

static const char *const OTHER_BACKENDS[] = {"emu", "cuda", "cuda-fp32"};

static void mode_slots(void) {
    printf("== slots: every qa_ops slot a backend fills has a case ==\n");
    check_slot_list();
    check_slots(qa_ops_cpu());
    for (size_t i = 0; i < sizeof OTHER_BACKENDS / sizeof OTHER_BACKENDS[0]; i++) {
        qa_err e = {0};
        const qa_ops *o = qa_ops_get(OTHER_BACKENDS[i], &e);
        if (o) check_slots(o);
        else printf("  %s not checked here: %s\n", OTHER_BACKENDS[i], e.msg);
    }
}

/* ---- backend: another backend vs the CPU ------------------------------------------------------------------------- */
enum { P_EXACT, P_BF16, P_F32 };
static int precision_of(const char *name) {
    if (!strcmp(name, "emu")) return P_EXACT;   /* the CPU kernels behind a device's discipline */
    if (!strcmp(name, "cuda")) return P_BF16;
    if (!strcmp(name, "cuda-fp32")) return P_F32;
    return -1;
}

/* A case outside what backend `name` supports by its contract, which it must refuse with an error: the CUDA
 * attention needs head_dim % 8 == 0 (16-byte aligned heads; kernels/cuda/attn_cuda.cu). */
static int refused_by(const char *name, const qt_case *c) {
    return !strncmp(name, "cuda", 4) && !strcmp(c->op->name, "attention") && c->i[4] % 8 != 0;
}

/* 0: ran; 77: the backend is not usable here */
static int mode_backend(const char *name) {
    qa_err e = {0};
    const int prec = precision_of(name);
    if (prec < 0) {
        QT_CHECK(0, "backend '%s': no precision known for it (tests/test_ops.c: precision_of)", name);
        return 0;
    }
    char desc[256] = "";
    const qa_ops *G = qa_ops_open(name, 0, desc, sizeof desc, &e), *C = qa_ops_cpu();
    qa_stream *gs = NULL;
    if (!G || G->stream_create(&gs, NULL, &e)) {
        printf("SKIP backend %s: %s\n", name, e.msg);
        return 77;
    }
    printf("== backend %s vs cpu (%s) ==\n", desc, prec == P_EXACT ? "bitwise" : prec == P_BF16 ? "bf16 tolerances" : "fp32 tolerances");
    check_slots(G);
    qa_stream *cs = qt_cpu_stream(1);
    for (size_t ci = 0; ci < qt_n_cases; ci++) {
        const qt_case *c = &qt_cases[ci];
        if (!selected(c)) continue;
        int absent = -1;
        for (int i = 0; i < NSLOTS; i++)
            if (calls(c->op, i) && !slot_fn(G, i)) absent = i;
        if (absent >= 0) {
            QT_CHECK(SLOTS[absent].kind & OPTIONAL, "%s %s: %s fills %s", c->op->name, c->what, name, SLOTS[absent].name);
            printf("  %s: skipped, %s leaves %s NULL\n", name_of(c), name, SLOTS[absent].name);
            continue;
        }
        qt_inst t = {0};
        uint64_t rng = qt_case_seed(c);
        void *want[QT_MAXBUF], *got[QT_MAXBUF];
        c->op->init(c, &t, &rng);
        if (refused_by(name, c)) {
            const int rc = run_on(c, &t, G, gs, 0, got);
            QT_CHECK(rc != 0, "%s on %s: runs, but the backend must refuse it (head_dim %d)", name_of(c), name, c->i[4]);
            printf("  %s: refused by %s, as its contract says\n", name_of(c), name);
            if (!rc) free_out(&t, got);
            qt_inst_free(&t);
            continue;
        }
        if (run_on(c, &t, C, cs, 0, want) | run_on(c, &t, G, gs, 0, got)) {
            QT_CHECK(0, "%s runs on cpu and %s", name_of(c), name);
            free_out(&t, want);
            free_out(&t, got);
            qt_inst_free(&t);
            continue;
        }
        char line[512];
        int len = snprintf(line, sizeof line, "  %s %s:", c->op->name, c->what);
        for (int i = 0; i < t.nb; i++) {
            const qt_buf *b = &t.b[i];
            if (!compared(b)) continue;
            if (prec == P_EXACT) {
                int same = !memcmp(got[i], want[i], bytes_of(b));
                QT_CHECK(same, "%s %s: %s on %s == cpu, bitwise", c->op->name, c->what, b->name, name);
                len += snprintf(line + len, sizeof line - (size_t)len, " %s %s", b->name, same ? "same" : "DIFFERENT");
            } else {
                double *g = as_double(got[i], b->type, b->n), *w = as_double(want[i], b->type, b->n);
                size_t bad;
                const double err = dist(g, w, b->n, b->abs, &bad);
                const double tol = prec == P_BF16 ? tol_of(c, b)->bf16 : tol_of(c, b)->f32;
                QT_CHECK(err <= tol && !bad, "%s %s: %s on %s vs cpu: %s %.2e (tol %.0e), %zu misplaced non-finite",
                         c->op->name, c->what, b->name, name, b->abs ? "max abs err" : "rel err", err, tol, bad);
                len += snprintf(line + len, sizeof line - (size_t)len, " %s %.1e", b->name, err);
                free(g);
                free(w);
            }
            if (len >= (int)sizeof line) len = (int)sizeof line - 1;
        }
        printf("%s\n", line);
        if (c->alt && c->op->alt_contract) {
            void *alt[QT_MAXBUF];
            if (!run_on(c, &t, G, gs, 1, alt)) {
                int same = 1;
                for (int i = 0; i < t.nb; i++)
                    if (compared(&t.b[i])) same &= !memcmp(got[i], alt[i], bytes_of(&t.b[i]));
                QT_CHECK(same, "%s %s on %s: %s, bitwise (kernels/ops.h)", c->op->name, c->what, name, c->op->alt_what);
                free_out(&t, alt);
            }
        }
        free_out(&t, want);
        free_out(&t, got);
        qt_inst_free(&t);
    }
    C->stream_destroy(cs);
    G->stream_destroy(gs);
    return 0;
}

int main(int argc, char **argv) {
    case_filter = getenv("QT_CASE") && *getenv("QT_CASE") ? getenv("QT_CASE") : NULL;
    const double t0 = (double)clock() / CLOCKS_PER_SEC;
    const char *mode = argc > 1 ? argv[1] : NULL;
    int ran = 0;
    (void)ran;
    if (!mode) {
#ifdef QT_OPS_CUDA
        ran += mode_backend("cuda") == 0;
        ran += mode_backend("cuda-fp32") == 0;
        if (!ran) return 77;
#else
        mode_ref();
        mode_threads();
        mode_slots();
        mode_backend("emu");
#endif
    } else if (!strcmp(mode, "ref")) {
        mode_ref();
    } else if (!strcmp(mode, "threads")) {
        mode_threads();
    } else if (!strcmp(mode, "slots")) {
        mode_slots();
    } else if (!strcmp(mode, "backend") && argc > 2) {
        if (mode_backend(argv[2]) == 77) return 77;
    } else {
        fprintf(stderr, "usage: %s [ref | threads | slots | backend emu|cuda|cuda-fp32]\n", argv[0]);
        return 2;
    }
    printf("%zu cases, %.2f s of CPU time\n", qt_n_cases, (double)clock() / CLOCKS_PER_SEC - t0);
    return qt_finish();
}
