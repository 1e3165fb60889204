/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Wake-up preemption, and hints for tasks that start waiting, decided on
 * the CPU of the task that becomes runnable (ops.enqueue, no CPU idle).
 * Included by main.bpf.c.
 */

/*
 * Whether a task waking with @vtime and virtual @deadline is entitled to
 * the CPU of @cctx, whose task has reached @cur in vtime: it is not ahead
 * of that task and its virtual deadline is earlier, as EEVDF decides.
 */
static bool entitled_to(const struct cpu_ctx *cctx, u64 cur, u64 vtime, u64 deadline)
{
	return !vtime_before(cur, vtime) && vtime_before(deadline, cctx->deadline);
}

/*
 * Whether a plain task on @cctx, at @cur in vtime, has had its run-to-parity
 * granularity against a woken task at @vtime: it has run
 * wakeup_granularity_ns since it started, or it is that far ahead of the
 * woken task in vtime (the old CFS rule: a task that slept while others ran
 * lags by more than the granularity and preempts at once, while tasks about
 * even, such as the partners of a message exchange, take turns at most once
 * per granularity).
 */
static bool parity_reached(const struct cpu_ctx *cctx, u64 cur, u64 vtime, u64 now)
{
	return now - cctx->started >= wakeup_granularity_ns || cur - vtime >= wakeup_granularity_ns;
}

/*
 * When parity_reached() becomes true for the task on @cctx, at @cur now,
 * against a woken task at @vtime: its vtime grows as it runs (taken at one
 * nanosecond per nanosecond: a task heavier than nice 0 is preempted a
 * little before it is that far ahead, none later than its granularity).
 */
static u64 parity_at(const struct cpu_ctx *cctx, u64 cur, u64 vtime, u64 now)
{
	return min_u64(cctx->started + wakeup_granularity_ns,
		       now + wakeup_granularity_ns - (cur - vtime));
}

/*
 * Where @p, with @vtime and virtual @deadline, should wait when no CPU is
 * idle: the CPU it preempts (its queue), or -1 for the shared queue.
 *
 * A task that woke up takes, among the allowed CPUs it is entitled to
 * (entitled_to()), the one whose task is furthest ahead in vtime, a plain
 * task's before a registered worker's: preempting a plain task costs it a
 * context switch and nothing of its share (it keeps its lag), while a
 * worker answers a hint by yielding to its runtime too, so workers are
 * asked only when no plain task can give way. A plain victim is preempted
 * at once once it has had its granularity (parity_reached(); else the CPU's
 * timer preempts it when it has, if it has not stopped by then, and it is
 * taken only when no other plain task is ready to give way); a registered
 * worker is asked to yield (ops.dispatch on its CPU hints it and opens its
 * yield window). A task that is not entitled waits on the shared queue,
 * and the first allowed CPU whose task is already past its slice is kicked
 * at once, not at its next tick: a plain task there gives way, a worker
 * learns that it now keeps someone waiting.
 */
static s32 preempt_target(struct task_struct *p, u64 vtime, u64 deadline, u64 enq_flags, u64 now)
{
	struct cpu_ctx *cctx, *plain_ctx = NULL, *worker_ctx = NULL, *late_ctx = NULL;
	bool wakeup = enq_flags & SCX_ENQ_WAKEUP;
	u32 nr = scx_bpf_nr_cpu_ids();
	s32 start = scx_bpf_task_cpu(p);
	s32 plain = -1, worker = -1, late_cpu = -1;
	u64 plain_vtime = 0, worker_vtime = 0, cur;
	bool plain_ready = false, ready;
	u32 i;

	bpf_for(i, 0, MORPHEUS_CPU_SCAN) {
		s32 cpu;

		if (i >= nr)
			break;
		cpu = (start + i) % nr;
		if (!bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		cctx = cpu_ctx(cpu);
		if (!cctx || !cctx->pid)
			continue;
		cur = cpu_curr_vtime(cctx, now);
		if (wakeup && entitled_to(cctx, cur, vtime, deadline)) {
			ready = parity_reached(cctx, cur, vtime, now);
			if (!cctx->worker &&
			    (!plain_ctx || (ready && !plain_ready) ||
			     (ready == plain_ready && vtime_before(plain_vtime, cur)))) {
				plain = cpu;
				plain_ctx = cctx;
				plain_vtime = cur;
				plain_ready = ready;
			} else if (cctx->worker &&
				   (!worker_ctx || vtime_before(worker_vtime, cur))) {
				worker = cpu;
				worker_ctx = cctx;
				worker_vtime = cur;
			}
		}
		if (!late_ctx && !cctx->wait_ts && !(cctx->worker && cctx->hinted) &&
		    now >= cctx->slice_end) {
			late_cpu = cpu;
			late_ctx = cctx;
		}
	}

	if (plain_ctx) {
		stat_inc(&nr_wakeup_preempts);
		if (plain_ready)
			scx_bpf_kick_cpu(plain, SCX_KICK_PREEMPT);
		else
			cpu_timer_arm_by(plain_ctx, parity_at(plain_ctx, plain_vtime, vtime, now),
					 now);
		return plain;
	}
	if (worker_ctx) {
		/* Already asked for another woken task: wait there with it. */
		if (worker_ctx->want_ts)
			return worker;
		worker_ctx->want_ts = now;
		stat_inc(&nr_wakeup_hints);
		scx_bpf_kick_cpu(worker, SCX_KICK_PREEMPT);
		return worker;
	}

	if (late_ctx) {
		late_ctx->wait_ts = now;
		if (!late_ctx->worker)
			stat_inc(&nr_slice_preempts);
		scx_bpf_kick_cpu(late_cpu, SCX_KICK_PREEMPT);
	}
	return -1;
}
