/* run_checks.c — see run_checks.h. */
#include "train/run_checks.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- every rank runs the same configuration ----------------------------------------------------- */
static void file_line(qa_strlist *out, const char *label, const char *path) {
    char *buf = NULL;
    size_t len = 0;
    qa_err le = {0};
    char line[1024];
    if (qa_read_file(path, 0, &buf, &len, &le) == 0)
        snprintf(line, sizeof line, "%s contents=size %zu crc32c %08x", label, len, qa_crc32c(0, buf, len));
    else
        snprintf(line, sizeof line, "%s contents=unreadable", label);
    free(buf);
    qa_strlist_push(out, line);
}

void qa_train_config_lines(const qa_train_config *tc, qa_strlist *out) {
    for (int i = 0; i < tc->cfg.n_keys; i++) {
        const char *k = tc->cfg.keys[i].name;
        if (!strcmp(k, "train.threads")) continue; /* may follow the cores of each node; results do not depend on it */
        char *v = qa_cfg_value_text(&tc->cfg, i);
        size_t n = strlen(k) + strlen(v) + 2;
        char *line = qa_malloc(n);
        snprintf(line, n, "%s=%s", k, v);
        qa_strlist_push(out, line);
        free(line);
        free(v);
    }
    for (int i = 0; i < tc->data.files.n; i++) {
        char label[64];
        snprintf(label, sizeof label, "data.files[%d]", i);
        file_line(out, label, tc->data.files.v[i]);
    }
    char *cj = qa_path_join(tc->model.path, "config.json");
    file_line(out, "model.path/config.json", cj);
    free(cj);
}

static int64_t line_hash(const char *s) { return (int64_t)qa_fnv1a64(0, s, strlen(s)); }

int qa_train_config_agree(const qa_train_config *tc, qa_dist *d, qa_err *e) {
    const int P = qa_dist_size(d), me = qa_dist_rank(d);
    if (P <= 1) return 0;
    qa_strlist lines = {0};
    qa_train_config_lines(tc, &lines);
    const int n = lines.n;
    int64_t total = (int64_t)n;
    for (int i = 0; i < n; i++) total = (int64_t)qa_fnv1a64((uint64_t)total, lines.v[i], strlen(lines.v[i]) + 1);
    /* one round when everything agrees: min and max of (line count, total hash) over the ranks */
    int64_t mm[4] = {n, total, -(int64_t)n, -total};
    qa_dist_allreduce_i64(d, mm, 4, QA_DIST_MIN, "configuration check");
    if (mm[0] == -mm[2] && mm[1] == -mm[3]) {
        qa_strlist_free(&lines);
        return 0;
    }
    int rc;
    if (mm[0] != -mm[2]) {
        rc = QA_ERR(e, "rank %d: the ranks hold configurations of different shapes (%lld to %lld lines): every rank must "
                    "run the same qalign version and configuration", me, (long long)mm[0], (long long)-mm[2]);
        qa_strlist_free(&lines);
        return rc;
    }
    /* the first line that differs from rank 0's, and the lowest rank where it does */
    int64_t *h = qa_malloc(sizeof *h * (size_t)n);
    for (int i = 0; i < n; i++) h[i] = line_hash(lines.v[i]);
    int64_t *h0 = qa_malloc(sizeof *h0 * (size_t)n);
    memcpy(h0, h, sizeof *h0 * (size_t)n);
    qa_dist_bcast(d, h0, sizeof *h0 * (size_t)n, 0, "configuration check: rank 0's keys");
    int64_t first = (int64_t)n * P;
    for (int i = 0; i < n; i++)
        if (h[i] != h0[i]) { first = (int64_t)i * P + me; break; }
    qa_dist_allreduce_i64(d, &first, 1, QA_DIST_MIN, "configuration check: first difference");
    free(h);
    free(h0);
    if (first >= (int64_t)n * P) { /* equal line hashes but different totals: cannot happen without a collision */
        qa_strlist_free(&lines);
        return QA_ERR(e, "rank %d: the ranks' configurations differ (hash mismatch)", me);
    }
    const int key = (int)(first / P), who = (int)(first % P);
    char theirs[512];
    snprintf(theirs, sizeof theirs, "%s", lines.v[key]);
    qa_dist_bcast(d, theirs, sizeof theirs, who, "configuration check: the differing value");
    if (me == 0)
        rc = QA_ERR(e, "ranks run different configurations: rank %d has %s but rank 0 has %s; every rank must use the "
                    "same config files, --set values and data files (stopping all ranks)", who, theirs, lines.v[key]);
    else
        rc = QA_ERR(e, "rank %d: the ranks run different configurations (rank 0 names the first difference)", me);
    qa_strlist_free(&lines);
    return rc;
}

