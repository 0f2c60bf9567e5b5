/* qa_rng.h — splitmix64 (Steele, Lea, Flood 2014): the finalizer qa_mix64 and the counter stream
 * (state += γ, value = qa_mix64(state)). Every seeded choice of qalign draws from it: the data split
 * and epoch order (train/data.c), the dropout mask (kernels/ops.h), random init (qalign init-model),
 * PCA's start vectors. Also compiled as device code by nvcc (kernels/cuda). */
#ifndef QA_RNG_H
#define QA_RNG_H
#include <stdint.h>

#if defined(__CUDACC__)
#define QA_RNG_HD __host__ __device__
#else
#define QA_RNG_HD
#endif

#define QA_SPLITMIX_GAMMA 0x9E3779B97F4A7C15ull

/* the splitmix64 finalizer */
static inline QA_RNG_HD uint64_t qa_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* the next value of the stream whose counter is *state */
static inline QA_RNG_HD uint64_t qa_splitmix64(uint64_t *state) {
    *state += QA_SPLITMIX_GAMMA;
    return qa_mix64(*state);
}
#endif
