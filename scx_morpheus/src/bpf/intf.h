/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Types and constants private to scx_morpheus and its loader. Everything
 * shared with the runtimes lives in morpheus-common's abi.h, included here.
 */
#ifndef __MORPHEUS_INTF_H
#define __MORPHEUS_INTF_H

#include "../../../morpheus-common/include/morpheus/abi.h"

enum morpheus_sched_consts {
	/* The global vtime-ordered queue every non-direct task goes through. */
	MORPHEUS_SHARED_DSQ = 0,
	/* log2(microseconds) buckets of the hint response-time histogram. */
	MORPHEUS_RESP_BUCKETS = 24,
	/* Escalations within the window after which HYBRID also throttles. */
	MORPHEUS_HYBRID_REPEAT = 3,
	/* Throttled workloads are charged this many times their run time. */
	MORPHEUS_THROTTLE_FACTOR = 4,
	/* Consecutive ticks with waiters before a hint: ignores blips. */
	MORPHEUS_CONTENDED_TICKS = 2,
	/* CPUs tracked for pending idle kicks (ids at or above are not tracked). */
	MORPHEUS_MAX_CPUS = 1024,
	/* Throttle map capacity (cgroups or processes penalised at once). */
	MORPHEUS_MAX_THROTTLED = 1024,
	/* Event ring buffer size in bytes. */
	MORPHEUS_EVENT_RING_SIZE = 256 * 1024,
	/* Loader defaults (milliseconds) for the scheduler-only tunables. */
	MORPHEUS_DEFAULT_MAX_OVERRUN_MS = 200,
	MORPHEUS_DEFAULT_THROTTLE_MS = 1000,
	MORPHEUS_HYBRID_WINDOW_MS = 10000,
	NSEC_PER_USEC = 1000,
	NSEC_PER_MSEC = 1000 * 1000,
};

/* worker_ctx.flags (besides MORPHEUS_WORKER_ESCAPABLE) */
#define MORPHEUS_CTX_HINT_EXPIRED (1u << 8) /* outstanding hint passed its deadline */

/*
 * Per-thread registration, in task-local storage keyed by the thread's
 * pidfd. The loader writes the identity fields (tgid .. flags) and zeroes the
 * rest; the BPF program owns the rest.
 */
struct morpheus_worker_ctx {
	/* written by the loader at registration */
	__u32 tgid;	  /* the registering process (init PID namespace) */
	__u32 slot;	  /* index in the process's SCB array */
	__u64 generation; /* must equal the SCB's, or the SCB is stale */
	__u32 flags;	  /* MORPHEUS_WORKER_ESCAPABLE, MORPHEUS_CTX_* */
	__u32 runtime_kind;
	/* owned by BPF */
	__u64 run_start;      /* when the thread last started running */
	__u64 ran_acc;	      /* CPU time since it last blocked or answered,
			       * before the current run (kept across
			       * involuntary preemptions) */
	__u64 hint_seq;	      /* outstanding hint, 0 when none */
	__u64 hint_ts;	      /* when it was issued */
	__u64 hint_deadline;  /* hint_ts + grace, plus any time spent waiting
			       * for a CPU since */
	__u64 stop_ts;	      /* when it last stopped running */
	__u64 crit_start;     /* first tick that saw it in a critical section */
	__u64 crit_seen;      /* last tick that saw it in a critical section */
	__u64 calm_ts;	      /* last tick that saw nobody waiting for its CPU */
	__u64 escalation_ts;  /* last escalation */
	__u32 escalations_recent; /* escalations within the hybrid window */
	__u32 contended_ticks;	  /* consecutive ticks that saw waiters */
};

/* Throttle map value: a cgroup (or, for the root cgroup, a process) serving a penalty. */
struct morpheus_throttle {
	__u64 until_ns; /* bpf_ktime_get_ns() when the penalty ends */
};

#endif /* __MORPHEUS_INTF_H */
