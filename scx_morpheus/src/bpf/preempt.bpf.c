/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Wake-up preemption, and hints for tasks that start waiting, decided on
 * the CPU of the task that becomes runnable (ops.enqueue, no CPU idle).
 * Included by main.bpf.c.
 */

/*
 * Where @p, with @vtime and virtual @deadline, should wait when no CPU is idle: the
 * CPU it preempts (its queue), or -1 for the shared queue.
 *
 * The victim is the allowed CPU whose task is furthest ahead in vtime. A
 * task that woke up is entitled to that CPU when it is not ahead of the
 * victim's task and its virtual deadline is earlier than the victim's, as
 * EEVDF decides. A plain victim is preempted
 * at once; a registered worker is asked to yield (ops.dispatch on its CPU
 * hints it and opens its yield window). A task that is not entitled waits
 * on the shared queue, and a worker already past its slice learns at once
 * that it now keeps someone waiting.
 */
static s32 preempt_target(struct task_struct *p, u64 vtime, u64 deadline, u64 enq_flags,
			  u64 now)
{
	struct cpu_ctx *cctx, *victim_ctx = NULL, *hint_ctx = NULL;
	u32 nr = scx_bpf_nr_cpu_ids();
	s32 start = scx_bpf_task_cpu(p);
	s32 victim = -1, hint_cpu = -1;
	u64 victim_vtime = 0, cur;
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
		if (!victim_ctx || vtime_before(victim_vtime, cur)) {
			victim = cpu;
			victim_ctx = cctx;
			victim_vtime = cur;
		}
		if (!hint_ctx && cctx->worker && !cctx->hinted && !cctx->wait_ts &&
		    now >= cctx->slice_end) {
			hint_cpu = cpu;
			hint_ctx = cctx;
		}
	}

	if (victim_ctx && (enq_flags & SCX_ENQ_WAKEUP) && !vtime_before(victim_vtime, vtime) &&
	    vtime_before(deadline, victim_ctx->deadline)) {
		if (victim_ctx->worker) {
			if (victim_ctx->want_ts)
				return victim;
			victim_ctx->want_ts = now;
			stat_inc(&nr_wakeup_hints);
		} else {
			stat_inc(&nr_wakeup_preempts);
		}
		scx_bpf_kick_cpu(victim, SCX_KICK_PREEMPT);
		return victim;
	}

	if (hint_ctx) {
		hint_ctx->wait_ts = now;
		scx_bpf_kick_cpu(hint_cpu, SCX_KICK_PREEMPT);
	}
	return -1;
}
