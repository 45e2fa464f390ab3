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
     * then one detached mount (open_tree) per "root=directory", "workspace=overlay|bind" and
     * "mount=" record, in the records' order]. */
    SE_REQ_CONFIG = 1,
    /* Start a guest. fds: [stdin, stdout, stderr] and optionally [code memfd]. */
    SE_REQ_SPAWN = 2,
    /* Send `signal` to guest `target_pid` (a pid inside the sandbox). */
    SE_REQ_SIGNAL = 3,
    /* Send `signal` to every process in the sandbox except init. */
    SE_REQ_SIGNAL_ALL = 4,
    /* A file operation as the guest. Records: op=read|write|list|remove|mkdir,
     * path=<guest path>. fds: [data socket] (read/list: init's child writes
     * the bytes into it until EOF; write: it reads frames from it, below). */
    SE_REQ_FILE = 5,
};

/*
 * The data of op=write: frames, each a 4-byte little-endian length and that
 * many bytes of the file (1 to SE_WRITE_FRAME_MAX), ended by a frame of
 * length 0 that commits. The helper writes into a new temporary file in the
 * target's directory (SE_WRITE_TEMP_PREFIX and random letters, O_EXCL) and
 * renames it over the target only on the commit frame. The socket's EOF, or
 * a broken frame, before the commit abandons the write: the temporary file
 * is removed, the old file is left as it was, and the answer is ECANCELED.
 * So a supervisor whose data source failed just closes the socket; nothing
 * it sent can replace the file, and neither can its crash or a timeout.
 */
#define SE_WRITE_FRAME_MAX (1u << 30)
#define SE_WRITE_TEMP_PREFIX ".secure-exec-write-"

/*
 * Record keys, the one definition both sides use (Swift imports these as
 * String constants). A record is "<key>=<value>\0".
 */
/* SE_REQ_CONFIG */
#define SE_KEY_WORKSPACE_BYTES "workspace_bytes" /* size of the /workspace tmpfs or overlay layer */
#define SE_KEY_TMP_BYTES "tmp_bytes"             /* size of the /tmp tmpfs */
#define SE_KEY_NETWORK "network"                 /* 1: IPv4/IPv6 sockets allowed */
#define SE_KEY_CHILD_PROCESS "child_process"     /* 1: fork and exec allowed */
#define SE_KEY_GUEST_UID "guest_uid"
#define SE_KEY_GUEST_GID "guest_gid"
#define SE_KEY_HOSTNAME "hostname"
#define SE_KEY_WRITABLE "writable"         /* each: a root file operations may act in */
#define SE_KEY_SYSCTL "sysctl"             /* each: "<name below /proc/sys> <value>" */
#define SE_KEY_FILE_TIMEOUT "file_timeout" /* seconds after which a file helper ends itself */
#define SE_KEY_WORKSPACE "workspace"       /* tmpfs | overlay | bind (the latter two claim a descriptor) */
#define SE_KEY_MOUNT "mount"               /* each: a guest path; claims the next descriptor */
#define SE_KEY_ROOT "root"                 /* "directory": the root's read-only base; claims the next descriptor */
#define SE_KEY_SYMLINK "symlink"           /* each: "<guest path> <target>", made in the root before it goes read-only */
#define SE_KEY_LOCALTIME "localtime"       /* /etc/localtime's target: the host zone's file (a mount= path or the root's own) */
#define SE_KEY_NAMESERVER "nameserver"     /* egress: the address /etc/resolv.conf names (the supervisor's DNS in the sandbox) */
/* SE_REQ_SPAWN */
#define SE_KEY_EXE "exe"       /* the guest path of the program (node, a shell, any executable) */
#define SE_KEY_CWD "cwd"       /* its working directory */
#define SE_KEY_ARG "arg"       /* each: argv, in order, argv[0] first */
#define SE_KEY_ENV "env"       /* each: "NAME=value" */
#define SE_KEY_RLIMIT "rlimit" /* each: "<resource>:<soft>:<hard>" */
#define SE_KEY_ENTRY "entry"   /* where init writes the code memfd (fd 4), removed at exit */
/* SE_REQ_FILE */
#define SE_KEY_OP "op"     /* read | write | list | remove | mkdir */
#define SE_KEY_PATH "path" /* the guest path */

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
    SE_EV_SIGNAL_FAILED = 6, /* id = request, pid = target, err */
    SE_EV_FILE_DONE = 7,     /* id = request, err = 0 or the operation's errno */
    /* A request init could not take as sent: id = request (0 only when not
     * even the header could be read), step = reason, err = errno. */
    SE_EV_REQUEST_FAILED = 8,
};

/*
 * Which answer each request gets. A request that fails gets exactly one
 * answer, carrying its id; one that succeeds gets at most one. Init closes
 * every descriptor a request carried, whatever the outcome.
 *
 *   SE_REQ_CONFIG, the first record: SE_EV_READY, or SE_EV_SETUP_FAILED
 *       (id 0; also when the first record is no well-formed config) and
 *       init exits.
 *   SE_REQ_SPAWN: SE_EV_SPAWNED (the guest's SE_EV_EXITED later names it
 *       by pid), or SE_EV_SPAWN_FAILED, also for a spawn request whose
 *       records do not parse ("parse spawn request") and for a guest that
 *       started but could not be tracked ("track guest": it is killed and
 *       never announced).
 *   SE_REQ_SIGNAL: nothing when delivered; SE_EV_SIGNAL_FAILED when the
 *       target is no running guest of ours (ESRCH) or kill failed;
 *       SE_EV_REQUEST_FAILED when malformed: "signal request with payload
 *       or fds", "signal number" (outside 1..64), "signal target" (pid <= 0).
 *   SE_REQ_SIGNAL_ALL: nothing, even with nobody left to signal;
 *       SE_EV_REQUEST_FAILED when malformed (as SE_REQ_SIGNAL; no target).
 *   SE_REQ_FILE: exactly one SE_EV_FILE_DONE, err = 0 or an errno (EPROTO
 *       for records that do not parse), sent when the operation ends.
 *   Any request that does not arrive as one whole record (recvmsg failed, a
 *   short header, payload or descriptors cut off, payload_len or fd_count
 *   not what arrived), a second SE_REQ_CONFIG, an unknown type:
 *       SE_EV_REQUEST_FAILED, step one of "receive request",
 *       "short request header", "request too long", "too many descriptors",
 *       "request length mismatch", "descriptor count mismatch",
 *       "config after setup", "unknown request type".
 */
struct se_event {
    uint32_t type;
    uint32_t id;
    int32_t pid;
    int32_t status;
    int32_t err;
    char step[60];
};

#endif
