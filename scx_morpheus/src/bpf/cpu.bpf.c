/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * CPUs: their context, their decision timers, who waits for them, what they
 * run next, and the load that sets the adaptive slice. Included by
 * main.bpf.c.
 */

static struct cpu_ctx *cpu_ctx(s32 cpu)
{
	u32 key = cpu;

	return bpf_map_lookup_elem(&cpu_ctxs, &key);
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

	if (pending && READ_ONCE(*pending) && __sync_val_compare_and_swap(pending, 1, 0) == 1)
		__sync_fetch_and_sub(&nr_kicks_pending, 1);
}

/*
 * The vtime of the task @cctx's CPU runs, as of @now: where it started plus
 * what it has used since.
 */
static u64 cpu_curr_vtime(const struct cpu_ctx *cctx, u64 now)
{
	u64 ran = now > cctx->started ? now - cctx->started : 0;

	return cctx->vtime + scale_by_weight(ran, cctx->weight);
}

/* Tasks queued on @cpu itself: its own dispatch queue and its local one. */
static u64 nr_queued_on(s32 cpu)
{
	return scx_bpf_dsq_nr_queued(cpu) + scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL_ON | cpu);
}

/*
 * Tasks on the shared queue beyond those an idle CPU was already kicked
 * for (each such CPU takes one of them).
 */
static u64 nr_shared_unclaimed(void)
{
	u64 queued = scx_bpf_dsq_nr_queued(MORPHEUS_SHARED_DSQ);
	u64 pending = READ_ONCE(nr_kicks_pending);

	return queued > pending ? queued - pending : 0;
}

/*
 * Whether a task is queued that @cpu could run next, by queue lengths only
 * (no scan: callable from the timer).
 */
static bool cpu_has_queued(s32 cpu)
{
	return nr_queued_on(cpu) || nr_shared_unclaimed();
}

/*
 * A decision timer fired: if the run it was armed for still goes on,
 * preempt-kick its CPU. For a worker the decision is made there, in
 * ops.dispatch, which may let it keep the CPU. A plain task's slice ended:
 * it is preempted only if others wait; if nobody does, the kernel refills
 * its slice at the next tick, and a task that starts waiting later kicks
 * it from ops.enqueue (preempt_target()).
 */
static int cpu_timer_fn(void *map, int *key, struct cpu_ctx *cctx)
{
	u64 now = bpf_ktime_get_ns(), at = cctx->timer_at;
	s32 cpu = *key;

	/* How late timers fire bounds how late any decision can be. */
	hist_add(timer_late_hist, now > at ? now - at : 0);
	if (cctx->timer_run_id != cctx->run_id || !cctx->pid)
		return 0;
	if (!cctx->worker) {
		if (cctx->wait_ts || !cpu_has_queued(cpu))
			return 0;
		cctx->wait_ts = now;
		/* Else a woken task's wait (already counted) ended. */
		if (now >= cctx->slice_end)
			stat_inc(&nr_slice_preempts);
	}
	stat_inc(&nr_timer_kicks);
	scx_bpf_kick_cpu(cpu, SCX_KICK_PREEMPT);
	return 0;
}

/* Sets up @cpu's decision timer (at attach). */
static s32 cpu_timer_init(u32 cpu)
{
	struct cpu_ctx *cctx = cpu_ctx(cpu);
	s32 err;

	if (!cctx)
		return -ENOENT;
	err = bpf_timer_init(&cctx->timer, &cpu_ctxs, CLOCK_MONOTONIC);
	if (err)
		return err;
	return bpf_timer_set_callback(&cctx->timer, cpu_timer_fn);
}

/* Brings the next decision about the current run of @cctx's CPU to @at. */
static void cpu_timer_arm(struct cpu_ctx *cctx, u64 at, u64 now)
{
	if (at < now)
		at = now;
	cctx->timer_run_id = cctx->run_id;
	cctx->timer_at = at;
	bpf_timer_start(&cctx->timer, at - now, 0);
}

/*
 * Makes sure @cctx's CPU is kicked at @at at the latest, if its current
 * run goes on that long (from another CPU: a racing new run there at worst
 * gets an early decision).
 */
static void cpu_timer_arm_by(struct cpu_ctx *cctx, u64 at, u64 now)
{
	if (cctx->timer_run_id == cctx->run_id && cctx->timer_at > now && cctx->timer_at <= at)
		return;
	cpu_timer_arm(cctx, at, now);
}

/*
 * Whether other tasks wait for @cpu: something is queued on it, or a task on
 * the shared queue may run on it and has no idle CPU, nor one already kicked
 * for it, to go to. Only the first MORPHEUS_WAITER_SCAN tasks of the shared
 * queue are looked at: the answer is about whether anyone waits, not how many.
 */
static bool others_wait_for(s32 cpu)
{
	const struct cpumask *idle;
	struct task_struct *q;
	u64 pending = READ_ONCE(nr_kicks_pending);
	u64 waiting = 0;
	u32 seen = 0;

	if (nr_queued_on(cpu))
		return true;
	if (!nr_shared_unclaimed())
		return false;

	idle = scx_bpf_get_idle_cpumask();
	bpf_for_each(scx_dsq, q, MORPHEUS_SHARED_DSQ, 0) {
		if (++seen > MORPHEUS_WAITER_SCAN)
			break;
		if (bpf_cpumask_test_cpu(cpu, q->cpus_ptr) &&
		    !bpf_cpumask_intersects(idle, q->cpus_ptr))
			waiting++;
	}
	scx_bpf_put_idle_cpumask(idle);
	return waiting > pending;
}

