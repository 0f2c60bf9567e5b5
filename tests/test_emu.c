/* test_emu.c — the emulated device keeps a device's discipline (kernels/emu/ops_emu.c):
 *   - its memory is unreadable and unwritable by the host: a host read dies with SIGSEGV and a message
 *     naming the allocation;
 *   - an op given a host pointer dies with a message naming the op and the argument;
 *   - a copy with device memory where the host side belongs is refused;
 *   - data moves only through memcpy_h2d / memcpy_d2h / memcpy_d2d / memset0, and ops compute on it with
 *     the CPU kernels: results equal the CPU backend's bit for bit.
 * Each fatal case runs in a forked child; the parent checks how it died and what it printed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/ops.h"
#include "testutil.h"

/* run fn in a child with stderr captured; returns the wait status, *msg the first bytes it printed */
static int in_child(void (*fn)(const qa_ops *), const qa_ops *o, char *msg, size_t n) {
    int pfd[2];
    if (pipe(pfd)) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        fn(o);
        _exit(0);
    }
    close(pfd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(pfd[0], msg + got, n - 1 - got)) > 0) got += (size_t)r;
    msg[got] = 0;
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

static void host_read(const qa_ops *o) {
    qa_err e = {0};
    volatile float *p = o->alloc(4096, &e);
    float x = p[3]; /* must fault */
    printf("read %g\n", (double)x);
}
static void host_write(const qa_ops *o) {
    qa_err e = {0};
    float *p = o->alloc(64, &e);
    p[0] = 1.0f; /* must fault */
}
static void host_ptr_to_op(const qa_ops *o) {
    qa_err e = {0};
    float *d = o->alloc(64 * sizeof(float), &e);
    float host[64] = {0};
    o->axpy(NULL, 64, 1.0f, host, d); /* x is a host pointer: refused */
}
static void device_as_host(const qa_ops *o) {
    qa_err e = {0};
    float *d = o->alloc(64, &e), *d2 = o->alloc(64, &e);
    o->memcpy_d2h(NULL, d2, d, 64); /* the host side is device memory: refused */
}

int main(void) {
    qa_err e = {0};
    const qa_ops *E = qa_ops_get("emu", &e), *C = qa_ops_cpu();
    QT_CHECK(E && !E->host_memory && !strcmp(E->name, "emu"), "emu backend: host_memory 0");
    char msg[2048];
    int st = in_child(host_read, E, msg, sizeof msg);
    QT_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV && strstr(msg, "host access to emulated device memory"),
             "a host read of device memory dies with SIGSEGV and says why (status %d: %s)", st, msg);
    st = in_child(host_write, E, msg, sizeof msg);
    QT_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV && strstr(msg, "offset 0 of an allocation of 64 bytes"),
             "a host write of device memory dies and names the allocation (status %d: %s)", st, msg);
    st = in_child(host_ptr_to_op, E, msg, sizeof msg);
    QT_CHECK(WIFSIGNALED(st) && strstr(msg, "axpy got a host pointer for 'x'"),
             "an op given a host pointer is refused, naming op and argument (%s)", msg);
    st = in_child(device_as_host, E, msg, sizeof msg);
    QT_CHECK(WIFSIGNALED(st) && strstr(msg, "memcpy_d2h got device memory for the host pointer 'dst'"),
             "a copy to device memory as if it were host memory is refused (%s)", msg);

    /* data through the copies, an op, and back: the CPU backend's bits */
    enum { N = 1000 };
    float x[N], y[N], yc[N], back[N];
    uint64_t seed = 7;
    for (int i = 0; i < N; i++) { x[i] = qt_frand(&seed); y[i] = yc[i] = qt_frand(&seed); }
    qa_stream *s;
    QT_CHECK(E->stream_create(&s, NULL, &e) == 0, "emu stream");
    float *dx = E->alloc(sizeof x, &e), *dy = E->alloc(sizeof y, &e);
    double *dn = E->alloc(sizeof(double), &e);
    E->memcpy_h2d(s, dx, x, sizeof x);
    E->memcpy_h2d(s, dy, y, sizeof y);
    E->axpy(s, N, 0.37f, dx, dy);
    E->scale(s, N, 0.731, dy);
    E->sumsq(s, N, dy, dn);
    C->axpy(NULL, N, 0.37f, x, yc);
    C->scale(NULL, N, 0.731, yc);
    double nc = 0, ne = 0;
    C->sumsq(NULL, N, yc, &nc);
    E->memcpy_d2h(s, back, dy, sizeof back);
    E->memcpy_d2h(s, &ne, dn, sizeof ne);
    QT_CHECK(!memcmp(back, yc, sizeof back) && nc == ne, "axpy, scale, sumsq through device memory == cpu bitwise");
    E->memset0(s, dy, sizeof y);
    E->memcpy_d2d(s, dy + 10, dx, 5 * sizeof(float));
    E->memcpy_d2h(s, back, dy, sizeof back);
    QT_CHECK(back[0] == 0 && back[9] == 0 && !memcmp(back + 10, x, 5 * sizeof(float)) && back[15] == 0,
             "memset0 and memcpy_d2d on device memory");
    E->free(dx);
    E->free(dy);
    E->free(dn);
    E->stream_destroy(s);
    return qt_finish();
}
