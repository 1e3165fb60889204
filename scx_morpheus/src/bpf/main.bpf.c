/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * scx_morpheus: a sched_ext scheduler that asks registered async-runtime
 * workers to yield at their own safe points.
 *
 * Every task: weighted virtual time (vtime) and a virtual deadline. A task's
 * vtime advances by the CPU time it used scaled by the inverse of its
 * weight, so CPU time is shared in proportion to weight. A task that slept
 * is placed at most one slice behind the queues' vtime (it cannot bank
 * credit); one that stayed runnable keeps its lag (a worker that yields at
 * a hint gives up its turn, not its share); and a runnable one is kept at
 * most MORPHEUS_MAX_AHEAD_SLICES maximum slices ahead, shared among the
 * tasks it would wait for (no charge, however heavy, makes it wait
 * unboundedly, however many crowd its CPU). Its
 * deadline is its vtime plus its typical request (its average burst of CPU
 * use, at most a slice): among tasks equally entitled, the one that asks
 * for less runs first. Slices are scaled by weight too.
 *
 * Queues, ordered by deadline: one dispatch queue per CPU, for tasks that
 * can run only there or that won that CPU by wake-up preemption, and one
 * shared queue for the rest. A CPU runs the earlier of its own queue's head
 * and the shared queue's, then steals from other CPUs' queues. From the
 * shared queue it takes, among the tasks about even with the head (within
 * the wake-up granularity), one that last ran on it, so that tasks
 * preempted or yielding resume where they ran rather than on whichever
 * CPU frees first.
 *
 * Slices end on time: the CPU's timer (cpu.bpf.c) preempts a task that
 * typically runs its whole slice at the slice's end if others wait, and a
 * task that starts waiting kicks a CPU whose task is already past its
 * slice; the tick (late by up to a tick period, far more under emulation)
 * only refills the slice of a task that nobody waits for. Tasks that
 * typically block early cost no timer (a timer per context switch costs
 * switch-heavy loads more than it gains).
 *
 * Wake-up preemption (preempt.bpf.c): a task that wakes when no CPU is idle
 * takes a CPU it is entitled to (EEVDF-like: it is not ahead of that CPU's
 * task in vtime and its virtual deadline is earlier), the one whose task is
 * furthest ahead, a plain task's before a registered worker's. A plain task
 * keeps its lag and is preempted at once if it has run
 * wakeup_granularity_ns or is that far ahead of the woken task in vtime,
 * else when it is (EEVDF's run-to-parity and CFS's wake-up granularity: a
 * task that slept preempts at once, tasks about even take turns at most
 * once per granularity, so a burst of wake-ups costs a CPU few switches). A
 * registered worker is asked only when no plain task can give way: it is
 * hinted first and has yield_window_ns to yield at a checkpoint; inside a
 * critical section it keeps the CPU until others have waited
 * max_critical_ns.
 *
 * Registered workers (worker.bpf.c): every decision about a worker is made
 * on its own CPU, in ops.dispatch, where its critical-section flag is read
 * in its own program order. A decision is due when its slice ends, when a
 * task starts waiting behind it, when a woken task wants its CPU, or at a
 * deadline (yield window, grace, caps), each brought on time by a per-CPU
 * BPF timer (cpu.bpf.c) that preempt-kicks the CPU, never by the tick. When
 * a worker has used its slice while others wait it gets a hint in its
 * shared control block (SCB) and grace_ns of CPU time to answer; it is
 * never preempted inside a critical section before others have waited
 * max_critical_ns for its CPU, and never runs past its slice by more than
 * max_overrun_ns outside critical sections while others wait (each shared
 * among the waiters: a crowd of workers that never checkpoint, or never
 * leave a critical section, takes about that much per round, not each).
 * With --enforce, an escapable worker that ignored a hint past its
 * deadline is escalated (kick, throttle or both).
 *
 * Catch-ups (io.bpf.c): when I/O becomes ready for a process whose workers
 * are all busy (epoll's wake-up callback finds none waiting), the worker of
 * it running on some CPU, or the first to run, is asked in its SCB to serve
 * its ready tasks at its next checkpoint, keeping its CPU: a request is
 * noticed at the next checkpoint, not at the next hint or budget yield.
 */
#include <scx/common.bpf.h>
#include "intf.h"

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

/* Tunables, set by the loader before load. */
const volatile u64 slice_ns = MORPHEUS_DEFAULT_SLICE_NS; /* at one waiter per CPU */
const volatile u64 slice_min_ns = MORPHEUS_DEFAULT_SLICE_MIN_NS;
const volatile u64 slice_max_ns = MORPHEUS_DEFAULT_SLICE_MAX_NS;
const volatile u64 grace_ns = MORPHEUS_DEFAULT_GRACE_NS;
const volatile u64 max_critical_ns = MORPHEUS_DEFAULT_MAX_CRITICAL_NS;
const volatile u64 max_overrun_ns = (u64)MORPHEUS_DEFAULT_MAX_OVERRUN_MS * NSEC_PER_MSEC;
const volatile u64 yield_window_ns = (u64)MORPHEUS_DEFAULT_YIELD_WINDOW_US * NSEC_PER_USEC;
const volatile u64 wakeup_granularity_ns = (u64)MORPHEUS_WAKEUP_GRANULARITY_BASE_US * NSEC_PER_USEC;
const volatile u64 throttle_ns = (u64)MORPHEUS_DEFAULT_THROTTLE_MS * NSEC_PER_MSEC;
const volatile u64 hybrid_window_ns = (u64)MORPHEUS_HYBRID_WINDOW_MS * NSEC_PER_MSEC;
const volatile u32 nr_cpus = 1;
const volatile bool enforce;
const volatile u32 escalation_policy = MORPHEUS_ESCALATION_THREAD_KICK;

/*
 * Test hook: when the loader sets this non-zero (--inject-error-after-ms),
 * the next tick ejects the scheduler through scx_bpf_error(), exercising the
 * kernel's fallback path and the loader's exit report.
 */
volatile u32 inject_error;

/*
 * Counters and gauges read by the loader (stats.rs): a counter here and the
 * stats field it feeds have the same name. Escalations are split by policy
 * (escalations_kick ...), and the adaptive slice, the pressure and the
 * histograms are converted (slice_us, pressure, the log2(us) histograms
 * to seconds).
 */
u64 nr_direct_dispatches;    /* wakeups placed straight on an idle CPU */
u64 nr_kthread_dispatches;   /* per-CPU kthreads run at once */
u64 nr_shared_enqueues;	     /* tasks queued on the shared vtime queue */
u64 nr_shared_dispatches;    /* tasks moved from it to a CPU */
u64 nr_local_enqueues;	     /* tasks queued on one CPU's own queue */
u64 nr_local_dispatches;     /* tasks a CPU took from its own queue */
u64 nr_steals;		     /* tasks a CPU took from another CPU's queue */
u64 nr_idle_kicks;	     /* idle CPUs woken for newly queued work */
u64 nr_wakeup_preempts;	     /* woken tasks that preempted a plain task at once */
u64 nr_wakeup_hints;	     /* woken tasks that asked a worker to yield first */
u64 nr_window_preempts;	     /* workers preempted when their yield window ended */
u64 nr_slice_preempts;	     /* plain tasks preempted at slice end for waiters, not at a tick */
u64 nr_timer_kicks;	     /* decision timers that fired for a live run */
u64 nr_ticks;		     /* scheduler ticks observed */
u64 nr_queued_max;	     /* deepest queue (all queues) seen */
u64 hints_sent;		     /* hints issued */
u64 hints_answered;	     /* acknowledged, or the worker yielded/blocked */
u64 hints_answered_in_grace; /* ... of which before the deadline */
u64 hints_expired;	     /* deadline passed without an answer */
u64 hints_dropped;	     /* the worker exited or left before answering */
u64 escalations[MORPHEUS_ESCALATION_POLICY_NR]; /* by policy applied */
u64 critical_cap_violations;			/* critical sections preempted at the cap */
u64 overrun_cap_violations;			/* workers preempted at the overrun cap */
u64 ring_drops;					/* events lost to a full ring buffer */
u64 throttles_active;				/* throttles currently active */
u64 throttles;					/* throttles applied */
u64 workers_started;				/* REGISTERED -> RUNNING transitions */
u64 workers_exited;				/* threads that exited while registered */
u64 catch_ups;					/* catch-ups signalled to workers (io.bpf.c) */
u64 catch_ups_deferred;			       /* ... due while none of the process's workers ran */
u64 cur_slice_ns;			       /* the adaptive slice now (weight 100) */
u64 cur_pressure;			       /* MORPHEUS_PRESSURE_ONE fixed point */
u64 hint_response_hist[MORPHEUS_RESP_BUCKETS]; /* hint issued -> answered, log2(us) */
u64 hint_delay_hist[MORPHEUS_RESP_BUCKETS];    /* hint due -> issued, log2(us) */
u64 timer_late_hist[MORPHEUS_RESP_BUCKETS];    /* decision timer due -> fired, log2(us) */
u64 catch_up_delay_hist[MORPHEUS_RESP_BUCKETS]; /* deferred catch-up due -> a worker runs */

/* The vtime of the most recently started task: the "now" of the queues. */
static u64 vtime_now;
/* When the load (adaptive slice, pressure) was last recomputed. */
static u64 load_ts;

/*
 * Idle CPUs claimed and kicked for newly queued work that have not started
 * running it yet. A queued task such a CPU is coming for is not waiting for
 * anyone else's CPU. (Normally a matter of microseconds; under emulation a
 * kicked virtual CPU can take tens of milliseconds to run.)
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MORPHEUS_MAX_CPUS);
	__type(key, u32);
	__type(value, u32);
} kick_pending SEC(".maps");
static u64 nr_kicks_pending;

/*
 * Per-task state every task has. Its vtime lives here, not in
 * p->scx.dsq_vtime: the queues are ordered by virtual deadline.
 */
struct task_ctx {
	u64 vtime;	/* CPU time used, scaled by 100 / weight */
	u64 exec_start; /* p->se.sum_exec_runtime at ops.running */
	u64 burst;	/* CPU time used since it last woke up */
	u64 avg_burst;	/* moving average of its bursts: its typical request */
	bool running;	/* exec_start belongs to a run that has not stopped */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

/*
 * What each CPU runs, as other CPUs need to know it (wake-up preemption
 * victims, hint requests), and its decision timer. Written by the CPU itself
 * except want_ts and wait_ts, which wakers set (plain 64-bit stores).
 */
struct cpu_ctx {
	struct bpf_timer timer;
	u64 run_id;	  /* bumped each time a task starts running here */
	u64 timer_run_id; /* the run the armed timer is for */
	u64 timer_at;	  /* when it fires */
	u64 started;	  /* when the current task started */
	u64 vtime;	  /* its vtime then */
	u64 deadline;	  /* its virtual deadline */
	u64 slice_end;	  /* when its slice is used up */
	u64 want_ts;	  /* a woken task is entitled to this CPU since then */
	u64 wait_ts;	  /* a task began waiting behind it (past its slice) then */
	u32 pid;	  /* the current task, 0 when none */
	u32 weight;	  /* its weight */
	bool worker;	  /* it is a registered worker ... */
	bool hinted;	  /* ... with a hint outstanding */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MORPHEUS_MAX_CPUS);
	__type(key, u32);
	__type(value, struct cpu_ctx);
} cpu_ctxs SEC(".maps");

/* One mmapable SCB array per registered process, created by the loader. */
struct scb_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MORPHEUS_MAX_WORKERS_PER_PROCESS);
	__type(key, u32);
	__type(value, struct morpheus_scb);
} scb_array_template SEC(".maps");

