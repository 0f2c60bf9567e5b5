/* cmd_forward.c — `qalign forward`: run the model on a list of token ids and print the logits
 * of the last position (top-k), optionally the hidden states and the logit lens. A debugging
 * tool for checking a checkpoint / adapter against a reference implementation. */
#include "launch/commands.h"
#include "launch/args.h"
#include "model/model.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_sbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void forward_usage(FILE *f) {
    fprintf(f,
            "usage: qalign forward --model DIR --ids \"1,2,3\" [options]\n\n"
            "Runs the forward pass on one sequence of token ids (positions 0..T-1, no padding) and prints\n"
            "the top-k logits of the last position.\n\n"
            "options:\n"
            "  --model DIR        Hugging Face model directory (config.json + safetensors)\n"
            "  --adapter DIR      PEFT LoRA adapter directory to apply\n"
            "  --ids LIST         comma-separated token ids\n"
            "  --top-k K          how many logits to print (default 10)\n"
            "  --hidden-states    also print, per layer, the last position's hidden state (norm and first\n"
            "                     values) and the logit lens top-1 (lm_head(final_norm(h)))\n"
            "  --all-logits       print the full logits row of the last position\n"
            "  --logits-out FILE  write the logits of every position at full precision: FILE.npy as a\n"
            "                     NumPy float32 array [T, vocab] (numpy.load), any other name as text,\n"
            "                     one line per position, vocab values in %%.9g (exact for float32)\n"
            "  --device NAME      auto (default: cuda when a GPU is usable, else cpu), cpu, cuda, cuda-fp32 or\n"
            "                     emu (--backend is an old name of --device)\n"
            "  --threads N        CPU threads (default 0: one per core); results do not depend on it\n"
            "  --quant Q          none (default), nf4 or nf4-dq: projections quantized to NF4 at load\n"
            "  -h, --help         this help\n");
}

static int parse_ids(const char *s, int32_t **out, int *n) {
    return qa_arg_int_list("forward", "--ids", s, 0, INT32_MAX, out, n);
}

static void print_topk(const float *row, int V, int k) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < V; j++) if (row[j] > mx) mx = row[j];
    for (int j = 0; j < V; j++) sum += exp(row[j] - mx);
    char *taken = qa_calloc((size_t)V, 1);
    for (int r = 0; r < k && r < V; r++) {
        int best = -1;
        for (int j = 0; j < V; j++) if (!taken[j] && (best < 0 || row[j] > row[best])) best = j;
        taken[best] = 1;
        printf("  %2d  id %-8d logit %+.6f  p %.6f\n", r + 1, best, row[best], exp(row[best] - mx) / sum);
    }
    free(taken);
}

static int argmax(const float *row, int V) {
    int b = 0;
    for (int j = 1; j < V; j++) if (row[j] > row[b]) b = j;
    return b;
}

/* The logits of all T positions [T, V] (host) to path: .npy (format 1.0, '<f4', C order) or %.9g text. */
static int write_logits(const char *path, const float *lg, int T, int V, qa_err *e) {
    size_t pl = strlen(path);
    qa_sbuf b = {0};
    if (pl > 4 && !strcmp(path + pl - 4, ".npy")) {
        char hdr[128];
        int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", T, V);
        while ((10 + n + 1) % 64) hdr[n++] = ' '; /* magic(6) + version(2) + len(2) + dict + '\n': 64-aligned */
        hdr[n++] = '\n';
        unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(n & 0xff), (unsigned char)(n >> 8)};
        qa_sb_put(&b, (const char *)pre, 10);
        qa_sb_put(&b, hdr, (size_t)n);
        qa_sb_put(&b, (const char *)lg, sizeof(float) * (size_t)T * V); /* x86-64 / aarch64: little-endian */
    } else {
        for (int t = 0; t < T; t++) {
            for (int j = 0; j < V; j++) qa_sb_printf(&b, j ? " %.9g" : "%.9g", lg[(size_t)t * V + j]);
            qa_sb_put(&b, "\n", 1);
        }
    }
    int rc = qa_write_file_atomic(path, b.p, b.n, e);
    qa_sb_free(&b);
    return rc;
}

