/* ops.c — backend selection. */
#include "kernels/ops.h"

#include <stdio.h>
#include <string.h>

#ifdef QALIGN_HAVE_CUDA
const qa_ops *qa_ops_cuda(qa_err *e);      /* kernels/cuda: NULL + error when no device */
const qa_ops *qa_ops_cuda_fp32(qa_err *e); /* the same kernels with fp32 streams (verification) */
#endif
/* kernels/cuda/sim: the CUDA backend compiled for the CPU (libqa_cudasim). Only binaries that link it
 * (tests) define it; there it is the backend "cuda" (and "cuda-fp32"), whether or not a real one is compiled in. */
__attribute__((weak)) const qa_ops *qa_ops_cudasim(const char *name, qa_err *e);

const qa_ops *qa_ops_get(const char *name, qa_err *e) {
    if (!name || !strcmp(name, "cpu")) return qa_ops_cpu();
    if ((!strcmp(name, "cuda") || !strcmp(name, "cuda-fp32")) && qa_ops_cudasim) return qa_ops_cudasim(name, e);
    if (!strcmp(name, "cuda") || !strcmp(name, "cuda-fp32")) {
#ifdef QALIGN_HAVE_CUDA
        return name[4] ? qa_ops_cuda_fp32(e) : qa_ops_cuda(e);
#else
        QA_ERR(e, "backend '%s' is not compiled into this build (configure with -DQALIGN_CUDA=ON on a machine with the "
               "CUDA toolkit)", name);
        return NULL;
#endif
    }
    if (!strcmp(name, "emu")) return qa_ops_emu();
    QA_ERR(e, "unknown compute backend '%s' (use cpu, cuda, cuda-fp32, or emu: the emulated device of the tests)", name);
    return NULL;
}

const qa_ops *qa_ops_open(const char *device, int ordinal, char *desc, size_t desc_n, qa_err *e) {
    const qa_ops *ops;
    if (!device || !*device) device = "auto";
    if (!strcmp(device, "auto")) {
        qa_err ignore = {0};
        ops = NULL;
#ifdef QALIGN_HAVE_CUDA
        ops = qa_ops_cuda(&ignore);
#endif
        if (!ops) ops = qa_ops_cpu();
    } else if (!(ops = qa_ops_get(device, e))) {
        return NULL;
    }
    char sub[128] = "";
    if (ops->select_device && ops->select_device(ordinal < 0 ? 0 : ordinal, sub, sizeof sub, e)) return NULL;
    if (desc && desc_n) {
        if (sub[0]) snprintf(desc, desc_n, "%s (%s)", ops->name, sub);
        else snprintf(desc, desc_n, "%s", ops->name);
    }
    return ops;
}
