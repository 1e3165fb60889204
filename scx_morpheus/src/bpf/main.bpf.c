/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * scx_morpheus: a sched_ext scheduler that asks registered async-runtime
 * workers to yield at their own safe points.
 *
 * Every task: weighted virtual time on one shared queue. A task's vtime
 * advances by the time it ran scaled by the inverse of its weight (nice
 * levels), so CPU time is shared in proportion to weight; a task that slept is
 * placed at most one slice behind the queue's vtime so it cannot bank credit,
 * and nothing starves. Wakeups that find an idle CPU go straight to it. The
 * slice adapts to the queue depth between slice_min_ns and slice_max_ns.
 *
 * Registered workers (see the loader's registry): when one has run a slice
 * while tasks wait, it gets a hint in its shared control block (SCB) and has
 * grace_ns to reach a checkpoint. It is never preempted inside a critical
 * section before others have waited max_critical_ns for its CPU, and never
 * runs past its slice by more than max_overrun_ns (outside critical
 * sections) while others wait. With
 * --enforce, an escapable worker that ignored a hint past its deadline is
 * escalated (kick, throttle or both).
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

/* Counters and gauges read by the loader (stats.rs). */
u64 nr_direct_dispatches;  /* wakeups placed straight on an idle CPU */
u64 nr_kthread_dispatches; /* per-CPU kthreads run at once */
u64 nr_shared_enqueues;	   /* tasks queued on the shared vtime queue */
u64 nr_shared_dispatches;  /* tasks moved from it to a CPU */
u64 nr_idle_kicks;	   /* idle CPUs woken for newly queued work */
u64 nr_ticks;		   /* scheduler ticks observed */
u64 nr_queued_max;	   /* deepest shared queue seen at a tick */
u64 nr_hints_sent;	   /* hints issued */
u64 nr_hints_answered;	   /* acknowledged, or the worker yielded/blocked */
u64 nr_hints_in_grace;	   /* ... of which before the deadline */
u64 nr_hints_expired;	   /* deadline passed without an answer */
u64 nr_hints_dropped;	   /* the worker exited or left before answering */
u64 nr_escalations[MORPHEUS_ESCALATION_POLICY_NR]; /* by policy applied */
u64 nr_critical_cap;	   /* critical sections preempted at the cap */
u64 nr_overrun_cap;	   /* workers preempted at the overrun cap */
u64 nr_ring_drops;	   /* events lost to a full ring buffer */
u64 nr_throttled;	   /* throttles currently active */
u64 nr_throttles;	   /* throttles applied */
u64 nr_workers_started;	   /* REGISTERED -> RUNNING transitions */
u64 nr_workers_exited;	   /* threads that exited while registered */
u64 cur_slice_ns;	   /* the adaptive slice now */
u64 cur_pressure;	   /* MORPHEUS_PRESSURE_ONE fixed point */
u64 resp_hist[MORPHEUS_RESP_BUCKETS]; /* hint response time, log2(us) buckets */

/* The vtime of the most recently started task: the "now" of the queue. */
static u64 vtime_now;

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
 * The task each CPU is running and its CPU time when it started: what
 * ops.stopping charges. The owner is recorded because a task already
 * running when the scheduler attached stops without a matching
 * ops.running; it is charged by the fallback rule instead.
 */
struct run_record {
	s32 pid;
	u64 exec_start; /* p->se.sum_exec_runtime at ops.running */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct run_record);
} run_records SEC(".maps");

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

/* Cgroup id (or tgid | 1 << 63 for the root cgroup) -> penalty window. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MORPHEUS_MAX_THROTTLED);
	__type(key, u64);
	__type(value, struct morpheus_throttle);
} throttled SEC(".maps");

/* Hint events for observers; a full ring counts a drop, never blocks. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MORPHEUS_EVENT_RING_SIZE);
} events SEC(".maps");

static __always_inline void stat_inc(u64 *counter)
{
	__sync_fetch_and_add(counter, 1);
}

/* An idle CPU was kicked for queued work. */
static void kick_claim(s32 cpu)
{
	u32 key = cpu;
	u32 *pending = bpf_map_lookup_elem(&kick_pending, &key);

	if (pending && __sync_val_compare_and_swap(pending, 0, 1) == 0)
		__sync_fetch_and_add(&nr_kicks_pending, 1);
}

