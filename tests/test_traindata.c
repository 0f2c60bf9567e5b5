/* test_traindata.c — templates against HF-computed token sequences (tests/data/traindata_golden.json,
 * from tests/gen_traindata_golden.py), the LLaMA-Factory cut, the seeded split, epoch shuffles,
 * packing invariants, the per-rank loader and the step plan / lr schedule.
 *
 * Environment: QALIGN_ASSETS (tokenizers/, paper-data/), QALIGN_TEMPLATES (configs/templates),
 * QA_TRAINDATA_GOLDEN (the golden JSON). */
#include "testutil.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_rng.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/template.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *assets, *templates;

static qa_tokenizer *load_tok(const char *file) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizers/%s", assets, file);
    qa_tokenizer *t = NULL;
    qa_err e = {0};
    if (qa_tok_load(&t, p, &e)) { qa_err_print(&e); exit(1); }
    return t;
}

static void load_tpl(qa_template *t, const char *name, const qa_tokenizer *tok, int32_t eos) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s.yaml", templates, name);
    qa_err e = {0};
    if (qa_template_load(t, p, tok, -1, eos, &e)) { qa_err_print(&e); exit(1); }
}

static int same_ids(const int32_t *a, size_t na, json_t *arr) {
    if (na != json_array_size(arr)) return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i] != (int32_t)json_integer_value(json_array_get(arr, i))) return 0;
    return 1;
}

static void print_ids(const char *tag, const int32_t *a, size_t n) {
    printf("    %s:", tag);
    for (size_t i = 0; i < n; i++) printf(" %d", a[i]);
    printf("\n");
}

/* ---- golden sequences ------------------------------------------------------------------------- */
static void test_golden(const char *golden_path) {
    json_error_t je;
    json_t *g = json_load_file(golden_path, 0, &je);
    QT_CHECK(g != NULL, "golden %s loads (%s)", golden_path, je.text);
    if (!g) return;
    json_t *recs = json_object_get(g, "records"), *cases = json_object_get(g, "cases");
    size_t ci;
    json_t *c;
    json_array_foreach(cases, ci, c) {
        const char *tokf = json_string_value(json_object_get(c, "tokenizer"));
        const char *tpl = json_string_value(json_object_get(c, "template"));
        int eos = (int)json_integer_value(json_object_get(c, "eos"));
        int cutoff = (int)json_integer_value(json_object_get(c, "cutoff"));
        qa_tokenizer *tok = load_tok(tokf);
        qa_template t;
        load_tpl(&t, tpl, tok, eos);
        int bad = 0;
        for (size_t r = 0; r < json_array_size(recs); r++) {
            json_t *rec = json_array_get(recs, r);
            int32_t *s, *tg;
            size_t ns, nt;
            qa_err e = {0};
            if (qa_template_encode(&t, tok, json_string_value(json_object_get(rec, "input")),
                                   json_string_value(json_object_get(rec, "answer")), &s, &ns, &tg, &nt, &e)) {
                qa_err_print(&e);
                bad++;
                continue;
            }
            if (cutoff) {
                int64_t ks, kt;
                qa_truncate_lengths((int64_t)ns, (int64_t)nt, cutoff, &ks, &kt);
                ns = (size_t)ks;
                nt = (size_t)kt;
            }
            json_t *es = json_array_get(json_object_get(c, "src"), r), *et = json_array_get(json_object_get(c, "tgt"), r);
            if (!same_ids(s, ns, es) || !same_ids(tg, nt, et)) {
                if (!bad) {
                    printf("  %s/%s cutoff %d record %zu differs from HF:\n", tokf, tpl, cutoff, r);
                    print_ids("src", s, ns);
                    print_ids("tgt", tg, nt);
                }
                bad++;
            }
            free(s);
            free(tg);
        }
        QT_CHECK(bad == 0, "template %s with %s, cutoff %d: %zu records equal LLaMA-Factory/HF ids (%d differ)", tpl,
                 tokf, cutoff, json_array_size(recs), bad);
        qa_template_free(&t);
        qa_tok_free(tok);
    }
    /* the cut */
    json_t *tr = json_object_get(g, "truncation"), *row;
    size_t i;
    int bad = 0;
    json_array_foreach(tr, i, row) {
        int64_t s = json_integer_value(json_array_get(row, 0)), t = json_integer_value(json_array_get(row, 1));
        int64_t cut = json_integer_value(json_array_get(row, 2));
        int64_t ks, kt;
        qa_truncate_lengths(s, t, cut, &ks, &kt);
        if (ks != json_integer_value(json_array_get(row, 3)) || kt != json_integer_value(json_array_get(row, 4))) {
            printf("  cut(%lld, %lld, %lld) = (%lld, %lld)\n", (long long)s, (long long)t, (long long)cut, (long long)ks,
                   (long long)kt);
            bad++;
        }
    }
    QT_CHECK(bad == 0 && json_array_size(tr) > 5, "truncation table from Python infer_max_len (%d differ)", bad);
    json_decref(g);
}

