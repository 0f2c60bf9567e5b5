/* data.c — see data.h. */
#include "train/data.h"

#include "common/qa_file.h"
#include "common/qa_clock.h"
#include "common/qa_mem.h"
#include "common/qa_rng.h"
#include "model/model.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- random numbers --------------------------------------------------------------------------- */

qa_data_rng qa_data_rng_stream(uint64_t seed, uint64_t stream) {
    qa_data_rng r = {qa_mix64(seed ^ qa_mix64(stream))};
    return r;
}

uint64_t qa_data_rng_next(qa_data_rng *r) {
    return qa_splitmix64(&r->state);
}

uint64_t qa_data_rng_below(qa_data_rng *r, uint64_t m) {
    uint64_t threshold = (0 - m) % m; /* 2^64 mod m */
    for (;;) {
        uint64_t x = qa_data_rng_next(r);
        if (x >= threshold) return x % m;
    }
}

void qa_data_permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    qa_data_rng r = qa_data_rng_stream(seed, stream);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)qa_data_rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ---- records ---------------------------------------------------------------------------------- */

void qa_records_free(qa_record *recs, int64_t n) {
    if (!recs) return;
    for (int64_t i = 0; i < n; i++) {
        free(recs[i].input);
        free(recs[i].answer);
        free(recs[i].ids);
    }
    free(recs);
}

