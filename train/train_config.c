/* train_config.c — the `qalign train` schema; see train_config.h. */
#include "train/train_config.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define K(name, type, member, dflt, help, ...) \
    {name, type, offsetof(qa_train_config, member), dflt, help, __VA_ARGS__}

#define LORA_MODULES "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"

static const qa_cfg_key KEYS[] = {
    K("model.path", QA_CFG_STRING, model.path, "",
      "HF checkpoint directory (config.json, *.safetensors, tokenizer.json)", NULL, NULL),
    K("model.device", QA_CFG_STRING, model.device, "auto", "where the model runs (auto: cuda when a GPU is usable, "
      "else cpu; cuda-fp32: the CUDA kernels in fp32, for verification; emu: the emulated device of the tests)",
      "auto|cpu|cuda|cuda-fp32|emu", NULL),
    K("model.quant", QA_CFG_STRING, model.quant, "none",
      "base projections: as stored, or NF4 4-bit quantized at load (QLoRA: frozen NF4 base, fp32 LoRA)",
      "none|nf4|nf4-dq", NULL),
    K("tokenizer.path", QA_CFG_STRING, tokenizer.path, "", "tokenizer.json (empty: model.path/tokenizer.json; not used with data.template none)",
      NULL, NULL),

    K("data.files", QA_CFG_LIST, data.files, "",
      "training files: JSON arrays of {\"input\", \"answer\"} or pre-tokenized {\"input_ids\", \"labels\"}, mixed in this order", NULL, NULL),
    K("data.val_fraction", QA_CFG_FLOAT, data.val_fraction, "0.05",
      "share of the mixed records held out for validation (ceil(frac*n))", NULL, "[0,1)"),
    K("data.max_examples", QA_CFG_INT, data.max_examples, "0",
      "keep only the first N records of each file (0 = all)", NULL, "[0,)"),
    K("data.template", QA_CFG_STRING, data.template_name, "qwen",
      "prompt template: a name in configs/templates (qwen, mistral, vanilla), a .yaml path, or none (pre-tokenized data only; no tokenizer)", NULL, NULL),
    K("data.cutoff", QA_CFG_INT, data.cutoff, "2048",
      "max tokens per example; longer ones are cut proportionally between prompt and response", NULL, "[1,)"),
    K("data.packing", QA_CFG_BOOL, data.packing, "true",
      "pack several examples into one row (attention and positions stay per example)", NULL, NULL),
    K("data.pack_length", QA_CFG_INT, data.pack_length, "0", "row length when packing (0 = data.cutoff)", NULL,
      "[0,)"),
    K("data.padding_free", QA_CFG_BOOL, data.padding_free, "false",
      "lay each micro-batch's rows end to end in one row (attention and positions stay per example): no padding "
      "is computed; the same examples and loss, rounding apart", NULL, NULL),
    K("data.shuffle_seed", QA_CFG_INT, data.shuffle_seed, "-1",
      "seed of the validation split and the epoch shuffles (-1 = train.seed)", NULL, "[-1,)"),

    K("lora.targets", QA_CFG_LIST, lora.targets, "q_proj,v_proj", "projections that get LoRA adapters",
      LORA_MODULES, NULL),
    K("lora.r", QA_CFG_INT, lora.r, "8", "LoRA rank", NULL, "[1,)"),
    K("lora.alpha", QA_CFG_FLOAT, lora.alpha, "16", "LoRA alpha (scaling = alpha / r)", NULL, "(0,1000000]"),
    K("lora.dropout", QA_CFG_FLOAT, lora.dropout, "0", "dropout on the LoRA input", NULL, "[0,1)"),
    K("lora.init_adapter", QA_CFG_STRING, lora.init_adapter, "",
      "PEFT adapter directory to start from (empty: A Kaiming-uniform, B = 0)", NULL, NULL),

    K("train.epochs", QA_CFG_INT, train.epochs, "3", "passes over the training split", NULL, "[0,)"),
    K("train.max_steps", QA_CFG_INT, train.max_steps, "0", "optimizer steps (0 = from train.epochs)", NULL,
      "[0,)"),
    K("train.micro_batch", QA_CFG_INT, train.micro_batch, "4", "rows per forward/backward on each rank", NULL,
      "[1,)"),
    K("train.grad_accum", QA_CFG_INT, train.grad_accum, "4",
      "micro-batches per optimizer step, counted over all ranks (a multiple of the rank count)", NULL, "[1,)"),
    K("train.fuse_micro_batches", QA_CFG_BOOL, train.fuse_micro_batches, "false",
      "compute a rank's micro-batches of a step as one forward/backward (fewer, larger GEMMs), each micro-batch's "
      "loss still its own token mean: the same step, rounding apart (memory: that many rows at once)", NULL, NULL),
    K("train.lr", QA_CFG_FLOAT, train.lr, "5e-5", "peak learning rate (AdamW)", NULL, "[0,10]"),
    K("train.weight_decay", QA_CFG_FLOAT, train.weight_decay, "0", "AdamW decoupled weight decay", NULL, "[0,)"),
    K("train.warmup_ratio", QA_CFG_FLOAT, train.warmup_ratio, "0.1",
      "linear warmup over ceil(ratio * total steps) steps", NULL, "[0,1]"),
    K("train.schedule", QA_CFG_STRING, train.schedule, "cosine", "learning-rate decay after warmup (to 0)",
      "cosine|linear|constant", NULL),
    K("train.max_grad_norm", QA_CFG_FLOAT, train.max_grad_norm, "1.0", "clip the global gradient norm (0 = off)",
      NULL, "[0,)"),
    K("train.seed", QA_CFG_INT, train.seed, "42", "seed of the LoRA init (and of the data unless data.shuffle_seed)",
      NULL, "[0,)"),
    K("train.eval_every", QA_CFG_INT, train.eval_every, "50", "optimizer steps between validation passes (0 = never)",
      NULL, "[0,)"),
    K("train.log_every", QA_CFG_INT, train.log_every, "10", "optimizer steps between log lines", NULL, "[1,)"),
    K("train.threads", QA_CFG_INT, train.threads, "0",
      "CPU threads per rank (0 = the node's cores / ranks on the node; also --threads N)", NULL, "[0,)"),

    K("checkpoint.dir", QA_CFG_STRING, checkpoint.dir, "runs/train",
      "run directory: resumable checkpoints, logs, the final adapter", NULL, NULL),
    K("checkpoint.every", QA_CFG_INT, checkpoint.every, "500",
      "optimizer steps between resumable checkpoints (0 = only at the end)", NULL, "[0,)"),
    K("checkpoint.keep_last", QA_CFG_INT, checkpoint.keep_last, "2", "checkpoints kept (0 = all)", NULL, "[0,)"),
    K("checkpoint.keep_best", QA_CFG_BOOL, checkpoint.keep_best, "true",
      "keep the checkpoint of the lowest validation loss in RUN_DIR/best (whatever keep_last removes) and export "
      "RUN_DIR/adapter-best at the end, as the paper's load_best_model_at_end", NULL, NULL),

    K("eval.every", QA_CFG_INT, eval.every, "0",
      "optimizer steps between multilingual evaluations of the adapter (0 = never; docs/evaluation.md)", NULL, "[0,)"),
    K("eval.at_end", QA_CFG_BOOL, eval.at_end, "false", "evaluate the final adapter after the last step", NULL, NULL),
    K("eval.tasks", QA_CFG_LIST, eval.tasks, "emotion,snli,paws", "tasks of the evaluation", NULL, NULL),
    K("eval.langs", QA_CFG_LIST, eval.langs, "all", "languages of the evaluation (all = the 20 of tasks.json)", NULL,
      NULL),
    K("eval.limit", QA_CFG_INT, eval.limit, "0", "first N items of each (task, language); 0 = all", NULL, "[0,)"),
    K("eval.gold", QA_CFG_STRING, eval.gold, "corrected", "gold labels: corrected or paper (docs/evaluation.md)",
      "corrected|paper", NULL),
    K("eval.data_dir", QA_CFG_STRING, eval.data_dir, "assets/paper-data", "directory with tasks.json and the test files",
      NULL, NULL),
    K("log.tensorboard", QA_CFG_BOOL, log.tensorboard, "false",
      "also write TensorBoard event files (the metrics.jsonl scalars, evaluations) to RUN_DIR/tensorboard", NULL, NULL),
};

