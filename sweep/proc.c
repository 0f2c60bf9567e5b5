/* proc.c — subprocesses of the sweep (sbatch, squeue, sinfo, qalign train / eval, mpirun). */
#include "sweep/sweep_internal.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int sw_problem(qa_sbuf *errs, const char *fmt, ...) {
    char line[QA_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (errs) {
        qa_sb_puts(errs, line);
        qa_sb_puts(errs, "\n");
    }
    return 1;
}

void sw_argv_add(sw_argv *a, const char *s) {
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? 2 * a->cap : 16;
        a->v = qa_realloc(a->v, sizeof(char *) * (size_t)a->cap);
    }
    a->v[a->n++] = qa_strdup(s);
    a->v[a->n] = NULL;
}

void sw_argv_addf(sw_argv *a, const char *fmt, ...) {
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sw_argv_add(a, buf);
}

void sw_argv_free(sw_argv *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

const char *const *sw_argv_get(sw_argv *a) {
    if (!a->v) {
        a->cap = 1;
        a->v = qa_calloc(1, sizeof(char *));
    }
    return (const char *const *)a->v;
}

void sw_sh_quote(qa_sbuf *b, const char *s) {
    if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=/.,:@%") == strlen(s)) {
        qa_sb_puts(b, s);
        return;
    }
    qa_sb_puts(b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'') qa_sb_puts(b, "'\\''");
        else qa_sb_put(b, p, 1);
    }
    qa_sb_puts(b, "'");
}

void sw_sh_argv(qa_sbuf *b, const char *const *argv) {
    for (int i = 0; argv[i]; i++) {
        if (i) qa_sb_puts(b, " ");
        sw_sh_quote(b, argv[i]);
    }
}

int sw_in_path(const char *prog) {
    if (strchr(prog, '/')) return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *dup = qa_strdup(path), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = qa_path_join(*d ? d : ".", prog);
        struct stat st;
        found = stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
        free(p);
    }
    free(dup);
    return found;
}

static int status_of(int ws) {
    if (WIFEXITED(ws)) return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws)) return 128 + WTERMSIG(ws);
    return 255;
}

static int wait_child(pid_t pid, int *status, const char *what, qa_err *e) {
    int ws;
    for (;;) {
        pid_t r = waitpid(pid, &ws, 0);
        if (r == pid) break;
        if (r < 0 && errno == EINTR) continue;
        int en = errno;
        return QA_ERR(e, "waiting for %s (pid %d) failed: %s", what, (int)pid, strerror(en));
    }
    *status = status_of(ws);
    return 0;
}

/* drain two pipes into two buffers until both close */
static void drain(int fo, int fe, qa_sbuf *out, qa_sbuf *err) {
    struct pollfd p[2] = {{fo, POLLIN, 0}, {fe, POLLIN, 0}};
    int open_n = 2;
    char buf[8192];
    while (open_n > 0) {
        int r = poll(p, 2, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int k = 0; k < 2; k++) {
            if (p[k].fd < 0 || !(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(p[k].fd, buf, sizeof buf);
            if (n > 0) qa_sb_put(k ? err : out, buf, (size_t)n);
            else if (n == 0 || errno != EINTR) {
                close(p[k].fd);
                p[k].fd = -1;
                open_n--;
            }
        }
    }
}

int sw_capture(const char *const *argv, char **out, char **errout, int *status, qa_err *e) {
    *out = NULL;
    if (errout) *errout = NULL;
    int po[2], pe[2];
    if (pipe(po) < 0) { int en = errno; return QA_ERR(e, "pipe for %s: %s", argv[0], strerror(en)); }
    if (pipe(pe) < 0) {
        int en = errno;
        close(po[0]), close(po[1]);
        return QA_ERR(e, "pipe for %s: %s", argv[0], strerror(en));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawn_file_actions_addclose(&fa, po[0]);
    posix_spawn_file_actions_addclose(&fa, pe[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        close(po[0]), close(pe[0]);
        return QA_ERR(e, "cannot run %s: %s", argv[0], strerror(rc));
    }
    qa_sbuf o = {0}, er = {0};
    drain(po[0], pe[0], &o, &er);
    qa_sb_put(&o, "", 0);
    qa_sb_put(&er, "", 0);
    if (wait_child(pid, status, argv[0], e)) {
        qa_sb_free(&o), qa_sb_free(&er);
        return -1;
    }
    *out = o.p;
    if (errout) *errout = er.p;
    else qa_sb_free(&er);
    return 0;
}

int sw_run_logged(const char *const *argv, const char *const *env_add, const char *log_path, int *status, qa_err *e) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) { int en = errno; return QA_ERR(e, "cannot open the log %s: %s", log_path, strerror(en)); }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    posix_spawn_file_actions_adddup2(&fa, fd, 2);
    /* the environment: this process's, with env_add replacing or adding variables */
    int ne = 0, na = 0;
    while (environ[ne]) ne++;
    while (env_add && env_add[na]) na++;
    char **env = qa_calloc((size_t)(ne + na + 1), sizeof(char *));
    int k = 0;
    for (int i = 0; i < ne; i++) {
        int replaced = 0;
        for (int j = 0; j < na && !replaced; j++) {
            size_t l = strcspn(env_add[j], "=");
            replaced = !strncmp(environ[i], env_add[j], l) && environ[i][l] == '=';
        }
        if (!replaced) env[k++] = environ[i];
    }
    for (int j = 0; j < na; j++) env[k++] = (char *)env_add[j];
    env[k] = NULL;
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, env);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    close(fd);
    if (rc != 0) return QA_ERR(e, "cannot run %s: %s", argv[0], strerror(rc));
    return wait_child(pid, status, argv[0], e);
}
