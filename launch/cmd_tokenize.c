/* cmd_tokenize.c — `qalign tokenize`: text <-> ids with a Hugging Face tokenizer.json.
 *
 *   encode: stdin has one JSON string per line, stdout gets one JSON array of ids per line.
 *   decode (--decode): stdin has one JSON array of ids per line, stdout gets one JSON string per line.
 * Lines of any length (getline). Invalid UTF-8 inside a JSON string (raw bytes) and lone UTF-16
 * surrogate escapes ("\ud800") become U+FFFD, the way Rust's String::from_utf8_lossy treats bytes
 * that are not UTF-8 (one U+FFFD per maximal invalid subsequence). A line that is not a JSON
 * string (or array) stops the run with an error naming the line number; lines before it have
 * already been written.
 */
#include "launch/commands.h"
#include "common/qa_err.h"
#include "common/qa_mem.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qalign tokenize --tokenizer FILE [--add-special-tokens] [--decode [--skip-special-tokens]]\n\n"
            "Tokenize like Hugging Face tokenizers (Qwen byte-level BPE, Llama/Mistral BPE with byte fallback).\n"
            "  --tokenizer FILE        a tokenizer.json\n"
            "  --add-special-tokens    apply the post-processor (BOS for Llama/Mistral; nothing for Qwen)\n"
            "  --decode                read JSON arrays of ids, write JSON strings\n"
            "  --skip-special-tokens   with --decode: drop special tokens (<s>, <|im_end|>, ...)\n"
            "stdin: one JSON string per line (encode) or one JSON array of ids per line (decode);\n"
            "stdout: one line per input line, same order. Raw invalid UTF-8 and lone surrogate escapes\n"
            "in a string are read as U+FFFD (Rust String::from_utf8_lossy). Ids without a token are\n"
            "skipped when decoding, as HF does.\n");
}

typedef struct buf { char *p; size_t n, cap; } buf;
static void buf_reserve(buf *b, size_t extra) {
    if (b->n + extra + 1 > b->cap) {
        b->cap = (b->n + extra + 1) * 2;
        b->p = qa_realloc(b->p, b->cap);
    }
}
static void buf_put(buf *b, const char *s, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void buf_putc(buf *b, char c) { buf_reserve(b, 1); b->p[b->n++] = c; }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
static int hex4(const char *s, size_t n, size_t i, uint32_t *v) {
    if (i + 4 > n) return -1;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(s[i + (size_t)k]);
        if (h < 0) return -1;
        *v = *v * 16 + (uint32_t)h;
    }
    return 0;
}
static void put_cp(buf *b, uint32_t cp) {
    char u[4];
    int k;
    if (cp < 0x80) { u[0] = (char)cp; k = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); k = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); k = 4;
    }
    buf_put(b, u, (size_t)k);
}

/* Parse one JSON string (with surrounding whitespace) into out (raw bytes; not validated here). */
static int parse_json_string(const char *s, size_t n, buf *out, const char **why) {
    size_t i = 0;
    out->n = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    if (i >= n || s[i] != '"') { *why = "expected a JSON string"; return -1; }
    i++;
    for (;;) {
        if (i >= n) { *why = "unterminated string"; return -1; }
        /* copy a run of plain bytes */
        size_t j = i;
        while (j < n && s[j] != '"' && s[j] != '\\' && (unsigned char)s[j] >= 0x20) j++;
        buf_put(out, s + i, j - i);
        i = j;
        if (i >= n) { *why = "unterminated string"; return -1; }
        char c = s[i];
        if (c == '"') { i++; break; }
        if ((unsigned char)c < 0x20) { *why = "unescaped control character in string"; return -1; }
        /* escape */
        if (i + 1 >= n) { *why = "bad escape"; return -1; }
        char d = s[i + 1];
        i += 2;
        switch (d) {
        case '"': buf_putc(out, '"'); break;
        case '\\': buf_putc(out, '\\'); break;
        case '/': buf_putc(out, '/'); break;
        case 'b': buf_putc(out, '\b'); break;
        case 'f': buf_putc(out, '\f'); break;
        case 'n': buf_putc(out, '\n'); break;
        case 'r': buf_putc(out, '\r'); break;
        case 't': buf_putc(out, '\t'); break;
        case 'u': {
            uint32_t v, w;
            if (hex4(s, n, i, &v)) { *why = "bad \\u escape"; return -1; }
            i += 4;
            if (v >= 0xD800 && v <= 0xDBFF) {
                if (i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u' && !hex4(s, n, i + 2, &w) && w >= 0xDC00 &&
                    w <= 0xDFFF) {
                    v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00);
                    i += 6;
                } else v = 0xFFFD; /* lone high surrogate */
            } else if (v >= 0xDC00 && v <= 0xDFFF) v = 0xFFFD; /* lone low surrogate */
            put_cp(out, v);
            break;
        }
        default: *why = "bad escape"; return -1;
        }
    }
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    if (i != n) { *why = "trailing characters after the string"; return -1; }
    return 0;
}