/* ---- the qwen template by hand ---------------------------------------------------------------- */
static void test_qwen_by_hand(void) {
    qa_tokenizer *tok = load_tok("qwen1_5-qwen2.tokenizer.json");
    qa_template t;
    load_tpl(&t, "qwen", tok, 151643);
    QT_CHECK(t.bos_id == -1 && t.end_id == 151645, "qwen: no BOS, end <|im_end|> = 151645");
    const char *in = "前提: 一个男孩。\n答案: \"\nTranslate the input from Chinese to English:\n";
    const char *ans = "Premise: A boy.\nAnswer: \"";
    int32_t *s, *g;
    size_t ns, ng;
    qa_err e = {0};
    QT_CHECK(qa_template_encode(&t, tok, in, ans, &s, &ns, &g, &ng, &e) == 0, "encode (%s)", e.msg);
    /* <|im_start|> system \n You are a helpful assistant . <|im_end|> \n <|im_start|> user \n */
    static const int32_t head[] = {151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198};
    QT_CHECK(ns > 14 && !memcmp(s, head, sizeof head), "system turn + '<|im_start|>user\\n' ids");
    static const int32_t tail[] = {151645, 198, 151644, 77091, 198}; /* <|im_end|> \n <|im_start|> assistant \n */
    QT_CHECK(ns > 5 && !memcmp(s + ns - 5, tail, sizeof tail), "'<|im_end|>\\n<|im_start|>assistant\\n' closes the prompt");
    char *txt;
    size_t tl;
    qa_tok_decode(tok, s, ns, 0, &txt, &tl, &e);
    char want[1024];
    snprintf(want, sizeof want,
             "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n"
             "<|im_start|>assistant\n", in);
    QT_CHECK(!strcmp(txt, want), "the prompt decodes to the ChatML text");
    free(txt);
    qa_tok_decode(tok, g, ng, 0, &txt, &tl, &e);
    char want2[512];
    snprintf(want2, sizeof want2, "%s<|im_end|>", ans);
    QT_CHECK(!strcmp(txt, want2) && g[ng - 1] == 151645, "the target decodes to answer + <|im_end|>");
    free(txt);

    /* labels through the dataset path: -100 on the prompt, ids on answer + <|im_end|> */
    qa_record r = {qa_strdup(in), qa_strdup(ans), NULL, 0, 0};
    qa_record *rp = &r;
    int64_t nr = 1;
    const char *files[] = {"hand"};
    qa_data_opts o = {files, 1, 0, 0.0, 42, 2048, 0, 2048, 1, 0, 0, 0};
    qa_dataset d;
    QT_CHECK(qa_data_build_records(&d, &o, &t, tok, &rp, &nr, &e) == 0, "build one record (%s)", e.msg);
    qa_microbatch b;
    qa_microbatch_alloc(&b, 1, d.max_len);
    int64_t row = 0;
    qa_data_fill_batch(&d, QA_SPLIT_TRAIN, &row, 1, &b);
    int ok = b.T == (int)(ns + ng);
    for (int k = 0; k < b.T && ok; k++) {
        int32_t id = k < (int)ns ? s[k] : g[k - ns];
        ok = b.input_ids[k] == id && b.labels[k] == (k < (int)ns ? QA_IGNORE_INDEX : id);
    }
    QT_CHECK(ok, "labels are -100 on the %zu prompt tokens and the ids on the %zu answer+end tokens", ns, ng);
    QT_CHECK(b.n_targets == (int64_t)ng && b.targets[ns - 1] == g[0] && b.targets[b.T - 1] == QA_IGNORE_INDEX,
             "targets: the last prompt position predicts the first answer token; %lld loss tokens", (long long)b.n_targets);
    qa_microbatch_free(&b);
    qa_data_free(&d);
    free(r.input);
    free(r.answer);
    free(s);
    free(g);
    qa_template_free(&t);
    qa_tok_free(tok);
}