/* The CPU is running (or dispatching): any kick for it has been served. */
static void kick_served(s32 cpu)
{
	u32 key = cpu;
	u32 *pending = bpf_map_lookup_elem(&kick_pending, &key);

	if (pending && READ_ONCE(*pending) &&
	    __sync_val_compare_and_swap(pending, 1, 0) == 1)
		__sync_fetch_and_sub(&nr_kicks_pending, 1);
}

static void emit(u32 kind, struct task_struct *p, struct morpheus_worker_ctx *wc,
		 u64 seq, u64 value)
{
	struct morpheus_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(&nr_ring_drops);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->tgid = p->tgid;
	e->tid = p->pid;
	e->slot = wc->slot;
	e->hint_seq = seq;
	e->value = value;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline struct morpheus_worker_ctx *worker_of(struct task_struct *p)
{
	struct morpheus_worker_ctx *wc;

	wc = bpf_task_storage_get(&worker_ctxs, p, 0, 0);
	/* A registration only ever applies to a thread of the registering process. */
	if (!wc || wc->tgid != (u32)p->tgid)
		return NULL;
	return wc;
}

/* The worker's live SCB, or NULL if it is gone, stale or being unregistered. */
static struct morpheus_scb *scb_of(struct morpheus_worker_ctx *wc)
{
	struct morpheus_scb *scb;
	void *array;
	u32 slot = wc->slot;

	array = bpf_map_lookup_elem(&scb_maps, &wc->tgid);
	if (!array)
		return NULL;
	scb = bpf_map_lookup_elem(array, &slot);
	if (!scb || scb->k.generation != wc->generation)
		return NULL;
	if (scb->k.state != MORPHEUS_WORKER_REGISTERED && scb->k.state != MORPHEUS_WORKER_RUNNING)
		return NULL;
	return scb;
}

/* Histogram bucket: floor(log2(us)), clamped. */
static __always_inline u32 resp_bucket(u64 ns)
{
	u64 us = ns / 1000;
	u32 b = 0;

	bpf_for(b, 0, MORPHEUS_RESP_BUCKETS - 1) {
		if (us < 2)
			break;
		us >>= 1;
	}
	return b;
}

static void hint_answered(struct task_struct *p, struct morpheus_worker_ctx *wc,
			  struct morpheus_scb *scb, u64 now)
{
	u64 resp = now - wc->hint_ts;
	u32 b = resp_bucket(resp);
	bool expired = wc->flags & MORPHEUS_CTX_HINT_EXPIRED;

	/* An expired hint was already accounted for at its deadline. */
	if (!expired) {
		stat_inc(&nr_hints_answered);
		if (now <= wc->hint_deadline) {
			stat_inc(&nr_hints_in_grace);
			if (scb)
				__sync_fetch_and_add(&scb->k.hints_answered, 1);
		}
		if (b < MORPHEUS_RESP_BUCKETS)
			__sync_fetch_and_add(&resp_hist[b], 1);
		emit(MORPHEUS_EVENT_ANSWERED, p, wc, wc->hint_seq, resp);
	}
	wc->hint_seq = 0;
	wc->flags &= ~MORPHEUS_CTX_HINT_EXPIRED;
}

/* Key of the throttle entry for p: its cgroup, or the process in the root cgroup. */
static u64 throttle_key(struct task_struct *p)
{
	u64 cgid = BPF_CORE_READ(p, cgroups, dfl_cgrp, kn, id);

	if (cgid <= 1)
		return (1ull << 63) | (u32)p->tgid;
	return cgid;
}

static bool is_throttled(struct task_struct *p, u64 now)
{
	struct morpheus_throttle *t;
	u64 key;

	if (!nr_throttled)
		return false;
	key = throttle_key(p);
	t = bpf_map_lookup_elem(&throttled, &key);
	if (!t)
		return false;
	if (now < t->until_ns)
		return true;
	if (!bpf_map_delete_elem(&throttled, &key))
		__sync_fetch_and_sub(&nr_throttled, 1);
	return false;
}

static void throttle(struct task_struct *p, u64 now)
{
	struct morpheus_throttle t = { .until_ns = now + throttle_ns };
	u64 key = throttle_key(p);

	if (!bpf_map_update_elem(&throttled, &key, &t, BPF_NOEXIST))
		__sync_fetch_and_add(&nr_throttled, 1);
	else
		bpf_map_update_elem(&throttled, &key, &t, BPF_EXIST);
	stat_inc(&nr_throttles);
}

/* Applies the escalation policy to p (running on this CPU); returns the policy used. */
static u32 escalate(struct task_struct *p, struct morpheus_worker_ctx *wc,
		    struct morpheus_scb *scb, u64 now)
{
	u32 policy = escalation_policy;

	if (now - wc->escalation_ts > hybrid_window_ns)
		wc->escalations_recent = 0;
	wc->escalations_recent++;
	wc->escalation_ts = now;

	if (policy == MORPHEUS_ESCALATION_HYBRID)
		policy = wc->escalations_recent >= MORPHEUS_HYBRID_REPEAT ?
				 MORPHEUS_ESCALATION_CGROUP_THROTTLE :
				 MORPHEUS_ESCALATION_THREAD_KICK;
	if (policy >= MORPHEUS_ESCALATION_POLICY_NR)
		return MORPHEUS_ESCALATION_NONE;

	if (policy == MORPHEUS_ESCALATION_CGROUP_THROTTLE)
		throttle(p, now);
	__sync_fetch_and_add(&nr_escalations[policy], 1);
	__sync_fetch_and_add(&scb->k.escalations, 1);
	emit(MORPHEUS_EVENT_ESCALATED, p, wc, wc->hint_seq, policy);
	return policy;
}

/* The slice a task gets when dispatched. */
static __always_inline u64 task_slice(struct task_struct *p)
{
	u64 slice = cur_slice_ns ?: slice_ns;
	u64 cap = max_overrun_ns > max_critical_ns ? max_overrun_ns : max_critical_ns;

	/*
	 * A registered worker gets room past its slice to reach a checkpoint;
	 * the tick enforces the hint, the grace period and the caps.
	 */
	if (worker_of(p))
		slice += cap + NSEC_PER_MSEC * 10;
	return slice;
}

s32 BPF_STRUCT_OPS(morpheus_select_cpu, struct task_struct *p, s32 prev_cpu,
		   u64 wake_flags)
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

void BPF_STRUCT_OPS(morpheus_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 vtime = p->scx.dsq_vtime;
	u64 slice = cur_slice_ns ?: slice_ns;
	s32 cpu;

	/*
	 * Per-CPU kernel threads (kworkers, ksoftirqd) do short work that
	 * others wait for and can run nowhere else: run them right away.
	 */
	if ((p->flags & PF_KTHREAD) && p->nr_cpus_allowed == 1) {
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice, enq_flags | SCX_ENQ_PREEMPT);
		stat_inc(&nr_kthread_dispatches);
		return;
	}

	/* A task that slept may lag the queue by at most one slice. */
	if (time_before(vtime, vtime_now - slice))
		vtime = vtime_now - slice;

	scx_bpf_dsq_insert_vtime(p, MORPHEUS_SHARED_DSQ, task_slice(p), vtime, enq_flags);
	stat_inc(&nr_shared_enqueues);

	/* Work queued while a CPU sleeps must not wait for that CPU's tick. */
	cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	if (cpu >= 0) {
		kick_claim(cpu);
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		stat_inc(&nr_idle_kicks);
	}
}

