/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Morpheus ABI: the single definition of every type and constant shared by
 * the BPF scheduler (scx_morpheus), its Rust loader, the runtimes
 * (morpheus-runtime, morpheus-py) and the registration protocol.
 *
 * The Rust side is generated from this file (morpheus-common/src/abi.rs,
 * regenerate with `./morpheus-dev gen-abi`); a test fails on any drift.
 * Python reads every value through the native module.
 *
 * Compatibility rule: any change to a layout or to the meaning of a value
 * bumps MORPHEUS_ABI_VERSION. Peers of different versions refuse to pair.
 */
#ifndef __MORPHEUS_ABI_H
#define __MORPHEUS_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* ------------------------------------------------------------------------
 * Identity and versioning
 * ------------------------------------------------------------------------ */

/* "MRPH": first word of every SCB and every protocol message. */
#define MORPHEUS_ABI_MAGIC 0x4d525048u
/* Bumped on any incompatible change to this file. */
#define MORPHEUS_ABI_VERSION 2u

/* ------------------------------------------------------------------------
 * Limits and defaults (the one place they are defined)
 * ------------------------------------------------------------------------ */

#define MORPHEUS_CACHELINE_SIZE 64u
/* Worker slots in one process's SCB array (one mmapable map per process). */
#define MORPHEUS_MAX_WORKERS_PER_PROCESS 256u
/* Processes that may hold registrations at the same time. */
#define MORPHEUS_MAX_PROCESSES 1024u
/* Worker threads registered machine-wide at the same time. */
#define MORPHEUS_MAX_WORKERS 8192u

/* Default scheduler slice and its adaptive bounds (nanoseconds). */
#define MORPHEUS_DEFAULT_SLICE_NS 5000000ull
#define MORPHEUS_DEFAULT_SLICE_MIN_NS 2000000ull
#define MORPHEUS_DEFAULT_SLICE_MAX_NS 10000000ull
/* Time a hinted worker has to reach a checkpoint before it is overdue. */
#define MORPHEUS_DEFAULT_GRACE_NS 100000000ull
/* Longest a critical section may hold a CPU while others wait. */
#define MORPHEUS_DEFAULT_MAX_CRITICAL_NS 50000000ull
/* sched_ext watchdog: a runnable task not run for this long ejects us. */
#define MORPHEUS_WATCHDOG_TIMEOUT_MS 5000u

/* Default path of the loader's registration socket. */
#define MORPHEUS_DEFAULT_SOCKET_PATH "/run/morpheus/morpheus.sock"

/*
 * Pressure scale: pressure = MORPHEUS_PRESSURE_ONE * runnable / online CPUs,
 * capped at MORPHEUS_PRESSURE_MAX. MORPHEUS_PRESSURE_ONE means "exactly one
 * runnable task per CPU" (saturated, nobody waits); above it tasks wait.
 */
#define MORPHEUS_PRESSURE_ONE 1024u
#define MORPHEUS_PRESSURE_MAX (16u * MORPHEUS_PRESSURE_ONE)

/* ------------------------------------------------------------------------
 * Enumerations
 * ------------------------------------------------------------------------ */

/* Life cycle of a worker slot. Moved by the loader and the BPF program. */
enum morpheus_worker_state {
	MORPHEUS_WORKER_INIT = 0,	/* slot free or being set up */
	MORPHEUS_WORKER_REGISTERED = 1, /* registered, not yet run since */
	MORPHEUS_WORKER_RUNNING = 2,	/* has run under the scheduler */
	MORPHEUS_WORKER_QUIESCING = 3,	/* reserved (a released slot goes straight to DEAD) */
	MORPHEUS_WORKER_DEAD = 4,	/* thread exited, slot reclaimable */
	MORPHEUS_WORKER_STATE_NR = 5,
};

/* What the scheduler may do to an escapable worker that ignored a hint. */
enum morpheus_escalation_policy {
	MORPHEUS_ESCALATION_NONE = 0,
	MORPHEUS_ESCALATION_THREAD_KICK = 1,	 /* preempted at the deadline */
	MORPHEUS_ESCALATION_CGROUP_THROTTLE = 2, /* reduced share, bounded window */
	MORPHEUS_ESCALATION_HYBRID = 3,		 /* kick, throttle repeat offenders */
	MORPHEUS_ESCALATION_POLICY_NR = 4,
};