/* ---- the cut, by property --------------------------------------------------------------------- */
static void test_cut_properties(void) {
    int bad = 0;
    for (int64_t c = 1; c <= 40; c += 3)
        for (int64_t s = 0; s <= 60; s++)
            for (int64_t t = 1; t <= 60; t++) {
                int64_t ks, kt;
                qa_truncate_lengths(s, t, c, &ks, &kt);
                int ok = ks <= s && kt <= t && kt >= 1 && ks >= 0;
                if (s + t < c) ok = ok && ks == s && kt == t;
                else if (s + t == c) ok = ok && ks == s && kt >= t - 1; /* float quirk, see template.h */
                else ok = ok && ks + kt <= c;
                bad += !ok;
            }
    QT_CHECK(bad == 0, "cut: no-op when it fits (exact fits may lose 1 target token), <= cutoff otherwise, target keeps >= 1 token (%d bad)", bad);
}

/* ---- a real dataset --------------------------------------------------------------------------- */
static int build_real(qa_dataset *d, const qa_tokenizer *tok, const qa_template *t, uint64_t seed, int packing,
                      int per_file, int cutoff, double *secs) {
    char f1[1024], f2[1024];
    snprintf(f1, sizeof f1, "%s/paper-data/snli/snli_zh10k_train_question.json", assets);
    snprintf(f2, sizeof f2, "%s/paper-data/snli/snli_es10k_train_question.json", assets);
    const char *files[] = {f1, f2};
    qa_data_opts o = {files, 2, per_file, 0.05, seed, cutoff, packing, cutoff, 0, 0, 0, 0};
    qa_err e = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = qa_data_build(d, &o, t, tok, &e);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (secs) *secs = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    if (rc) qa_err_print(&e);
    return rc;
}

static int same_split(const qa_dataset *a, const qa_dataset *b) {
    for (int s = 0; s < 2; s++) {
        if (a->n_split[s] != b->n_split[s]) return 0;
        if (memcmp(a->split[s], b->split[s], sizeof(int64_t) * (size_t)a->n_split[s])) return 0;
    }
    return 1;
}