int cmd_forward(int argc, char **argv) {
    const char *model_dir = NULL, *adapter = NULL, *ids_s = NULL, *backend = "auto", *logits_out = NULL, *quant_s = NULL;
    int topk = 10, hidden = 0, all = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { forward_usage(stdout); return 0; }
        else if (!strcmp(a, "--hidden-states")) hidden = 1;
        else if (!strcmp(a, "--all-logits")) all = 1;
        else if (i + 1 < argc && !strcmp(a, "--model")) model_dir = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--adapter")) adapter = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--ids")) ids_s = argv[++i];
        else if (i + 1 < argc && (!strcmp(a, "--device") || !strcmp(a, "--backend"))) backend = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--logits-out")) logits_out = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--quant")) quant_s = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--threads")) {
            long long v;
            if (qa_arg_int("forward", "--threads", argv[++i], 0, 4096, &v)) return 2;
            threads = (int)v;
        } else if (i + 1 < argc && !strcmp(a, "--top-k")) {
            long long v;
            if (qa_arg_int("forward", "--top-k", argv[++i], 1, 1000000, &v)) return 2;
            topk = (int)v;
        } else {
            fprintf(stderr, "qalign forward: unknown or incomplete option '%s'\n\n", a);
            forward_usage(stderr);
            return 2;
        }
    }
    if (!model_dir || !ids_s) {
        fprintf(stderr, "qalign forward: --model and --ids are required\n\n");
        forward_usage(stderr);
        return 2;
    }
    int32_t *ids;
    int T;
    if (parse_ids(ids_s, &ids, &T)) return 2;

    qa_err e = {0};
    int rc = 1;
    const qa_ops *ops = qa_ops_open(backend, 0, NULL, 0, &e);
    if (!ops) { qa_err_print(&e); free(ids); return 2; }
    qa_model m;
    qa_lora l;
    qa_acts a;
    int have_lora = 0, have_acts = 0;
    qa_quant quant;
    const qa_stream_opts so = {.threads = threads};
    if (qa_quant_parse(quant_s, &quant, &e) || qa_model_load_ex(&m, model_dir, ops, &so, quant, &e)) {
        qa_err_print(&e);
        free(ids);
        return 1;
    }
    if (adapter) {
        if (qa_lora_load_peft(&l, &m, adapter, &e)) goto out;
        have_lora = 1;
    }
    const int L = m.cfg.n_layers, V = m.cfg.vocab, D = m.cfg.hidden;
    if (qa_acts_alloc(&a, &m, have_lora ? &l : NULL, 1, T, QA_ACTS_INFER, logits_out ? T : 1, &e)) goto out;
    have_acts = 1;
    qa_batch b = {1, T, ids, NULL, NULL, NULL, NULL};
    qa_fwd_opts o = {logits_out ? QA_LOGITS_ALL : QA_LOGITS_LAST, NULL, 0};
    if (qa_model_forward(&m, have_lora ? &l : NULL, &a, &b, &o, &e)) goto out;
    float *row = qa_malloc(sizeof(float) * (size_t)(V > D ? V : D));
    if (logits_out) {
        float *all_lg = qa_malloc(sizeof(float) * (size_t)T * V);
        qa_model_to_host(&m, all_lg, a.logits, (size_t)T * V);
        int wrc = write_logits(logits_out, all_lg, T, V, &e);
        free(all_lg);
        if (wrc) { free(row); goto out; }
    }
    qa_model_to_host(&m, row, a.logits + (logits_out ? (size_t)(T - 1) * V : 0), V);
    printf("model %s (%s, %d layers, hidden %d, vocab %d)%s%s, T=%d\n", model_dir, m.cfg.model_type, L, D, V,
           adapter ? ", adapter " : "", adapter ? adapter : "", T);
    printf("last position %d, top-%d:\n", T - 1, topk);
    print_topk(row, V, topk);
    if (logits_out) printf("logits of all %d positions (float32, full precision): %s\n", T, logits_out);
    if (all) {
        printf("logits[%d]:", T - 1);
        for (int j = 0; j < V; j++) printf(" %.6g", row[j]);
        printf("\n");
    }
    if (hidden) {
        int32_t last = T - 1;
        printf("hidden states at position %d (0 = embeddings, %d = after the final norm):\n", last, L);
        for (int i = 0; i <= L; i++) {
            qa_model_to_host(&m, row, a.hidden[i] + (size_t)last * D, D);
            double ss = 0;
            for (int j = 0; j < D; j++) ss += (double)row[j] * row[j];
            printf("  h[%d] |h| %.6f  [", i, sqrt(ss));
            for (int j = 0; j < D && j < 6; j++) printf("%s%+.6f", j ? ", " : "", row[j]);
            printf("%s]", D > 6 ? ", ..." : "");
            if (qa_model_logit_lens(&m, &a, i, &last, 1, &e)) { printf("\n"); free(row); goto out; }
            qa_model_to_host(&m, row, a.logits, V);
            printf("  lens top-1 id %d\n", argmax(row, V));
        }
    }
    free(row);
    rc = 0;
out:
    if (rc) qa_err_print(&e);
    if (have_acts) qa_acts_free(&a);
    if (have_lora) qa_lora_free(&l);
    qa_model_free(&m);
    free(ids);
    return rc;
}