/* How a runtime treats hints (see morpheus-runtime). */
enum morpheus_runtime_mode {
	MORPHEUS_MODE_DETERMINISTIC = 0, /* local budget only, hints ignored */
	MORPHEUS_MODE_PRESSURED = 1,	 /* kernel hints honoured, budget floor */
	MORPHEUS_MODE_DEFENSIVE = 2,	 /* escalations seen: yield eagerly */
	MORPHEUS_MODE_NR = 3,
};

/* Why a worker yielded; indexes the yield ledger. */
enum morpheus_yield_cause {
	MORPHEUS_YIELD_VOLUNTARY = 0, /* the application asked for it */
	MORPHEUS_YIELD_HINT = 1,      /* the kernel asked for it */
	MORPHEUS_YIELD_BUDGET = 2,    /* the local time budget ran out */
	MORPHEUS_YIELD_DEFENSIVE = 3, /* defensive mode's tighter budget */
	MORPHEUS_YIELD_ESCALATED = 4, /* the kernel forced it */
	MORPHEUS_YIELD_PRESSURE = 5,  /* PSI pressure tightened the budget */
	MORPHEUS_YIELD_CATCH_UP = 6,  /* I/O arrived while busy: serve it */
	MORPHEUS_YIELD_CAUSE_NR = 7,
};

/* The runtime a worker thread belongs to (informational). */
enum morpheus_runtime_kind {
	MORPHEUS_RUNTIME_GENERIC = 0,
	MORPHEUS_RUNTIME_TOKIO = 1,
	MORPHEUS_RUNTIME_ASYNCIO = 2,
	MORPHEUS_RUNTIME_KIND_NR = 3,
};

/* Kind of a record in the scheduler's event ring buffer. */
enum morpheus_event_kind {
	MORPHEUS_EVENT_HINT = 1,	 /* a hint was issued */
	MORPHEUS_EVENT_ANSWERED = 2,	 /* acknowledged, or the worker yielded */
	MORPHEUS_EVENT_EXPIRED = 3,	 /* grace passed without an answer */
	MORPHEUS_EVENT_ESCALATED = 4,	 /* escalation applied; value = policy */
	MORPHEUS_EVENT_CRITICAL_CAP = 5, /* critical-section cap hit */
	MORPHEUS_EVENT_WORKER_STATE = 6, /* state change; value = new state */
};

/* Result of a protocol request. */
enum morpheus_status {
	MORPHEUS_STATUS_OK = 0,
	MORPHEUS_STATUS_BAD_MESSAGE = 1,  /* malformed or unexpected message */
	MORPHEUS_STATUS_BAD_VERSION = 2,  /* ABI version mismatch */
	MORPHEUS_STATUS_TABLE_FULL = 3,	  /* no free worker slot */
	MORPHEUS_STATUS_NOT_PERMITTED = 4, /* the thread is not the caller's */
	MORPHEUS_STATUS_NOT_FOUND = 5,	  /* no such registration */
	MORPHEUS_STATUS_INTERNAL = 6,	  /* the loader failed; see its log */
	MORPHEUS_STATUS_USER_QUOTA = 7,	  /* the caller's user holds its share of slots */
	MORPHEUS_STATUS_NR = 8,
};

/* ------------------------------------------------------------------------
 * Shared control block (SCB): one per registered worker thread
 *
 * Two cache lines so that the two writers never share one:
 *   line 0 (struct morpheus_scb_kernel): written by the scheduler (BPF) and,
 *          before the SCB is handed out, by the loader; read by the runtime.
 *          The mapping is writable as a whole, so the client can change it:
 *          it is a copy for the runtime, and the scheduler never reads
 *          back anything it decides on.
 *   line 1 (struct morpheus_scb_user): written only by the process that
 *          owns the slot (the worker thread, or its runtime while it
 *          re-registers that worker); read by the scheduler. The loader
 *          zeroes both lines before it hands a slot out.
 *
 * The signal word (k.hint_seq) carries two counters, so that one load
 * tells a checkpoint whether anything is new:
 *   - bits 0-47 (MORPHEUS_HINT_SEQ_MASK): the hint sequence, one more per
 *     hint ("yield soon: others wait for your CPU"). The runtime answers
 *     by storing that sequence, these bits only, in ack_seq.
 *   - bits 48-61 (MORPHEUS_CATCH_UP_SHIFT, MORPHEUS_CATCH_UP_MASK):
 *     catch-ups, modulo 2^14, one more each time I/O becomes ready for the
 *     worker's process while none of its threads waits for it (every
 *     worker is busy): the running worker should serve its ready tasks
 *     (poll its I/O driver) at its next checkpoint and keep the CPU. A
 *     process none of whose workers runs gets it when the first one runs
 *     again. A catch-up needs no answer and gains the worker no CPU.
 *   - bits 62-63 are never set by the kernel (runtimes may use them for
 *     their own signals).
 *
 * Memory ordering contract:
 *   - BPF writes hint_issued_ns and hint_deadline_ns, then stores the new
 *     signal word with a compare-and-swap (a full barrier in BPF). The
 *     runtime's fast path is one relaxed load of hint_seq compared with
 *     the last word it acted on;
 *     only when they differ does it issue an acquire fence and read the
 *     other kernel fields.
 *   - The runtime publishes ack_seq with a release store after it has
 *     yielded or decided to. BPF reads it with READ_ONCE.
 *   - critical_depth is written by the owning thread with a relaxed store
 *     followed by a compiler fence: BPF reads it from the tick or a kick on
 *     the CPU the thread runs on, which observes the thread's own program
 *     order (like a signal handler). Other CPUs never decide on it.
 *   - Every value the scheduler reads from line 1 is untrusted: it is
 *     clamped and only ever affects the owning worker.
 * ------------------------------------------------------------------------ */