static void check_rows(const qa_dataset *d, int s, const char *what) {
    const qa_rows *R = &d->rows[s];
    int64_t n = d->n;
    int *seen = qa_calloc((size_t)n, sizeof(int));
    int in_split_bad = 0, len_bad = 0;
    char *member = qa_calloc((size_t)n, 1);
    for (int64_t k = 0; k < d->n_split[s]; k++) member[d->split[s][k]] = 1;
    for (int64_t r = 0; r < R->n_rows; r++) {
        int64_t L = 0;
        for (int64_t q = R->start[r]; q < R->start[r + 1]; q++) {
            int64_t x = R->ex_ids[q];
            seen[x]++;
            in_split_bad += !member[x];
            L += d->ex[x].n_src + d->ex[x].n_tgt;
        }
        len_bad += L != R->len[r] || L > d->row_len || L == 0;
    }
    int once = 1;
    for (int64_t k = 0; k < d->n_split[s]; k++) once &= seen[d->split[s][k]] == 1;
    QT_CHECK(once && !in_split_bad, "%s: every example of the split is in exactly one row, nothing else is", what);
    QT_CHECK(!len_bad, "%s: row lengths add up and fit %d tokens", what, d->row_len);

    /* fill every row through batches and compare with the examples */
    qa_microbatch b;
    int mb = 3;
    qa_microbatch_alloc(&b, mb, d->packing ? d->row_len : d->max_len);
    int tok_bad = 0, pos_bad = 0, seg_bad = 0, lab_bad = 0, tgt_bad = 0, pad_bad = 0, shape_bad = 0;
    int64_t ntok = 0, nlab = 0, ntgt = 0;
    for (int64_t r0 = 0; r0 < R->n_rows; r0 += mb) {
        int64_t ids[3];
        int cnt = 0;
        for (; cnt < mb && r0 + cnt < R->n_rows; cnt++) ids[cnt] = r0 + cnt;
        qa_data_fill_batch(d, s, ids, cnt, &b);
        int64_t maxlen = 0;
        for (int i = 0; i < cnt; i++) if (R->len[ids[i]] > maxlen) maxlen = R->len[ids[i]];
        shape_bad += b.B != cnt || b.T != (d->packing ? d->row_len : (int)maxlen);
        ntok += b.n_tokens;
        ntgt += b.n_targets;
        for (int i = 0; i < cnt; i++) {
            int64_t r = ids[i];
            const int32_t *I = b.input_ids + (size_t)i * b.T, *Lb = b.labels + (size_t)i * b.T;
            const int32_t *P = b.positions + (size_t)i * b.T, *S = b.segments + (size_t)i * b.T;
            const int32_t *A = b.attn_mask + (size_t)i * b.T, *G = b.targets + (size_t)i * b.T;
            int t = 0, k = 0;
            for (int64_t q = R->start[r]; q < R->start[r + 1]; q++) {
                const qa_example *ex = &d->ex[R->ex_ids[q]];
                const int32_t *src = qa_example_ids(d, R->ex_ids[q]);
                k++;
                int Lx = ex->n_src + ex->n_tgt;
                for (int j = 0; j < Lx; j++, t++) {
                    tok_bad += I[t] != src[j] || A[t] != 1;
                    pos_bad += P[t] != j;
                    seg_bad += S[t] != k;
                    int32_t want = j < ex->n_src ? QA_IGNORE_INDEX : src[j];
                    lab_bad += Lb[t] != want;
                    nlab += want != QA_IGNORE_INDEX;
                    int32_t wt = j + 1 < Lx ? (j + 1 < ex->n_src ? QA_IGNORE_INDEX : src[j + 1]) : QA_IGNORE_INDEX;
                    tgt_bad += G[t] != wt;
                }
            }
            for (; t < b.T; t++) pad_bad += A[t] != 0 || S[t] != 0 || Lb[t] != QA_IGNORE_INDEX || G[t] != QA_IGNORE_INDEX || P[t] != 0;
        }
    }
    QT_CHECK(!shape_bad, "%s: batch shapes (T = %s)", what, d->packing ? "pack length" : "longest row");
    QT_CHECK(!tok_bad && ntok == R->n_tokens, "%s: every token appears once, in order (%lld tokens)", what, (long long)ntok);
    QT_CHECK(!pos_bad, "%s: positions restart at 0 per example", what);
    QT_CHECK(!seg_bad, "%s: segment ids count examples 1..k", what);
    QT_CHECK(!lab_bad && nlab == R->n_label_tokens, "%s: labels preserved (%lld labelled)", what, (long long)nlab);
    QT_CHECK(!tgt_bad && ntgt <= nlab, "%s: targets = next label within the example, never across", what);
    QT_CHECK(!pad_bad, "%s: padding has mask 0, segment 0, labels -100", what);
    qa_microbatch_free(&b);
    free(seen);
    free(member);
}