/* tgid -> that process's SCB array. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, MORPHEUS_MAX_PROCESSES);
	__type(key, u32);
	__array(values, struct scb_array);
} scb_maps SEC(".maps");

/* Registration of a worker thread, written by the loader through a pidfd. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct morpheus_worker_ctx);
} worker_ctxs SEC(".maps");

/* Registration leases (intf.h), mapped by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MORPHEUS_MAX_WORKERS);
	__type(key, u32);
	__type(value, u64);
} leases SEC(".maps");

/* Offender (its user in its cgroup, see throttle_key()) -> penalty window. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MORPHEUS_MAX_THROTTLED);
	__type(key, struct morpheus_throttle_key);
	__type(value, struct morpheus_throttle);
} throttled SEC(".maps");

/* Hint events for observers; a full ring counts a drop, never blocks. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MORPHEUS_EVENT_RING_SIZE);
} events SEC(".maps");

/* Counts one event in a BPF counter the loader reads (stats.rs). */
static __always_inline void stat_inc(u64 *counter)
{
	__sync_fetch_and_add(counter, 1);
}

/*
 * Counts @ns in a log2(us) histogram: bucket floor(log2(us)), the last one
 * for everything from 2^(MORPHEUS_RESP_BUCKETS - 1) us up.
 */
