/* commands.h — the qalign subcommands. Each lives in launch/cmd_<name>.c (ckpt-info in cmd_ckpt_info.c,
 * eval-compare in cmd_eval_compare.c, ...; export-peft and merge share cmd_adapter.c, version is in main.c)
 * and returns the process exit code (0 ok, 1 runtime error, 2 usage error). */
#ifndef QA_COMMANDS_H
#define QA_COMMANDS_H
typedef struct qa_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} qa_command;

int cmd_version(int argc, char **argv);
int cmd_export_peft(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_eval_compare(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_ckpt_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_label_tokens(int argc, char **argv);
int cmd_lens(int argc, char **argv);
int cmd_pca(int argc, char **argv);
int cmd_loss_curve(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_init_model(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
#endif