static void put_json_string(buf *b, const char *s, size_t n) {
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': buf_put(b, "\\\"", 2); break;
        case '\\': buf_put(b, "\\\\", 2); break;
        case '\n': buf_put(b, "\\n", 2); break;
        case '\r': buf_put(b, "\\r", 2); break;
        case '\t': buf_put(b, "\\t", 2); break;
        case '\b': buf_put(b, "\\b", 2); break;
        case '\f': buf_put(b, "\\f", 2); break;
        default:
            if (c < 0x20) {
                char u[8];
                snprintf(u, sizeof u, "\\u%04x", c);
                buf_put(b, u, 6);
            } else buf_putc(b, (char)c);
        }
    }
    buf_putc(b, '"');
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int add_special = 0, decode = 0, skip_special = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--add-special-tokens")) add_special = 1;
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--skip-special-tokens")) skip_special = 1;
        else {
            fprintf(stderr, "qalign tokenize: unknown or incomplete option '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!path) { fprintf(stderr, "qalign tokenize: --tokenizer FILE is required\n\n"); usage(stderr); return 2; }
    qa_err e = {0};
    qa_tokenizer *t;
    if (qa_tok_load(&t, path, &e)) { qa_err_print(&e); return 1; }

    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    size_t lineno = 0;
    buf text = {0}, out = {0};
    int rc = 0;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        if (n && line[n - 1] == '\n') n--;
        out.n = 0;
        if (!decode) {
            const char *why;
            if (parse_json_string(line, n, &text, &why)) {
                fprintf(stderr, "qalign: error: stdin line %zu: invalid JSON string (%s); each line must be one "
                                "JSON string\n", lineno, why);
                rc = 1;
                break;
            }
            int32_t *ids;
            size_t nid;
            if (qa_tok_encode(t, text.p ? text.p : "", text.n, add_special, &ids, &nid, &e)) {
                qa_err_prefix(&e, "stdin line %zu", lineno);
                qa_err_print(&e);
                rc = 1;
                break;
            }
            buf_reserve(&out, nid * 12 + 4);
            out.p[out.n++] = '[';
            for (size_t k = 0; k < nid; k++) {
                if (k) out.p[out.n++] = ',';
                out.n += (size_t)snprintf(out.p + out.n, 12, "%d", ids[k]);
            }
            out.p[out.n++] = ']';
            out.p[out.n++] = '\n';
            free(ids);
        } else {
            json_error_t je;
            json_t *arr = json_loadb(line, n, 0, &je);
            if (!json_is_array(arr)) {
                fprintf(stderr, "qalign: error: stdin line %zu: invalid JSON array of ids (%s); each line must be "
                                "one array like [1, 2, 3]\n", lineno, arr ? "not an array" : je.text);
                json_decref(arr);
                rc = 1;
                break;
            }
            size_t m = json_array_size(arr);
            int32_t *ids = qa_malloc((m ? m : 1) * sizeof *ids);
            size_t k;
            for (k = 0; k < m; k++) {
                json_t *v = json_array_get(arr, k);
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0xFFFFFFFFLL) break;
                /* ids beyond int32 have no token anyway: they are skipped like any unknown id */
                ids[k] = json_integer_value(v) > INT32_MAX ? -1 : (int32_t)json_integer_value(v);
            }
            json_decref(arr);
            if (k < m) {
                fprintf(stderr, "qalign: error: stdin line %zu: element %zu is not a token id (a non-negative "
                                "integer)\n", lineno, k);
                free(ids);
                rc = 1;
                break;
            }
            char *s;
            size_t sl;
            if (qa_tok_decode(t, ids, m, skip_special, &s, &sl, &e)) {
                qa_err_prefix(&e, "stdin line %zu", lineno);
                qa_err_print(&e);
                free(ids);
                rc = 1;
                break;
            }
            put_json_string(&out, s, sl);
            buf_putc(&out, '\n');
            free(s);
            free(ids);
        }
        if (fwrite(out.p, 1, out.n, stdout) != out.n) {
            fprintf(stderr, "qalign: error: writing stdout failed\n");
            rc = 1;
            break;
        }
    }
    if (fflush(stdout)) { fprintf(stderr, "qalign: error: writing stdout failed\n"); rc = 1; }
    free(line);
    free(text.p);
    free(out.p);
    qa_tok_free(t);
    return rc;
}
