/* fuzz_peft.c — a PEFT adapter directory (io/peft.c): adapter_config.json and adapter_model.safetensors
 * against a fixed small base config. Input: u16 length L, L bytes of adapter_config.json, then the
 * safetensors file. */
#include "fuzz_util.h"
#include "io/hf_config.h"
#include "io/peft.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t L = (size_t)data[0] | (size_t)data[1] << 8;
    if (L > size - 2) L = size - 2;
    const char *dir = fz_dir();
    fz_write(dir, "adapter_config.json", data + 2, L);
    fz_write(dir, "adapter_model.safetensors", data + 2 + L, size - 2 - L);
    qa_hf_config c;
    qa_hf_config_defaults(&c, QA_ARCH_LLAMA);
    c.hidden = 64; c.n_layers = 3; c.n_heads = 4; c.n_kv_heads = 2; c.head_dim = 16; c.intermediate = 160;
    c.vocab = 384;
    qa_hf_config_finish(&c);
    qa_peft_adapter a;
    qa_err e = {0};
    if (qa_peft_load(&a, dir, &c, &e) == 0) {
        (void)qa_peft_scaling(&a);
        qa_peft_free(&a);
    }
    char *s = fz_cstr(data + 2, L);
    qa_peft_config pc;
    qa_peft_config_parse(&pc, s, "adapter_config.json", &e);
    free(s);
    return 0;
}
