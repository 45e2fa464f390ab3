/*
 * The control protocol between the supervisor (host, Swift) and the sandbox's
 * init (PID 1, C). One SOCK_SEQPACKET socketpair: every send is one record.
 *
 * Supervisor -> init: an se_request header, then a payload of NUL-terminated
 * "key=value" records, with file descriptors attached as SCM_RIGHTS.
 * Init -> supervisor: fixed-size se_event records, never with descriptors.
 */
#ifndef SE_PROTOCOL_H
#define SE_PROTOCOL_H

#include <stdint.h>

/* Init finds its control socket here; everything else it inherits is closed. */
#define SE_CONTROL_FD 3
/* Largest request record, header included. Spawn payloads (argv, env) must fit. */
#define SE_MAX_REQUEST (64 * 1024)
/* Most descriptors one request carries (config: skeleton + one per mount). */
#define SE_MAX_REQUEST_FDS 128

enum se_request_type {
    /* First record: how to build the sandbox. fds: [supervisor pidfd, rootfs skeleton dir,
     * then one detached mount (open_tree) per "workspace=overlay|bind" and "mount=" record,
     * in the records' order]. */
    SE_REQ_CONFIG = 1,
    /* Start a guest. fds: [stdin, stdout, stderr] and optionally [code memfd]. */
    SE_REQ_SPAWN = 2,
    /* Send `signal` to guest `target_pid` (a pid inside the sandbox). */
    SE_REQ_SIGNAL = 3,
    /* Send `signal` to every process in the sandbox except init. */
    SE_REQ_SIGNAL_ALL = 4,
    /* A file operation as the guest. Records: op=read|write|list|remove|mkdir,
     * path=<guest path>. fds: [data socket] (read/list: init's child writes
     * into it; write: it reads from it until EOF). */
    SE_REQ_FILE = 5,
};

struct se_request {
    uint32_t type;
    uint32_t id;          /* echoed in the answering event */
    int32_t target_pid;
    int32_t signal;
    uint32_t payload_len; /* bytes of records after this header */
    uint32_t fd_count;    /* descriptors attached */
};

enum se_event_type {
    SE_EV_READY = 1,         /* sandbox built; requests may follow */
    SE_EV_SETUP_FAILED = 2,  /* step + err say where; init exits */
    SE_EV_SPAWNED = 3,       /* id = request, pid = guest pid in the sandbox */
    SE_EV_SPAWN_FAILED = 4,  /* id = request, step + err */
    SE_EV_EXITED = 5,        /* pid, status = raw wait status */
    SE_EV_SIGNAL_FAILED = 6, /* id = request, err */
    SE_EV_FILE_DONE = 7,     /* id = request, err = 0 or the operation's errno */
};

struct se_event {
    uint32_t type;
    uint32_t id;
    int32_t pid;
    int32_t status;
    int32_t err;
    char step[60];
};

#endif