static void hist_add(u64 *hist, u64 ns)
{
	u64 us = ns / NSEC_PER_USEC;
	bool found = false;
	u32 b = 0;

	/*
	 * bpf_for leaves @b at the last value it iterated: a duration past
	 * every bucket but the last is told by the loop not breaking. (A
	 * counter of our own would be a distinct value in every iteration,
	 * which the verifier cannot converge on.)
	 */
	bpf_for(b, 0, MORPHEUS_RESP_BUCKETS - 1) {
		if (us < 2) {
			found = true;
			break;
		}
		us >>= 1;
	}
	if (!found)
		b = MORPHEUS_RESP_BUCKETS - 1;
	if (b < MORPHEUS_RESP_BUCKETS)
		__sync_fetch_and_add(&hist[b], 1);
}

/* The smaller of @a and @b. */
static __always_inline u64 min_u64(u64 a, u64 b)
{
	return a < b ? a : b;
}

/* The larger of @a and @b. */
static __always_inline u64 max_u64(u64 a, u64 b)
{
	return a > b ? a : b;
}

/* a is earlier than b in vtime (wrap-safe). */
static __always_inline bool vtime_before(u64 a, u64 b)
{
	return (s64)(a - b) < 0;
}

/* @ns of CPU time in vtime for a task of @weight (100 = nice 0). */
static __always_inline u64 scale_by_weight(u64 ns, u32 weight)
{
	return ns * 100 / (weight ?: 1);
}

