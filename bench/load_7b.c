/* load_7b.c — peak memory of loading a checkpoint with io/: qa_st_open_dir (mmap, validate the whole
 * header) + qa_hf_check_tensors + touching every weight page (one byte per 4 KiB), against the weight
 * bytes. Peer, measured in a child process on the largest shard: read() the file into malloc, the way
 * a naive loader does; its need for the whole model (and when converting BF16 -> F32) is extrapolated.
 * With --quant nf4|nf4-dq: the model is loaded by model/ (qa_model_load_quant: the seven projections
 * quantized to NF4 block by block, their BF16 pages dropped after each) and the peak resident memory is
 * set against the parameter count; the peer is the same directory's BF16 load (this process, before).
 * usage: bench_load_7b MODEL_DIR [--no-peer] [--quant nf4|nf4-dq] */
#include "model/model.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct mem { long hwm, rss, anon, file; } mem;   /* kB, from /proc/self/status */

static mem read_mem(void) {
    mem m = {0};
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "VmHWM: %ld", &m.hwm);
        sscanf(line, "VmRSS: %ld", &m.rss);
        sscanf(line, "RssAnon: %ld", &m.anon);
        sscanf(line, "RssFile: %ld", &m.file);
    }
    if (f) fclose(f);
    return m;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static double gib_kb(long kb) { return kb / 1048576.0; }
static double gib(double b) { return b / 1073741824.0; }

/* the peer: read a whole file into a malloc'd buffer; prints "bytes hwm_kb seconds" */
static int naive_child(const char *path) {
    qa_err e = {0};
    double t0 = now();
    char *buf;
    size_t n;
    if (qa_read_file(path, 0, &buf, &n, &e)) { qa_err_print(&e); return 1; }
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += 4096) s += (uint8_t)buf[i];
    double t1 = now();
    mem m = read_mem();
    printf("%zu %ld %ld %.3f %" PRIu64 "\n", n, m.hwm, m.anon, t1 - t0, s & 1);
    free(buf);
    return 0;
}

