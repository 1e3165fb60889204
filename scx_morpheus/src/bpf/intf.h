/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Types and constants private to scx_morpheus and its loader. Everything
 * shared with the runtimes lives in morpheus-common's abi.h, included here.
 */
#ifndef __MORPHEUS_INTF_H
#define __MORPHEUS_INTF_H

#include <morpheus/abi.h>

enum morpheus_sched_consts {
	/*
	 * Dispatch queues: one per CPU (id = the CPU) for tasks that can run
	 * only there or that preempt its current task, and one shared
	 * vtime-ordered queue (this id) for everything else.
	 */
	MORPHEUS_SHARED_DSQ = 1 << 16,
	/* log2(microseconds) buckets of the hint delay and response histograms. */
	MORPHEUS_RESP_BUCKETS = 24,
	/* Queued tasks looked at to decide whether any waits for a CPU. */
	MORPHEUS_WAITER_SCAN = 8,
	/* CPUs looked at for a wake-up preemption victim or a task to steal. */
	MORPHEUS_CPU_SCAN = 64,
	/*
	 * Others must have waited this long behind a worker past its slice
	 * before it is hinted (ns): a task about to find a CPU elsewhere is
	 * no reason to yield. Wake-up preemption hints at once.
	 */
	MORPHEUS_WAIT_BLIP_NS = 500 * 1000,
	/* Shortest slice a task is given, whatever its weight (ns). */
	MORPHEUS_SLICE_FLOOR_NS = 250 * 1000,
	/*
	 * Shortest slice a worker keeps its CPU for until the next decision
	 * (ns): a decision whose time has already come is made again right
	 * away, after this much, not in a loop of zero slices.
	 */
	MORPHEUS_KEEP_FLOOR_NS = 10 * 1000,
	/*
	 * A runnable task's vtime is kept within this many maximum slices
	 * ahead of the queue's, shared among the tasks queued for its CPU
	 * (shared_allowance()): however heavy one charge (a low weight, a long
	 * overrun, a throttle), its wait for a CPU stays bounded.
	 */
	MORPHEUS_MAX_AHEAD_SLICES = 8,
	/*
	 * The kernel's ENQUEUE_RESTORE, which sched_ext passes to ops.enqueue
	 * in the low bits as it does ENQUEUE_WAKEUP (SCX_ENQ_WAKEUP) but does
	 * not name: the task was only taken off for a change of its
	 * properties (affinity, priority, policy) and is put back.
	 */
	MORPHEUS_ENQ_RESTORE = 0x02,
	/* Escalations within the window after which HYBRID also throttles. */
	MORPHEUS_HYBRID_REPEAT = 3,
	/* Throttled workloads are charged this many times their run time. */
	MORPHEUS_THROTTLE_FACTOR = 4,
	/* CPUs tracked for pending idle kicks (ids at or above are not tracked). */
	MORPHEUS_MAX_CPUS = 1024,
	/* Throttle map capacity (cgroups or processes penalised at once). */
	MORPHEUS_MAX_THROTTLED = 1024,
	/* Event ring buffer size in bytes. */
	MORPHEUS_EVENT_RING_SIZE = 256 * 1024,
	/*
	 * The loader drains the event ring this often (BPF never wakes it):
	 * its 256 KiB hold over 5000 events, far more than 100 ms of hints.
	 */
	MORPHEUS_EVENT_DRAIN_MS = 100,
	/* Loader defaults (milliseconds) for the scheduler-only tunables. */
	MORPHEUS_DEFAULT_MAX_OVERRUN_MS = 200,
	/*
	 * A worker whose CPU a woken task is entitled to is hinted and has
	 * this long to yield at a checkpoint before it is preempted (us).
	 */
	MORPHEUS_DEFAULT_YIELD_WINDOW_US = 500,
	/*
	 * Run-to-parity granularity at one CPU (us): a woken task does not
	 * preempt a plain task that has run less than the granularity unless
	 * it lags that task by as much in vtime; it waits for that CPU at
	 * most this long. It bounds the preemptions a CPU takes when wake-ups
	 * come in bursts (pipes, message passing). The loader's default
	 * scales it as EEVDF scales its base slice: by 1 + log2(CPUs), CPUs
	 * counted up to 8 (1.5 ms on 2 CPUs, 3 ms from 8).
	 */
	MORPHEUS_WAKEUP_GRANULARITY_BASE_US = 750,
	MORPHEUS_WAKEUP_GRANULARITY_MAX_CPUS = 8,
	MORPHEUS_DEFAULT_THROTTLE_MS = 1000,
	MORPHEUS_HYBRID_WINDOW_MS = 10000,
	NSEC_PER_USEC = 1000,
	NSEC_PER_MSEC = 1000 * 1000,
};