/*
 * The slice @p gets: the adaptive slice scaled by its weight, so that a
 * heavy task runs longer at a time and a light one is not charged many
 * times its share for one run.
 */
static u64 task_slice(const struct task_struct *p)
{
	u64 slice = (cur_slice_ns ?: slice_ns) * p->scx.weight / 100;

	if (slice < MORPHEUS_SLICE_FLOOR_NS)
		slice = MORPHEUS_SLICE_FLOOR_NS;
	return min_u64(slice, slice_max_ns);
}

/* @p's scheduling state (created in ops.init_task), or NULL. */
static __always_inline struct task_ctx *task_ctx(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctxs, p, 0, 0);
}

/*
 * The virtual deadline of @p: its vtime plus its typical request (its
 * average burst of CPU use, at most @slice) in vtime. Among tasks equally
 * entitled, the one that asks for less runs first.
 */
static u64 task_deadline(const struct task_struct *p, const struct task_ctx *tctx, u64 slice)
{
	u64 req = tctx->avg_burst ? min_u64(tctx->avg_burst, slice) : slice;

	return tctx->vtime + scale_by_weight(req, p->scx.weight);
}

#include "cpu.bpf.c"
#include "hint.bpf.c"
#include "io.bpf.c"
#include "worker.bpf.c"
#include "preempt.bpf.c"

