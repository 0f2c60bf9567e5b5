/* ops.c — backend selection. */
#include "kernels/ops.h"

#include <string.h>

#ifdef QALIGN_HAVE_CUDA
const qa_ops *qa_ops_cuda(qa_err *e); /* kernels/cuda: NULL + error when no device */
#endif

const qa_ops *qa_ops_get(const char *name, qa_err *e) {
    if (!name || !strcmp(name, "cpu")) return qa_ops_cpu();
    if (!strcmp(name, "cuda")) {
#ifdef QALIGN_HAVE_CUDA
        return qa_ops_cuda(e);
#else
        QA_ERR(e, "backend 'cuda' is not compiled into this build (configure with -DQALIGN_CUDA=ON)");
        return NULL;
#endif
    }
    QA_ERR(e, "unknown compute backend '%s' (use cpu or cuda)", name);
    return NULL;
}
