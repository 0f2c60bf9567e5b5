/* qa_clock.h — the monotonic clock in seconds: durations, deadlines, tokens/s (never wall-clock time). */
#ifndef QA_CLOCK_H
#define QA_CLOCK_H
#include <time.h>

static inline double qa_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif
