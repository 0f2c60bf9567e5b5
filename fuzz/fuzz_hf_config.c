/* fuzz_hf_config.c — config.json of a model (io/hf_config.c): architecture, sizes, RoPE, windows; a
 * config that parses is written back and parsed again. */
#include "fuzz_util.h"
#include "io/hf_config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = fz_cstr(data, size);
    qa_hf_config c;
    qa_err e = {0};
    if (qa_hf_config_parse(&c, s, "config.json", &e) == 0) {
        (void)qa_hf_config_param_count(&c);
        qa_hf_tensor_spec *specs = NULL;
        if (c.n_layers <= 64) {
            size_t n = qa_hf_tensor_specs(&c, &specs);
            (void)n;
            free(specs);
        }
        char path[600];
        snprintf(path, sizeof path, "%s/config.json", fz_dir());
        if (qa_hf_config_write(&c, path, &e) == 0) {
            qa_hf_config c2;
            if (qa_hf_config_load(&c2, path, &e)) abort(); /* what qalign writes, qalign reads */
        }
    }
    free(s);
    return 0;
}
