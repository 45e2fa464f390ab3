#ifndef CPHASES_H
#define CPHASES_H

#include <stdint.h>

#include "cphases_host.h"
#include "cphases_netns.h"

/*
 * The kernel steps of a SecureExec sandbox's creation, done one by one by a
 * C probe and timed, so the benchmark can say where create() spends its time
 * without instrumenting the library: clone3 into the same namespaces, the
 * uid/gid maps, loopback up, and a guest root built the way init builds it
 * (tmpfs root, /dev, writable areas, read-only binds, /proc with masks,
 * pivot_root). The probe's child exits instead of exec'ing anything.
 */

/* Paths are prepared by the caller; the child only makes syscalls with them. */
struct cphases_config {
    /* Directories to create in the new root before binding (absolute, under /tmp), in order. */
    const char *_Nonnull const *_Nonnull directories;
    int directory_count;
    /* Read-only binds: host source -> target under /tmp (the target file is created). */
    const char *_Nonnull const *_Nonnull bind_sources;
    const char *_Nonnull const *_Nonnull bind_targets;
    int bind_count;
    /* Device binds (read-write, nosuid, noexec): host /dev/x -> /tmp/dev/x. */
    const char *_Nonnull const *_Nonnull device_sources;
    const char *_Nonnull const *_Nonnull device_targets;
    int device_count;
    /* The first host uid/gid of the range the namespace's 0..65535 maps to. */
    unsigned uid_base;
    /* cgroup.procs files the child is moved into before it is released (cgroup v1, as SecureExec
     * does on hybrid hosts); may be empty. */
    const char *_Nonnull const *_Nullable cgroup_procs;
    int cgroup_proc_count;
};

/* CLOCK_MONOTONIC nanoseconds at each step; 0 where the step did not run. */
struct cphases_result {
    int64_t before_clone;
    int64_t after_clone;     /* clone3 returned in the parent */
    int64_t after_id_maps;   /* uid_map and gid_map written */
    int64_t after_cgroups;   /* the child's pid written to every cgroup.procs (= after_id_maps if none) */
    int64_t child_released;  /* the child read the go byte and became ns-root */
    int64_t after_loopback;  /* lo is up */
    int64_t after_mounts;    /* tmpfs root, /dev, writable areas, binds, /proc */
    int64_t after_pivot;     /* read-only root, pivot_root, old root detached */
    int64_t reaped;          /* the child's exit was reaped through its pidfd */
    int failed_step;         /* 0 on success, else one of CPHASES_STEP_* */
    int failed_errno;
};

enum {
    CPHASES_STEP_OK = 0,
    CPHASES_STEP_PIPE,
    CPHASES_STEP_CLONE,
    CPHASES_STEP_ID_MAPS,
    CPHASES_STEP_CREDENTIALS,
    CPHASES_STEP_LOOPBACK,
    CPHASES_STEP_ROOT_TMPFS,
    CPHASES_STEP_DIRECTORIES,
    CPHASES_STEP_BINDS,
    CPHASES_STEP_PROC,
    CPHASES_STEP_PIVOT,
    CPHASES_STEP_REPORT,
    CPHASES_STEP_REAP,
    CPHASES_STEP_CGROUP,
};

/* Runs the steps once. Returns 0, or -1 with result->failed_step/failed_errno set. Needs root. */
int cphases_run(const struct cphases_config *_Nonnull config, struct cphases_result *_Nonnull result);

/* CLOCK_MONOTONIC in nanoseconds (the clock node's process.hrtime uses). */
int64_t cphases_monotonic_ns(void);

/* CLOCK_REALTIME in nanoseconds (the clock node's performance.timeOrigin reads). */
int64_t cphases_realtime_ns(void);

#endif
