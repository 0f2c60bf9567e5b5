/* run_checks.h — checks the trainer makes before it trusts its inputs: that every rank runs the same
 * configuration on the same data, that a checkpoint's restored state fits the data and the model, and
 * that a run actually trained. Each is called from one place in the trainer (trainer.c, run_state.c).
 */
#ifndef QA_RUN_CHECKS_H
#define QA_RUN_CHECKS_H
#include "common/qa_err.h"
#include "dist/dist.h"
#include "io/checkpoint.h"
#include "train/data.h"
#include "train/train_config.h"
#include <stddef.h>
#include <stdint.h>

/* Collective, at the start of a run: each rank hashes its resolved configuration (every key of
 * tc->cfg except train.threads, which may follow the node's cores) and the contents of its data
 * files and of model.path/config.json, and compares with rank 0. When any rank differs, every rank
 * returns -1; rank 0's message names the first differing key, the lowest rank that differs and both
 * values ("rank 1: train.eval_every = 5, rank 0 has 10"). A world of one rank returns 0 at once. */
int qa_train_config_agree(const qa_train_config *tc, qa_dist *d, qa_err *e);

/* The lines that are hashed (exposed for tests): "key=value" per config key, then
 * "data.files[i] contents=size N crc32c X" and "model.path/config.json contents=..." (a file that
 * cannot be read gives "unreadable"). Appended to out. */
void qa_train_config_lines(const qa_train_config *tc, qa_strlist *out);

/* A short content id of a model directory: FNV-1a 64 over config.json and the header of every
 * safetensors file ("fnv1a64:0123456789abcdef"); the same model copied elsewhere has the same id. */
void qa_train_model_id(const char *model_dir, char *out, size_t cap);

/* Rank 0, before a resume: every restored field must fit this run. cursor in [0, rows of an epoch],
 * epoch and step consistent (an epoch takes at least one step), skipped and AdamW steps at most the
 * step. An error names the checkpoint and the field. A checkpoint written for another base model
 * (model_id differs from its base_model_id) only warns on stderr: the shapes already matched. */
int qa_train_resume_check(const qa_ckpt_meta *m, const char *ckpt_path, const qa_train_plan *plan,
                          const char *model_id, qa_err *e);

/* Rank 0, after a checkpoint's state was read: every LoRA weight and AdamW moment is finite (the store
 * keeps any bits; a NaN adapter would only train into NaN). An error names the tensor. m / v may be NULL. */
int qa_train_resume_check_state(const qa_ckpt_tensor *lora, float *const *m, float *const *v, size_t n,
                                const char *ckpt_path, qa_err *e);

/* After the loop: a run whose every step was skipped (non-finite loss or gradients) trained
 * nothing; that is an error (it would otherwise write the unchanged adapter and exit 0). */
int qa_train_check_skips(int64_t steps_run, int64_t skipped_run, qa_err *e);
#endif
