/* api.cpp — the one symbol the CUDA simulator library exports: the CUDA backend's tables, compiled for the
 * CPU. kernels/ops.c looks it up (a weak reference) when a binary links this library (tests). */
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "kernels/ops.h"
}
#include <string.h>

extern "C" const qa_ops *qa_ops_cuda(qa_err *e);      /* kernels/cuda/ops_cuda.cu, translated */
extern "C" const qa_ops *qa_ops_cuda_fp32(qa_err *e); /* its verification mode (fp32 streams) */

extern "C" __attribute__((visibility("default"))) const qa_ops *qa_ops_cudasim(const char *name, qa_err *e) {
    if (!strcmp(name, "cuda")) return qa_ops_cuda(e);
    if (!strcmp(name, "cuda-fp32")) return qa_ops_cuda_fp32(e);
    QA_ERR(e, "backend '%s' is not in the CUDA simulator (it has: cuda, cuda-fp32)", name);
    return NULL;
}
