#include "kernels/cpu_threads.h"
#include <cblas.h>

/* OpenBLAS keeps the thread count in its own process-wide state; this is the one place that sets it. */
void qa_cpu_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }
int qa_cpu_get_threads(void) { return openblas_get_num_threads(); }
