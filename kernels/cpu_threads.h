/* cpu_threads.h — how many threads the CPU backend uses (BLAS and the elementwise kernels).
 * Ranks on one node should split the cores: threads = cores / ranks-per-node. */
#ifndef QA_CPU_THREADS_H
#define QA_CPU_THREADS_H
void qa_cpu_set_threads(int n); /* n >= 1 */
int qa_cpu_get_threads(void);
#endif