static const char *json_kind(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static int get_field(const char *path, int64_t i, json_t *rec, const char *key, char **out, qa_err *e) {
    json_t *v = json_object_get(rec, key);
    if (!v)
        return QA_ERR(e, "%s: record %lld has no \"%s\" (every record needs string \"input\" and \"answer\")", path,
                      (long long)i, key);
    if (!json_is_string(v))
        return QA_ERR(e, "%s: record %lld: \"%s\" is %s, expected a string", path, (long long)i, key, json_kind(v));
    *out = qa_strndup(json_string_value(v), json_string_length(v));
    return 0;
}

/* A pre-tokenized record: "input_ids" and "labels", integer arrays of one length; labels -100 on a
 * prefix, then equal to input_ids. */
static int get_tokens(const char *path, int64_t i, json_t *rec, qa_record *out, qa_err *e) {
    json_t *ids = json_object_get(rec, "input_ids"), *lab = json_object_get(rec, "labels");
    if (!json_is_array(ids))
        return QA_ERR(e, "%s: record %lld: \"input_ids\" is %s, expected an array of token ids", path, (long long)i,
                      json_kind(ids));
    if (!lab)
        return QA_ERR(e, "%s: record %lld has \"input_ids\" but no \"labels\" (pre-tokenized records need both: "
                         "labels -100 on the prompt, = input_ids on the response)", path, (long long)i);
    if (!json_is_array(lab))
        return QA_ERR(e, "%s: record %lld: \"labels\" is %s, expected an array of integers", path, (long long)i,
                      json_kind(lab));
    size_t n = json_array_size(ids);
    if (n == 0) return QA_ERR(e, "%s: record %lld: \"input_ids\" is empty", path, (long long)i);
    if (json_array_size(lab) != n)
        return QA_ERR(e, "%s: record %lld: \"labels\" has %zu entries but \"input_ids\" has %zu; they must be aligned "
                         "(HF convention, not shifted)", path, (long long)i, json_array_size(lab), n);
    if (n > INT32_MAX / 2) return QA_ERR(e, "%s: record %lld: %zu tokens is too long", path, (long long)i, n);
    int32_t *v = qa_malloc(n * sizeof *v);
    size_t n_src = 0;
    int in_prefix = 1;
    for (size_t j = 0; j < n; j++) {
        json_t *a = json_array_get(ids, j), *b = json_array_get(lab, j);
        if (!json_is_integer(a) || json_integer_value(a) < 0 || json_integer_value(a) > INT32_MAX) {
            free(v);
            return QA_ERR(e, "%s: record %lld: input_ids[%zu] is %s, expected a token id (an integer >= 0)", path,
                          (long long)i, j, json_is_integer(a) ? "out of range" : json_kind(a));
        }
        if (!json_is_integer(b)) {
            free(v);
            return QA_ERR(e, "%s: record %lld: labels[%zu] is %s, expected an integer", path, (long long)i, j,
                          json_kind(b));
        }
        v[j] = (int32_t)json_integer_value(a);
        json_int_t lb = json_integer_value(b);
        if (in_prefix && lb == QA_IGNORE_INDEX) {
            n_src++;
            continue;
        }
        in_prefix = 0;
        if (lb != (json_int_t)v[j]) {
            int id = (int)v[j];
            free(v);
            return QA_ERR(e, "%s: record %lld: labels[%zu] = %lld but input_ids[%zu] = %d: pre-tokenized records must "
                             "have labels -100 on a prompt prefix and labels = input_ids on the rest (the response)",
                          path, (long long)i, j, (long long)lb, j, id);
        }
    }
    out->ids = v;
    out->n_ids = (int32_t)n;
    out->n_src = (int32_t)n_src;
    return 0;
}

int qa_data_read_file(const char *path, int64_t max_records, qa_record **recs, int64_t *n, qa_err *e) {
    *recs = NULL;
    *n = 0;
    char *text;
    size_t len;
    if (qa_read_file(path, 0, &text, &len, e)) return qa_err_prefix(e, "reading data file");
    size_t k = 0;
    while (k < len && (text[k] == ' ' || text[k] == '\n' || text[k] == '\r' || text[k] == '\t')) k++;
    if (k == len) {
        free(text);
        return QA_ERR(e, "%s is empty; expected a JSON array of {\"input\", \"answer\"} (or {\"input_ids\", "
                         "\"labels\"}) records", path);
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    free(text);
    if (!root)
        return QA_ERR(e, "%s (line %d, column %d): invalid JSON: %s (expected one JSON array of {\"input\", "
                         "\"answer\"} records; JSON Lines are not accepted)", path, jerr.line, jerr.column, jerr.text);
    if (!json_is_array(root)) {
        int rc = QA_ERR(e, "%s: the top level is %s; expected a JSON array of {\"input\", \"answer\"} records", path,
                        json_kind(root));
        json_decref(root);
        return rc;
    }
    size_t total = json_array_size(root);
    if (total == 0) {
        json_decref(root);
        return QA_ERR(e, "%s: the array holds no records", path);
    }
    int64_t keep = max_records > 0 && (int64_t)total > max_records ? max_records : (int64_t)total;
    qa_record *r = qa_calloc((size_t)keep, sizeof *r);
    int rc = 0, kind0 = -1;
    for (size_t i = 0; i < total && !rc; i++) {
        json_t *rec = json_array_get(root, i);
        if (!json_is_object(rec)) {
            rc = QA_ERR(e, "%s: record %zu is %s, expected an object with \"input\" and \"answer\" (or \"input_ids\" "
                        "and \"labels\")", path, i, json_kind(rec));
            break;
        }
        int kind = json_object_get(rec, "input_ids") != NULL;
        if (kind0 < 0) kind0 = kind;
        if (kind != kind0) {
            rc = QA_ERR(e, "%s: record %zu is %s but record 0 is %s: one file holds one kind of record", path, i,
                        kind ? "pre-tokenized (\"input_ids\")" : "text (no \"input_ids\")",
                        kind0 ? "pre-tokenized" : "text");
            break;
        }
        qa_record x = {0};
        if (kind) {
            if (get_tokens(path, (int64_t)i, rec, &x, e)) { rc = -1; break; }
        } else if (get_field(path, (int64_t)i, rec, "input", &x.input, e) ||
                   get_field(path, (int64_t)i, rec, "answer", &x.answer, e)) {
            free(x.input);
            rc = -1;
            break;
        }
        if ((int64_t)i < keep) {
            r[i] = x;
        } else {
            free(x.input);
            free(x.answer);
            free(x.ids);
        }
    }
    json_decref(root);
    if (rc) {
        qa_records_free(r, keep);
        return rc;
    }
    *recs = r;
    *n = keep;
    return 0;
}

/* ---- tokenization (threads) ------------------------------------------------------------------- */

typedef struct tok_job {
    const qa_template *t;       /* NULL: pre-tokenized data only */
    const qa_tokenizer *tok;
    const qa_record *recs;      /* all records, concatenated */
    int64_t lo, hi;             /* this thread's range */
    int32_t **src, **tgt;       /* [n] */
    size_t *n_src, *n_tgt;      /* [n] */
    int vocab;                  /* > 0: ids must be below it */
    int64_t fail_at;            /* first failing record, -1 none */
    qa_err err;
} tok_job;

static int encode_record(const tok_job *j, const qa_record *r, int32_t **src, size_t *n_src, int32_t **tgt,
                         size_t *n_tgt, qa_err *e) {
    if (qa_record_is_tokens(r)) {
        *n_src = (size_t)r->n_src;
        *n_tgt = (size_t)(r->n_ids - r->n_src);
        *src = qa_malloc((*n_src ? *n_src : 1) * sizeof(int32_t));
        *tgt = qa_malloc((*n_tgt ? *n_tgt : 1) * sizeof(int32_t));
        memcpy(*src, r->ids, *n_src * sizeof(int32_t));
        memcpy(*tgt, r->ids + r->n_src, *n_tgt * sizeof(int32_t));
    } else {
        if (!j->t)
            return QA_ERR(e, "a text record (\"input\"/\"answer\") needs a template, but data.template is none "
                             "(pre-tokenized data only): set data.template to qwen, mistral, vanilla or a .yaml, or "
                             "pre-tokenize this file");
        QA_TRY(qa_template_encode(j->t, j->tok, r->input, r->answer, src, n_src, tgt, n_tgt, e));
    }
    if (j->vocab > 0) {
        for (size_t k = 0; k < *n_src + *n_tgt; k++) {
            int32_t id = k < *n_src ? (*src)[k] : (*tgt)[k - *n_src];
            if (id >= j->vocab) {
                int rc = qa_record_is_tokens(r)
                    ? QA_ERR(e, "input_ids[%zu] = %d is outside the model's vocab_size %d (pre-tokenized with another "
                                "tokenizer?)", k, (int)id, j->vocab)
                    : QA_ERR(e, "token %zu of the templated example has id %d, outside the model's vocab_size %d: the "
                                "tokenizer or template does not match the model", k, (int)id, j->vocab);
                free(*src); free(*tgt);
                *src = *tgt = NULL;
                return rc;
            }
        }
    }
    return 0;
}

static void *tok_worker(void *arg) {
    tok_job *j = arg;
    j->fail_at = -1;
    for (int64_t i = j->lo; i < j->hi; i++) {
        if (encode_record(j, &j->recs[i], &j->src[i], &j->n_src[i], &j->tgt[i], &j->n_tgt[i], &j->err)) {
            j->fail_at = i;
            break;
        }
    }
    return NULL;
}

static int online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- packing ---------------------------------------------------------------------------------- */

/* First-fit over rows with a max segment tree of free space: leaf r = free tokens of row r (rows
 * not yet opened have the full length), so the leftmost leaf that fits is the first-fit row. */
typedef struct ff_tree {
    int64_t size;   /* leaves (power of two) */
    int64_t *mx;    /* [2 * size] */
} ff_tree;

static void ff_init(ff_tree *f, int64_t n, int64_t cap) {
    f->size = 1;
    while (f->size < n) f->size <<= 1;
    f->mx = qa_malloc(sizeof(int64_t) * 2 * (size_t)f->size);
    for (int64_t i = 0; i < f->size; i++) f->mx[f->size + i] = i < n ? cap : -1;
    for (int64_t i = f->size - 1; i >= 1; i--) f->mx[i] = f->mx[2 * i] > f->mx[2 * i + 1] ? f->mx[2 * i] : f->mx[2 * i + 1];
}

/* leftmost leaf with value >= need (the caller guarantees one exists), then subtract need */
static int64_t ff_take(ff_tree *f, int64_t need) {
    int64_t i = 1;
    while (i < f->size) i = f->mx[2 * i] >= need ? 2 * i : 2 * i + 1;
    int64_t leaf = i - f->size;
    f->mx[i] -= need;
    for (i >>= 1; i >= 1; i >>= 1) f->mx[i] = f->mx[2 * i] > f->mx[2 * i + 1] ? f->mx[2 * i] : f->mx[2 * i + 1];
    return leaf;
}

static int64_t ex_len(const qa_dataset *d, int64_t i) { return (int64_t)d->ex[i].n_src + d->ex[i].n_tgt; }

static void build_rows(qa_dataset *d, int s) {
    qa_rows *R = &d->rows[s];
    int64_t n = d->n_split[s];
    const int64_t *ids = d->split[s];
    memset(R, 0, sizeof *R);
    R->n_examples = n;
    for (int64_t k = 0; k < n; k++) {
        R->n_tokens += ex_len(d, ids[k]);
        R->n_label_tokens += d->ex[ids[k]].n_tgt;
    }
    R->ex_ids = qa_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!d->packing) {
        R->n_rows = n;
        R->start = qa_malloc(sizeof(int64_t) * (size_t)(n + 1));
        R->len = qa_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        for (int64_t k = 0; k < n; k++) {
            R->start[k] = k;
            R->ex_ids[k] = ids[k];
            R->len[k] = ex_len(d, ids[k]);
        }
        R->start[n] = n;
        return;
    }
    /* visit order: a seeded permutation of the split (different streams per split) */
    int64_t *visit = qa_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    qa_data_permutation(visit, n, d->seed, QA_STREAM_PACK + (uint64_t)s * 0x100000000ull);
    int64_t *row_of = qa_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    ff_tree f;
    ff_init(&f, n ? n : 1, d->row_len);
    int64_t n_rows = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t e = ids[visit[k]];
        int64_t r = ff_take(&f, ex_len(d, e));
        row_of[k] = r;
        if (r + 1 > n_rows) n_rows = r + 1;
    }
    R->n_rows = n_rows;
    R->start = qa_calloc((size_t)n_rows + 1, sizeof(int64_t));
    R->len = qa_calloc((size_t)(n_rows ? n_rows : 1), sizeof(int64_t));
    for (int64_t k = 0; k < n; k++) R->start[row_of[k] + 1]++;
    for (int64_t r = 0; r < n_rows; r++) R->start[r + 1] += R->start[r];
    int64_t *fill = qa_malloc(sizeof(int64_t) * (size_t)(n_rows ? n_rows : 1));
    for (int64_t r = 0; r < n_rows; r++) fill[r] = R->start[r];
    for (int64_t k = 0; k < n; k++) { /* in visit order: placement order within each row */
        int64_t r = row_of[k], e = ids[visit[k]];
        R->ex_ids[fill[r]++] = e;
        R->len[r] += ex_len(d, e);
    }
    free(fill);
    free(f.mx);
    free(row_of);
    free(visit);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- build ------------------------------------------------------------------------------------ */

int qa_data_build_records(qa_dataset *d, const qa_data_opts *o, const qa_template *t, const qa_tokenizer *tok,
                          qa_record *const *recs, const int64_t *n_recs, qa_err *e) {
    memset(d, 0, sizeof *d);
    if (o->cutoff < 1) return QA_ERR(e, "data.cutoff must be at least 1 (got %d)", o->cutoff);
    if (o->packing && o->pack_length < o->cutoff)
        return QA_ERR(e, "data.pack_length %d is shorter than data.cutoff %d", o->pack_length, o->cutoff);
    if (!(o->val_fraction >= 0 && o->val_fraction < 1))
        return QA_ERR(e, "data.val_fraction must be in [0,1) (got %g)", o->val_fraction);
    d->n_files = o->n_files;
    d->files = qa_calloc((size_t)(o->n_files ? o->n_files : 1), sizeof(char *));
    d->file_records = qa_calloc((size_t)(o->n_files ? o->n_files : 1), sizeof(int64_t));
    d->seed = o->seed;
    d->packing = o->packing;
    d->padding_free = o->padding_free;
    d->row_len = o->packing ? o->pack_length : o->cutoff;
    d->pad_id = t ? t->end_id : o->pad_id;
    int64_t n = 0;
    for (int f = 0; f < o->n_files; f++) {
        d->files[f] = qa_strdup(o->files[f]);
        d->file_records[f] = n_recs[f];
        n += n_recs[f];
    }
    d->n = n;
    if (n == 0) return QA_ERR(e, "no training records in data.files");

    /* one flat view of the records */
    qa_record *all = qa_malloc(sizeof(qa_record) * (size_t)n);
    int32_t *file_of = qa_malloc(sizeof(int32_t) * (size_t)n);
    int64_t *rec_of = qa_malloc(sizeof(int64_t) * (size_t)n);
    for (int f = 0, k = 0; f < o->n_files; f++)
        for (int64_t i = 0; i < n_recs[f]; i++, k++) {
            all[k] = recs[f][i];
            d->n_pretokenized += qa_record_is_tokens(&all[k]);
            file_of[k] = f;
            rec_of[k] = i;
        }

    /* tokenize in threads */
    int nt = o->threads > 0 ? o->threads : online_cpus();
    if (nt > n) nt = (int)n;
    if (nt < 1) nt = 1;
    int32_t **src = qa_calloc((size_t)n, sizeof(int32_t *)), **tgt = qa_calloc((size_t)n, sizeof(int32_t *));
    size_t *n_src = qa_calloc((size_t)n, sizeof(size_t)), *n_tgt = qa_calloc((size_t)n, sizeof(size_t));
    tok_job *jobs = qa_calloc((size_t)nt, sizeof(tok_job));
    pthread_t *th = qa_calloc((size_t)nt, sizeof(pthread_t));
    for (int k = 0; k < nt; k++) {
        jobs[k] = (tok_job){t, tok, all, n * k / nt, n * (k + 1) / nt, src, tgt, n_src, n_tgt, o->vocab, -1, {0}};
        if (nt == 1 || pthread_create(&th[k], NULL, tok_worker, &jobs[k])) {
            tok_worker(&jobs[k]);
            th[k] = 0;
        }
    }
    int rc = 0;
    for (int k = 0; k < nt; k++) {
        if (th[k]) pthread_join(th[k], NULL);
        if (jobs[k].fail_at >= 0 && !rc) {
            int64_t i = jobs[k].fail_at;
            *e = jobs[k].err;
            qa_err_prefix(e, "%s record %lld", d->files[file_of[i]], (long long)rec_of[i]);
            rc = -1;
        }
    }
    free(th);
    free(jobs);

    if (!rc) {
        /* cut and pack into one pool */
        int64_t total = 0;
        d->ex = qa_calloc((size_t)n, sizeof(qa_example));
        for (int64_t i = 0; i < n; i++) {
            int64_t ks, kt;
            qa_truncate_lengths((int64_t)n_src[i], (int64_t)n_tgt[i], o->cutoff, &ks, &kt);
            d->ex[i] = (qa_example){total, (int32_t)ks, (int32_t)kt, file_of[i],
                                    ks < (int64_t)n_src[i] || kt < (int64_t)n_tgt[i], rec_of[i]};
            total += ks + kt;
            d->n_truncated += d->ex[i].truncated;
            if (ks + kt > d->max_len) d->max_len = (int32_t)(ks + kt);
        }
        /* a loss needs a labelled token after the first position of its example (the HF shift): a file
         * without one would train on nothing (loss 0) */
        for (int f = 0; f < o->n_files && !rc; f++) {
            int64_t sup = 0, nf = 0;
            for (int64_t i = 0; i < n; i++)
                if (d->ex[i].file == f) {
                    nf++;
                    sup += d->ex[i].n_tgt - (d->ex[i].n_src == 0 && d->ex[i].n_tgt > 0);
                }
            if (nf && !sup)
                rc = QA_ERR(e, "%s: none of its %lld examples has a supervised token (a label other than -100 after the "
                            "first position%s): training on it would learn nothing", o->files[f], (long long)nf,
                            o->cutoff > 0 ? ", within data.cutoff" : "");
        }
        d->n_tokens = total;
        d->tokens = qa_malloc(sizeof(int32_t) * (size_t)(total ? total : 1));
        for (int64_t i = 0; i < n; i++) {
            memcpy(d->tokens + d->ex[i].off, src[i], sizeof(int32_t) * (size_t)d->ex[i].n_src);
            memcpy(d->tokens + d->ex[i].off + d->ex[i].n_src, tgt[i], sizeof(int32_t) * (size_t)d->ex[i].n_tgt);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        free(src[i]);
        free(tgt[i]);
    }
    free(src);
    free(tgt);
    free(n_src);
    free(n_tgt);
    free(all);
    free(file_of);
    free(rec_of);
    if (rc) {
        qa_data_free(d);
        return rc;
    }

    /* split */
    int64_t n_val = o->val_fraction > 0 ? (int64_t)ceil(o->val_fraction * (double)n) : 0;
    if (n_val >= n) {
        rc = QA_ERR(e, "data.val_fraction %g of %lld examples leaves none for training; lower it or add data",
                    o->val_fraction, (long long)n);
        qa_data_free(d);
        return rc;
    }
    int64_t *perm = qa_malloc(sizeof(int64_t) * (size_t)n);
    qa_data_permutation(perm, n, o->seed, QA_STREAM_SPLIT);
    d->n_split[QA_SPLIT_VAL] = n_val;
    d->n_split[QA_SPLIT_TRAIN] = n - n_val;
    d->split[QA_SPLIT_VAL] = qa_malloc(sizeof(int64_t) * (size_t)(n_val ? n_val : 1));
    d->split[QA_SPLIT_TRAIN] = qa_malloc(sizeof(int64_t) * (size_t)(n - n_val));
    memcpy(d->split[QA_SPLIT_VAL], perm, sizeof(int64_t) * (size_t)n_val);
    memcpy(d->split[QA_SPLIT_TRAIN], perm + n_val, sizeof(int64_t) * (size_t)(n - n_val));
    free(perm);
    qsort(d->split[QA_SPLIT_VAL], (size_t)n_val, sizeof(int64_t), cmp_i64);
    qsort(d->split[QA_SPLIT_TRAIN], (size_t)(n - n_val), sizeof(int64_t), cmp_i64);

    build_rows(d, QA_SPLIT_TRAIN);
    build_rows(d, QA_SPLIT_VAL);
    return 0;
}

int qa_data_build(qa_dataset *d, const qa_data_opts *o, const qa_template *t, const qa_tokenizer *tok, qa_err *e) {
    memset(d, 0, sizeof *d);
    if (o->n_files < 1) return QA_ERR(e, "data.files is empty; list the training JSON files");
    qa_record **recs = qa_calloc((size_t)o->n_files, sizeof(qa_record *));
    int64_t *n_recs = qa_calloc((size_t)o->n_files, sizeof(int64_t));
    int rc = 0;
    for (int f = 0; f < o->n_files && !rc; f++) rc = qa_data_read_file(o->files[f], o->max_examples, &recs[f], &n_recs[f], e);
    if (!rc) rc = qa_data_build_records(d, o, t, tok, recs, n_recs, e);
    for (int f = 0; f < o->n_files; f++) qa_records_free(recs[f], n_recs[f]);
    free(recs);
    free(n_recs);
    return rc;
}

void qa_data_free(qa_dataset *d) {
    if (!d) return;
    for (int f = 0; f < d->n_files; f++) free(d->files ? d->files[f] : NULL);
    free(d->files);
    free(d->file_records);
    free(d->ex);
    free(d->tokens);
    for (int s = 0; s < 2; s++) {
        free(d->split[s]);
        free(d->rows[s].start);
        free(d->rows[s].ex_ids);
        free(d->rows[s].len);
    }
    memset(d, 0, sizeof *d);
}

void qa_data_opts_from_config(qa_data_opts *o, const qa_train_config *tc) {
    memset(o, 0, sizeof *o);
    o->files = (const char *const *)tc->data.files.v;
    o->n_files = tc->data.files.n;
    o->max_examples = tc->data.max_examples;
    o->val_fraction = tc->data.val_fraction;
    o->seed = (uint64_t)(tc->data.shuffle_seed >= 0 ? tc->data.shuffle_seed : tc->train.seed);
    o->cutoff = tc->data.cutoff;
    o->packing = tc->data.packing;
    o->padding_free = tc->data.padding_free;
    o->pack_length = tc->data.pack_length > 0 ? tc->data.pack_length : tc->data.cutoff;
    o->threads = tc->train.threads;
}

void qa_data_opts_for_model(qa_data_opts *o, const qa_hf_config *c) {
    o->vocab = c->vocab;
    o->pad_id = c->eos_token_id >= 0 && c->eos_token_id < c->vocab ? c->eos_token_id : 0;
}

void qa_data_print_stats(const qa_dataset *d, FILE *f) {
    for (int i = 0; i < d->n_files; i++) {
        int64_t tok = 0, lab = 0;
        for (int64_t k = 0; k < d->n; k++)
            if (d->ex[k].file == i) { tok += ex_len(d, k); lab += d->ex[k].n_tgt; }
        fprintf(f, "  file %s: %lld records, %lld tokens (%lld labelled)\n", d->files[i], (long long)d->file_records[i],
                (long long)tok, (long long)lab);
    }
    fprintf(f, "  examples: %lld (train %lld, validation %lld); %lld cut to the cutoff; longest %d tokens, mean %.1f",
            (long long)d->n, (long long)d->n_split[0], (long long)d->n_split[1], (long long)d->n_truncated, d->max_len,
            d->n ? (double)d->n_tokens / (double)d->n : 0.0);
    if (d->n_pretokenized) fprintf(f, "; %lld pre-tokenized", (long long)d->n_pretokenized);
    fprintf(f, "\n");
    const char *nm[2] = {"train", "validation"};
    for (int s = 0; s < 2; s++) {
        const qa_rows *R = &d->rows[s];
        fprintf(f, "  %s: %lld tokens (%lld labelled) in %lld rows", nm[s], (long long)R->n_tokens,
                (long long)R->n_label_tokens, (long long)R->n_rows);
        if (d->packing && R->n_rows)
            fprintf(f, " of %d (%.1f%% filled, %.2f examples per row)", d->row_len,
                    100.0 * (double)R->n_tokens / ((double)R->n_rows * d->row_len),
                    (double)R->n_examples / (double)R->n_rows);
        fprintf(f, "\n");
    }
}

/* ---- everything from a config ---------------------------------------------------------------- */

int qa_train_inputs_load(qa_train_inputs *in, const qa_train_config *tc, qa_err *e) {
    memset(in, 0, sizeof *in);
    double t0 = qa_now_s();
    char *cfgp = qa_path_join(tc->model.path, "config.json");
    int rc = qa_hf_config_load(&in->hf, cfgp, e);
    if (rc) qa_err_prefix(e, "model.path %s (%s)", tc->model.path, qa_cfg_origin(&tc->cfg, "model.path"));
    free(cfgp);
    int none = qa_template_is_none(tc->data.template_name);
    if (!rc && !none && (rc = qa_tok_load(&in->tok, tc->tokenizer.path, e)))
        qa_err_prefix(e, "tokenizer.path (%s; for pre-tokenized data only, data.template: none needs no tokenizer)",
                      qa_cfg_origin(&tc->cfg, "tokenizer.path"));
    if (!rc && !none && (rc = qa_template_find(tc->data.template_name, tc->config_path, &in->template_path, e)))
        qa_err_prefix(e, "data.template (%s)", qa_cfg_origin(&tc->cfg, "data.template"));
    if (!rc && !none) {
        rc = qa_template_load(&in->tpl, in->template_path, in->tok, in->hf.bos_token_id, in->hf.eos_token_id, e);
        if (!rc) in->has_template = 1;
    }
    if (!rc && in->has_template && in->tpl.end_id >= in->hf.vocab)
        rc = QA_ERR(e, "template %s: end token id %d is outside the model's vocab_size %d (%s)", in->template_path,
                    (int)in->tpl.end_id, in->hf.vocab, tc->model.path);
    if (!rc) {
        qa_data_opts o;
        qa_data_opts_from_config(&o, tc);
        qa_data_opts_for_model(&o, &in->hf);
        rc = qa_data_build(&in->data, &o, in->has_template ? &in->tpl : NULL, in->tok, e);
    }
    in->seconds = qa_now_s() - t0;
    if (rc) qa_train_inputs_free(in);
    return rc;
}

void qa_train_inputs_free(qa_train_inputs *in) {
    if (!in) return;
    qa_data_free(&in->data);
    if (in->has_template) qa_template_free(&in->tpl);
    if (in->tok) qa_tok_free(in->tok);
    free(in->template_path);
    memset(in, 0, sizeof *in);
}

/* ---- batches ---------------------------------------------------------------------------------- */

void qa_microbatch_alloc(qa_microbatch *b, int cap_B, int cap_T) {
    memset(b, 0, sizeof *b);
    b->cap_B = cap_B;
    b->cap_T = cap_T;
    size_t n = (size_t)cap_B * (size_t)cap_T;
    if (!n) n = 1;
    b->input_ids = qa_malloc(n * sizeof(int32_t));
    b->labels = qa_malloc(n * sizeof(int32_t));
    b->targets = qa_malloc(n * sizeof(int32_t));
    b->loss_labels = qa_malloc(n * sizeof(int32_t));
    b->attn_mask = qa_malloc(n * sizeof(int32_t));
    b->positions = qa_malloc(n * sizeof(int32_t));
    b->segments = qa_malloc(n * sizeof(int32_t));
}

void qa_microbatch_free(qa_microbatch *b) {
    if (!b) return;
    free(b->input_ids);
    free(b->labels);
    free(b->targets);
    free(b->loss_labels);
    free(b->attn_mask);
    free(b->positions);
    free(b->segments);
    memset(b, 0, sizeof *b);
}

void qa_microbatch_view(const qa_microbatch *b, qa_batch *v) {
    memset(v, 0, sizeof *v);
    v->B = b->B;
    v->T = b->T;
    v->input_ids = b->input_ids;
    v->attention_mask = b->attn_mask;
    v->positions = b->positions;
    v->segment_ids = b->segments;
    /* the model takes labels with the HF shift (position t predicts labels[t+1]) over the whole row; these
     * are the targets shifted back by one, so no loss crosses from one packed example into the next */
    v->labels = b->loss_labels;
}

void qa_data_batch_shape_of(int padding_free, int micro_batch, int row_len, int *B, int *T) {
    if (row_len < 1) row_len = 1;
    *B = padding_free ? 1 : micro_batch;
    *T = padding_free ? micro_batch * row_len : row_len;
}

void qa_data_batch_shape(const qa_dataset *d, int micro_batch, int *B, int *T) {
    qa_data_batch_shape_of(d->padding_free, micro_batch, d->packing ? d->row_len : d->max_len, B, T);
}

/* padding-free: rows row_ids[0..count) end to end in row 0 of b */
static void fill_flat(const qa_dataset *d, const qa_rows *R, const int64_t *row_ids, int count, qa_microbatch *b) {
    int64_t T = 0;
    for (int i = 0; i < count; i++) T += R->len[row_ids[i]];
    if (T < 1) T = 1;
    QA_ASSERT(T <= b->cap_T, "padding-free micro-batch of %lld tokens exceeds the batch capacity %d", (long long)T,
              b->cap_T);
    b->B = count ? 1 : 0;
    b->T = (int)T;
    b->n_examples = 0;
    b->n_tokens = 0;
    b->n_targets = 0;
    if (!count) return;
    int t = 0, k = 0;
    for (int i = 0; i < count; i++) {
        int64_t r = row_ids[i];
        QA_ASSERT(r >= 0 && r < R->n_rows, "row %lld out of range", (long long)r);
        for (int64_t q = R->start[r]; q < R->start[r + 1]; q++) {
            const qa_example *ex = &d->ex[R->ex_ids[q]];
            const int32_t *src = d->tokens + ex->off;
            int L = ex->n_src + ex->n_tgt;
            k++;
            for (int j = 0; j < L; j++, t++) {
                b->input_ids[t] = src[j];
                b->labels[t] = j < ex->n_src ? QA_IGNORE_INDEX : src[j];
                b->attn_mask[t] = 1;
                b->positions[t] = j;
                b->segments[t] = k;
            }
        }
    }
    b->n_examples = k;
    b->n_tokens = t;
    for (; t < T; t++) { /* only when every row is empty */
        b->input_ids[t] = d->pad_id;
        b->labels[t] = QA_IGNORE_INDEX;
        b->attn_mask[t] = 0;
        b->positions[t] = 0;
        b->segments[t] = 0;
    }
    for (t = 0; t < T; t++) {
        const int32_t *seg = b->segments, *lab = b->labels;
        b->targets[t] = t + 1 < T && seg[t] != 0 && seg[t + 1] == seg[t] ? lab[t + 1] : QA_IGNORE_INDEX;
        b->n_targets += b->targets[t] != QA_IGNORE_INDEX;
        b->loss_labels[t] = t ? b->targets[t - 1] : QA_IGNORE_INDEX;   /* what the model reads (see the padded path) */
    }
}

void qa_data_fill_batch(const qa_dataset *d, int s, const int64_t *row_ids, int count, qa_microbatch *b) {
    const qa_rows *R = &d->rows[s];
    if (d->padding_free) {
        fill_flat(d, R, row_ids, count, b);
        return;
    }
    QA_ASSERT(count <= b->cap_B, "micro-batch of %d rows exceeds the batch capacity %d", count, b->cap_B);
    int T = 0;
    if (d->packing) {
        T = d->row_len;
    } else {
        for (int i = 0; i < count; i++)
            if (R->len[row_ids[i]] > T) T = (int)R->len[row_ids[i]];
        if (T < 1) T = 1;
    }
    QA_ASSERT(T <= b->cap_T, "micro-batch rows of %d tokens exceed the batch capacity %d", T, b->cap_T);
    b->B = count;
    b->T = T;
    b->n_examples = 0;
    b->n_tokens = 0;
    b->n_targets = 0;
    for (int i = 0; i < count; i++) {
        int64_t r = row_ids[i];
        QA_ASSERT(r >= 0 && r < R->n_rows, "row %lld out of range", (long long)r);
        int32_t *ids = b->input_ids + (size_t)i * T, *lab = b->labels + (size_t)i * T, *tg = b->targets + (size_t)i * T;
        int32_t *am = b->attn_mask + (size_t)i * T, *pos = b->positions + (size_t)i * T, *seg = b->segments + (size_t)i * T;
        int t = 0, k = 0;
        for (int64_t q = R->start[r]; q < R->start[r + 1]; q++) {
            int64_t x = R->ex_ids[q];
            const qa_example *ex = &d->ex[x];
            const int32_t *src = d->tokens + ex->off;
            int L = ex->n_src + ex->n_tgt;
            k++;
            for (int j = 0; j < L; j++, t++) {
                ids[t] = src[j];
                lab[t] = j < ex->n_src ? QA_IGNORE_INDEX : src[j];
                am[t] = 1;
                pos[t] = j;
                seg[t] = k;
            }
        }
        b->n_examples += k;
        b->n_tokens += t;
        for (; t < T; t++) {
            ids[t] = d->pad_id;
            lab[t] = QA_IGNORE_INDEX;
            am[t] = 0;
            pos[t] = 0;
            seg[t] = 0;
        }
        int32_t *ll = b->loss_labels + (size_t)i * T;
        for (t = 0; t < T; t++) {
            tg[t] = t + 1 < T && seg[t] != 0 && seg[t + 1] == seg[t] ? lab[t + 1] : QA_IGNORE_INDEX;
            b->n_targets += tg[t] != QA_IGNORE_INDEX;
            ll[t] = t ? tg[t - 1] : QA_IGNORE_INDEX;
        }
    }
}

void qa_data_epoch_order(const qa_dataset *d, int epoch, int64_t *order) {
    qa_data_permutation(order, d->rows[QA_SPLIT_TRAIN].n_rows, d->seed, QA_STREAM_EPOCH + (uint64_t)epoch);
}

/* ---- plan and schedule ------------------------------------------------------------------------ */

void qa_train_plan_compute(qa_train_plan *p, int64_t rows, int micro_batch, int grad_accum, int world, int epochs,
                           int64_t max_steps, double warmup_ratio) {
    memset(p, 0, sizeof *p);
    p->rows_per_epoch = rows;
    int64_t per_round = (int64_t)micro_batch * world;
    p->rounds_per_epoch = (rows + per_round - 1) / per_round;
    p->steps_per_epoch = (p->rounds_per_epoch + grad_accum - 1) / grad_accum;
    p->total_steps = max_steps > 0 ? max_steps : (int64_t)epochs * p->steps_per_epoch;
    p->warmup_steps = (int64_t)ceil(warmup_ratio * (double)p->total_steps);
    p->epochs = p->steps_per_epoch ? (int)((p->total_steps + p->steps_per_epoch - 1) / p->steps_per_epoch) : 0;
    p->rows_per_step = per_round * grad_accum;
}

double qa_lr_at(const char *schedule, double peak, int64_t t, int64_t warmup, int64_t total) {
    if (t < warmup) return peak * (double)t / (double)(warmup > 1 ? warmup : 1);
    if (!strcmp(schedule, "constant")) return peak;
    double span = (double)(total - warmup > 1 ? total - warmup : 1);
    if (!strcmp(schedule, "linear")) {
        double v = (double)(total - t) / span;
        return peak * (v > 0 ? v : 0);
    }
    double progress = (double)(t - warmup) / span;
    double v = 0.5 * (1.0 + cos(M_PI * 2.0 * 0.5 * progress));
    return peak * (v > 0 ? v : 0);
}