void BPF_STRUCT_OPS(morpheus_dispatch, s32 cpu, struct task_struct *prev)
{
	if (scx_bpf_dsq_move_to_local(MORPHEUS_SHARED_DSQ, 0))
		stat_inc(&nr_shared_dispatches);
	kick_served(cpu);
}

static void run_record_start(struct task_struct *p)
{
	u32 key = 0;
	struct run_record *rec = bpf_map_lookup_elem(&run_records, &key);

	if (rec) {
		rec->pid = p->pid;
		rec->exec_start = p->se.sum_exec_runtime;
	}
}

/*
 * The CPU time @p used since it started running on this CPU, which its vtime
 * is charged. Every task pays for what it used, workers and others alike
 * (sched_ext notices an exhausted slice only at a tick, so the slice given
 * says little). One charge is bounded by the task's slice plus the maximum
 * slice: a task that ran alone has its slice refilled without ops.stopping,
 * and must not be sent far behind everyone when competition appears.
 */
static u64 run_record_charge(struct task_struct *p)
{
	u32 key = 0;
	struct run_record *rec = bpf_map_lookup_elem(&run_records, &key);
	u64 slice = cur_slice_ns ?: slice_ns;
	u64 exec = p->se.sum_exec_runtime;
	u64 used, bound;

	if (!rec || rec->pid != p->pid || exec < rec->exec_start)
		/* Started before the scheduler attached: the slice it used. */
		return p->scx.slice < slice ? slice - p->scx.slice : 0;
	rec->pid = 0;
	used = exec - rec->exec_start;
	bound = task_slice(p) + slice_max_ns;
	return used < bound ? used : bound;
}

