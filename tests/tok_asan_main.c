/* tok_asan_main.c — `qalign tokenize` alone, for the AddressSanitizer build of the tokenizer tests
 * (tests/tokenizer.cmake): qalign_tok_asan tokenize [options]. */
#include "launch/commands.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "tokenize")) {
        fprintf(stderr, "usage: %s tokenize [options]\n", argv[0]);
        return 2;
    }
    return cmd_tokenize(argc - 1, argv + 1);
}