/*
 * A task wakes: the kernel's default choice of CPU (its previous one if
 * idle, else an idle one nearby). Found idle, the task is inserted on that
 * CPU's local queue right away; else ops.enqueue queues it.
 */
s32 BPF_STRUCT_OPS(morpheus_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu;

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (is_idle) {
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, task_slice(p), 0);
		stat_inc(&nr_direct_dispatches);
	}
	return cpu;
}

/*
 * A task became runnable without an idle CPU found for it in select_cpu (or
 * was preempted, or yielded). Per-CPU kthreads run at once; everyone else is
 * queued by vtime, on the CPU it wins by wake-up preemption or is pinned to,
 * else on the shared queue.
 */
void BPF_STRUCT_OPS(morpheus_enqueue, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *tctx;
	u64 slice = task_slice(p);
	u64 now = bpf_ktime_get_ns();
	u64 deadline;
	s32 cpu, target;

	/*
	 * Per-CPU kernel threads (kworkers, ksoftirqd) do short work that
	 * others wait for and can run nowhere else: run them right away.
	 */
	if ((p->flags & PF_KTHREAD) && p->nr_cpus_allowed == 1) {
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice, enq_flags | SCX_ENQ_PREEMPT);
		stat_inc(&nr_kthread_dispatches);
		return;
	}

	/*
	 * A running task put back after a change of its properties (made by
	 * another thread, maybe on another CPU) goes on running with what is
	 * left of its slice, none if it was being preempted: a slice refilled
	 * at every change would let a task whose properties keep changing
	 * run as long as it likes.
	 */
	if ((enq_flags & MORPHEUS_ENQ_RESTORE) && scx_bpf_task_running(p)) {
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, 0, enq_flags);
		return;
	}

	tctx = task_ctx(p);
	if (!tctx) {
		scx_bpf_dsq_insert_vtime(p, MORPHEUS_SHARED_DSQ, slice, vtime_now, enq_flags);
		stat_inc(&nr_shared_enqueues);
		return;
	}
	/*
	 * A task that slept may lag the queue by at most one slice: sleeping
	 * banks no credit. A task that stayed runnable (preempted, or a
	 * worker that yielded at a hint) keeps its lag: it gave up its turn,
	 * not its share.
	 */
	if ((enq_flags & SCX_ENQ_WAKEUP) && vtime_before(tctx->vtime, vtime_now - slice))
		tctx->vtime = vtime_now - slice;
	deadline = task_deadline(p, tctx, slice);

	/* Work queued while a CPU sleeps must not wait for that CPU's tick. */
	cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	if (cpu >= 0) {
		target = p->nr_cpus_allowed == 1 ? cpu : -1;
		kick_claim(cpu);
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		stat_inc(&nr_idle_kicks);
	} else {
		target = preempt_target(p, tctx->vtime, deadline, enq_flags, now);
		if (target < 0 && p->nr_cpus_allowed == 1)
			target = scx_bpf_task_cpu(p);
	}

	if (target >= 0) {
		scx_bpf_dsq_insert_vtime(p, target, slice, deadline, enq_flags);
		stat_inc(&nr_local_enqueues);
	} else {
		scx_bpf_dsq_insert_vtime(p, MORPHEUS_SHARED_DSQ, slice, deadline, enq_flags);
		stat_inc(&nr_shared_enqueues);
	}
}

/*
 * @cpu needs work. A registered worker that is still runnable (@prev) is
 * decided on first: it may keep the CPU (a critical section, nobody
 * waiting, its yield window still open, or within its overrun allowance)
 * or give way. Otherwise the CPU takes the next task; if there is none,
 * @prev keeps running with a fresh slice.
 */
