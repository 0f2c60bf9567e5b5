/* cpu_stream.h — a CPU stream of n threads for the tests that compare thread counts (test_ops threads,
 * test_cpu_kernels): the one place in tests/ that knows how a CPU stream gets its thread count. */
#ifndef QA_TESTS_CPU_STREAM_H
#define QA_TESTS_CPU_STREAM_H
#include "kernels/cpu_threads.h"
#include "kernels/ops.h"

#include <stdio.h>
#include <stdlib.h>

static inline qa_stream *qt_cpu_stream(int threads) {
    qa_err e = {0};
    qa_stream *s = NULL;
    qa_cpu_set_threads(threads);
    if (qa_ops_cpu()->stream_create(&s, &e)) {
        fprintf(stderr, "CPU stream of %d threads: %s\n", threads, e.msg);
        exit(1);
    }
    return s;
}
#endif