/* The signal word's fields (see above). */
#define MORPHEUS_HINT_SEQ_MASK 0xffffffffffffull
#define MORPHEUS_CATCH_UP_SHIFT 48u
#define MORPHEUS_CATCH_UP_MASK 0x3fffull

/* scb_kernel.flags */
#define MORPHEUS_SCBK_ENFORCING (1u << 0) /* scheduler runs with --enforce */
#define MORPHEUS_SCBK_THROTTLED (1u << 1) /* worker is serving a penalty */
/*
 * The scheduler runs --partial (it schedules only SCHED_EXT tasks): a worker
 * switches itself to SCHED_EXT. The loader never changes another thread's
 * policy: by thread id it could reach a reused id's new owner.
 */
#define MORPHEUS_SCBK_PARTIAL (1u << 2)

/* scb_user.flags and the register request's flags */
#define MORPHEUS_WORKER_ESCAPABLE (1u << 0) /* may be forced past grace */

struct morpheus_scb_kernel {
	__u32 magic;		/* MORPHEUS_ABI_MAGIC once the slot is live */
	__u16 abi_version;	/* MORPHEUS_ABI_VERSION */
	__u16 state;		/* enum morpheus_worker_state */
	__u64 generation;	/* bumped each time the slot is (re)assigned */
	__u64 hint_seq;		/* the signal word: hints and catch-ups (above) */
	__u64 hint_deadline_ns; /* bpf_ktime_get_ns() by which to answer; moved
				 * later by any time the worker waits for a
				 * CPU meanwhile (grace is time on a CPU) */
	__u32 pressure;		/* MORPHEUS_PRESSURE_ONE fixed point */
	__u32 slice_us;		/* the scheduler's current slice */
	__u32 escalations;	/* escalations applied to this worker */
	__u32 flags;		/* MORPHEUS_SCBK_* */
	__u64 hints_answered;	/* hints answered before their deadline */
	__u64 hint_issued_ns;	/* bpf_ktime_get_ns() when hint_seq was last stored */
} __attribute__((aligned(64)));

struct morpheus_scb_user {
	__u64 ack_seq;	      /* last hint_seq answered (release store) */
	__u32 critical_depth; /* > 0: inside a critical section */
	__u32 flags;	      /* MORPHEUS_WORKER_* */
	__u32 mode;	      /* enum morpheus_runtime_mode (informational) */
	__u32 __pad;
	__u64 checkpoints;    /* slow-path checkpoints (informational) */
	__u64 yields;	      /* yields taken (informational) */
	__u8 __reserved[24];
} __attribute__((aligned(64)));

struct morpheus_scb {
	struct morpheus_scb_kernel k;
	struct morpheus_scb_user u;
};

/* ------------------------------------------------------------------------
 * Event ring buffer record (scheduler -> observers)
 * ------------------------------------------------------------------------ */

struct morpheus_event {
	__u64 ts_ns;	/* bpf_ktime_get_ns() */
	__u32 kind;	/* enum morpheus_event_kind */
	__u32 tgid;	/* process (init PID namespace) */
	__u32 tid;	/* thread (init PID namespace) */
	__u32 slot;	/* slot in the process's SCB array */
	__u64 hint_seq; /* the hint this event refers to */
	__u64 value;	/* kind-specific: response ns, policy, state */
};