void BPF_STRUCT_OPS(morpheus_running, struct task_struct *p)
{
	struct morpheus_worker_ctx *wc;
	struct morpheus_scb *scb;
	u64 now;

	if (time_before(vtime_now, p->scx.dsq_vtime))
		vtime_now = p->scx.dsq_vtime;
	kick_served(bpf_get_smp_processor_id());
	run_record_start(p);

	wc = worker_of(p);
	if (!wc)
		return;
	now = bpf_ktime_get_ns();
	wc->run_start = now;
	scb = scb_of(wc);
	/*
	 * The grace period is time on a CPU: a worker cannot reach a
	 * checkpoint while it waits for one, so that wait moves the deadline.
	 */
	if (wc->hint_seq && !(wc->flags & MORPHEUS_CTX_HINT_EXPIRED) &&
	    wc->stop_ts >= wc->hint_ts && now > wc->stop_ts) {
		wc->hint_deadline += now - wc->stop_ts;
		if (scb)
			scb->k.hint_deadline_ns = wc->hint_deadline;
	}
	if (scb && scb->k.state == MORPHEUS_WORKER_REGISTERED) {
		scb->k.state = MORPHEUS_WORKER_RUNNING;
		stat_inc(&nr_workers_started);
		emit(MORPHEUS_EVENT_WORKER_STATE, p, wc, 0, MORPHEUS_WORKER_RUNNING);
	}
}

void BPF_STRUCT_OPS(morpheus_stopping, struct task_struct *p, bool runnable)
{
	struct morpheus_worker_ctx *wc;
	struct morpheus_scb *scb;
	u64 used = run_record_charge(p);
	u64 now = bpf_ktime_get_ns();

	wc = worker_of(p);
	if (wc) {
		wc->stop_ts = now;
		scb = scb_of(wc);
		/*
		 * A hint is answered by an acknowledgement or by giving up the
		 * CPU (blocking). Involuntary preemption does not answer it,
		 * and the CPU time keeps counting towards the next hint and the
		 * caps.
		 */
		if (wc->hint_seq && scb &&
		    (READ_ONCE(scb->u.ack_seq) >= wc->hint_seq || !runnable)) {
			hint_answered(p, wc, scb, now);
			wc->ran_acc = 0;
		} else if (!runnable) {
			wc->ran_acc = 0;
		} else {
			wc->ran_acc += used;
		}
	}

	if (is_throttled(p, now))
		used *= MORPHEUS_THROTTLE_FACTOR;

	/* Charge the time used, scaled by the inverse of the task's weight. */
	scx_bpf_task_set_dsq_vtime(p, p->scx.dsq_vtime + used * 100 / p->scx.weight);
}

/* Recomputes the adaptive slice and the pressure level from the queue depth. */
static void update_load(u64 queued)
{
	u64 cpus = nr_cpus ?: 1;
	const struct cpumask *idle = scx_bpf_get_idle_cpumask();
	u64 nr_idle = bpf_cpumask_weight(idle);
	u64 busy = cpus > nr_idle ? cpus - nr_idle : 0;
	u64 runnable = queued + busy;
	u64 pressure, slice;

	scx_bpf_put_idle_cpumask(idle);

	pressure = MORPHEUS_PRESSURE_ONE * runnable / cpus;
	if (pressure > MORPHEUS_PRESSURE_MAX)
		pressure = MORPHEUS_PRESSURE_MAX;
	cur_pressure = pressure;

	/* slice_ns at one waiter per CPU, twice that when nobody waits. */
	slice = 2 * slice_ns * cpus / (cpus + queued);
	if (slice < slice_min_ns)
		slice = slice_min_ns;
	if (slice > slice_max_ns)
		slice = slice_max_ns;
	cur_slice_ns = slice;
}

