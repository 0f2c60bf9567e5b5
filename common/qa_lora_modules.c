/* qa_lora_modules.c — see qa_lora_modules.h. */
#include "common/qa_lora_modules.h"
#include "common/qa_mem.h"

#include <stdlib.h>
#include <string.h>

static const char *MOD_NAME[QA_LORA_N_MODULES] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"};

const char *qa_lora_module_name(int m) { return m >= 0 && m < QA_LORA_N_MODULES ? MOD_NAME[m] : "?"; }
const char *qa_lora_module_parent(int m) { return m <= QA_LORA_O ? "self_attn" : "mlp"; }
int qa_lora_module_from_name(const char *name) {
    for (int m = 0; m < QA_LORA_N_MODULES; m++) if (!strcmp(MOD_NAME[m], name)) return m;
    return -1;
}

int qa_lora_parse_modules(const char *list, unsigned *mask, qa_err *e) {
    *mask = 0;
    if (!strcmp(list, "all")) { *mask = QA_LORA_MASK_ALL; return 0; }
    char *s = qa_strdup(list), *save = NULL;
    for (char *tok = strtok_r(s, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int m = qa_lora_module_from_name(tok);
        if (m < 0) {
            QA_ERR(e, "unknown LoRA target module '%s' (use q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj "
                   "or all)", tok);
            free(s);
            return -1;
        }
        *mask |= QA_LORA_BIT(m);
    }
    free(s);
    if (!*mask) return QA_ERR(e, "empty LoRA target module list '%s'", list);
    return 0;
}
