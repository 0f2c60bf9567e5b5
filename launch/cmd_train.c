/* cmd_train.c — `qalign train`: LoRA training from a YAML config with --set overrides.
 *
 * Configuration: schema defaults (the paper's recipe, train/train_config.c) < --config files in order
 * < --set key=value in order. --dry-run resolves everything a run needs (config, model config.json,
 * tokenizer, template, the tokenized/split/packed data), prints it with step counts and the memory the
 * run allocates per rank (qa_model_memory_estimate), and exits (train_dry_run). Otherwise run_training
 * starts the ranks (dist/) and runs the loop of train/train.h.
 *
 * Exit codes: 0 ok, 1 runtime error (bad data, missing files), 2 usage or configuration error.
 */
#include "launch/commands.h"
#include "launch/args.h"

#include "common/qa_err.h"
#include "io/hf_config.h"
#include "io/peft.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "train/mem_estimate.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "train/data.h"
#include "train/train_config.h"
#include "dist/dist.h"
#include "train/train.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: qalign train --config FILE [--config FILE2 ...] [--set key=value ...] [--dry-run]\n"
            "       qalign train --help-config\n\n"
            "LoRA-tune a Hugging Face model on question-alignment data (JSON arrays of {\"input\", \"answer\"},\n"
            "or pre-tokenized {\"input_ids\", \"labels\"} with data.template none; docs/training.md).\n"
            "  --config FILE       YAML config (nested mappings or dotted keys); later files override earlier ones\n"
            "  --set key=value     override one key after the files (lists: a,b or [a, b]); repeatable\n"
            "  --threads N         CPU threads per rank, as --set train.threads=N (0: the node's cores / ranks on it)\n"
            "  --device NAME       auto, cpu, cuda, cuda-fp32 or emu, as --set model.device=NAME (--backend: an old\n"
            "                      name)\n"
            "  --quant Q           none, nf4 or nf4-dq, as --set model.quant=Q (QLoRA: NF4 base, fp32 LoRA)\n"
            "  --dry-run           print the resolved config, data counts, steps and a memory estimate; then exit\n"
            "  --world-size N      ranks assumed by --dry-run (train.grad_accum must be a multiple; default: the\n"
            "                      MPI launcher's OMPI_COMM_WORLD_SIZE / PMI_SIZE, else 1)\n"
            "  --print-config      print the resolved config as YAML (--json: as JSON) and exit\n"
            "  --help-config       list every key with its type, default and meaning\n"
            "  -h, --help          this help\n"
            "Defaults are the paper's recipe: LoRA q_proj,v_proj r=8 alpha=16 dropout 0, AdamW lr 5e-5, 3 epochs,\n"
            "micro-batch 4 x grad-accum 4, 10%% warmup + cosine, clip 1.0, seed 42, 5%% validation, cutoff 2048.\n");
}

static double gib(double b) { return b / (1024.0 * 1024.0 * 1024.0); }

static int world_from_env(const char **src) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) {
            *src = vars[i];
            return atoi(v);
        }
    }
    *src = "default";
    return 1;
}

/* Per-rank memory of training tc on model config c, rows of row_len tokens, on backend ops: the bytes the
 * run's allocations make (train/mem_estimate.h: qa_model_memory_estimate for the trainer's micro-batch). */
static void print_memory(const qa_train_config *tc, const qa_hf_config *c, int row_len, int world, const qa_ops *ops) {
    qa_train_mem m;
    qa_err e = {0};
    if (qa_train_mem_estimate(tc, c, row_len, world, ops, &m, &e)) {
        fprintf(stderr, "qalign: warning: no memory estimate: %s\n", e.msg);
        return;
    }
    const qa_mem_estimate *x = &m.est;
    printf("\nmemory estimate per rank (micro-batch %d x %d tokens, %s backend, what the allocations make): %.2f GiB\n",
           m.B, m.T, ops->name, gib((double)x->total));
    const char *how = x->weights_from_config ? " (from config.json: 2 bytes a parameter; no checkpoint read)"
                      : x->weights_mapped    ? " (views of the mmap'd checkpoint)"
                                             : " (uploaded once)";
    if (m.quant != QA_QUANT_NONE)
        printf("  base weights     %8.3f GiB  %12zu bytes  frozen, projections as %s (4-bit codes + fp32 absmax per "
               "64)%s\n", gib((double)x->weights), x->weights, qa_quant_name(m.quant), how);
    else
        printf("  base weights     %8.3f GiB  %12zu bytes  frozen, as the backend holds them%s\n", gib((double)x->weights),
               x->weights, how);
    printf("  LoRA             %8.3f GiB  %12zu bytes  %lld params: f32 weights and grads\n", gib((double)x->lora),
           x->lora, (long long)m.lora_params);
    printf("  AdamW m, v       %8.3f GiB  %12zu bytes  f32\n", gib((double)x->optimizer), x->optimizer);
    printf("  activations      %8.3f GiB  %12zu bytes  the workspace: %d layers of saved tensors, logits of %d rows, "
           "gradient scratch\n", gib((double)x->activations), x->activations, c->n_layers, m.logit_rows);
    printf("  (not counted: the gradient tree of several micro-batches per rank and the all-reduce buffers, each at most "
           "%lld floats a level; host bookkeeping)\n", (long long)m.lora_params);
}

