/* test_dist_nccl.c — the "nccl" communicator on device buffers (CUDA builds; needs one GPU per rank).
 *
 *   mpirun -np <GPUs> test_dist_nccl
 * At world size 1 set QALIGN_NCCL_FORCE_COLLECTIVES=1 so the deterministic path (self send/recv,
 * cuBLAS tree, all-gather) runs anyway. Checks: deterministic F32 sum == host serial tree sum
 * bitwise; BF16 == the same tree rounded after each add; fast mode within 1e-6; barrier.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qa_mem.h"
#include "dist/dist.h"
#include "testutil.h"

#ifdef QALIGN_HAVE_NCCL
#include <cuda_runtime.h>

static float gen(int who, size_t i) {
    unsigned long long h = (unsigned long long)(who + 1) * 0x9e3779b97f4a7c15ull ^ (i * 0xbf58476d1ce4e5b9ull);
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 32;
    return ((float)(h & 0xffffff) / 16777216.0f - 0.5f) * (float)(1 << (h >> 60));
}

#define CK(call) do { cudaError_t _e = (call); if (_e != cudaSuccess) { \
    printf("CUDA: %s: %s\n", #call, cudaGetErrorString(_e)); return 1; } } while (0)

int main(int argc, char **argv) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        printf("no CUDA device: the NCCL test is skipped\n");
        return 77;
    }
    qa_dist_opts o;
    qa_dist_opts_default(&o);
    qa_dist *d;
    qa_err e = {0};
    if (qa_dist_init(&d, &argc, &argv, &o, &e)) { qa_err_print(&e); return 2; }
    int p = qa_dist_size(d), r = qa_dist_rank(d);
    qa_comm *c = NULL;
    if (qa_dist_nccl_comm(d, &c, &e)) qa_dist_abort(d, 1, "%s", e.msg);
    QT_CHECK(!strcmp(qa_comm_backend(c), "nccl") && qa_comm_on_device(c), "nccl comm on device buffers");
    size_t sizes[] = {1, 1000, 65537, 3407872 /* Mistral-7B r=8 q,v */};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *parts = qa_malloc((size_t)p * n * sizeof(float)), *h = qa_malloc(n * sizeof(float));
        double *ref = qa_calloc(n, sizeof(double));
        for (int q = 0; q < p; q++)
            for (size_t i = 0; i < n; i++) { parts[(size_t)q * n + i] = gen(q, i); ref[i] += gen(q, i); }
        float *dv;
        CK(cudaMalloc((void **)&dv, n * sizeof(float)));
        /* deterministic f32 */
        CK(cudaMemcpy(dv, parts + (size_t)r * n, n * sizeof(float), cudaMemcpyHostToDevice));
        qa_dist_set_mode(d, QA_DIST_DETERMINISTIC);
        qa_comm_allreduce_sum(c, dv, n, QA_DT_F32, "nccl-det");
        CK(cudaMemcpy(h, dv, n * sizeof(float), cudaMemcpyDeviceToHost));
        float *tree = qa_malloc((size_t)p * n * sizeof(float));
        memcpy(tree, parts, (size_t)p * n * sizeof(float));
        qa_dist_tree_sum_f32(tree, p, n);
        QT_CHECK(memcmp(h, tree, n * sizeof(float)) == 0, "np=%d n=%zu: nccl deterministic f32 == host tree, bitwise", p, n);
        /* fast f32 */
        CK(cudaMemcpy(dv, parts + (size_t)r * n, n * sizeof(float), cudaMemcpyHostToDevice));
        qa_dist_set_mode(d, QA_DIST_FAST);
        qa_comm_allreduce_sum(c, dv, n, QA_DT_F32, "nccl-fast");
        CK(cudaMemcpy(h, dv, n * sizeof(float), cudaMemcpyDeviceToHost));
        double err = qt_rel_err_f32_f64(h, ref, n);
        QT_CHECK(err < 1e-6, "np=%d n=%zu: nccl fast f32 rel err %.3g", p, n, err);
        /* deterministic bf16: the tree with a rounding after each add */
        uint16_t *hb = qa_malloc((size_t)p * n * 2), *out = qa_malloc(n * 2);
        for (size_t i = 0; i < (size_t)p * n; i++) hb[i] = qa_f32_to_bf16(parts[i]);
        CK(cudaMemcpy(dv, hb + (size_t)r * n, n * 2, cudaMemcpyHostToDevice));
        qa_dist_set_mode(d, QA_DIST_DETERMINISTIC);
        qa_comm_allreduce_sum(c, dv, n, QA_DT_BF16, "nccl-bf16");
        CK(cudaMemcpy(out, dv, n * 2, cudaMemcpyDeviceToHost));
        for (int s = 1; s < p; s *= 2)
            for (int i = 0; i + s < p; i += 2 * s)
                for (size_t j = 0; j < n; j++)
                    hb[(size_t)i * n + j] = qa_f32_to_bf16(qa_bf16_to_f32(hb[(size_t)i * n + j]) +
                                                           qa_bf16_to_f32(hb[(size_t)(i + s) * n + j]));
        QT_CHECK(memcmp(out, hb, n * 2) == 0, "np=%d n=%zu: nccl deterministic bf16 == host tree (round per add)", p, n);
        CK(cudaFree(dv));
        free(parts); free(h); free(ref); free(tree); free(hb); free(out);
    }
    qa_comm_barrier(c, "nccl-barrier");
    QT_CHECK(1, "nccl barrier returned");
    qa_comm_free(c);
    int64_t failed = qt_failed;
    qa_dist_allreduce_i64(d, &failed, 1, QA_DIST_SUM, "verdict");
    if (r == 0 && failed && !qt_failed) QT_CHECK(0, "%lld check(s) failed on other ranks", (long long)failed);
    int rc = r == 0 || qt_failed ? qt_finish() : 0;
    qa_dist_finalize(d);
    return rc;
}
#else
int main(void) {
    printf("built without NCCL\n");
    return 77;
}
#endif
