/* args.h — strict parsing of command-line values, shared by the subcommands. A value is accepted only
 * when all of it parses: "" / "1x" / "1,,2" / "inf" / an out-of-range number are usage errors that name
 * the command and the option ("qalign eval: --limit needs an integer in [0, 1000000000], got ''"). */
#ifndef QA_ARGS_H
#define QA_ARGS_H
#include <stddef.h>
#include <stdint.h>

/* A decimal integer in [lo, hi]. 0, or -1 after printing the error. */
int qa_arg_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out);
/* A finite number in [lo, hi] (lo_open: lo itself excluded). 0, or -1 after printing the error. */
int qa_arg_num(const char *cmd, const char *opt, const char *s, double lo, double hi, int lo_open, double *out);
/* A comma-separated list of integers in [lo, hi] ("1,2, 3"; an empty item is an error). *v is heap. */
int qa_arg_int_list(const char *cmd, const char *opt, const char *s, long long lo, long long hi, int32_t **v,
                    int *n);
#endif
