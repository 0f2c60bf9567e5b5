/* test_tokenizer_golden.c — every case of fixtures/tokenizers/golden.json (ids, ids_with_special,
 * decoded, vocab size) and every set of vectors.json, for every tokenizer file they name. Cases are
 * discovered from the files: a new golden file with new texts or tokenizers needs no code change.
 * Also: the same cases from 3 threads at once on one tokenizer (it must be shareable), and
 * id <-> token round trips.
 *
 * usage: test_tokenizer_golden GOLDEN.json VECTORS.json TOKENIZER_DIR
 */
#include "tokenizer/tokenizer.h"
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int ids_equal(const int32_t *a, size_t na, json_t *want) {
    if (!json_is_array(want) || json_array_size(want) != na) return 0;
    for (size_t i = 0; i < na; i++)
        if (json_integer_value(json_array_get(want, i)) != a[i]) return 0;
    return 1;
}

static void print_ids(const char *what, const int32_t *a, size_t n) {
    printf("    %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) printf(" %d", a[i]);
    printf("%s\n", n > 40 ? " ..." : "");
}

static qa_tokenizer *load(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    qa_err e = {0};
    qa_tokenizer *t = NULL;
    int rc = qa_tok_load(&t, path, &e);
    QT_CHECK(rc == 0, "load %s: %s (assets missing? run scripts/fetch-assets.sh)", path, e.msg);
    return rc ? NULL : t;
}

/* one encode check; returns 1 if equal */
static int check_encode(const qa_tokenizer *t, const char *label, json_t *text, int special, json_t *want) {
    int32_t *ids = NULL;
    size_t n = 0;
    qa_err e = {0};
    int rc = qa_tok_encode(t, json_string_value(text), json_string_length(text), special, &ids, &n, &e);
    int ok = rc == 0 && ids_equal(ids, n, want);
    QT_CHECK(ok, "%s: encode(add_special_tokens=%d) of \"%.80s\" %s", label, special, json_string_value(text),
             rc ? e.msg : "differs");
    if (!ok && rc == 0) {
        print_ids("got ", ids, n);
        int32_t w[64];
        size_t k;
        for (k = 0; k < json_array_size(want) && k < 64; k++) w[k] = (int32_t)json_integer_value(json_array_get(want, k));
        print_ids("want", w, k);
    }
    free(ids);
    return ok;
}

/* ---- several threads on one tokenizer ---- */
typedef struct job {
    const qa_tokenizer *t;
    json_t *cases;
    int bad;
} job;
static void *worker(void *arg) {
    job *j = arg;
    for (int rep = 0; rep < 2; rep++)
        for (size_t i = 0; i < json_array_size(j->cases); i++) {
            json_t *c = json_array_get(j->cases, i), *text = json_object_get(c, "text");
            int32_t *ids;
            size_t n;
            qa_err e = {0};
            if (qa_tok_encode(j->t, json_string_value(text), json_string_length(text), 1, &ids, &n, &e) ||
                !ids_equal(ids, n, json_object_get(c, "ids_with_special")))
                j->bad++;
            else free(ids);
        }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s GOLDEN.json VECTORS.json TOKENIZER_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[3];
    json_error_t je;
    json_t *golden = json_load_file(argv[1], JSON_ALLOW_NUL, &je);
    QT_CHECK(golden != NULL, "read %s: %s", argv[1], je.text);
    json_t *vectors = json_load_file(argv[2], JSON_ALLOW_NUL, &je);
    QT_CHECK(vectors != NULL, "read %s: %s", argv[2], je.text);
    if (!golden || !vectors) return qt_finish();

    /* ---- golden.json ---- */
    json_t *results = json_object_get(golden, "results");
    QT_CHECK(json_is_object(results) && json_object_size(results) > 0, "golden.json has results");
    const char *name;
    json_t *res;
    json_object_foreach(results, name, res) {
        qa_tokenizer *t = load(dir, name);
        if (!t) continue;
        json_t *cases = json_object_get(res, "cases");
        size_t nc = json_array_size(cases), ok_ids = 0, ok_sp = 0, ok_dec = 0;
        json_t *vs = json_object_get(res, "vocab_size");
        if (json_is_integer(vs))
            QT_CHECK(qa_tok_vocab_size(t) == json_integer_value(vs), "%s: vocab size %d, HF says %lld", name,
                     qa_tok_vocab_size(t), (long long)json_integer_value(vs));
        for (size_t i = 0; i < nc; i++) {
            json_t *c = json_array_get(cases, i), *text = json_object_get(c, "text");
            char label[256];
            snprintf(label, sizeof label, "%s case %zu (%s)", name, i, json_string_value(json_object_get(c, "lang")));
            ok_ids += check_encode(t, label, text, 0, json_object_get(c, "ids"));
            ok_sp += check_encode(t, label, text, 1, json_object_get(c, "ids_with_special"));
            /* decode(ids, skip_special_tokens=False) */
            json_t *ids_j = json_object_get(c, "ids"), *dec = json_object_get(c, "decoded");
            size_t n = json_array_size(ids_j);
            int32_t *ids = malloc((n + 1) * sizeof *ids);
            for (size_t k = 0; k < n; k++) ids[k] = (int32_t)json_integer_value(json_array_get(ids_j, k));
            char *s = NULL;
            size_t sl = 0;
            qa_err e = {0};
            int rc = qa_tok_decode(t, ids, n, 0, &s, &sl, &e);
            int ok = rc == 0 && json_is_string(dec) && sl == json_string_length(dec) && !memcmp(s, json_string_value(dec), sl);
            QT_CHECK(ok, "%s: decode gives \"%.80s\", HF \"%.80s\"", label, s ? s : e.msg, json_string_value(dec));
            ok_dec += ok;
            free(s);
            free(ids);
            /* the post-processor's BOS */
            json_t *ws = json_object_get(c, "ids_with_special");
            if (qa_tok_bos_id(t) >= 0)
                QT_CHECK(json_array_size(ws) > 0 && json_integer_value(json_array_get(ws, 0)) == qa_tok_bos_id(t),
                         "%s: bos id %d first", label, qa_tok_bos_id(t));
        }
        printf("%s: golden %zu cases: ids %zu ok, ids_with_special %zu ok, decoded %zu ok\n", name, nc, ok_ids, ok_sp,
               ok_dec);

        /* id <-> token round trip over the whole vocabulary */
        size_t rt_bad = 0;
        for (int32_t id = 0; id < qa_tok_vocab_size(t); id++) {
            const char *tok = qa_tok_id_to_token(t, id);
            if (tok && strlen(tok) && qa_tok_token_to_id(t, tok) != id) rt_bad++;
        }
        QT_CHECK(rt_bad == 0, "%s: %zu ids do not round-trip through id_to_token/token_to_id", name, rt_bad);
        QT_CHECK(qa_tok_id_to_token(t, -1) == NULL && qa_tok_id_to_token(t, qa_tok_vocab_size(t)) == NULL,
                 "%s: id_to_token out of range is NULL", name);

        /* three threads share the tokenizer */
        job jobs[3];
        pthread_t th[3];
        for (int k = 0; k < 3; k++) { jobs[k] = (job){t, cases, 0}; pthread_create(&th[k], NULL, worker, &jobs[k]); }
        int bad = 0;
        for (int k = 0; k < 3; k++) { pthread_join(th[k], NULL); bad += jobs[k].bad; }
        QT_CHECK(bad == 0, "%s: %d cases differ when 3 threads encode at once", name, bad);
        qa_tok_free(t);
    }

    /* ---- vectors.json ---- */
    json_t *sets = json_object_get(vectors, "sets");
    QT_CHECK(json_is_array(sets) && json_array_size(sets) > 0, "vectors.json has sets");
    for (size_t si = 0; si < json_array_size(sets); si++) {
        json_t *set = json_array_get(sets, si), *files = json_object_get(set, "tokenizer_files");
        const char *sname = json_string_value(json_object_get(set, "name"));
        int special = json_is_true(json_object_get(set, "add_special_tokens"));
        json_t *cases = json_object_get(set, "cases");
        for (size_t fi = 0; fi < json_array_size(files); fi++) {
            const char *fname = json_string_value(json_array_get(files, fi));
            qa_tokenizer *t = load(dir, fname);
            if (!t) continue;
            size_t ok = 0;
            for (size_t i = 0; i < json_array_size(cases); i++) {
                json_t *c = json_array_get(cases, i);
                char label[256];
                snprintf(label, sizeof label, "vectors %s / %s case %zu", sname, fname, i);
                ok += check_encode(t, label, json_object_get(c, "text"), special, json_object_get(c, "ids"));
            }
            printf("vectors %s on %s: %zu/%zu ok\n", sname, fname, ok, json_array_size(cases));
            qa_tok_free(t);
        }
    }
    json_decref(golden);
    json_decref(vectors);
    return qt_finish();
}