/* --quant: peak RSS of a quantized load against parameters; returns the exit status */
static int quant_load(const char *dir, const char *q) {
    qa_err e = {0};
    qa_quant quant;
    if (qa_quant_parse(q, &quant, &e)) { qa_err_print(&e); return 2; }
    mem m0 = read_mem();
    double t0 = now();
    qa_model m;
    if (qa_model_load_quant(&m, dir, NULL, quant, &e)) { qa_err_print(&e); return 1; }
    double t1 = now();
    mem m1 = read_mem();
    const qa_hf_config *c = &m.cfg;
    const int64_t params = qa_hf_config_param_count(c), proj = qa_model_proj_params(c), rest = params - proj;
    const double expect = (double)m.nf4_bytes + 2.0 * (double)rest; /* bitsandbytes: 4-bit projections, bf16 rest */
    printf("model            %s: %s, %d layers, hidden %d, %" PRId64 " parameters (%" PRId64 " in the projections)\n",
           dir, qa_arch_class(c->arch), c->n_layers, c->hidden, params, proj);
    printf("load as %-8s  %.1f s (quantize %" PRId64 " projection parameters; embeddings, head, norms stay mmap'd BF16)\n",
           qa_quant_name(quant), t1 - t0, proj);
    printf("NF4 projections  %.3f GiB = %.4f bytes per projection parameter (codes + fp32 absmax)\n",
           gib((double)m.nf4_bytes), (double)m.nf4_bytes / (double)proj);
    printf("memory at start  VmHWM %.3f GiB, RssAnon %.3f GiB, RssFile %.3f GiB\n", gib_kb(m0.hwm), gib_kb(m0.anon),
           gib_kb(m0.file));
    printf("after load       VmHWM %.3f GiB, RssAnon %.3f GiB, RssFile %.3f GiB\n", gib_kb(m1.hwm), gib_kb(m1.anon),
           gib_kb(m1.file));
    const double peak = (double)m1.hwm * 1024.0;
    printf("RESULT peak RSS %.3f GiB = %.4f bytes per parameter; bitsandbytes' layout (NF4 projections + BF16 embeddings, "
           "head, norms) %.3f GiB = %.4f bytes per parameter; peak / that = %.3f; BF16 as stored %.3f GiB (2 bytes "
           "per parameter)\n", gib(peak), peak / (double)params, gib(expect), expect / (double)params, peak / expect,
           gib(2.0 * (double)params));
    qa_model_free(&m);
    return peak <= 1.15 * expect ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--naive-child")) return naive_child(argv[2]);
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--quant")) return quant_load(argv[1], argv[i + 1]);
    if (argc < 2) { fprintf(stderr, "usage: bench_load_7b MODEL_DIR [--no-peer]\n"); return 2; }
    const char *dir = argv[1];
    int peer = !(argc > 2 && !strcmp(argv[2], "--no-peer"));
    qa_err e = {0};
    mem m0 = read_mem();
    double t0 = now();
    qa_hf_config c;
    char *cp = qa_path_join(dir, "config.json");
    if (qa_hf_config_load(&c, cp, &e)) { qa_err_print(&e); return 1; }
    free(cp);
    qa_safetensors st;
    if (qa_st_open_dir(&st, dir, &e)) { qa_err_print(&e); return 1; }
    if (qa_hf_check_tensors(&c, &st, &e)) { qa_err_print(&e); return 1; }
    double t1 = now();
    mem m1 = read_mem();
    uint64_t bytes = 0, sum = 0, pages = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const uint8_t *p = st.tensors[i].data;
        bytes += st.tensors[i].nbytes;
        for (uint64_t o = 0; o < st.tensors[i].nbytes; o += 4096, pages++) sum += p[o];
    }
    double t2 = now();
    mem m2 = read_mem();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("model            %s: %s, %d layers, hidden %d, %zu tensors in %d file(s)\n", dir, qa_arch_class(c.arch),
           c.n_layers, c.hidden, st.n_tensors, st.n_files);
    printf("weight bytes     %" PRIu64 " (%.3f GiB), %" PRId64 " parameters\n", bytes, gib((double)bytes),
           qa_hf_config_param_count(&c));
    printf("open + validate  %.3f s (config, every shard header, every tensor name/shape/dtype)\n", t1 - t0);
    printf("touch all pages  %.3f s, %" PRIu64 " pages, %.2f GB/s (checksum bit %" PRIu64 ")\n", t2 - t1, pages,
           bytes / (t2 - t1) / 1e9, sum & 1);
    printf("memory at start  VmHWM %.3f GiB, RssAnon %.3f GiB, RssFile %.3f GiB\n", gib_kb(m0.hwm), gib_kb(m0.anon),
           gib_kb(m0.file));
    printf("after open       VmHWM %.3f GiB, RssAnon %.3f GiB, RssFile %.3f GiB\n", gib_kb(m1.hwm), gib_kb(m1.anon),
           gib_kb(m1.file));
    printf("after touch      VmHWM %.3f GiB, RssAnon %.3f GiB, RssFile %.3f GiB (ru_maxrss %.3f GiB)\n",
           gib_kb(m2.hwm), gib_kb(m2.anon), gib_kb(m2.file), gib_kb(ru.ru_maxrss));
    double ratio = m2.hwm * 1024.0 / (double)bytes;
    printf("RESULT peak RSS / weight bytes = %.4f (target <= 1.1): %s; anonymous memory %.1f MiB\n", ratio,
           ratio <= 1.1 ? "PASS" : "FAIL", m2.anon / 1024.0);
    if (peer) {
        /* the largest file, read into malloc by a child */
        int big = 0;
        for (int i = 1; i < st.n_files; i++) if (st.maps[i].size > st.maps[big].size) big = i;
        char cmd[4096], out[512] = "";
        snprintf(cmd, sizeof cmd, "'%s' --naive-child '%s'", argv[0], st.paths[big]);
        size_t fsz = st.maps[big].size;
        int nfiles = st.n_files;
        qa_st_close(&st);
        FILE *p = popen(cmd, "r");
        if (p && fgets(out, sizeof out, p)) {
            size_t n; long hwm, anon; double secs;
            if (sscanf(out, "%zu %ld %ld %lf", &n, &hwm, &anon, &secs) == 4) {
                double r = hwm * 1024.0 / (double)n;
                printf("peer (naive)     read() %s (%.3f GiB) into malloc: %.3f s, VmHWM %.3f GiB = %.4f x its bytes, "
                       "all anonymous (RssAnon %.3f GiB)\n", nfiles > 1 ? "the largest shard" : "the file",
                       gib((double)fsz), secs, gib_kb(hwm), r, gib_kb(anon));
                printf("peer, whole model: %.2f GiB anonymous (%.2f x) kept as BF16; converting to F32 for compute "
                       "needs %.2f GiB (2 x) for the F32 copy, %.2f GiB (3 x) at the peak with the BF16 buffer; "
                       "io/ mmap: %.1f MiB anonymous, page cache shared and evictable\n",
                       gib((double)bytes) * r, r, 2 * gib((double)bytes), 3 * gib((double)bytes), m2.anon / 1024.0);
            }
        }
        if (p) pclose(p);
    } else {
        qa_st_close(&st);
    }
    return ratio <= 1.1 ? 0 : 1;
}
