/* cmd_ckpt_info.c — `qalign ckpt-info CKPT_OR_RUN_DIR`: verify checkpoints and show what a resume
 * would restore. Exit 0 when the file (or at least one checkpoint of the run) is valid, 1 otherwise. */
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/checkpoint.h"
#include "launch/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qalign ckpt-info [--all] [--brief] CKPT_OR_RUN_DIR\n\n"
            "Verify qalign training checkpoints (HDF5: format, every dataset's fletcher32 and crc32c, the file\n"
            "checksum) and print what a resume restores.\n\n"
            "  CKPT_OR_RUN_DIR  a checkpoint file (checkpoints/step_N.h5), a run directory (its checkpoints/\n"
            "                   are listed newest first, with the one `qalign train` would resume from), or a\n"
            "                   checkpoints/ directory itself\n"
            "  --all            also list the AdamW moments (/optim/m, /optim/v) of a file\n"
            "  --brief          no tensor list\n\n"
            "Exit status: 0 valid (a run: some checkpoint is valid), 1 corrupt / none, 2 usage.\n");
}

static void shape_str(char *buf, size_t n, const qa_ckpt_info *t) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static void print_file(qa_ckpt *c, int all, int brief) {
    const qa_ckpt_meta *m = qa_ckpt_meta_of(c);
    printf("%s\n", qa_ckpt_path(c));
    printf("  step %lld  epoch %lld  cursor %lld (examples of this epoch, all ranks)  tokens_seen %lld\n", (long long)m->step,
           (long long)m->epoch, (long long)m->cursor, (long long)m->tokens_seen);
    printf("  optimizer step %lld  skipped steps %lld  shuffle_seed %llu  world_size %d\n", (long long)m->optim_step,
           (long long)m->skipped_steps, (unsigned long long)m->shuffle_seed, m->world_size);
    printf("  lora r %d  alpha %g  target_modules", m->lora_r, m->lora_alpha);
    for (size_t i = 0; i < m->n_target_modules; i++) printf("%s%s", i ? "," : " ", m->target_modules[i]);
    printf("\n  base_model %s (%s)\n", m->base_model, m->base_model_id);
    printf("  created %s by qalign %s\n", m->created_utc, m->qalign_version);
    size_t n = qa_ckpt_count(c), n_lora = 0, n_optim = 0;
    double bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const qa_ckpt_info *t = qa_ckpt_at(c, i);
        bytes += (double)t->numel * (double)qa_ckpt_dtype_size(t->dtype);
        if (!strncmp(t->path, "lora/", 5)) n_lora++;
        if (!strncmp(t->path, "optim/", 6)) n_optim++;
    }
    printf("  tensors: %zu datasets (%zu LoRA, %zu AdamW moments), %.1f MiB\n", n, n_lora, n_optim, bytes / 1048576.0);
    if (!brief) {
        for (size_t i = 0; i < n; i++) {
            const qa_ckpt_info *t = qa_ckpt_at(c, i);
            if (!all && !strncmp(t->path, "optim/", 6)) continue;
            char sh[128];
            shape_str(sh, sizeof sh, t);
            printf("    %-8s %-18s crc32c %08x  %s\n", qa_ckpt_dtype_name(t->dtype), sh, t->crc32c, t->path);
        }
        if (!all && n_optim) printf("    (%zu /optim datasets not shown: --all)\n", n_optim);
    }
    printf("  checksum %08x ok (%zu datasets verified: fletcher32, crc32c, file checksum)\n", m->checksum, n);
}

static int info_dir(const char *arg, int all, int brief) {
    char *sub = qa_ckpt_dir(arg);
    char *dir = qa_is_dir(sub) ? sub : qa_strdup(arg);
    if (dir != sub) free(sub);
    qa_ckpt_entry *v = NULL;
    size_t n = 0;
    qa_err e = {0};
    if (qa_ckpt_list(dir, &v, &n, &e)) { qa_err_print(&e); free(dir); return 1; }
    if (!n) {
        fprintf(stderr, "qalign: error: no checkpoints in %s (expected checkpoints/step_N.h5)\n", dir);
        free(dir);
        return 1;
    }
    printf("%s\n", dir);
    char *lp = qa_path_join(dir, "latest"), *latest = NULL;
    size_t ll;
    if (qa_read_file(lp, 4096, &latest, &ll, &e) == 0) {
        while (ll && (latest[ll - 1] == '\n' || latest[ll - 1] == '\r')) latest[--ll] = 0;
        printf("  latest -> %s\n", latest);
    } else {
        printf("  latest: none\n");
    }
    qa_ckpt *resume = NULL;
    for (size_t k = n; k-- > 0;) {
        const char *base = strrchr(v[k].path, '/') + 1;
        if (v[k].tmp) {
            printf("  %-28s incomplete temporary (interrupted save; ignored)\n", base);
            continue;
        }
        qa_ckpt *c = NULL;
        qa_err ce = {0};
        if (qa_ckpt_open(&c, v[k].path, &ce)) {
            printf("  %-28s corrupt: %s\n", base, ce.msg);
            continue;
        }
        const qa_ckpt_meta *m = qa_ckpt_meta_of(c);
        printf("  %-28s ok  step %lld  epoch %lld  cursor %lld  created %s\n", base, (long long)m->step, (long long)m->epoch,
               (long long)m->cursor, m->created_utc);
        if (!resume) resume = c;
        else qa_ckpt_close(c);
    }
    int rc = 0;
    if (resume) {
        printf("resume from: %s\n", strrchr(qa_ckpt_path(resume), '/') + 1);
        print_file(resume, all, brief);
        qa_ckpt_close(resume);
    } else {
        printf("no valid checkpoint in %s: every one is corrupt; `qalign train` would stop\n", dir);
        rc = 1;
    }
    free(latest);
    free(lp);
    qa_ckpt_list_free(v, n);
    free(dir);
    return rc;
}

int cmd_ckpt_info(int argc, char **argv) {
    int all = 0, brief = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--all")) all = 1;
        else if (!strcmp(argv[i], "--brief")) brief = 1;
        else if (argv[i][0] == '-' && argv[i][1]) { fprintf(stderr, "qalign ckpt-info: unknown option %s\n\n", argv[i]); usage(stderr); return 2; }
        else if (!path) path = argv[i];
        else { fprintf(stderr, "qalign ckpt-info: one path only\n\n"); usage(stderr); return 2; }
    }
    if (!path) { usage(stderr); return 2; }
    if (!qa_path_exists(path)) {
        fprintf(stderr, "qalign: error: %s does not exist\n", path);
        return 1;
    }
    if (qa_is_dir(path)) return info_dir(path, all, brief);
    qa_ckpt *c = NULL;
    qa_err e = {0};
    if (qa_ckpt_open(&c, path, &e)) {
        printf("%s: corrupt: %s\n", path, e.msg);
        return 1;
    }
    print_file(c, all, brief);
    qa_ckpt_close(c);
    return 0;
}
