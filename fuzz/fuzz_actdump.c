/* fuzz_actdump.c — the activation-dump reader (io/actdump.c): a well-formed HDF5 file built from the input
 * program (fuzz/h5prog.h), opened, every layer of both pools read, the label words looked up. The first
 * input byte chooses whether the whole-file checksum file is written next to it. */
#include "fuzz_util.h"
#include "h5prog.h"
#include "io/actdump.h"
#include "io/h5util.h"
#include "common/qa_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    if (h5prog_write_input(data, size, "dump.h5", path, sizeof path)) return 0;
    qa_err e = {0};
    qa_actdump d;
    if (qa_actdump_open(&d, path, &e)) return 0;
    if (d.n * (int64_t)d.hidden <= (1 << 20)) {
        float *buf = malloc(sizeof(float) * (size_t)(d.n * d.hidden + 1));
        for (int p = 0; p < 2; p++)
            for (int l = 0; l <= d.n_layers && l < 64; l++) qa_actdump_read_layer(&d, p ? "mean" : "last", l, buf, &e);
        qa_actdump_read_layer(&d, "last", d.n_layers + 1, buf, &e);
        free(buf);
    }
    for (int64_t i = 0; i < d.n && i < 64; i++) {
        const qa_actdump_labelset *ls = qa_actdump_labels_of(&d, d.task[i]);
        qa_actdump_target_word(ls, d.lang[i], (int)d.gold[i]);
    }
    qa_actdump_close(&d);
    return 0;
}