/* The bits of an SCB's signal word the kernel may set (abi.h). */
#define MORPHEUS_SIGNAL_KERNEL_BITS ((1ull << 62) - 1)
/* epoll instances whose process is remembered for catch-ups (io.bpf.c). */
#define MORPHEUS_MAX_EPOLL_OWNERS 4096

/* worker_ctx.flags (besides MORPHEUS_WORKER_ESCAPABLE) */
#define MORPHEUS_CTX_HINT_EXPIRED (1u << 8) /* outstanding hint passed its deadline */
#define MORPHEUS_CTX_NEW_ROUND (1u << 9)    /* preempted at a cap: its next run starts a round */
#define MORPHEUS_CTX_STARTED (1u << 10)	    /* has run since it registered */
/* taken off its CPU while runnable: its next run may continue this one */
#define MORPHEUS_CTX_PREEMPTED (1u << 11)

/*
 * Leases: one 64-bit word per registration in the `leases` array, which
 * only the loader (mmap) and BPF can reach: the registration's generation
 * in the high 32 bits, a MORPHEUS_LEASE_* state in the low ones. Whoever
 * moves a lease out of MORPHEUS_LEASE_HINTED (by an atomic exchange or
 * compare-and-swap) settles the worker's outstanding hint and counts it,
 * exactly once: BPF as answered or expired (or dropped, when the thread
 * exits), the loader as dropped when it ends the registration (exchanging
 * in MORPHEUS_LEASE_ENDED). BPF acts on a worker only while its lease
 * holds its registration's generation and is not ended, so a registration
 * the loader ended is never touched again, whenever its thread runs or
 * exits, even once its lease and SCB slot serve another worker.
 */
enum morpheus_lease_state {
	MORPHEUS_LEASE_IDLE = 0,   /* live, no hint outstanding */
	MORPHEUS_LEASE_HINTED = 1, /* live, a hint outstanding (issued, not yet settled) */
	MORPHEUS_LEASE_ENDED = 2,  /* the loader ended the registration */
};

/*
 * Per-thread registration, in task-local storage keyed by the thread's
 * pidfd. The loader writes the identity fields (tgid .. lease_gen) and
 * zeroes the rest; the BPF program owns the rest.
 */
struct morpheus_worker_ctx {
	/* written by the loader at registration */
	__u32 tgid;  /* the registering process (init PID namespace) */
	__u32 slot;  /* index in the process's SCB array */
	__u32 flags; /* MORPHEUS_WORKER_ESCAPABLE, MORPHEUS_CTX_* */
	__u32 runtime_kind;
	__u32 lease;	 /* index in the leases array */
	__u32 lease_gen; /* the generation the lease holds for this registration */
	/* owned by BPF */
	/* the last hint's sequence (the SCB's hint_seq is a copy BPF writes;
	 * the client may change it) */
	__u64 last_hint_seq;
	__u64 run_start; /* when the thread last started running */
	/* CPU time since it last blocked or answered, before the current run
	 * (kept across involuntary preemptions) */
	__u64 ran_acc;
	__u64 hint_seq; /* outstanding hint, 0 when none */
	__u64 hint_ts;	/* when it was issued */
	/* hint_ts + grace, plus any time spent waiting for a CPU since */
	__u64 hint_deadline;
	__u64 stop_ts;		  /* when it last stopped running */
	__u64 crit_start;	  /* first decision that saw it in a critical section */
	__u64 crit_seen;	  /* last decision (or tick) that saw it in one */
	__u64 calm_ts;		  /* last decision that saw nobody waiting for its CPU */
	__u64 escalation_ts;	  /* last escalation */
	__u32 escalations_recent; /* escalations within the hybrid window */
	__u32 stop_cpu;		  /* the CPU it last stopped running on */
	__u64 contended_since;	  /* first decision of the current stretch with waiters */
	/* its CPU's run_id when it last stopped running */
	__u64 stop_run_id;
	/* when its current turn began: its run start, unless the run only
	 * continues one that a task outside this scheduler interrupted */
	__u64 turn_start;
};

/* Throttle map value: a cgroup (or, for the root cgroup, a process) serving a penalty. */
/*
 * Whom a throttle penalises: the offender's user within its cgroup (or
 * within its process, in the root cgroup). Other users' tasks in the same
 * cgroup are not punished for it.
 */
struct morpheus_throttle_key {
	__u64 group; /* cgroup id, or tgid | 1 << 63 in the root cgroup */
	__u32 uid;   /* the offender's real user id */
	__u32 __pad;
};

struct morpheus_throttle {
	__u64 until_ns; /* bpf_ktime_get_ns() when the penalty ends */
};

#endif /* __MORPHEUS_INTF_H */
