#define _GNU_SOURCE
#include "init.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fail(struct failure *failure, const char *step) {
    failure->step = step;
    failure->err = errno ? errno : EINVAL;
    return -1;
}

int each_record(const char *payload, size_t length,
                int (*visit)(void *context, const char *key, const char *value), void *context) {
    size_t offset = 0;
    while (offset < length) {
        const char *record = payload + offset;
        const char *end = memchr(record, 0, length - offset);
        if (!end) {
            errno = EPROTO; /* unterminated record: a supervisor bug, not guest input */
            return -1;
        }
        const char *equals = memchr(record, '=', (size_t)(end - record));
        if (!equals) {
            errno = EPROTO;
            return -1;
        }
        char key[32];
        size_t key_length = (size_t)(equals - record);
        if (key_length >= sizeof key) {
            errno = EPROTO;
            return -1;
        }
        memcpy(key, record, key_length);
        key[key_length] = 0;
        if (visit(context, key, equals + 1) != 0) return -1;
        offset += (size_t)(end - record) + 1;
    }
    return 0;
}

static int parse_number(const char *text, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *text == 0 || *end != 0) {
        errno = EPROTO;
        return -1;
    }
    *out = value;
    return 0;
}

static int visit_config(void *context, const char *key, const char *value) {
    struct init_config *config = context;
    unsigned long long number;
    if (strcmp(key, SE_KEY_WORKSPACE_BYTES) == 0) {
        return parse_number(value, &config->workspace_bytes);
    } else if (strcmp(key, SE_KEY_TMP_BYTES) == 0) {
        return parse_number(value, &config->tmp_bytes);
    } else if (strcmp(key, SE_KEY_NETWORK) == 0) {
        if (parse_number(value, &number) != 0) return -1;
        config->network_allowed = number != 0;
    } else if (strcmp(key, SE_KEY_CHILD_PROCESS) == 0) {
        if (parse_number(value, &number) != 0) return -1;
        config->child_process_allowed = number != 0;
    } else if (strcmp(key, SE_KEY_GUEST_UID) == 0) {
        if (parse_number(value, &number) != 0) return -1;
        config->guest_uid = (unsigned)number;
    } else if (strcmp(key, SE_KEY_GUEST_GID) == 0) {
        if (parse_number(value, &number) != 0) return -1;
        config->guest_gid = (unsigned)number;
    } else if (strcmp(key, SE_KEY_HOSTNAME) == 0) {
        config->hostname = strdup(value);
    } else if (strcmp(key, SE_KEY_LOCALTIME) == 0) {
        if (value[0] != '/' || config->localtime) {
            errno = EPROTO;
            return -1;
        }
        config->localtime = strdup(value);
    } else if (strcmp(key, SE_KEY_NAMESERVER) == 0) {
        /* An address literal only: it is written into resolv.conf as is. */
        if (config->nameserver || value[0] == 0 || strspn(value, "0123456789abcdef.:") != strlen(value)) {
            errno = EPROTO;
            return -1;
        }
        config->nameserver = strdup(value);
    } else if (strcmp(key, SE_KEY_FILE_TIMEOUT) == 0) {
        if (parse_number(value, &number) != 0 || number == 0 || number > 86400 * 366) {
            errno = EPROTO;
            return -1;
        }
        config->file_timeout_seconds = (unsigned)number;
    } else if (strcmp(key, SE_KEY_SYSCTL) == 0) {
        /* "user/max_inotify_instances 128": a name below /proc/sys, no "..". */
        char **grown = realloc(config->sysctls, (config->sysctl_count + 1) * sizeof *grown);
        if (!grown || value[0] == '/' || strstr(value, "..") || !strchr(value, ' ')) {
            if (grown) config->sysctls = grown;
            errno = EPROTO;
            return -1;
        }
        config->sysctls = grown;
        config->sysctls[config->sysctl_count++] = strdup(value);
    } else if (strcmp(key, SE_KEY_WRITABLE) == 0) {
        char **grown = realloc(config->writable, (config->writable_count + 1) * sizeof *grown);
        if (!grown || value[0] != '/') {
            errno = EPROTO;
            return -1;
        }
        config->writable = grown;
        config->writable[config->writable_count++] = strdup(value);
    } else if (strcmp(key, SE_KEY_WORKSPACE) == 0) {
        /* "overlay" and "bind" claim the next descriptor: the project's mount. */
        if (strcmp(value, "tmpfs") == 0) {
            config->workspace_mode = WORKSPACE_TMPFS;
            return 0;
        }
        if (strcmp(value, "overlay") == 0) {
            config->workspace_mode = WORKSPACE_OVERLAY;
        } else if (strcmp(value, "bind") == 0) {
            config->workspace_mode = WORKSPACE_BIND;
        } else {
            errno = EPROTO;
            return -1;
        }
        if (config->workspace_fd >= 0 || config->received_used >= config->received_count) {
            errno = EPROTO;
            return -1;
        }
        config->workspace_fd = config->received_fds[config->received_used++];
    } else if (strcmp(key, SE_KEY_ROOT) == 0) {
        /* "directory" claims the next descriptor: the root's base. */
        if (strcmp(value, "directory") != 0 || config->base_fd >= 0 ||
            config->received_used >= config->received_count) {
            errno = EPROTO;
            return -1;
        }
        config->base_fd = config->received_fds[config->received_used++];
    } else if (strcmp(key, SE_KEY_SYMLINK) == 0) {
        /* "/bin/sh busybox": an absolute guest path, a space, the target. */
        const char *space = strchr(value, ' ');
        if (value[0] != '/' || !space || space[1] == 0) {
            errno = EPROTO;
            return -1;
        }
        struct root_symlink *grown = realloc(config->symlinks, (config->symlink_count + 1) * sizeof *grown);
        if (!grown) return -1;
        config->symlinks = grown;
        config->symlinks[config->symlink_count].guest_path = strndup(value, (size_t)(space - value));
        config->symlinks[config->symlink_count].target = strdup(space + 1);
        config->symlink_count++;
    } else if (strcmp(key, SE_KEY_MOUNT) == 0) {
        /* Each mount record claims the next descriptor after the skeleton's. */
        if (config->received_used >= config->received_count || value[0] != '/') {
            errno = EPROTO;
            return -1;
        }
        struct bind_mount *grown = realloc(config->binds, (config->bind_count + 1) * sizeof *grown);
        if (!grown) return -1;
        config->binds = grown;
        config->binds[config->bind_count].guest_path = strdup(value);
        config->binds[config->bind_count].fd = config->received_fds[config->received_used++];
        config->bind_count++;
    } else {
        errno = EPROTO; /* unknown key: supervisor and init disagree */
        return -1;
    }
    return 0;
}

int parse_config(const char *payload, size_t length, int *fds, size_t fd_count, struct init_config *config,
                 struct failure *failure) {
    memset(config, 0, sizeof *config);
    config->workspace_fd = -1;
    config->base_fd = -1;
    config->file_timeout_seconds = 60;
    config->guest_uid = 1000;
    config->guest_gid = 1000;
    config->supervisor_pidfd = fds[0];
    config->rootfs_fd = fds[1];
    config->received_fds = fds + 2;
    config->received_count = fd_count - 2;
    if (each_record(payload, length, visit_config, config) != 0) return fail(failure, "parse config");
    if (config->received_used != config->received_count) {
        errno = EPROTO;
        return fail(failure, "parse config: one descriptor per mount");
    }
    if (!config->hostname || config->workspace_bytes == 0 || config->tmp_bytes == 0) {
        errno = EPROTO;
        return fail(failure, "parse config: missing keys");
    }
    return 0;
}
