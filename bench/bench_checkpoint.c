/* bench_checkpoint.c — cost of a checkpoint save / load relative to raw I/O of the same bytes.
 *
 *   bench_checkpoint DIR [LORA_MIB=64] [DEFLATE=0]
 *
 * The state is LLaMA-7B-shaped LoRA on q_proj/v_proj (32 layers, in = out = 4096) with r chosen so
 * the LoRA weights take LORA_MIB; AdamW m and v triple the bytes. The peer writes the same bytes
 * with write() + fsync() and reads them back with read(); the ratios say what the HDF5 layout,
 * CRC32C, fletcher32 and the verification re-read cost on top. Page cache is warm for both.
 */
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/checkpoint.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: bench_checkpoint DIR [LORA_MIB=64] [DEFLATE=0]\n"); return 2; }
    const char *dir = argv[1];
    double mib = argc > 2 ? atof(argv[2]) : 64;
    int deflate = argc > 3 ? atoi(argv[3]) : 0;
    const int L = 32, D = 4096, NT = L * 2 * 2;
    int r = (int)(mib * 1048576.0 / 4.0 / (L * 2 * 2 * D));
    if (r < 1) r = 1;
    char (*names)[128] = qa_calloc((size_t)NT, 128);
    qa_ckpt_tensor *lora = qa_calloc((size_t)NT, sizeof *lora);
    float **m = qa_calloc((size_t)NT, sizeof *m), **v = qa_calloc((size_t)NT, sizeof *v);
    size_t per = (size_t)r * D, total = 0;
    uint64_t seed = 88172645463325252ull;
    for (int i = 0; i < NT; i++) {
        int l = i / 4, p = (i / 2) % 2, ab = i % 2;
        snprintf(names[i], 128, "base_model.model.model.layers.%d.self_attn.%s.lora_%s.weight", l, p ? "v_proj" : "q_proj",
                 ab ? "B" : "A");
        lora[i] = (qa_ckpt_tensor){names[i], QA_CKPT_F32, 2, {ab ? D : r, ab ? r : D}, NULL, NULL};
        float *w = qa_malloc(per * 4);
        m[i] = qa_malloc(per * 4);
        v[i] = qa_malloc(per * 4);
        for (size_t j = 0; j < per; j++) {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            w[j] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 0.02f;
            m[i][j] = w[j] * 0.1f;
            v[i][j] = w[j] * w[j];
        }
        lora[i].data = w;
        total += 3 * per * 4;
    }
    uint64_t rng[4] = {1, 2, 3, 4};
    qa_ckpt_tensor rt = {"host", QA_CKPT_U64, 1, {4}, rng, NULL};
    qa_ckpt_state st = {lora, (size_t)NT, m, v, &rt, 1, NULL, 0, NULL, 0};
    const char *tm[2] = {"q_proj", "v_proj"};
    qa_ckpt_meta meta = {.step = 1, .world_size = 1, .lora_r = r, .lora_alpha = 16, .target_modules = tm,
                         .n_target_modules = 2, .base_model = "bench", .base_model_id = "bench", .config_yaml = "",
                         .qalign_version = "bench"};
    qa_ckpt_save_opts o = {.keep_last = 1, .deflate = deflate};
    qa_err e = {0};
    char path[4096];
    /* warm-up, then timed */
    if (qa_ckpt_save(dir, &meta, &st, &o, path, sizeof path, &e)) { qa_err_print(&e); return 1; }
    meta.step = 2;
    double t0 = now(), c0 = cpu();
    if (qa_ckpt_save(dir, &meta, &st, &o, path, sizeof path, &e)) { qa_err_print(&e); return 1; }
    double t_save = now() - t0, c_save = cpu() - c0;
    /* peer: the same bytes written raw, fsynced, renamed (qa_write_file_atomic) */
    char *blob = qa_malloc(total);
    size_t off = 0;
    for (int i = 0; i < NT; i++) {
        memcpy(blob + off, lora[i].data, per * 4); off += per * 4;
        memcpy(blob + off, m[i], per * 4); off += per * 4;
        memcpy(blob + off, v[i], per * 4); off += per * 4;
    }
    char *raw = qa_path_join(dir, "raw.bin");
    t0 = now();
    c0 = cpu();
    if (qa_write_file_atomic(raw, blob, total, &e)) { qa_err_print(&e); return 1; }
    double t_raw_w = now() - t0, c_raw_w = cpu() - c0;
    /* load */
    qa_ckpt *c = NULL;
    t0 = now();
    c0 = cpu();
    int lr = qa_ckpt_load_latest(dir, &st, &c, NULL, NULL, &e);
    double t_load = now() - t0, c_load = cpu() - c0;
    if (lr != 1) { qa_err_print(&e); return 1; }
    qa_ckpt_close(c);
    char *back;
    size_t blen;
    t0 = now();
    c0 = cpu();
    if (qa_read_file(raw, 0, &back, &blen, &e)) { qa_err_print(&e); return 1; }
    double t_raw_r = now() - t0, c_raw_r = cpu() - c0;
    free(back);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long fsz = ftell(f);
    fclose(f);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("state %.1f MiB (LoRA r=%d x %d tensors + AdamW m, v), file %.1f MiB, deflate %d\n", total / 1048576.0, r, NT,
           fsz / 1048576.0, deflate);
    printf("save  wall %.3f s (%.0f MiB/s) cpu %.3f s | raw write+fsync wall %.3f s cpu %.3f s | ratio wall %.2f cpu %.2f\n",
           t_save, total / 1048576.0 / t_save, c_save, t_raw_w, c_raw_w, t_save / t_raw_w, c_save / c_raw_w);
    printf("load  wall %.3f s (%.0f MiB/s) cpu %.3f s | raw read        wall %.3f s cpu %.3f s | ratio wall %.2f cpu %.2f\n",
           t_load, total / 1048576.0 / t_load, c_load, t_raw_r, c_raw_r, t_load / t_raw_r, c_load / c_raw_r);
    printf("peak RSS %.1f MiB (state %.1f MiB + peer blob %.1f MiB)\n", ru.ru_maxrss / 1024.0, total / 1048576.0,
           total / 1048576.0);
    unlink(raw);
    free(raw);
    /* leave DIR as found: remove the checkpoints written here */
    char *cd = qa_ckpt_dir(dir);
    qa_ckpt_entry *ents;
    size_t ne;
    if (qa_ckpt_list(cd, &ents, &ne, &e) == 0) {
        for (size_t i = 0; i < ne; i++) unlink(ents[i].path);
        qa_ckpt_list_free(ents, ne);
    }
    char *lp = qa_path_join(cd, "latest");
    unlink(lp);
    rmdir(cd);
    free(lp);
    free(cd);
    return 0;
}