void BPF_STRUCT_OPS(morpheus_dispatch, s32 cpu, struct task_struct *prev)
{
	struct morpheus_worker_ctx *wc = NULL;
	struct cpu_ctx *cctx = cpu_ctx(cpu);
	u32 verdict = WORKER_KEEP;
	u64 now = bpf_ktime_get_ns();
	u64 until = 0;
	bool queued = prev && (prev->scx.flags & SCX_TASK_QUEUED);

	kick_served(cpu);

	if (queued && cctx)
		wc = worker_of(prev);
	if (wc) {
		verdict = worker_decide(prev, wc, cctx, cpu, now, &until);
		if (verdict == WORKER_KEEP) {
			worker_keep(prev, cctx, cpu, now, until);
			return;
		}
	}

	if (consume(cpu, prev ? prev->pid : 0)) {
		if (wc)
			worker_gave_way(wc, verdict);
		return;
	}

	/* Nothing else to run here: @prev goes on with a fresh slice. */
	if (queued) {
		u64 slice = task_slice(prev);

		scx_bpf_task_set_slice(prev, slice);
		if (wc) {
			worker_keep(prev, cctx, cpu, now, now + slice);
		} else if (cctx && cctx->pid == prev->pid) {
			cctx->slice_end = now + slice;
			cctx->wait_ts = 0;
			cpu_timer_arm(cctx, cctx->slice_end, now);
		}
	}
}

/* The charge of @p's current run starts now. */
static void charge_start(struct task_struct *p, struct task_ctx *tctx)
{
	tctx->exec_start = p->se.sum_exec_runtime;
	tctx->running = true;
}

/*
 * The CPU time @p used in the run that is stopping, which its vtime is
 * charged. Every task pays for what it used, workers and others alike
 * (a slice nobody waited for ends only at a tick, and a preemption lands
 * a little after its kick, so the slice given says little). Kept per
 * task, so it is right whichever CPU runs the callbacks. A task already
 * running when the scheduler attached has no start: it pays the slice it
 * used.
 */
static u64 charge_end(struct task_struct *p, struct task_ctx *tctx)
{
	u64 exec = p->se.sum_exec_runtime;
	u64 slice = task_slice(p);

	if (!tctx || !tctx->running || exec < tctx->exec_start)
		return p->scx.slice < slice ? slice - p->scx.slice : 0;
	tctx->running = false;
	return exec - tctx->exec_start;
}

/*
 * Whether ops.running or ops.stopping for @p runs on another CPU than
 * @p's: another thread changed @p's properties (affinity, priority,
 * policy) while it ran, and the kernel took it off and put it back on the
 * caller's CPU. To @p's CPU that is no new run: only the charge is
 * settled, its record, timer and worker state stay as they are.
 */
static __always_inline bool called_remotely(const struct task_struct *p)
{
	return bpf_get_smp_processor_id() != scx_bpf_task_cpu(p);
}

/*
 * @p starts running on its CPU: its charge starts, and the CPU's record
 * (cpu_ctx) describes the new run, with the decision timer armed for it.
 */
void BPF_STRUCT_OPS(morpheus_running, struct task_struct *p)
{
	struct morpheus_worker_ctx *wc;
	s32 cpu = scx_bpf_task_cpu(p);
	struct cpu_ctx *cctx = cpu_ctx(cpu);
	struct task_ctx *tctx = task_ctx(p);
	u64 now = bpf_ktime_get_ns();

	if (!tctx || !cctx)
		return;
	if (vtime_before(vtime_now, tctx->vtime))
		vtime_now = tctx->vtime;
	charge_start(p, tctx);
	if (called_remotely(p))
		return;
	kick_served(cpu);

	cctx->run_id++;
	cctx->started = now;
	cctx->vtime = tctx->vtime;
	cctx->deadline = task_deadline(p, tctx, task_slice(p));
	cctx->weight = p->scx.weight;
	cctx->want_ts = 0;
	cctx->wait_ts = 0;
	cctx->worker = false;
	cctx->hinted = false;
	cctx->pid = p->pid;
	cctx->slice_end = now + p->scx.slice;

	/*
	 * A plain task that typically runs its whole slice gets the CPU's
	 * timer at the slice's end. One that typically blocks well before
	 * (most tasks that wake and sleep) costs no timer: if it runs long
	 * after all, a task that starts waiting kicks it (preempt_target()),
	 * or the tick ends its slice.
	 */
	wc = worker_of(p);
	if (wc)
		worker_running(p, wc, cctx, cpu, now);
	else if (tctx->avg_burst >= p->scx.slice / 2)
		cpu_timer_arm(cctx, cctx->slice_end, now);
}

