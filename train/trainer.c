/* trainer.c — qa_train_run: data → LoRA steps over ranks → checkpoints → PEFT adapter: the loop. The step is
 * step.c, the run state (checkpoints, resume, metrics) run_state.c (trainer_internal.h).
 * The contract (global batch, determinism, run directory) is in train/train.h. */
#include "train/trainer_internal.h"

#include "common/qa_clock.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "train/run_checks.h"
#include "eval/report_tb.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONSECUTIVE_SKIPS 5

void qa_train__log(const qa_trainer *t, const char *fmt, ...) {
    if (!t->coord) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("qalign: ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

static void fmt_hms(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, n, "--:--:--"); return; }
    long x = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", x / 3600, (x / 60) % 60, x % 60);
}

/* ---- setup ------------------------------------------------------------------------------------ */

static int lora_modules_from_config(const qa_train_config *tc, unsigned *mask, qa_err *e) {
    *mask = 0;
    for (size_t i = 0; i < tc->lora.targets.n; i++) {
        int m = qa_lora_module_from_name(tc->lora.targets.v[i]);
        if (m < 0)
            return QA_ERR(e, "lora.targets: unknown module '%s' (known: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)",
                          tc->lora.targets.v[i]);
        *mask |= QA_LORA_BIT(m);
    }
    if (!*mask) return QA_ERR(e, "lora.targets is empty: name at least one projection, e.g. q_proj,v_proj");
    return 0;
}

/* ---- the run ------------------------------------------------------------------------------------ */

static void trainer_free(qa_trainer *t) {
    if (t->metrics) fclose(t->metrics);
    qa_tb_close(t->tb, NULL);
    if (t->acts_ready) qa_acts_free(&t->acts);
    qa_microbatch_free(&t->mb);
    qa_dist_tree_free(&t->tree);
    if (t->comm_owned) qa_comm_free(t->comm);
    free(t->mirror);
    if (t->lora_ready) qa_lora_free(&t->l);
    if (t->ds_built) qa_data_free(&t->ds);
    if (t->tpl_loaded) qa_template_free(&t->tpl);
    if (t->model_loaded) qa_model_free(&t->m);
    if (t->suite) qa_eval_suite_free(t->suite);
    if (t->tok) qa_tok_free(t->tok);
    for (size_t i = 0; i < t->n_ck; i++) free(t->ck_names[i]);
    free(t->ck_names); free(t->ck_lora); free(t->ck_m); free(t->ck_v);
    free(t->order); free(t->loss_hist); free(t->config_yaml);
}

/* The setup that may fail on one rank only (a missing file): agree before the first collective
 * that depends on it, so a bad input ends every rank with the message instead of a hang. */
static int agree(qa_trainer *t, int rc, const char *what, qa_err *e) {
    int ok = qa_dist_all_true(t->d, rc == 0, what);
    if (ok) return 0;
    if (rc != 0) return -1; /* e holds this rank's message */
    return QA_ERR(e, "rank %d: another rank failed during %s (see its message)", t->rank, what);
}

/* The paper's evaluation of the current adapter on every rank (eval/), results by rank 0 under
 * RUN_DIR/eval/step_N/ and the averages as one metrics.jsonl line. */
static char *join_list(const qa_strlist *l) {
    size_t n = 1;
    for (int i = 0; i < l->n; i++) n += strlen(l->v[i]) + 1;
    char *s = qa_calloc(n, 1);
    for (int i = 0; i < l->n; i++) {
        if (i) strcat(s, ",");
        strcat(s, l->v[i]);
    }
    return s;
}

