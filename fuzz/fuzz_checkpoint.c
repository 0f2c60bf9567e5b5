/* fuzz_checkpoint.c — the training checkpoint reader (io/checkpoint.c): a well-formed HDF5 file built
 * from the input program (fuzz/h5prog.h), opened and verified, and its state read as a resume would.
 * The first input byte chooses whether the whole-file checksum file is written next to it. */
#include "fuzz_util.h"
#include "h5prog.h"
#include "io/checkpoint.h"
#include "io/h5util.h"
#include "common/qa_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    if (h5prog_write_input(data, size, "step_00000002.h5", path, sizeof path)) return 0;
    qa_err e = {0};
    qa_ckpt *c = NULL;
    if (qa_ckpt_open(&c, path, &e)) return 0;
    const qa_ckpt_meta *m = qa_ckpt_meta_of(c);
    (void)m;
    /* read every dataset as stored, as ckpt-info and the adapter loader do */
    for (size_t i = 0; i < qa_ckpt_count(c); i++) {
        const qa_ckpt_info *t = qa_ckpt_at(c, i);
        if (t->numel > (1 << 16)) continue;
        void *buf = malloc((size_t)(t->numel ? t->numel : 1) * qa_ckpt_dtype_size(t->dtype));
        qa_ckpt_read(c, t->path, t->dtype, -1, NULL, buf, &e);
        free(buf);
    }
    /* a resume that expects one LoRA tensor of the first /lora dataset's shape */
    const qa_ckpt_info *first = NULL;
    for (size_t i = 0; i < qa_ckpt_count(c) && !first; i++)
        if (!strncmp(qa_ckpt_at(c, i)->path, "lora/", 5)) first = qa_ckpt_at(c, i);
    if (first && first->numel <= (1 << 16) && first->ndim <= 4) {
        float *w = malloc(sizeof(float) * (size_t)(first->numel ? first->numel : 1)), *mv = malloc(sizeof(float) * (size_t)(first->numel ? first->numel : 1)),
              *vv = malloc(sizeof(float) * (size_t)(first->numel ? first->numel : 1));
        qa_ckpt_tensor lt = {.name = first->path + 5, .dtype = QA_CKPT_F32, .ndim = first->ndim, .data = w};
        memcpy(lt.shape, first->shape, sizeof first->shape);
        float *ms[1] = {mv}, *vs[1] = {vv};
        qa_ckpt_state st = {.lora = &lt, .n_lora = 1, .adam_m = ms, .adam_v = vs};
        qa_ckpt_read_state(c, &st, &e);
        free(w); free(mv); free(vv);
    }
    qa_ckpt_close(c);
    return 0;
}
