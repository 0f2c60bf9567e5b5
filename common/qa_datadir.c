/* qa_datadir.c — the installed data directory, found from the binary's own path (/proc/self/exe). */
#include "common/qa_datadir.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *qa_data_dir(void) {
    const char *env = getenv("QALIGN_DATADIR");
    if (env && *env) return qa_is_dir(env) ? qa_strdup(env) : NULL;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0; /* exe = the binary's directory (PREFIX/bin) */
    char *share = qa_path_join(exe, "../share/qalign");
    char real[PATH_MAX];
    char *out = realpath(share, real) && qa_is_dir(real) ? qa_strdup(real) : NULL;
    free(share);
    return out;
}

char *qa_data_path(const char *rel) {
    char *dir = qa_data_dir();
    if (!dir) return NULL;
    char *p = qa_path_join(dir, rel);
    free(dir);
    if (qa_path_exists(p)) return p;
    free(p);
    return NULL;
}