/*
 * @p stops running: it pays for the CPU time it used (charge_end()) and
 * leaves its CPU's record, unless the call is a remote one around a change
 * of its properties (called_remotely()), after which it goes on running.
 */
void BPF_STRUCT_OPS(morpheus_stopping, struct task_struct *p, bool runnable)
{
	struct morpheus_worker_ctx *wc;
	struct cpu_ctx *cctx = cpu_ctx(scx_bpf_task_cpu(p));
	struct task_ctx *tctx = task_ctx(p);
	u64 now = bpf_ktime_get_ns();
	u64 used, vtime, ahead;
	bool throttled, remote;

	if (!tctx)
		return;
	used = charge_end(p, tctx);
	remote = called_remotely(p);
	/*
	 * sched_ext calls a running task that is taken off for a change of
	 * its properties not runnable (dequeue_task_scx()); it only blocks if
	 * it has left TASK_RUNNING (0). Taken for a sleep, a task that keeps
	 * changing its own properties would look like a short sleeper (an
	 * early deadline, no slice timer) and a worker would answer its
	 * hints without giving up its CPU.
	 */
	runnable = runnable || !READ_ONCE(p->__state);

	if (!remote && cctx && cctx->pid == p->pid) {
		cctx->pid = 0;
		cctx->worker = false;
		cpu_worker_set(scx_bpf_task_cpu(p), NULL, false);
	}

	wc = worker_of(p);
	if (wc && !remote)
		worker_stopping(p, wc, cctx, runnable, used, now);

	/*
	 * Its typical request: the bursts it ran before sleeping, and any
	 * longer one as soon as it happens (a task turned CPU hog is not
	 * treated as a short sleeper).
	 */
	tctx->burst += used;
	if (!runnable || tctx->burst > tctx->avg_burst)
		tctx->avg_burst = (3 * tctx->avg_burst + tctx->burst) / 4;
	if (!runnable)
		tctx->burst = 0;

	throttled = is_throttled(p, now);
	if (throttled)
		used *= MORPHEUS_THROTTLE_FACTOR;
	if (wc)
		worker_publish_throttle(wc, throttled);

	/*
	 * Charge the time used, scaled by the inverse of the task's weight,
	 * and keep it within reach of the queue: a task's wait for a CPU stays
	 * bounded whatever one charge was.
	 */
	vtime = tctx->vtime + scale_by_weight(used, p->scx.weight);
	ahead = vtime_now +
		shared_allowance(scx_bpf_task_cpu(p), MORPHEUS_MAX_AHEAD_SLICES * slice_max_ns);
	tctx->vtime = vtime_before(ahead, vtime) ? ahead : vtime;
}

/*
 * Scheduler tick on @p's CPU: counts it, recomputes the load (pressure and
 * the adaptive slice) and publishes it to a worker's SCB. Decides nothing:
 * the CPUs' timers bring every decision on time.
 */
void BPF_STRUCT_OPS(morpheus_tick, struct task_struct *p)
{
	struct morpheus_worker_ctx *wc;
	u64 now = bpf_ktime_get_ns();

	stat_inc(&nr_ticks);
	kick_served(scx_bpf_task_cpu(p));
	update_load(now);

	wc = worker_of(p);
	if (wc)
		worker_tick(wc, now);

	if (inject_error)
		scx_bpf_error("injected error %u (test hook --inject-error-after-ms)",
			      inject_error);
}

