/* test_tokenizer_badinput.c — what the tokenizer and `qalign tokenize` do with bad input:
 * malformed / unsupported tokenizer.json files (clear error, no tokenizer), invalid UTF-8 text
 * (U+FFFD per maximal invalid subsequence, like Rust's String::from_utf8_lossy), long single lines
 * (10 MB of mixed text; 1 MB, or QA_TOK_RUN_MB, of spaces only and of one letter) through the API and
 * the CLI, and CLI input errors
 * (a bad JSON line is named by its number). Meant to run under AddressSanitizer as well.
 *
 * usage: test_tokenizer_badinput TOKENIZER_DIR QALIGN_BINARY [TOKENIZER_FILE ...]
 *   (default files: qwen1_5-qwen2.tokenizer.json mistral-7b-v0.1.tokenizer.json)
 */
#include "tokenizer/tokenizer.h"
#include "testutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *g_qalign;
static char g_tmp[256];

/* ---- malformed tokenizer.json ---- */
#define BPE_OK "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"
static const struct { const char *json, *want; } BAD[] = {
    {"", "not valid JSON"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", "not valid JSON"},
    {"[1, 2]", "top level must be a JSON object"},
    {"{}", "\"model\" is missing"},
    {"{\"model\": 3}", "\"model\" is missing"},
    {"{\"model\":{\"vocab\":{}}}", "model.type is missing"},
    {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}", "unsupported model type 'WordPiece'"},
    {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}}", "unsupported model type 'Unigram'"},
    {"{\"model\":{\"type\":\"WordLevel\",\"vocab\":{}}}", "unsupported model type"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":[]}}", "model.vocab must be an object"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "must be an integer id"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}}", "must be an integer id"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999999}}}", "must be an integer id"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":\"a b\"}}", "model.merges must be an array"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a x\"]}}", "is not in model.vocab"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"ab\"]}}", "exactly one space"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b c\"]}}", "exactly one space"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"a\"]]}}", "must be \"a b\" or"},
    /* found by fuzz_tokenizer: a bad merge after a good one leaked the merge buffer (LeakSanitizer) */
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\",\"a b c\"]}}", "exactly one space"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"a\",\"b\"]]}}", "merged token 'ab'"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"dropout\":0.1}}", "dropout"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"<unk>\"}}", "unk_token '<unk>'"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"continuing_subword_prefix\":\"##\"}}", "continuing_subword_prefix"},
    {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"fuse_unk\":\"yes\"}}", "fuse_unk must be true or false"},
    {"{" BPE_OK ",\"normalizer\":{\"type\":\"Lowercase\"}}", "unsupported normalizer type 'Lowercase'"},
    {"{" BPE_OK ",\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},\"content\":\"_\"}}", "Regex pattern"},
    {"{" BPE_OK ",\"normalizer\":[1]}", "normalizer must be null or an object"},
    {"{" BPE_OK ",\"pre_tokenizer\":{\"type\":\"Whitespace\"}}", "unsupported pre_tokenizer type 'Whitespace'"},
    {"{" BPE_OK ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\","
     "\"invert\":false}}", "does not compile"},
    {"{" BPE_OK ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}}",
     "unknown behavior"},
    {"{" BPE_OK ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"ByteLevel\"},"
     "{\"type\":\"Metaspace\",\"replacement\":\"_\"}]}}", "after ByteLevel"},
    {"{" BPE_OK ",\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"ab\"}}", "one character"},
    {"{" BPE_OK ",\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"sometimes\"}}",
     "unknown prepend_scheme"},
    {"{" BPE_OK ",\"decoder\":{\"type\":\"WordPiece\"}}", "unsupported decoder type 'WordPiece'"},
    {"{" BPE_OK ",\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":-1,\"stop\":0}}", "Strip needs"},
    {"{" BPE_OK ",\"post_processor\":{\"type\":\"BertProcessing\"}}", "unsupported post_processor type"},
    {"{" BPE_OK ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
     "{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{}}}", "special_tokens[\"<s>\"].ids is missing"},
    {"{" BPE_OK ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}}],"
     "\"special_tokens\":{\"<s>\":{\"ids\":[0]}}}}", "has no $A"},
    {"{" BPE_OK ",\"added_tokens\":{}}", "\"added_tokens\" must be an array"},
    {"{" BPE_OK ",\"added_tokens\":[{\"id\":3,\"content\":7}]}", "content must be a string"},
    {"{" BPE_OK ",\"added_tokens\":[{\"id\":3,\"content\":\"<x>\",\"single_word\":true}]}", "single_word"},
    {"{" BPE_OK ",\"truncation\":{\"max_length\":5}}", "truncation"},
};