static void test_real_data(void) {
    qa_tokenizer *tok = load_tok("qwen1_5-qwen2.tokenizer.json");
    qa_template t;
    load_tpl(&t, "qwen", tok, 151643);
    qa_dataset a, b, c, u;
    double secs = 0;
    int per_file = 600;
    QT_CHECK(build_real(&a, tok, &t, 42, 1, per_file, 256, &secs) == 0, "build zh+es, %d per file, packed", per_file);
    printf("  built %lld examples (%lld tokens) in %.2f s\n", (long long)a.n, (long long)a.n_tokens, secs);
    qa_data_print_stats(&a, stdout);
    QT_CHECK(a.n == 2 * per_file && a.file_records[0] == per_file && a.file_records[1] == per_file, "max_examples per file");
    QT_CHECK(a.ex[0].file == 0 && a.ex[per_file].file == 1 && a.ex[per_file].record == 0, "files concatenated in order");
    int64_t want_val = (int64_t)ceil(0.05 * (double)a.n);
    QT_CHECK(a.n_split[1] == want_val && a.n_split[0] == a.n - want_val, "validation = ceil(5%% of %lld) = %lld",
             (long long)a.n, (long long)want_val);
    /* disjoint, complete, sorted */
    char *mark = qa_calloc((size_t)a.n, 1);
    int dup = 0, sorted = 1;
    for (int s = 0; s < 2; s++)
        for (int64_t k = 0; k < a.n_split[s]; k++) {
            dup += mark[a.split[s][k]]++;
            if (k) sorted &= a.split[s][k] > a.split[s][k - 1];
        }
    int all = 1;
    for (int64_t k = 0; k < a.n; k++) all &= mark[k] == 1;
    QT_CHECK(!dup && all && sorted, "split: disjoint, covers every example, ascending");
    free(mark);
    int from_both = 0;
    for (int64_t k = 0; k < a.n_split[1]; k++) from_both |= 1 << a.ex[a.split[1][k]].file;
    QT_CHECK(from_both == 3, "validation draws from both files");

    QT_CHECK(build_real(&b, tok, &t, 42, 1, per_file, 256, NULL) == 0 && same_split(&a, &b), "same seed: same split");
    int same_rows = a.rows[0].n_rows == b.rows[0].n_rows &&
                    !memcmp(a.rows[0].ex_ids, b.rows[0].ex_ids, sizeof(int64_t) * (size_t)a.rows[0].n_examples) &&
                    !memcmp(a.rows[0].start, b.rows[0].start, sizeof(int64_t) * (size_t)(a.rows[0].n_rows + 1));
    QT_CHECK(same_rows, "same seed: same packed rows");
    QT_CHECK(build_real(&c, tok, &t, 43, 1, per_file, 256, NULL) == 0 && !same_split(&a, &c), "another seed: another split");
    QT_CHECK(a.n_tokens == c.n_tokens, "the seed changes no tokens");

    check_rows(&a, QA_SPLIT_TRAIN, "packed train");
    check_rows(&a, QA_SPLIT_VAL, "packed validation");
    QT_CHECK(a.rows[0].n_rows >= (a.rows[0].n_tokens + a.row_len - 1) / a.row_len && a.rows[0].n_rows < a.n_split[0],
             "packing: %lld rows for %lld examples (lower bound %lld)", (long long)a.rows[0].n_rows,
             (long long)a.n_split[0], (long long)((a.rows[0].n_tokens + a.row_len - 1) / a.row_len));
    double fill = (double)a.rows[0].n_tokens / ((double)a.rows[0].n_rows * a.row_len);
    QT_CHECK(fill > 0.75, "packing fills %.1f%% of the rows", 100 * fill);

    QT_CHECK(build_real(&u, tok, &t, 42, 0, per_file, 256, NULL) == 0 && same_split(&a, &u), "unpacked: same split");
    QT_CHECK(u.rows[0].n_rows == u.n_split[0], "unpacked: one example per row");
    check_rows(&u, QA_SPLIT_TRAIN, "unpacked train");

    /* epoch order */
    int64_t n = a.rows[0].n_rows;
    int64_t *o0 = qa_malloc(sizeof(int64_t) * n), *o0b = qa_malloc(sizeof(int64_t) * n), *o1 = qa_malloc(sizeof(int64_t) * n);
    qa_data_epoch_order(&a, 0, o0);
    qa_data_epoch_order(&b, 0, o0b);
    qa_data_epoch_order(&a, 1, o1);
    char *m = qa_calloc((size_t)n, 1);
    int perm = 1;
    for (int64_t k = 0; k < n; k++) perm &= o1[k] >= 0 && o1[k] < n && !m[o1[k]]++;
    QT_CHECK(perm, "epoch order is a permutation of the rows");
    QT_CHECK(!memcmp(o0, o0b, sizeof(int64_t) * n), "epoch order: same (seed, epoch), same order");
    QT_CHECK(memcmp(o0, o1, sizeof(int64_t) * n), "epoch order: epochs differ");
    free(m);

    /* resume: the order of (epoch, cursor) onward is recomputed from (seed, epoch) alone, in a
     * dataset built from scratch (as a restarted process would) */
    qa_dataset r2;
    QT_CHECK(build_real(&r2, tok, &t, 42, 1, per_file, 256, NULL) == 0, "rebuild for resume");
    int64_t *o1r = qa_malloc(sizeof(int64_t) * n);
    qa_data_epoch_order(&r2, 1, o1r);
    int64_t cursor = n / 3;
    qa_microbatch x, y;
    qa_microbatch_alloc(&x, 4, a.row_len);
    qa_microbatch_alloc(&y, 4, a.row_len);
    int resume_ok = 1;
    for (int64_t k = cursor; k < n; k += 4) {
        int cnt = (int)(n - k < 4 ? n - k : 4);
        qa_data_fill_batch(&a, QA_SPLIT_TRAIN, o1 + k, cnt, &x);
        qa_data_fill_batch(&r2, QA_SPLIT_TRAIN, o1r + k, cnt, &y);
        resume_ok &= x.B == y.B && x.T == y.T && !memcmp(x.input_ids, y.input_ids, sizeof(int32_t) * (size_t)x.B * x.T) &&
                     !memcmp(x.labels, y.labels, sizeof(int32_t) * (size_t)x.B * x.T) &&
                     !memcmp(x.segments, y.segments, sizeof(int32_t) * (size_t)x.B * x.T);
    }
    QT_CHECK(resume_ok, "resume at (epoch 1, cursor %lld) in a rebuilt dataset replays the same micro-batches",
             (long long)cursor);
    qa_microbatch_free(&x);
    qa_microbatch_free(&y);
    free(o1r);
    qa_data_free(&r2);
    free(o0);
    free(o0b);
    free(o1);
    qa_data_free(&a);
    qa_data_free(&b);
    qa_data_free(&c);
    qa_data_free(&u);
    qa_template_free(&t);
    qa_tok_free(tok);
}