static void tick_worker(struct task_struct *p, struct morpheus_worker_ctx *wc, bool waiters)
{
	struct morpheus_scb *scb = scb_of(wc);
	u64 now = bpf_ktime_get_ns();
	u64 slice = cur_slice_ns ?: slice_ns;
	u64 ran, seq;
	u32 depth;
	bool preempt = false;

	if (!scb)
		return;
	scb->k.pressure = cur_pressure;
	scb->k.slice_us = slice / 1000;

	/* CPU time since it last blocked or answered a hint. */
	ran = wc->ran_acc + (wc->run_start && now > wc->run_start ? now - wc->run_start : 0);
	/* Untrusted: only ever compared with zero. */
	depth = READ_ONCE(scb->u.critical_depth);
	if (depth) {
		if (!wc->crit_start)
			wc->crit_start = now;
		wc->crit_seen = now;
	} else {
		wc->crit_start = 0;
	}

	if (wc->hint_seq) {
		if (READ_ONCE(scb->u.ack_seq) >= wc->hint_seq) {
			hint_answered(p, wc, scb, now);
		} else if (!(wc->flags & MORPHEUS_CTX_HINT_EXPIRED) && now > wc->hint_deadline) {
			wc->flags |= MORPHEUS_CTX_HINT_EXPIRED;
			stat_inc(&nr_hints_expired);
			emit(MORPHEUS_EVENT_EXPIRED, p, wc, wc->hint_seq, now - wc->hint_ts);
		}
	}

	if (!waiters) {
		wc->contended_ticks = 0;
		wc->calm_ts = now;
		return;
	}
	if (wc->contended_ticks < MORPHEUS_CONTENDED_TICKS)
		wc->contended_ticks++;

	/*
	 * Ran a slice while others wait (for more than a passing moment): ask
	 * for a yield at the next safe point.
	 */
	if (!wc->hint_seq && ran >= slice && wc->contended_ticks >= MORPHEUS_CONTENDED_TICKS) {
		wc->hint_ts = now;
		wc->hint_deadline = now + grace_ns;
		wc->flags &= ~MORPHEUS_CTX_HINT_EXPIRED;
		/* Issue time and deadline must be visible before the new sequence. */
		scb->k.hint_issued_ns = now;
		scb->k.hint_deadline_ns = wc->hint_deadline;
		seq = __sync_fetch_and_add(&scb->k.hint_seq, 1) + 1;
		wc->hint_seq = seq;
		stat_inc(&nr_hints_sent);
		emit(MORPHEUS_EVENT_HINT, p, wc, seq, ran);
	}

	if (depth) {
		/*
		 * Critical sections are honoured until others have waited the
		 * cap, never beyond. They began waiting after the last calm
		 * tick, or were waiting when this run began: the delay a
		 * critical section inflicts is at most the cap plus one tick.
		 */
		u64 waited_since = wc->calm_ts > wc->run_start ? wc->calm_ts : wc->run_start;

		if (!waited_since)
			/* Registered while running: no run start seen yet. */
			waited_since = wc->crit_start;
		if (now - waited_since >= max_critical_ns) {
			stat_inc(&nr_critical_cap);
			emit(MORPHEUS_EVENT_CRITICAL_CAP, p, wc, wc->hint_seq, now - wc->crit_start);
			wc->crit_start = 0;
			preempt = true;
		}
	} else if (enforce && (wc->flags & MORPHEUS_WORKER_ESCAPABLE) &&
		   (wc->flags & MORPHEUS_CTX_HINT_EXPIRED) &&
		   now - wc->crit_seen >= grace_ns) {
		/*
		 * Recovery, not policy: the worker ignored a hint past its
		 * grace, and has had a whole grace period outside critical
		 * sections to answer it (a hint deferred by a section is
		 * answered at the first checkpoint after it).
		 */
		if (escalate(p, wc, scb, now) != MORPHEUS_ESCALATION_NONE)
			preempt = true;
		wc->flags &= ~MORPHEUS_CTX_HINT_EXPIRED;
		wc->hint_seq = 0;
	} else if (ran >= slice + max_overrun_ns) {
		stat_inc(&nr_overrun_cap);
		preempt = true;
	}

	if (preempt) {
		/* A new round starts when it next runs. */
		wc->ran_acc = 0;
		wc->run_start = now;
		scx_bpf_task_set_slice(p, 0);
	}
}