/*
 * Moves the next task of the shared queue that @cpu may run to its local
 * queue. Among the tasks about even with the first (a deadline within
 * wakeup_granularity_ns of its: the lag two tasks may have and still take
 * turns), one that last ran on @cpu goes first, so that runnable tasks
 * (preempted, or workers that yielded) resume where their caches are
 * rather than on whichever CPU frees first; @prev_pid, the task @cpu just
 * gave up, is not one of them (it gave way). Only the first
 * MORPHEUS_WAITER_SCAN tasks are looked at. Returns whether a task was moved.
 */
static bool consume_shared(s32 cpu, s32 prev_pid)
{
	struct task_struct *q;
	u64 even_until = 0;
	bool first = true;
	u32 seen = 0;

	bpf_for_each(scx_dsq, q, MORPHEUS_SHARED_DSQ, 0) {
		if (++seen > MORPHEUS_WAITER_SCAN)
			break;
		if (!bpf_cpumask_test_cpu(cpu, q->cpus_ptr))
			continue;
		if (first) {
			even_until = q->scx.dsq_vtime + wakeup_granularity_ns;
			first = false;
		} else if (!vtime_before(q->scx.dsq_vtime, even_until)) {
			break;
		}
		if (q->pid == prev_pid || scx_bpf_task_cpu(q) != cpu)
			continue;
		if (scx_bpf_dsq_move(BPF_FOR_EACH_ITER, q, SCX_DSQ_LOCAL, 0)) {
			stat_inc(&nr_shared_dispatches);
			return true;
		}
	}
	if (scx_bpf_dsq_move_to_local(MORPHEUS_SHARED_DSQ, 0)) {
		stat_inc(&nr_shared_dispatches);
		return true;
	}
	return false;
}

/*
 * Moves the next task for @cpu to its local queue: the earlier (in vtime)
 * of its own queue's head and the shared queue's (consume_shared()), else
 * one stolen from another CPU's queue (a task that won a CPU now busy in a
 * critical section, say). @prev_pid is the task @cpu gives up, if any.
 * Returns whether a task was moved.
 */
static bool consume(s32 cpu, s32 prev_pid)
{
	struct task_struct *own, *shared;
	u32 nr = scx_bpf_nr_cpu_ids();
	u32 i;

	own = __COMPAT_scx_bpf_dsq_peek(cpu);
	shared = __COMPAT_scx_bpf_dsq_peek(MORPHEUS_SHARED_DSQ);
	if (own && (!shared || !vtime_before(shared->scx.dsq_vtime, own->scx.dsq_vtime)) &&
	    scx_bpf_dsq_move_to_local(cpu, 0)) {
		stat_inc(&nr_local_dispatches);
		return true;
	}
	if (consume_shared(cpu, prev_pid))
		return true;
	if (scx_bpf_dsq_move_to_local(cpu, 0)) {
		stat_inc(&nr_local_dispatches);
		return true;
	}
	bpf_for(i, 1, MORPHEUS_CPU_SCAN) {
		if (i >= nr)
			break;
		if (scx_bpf_dsq_move_to_local((cpu + i) % nr, 0)) {
			stat_inc(&nr_steals);
			return true;
		}
	}
	return false;
}

/*
 * An allowance of @total ns for the task on @cpu while others wait, shared
 * among the tasks queued for it (at least MORPHEUS_SLICE_FLOOR_NS). Serves
 * a worker's overrun and critical-section caps, and any task's vtime lead
 * (MORPHEUS_MAX_AHEAD_SLICES maximum slices: a task that far ahead waits
 * while each of the n queued tasks runs that much, about n times its lead).
 * One waiter gets the whole allowance; a crowd of workers that never
 * checkpoint (or never leave a critical section), taking the CPU in turn,
 * together take about @total per round (plus, outside critical sections,
 * a slice each), not @total each: a crowd of hundreds on one CPU keeps no
 * task waiting anywhere near the sched_ext watchdog. (The count includes
 * shared queue tasks other CPUs may take: an overestimate only shortens
 * it.)
 */
static u64 shared_allowance(s32 cpu, u64 total)
{
	u64 n = nr_queued_on(cpu) + scx_bpf_dsq_nr_queued(MORPHEUS_SHARED_DSQ);
	u64 share = total / (n ?: 1);

	return share > MORPHEUS_SLICE_FLOOR_NS ? share : MORPHEUS_SLICE_FLOOR_NS;
}

/*
 * Recomputes the adaptive slice and the pressure level from the queue
 * depth, at most once a millisecond machine-wide (any CPU's tick may).
 */
static void update_load(u64 now)
{
	u64 cpus = nr_cpus ?: 1;
	const struct cpumask *idle;
	u64 last = load_ts, queued, nr_idle, busy, pressure, slice;
	u32 nr = scx_bpf_nr_cpu_ids();
	u32 i;

	if (now - last < NSEC_PER_MSEC || __sync_val_compare_and_swap(&load_ts, last, now) != last)
		return;

	queued = scx_bpf_dsq_nr_queued(MORPHEUS_SHARED_DSQ);
	bpf_for(i, 0, MORPHEUS_CPU_SCAN) {
		if (i >= nr)
			break;
		queued += scx_bpf_dsq_nr_queued(i);
	}
	if (queued > nr_queued_max)
		nr_queued_max = queued;

	idle = scx_bpf_get_idle_cpumask();
	nr_idle = bpf_cpumask_weight(idle);
	scx_bpf_put_idle_cpumask(idle);
	busy = cpus > nr_idle ? cpus - nr_idle : 0;

	pressure = MORPHEUS_PRESSURE_ONE * (queued + busy) / cpus;
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
