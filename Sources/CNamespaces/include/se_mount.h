#ifndef SE_MOUNT_H
#define SE_MOUNT_H

#include <stdint.h>
#include <sys/types.h>

/* Attribute bits for se_detached_mount (the kernel's MOUNT_ATTR_* values). */
#define SE_MOUNT_READ_ONLY 0x00000001
#define SE_MOUNT_NO_SUID 0x00000002
#define SE_MOUNT_NO_DEV 0x00000004
#define SE_MOUNT_NO_EXEC 0x00000008

/*
 * Opens `path` (absolute) as an O_PATH descriptor without following any
 * symlink on the way: openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS).
 * A symlink in any component, the last included, fails with ELOOP.
 * Returns the descriptor (close-on-exec) or -1/errno.
 */
int se_open_no_symlinks(const char *_Nonnull path);

/*
 * Opens `path` (O_PATH) inside the directory `root` as if `root` were "/":
 * symlinks in it resolve within `root` (openat2 RESOLVE_IN_ROOT), never
 * above it. For looking at an operator's root
 * filesystem the way its guest will. Returns the descriptor (close-on-exec)
 * or -1/errno.
 */
int se_open_in_root(int root, const char *_Nonnull path);

/*
 * Clones the mount at `source` (an O_PATH descriptor from
 * se_open_no_symlinks, a file or a directory; with its submounts when
 * `recursive`) into a detached mount the caller owns, and sets `attributes`
 * on it (open_tree(OPEN_TREE_CLONE) + mount_setattr). With idmap_userns >= 0
 * the mount is also idmapped through that user namespace (MOUNT_ATTR_IDMAP).
 *
 * The supervisor opens host paths with its own credentials and hands the
 * sandbox only these descriptors, which init attaches with move_mount: init
 * never looks up a host path, so directory permissions above the source and
 * symlink games on the host side cannot affect what it mounts.
 * Returns the descriptor (close-on-exec) or -1/errno; *step names the call.
 */
int se_detached_mount(int source, uint64_t attributes, int recursive, int idmap_userns,
                      const char *_Nullable *_Nonnull step);

/*
 * A user namespace for an idmapped mount that maps exactly one uid and one
 * gid: files owned by fs_uid:fs_gid on disk appear as host_uid:host_gid
 * through the mount, and files host_uid:host_gid creates are stored as
 * fs_uid:fs_gid. Every other owner reads as the overflow id and cannot be
 * written as.
 *
 * Made by a short-lived child (clone3 CLONE_NEWUSER) that only waits on a
 * pipe, async-signal-safe, until its maps are written and the namespace is
 * opened. Returns the namespace's descriptor (close-on-exec) or -1/errno;
 * *step names the call.
 */
int se_idmap_userns(uid_t fs_uid, gid_t fs_gid, uid_t host_uid, gid_t host_gid,
                    const char *_Nullable *_Nonnull step);

#endif