const qa_cfg_key *qa_train_config_keys(int *n) {
    *n = (int)(sizeof KEYS / sizeof KEYS[0]);
    return KEYS;
}

void qa_train_config_init(qa_train_config *tc) {
    memset(tc, 0, sizeof *tc);
    int n;
    const qa_cfg_key *k = qa_train_config_keys(&n);
    qa_cfg_init(&tc->cfg, k, n, tc);
    tc->config_path = qa_strdup("");
}

int qa_train_config_load(qa_train_config *tc, const char *path, qa_err *e) {
    QA_TRY(qa_cfg_load_file(&tc->cfg, path, e));
    free(tc->config_path);
    tc->config_path = qa_strdup(path);
    return 0;
}

int qa_train_config_set(qa_train_config *tc, const char *assignment, qa_err *e) {
    return qa_cfg_set(&tc->cfg, assignment, e);
}

static int set_derived(qa_train_config *tc, const char *key, const char *value, const char *why, qa_err *e) {
    QA_TRY(qa_cfg_set_value(&tc->cfg, key, value, why, e));
    return 0;
}

int qa_train_config_finish(qa_train_config *tc, qa_err *e) {
    char buf[64];
    if (!*tc->model.path)
        return QA_ERR(e, "model.path is not set; give the HF checkpoint directory (--set model.path=DIR)");
    if (tc->data.files.n == 0)
        return QA_ERR(e, "data.files is empty; list the training JSON files (--set data.files=a.json,b.json)");
    if (tc->lora.targets.n == 0) return QA_ERR(e, "lora.targets is empty; name at least one projection (q_proj,v_proj)");
    if (!*tc->tokenizer.path && strcmp(tc->data.template_name, "none") != 0) {
        char *p = qa_path_join(tc->model.path, "tokenizer.json");
        int rc = set_derived(tc, "tokenizer.path", p, "derived from model.path", e);
        free(p);
        QA_TRY(rc);
    }
    if (tc->data.pack_length == 0) {
        snprintf(buf, sizeof buf, "%d", tc->data.cutoff);
        QA_TRY(set_derived(tc, "data.pack_length", buf, "derived from data.cutoff", e));
    }
    if (tc->data.packing && tc->data.pack_length < tc->data.cutoff)
        return QA_ERR(e, "data.pack_length (%d, %s) is shorter than data.cutoff (%d, %s); an example must fit in a row",
                      tc->data.pack_length, qa_cfg_origin(&tc->cfg, "data.pack_length"), tc->data.cutoff,
                      qa_cfg_origin(&tc->cfg, "data.cutoff"));
    if (tc->data.shuffle_seed < 0) {
        snprintf(buf, sizeof buf, "%d", tc->train.seed);
        QA_TRY(set_derived(tc, "data.shuffle_seed", buf, "derived from train.seed", e));
    }
    if (tc->train.epochs == 0 && tc->train.max_steps == 0)
        return QA_ERR(e, "train.epochs and train.max_steps are both 0; set one of them");
    for (int i = 0; i < tc->lora.targets.n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(tc->lora.targets.v[i], tc->lora.targets.v[j]))
                return QA_ERR(e, "lora.targets (%s) names '%s' twice", qa_cfg_origin(&tc->cfg, "lora.targets"),
                              tc->lora.targets.v[i]);
    return 0;
}

char *qa_train_config_dump(const qa_train_config *tc, int format, int with_origin) {
    return qa_cfg_dump(&tc->cfg, format, with_origin);
}

void qa_train_config_free(qa_train_config *tc) {
    qa_cfg_free(&tc->cfg);
    free(tc->config_path);
    tc->config_path = NULL;
}
