/* test_dist_fail.c — runs test_dist under mpirun and checks that failures stop the whole job.
 *
 *   test_dist_fail CASE NP       CASE: abort | kill | exit | stall | freeze | stop
 * Environment: QA_MPIRUN   the launcher prefix up to the process-count flag
 *                          ("/usr/bin/mpiexec --allow-run-as-root --oversubscribe -n")
 *              QA_DIST_WORKER  the test_dist binary
 * Every case must end within 60 s; the time is printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char out[1 << 16];

int main(int argc, char **argv) {
    const char *cs = argc > 1 ? argv[1] : "abort";
    int np = argc > 2 ? atoi(argv[2]) : 4;
    const char *mpirun = getenv("QA_MPIRUN");
    const char *worker = getenv("QA_DIST_WORKER");
    if (!mpirun || !worker) { fprintf(stderr, "set QA_MPIRUN and QA_DIST_WORKER\n"); return 2; }
    int victim = np - 1; /* the last rank fails: not the coordinator */
    char cmd[4096];
    char ready[256] = "";
    if (!strcmp(cs, "stop")) {
        snprintf(ready, sizeof ready, "/tmp/qa-dist-ready-%d", (int)getpid());
        unlink(ready);
        /* start the job, wait until rank 0 says it is ready, then SIGUSR1 to mpirun (forwarded to every rank) */
        snprintf(cmd, sizeof cmd,
                 "%s %d %s stop-loop %s & pid=$!; i=0; while [ ! -e %s ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; "
                 "kill -USR1 $pid; wait $pid",
                 mpirun, np, worker, ready, ready);
    } else {
        const char *mode = !strcmp(cs, "abort") ? "fail-abort" : !strcmp(cs, "kill") ? "fail-kill"
                         : !strcmp(cs, "exit") ? "fail-exit" : !strcmp(cs, "stall") ? "fail-stall"
                         : !strcmp(cs, "freeze") ? "fail-freeze" : NULL;
        if (!mode) { fprintf(stderr, "unknown case %s\n", cs); return 2; }
        snprintf(cmd, sizeof cmd, "timeout -s KILL 90 %s %d %s %s %d", mpirun, np, worker, mode, victim);
    }
    double t0 = now();
    int rc = qt_run(cmd, out, sizeof out);
    double dt = now() - t0;
    if (ready[0]) unlink(ready);
    printf("case %s np=%d: exit %d after %.2f s\n", cs, np, rc, dt);
    char want[256];
    if (!strcmp(cs, "stop")) {
        QT_CHECK(rc == 0, "SIGUSR1 to mpirun: agreed stop, exit 0 (got %d)", rc);
        QT_CHECK(strstr(out, "agreed stop at step") != NULL, "rank 0 reports the agreed stop");
        QT_CHECK(dt < 60, "stopped within 60 s (%.2f s)", dt);
    } else {
        QT_CHECK(rc != 0, "job exits non-zero (%d)", rc);
        QT_CHECK(dt < 60, "job ended within 60 s (%.2f s)", dt);
        if (!strcmp(cs, "abort")) {
            snprintf(want, sizeof want, "rank %d: injected error: batch 17 has NaN loss", victim);
            QT_CHECK(strstr(out, want) != NULL, "message names the rank and the cause: '%s'", want);
        } else if (!strcmp(cs, "kill")) {
            snprintf(want, sizeof want, "rank %d", victim);
            QT_CHECK(strstr(out, want) != NULL && strstr(out, "signal 9") != NULL,
                     "mpirun names the killed rank and the signal");
        } else if (!strcmp(cs, "exit")) {
            QT_CHECK(strstr(out, "Exit code:    5") != NULL || strstr(out, "exit code 5") != NULL ||
                     strstr(out, "exited") != NULL, "mpirun reports the exit");
        } else if (!strcmp(cs, "freeze")) {
            /* run with QALIGN_DIST_PROBE_S=2: the liveness probe finds the frozen rank long before the deadline */
            snprintf(want, sizeof want, "rank %d: no answer within 3 s", victim);
            QT_CHECK(strstr(out, "do not answer") != NULL && strstr(out, want) != NULL,
                     "liveness probe names the frozen rank: '%s'", want);
            QT_CHECK(dt < 20, "aborted long before the 600 s deadline (%.2f s)", dt);
        } else if (!strcmp(cs, "stall")) {
            QT_CHECK(strstr(out, "collective 'stall-test'") != NULL && strstr(out, "exceeded 3 s") != NULL,
                     "watchdog names the collective and the deadline");
            snprintf(want, sizeof want, "rank %d: not in a collective", victim);
            QT_CHECK(strstr(out, want) != NULL && strstr(out, "'sleeping'") != NULL,
                     "watchdog report names the late rank and what it does: '%s'", want);
            QT_CHECK(dt < 20, "the watchdog fired long before the 60 s sleep ended (%.2f s)", dt);
        }
    }
    if (qt_failed || getenv("QT_VERBOSE")) printf("---- output ----\n%s\n----------------\n", out);
    return qt_finish();
}
