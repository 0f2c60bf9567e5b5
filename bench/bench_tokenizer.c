/* bench_tokenizer — tokenization throughput on the paper's test data, with Hugging Face `tokenizers`
 * (single thread, same strings, same run) as the peer.
 *
 * Input: every string field of every assets/paper-data/{ap_emotion,snli,paws}/NAME_test.json (60 files),
 * encoded with add_special_tokens=False by the Qwen and the Mistral tokenizer. Prints MB/s of UTF-8
 * text per core (one thread; and all cores / their number), HF's MB/s and the ratio, and whether
 * both produced the same ids (count and checksum over the whole corpus).
 *
 * usage: bench_tokenizer [ASSETS_DIR] [REPEATS=3] [THREADS=nproc] [ONLY]
 *   ONLY: run only the tokenizer files whose name contains it. QA_BENCH_NO_PEER=1 skips HF.
 */
#include "tokenizer/tokenizer.h"

#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef QA_ASSETS_DIR
#define QA_ASSETS_DIR "assets"
#endif
#ifndef QA_BENCH_DIR
#define QA_BENCH_DIR "bench"
#endif

typedef struct corpus {
    char **s;
    size_t *n;
    size_t len, cap, bytes;
    int files;
} corpus;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double cpu_now(void) { /* CPU time of the calling thread: per-core speed even on a busy machine */
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void collect(corpus *c, json_t *j) {
    if (json_is_string(j)) {
        if (c->len == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 4096;
            c->s = realloc(c->s, c->cap * sizeof *c->s);
            c->n = realloc(c->n, c->cap * sizeof *c->n);
        }
        size_t n = json_string_length(j);
        c->s[c->len] = malloc(n + 1);
        memcpy(c->s[c->len], json_string_value(j), n + 1);
        c->n[c->len++] = n;
        c->bytes += n;
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) collect(c, json_array_get(j, i));
    } else if (json_is_object(j)) {
        /* keys in sorted order, so that the peer (Python, sort_keys) sees the same sequence */
        size_t n = json_object_size(j), k = 0;
        const char **keys = malloc((n + 1) * sizeof *keys);
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) keys[k++] = key;
        for (size_t a = 1; a < n; a++)
            for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
                const char *t = keys[b]; keys[b] = keys[b - 1]; keys[b - 1] = t;
            }
        for (size_t i = 0; i < n; i++) collect(c, json_object_get(j, keys[i]));
        free(keys);
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int load_corpus(corpus *c, const char *assets) {
    static const char *tasks[] = {"ap_emotion", "snli", "paws"};
    for (int t = 0; t < 3; t++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/paper-data/%s", assets, tasks[t]);
        DIR *d = opendir(dir);
        if (!d) { fprintf(stderr, "bench_tokenizer: cannot open %s (run scripts/fetch-assets.sh)\n", dir); return -1; }
        char *names[256];
        int nn = 0;
        struct dirent *de;
        while ((de = readdir(d)) && nn < 256) {
            size_t l = strlen(de->d_name);
            if (l > 10 && !strcmp(de->d_name + l - 10, "_test.json")) names[nn++] = strdup(de->d_name);
        }
        closedir(d);
        qsort(names, (size_t)nn, sizeof *names, cmp_str);
        for (int i = 0; i < nn; i++) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            json_error_t je;
            json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
            if (!j) { fprintf(stderr, "bench_tokenizer: %s: %s\n", path, je.text); return -1; }
            collect(c, j);
            json_decref(j);
            c->files++;
            free(names[i]);
        }
    }
    return 0;
}

typedef struct job {
    const qa_tokenizer *t;
    const corpus *c;
    size_t from, to;
    uint64_t n_ids, sum;
    double cpu_s;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    j->n_ids = 0;
    j->sum = 0;
    double c0 = cpu_now();
    for (size_t i = j->from; i < j->to; i++) {
        int32_t *ids;
        size_t n;
        qa_err e = {0};
        if (qa_tok_encode(j->t, j->c->s[i], j->c->n[i], 0, &ids, &n, &e)) { qa_err_print(&e); exit(1); }
        uint64_t h = 0;
        for (size_t k = 0; k < n; k++) h = h * 1000003u + (uint64_t)ids[k] + 1;
        j->sum += h;
        j->n_ids += n;
        free(ids);
    }
    j->cpu_s = cpu_now() - c0;
    return NULL;
}

/* returns wall seconds of the fastest repeat and (*cpu_s) the CPU seconds summed over its threads;
 * fills the id count and checksum (per string, summed) */
