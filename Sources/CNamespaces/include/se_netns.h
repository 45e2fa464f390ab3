#ifndef SE_NETNS_H
#define SE_NETNS_H

#include <sys/socket.h>

/*
 * Creates a non-blocking TCP socket inside the network namespace `netns_fd`
 * and starts connecting it to `address`.
 *
 * The setns happens on a short-lived pthread made for this call alone, so no
 * thread of the caller (Swift concurrency, Dispatch) ever changes namespace.
 * Returns the socket (close-on-exec), with *in_progress set when the connect
 * has not finished yet (wait for writability, then read SO_ERROR), or -1 with
 * errno and *step naming the failing call.
 */
int se_netns_connect(int netns_fd, const struct sockaddr *_Nonnull address, socklen_t length,
                     int *_Nonnull in_progress, const char *_Nullable *_Nonnull step);

/* Reads and clears SO_ERROR on a socket: 0, or the pending error. */
int se_socket_error(int fd);

#endif