static void test_malformed(const char *dir) {
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        qa_tokenizer *t = (qa_tokenizer *)1;
        qa_err e = {0};
        int rc = qa_tok_load_mem(&t, BAD[i].json, strlen(BAD[i].json), "bad.json", &e);
        QT_CHECK(rc == -1 && t == NULL && strstr(e.msg, BAD[i].want) && strstr(e.msg, "bad.json"),
                 "malformed #%zu: want an error with '%s', got rc %d: %s", i, BAD[i].want, rc, e.msg);
    }
    /* the minimal valid one loads and works */
    qa_tokenizer *t = NULL;
    qa_err e = {0};
    const char *ok = "{" BPE_OK "}";
    QT_CHECK(qa_tok_load_mem(&t, ok, strlen(ok), "ok.json", &e) == 0, "minimal BPE loads: %s", e.msg);
    if (t) {
        int32_t *ids;
        size_t n;
        QT_CHECK(qa_tok_encode(t, "abab", 4, 1, &ids, &n, &e) == 0 && n == 2 && ids[0] == 2 && ids[1] == 2,
                 "minimal BPE merges a b");
        if (!e.code) free(ids);
        qa_tok_free(t);
    }
    /* a missing file and a truncated real file */
    e = (qa_err){0};
    QT_CHECK(qa_tok_load(&t, "/nonexistent/tokenizer.json", &e) == -1 && strstr(e.msg, "/nonexistent/tokenizer.json"),
             "missing file named: %s", e.msg);
    char path[4096];
    snprintf(path, sizeof path, "%s/mistral-7b-v0.1.tokenizer.json", dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        char *buf = malloc(1 << 20);
        size_t n = fread(buf, 1, 1 << 20, f);
        fclose(f);
        e = (qa_err){0};
        QT_CHECK(qa_tok_load_mem(&t, buf, n / 2, "half.json", &e) == -1 && strstr(e.msg, "not valid JSON"),
                 "truncated tokenizer.json: %s", e.msg);
        free(buf);
    }
}

