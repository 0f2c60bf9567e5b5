/* cpu_threads.h — how many threads the CPU backend uses: a CPU stream (ops->stream_create, e.g. in
 * qa_model_load) starts a pool of that many threads (the caller included) that every op of the stream
 * splits its work over; set it before creating the stream. Also OpenBLAS's count (OPENBLAS_NUM_THREADS
 * is the default), for code that calls cblas directly; the backend itself does not use OpenBLAS threads.
 * Ranks on one node should split the cores: threads = cores / ranks-per-node. */
#ifndef QA_CPU_THREADS_H
#define QA_CPU_THREADS_H
void qa_cpu_set_threads(int n); /* n >= 1 */
int qa_cpu_get_threads(void);
#endif