/* What the run would refuse, refused by --dry-run too: a checkpoint.dir that cannot be a directory qalign
 * writes into, a missing lora.init_adapter (the device is opened by train_dry_run itself). The weights
 * are not read: a dry run plans a model from its config.json alone. 0 = fine. */
static int dry_run_refusals(const qa_train_config *tc) {
    qa_err e = {0};
    /* checkpoint.dir: an existing directory we may write to, or creatable under its nearest existing parent */
    char *d = qa_strdup(tc->checkpoint.dir);
    int ok = 1;
    for (;;) {
        struct stat st;
        if (stat(d, &st) == 0) {
            ok = S_ISDIR(st.st_mode) && access(d, W_OK | X_OK) == 0;
            break;
        }
        char *slash = strrchr(d, '/');
        if (!slash) { ok = access(".", W_OK | X_OK) == 0; break; }
        if (slash == d) { ok = access("/", W_OK | X_OK) == 0; break; }
        *slash = 0;
    }
    if (!ok) {
        fprintf(stderr, "qalign train: error: checkpoint.dir %s (%s) cannot be created or written: %s is not a writable "
                        "directory\n", tc->checkpoint.dir, qa_cfg_origin(&tc->cfg, "checkpoint.dir"), d);
        free(d);
        return 1;
    }
    free(d);
    if (tc->lora.init_adapter && tc->lora.init_adapter[0]) {
        char *cj = qa_path_join(tc->lora.init_adapter, "adapter_config.json");
        qa_peft_config pc;
        int rc = qa_peft_config_load(&pc, cj, &e);
        free(cj);
        if (rc) {
            qa_err_prefix(&e, "lora.init_adapter (%s)", qa_cfg_origin(&tc->cfg, "lora.init_adapter"));
            qa_err_print(&e);
            return 1;
        }
    }
    return 0;
}