static double timed(const qa_tokenizer *t, const corpus *c, int threads, int reps, uint64_t *n_ids, uint64_t *sum,
                    double *cpu_s) {
    double best = 1e30;
    *cpu_s = 1e30;
    job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int k = 0; k < threads; k++) {
            jobs[k] = (job){t, c, c->len * (size_t)k / (size_t)threads, c->len * (size_t)(k + 1) / (size_t)threads, 0, 0, 0};
            if (threads == 1) run_job(&jobs[k]);
            else pthread_create(&th[k], NULL, run_job, &jobs[k]);
        }
        if (threads > 1)
            for (int k = 0; k < threads; k++) pthread_join(th[k], NULL);
        double dt = now() - t0, cpu = 0;
        for (int k = 0; k < threads; k++) cpu += jobs[k].cpu_s;
        if (dt < best) best = dt;
        if (cpu < *cpu_s) *cpu_s = cpu;
    }
    *n_ids = 0;
    *sum = 0;
    for (int k = 0; k < threads; k++) { *n_ids += jobs[k].n_ids; *sum += jobs[k].sum; }
    free(jobs);
    free(th);
    return best;
}

int main(int argc, char **argv) {
    const char *assets = argc > 1 ? argv[1] : QA_ASSETS_DIR;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    int threads = argc > 3 ? atoi(argv[3]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (reps < 1) reps = 1;
    if (threads < 1) threads = 1;
    corpus c = {0};
    if (load_corpus(&c, assets)) return 1;
    printf("corpus: %d test files, %zu strings, %.2f MB of UTF-8 text\n", c.files, c.len, (double)c.bytes / 1e6);
    if (c.files != 60) printf("warning: expected 60 test files, found %d\n", c.files);

    /* the strings for the Python peer, in the same order */
    char strings[] = "/tmp/qa_bench_tok.XXXXXX";
    int fd = mkstemp(strings);
    if (fd < 0) { perror("mkstemp"); return 1; }
    close(fd);
    json_t *arr = json_array();
    for (size_t i = 0; i < c.len; i++) json_array_append_new(arr, json_stringn(c.s[i], c.n[i]));
    json_dump_file(arr, strings, JSON_COMPACT);
    json_decref(arr);

    static const char *files[] = {"qwen1_5-qwen2.tokenizer.json", "mistral-7b-v0.1.tokenizer.json"};
    const char *only = argc > 4 ? argv[4] : NULL;
    int no_peer = getenv("QA_BENCH_NO_PEER") && atoi(getenv("QA_BENCH_NO_PEER"));
    for (int f = 0; f < 2; f++) {
        if (only && !strstr(files[f], only)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizers/%s", assets, files[f]);
        qa_tokenizer *t;
        qa_err e = {0};
        double t0 = now();
        if (qa_tok_load(&t, path, &e)) { qa_err_print(&e); return 1; }
        double load_s = now() - t0;
        uint64_t n1, s1, nn, sn;
        double cpu1, cpun;
        double dt1 = timed(t, &c, 1, reps, &n1, &s1, &cpu1);
        double dtn = threads > 1 ? timed(t, &c, threads, reps, &nn, &sn, &cpun) : dt1;
        double mb = (double)c.bytes / 1e6;
        printf("\n%s (load %.2f s)\n", files[f], load_s);
        printf("  qalign  1 thread : %7.2f MB/s per core (CPU time %.3f s); wall %.2f MB/s; %llu ids\n", mb / cpu1,
               cpu1, mb / dt1, (unsigned long long)n1);
        if (threads > 1)
            printf("  qalign %2d threads: %7.2f MB/s per core (CPU time); wall %.2f MB/s in all\n", threads,
                   mb / cpun, mb / dtn);
        /* the peer */
        char cmd[16384], line[1024];
        snprintf(cmd, sizeof cmd,
                 "TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 RAYON_RS_NUM_CPUS=1 python3 '%s/bench_tokenizer_hf.py' "
                 "'%s' '%s' %d 2>&1", QA_BENCH_DIR, path, strings, reps);
        FILE *p = no_peer ? NULL : popen(cmd, "r");
        double hf_s = -1, hf_cpu = -1;
        unsigned long long hf_n = 0, hf_sum = 0;
        while (p && fgets(line, sizeof line, p)) {
            if (sscanf(line, "HF seconds %lf cpu %lf ids %llu sum %llu", &hf_s, &hf_cpu, &hf_n, &hf_sum) == 4) continue;
            printf("  peer: %s", line);
        }
        if (p) pclose(p);
        if (hf_s > 0) {
            printf("  HF tokenizers 1 thread: %7.2f MB/s per core (CPU time %.3f s); wall %.2f MB/s\n", mb / hf_cpu,
                   hf_cpu, mb / hf_s);
            printf("  ratio qalign / HF (1 thread, CPU time): %.2fx\n", hf_cpu / cpu1);
            printf("  same ids as HF: %s\n", hf_n == n1 && hf_sum == s1 ? "yes" : "NO");
        } else
            printf("  HF tokenizers: unavailable (pip install tokenizers)\n");
        qa_tok_free(t);
    }
    remove(strings);
    for (size_t i = 0; i < c.len; i++) free(c.s[i]);
    free(c.s);
    free(c.n);
    return 0;
}
