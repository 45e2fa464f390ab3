#ifndef SE_MOUNT_H
#define SE_MOUNT_H

#include <stdint.h>

/* Attribute bits for se_detached_mount (the kernel's MOUNT_ATTR_* values). */
#define SE_MOUNT_READ_ONLY 0x00000001
#define SE_MOUNT_NO_SUID 0x00000002
#define SE_MOUNT_NO_DEV 0x00000004
#define SE_MOUNT_NO_EXEC 0x00000008

/*
 * Clones the mount at `path` (a file or directory; with its submounts when
 * `recursive`) into a detached mount the caller owns, and sets `attributes`
 * on it (open_tree(OPEN_TREE_CLONE) + mount_setattr).
 *
 * The supervisor resolves host paths with its own credentials and hands the
 * sandbox only these descriptors, which init attaches with move_mount: init
 * never looks up a host path, so directory permissions above the source and
 * symlink games on the host side cannot affect what it mounts.
 * Returns the descriptor (close-on-exec) or -1/errno; *step names the call.
 */
int se_detached_mount(const char *_Nonnull path, uint64_t attributes, int recursive,
                      const char *_Nullable *_Nonnull step);

#endif
