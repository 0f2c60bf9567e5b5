/* cmd_label_tokens.c — `qalign label-tokens`: the paper's label-token set of each word
 * (eval/labels.c, paper-protocol.md §6.4), one JSON array of sorted ids per line. */
#include "launch/commands.h"
#include "eval/eval.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: qalign label-tokens --tokenizer FILE [--show] WORD...\n\n"
            "Prints, for each WORD, the label-token set the paper's evaluation scores (process_tokens):\n"
            "every character prefix p of the word and \"\xE2\x96\x81\" + p that is a vocabulary key, the byte token\n"
            "<0xHH> of the first UTF-8 byte of a non-ASCII first character (byte-fallback vocabularies), and\n"
            "for byte-level (Qwen) tokenizers the first token of encoding each prefix. One JSON array of\n"
            "sorted ids per word and line.\n\n"
            "  --tokenizer FILE   a tokenizer.json\n"
            "  --show             print the token strings as a second array on the same line\n"
            "  -h, --help         this help\n");
}

int cmd_label_tokens(int argc, char **argv) {
    const char *tfile = NULL;
    int show = 0, n_words = 0;
    const char **words = qa_calloc((size_t)argc, sizeof *words);
    /* options may come before or after the words; every other argument starting with '-' is an error
     * (a word that starts with '-' goes after "--") */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); free(words); return 0; }
        else if (!strcmp(argv[i], "--show")) show = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--tokenizer")) tfile = argv[++i];
        else if (!strcmp(argv[i], "--")) { while (++i < argc) words[n_words++] = argv[i]; }
        else if (argv[i][0] == '-') {
            fprintf(stderr, "qalign label-tokens: unknown or incomplete option '%s' (a word starting with '-' goes "
                            "after --)\n\n", argv[i]);
            usage(stderr);
            free(words);
            return 2;
        } else words[n_words++] = argv[i];
    }
    if (!tfile || !n_words) {
        free(words);
        fprintf(stderr, "qalign label-tokens: --tokenizer and at least one word are required\n\n");
        usage(stderr);
        return 2;
    }
    qa_err e = {0};
    qa_tokenizer *tok = NULL;
    if (qa_tok_load(&tok, tfile, &e)) { qa_err_print(&e); free(words); return 1; }
    int rc = 0;
    for (int i = 0; i < n_words; i++) {
        int32_t *ids = NULL;
        int n = 0;
        if (qa_eval_label_tokens(tok, words[i], &ids, &n, &e)) { qa_err_print(&e); rc = 1; break; }
        printf("[");
        for (int j = 0; j < n; j++) printf("%s%d", j ? ", " : "", ids[j]);
        printf("]");
        if (show) {
            printf(" [");
            for (int j = 0; j < n; j++) {
                const char *s = qa_tok_id_to_token(tok, ids[j]);
                printf("%s\"", j ? ", " : "");
                for (const char *p = s ? s : ""; *p; p++) {
                    if (*p == '"' || *p == '\\') printf("\\%c", *p);
                    else if ((unsigned char)*p < 0x20) printf("\\u%04x", (unsigned char)*p);
                    else putchar(*p);
                }
                printf("\"");
            }
            printf("]");
        }
        printf("\n");
        free(ids);
    }
    qa_tok_free(tok);
    free(words);
    return rc;
}
