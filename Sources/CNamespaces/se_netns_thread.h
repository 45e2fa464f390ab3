/*
 * Running code inside a network namespace without moving any of the caller's
 * threads there. Used by CNamespaces (dialing into a sandbox) and CEgress.
 */
#ifndef SE_NETNS_THREAD_H
#define SE_NETNS_THREAD_H

/* Where the thread goes before running the body. */
enum se_netns_entry {
    SE_NETNS_JOIN,    /* setns(netns_fd, CLONE_NEWNET) */
    SE_NETNS_UNSHARE, /* unshare(CLONE_NEWNET): a namespace of its own, new */
};

/* Returns a non-negative result (0, or a descriptor), or -1 with errno set
 * and *step naming the failing call. */
typedef int (*se_netns_body)(void *context, const char **step);

/*
 * Runs body(context) on a pthread made for this call alone, after that thread
 * has entered the namespace (netns_fd is ignored for SE_NETNS_UNSHARE).
 * Namespaces are per thread, and this thread ends right after, so no thread of
 * the caller (Swift concurrency, Dispatch) ever changes namespace. Sockets the
 * body makes stay in the namespace they were made in, on any thread.
 *
 * Returns what body returned (on -1 with its errno and *step), or -1 if the
 * thread could not be made or could not enter the namespace.
 */
int se_run_in_netns(enum se_netns_entry entry, int netns_fd, se_netns_body body, void *context, const char **step);

#endif