/* The dry run: everything a run resolves, printed; no model weights are read (the safetensors header only). */
static int train_dry_run(const qa_train_config *tc, int world, const char *world_src) {
    char *y = qa_train_config_dump(tc, QA_CFG_YAML, 1);
    printf("# resolved configuration (comments: where a value came from)\n%s\n", y);
    free(y);

    qa_train_inputs in;
    qa_err e = {0};
    if (tc->train.grad_accum % world) {
        fprintf(stderr, "qalign: error: train.grad_accum = %d (%s) micro-batches per step over all ranks is not "
                        "divisible by the %d ranks; use a multiple of %d\n", tc->train.grad_accum,
                qa_cfg_origin(&tc->cfg, "train.grad_accum"), world, world);
        return 2;
    }
    if (qa_train_inputs_load(&in, tc, &e)) {
        qa_err_print(&e);
        return 1;
    }
    printf("model: %s (%s, %d layers, hidden %d, vocab %d)\n", tc->model.path, in.hf.model_type, in.hf.n_layers,
           in.hf.hidden, in.hf.vocab);
    char dev[160];
    const qa_ops *ops = qa_ops_open(tc->model.device, 0, dev, sizeof dev, &e);
    if (!ops) {
        fprintf(stderr, "qalign: error: model.device %s (%s): %s\n", tc->model.device,
                qa_cfg_origin(&tc->cfg, "model.device"), e.msg);
        qa_train_inputs_free(&in);
        return 2;
    }
    printf("device: %s (model.device %s, %s; each rank uses its node-local index modulo the visible GPUs)\n", dev,
           tc->model.device, qa_cfg_origin(&tc->cfg, "model.device"));
    if (in.has_template) {
        printf("tokenizer: %s (%d ids)\n", tc->tokenizer.path, (int)qa_tok_vocab_size(in.tok));
        printf("template: %s (%s); end token %d '%s'%s\n", in.tpl.name, in.template_path, (int)in.tpl.end_id,
               qa_tok_id_to_token(in.tok, in.tpl.end_id) ? qa_tok_id_to_token(in.tok, in.tpl.end_id) : "?",
               in.tpl.bos_id >= 0 ? ", BOS first" : "");
    } else {
        printf("tokenizer: none (data.template none: pre-tokenized data, ids checked against vocab_size %d)\n",
               in.hf.vocab);
    }
    printf("\ndata (read and tokenized in %.2f s):\n", in.seconds);
    qa_data_print_stats(&in.data, stdout);

    /* train.grad_accum counts micro-batches over all ranks: the plan does not depend on world */
    qa_train_plan p;
    qa_train_plan_compute(&p, in.data.rows[QA_SPLIT_TRAIN].n_rows, tc->train.micro_batch, tc->train.grad_accum, 1,
                          tc->train.epochs, tc->train.max_steps, tc->train.warmup_ratio);
    printf("\nsteps (world size %d, %s):\n", world, world_src);
    printf("  rows per optimizer step   %lld (micro-batch %d x grad-accum %d, over all ranks; %d micro-batches per "
           "rank)\n", (long long)p.rows_per_step, tc->train.micro_batch, tc->train.grad_accum,
           tc->train.grad_accum / world);
    if (tc->data.padding_free)
        printf("  micro-batch layout        padding-free: the rows end to end in one row, no padding computed\n");
    if (tc->train.fuse_micro_batches)
        printf("  fused micro-batches       a rank's %d micro-batches as one forward/backward of %d rows, each "
               "micro-batch's loss its own token mean\n", tc->train.grad_accum / world, qa_train_rows_per_pass(tc, world));
    printf("  steps per epoch           %lld (%lld training rows%s)\n", (long long)p.steps_per_epoch,
           (long long)p.rows_per_epoch, tc->data.packing ? ", packed" : ", one example each");
    printf("  total steps               %lld (%s)\n", (long long)p.total_steps,
           tc->train.max_steps ? "train.max_steps" : "train.epochs x steps per epoch");
    printf("  epochs                    %d\n", p.epochs);
    printf("  warmup steps              %lld (ceil(%g x total)), then %s to 0\n", (long long)p.warmup_steps,
           tc->train.warmup_ratio, tc->train.schedule);
    if (tc->train.eval_every)
        printf("  validation passes         %lld (every %d steps, %lld rows each)\n",
               (long long)(p.total_steps / tc->train.eval_every), tc->train.eval_every,
               (long long)in.data.rows[QA_SPLIT_VAL].n_rows);
    if (tc->checkpoint.every)
        printf("  checkpoints               %lld (every %d steps) + the end, in %s\n",
               (long long)(p.total_steps / tc->checkpoint.every), tc->checkpoint.every, tc->checkpoint.dir);
    else
        printf("  checkpoints               at the end only, in %s\n", tc->checkpoint.dir);

    int one, row_len; /* tokens per row: a micro-batch of one row has the row length, padding-free or not */
    qa_data_batch_shape(&in.data, 1, &one, &row_len);
    print_memory(tc, &in.hf, row_len, world, ops);
    qa_train_inputs_free(&in);
    return 0;
}

/* The real run: ranks from the MPI launcher (one rank without it), then the loop of train/train.h. */
static int run_training(const qa_train_config *tc, int *argc, char ***argv) {
    qa_err e = {0};
    qa_dist *d = NULL;
    qa_dist_opts o;
    qa_dist_opts_default(&o);
    if (qa_dist_init(&d, argc, argv, &o, &e)) { qa_err_print(&e); return 1; }
    qa_train_result res;
    int rc = 0;
    if (qa_train_run(tc, d, &res, &e)) {
        qa_err_print(&e);
        /* every rank leaves qa_train_run together on setup errors; anything else must not leave a
         * peer waiting in a collective: end the whole job now, non-zero */
        if (qa_dist_size(d) > 1) qa_dist_abort(d, 1, "training failed: %s", e.msg);
        rc = 1;
    }
    qa_dist_finalize(d);
    return rc;
}

