/* fuzz_peft.c — a PEFT adapter directory (io/peft.c): adapter_config.json and adapter_model.safetensors
 * against a fixed small base model (3 layers, hidden 64, 4 heads and 2 KV heads of 16, MLP 160: the
 * shapes qa_lora_peft_shape gives its config). Input: u16 length L, L bytes of adapter_config.json,
 * then the safetensors file. */
#include "fuzz_util.h"
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
    /* in / out features of q, k, v, o, gate, up, down */
    static const qa_peft_shape sh = {3, {64, 64, 64, 64, 64, 64, 160}, {64, 32, 32, 64, 160, 160, 64}};
    qa_peft_adapter a;
    qa_err e = {0};
    if (qa_peft_load(&a, dir, &sh, &e) == 0) {
        (void)qa_peft_scaling(&a);
        qa_peft_free(&a);
    }
    char *s = fz_cstr(data + 2, L);
    qa_peft_config pc;
    qa_peft_config_parse(&pc, s, "adapter_config.json", &e);
    free(s);
    return 0;
}
