#ifndef SE_CONTROL_H
#define SE_CONTROL_H

#include <stddef.h>
#include "se_protocol.h"

/*
 * Sends one request record (header + payload) with `fd_count` descriptors as
 * SCM_RIGHTS. The descriptors stay owned by the caller. Returns 0 or -1/errno.
 */
int se_send_request(int sock, const struct se_request *_Nonnull header,
                    const void *_Nullable payload, const int *_Nullable fds);

/*
 * Receives one event record without blocking. Returns 1 with *event filled,
 * 0 when the peer has closed, -1/errno otherwise (EAGAIN when none is queued).
 */
int se_receive_event(int sock, struct se_event *_Nonnull event);

#endif