/* ---- the model a checkpoint was written for ------------------------------------------------------ */
void qa_train_model_id(const char *model_dir, char *out, size_t cap) {
    uint64_t h = 0;
    char *p = qa_path_join(model_dir, "config.json"), *buf = NULL;
    size_t len = 0;
    qa_err le = {0};
    if (qa_read_file(p, 1u << 24, &buf, &len, &le) == 0) h = qa_fnv1a64(h, buf, len);
    free(buf);
    free(p);
    qa_safetensors st;
    if (qa_st_open_dir(&st, model_dir, &le) == 0) {
        for (int i = 0; i < st.n_files; i++) {
            const uint8_t *d = st.maps[i].data;
            uint64_t n = 0;
            for (int k = 7; k >= 0; k--) n = n << 8 | d[k];
            h = qa_fnv1a64(h, d, (size_t)(8 + n)); /* validated by the open: inside the file */
        }
        qa_st_close(&st);
    }
    snprintf(out, cap, "fnv1a64:%016" PRIx64, h);
}

/* ---- a resume restores state that fits this run -------------------------------------------------- */
int qa_train_resume_check(const qa_ckpt_meta *m, const char *ckpt_path, const qa_train_plan *plan,
                          const char *model_id, qa_err *e) {
    if (m->cursor < 0 || m->cursor > plan->rows_per_epoch)
        return QA_ERR(e, "%s: data cursor %lld is outside [0, %lld], the training rows of an epoch of this run's data "
                      "(another data set, or a damaged checkpoint): use the data it was written with or a new "
                      "checkpoint.dir", ckpt_path, (long long)m->cursor, (long long)plan->rows_per_epoch);
    if (m->step < 0 || m->epoch < 0 || m->epoch > m->step || m->epoch > INT32_MAX / 2)
        return QA_ERR(e, "%s: epoch %lld does not fit step %lld (every epoch takes at least one step): damaged or not "
                      "written by qalign", ckpt_path, (long long)m->epoch, (long long)m->step);
    if (m->step > plan->total_steps)
        return QA_ERR(e, "%s: the checkpoint is at step %lld, past this run's %lld steps (train.max_steps / train.epochs): "
                      "raise them to continue the run, or use a new checkpoint.dir for a shorter one", ckpt_path,
                      (long long)m->step, (long long)plan->total_steps);
    if (m->optim_step < 0 || m->optim_step > m->step || m->skipped_steps < 0 || m->skipped_steps > m->step)
        return QA_ERR(e, "%s: AdamW step %lld / skipped steps %lld are outside [0, step %lld]: damaged or not written by "
                      "qalign", ckpt_path, (long long)m->optim_step, (long long)m->skipped_steps, (long long)m->step);
    if (model_id && m->base_model_id && strncmp(m->base_model_id, "fnv1a64:", 8) == 0 &&
        strcmp(m->base_model_id, model_id)) {
        fprintf(stderr, "qalign: warning: %s was written for base model %s (id %s), but model.path is another model "
                "(id %s): the resumed adapter continues on different weights\n", ckpt_path,
                m->base_model ? m->base_model : "?", m->base_model_id, model_id);
        fflush(stderr);
    }
    return 0;
}

int qa_train_resume_check_state(const qa_ckpt_tensor *lora, float *const *m, float *const *v, size_t n,
                                const char *ckpt_path, qa_err *e) {
    for (size_t i = 0; i < n; i++) {
        size_t ne = 1;
        for (int k = 0; k < lora[i].ndim; k++) ne *= (size_t)lora[i].shape[k];
        const float *src[3] = {lora[i].data, m ? m[i] : NULL, v ? v[i] : NULL};
        static const char *const grp[3] = {"lora", "optim/m", "optim/v"};
        for (int k = 0; k < 3; k++) {
            if (!src[k]) continue;
            size_t j = qa_first_nonfinite_f32(src[k], ne);
            if (j < ne)
                return QA_ERR(e, "%s: /%s/%s element %zu is %s: the checkpoint holds a non-finite %s; resume from an "
                              "earlier checkpoint (move this one away)", ckpt_path, grp[k], lora[i].name, j,
                              src[k][j] != src[k][j] ? "NaN" : "infinite", k ? "optimizer state" : "adapter");
        }
    }
    return 0;
}

int qa_train_check_skips(int64_t steps_run, int64_t skipped_run, qa_err *e) {
    if (steps_run > 0 && skipped_run >= steps_run)
        return QA_ERR(e, "all %lld optimizer step(s) of this run had a non-finite loss or gradients and were skipped: "
                      "nothing was trained (lower train.lr, check lora.init_adapter and the data)", (long long)steps_run);
    return 0;
}