static void test_plan_and_lr(void) {
    qa_train_plan p;
    qa_train_plan_compute(&p, 19000, 4, 4, 1, 3, 0, 0.1);
    QT_CHECK(p.steps_per_epoch == 1188 && p.total_steps == 3564 && p.warmup_steps == 357 && p.epochs == 3,
             "paper example: 19000 rows -> 1188 steps/epoch, 3564 total, 357 warmup (got %lld %lld %lld)",
             (long long)p.steps_per_epoch, (long long)p.total_steps, (long long)p.warmup_steps);
    qa_train_plan_compute(&p, 1000, 2, 3, 2, 1, 50, 0.1);
    QT_CHECK(p.rounds_per_epoch == 250 && p.steps_per_epoch == 84 && p.total_steps == 50 && p.warmup_steps == 5 &&
             p.epochs == 1, "max_steps overrides epochs; 2 ranks");
    qa_train_plan_compute(&p, 1001, 4, 4, 1, 2, 0, 0.0);
    QT_CHECK(p.rounds_per_epoch == 251 && p.steps_per_epoch == 63 && p.total_steps == 126 && p.warmup_steps == 0,
             "partial last micro-batch and step count as steps");
    double peak = 5e-5;
    QT_CHECK(qa_lr_at("cosine", peak, 0, 10, 100) == 0.0, "lr(0) = 0 (first update)");
    QT_CHECK(fabs(qa_lr_at("cosine", peak, 5, 10, 100) - peak / 2) < 1e-18, "warmup is linear");
    QT_CHECK(qa_lr_at("cosine", peak, 10, 10, 100) == peak, "peak after warmup");
    QT_CHECK(fabs(qa_lr_at("cosine", peak, 55, 10, 100) - peak / 2) < 1e-15, "cosine midpoint = peak/2");
    QT_CHECK(fabs(qa_lr_at("cosine", peak, 100, 10, 100)) < 1e-20, "cosine reaches 0");
    QT_CHECK(fabs(qa_lr_at("linear", peak, 55, 10, 100) - peak / 2) < 1e-15 && qa_lr_at("constant", peak, 99, 10, 100) == peak,
             "linear and constant");
}

static void test_rng(void) {
    int64_t p1[50], p2[50];
    qa_data_permutation(p1, 50, 7, 3);
    qa_data_permutation(p2, 50, 7, 3);
    QT_CHECK(!memcmp(p1, p2, sizeof p1), "permutation is a function of (seed, stream)");
    qa_data_permutation(p2, 50, 7, 4);
    QT_CHECK(memcmp(p1, p2, sizeof p1), "streams differ");
    /* pinned values: the algorithm is part of the resume contract */
    qa_data_rng r = qa_data_rng_stream(0, 0);
    uint64_t v = qa_data_rng_next(&r);
    QT_CHECK(qa_mix64(0x9E3779B97F4A7C15ull) == 0xE220A8397B1DCDAFull, "splitmix64 reference value");
    QT_CHECK(v == qa_mix64(qa_mix64(0) + 0x9E3779B97F4A7C15ull), "stream state = mix64(seed ^ mix64(stream))");
    int counts[3] = {0, 0, 0};
    qa_data_rng q = qa_data_rng_stream(1, 1);
    for (int i = 0; i < 30000; i++) counts[qa_data_rng_below(&q, 3)]++;
    QT_CHECK(counts[0] > 9500 && counts[1] > 9500 && counts[2] > 9500, "uniform below(3): %d %d %d", counts[0], counts[1],
             counts[2]);
}

int main(void) {
    assets = qt_env_or("QALIGN_ASSETS", "assets");
    templates = qt_env_or("QALIGN_TEMPLATES", "configs/templates");
    const char *golden = qt_env_or("QA_TRAINDATA_GOLDEN", "tests/data/traindata_golden.json");
    test_rng();
    test_cut_properties();
    test_golden(golden);
    test_qwen_by_hand();
    test_real_data();
    test_plan_and_lr();
    return qt_finish();
}