/* ------------------------------------------------------------------------
 * Registration protocol (SOCK_SEQPACKET on the loader's Unix socket)
 *
 * Every message starts with struct morpheus_msg_hdr; len is the whole
 * message. The peer's identity always comes from the kernel (SO_PEERCRED
 * and a pidfd), never from a field of a message.
 *
 *   client                               loader
 *   HELLO {abi_version, runtime_kind} -> 
 *                                     <- HELLO_REPLY {status, limits}
 *                                        + SCM_RIGHTS: the process's SCB map
 *   REGISTER {flags} + SCM_RIGHTS: pidfd of the calling thread ->
 *                                     <- REGISTER_REPLY {status, slot, generation}
 *   UNREGISTER {slot, generation}     ->
 *                                     <- UNREGISTER_REPLY {status}
 *   (any message the loader cannot accept) <- ERROR {status}
 * ------------------------------------------------------------------------ */

enum morpheus_msg_type {
	MORPHEUS_MSG_HELLO = 1,
	MORPHEUS_MSG_HELLO_REPLY = 2,
	MORPHEUS_MSG_REGISTER = 3,
	MORPHEUS_MSG_REGISTER_REPLY = 4,
	MORPHEUS_MSG_UNREGISTER = 5,
	MORPHEUS_MSG_UNREGISTER_REPLY = 6,
	MORPHEUS_MSG_ERROR = 7,
};

/* Largest message either side sends; anything longer is malformed. */
#define MORPHEUS_MSG_MAX_SIZE 64u

struct morpheus_msg_hdr {
	__u32 magic;	   /* MORPHEUS_ABI_MAGIC */
	__u16 abi_version; /* MORPHEUS_ABI_VERSION */
	__u16 type;	   /* enum morpheus_msg_type */
	__u32 len;	   /* bytes, header included */
	__u32 __pad;
};

struct morpheus_msg_hello {
	struct morpheus_msg_hdr hdr;
	__u32 runtime_kind; /* enum morpheus_runtime_kind */
	__u32 __pad;
};

struct morpheus_msg_hello_reply {
	struct morpheus_msg_hdr hdr;
	__u32 status;	   /* enum morpheus_status */
	__u32 max_workers; /* slots in the SCB array sent with this reply */
	__u32 scb_size;	   /* sizeof(struct morpheus_scb) */
	__u32 flags;	   /* MORPHEUS_SCBK_* that apply to every worker */
	__u64 grace_ns;	   /* the scheduler's grace period */
};

struct morpheus_msg_register {
	struct morpheus_msg_hdr hdr;
	__u32 flags;	    /* MORPHEUS_WORKER_* */
	__u32 runtime_kind; /* enum morpheus_runtime_kind */
};

struct morpheus_msg_register_reply {
	struct morpheus_msg_hdr hdr;
	__u32 status; /* enum morpheus_status */
	__u32 slot;   /* index into the SCB array */
	__u64 generation;
};

struct morpheus_msg_unregister {
	struct morpheus_msg_hdr hdr;
	__u32 slot;
	__u32 __pad;
	__u64 generation;
};

struct morpheus_msg_status {
	struct morpheus_msg_hdr hdr;
	__u32 status; /* enum morpheus_status */
	__u32 __pad;
};

/* ------------------------------------------------------------------------
 * Layout guarantees, checked by every C compiler that includes this file
 * (the Rust side checks the same through the generated layout tests).
 * ------------------------------------------------------------------------ */

_Static_assert(sizeof(struct morpheus_scb_kernel) == 64, "kernel line is one cache line");
_Static_assert(sizeof(struct morpheus_scb_user) == 64, "user line is one cache line");
_Static_assert(sizeof(struct morpheus_scb) == 128, "SCB is two cache lines");
_Static_assert(__builtin_offsetof(struct morpheus_scb, u) == MORPHEUS_CACHELINE_SIZE,
	       "user-written fields start on their own cache line");
_Static_assert(sizeof(struct morpheus_event) == 40, "event record size");
_Static_assert(sizeof(struct morpheus_msg_hello_reply) <= MORPHEUS_MSG_MAX_SIZE, "msg size");
_Static_assert(sizeof(struct morpheus_msg_register_reply) <= MORPHEUS_MSG_MAX_SIZE, "msg size");
_Static_assert(sizeof(struct morpheus_msg_unregister) <= MORPHEUS_MSG_MAX_SIZE, "msg size");

#endif /* __MORPHEUS_ABI_H */