/*
 * Whether other tasks wait for @cpu: something is queued on it, or a task on
 * the shared queue may run on it and has no idle CPU, nor one already kicked
 * for it, to go to. Tasks pinned elsewhere, or about to be picked up by a CPU
 * that was idle, do not count.
 */
static bool others_wait_for(s32 cpu, u64 queued)
{
	const struct cpumask *idle;
	struct task_struct *q;
	u64 pending = READ_ONCE(nr_kicks_pending);
	u64 waiting = 0;

	if (scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL_ON | cpu))
		return true;
	if (queued <= pending)
		return false;

	/*
	 * The iterator visits only the tasks queued when it started. The count
	 * is not compared inside the loop: a loop-carried comparison would
	 * make the verifier walk every iteration separately.
	 */
	idle = scx_bpf_get_idle_cpumask();
	bpf_for_each(scx_dsq, q, MORPHEUS_SHARED_DSQ, 0) {
		if (bpf_cpumask_test_cpu(cpu, q->cpus_ptr) &&
		    !bpf_cpumask_intersects(idle, q->cpus_ptr))
			waiting++;
	}
	scx_bpf_put_idle_cpumask(idle);
	return waiting > pending;
}

void BPF_STRUCT_OPS(morpheus_tick, struct task_struct *p)
{
	struct morpheus_worker_ctx *wc;
	s32 cpu = scx_bpf_task_cpu(p);
	u64 queued;

	stat_inc(&nr_ticks);
	kick_served(cpu);

	queued = scx_bpf_dsq_nr_queued(MORPHEUS_SHARED_DSQ);
	if (queued > nr_queued_max)
		nr_queued_max = queued;
	update_load(queued);

	wc = worker_of(p);
	if (wc)
		tick_worker(p, wc, others_wait_for(cpu, queued));

	if (inject_error)
		scx_bpf_error("injected error %u (test hook --inject-error-after-ms)",
			      inject_error);
}

void BPF_STRUCT_OPS(morpheus_enable, struct task_struct *p)
{
	scx_bpf_task_set_dsq_vtime(p, vtime_now);
}

void BPF_STRUCT_OPS(morpheus_exit_task, struct task_struct *p, struct scx_exit_task_args *args)
{
	struct morpheus_worker_ctx *wc = worker_of(p);
	struct morpheus_scb *scb;

	if (!wc)
		return;
	if (wc->hint_seq && !(wc->flags & MORPHEUS_CTX_HINT_EXPIRED))
		stat_inc(&nr_hints_dropped);
	wc->hint_seq = 0;
	scb = scb_of(wc);
	if (scb) {
		scb->k.state = MORPHEUS_WORKER_DEAD;
		stat_inc(&nr_workers_exited);
	}
	emit(MORPHEUS_EVENT_WORKER_STATE, p, wc, 0, MORPHEUS_WORKER_DEAD);
}

s32 BPF_STRUCT_OPS_SLEEPABLE(morpheus_init)
{
	cur_slice_ns = slice_ns;
	return scx_bpf_create_dsq(MORPHEUS_SHARED_DSQ, -1);
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

void BPF_STRUCT_OPS(morpheus_cpu_offline, s32 cpu)
{
	scx_bpf_exit(SCX_ECODE_ACT_RESTART | SCX_ECODE_RSN_HOTPLUG,
		     "CPU %d went offline, restarting", cpu);
}

void BPF_STRUCT_OPS(morpheus_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(morpheus_ops,
	       .select_cpu	= (void *)morpheus_select_cpu,
	       .enqueue		= (void *)morpheus_enqueue,
	       .dispatch	= (void *)morpheus_dispatch,
	       .running		= (void *)morpheus_running,
	       .stopping	= (void *)morpheus_stopping,
	       .tick		= (void *)morpheus_tick,
	       .enable		= (void *)morpheus_enable,
	       .exit_task	= (void *)morpheus_exit_task,
	       .cpu_online	= (void *)morpheus_cpu_online,
	       .cpu_offline	= (void *)morpheus_cpu_offline,
	       .init		= (void *)morpheus_init,
	       .exit		= (void *)morpheus_exit,
	       .timeout_ms	= MORPHEUS_WATCHDOG_TIMEOUT_MS,
	       .name		= "morpheus");