/* ---- invalid UTF-8 == the same text with U+FFFD ---- */
static int same_ids(const qa_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    int32_t *x, *y;
    size_t nx, ny;
    qa_err e = {0};
    if (qa_tok_encode(t, a, na, 1, &x, &nx, &e)) return 0;
    if (qa_tok_encode(t, b, nb, 1, &y, &ny, &e)) { free(x); return 0; }
    int ok = nx == ny && !memcmp(x, y, nx * sizeof *x);
    free(x);
    free(y);
    return ok;
}
static void test_invalid_utf8(const qa_tokenizer *t, const char *name) {
    static const struct { const char *bad, *good; } C[] = {
        {"\xff", "\xef\xbf\xbd"},
        {"ab\xc3", "ab\xef\xbf\xbd"},
        {"\xc3(x", "\xef\xbf\xbd(x"},
        {"\xe2\x82 euro", "\xef\xbf\xbd euro"},                     /* truncated 3-byte: one U+FFFD */
        {"\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},  /* overlong: one per byte */
        {"\xed\xa0\x80 s", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd s"}, /* UTF-8 encoded surrogate */
        {"\xf0\x9f\x98 smile", "\xef\xbf\xbd smile"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"Hello \x80\x80 world<s>\xfe", "Hello \xef\xbf\xbd\xef\xbf\xbd world<s>\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++)
        QT_CHECK(same_ids(t, C[i].bad, strlen(C[i].bad), C[i].good, strlen(C[i].good)),
                 "%s: invalid UTF-8 case %zu encodes as U+FFFD", name, i);
    /* embedded NUL bytes are text */
    int32_t *x;
    size_t nx;
    qa_err e = {0};
    QT_CHECK(qa_tok_encode(t, "a\0b", 3, 0, &x, &nx, &e) == 0 && nx >= 2, "%s: NUL inside text", name);
    if (!e.code) free(x);
    /* decode of ids that do not exist: skipped, no crash */
    int32_t ids[] = {-5, qa_tok_vocab_size(t), INT32_MAX, 0};
    char *s;
    size_t sl;
    QT_CHECK(qa_tok_decode(t, ids, 4, 0, &s, &sl, &e) == 0, "%s: decode of unknown ids", name);
    if (!e.code) free(s);
    QT_CHECK(qa_tok_decode(t, NULL, 0, 0, &s, &sl, &e) == 0 && sl == 0 && s[0] == 0, "%s: decode of nothing", name);
    if (!e.code) free(s);
}

/* ---- 10 MB single lines ---- */
static char *make_big(int kind, size_t n) {
    char *s = malloc(n + 1);
    static const char *mix = "The quick brown fox, 2024!  Über naïve café — 中文日本語 한국어 สวัสดี\t\n"
                             "<s> </s> <|im_start|> 👍🏽  \xe2\x80\x83 x'll ";
    size_t ml = strlen(mix);
    for (size_t i = 0; i < n;) {
        if (kind == 0) s[i++] = ' ';
        else if (kind == 1) s[i++] = 'a';
        else {
            size_t k = ml < n - i ? ml : n - i;
            memcpy(s + i, mix, k);
            i += k;
        }
    }
    /* do not end inside a UTF-8 sequence (it would be one U+FFFD then: fine, but keep it simple) */
    while (n > 0 && ((unsigned char)s[n - 1] & 0x80)) n--;
    s[n] = 0;
    return s;
}

static void test_big(const qa_tokenizer *t, const char *dir, const char *name) {
    static const char *kinds[] = {"spaces", "one letter", "mixed text"};
    /* the mixed line is 10 MB; the single-run lines (one 10 MB BPE word, one whitespace run that
     * HF's Oniguruma refuses past ~1 MB with "retry-limit-in-match over") take ~10 s each and
     * are 1 MB unless QA_TOK_RUN_MB says otherwise */
    size_t run_mb = (size_t)atoi(qt_env_or("QA_TOK_RUN_MB", "1"));
    if (run_mb < 1) run_mb = 1;
    for (int kind = 0; kind < 3; kind++) {
        size_t n = (kind == 2 ? 10u : run_mb) << 20;
        char *s = make_big(kind, n);
        n = strlen(s);
        int32_t *ids = NULL;
        size_t nid = 0;
        qa_err e = {0};
        int rc = qa_tok_encode(t, s, n, 0, &ids, &nid, &e);
        QT_CHECK(rc == 0 && nid > 0, "%s: %zu MB of %s encodes (%zu ids): %s", name, n >> 20, kinds[kind], nid,
                 rc ? e.msg : "");
        /* the CLI on the same line */
        char in[512], out[512], cmd[2048];
        snprintf(in, sizeof in, "%s/big.json", g_tmp);
        snprintf(out, sizeof out, "%s/big.out", g_tmp);
        FILE *f = fopen(in, "wb");
        fputc('"', f);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '\n') fputs("\\n", f);
            else if (s[i] == '\t') fputs("\\t", f);
            else if (s[i] == '"') fputs("\\\"", f);
            else fputc(s[i], f);
        }
        fputs("\"\n", f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "'%s' tokenize --tokenizer '%s/%s' < '%s' > '%s'", g_qalign, dir, name, in, out);
        char msg[4096];
        int st = qt_run(cmd, msg, sizeof msg);
        QT_CHECK(st == 0, "%s: CLI on a 10 MB line of %s: exit %d: %s", name, kinds[kind], st, msg);
        /* the output line holds exactly the API's ids */
        f = fopen(out, "rb");
        int same = f != NULL;
        if (f) {
            size_t k = 0;
            int c = fgetc(f);
            same = c == '[';
            while (same && k < nid) {
                long v;
                if (fscanf(f, "%ld", &v) != 1 || v != ids[k]) same = 0;
                k++;
                c = fgetc(f);
                if (same && c != (k < nid ? ',' : ']')) same = 0;
            }
            if (same && fgetc(f) != '\n') same = 0;
            if (same && fgetc(f) != EOF) same = 0;
            fclose(f);
        }
        QT_CHECK(same, "%s: CLI ids == API ids on the 10 MB line of %s", name, kinds[kind]);
        /* decode of the 10 MB ids gives the text back (Llama/Mistral: not after a special token, where
         * the legacy normalizer adds a '▁', so only the texts without one) */
        char *d = NULL;
        size_t dl = 0;
        if (rc == 0 && (qa_tok_is_byte_level(t) || kind < 2)) {
            QT_CHECK(qa_tok_decode(t, ids, nid, 0, &d, &dl, &e) == 0, "%s: decode 10 MB", name);
            QT_CHECK(d && dl == n && !memcmp(d, s, n), "%s: decode(encode(10 MB of %s)) is the text", name, kinds[kind]);
        }
        free(d);
        free(ids);
        free(s);
        remove(in);
        remove(out);
    }
}

/* ---- CLI input errors ---- */
static void test_cli(const char *dir, const char *name) {
    char cmd[4096], msg[8192], in[512];
    snprintf(in, sizeof in, "%s/cli.in", g_tmp);
    struct { const char *input, *args; int rc; const char *want; } C[] = {
        {"\"a\"\n\"b\"\n\"c\n\"d\"\n", "", 1, "stdin line 3: invalid JSON string"},
        {"\"a\"\n42\n", "", 1, "stdin line 2: invalid JSON string (expected a JSON string)"},
        {"\"a\" \"b\"\n", "", 1, "stdin line 1: invalid JSON string (trailing"},
        {"\n", "", 1, "stdin line 1"},
        {"\"bad \\x escape\"\n", "", 1, "stdin line 1: invalid JSON string (bad escape)"},
        {"\"\\ud800 lone\"\n\"\\ufffd lone\"\n", "", 0, NULL},
        {"", "", 0, NULL},
        {"[1, 2]\n[1, -5]\n", "--decode", 1, "stdin line 2: element 1 is not a token id"},
        {"[1, 2]\n{\"a\": 1}\n", "--decode", 1, "stdin line 2: invalid JSON array"},
        {"[1, 99999999, 2]\n", "--decode", 0, NULL},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        FILE *f = fopen(in, "wb");
        fputs(C[i].input, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "'%s' tokenize --tokenizer '%s/%s' %s < '%s'", g_qalign, dir, name, C[i].args, in);
        int st = qt_run(cmd, msg, sizeof msg);
        QT_CHECK(st == C[i].rc && (!C[i].want || strstr(msg, C[i].want)), "%s: CLI case %zu: exit %d (want %d), output: %s",
                 name, i, st, C[i].rc, msg);
        if (i == 0) { /* the two lines before the bad one were written */
            int arrays = 0;
            for (const char *p = msg; (p = strstr(p, "]\n")); p += 2) arrays++;
            QT_CHECK(arrays == 2, "the 2 lines before the bad one were written: %s", msg);
        }
        if (i == 5) { /* the lone surrogate reads as U+FFFD: both lines equal */
            char *nl = strchr(msg, '\n');
            QT_CHECK(nl && !strncmp(msg, nl + 1, (size_t)(nl - msg)), "lone surrogate escape == U+FFFD: %s", msg);
        }
    }
    snprintf(cmd, sizeof cmd, "'%s' tokenize < /dev/null", g_qalign);
    QT_CHECK(qt_run(cmd, msg, sizeof msg) == 2 && strstr(msg, "--tokenizer"), "missing --tokenizer is a usage error");
    snprintf(cmd, sizeof cmd, "'%s' tokenize --tokenizer /nonexistent.json < /dev/null", g_qalign);
    QT_CHECK(qt_run(cmd, msg, sizeof msg) == 1 && strstr(msg, "/nonexistent.json"), "bad tokenizer path: %s", msg);
    snprintf(cmd, sizeof cmd, "'%s' tokenize --help", g_qalign);
    QT_CHECK(qt_run(cmd, msg, sizeof msg) == 0 && strstr(msg, "usage"), "--help");
    remove(in);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR QALIGN_BINARY [TOKENIZER_FILE ...]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    g_qalign = argv[2];
    snprintf(g_tmp, sizeof g_tmp, "%s/qa_tok_bad.XXXXXX", qt_env_or("TMPDIR", "/tmp"));
    if (!mkdtemp(g_tmp)) { perror("mkdtemp"); return 1; }
    test_malformed(dir);
    const char *dflt[] = {"qwen1_5-qwen2.tokenizer.json", "mistral-7b-v0.1.tokenizer.json"};
    int nf = argc > 3 ? argc - 3 : 2;
    for (int i = 0; i < nf; i++) {
        const char *name = argc > 3 ? argv[3 + i] : dflt[i];
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        qa_tokenizer *t = NULL;
        qa_err e = {0};
        QT_CHECK(qa_tok_load(&t, path, &e) == 0, "load %s: %s (assets missing? run scripts/fetch-assets.sh)", path, e.msg);
        if (!t) continue;
        test_invalid_utf8(t, name);
        test_big(t, dir, name);
        if (i == nf - 1) test_cli(dir, name); /* CLI parsing does not depend on the tokenizer: once */
        qa_tok_free(t);
    }
    rmdir(g_tmp);
    return qt_finish();
}