static void eval_log(void *ctx, const char *line) {
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

static int run_mleval(qa_trainer *t, qa_err *e) {
    const qa_train_config *tc = t->tc;
    qa_eval_run_opts o;
    qa_eval_run_opts_default(&o);
    char adapter_id[128];
    snprintf(adapter_id, sizeof adapter_id, "training step %lld (%s)", (long long)t->step, tc->checkpoint.dir);
    o.model_id = tc->model.path;
    o.adapter_id = adapter_id;
    o.log = t->coord ? eval_log : NULL;
    qa_eval_results r;
    qa_dist_note(t->d, "multilingual evaluation");
    double t0 = qa_now_s();
    if (qa_eval_run(t->suite, &t->m, &t->l, t->tok, t->d, &o, &r, e)) return qa_err_prefix(e, "rank %d: evaluation at step %lld", t->rank, (long long)t->step);
    int rc = 0;
    if (t->coord) {
        char sub[64];
        snprintf(sub, sizeof sub, "eval/step_%08lld", (long long)t->step);
        char *dir = qa_path_join(tc->checkpoint.dir, sub);
        rc = qa_eval_write(&r, dir, e);
        if (!rc) {
            qa_sbuf ml = {0};
            qa_sb_printf(&ml, "{\"step\":%lld,\"eval\":{", (long long)t->step);
            for (int k = 0; k < qa_eval_n_tasks(t->suite); k++)
                qa_sb_printf(&ml, "%s\"%s\":%.6f", k ? "," : "", qa_eval_task_name(t->suite, k), r.task_avg[k]);
            qa_sb_printf(&ml, "},\"eval_dir\":\"%s\"}\n", sub);
            rc = qa_train__metrics_line(t, &ml, e);
            if (!rc && t->tb) rc = qa_eval_write_tensorboard(&r, dir, t->tb, t->step, e);
            printf("step %lld | evaluation written to %s (%.1f s):", (long long)t->step, dir, qa_now_s() - t0);
            for (int k = 0; k < qa_eval_n_tasks(t->suite); k++)
                printf(" %s %.1f%%", qa_eval_task_name(t->suite, k), 100 * r.task_avg[k]);
            printf("\n");
            fflush(stdout);
        }
        free(dir);
    }
    qa_eval_results_free(&r);
    return rc;
}

int qa_train_run(const qa_train_config *tc, qa_dist *d, qa_train_result *res, qa_err *e) {
    qa_trainer T;
    memset(&T, 0, sizeof T);
    qa_trainer *t = &T;
    memset(res, 0, sizeof *res);
    res->resumed_from = -1;
    res->last_val_loss = NAN;
    t->tc = tc;
    t->d = d;
    t->rank = qa_dist_rank(d);
    t->world = qa_dist_size(d);
    t->coord = qa_dist_is_coordinator(d);
    t->order_epoch = -1;
    t->ckpt_step = -1;
    t->t_start = qa_now_s();
    int rc = 0;
    if ((rc = qa_train_config_agree(tc, d, e))) goto out;

    const int threads = qa_dist_cpu_threads(d, tc->train.threads);

    t->ops = qa_ops_open(tc->model.device, qa_dist_local_rank(d), t->device_desc, sizeof t->device_desc, e);
    if ((rc = agree(t, t->ops ? 0 : qa_err_prefix(e, "rank %d: model.device", t->rank), "compute device", e))) goto out;
    t->K = tc->train.grad_accum;
    if (t->K % t->world != 0) {
        rc = QA_ERR(e, "train.grad_accum = %d micro-batches per step (over all ranks) is not divisible by the %d ranks; "
                    "use a multiple of %d", t->K, t->world, t->world);
        goto out;
    }
    t->k_lo = t->rank * (t->K / t->world);
    t->k_hi = t->k_lo + t->K / t->world;
    t->shuffle_seed = (uint64_t)(int64_t)tc->data.shuffle_seed;

    /* model, tokenizer, template, data (data.template none: pre-tokenized data, no tokenizer) */
    double t0 = qa_now_s();
    int no_template = qa_template_is_none(tc->data.template_name);
    qa_quant quant = QA_QUANT_NONE;
    const qa_stream_opts so = {.threads = threads}; /* the CPU backend's pool for this rank */
    rc = qa_quant_parse(tc->model.quant, &quant, e);
    if (!rc) rc = qa_model_load_ex(&t->m, tc->model.path, t->ops, &so, quant, e);
    if (!rc) t->model_loaded = 1;
    if (!rc && t->coord) qa_train_model_id(tc->model.path, t->model_id, sizeof t->model_id);
    if (!rc && !no_template && (rc = qa_tok_load(&t->tok, tc->tokenizer.path, e)))
        qa_err_prefix(e, "tokenizer.path (for pre-tokenized data only, data.template: none needs no tokenizer)");
    if (!rc && !no_template) {
        char *tp = NULL;
        rc = qa_template_find(tc->data.template_name, tc->config_path, &tp, e);
        if (!rc) {
            rc = qa_template_load(&t->tpl, tp, t->tok, t->m.cfg.bos_token_id, t->m.cfg.eos_token_id, e);
            if (!rc) t->tpl_loaded = 1;
        }
        if (!rc && t->tpl.end_id >= t->m.cfg.vocab)
            rc = QA_ERR(e, "template %s: end token id %d is outside the vocab_size %d of model %s", tp,
                        (int)t->tpl.end_id, t->m.cfg.vocab, tc->model.path);
        free(tp);
    }
    if (!rc) {
        qa_data_opts o;
        qa_data_opts_from_config(&o, tc);
        qa_data_opts_for_model(&o, &t->m.cfg);
        rc = qa_data_build(&t->ds, &o, t->tpl_loaded ? &t->tpl : NULL, t->tok, e);
        if (!rc) t->ds_built = 1;
    }
    if (!rc && (tc->eval.every > 0 || tc->eval.at_end)) {
        if (!t->tok) {
            rc = QA_ERR(e, "eval.every / eval.at_end need a tokenizer, but data.template is none (pre-tokenized data): "
                        "set tokenizer.path and a template, or turn the evaluation off");
        } else {
            char *tasks = join_list(&tc->eval.tasks), *langs = join_list(&tc->eval.langs);
            qa_eval_selection sel = {.data_dir = tc->eval.data_dir, .tasks = tasks, .langs = langs, .limit = tc->eval.limit};
            rc = qa_eval_gold_parse(tc->eval.gold, &sel.gold, e);
            if (!rc) rc = qa_eval_suite_load(&t->suite, &sel, e);
            if (rc) qa_err_prefix(e, "eval.* (the evaluation during training)");
            free(tasks);
            free(langs);
        }
    }
    if ((rc = agree(t, rc, "setup (tokenizer, model, template, data)", e))) goto out;
    if (t->coord) {
        qa_train__log(t, "model %s: %s, %d layers, hidden %d, vocab %d (loaded in %.1f s) on %s", tc->model.path,
               t->m.cfg.model_type, t->m.cfg.n_layers, t->m.cfg.hidden, t->m.cfg.vocab, qa_now_s() - t0, t->device_desc);
        qa_data_print_stats(&t->ds, stdout);
    }
    if (t->ds.rows[QA_SPLIT_TRAIN].n_rows == 0) {
        rc = QA_ERR(e, "no training rows: data.files give %lld examples, all held out for validation", (long long)t->ds.n);
        goto out;
    }

    qa_train_plan_compute(&t->plan, t->ds.rows[QA_SPLIT_TRAIN].n_rows, tc->train.micro_batch, t->K, 1,
                          tc->train.epochs, tc->train.max_steps, tc->train.warmup_ratio);
    t->order = qa_malloc((size_t)t->plan.rows_per_epoch * sizeof *t->order);

    /* LoRA */
    unsigned mask;
    if ((rc = lora_modules_from_config(tc, &mask, e))) goto out;
    if (tc->lora.init_adapter && tc->lora.init_adapter[0]) {
        rc = qa_lora_load_peft(&t->l, &t->m, tc->lora.init_adapter, e);
        if (!rc) {
            t->lora_ready = 1;
            if (t->l.modules != mask || t->l.r != tc->lora.r || fabs(t->l.alpha - tc->lora.alpha) > 1e-6 * fabs(tc->lora.alpha))
                rc = QA_ERR(e, "lora.init_adapter %s has r=%d alpha=%g and other target modules than the config "
                            "(lora.r=%d lora.alpha=%g lora.targets): make them agree", tc->lora.init_adapter, t->l.r,
                            (double)t->l.alpha, tc->lora.r, tc->lora.alpha);
            t->l.dropout = (float)tc->lora.dropout;
        }
    } else {
        rc = qa_lora_init(&t->l, &t->m, mask, tc->lora.r, (float)tc->lora.alpha, (float)tc->lora.dropout, e);
        if (!rc) {
            t->lora_ready = 1;
            qa_lora_init_params(&t->l, (uint64_t)(int64_t)tc->train.seed);
        }
    }
    if ((rc = agree(t, rc, "LoRA setup", e))) goto out;
    qa_train__ckpt_tables(t);
    if ((rc = agree(t, qa_train__reduction_setup(t, e), "gradient all-reduce setup", e))) goto out;

    int cap_B, cap_T;
    t->pass_rows = qa_train_rows_per_pass(tc, t->world);
    qa_data_batch_shape(&t->ds, t->pass_rows, &cap_B, &cap_T);
    qa_microbatch_alloc(&t->mb, cap_B, cap_T);
    int logit_rows = qa_train_logit_rows(cap_B, cap_T);
    rc = qa_acts_alloc(&t->acts, &t->m, &t->l, cap_B, cap_T, QA_ACTS_TRAIN, logit_rows, e);
    if (!rc) t->acts_ready = 1;
    else if (tc->train.fuse_micro_batches)
        qa_err_prefix(e, "rank %d: the activation workspace for %d fused micro-batches of %d rows (%d x %d tokens) on %s "
                      "(set train.fuse_micro_batches false, or lower train.micro_batch)", t->rank, t->K / t->world,
                      tc->train.micro_batch, cap_B, cap_T, t->device_desc);
    else qa_err_prefix(e, "rank %d: the activation workspace for train.micro_batch %d (%d x %d tokens) on %s (lower "
                       "train.micro_batch and raise train.grad_accum to keep the global batch, or lower data.pack_length "
                       "/ data.cutoff)", t->rank, tc->train.micro_batch, cap_B, cap_T, t->device_desc);
    if ((rc = agree(t, rc, "activation workspace", e))) goto out;

    /* run directory */
    if (t->coord) {
        rc = qa_mkdir_p(tc->checkpoint.dir, e);
        if (!rc) {
            t->config_yaml = qa_train_config_dump(tc, QA_CFG_YAML, 0);
            char *p = qa_path_join(tc->checkpoint.dir, "config.yaml");
            rc = qa_write_file_atomic(p, t->config_yaml, strlen(t->config_yaml), e);
            free(p);
        }
    }
    if ((rc = agree(t, rc, "run directory", e))) goto out;

    int64_t resumed;
    if ((rc = qa_train__resume(t, &resumed, e))) goto out;
    res->resumed_from = resumed;
    if ((rc = agree(t, qa_train__metrics_open(t, e), "metrics.jsonl", e))) goto out;
    if ((rc = qa_best_init(&t->best, d, tc->checkpoint.dir, tc->checkpoint.keep_best && tc->train.eval_every > 0 &&
                           t->ds.rows[QA_SPLIT_VAL].n_rows > 0, t->step, e))) goto out;

    const int64_t total = t->plan.total_steps;
    qa_train__log(t, "training: %lld steps (%lld per epoch, %d epoch(s)), warmup %lld, %d ranks x %d micro-batches of %d rows "
           "per step%s, %zu LoRA parameters (r=%d, alpha=%g), %d thread(s) per rank%s",
           (long long)total, (long long)t->plan.steps_per_epoch, t->plan.epochs, (long long)t->plan.warmup_steps,
           t->world, t->K / t->world, tc->train.micro_batch, tc->train.fuse_micro_batches ? " (fused: one pass)" : "",
           t->l.n_params, t->l.r, (double)t->l.alpha, threads, resumed >= 0 ? " (resumed)" : "");

    double t_loop = qa_now_s();
    int consecutive_skips = 0;
    int64_t start_step = t->step, start_skipped = t->skipped;
    while (t->step < total) {
        if (qa_dist_agree_stop(d)) {
            /* a stop right after a checkpoint.every step (or the resume) finds that step committed already */
            if (t->ckpt_step == t->step) {
                qa_train__log(t, "stop requested (signal): the checkpoint of step %lld is committed; exiting", (long long)t->step);
            } else {
                qa_train__log(t, "stop requested (signal): committing a checkpoint at step %lld and exiting", (long long)t->step);
                if ((rc = qa_train__checkpoint(t, e))) goto out;
            }
            res->stopped = 1;
            break;
        }
        double ts = qa_now_s();
        double loss = 0, gnorm = 0;
        int64_t ntok = 0;
        int skipped = 0;
        if ((rc = agree(t, qa_train__step(t, &loss, &ntok, &gnorm, &skipped, e), "training step", e))) goto out;
        t->step++;
        qa_train__hist_push(t, loss);
        double lr_used = qa_lr_at(tc->train.schedule, tc->train.lr, t->step - 1, t->plan.warmup_steps, total);
        if (skipped) {
            consecutive_skips++;
            qa_train__log(t, "step %lld: non-finite loss or gradient (loss %g, grad norm %g): step skipped (%lld so far)",
                   (long long)t->step, loss, gnorm, (long long)t->skipped);
            if (consecutive_skips >= MAX_CONSECUTIVE_SKIPS) {
                rc = QA_ERR(e, "%d consecutive optimizer steps had non-finite gradients (last at step %lld): lower "
                            "train.lr or check the data", consecutive_skips, (long long)t->step);
                goto out;
            }
        } else {
            consecutive_skips = 0;
        }
        t->steps_this_run++;
        t->tokens_this_run += ntok;
        if (t->steps_this_run == 1) res->first_loss = loss;
        res->last_loss = loss;
        double el = qa_now_s() - t_loop, step_s = qa_now_s() - ts;
        double tps = el > 0 ? t->tokens_this_run / el : 0;
        double eta = t->steps_this_run ? el / t->steps_this_run * (double)(total - t->step) : 0;
        if (t->coord) {
            qa_sbuf ml = {0};
            qa_sb_printf(&ml,
                    "{\"step\":%lld,\"epoch\":%d,\"loss\":%.17g,\"lr\":%.17g,\"grad_norm\":%.17g,\"tokens\":%lld,"
                    "\"tokens_per_s\":%.1f,\"step_time_s\":%.4f,\"comm_s\":%.5f,\"wall_time\":%.3f,\"world_size\":%d,"
                    "\"skipped\":%d}\n",
                    (long long)t->step, t->epoch, loss, lr_used, gnorm, (long long)ntok, tps, step_s, t->comm_s,
                    qa_now_s() - t->t_start, t->world, skipped);
            rc = qa_train__metrics_line(t, &ml, e);
            if (tc->train.log_every > 0 && (t->step % tc->train.log_every == 0 || t->step == total || t->step == start_step + 1)) {
                char eb[32], tb[32];
                fmt_hms(eb, sizeof eb, eta);
                fmt_hms(tb, sizeof tb, el);
                printf("step %lld/%lld | epoch %d | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | elapsed %s | ETA %s\n",
                       (long long)t->step, (long long)total, t->epoch + 1, loss, lr_used, gnorm, tps, tb, eb);
                fflush(stdout);
            }
        }
        if ((rc = agree(t, rc, "writing metrics.jsonl", e))) goto out;
        if (tc->train.eval_every > 0 && t->ds.rows[QA_SPLIT_VAL].n_rows > 0 &&
            (t->step % tc->train.eval_every == 0 || t->step == total)) {
            double vl = NAN;
            if ((rc = agree(t, qa_train__validate(t, &vl, e), "validation", e))) goto out;
            res->last_val_loss = vl;
            if (t->coord) {
                qa_sbuf ml = {0};
                qa_sb_printf(&ml, "{\"step\":%lld,\"val_loss\":%.17g,\"val_tokens\":%lld}\n", (long long)t->step, vl,
                        (long long)t->ds.rows[QA_SPLIT_VAL].n_label_tokens);
                rc = qa_train__metrics_line(t, &ml, e);
                printf("step %lld/%lld | validation loss %.4f\n", (long long)t->step, (long long)total, vl);
                fflush(stdout);
            }
            if ((rc = agree(t, rc, "writing metrics.jsonl", e))) goto out;
            qa_best_observe(&t->best, d, t->step, vl);
        }
        if (t->suite && tc->eval.every > 0 && t->step % tc->eval.every == 0 && t->step < total) {
            if ((rc = agree(t, run_mleval(t, e), "multilingual evaluation", e))) goto out;
        }
        if (tc->checkpoint.every > 0 && t->step % tc->checkpoint.every == 0 && t->step < total) {
            if ((rc = qa_train__checkpoint(t, e))) goto out;
        }
        if (qa_best_pending(&t->best)) { /* a new lowest validation loss: its checkpoint is kept in RUN_DIR/best */
            if (!qa_best_have_checkpoint(&t->best, d, t->step, t->last_ckpt) && (rc = qa_train__checkpoint(t, e))) goto out;
            if ((rc = qa_best_pin(&t->best, d, t->last_ckpt, e))) goto out;
        }
    }
    res->steps_done = t->step;
    res->skipped_steps = t->skipped;
    if (res->stopped) goto out;
    if ((rc = qa_train_check_skips(t->steps_this_run, t->skipped - start_skipped, e))) goto out;

    /* the end: a final checkpoint (resumable, e.g. to extend max_steps) and the PEFT adapter */
    if (t->steps_this_run == 0 && resumed >= 0)
        qa_train__log(t, "the checkpoint is already at step %lld of %lld: nothing to train (raise train.max_steps or "
               "train.epochs to continue); writing the adapter", (long long)t->step, (long long)total);
    else if ((rc = qa_train__checkpoint(t, e))) goto out;
    if (t->coord) {
        char *ad = qa_path_join(tc->checkpoint.dir, "adapter");
        rc = qa_lora_save_peft_base(&t->l, &t->m, tc->model.path, ad, e);
        if (!rc) qa_train__log(t, "adapter written: %s (PEFT layout; load it with PeftModel.from_pretrained or qalign eval --adapter)", ad);
        free(ad);
    }
    if (!rc && t->coord) rc = qa_best_export(&t->best, &t->m, t->step, e); /* RUN_DIR/adapter-best */
    rc = agree(t, rc, "adapter export", e);
    if (!rc && t->suite && (tc->eval.at_end || (tc->eval.every > 0 && t->step % tc->eval.every == 0)))
        rc = agree(t, run_mleval(t, e), "multilingual evaluation", e);
    if (!rc && t->steps_this_run)
        qa_train__log(t, "done: %lld steps, loss %.4f -> %.4f, %.0f tokens/s over %.1f s", (long long)t->step, res->first_loss,
               res->last_loss, (qa_now_s() - t_loop) > 0 ? t->tokens_this_run / (qa_now_s() - t_loop) : 0.0, qa_now_s() - t_loop);
out:
    trainer_free(t);
    return rc ? -1 : 0;
}
