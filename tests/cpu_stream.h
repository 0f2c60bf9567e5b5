/* cpu_stream.h — a CPU stream of n threads for the tests that compare thread counts (test_ops threads,
 * test_cpu_kernels): the one place in tests/ that knows how a CPU stream gets its thread count (the
 * stream's own, qa_stream_opts.threads: its pool of n - 1 threads plus the caller). */
#ifndef QA_TESTS_CPU_STREAM_H
#define QA_TESTS_CPU_STREAM_H
#include "kernels/ops.h"

#include <stdio.h>
#include <stdlib.h>

static inline qa_stream *qt_cpu_stream(int threads) {
    qa_err e = {0};
    qa_stream *s = NULL;
    const qa_stream_opts so = {.threads = threads};
    if (qa_ops_cpu()->stream_create(&s, &so, &e)) {
        fprintf(stderr, "CPU stream of %d threads: %s\n", threads, e.msg);
        exit(1);
    }
    return s;
}
#endif
