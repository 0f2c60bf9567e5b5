/* fuzz_dataset.c — a training data file (train/data.c): JSON records, text or pre-tokenized; a file that
 * reads and is pre-tokenized is built into a dataset (cut, split, packing, padding-free) and every row is
 * batched. The first byte holds the options: bit 0 packing, 1 a vocab bound, 2 a validation split, 3-6 the
 * cutoff, 7 padding-free. Every batch must carry exactly n_targets loss labels, each -100 or a token id. */
#include "fuzz_util.h"
#include "model/model.h"
#include "train/data.h"

#include <stdlib.h>

/* the loss labels the model reads agree with the batch's count of targets and hold only -100 or ids */
static void check_batch(const qa_microbatch *mb, int vocab) {
    int64_t n = 0;
    for (int64_t t = 0; t < (int64_t)mb->B * mb->T; t++) {
        int32_t l = mb->loss_labels[t];
        if (l == QA_IGNORE_INDEX) continue;
        if (l < 0 || (vocab > 0 && l >= vocab)) abort();
        n++;
    }
    if (n != mb->n_targets) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *p = fz_file(0, data + 1, size - 1);
    qa_record *r = NULL;
    int64_t n = 0;
    qa_err e = {0};
    if (qa_data_read_file(p, data[0] & 3 ? 0 : 3, &r, &n, &e)) return 0;
    int tokens = n > 0 && qa_record_is_tokens(&r[0]);
    if (tokens) {
        qa_record *recs[1] = {r};
        int64_t nr[1] = {n};
        const char *files[1] = {p};
        qa_data_opts o = {.files = files, .n_files = 1, .val_fraction = (data[0] & 4) ? 0.25 : 0,
                          .seed = data[0], .cutoff = 1 + ((data[0] >> 3) & 15), .packing = data[0] & 1,
                          .pack_length = 40, .padding_free = data[0] >> 7, .threads = 1,
                          .vocab = (data[0] & 2) ? 1000 : 0, .pad_id = 0};
        qa_dataset d;
        if (qa_data_build_records(&d, &o, NULL, NULL, recs, nr, &e) == 0) {
            for (int s = 0; s < 2; s++) {
                int cap_B, cap_T;
                qa_data_batch_shape(&d, 2, &cap_B, &cap_T);
                qa_microbatch mb;
                qa_microbatch_alloc(&mb, cap_B, cap_T);
                for (int64_t k = 0; k < d.rows[s].n_rows; k += 2) {
                    int64_t ids[2] = {k, k + 1 < d.rows[s].n_rows ? k + 1 : k};
                    qa_data_fill_batch(&d, s, ids, 2, &mb);
                    check_batch(&mb, o.vocab);
                    qa_batch v;
                    qa_microbatch_view(&mb, &v);
                }
                qa_microbatch_free(&mb);
            }
            int64_t *order = malloc(sizeof(int64_t) * (size_t)(d.rows[0].n_rows + 1));
            qa_data_epoch_order(&d, 1, order);
            free(order);
            qa_data_free(&d);
        }
    }
    qa_records_free(r, n);
    return 0;
}
