/* fuzz_yaml_config.c — the YAML configuration of `qalign train` (io/yaml_config.c with the schema of
 * train/train_config.c): loading, the cross-key rules, and the dump, which must load back. */
#include "fuzz_util.h"
#include "train/train_config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qa_train_config tc;
    qa_train_config_init(&tc);
    qa_err e = {0};
    if (qa_cfg_load_text(&tc.cfg, (const char *)data, size, "fuzz.yaml", &e) == 0) {
        qa_train_config_finish(&tc, &e);
        char *y = qa_train_config_dump(&tc, 0, 1), *j = qa_train_config_dump(&tc, 1, 0);
        qa_train_config t2;
        qa_train_config_init(&t2);
        if (qa_cfg_load_text(&t2.cfg, y, strlen(y), "dump.yaml", &e)) abort(); /* the dump loads back */
        qa_train_config_free(&t2);
        free(y);
        free(j);
    }
    qa_train_config_free(&tc);
    return 0;
}
