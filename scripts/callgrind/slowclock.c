// LD_PRELOAD shim: CLOCK_MONOTONIC* runs SLOWCLOCK times slower than real time (from process start),
// so that a program under valgrind sees about the time gaps it would see natively.
#define _GNU_SOURCE
#include <time.h>
#include <dlfcn.h>
#include <stdlib.h>
static int (*real)(clockid_t, struct timespec *);
static long long base = -1; static long long k = 1;
int clock_gettime(clockid_t id, struct timespec *ts) {
  if (!real) { real = dlsym(RTLD_NEXT, "clock_gettime"); const char *s = getenv("SLOWCLOCK"); k = s ? atoll(s) : 1; if (k < 1) k = 1; }
  int r = real(id, ts);
  if (r == 0 && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_RAW || id == CLOCK_MONOTONIC_COARSE || id == CLOCK_BOOTTIME)) {
    long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec;
    if (base < 0) base = ns;
    ns = base + (ns - base) / k;
    ts->tv_sec = ns / 1000000000LL; ts->tv_nsec = ns % 1000000000LL;
  }
  return r;
}