int cmd_train(int argc, char **argv) {
    qa_train_config tc;
    qa_train_config_init(&tc);
    qa_err e = {0};
    int dry = 0, print_cfg = 0, json = 0, world = 0, rc = 0;
    const char **sets = calloc((size_t)argc + 1, sizeof(char *));
    char **owned = calloc((size_t)argc + 1, sizeof(char *)); /* --threads / --device as their --set */
    int n_sets = 0, n_owned = 0, n_configs = 0;
    if (!sets || !owned) {
        fprintf(stderr, "qalign train: error: out of memory parsing %d arguments\n", argc);
        rc = 1;
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
#define OPT(name) (!strcmp(a, name) ? (i + 1 < argc ? (val = argv[++i], 1) : -1) \
                   : !strncmp(a, name "=", strlen(name) + 1) ? (val = a + strlen(name) + 1, 1) : 0)
        int m;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            train_usage(stdout);
            goto done;
        } else if (!strcmp(a, "--help-config")) {
            printf("qalign train configuration keys (YAML: nested mappings or dotted names; --set key=value):\n");
            qa_cfg_print_help(&tc.cfg, stdout);
            goto done;
        } else if (!strcmp(a, "--dry-run")) {
            dry = 1;
        } else if (!strcmp(a, "--print-config")) {
            print_cfg = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if ((m = OPT("--config"))) {
            if (m < 0) goto missing;
            if (qa_train_config_load(&tc, val, &e)) { qa_err_print(&e); rc = 2; goto done; }
            n_configs++;
        } else if ((m = OPT("--set"))) {
            if (m < 0) goto missing;
            sets[n_sets++] = val;
        } else if ((m = OPT("--threads")) || (m = OPT("--device")) || (m = OPT("--backend")) || (m = OPT("--quant"))) {
            /* shorthands, applied in their place among the --set: --threads N = --set train.threads=N,
             * --device NAME (--backend: its old name) = --set model.device=NAME, --quant Q = --set model.quant=Q */
            if (m < 0) goto missing;
            const char *key = !strncmp(a, "--threads", 9) ? "train.threads"
                              : !strncmp(a, "--quant", 7) ? "model.quant"
                                                          : "model.device";
            size_t len = strlen(key) + strlen(val) + 2;
            char *kv = malloc(len);
            if (!kv) {
                fprintf(stderr, "qalign train: error: out of memory parsing %s\n", a);
                rc = 1;
                goto done;
            }
            snprintf(kv, len, "%s=%s", key, val);
            owned[n_owned++] = kv;
            sets[n_sets++] = kv;
        } else if ((m = OPT("--world-size"))) {
            if (m < 0) goto missing;
            long long w;
            if (qa_arg_int("train", "--world-size", val, 1, 1 << 20, &w)) {
                rc = 2;
                goto done;
            }
            world = (int)w;
        } else {
            fprintf(stderr, "qalign train: error: unknown option '%s' (qalign train --help)\n", a);
            rc = 2;
            goto done;
        }
        continue;
    missing:
        fprintf(stderr, "qalign train: error: %s needs a value\n", a);
        rc = 2;
        goto done;
#undef OPT
    }
    for (int i = 0; i < n_sets; i++)
        if (qa_train_config_set(&tc, sets[i], &e)) { qa_err_print(&e); rc = 2; goto done; }
    if (n_configs == 0 && n_sets == 0) {
        fprintf(stderr, "qalign train: error: give a --config FILE (and/or --set key=value)\n\n");
        train_usage(stderr);
        rc = 2;
        goto done;
    }
    if (qa_train_config_finish(&tc, &e)) { qa_err_print(&e); rc = 2; goto done; }
    if (print_cfg) {
        char *s = qa_train_config_dump(&tc, json ? QA_CFG_JSON : QA_CFG_YAML, !json);
        fputs(s, stdout);
        free(s);
        goto done;
    }
    if (dry) {
        const char *src = "--world-size";
        if (!world) world = world_from_env(&src);
        rc = dry_run_refusals(&tc);
        if (!rc) rc = train_dry_run(&tc, world, src);
        goto done;
    }
    rc = run_training(&tc, &argc, &argv);
done:
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(sets);
    qa_train_config_free(&tc);
    return rc;
}
