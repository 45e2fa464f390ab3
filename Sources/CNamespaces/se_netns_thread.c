#define _GNU_SOURCE
#include "se_netns_thread.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>

struct run {
    enum se_netns_entry entry;
    int netns_fd;
    se_netns_body body;
    void *context;
    int result;
    int error;
    const char *step;
};

static void *run_in_namespace(void *argument) {
    struct run *run = argument;
    int entered = run->entry == SE_NETNS_JOIN ? setns(run->netns_fd, CLONE_NEWNET) : unshare(CLONE_NEWNET);
    if (entered != 0) {
        run->error = errno;
        run->step = run->entry == SE_NETNS_JOIN ? "setns" : "unshare(CLONE_NEWNET)";
        return NULL;
    }
    errno = 0;
    run->result = run->body(run->context, &run->step);
    run->error = errno;
    return NULL;
}

int se_run_in_netns(enum se_netns_entry entry, int netns_fd, se_netns_body body, void *context, const char **step) {
    struct run run = {.entry = entry, .netns_fd = netns_fd, .body = body, .context = context, .result = -1};
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    /* Room for the netlink buffers the bodies keep on their stacks (and glibc's getifaddrs). */
    pthread_attr_setstacksize(&attributes, 256 * 1024);
    pthread_t thread;
    int created = pthread_create(&thread, &attributes, run_in_namespace, &run);
    pthread_attr_destroy(&attributes);
    if (created != 0) {
        *step = "pthread_create";
        errno = created;
        return -1;
    }
    pthread_join(thread, NULL);
    if (run.result < 0) {
        *step = run.step;
        errno = run.error;
    }
    return run.result;
}
