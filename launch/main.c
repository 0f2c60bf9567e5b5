/* main.c — the qalign command line: `qalign <subcommand> [options]`, `qalign <subcommand> --help`. */
#include "launch/commands.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#ifndef QALIGN_VERSION
#define QALIGN_VERSION "dev"
#endif

static const qa_command COMMANDS[] = {
    /* one line per subcommand; keep them in the order of the workflow */
    {"version", "print the version", cmd_version},
    {"tokenize", "text <-> token ids with a Hugging Face tokenizer.json (JSON lines on stdin)", cmd_tokenize},
    {"forward", "run the model on token ids: last-position logits, hidden states, logit lens", cmd_forward},
    {"ckpt-info", "verify training checkpoints and show what a resume restores", cmd_ckpt_info},
    {"train", "LoRA-tune a model on question-alignment data (YAML config, --set, --dry-run)", cmd_train},
    {"export-peft", "write a training checkpoint's adapter as a PEFT adapter directory", cmd_export_peft},
    {"merge", "merge a LoRA adapter into the base weights: a model directory that loads like the original", cmd_merge},
    {"eval", "few-shot evaluation: emotion, SNLI, PAWS in 20 languages (results.json/.md, predictions)", cmd_eval},
    {"eval-compare", "a before/after accuracy table of two evaluations (Markdown, Table-1 layout)", cmd_eval_compare},
    {"lens", "logit lens of activation dumps: latent English vs target language per layer (CSV, HDF5, PNG/SVG)",
     cmd_lens},
    {"pca", "PCA of per-layer representations by language and Pearson r of PC1 between language pairs", cmd_pca},
    {"loss-curve", "the training and validation loss of a run (metrics.jsonl) as CSV and PNG/SVG", cmd_loss_curve},
    {"label-tokens", "the paper's label-token set of each word for a tokenizer (JSON arrays of ids)", cmd_label_tokens},
    {"sweep", "a grid of trainings (models x language mixes x seeds x axes) under Slurm or locally: plan, submit, "
              "status, report", cmd_sweep},
    {"info", "describe a model directory: architecture, parameters, storage, memory estimates", cmd_info},
    {"init-model", "write a randomly initialized model directory in the Hugging Face layout", cmd_init_model},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f,
            "qalign %s — question-alignment LoRA training, multilingual evaluation and analysis\n\n"
            "usage: qalign <command> [options]      (qalign <command> --help for its options)\n\ncommands:\n",
            QALIGN_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("qalign %s\n", QALIGN_VERSION);
    return 0;
}

int main(int argc, char **argv) {
    /* a file-size limit (ulimit -f) makes write() fail with EFBIG, reported like any write error,
     * instead of killing the process without a word */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { printf("qalign %s\n", QALIGN_VERSION); return 0; }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qalign: error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