/* @p comes under this scheduler: it starts at the queues' vtime. */
void BPF_STRUCT_OPS(morpheus_enable, struct task_struct *p)
{
	struct task_ctx *tctx = task_ctx(p);

	if (tctx)
		tctx->vtime = vtime_now;
}

/* A new task (or one present at attach): its scheduling state. */
s32 BPF_STRUCT_OPS(morpheus_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	if (!bpf_task_storage_get(&task_ctxs, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return -ENOMEM;
	return 0;
}

/* @p leaves the scheduler (it exited, or the scheduler detaches). */
void BPF_STRUCT_OPS(morpheus_exit_task, struct task_struct *p, struct scx_exit_task_args *args)
{
	struct morpheus_worker_ctx *wc = worker_of(p);

	if (wc)
		worker_exit(p, wc);
}

/* Attach: the shared queue, one queue and one decision timer per CPU. */
s32 BPF_STRUCT_OPS_SLEEPABLE(morpheus_init)
{
	u32 nr = scx_bpf_nr_cpu_ids();
	s32 err;
	u32 i;

	cur_slice_ns = slice_ns;
	if (nr > MORPHEUS_MAX_CPUS) {
		scx_bpf_error("%u CPU ids, scx_morpheus supports %u", nr, MORPHEUS_MAX_CPUS);
		return -E2BIG;
	}
	err = scx_bpf_create_dsq(MORPHEUS_SHARED_DSQ, -1);
	if (err)
		return err;
	bpf_for(i, 0, nr) {
		err = scx_bpf_create_dsq(i, -1);
		if (err)
			return err;
		err = cpu_timer_init(i);
		if (err)
			return err;
	}
	return 0;
}

/*
 * CPU hotplug: the CPU count behind the adaptive slice and the pressure
 * level changed. Like the upstream scx schedulers, ask the loader to restart
 * the scheduler (it reattaches by itself; workers re-register).
 */
void BPF_STRUCT_OPS(morpheus_cpu_online, s32 cpu)
{
	scx_bpf_exit(SCX_ECODE_ACT_RESTART | SCX_ECODE_RSN_HOTPLUG,
		     "CPU %d came online, restarting", cpu);
}

/* CPU hotplug the other way: a restart too (see morpheus_cpu_online). */
void BPF_STRUCT_OPS(morpheus_cpu_offline, s32 cpu)
{
	scx_bpf_exit(SCX_ECODE_ACT_RESTART | SCX_ECODE_RSN_HOTPLUG,
		     "CPU %d went offline, restarting", cpu);
}

/* Detach: records why, for the loader to report (UEI). */
void BPF_STRUCT_OPS(morpheus_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

/* One op per line, aligned: kept out of clang-format. */
/* clang-format off */
SCX_OPS_DEFINE(morpheus_ops,
	       .select_cpu	= (void *)morpheus_select_cpu,
	       .enqueue		= (void *)morpheus_enqueue,
	       .dispatch	= (void *)morpheus_dispatch,
	       .running		= (void *)morpheus_running,
	       .stopping	= (void *)morpheus_stopping,
	       .tick		= (void *)morpheus_tick,
	       .enable		= (void *)morpheus_enable,
	       .init_task	= (void *)morpheus_init_task,
	       .exit_task	= (void *)morpheus_exit_task,
	       .cpu_online	= (void *)morpheus_cpu_online,
	       .cpu_offline	= (void *)morpheus_cpu_offline,
	       .init		= (void *)morpheus_init,
	       .exit		= (void *)morpheus_exit,
	       .timeout_ms	= MORPHEUS_WATCHDOG_TIMEOUT_MS,
	       .name		= "morpheus");
/* clang-format on */
