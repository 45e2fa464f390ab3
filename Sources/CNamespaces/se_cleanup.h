/*
 * Scope-bound descriptors and EINTR retries for the C sources (CNamespaces
 * and, by relative include, secure-exec-init). Private: not under include/,
 * so Swift never sees it.
 *
 * Everything here is async-signal-safe (close and the retried call itself),
 * so it may be used between clone and exec.
 */
#ifndef SE_CLEANUP_H
#define SE_CLEANUP_H

#include <errno.h>
#include <unistd.h>

/* Closes *fd if it is open, keeping errno, so a failure path's errno
 * survives the cleanup that runs when the function returns. */
static inline void se_close_fd_ptr(int *fd) {
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

/*
 * A local descriptor closed when it goes out of scope:
 *     SE_CLEANUP_FD int fd = open(...);
 * A descriptor handed on (returned, stored) must be taken out first with
 * se_take_fd, or it is closed under its new owner.
 */
#define SE_CLEANUP_FD __attribute__((cleanup(se_close_fd_ptr)))

/* Hands a descriptor over: returns it and leaves -1 behind, which cleanup skips. */
static inline int se_take_fd(int *fd) {
    int taken = *fd;
    *fd = -1;
    return taken;
}

/* Evaluates expr again while it fails with EINTR (-1 and errno == EINTR);
 * yields its last result. Like glibc's TEMP_FAILURE_RETRY. */
#define SE_RETRY_EINTR(expr)                                                                                    \
    __extension__({                                                                                             \
        __typeof__(expr) se_retry_result_;                                                                      \
        do {                                                                                                    \
            se_retry_result_ = (expr);                                                                          \
        } while (se_retry_result_ == -1 && errno == EINTR);                                                     \
        se_retry_result_;                                                                                       \
    })

#endif
