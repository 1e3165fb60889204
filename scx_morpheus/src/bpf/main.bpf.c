/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * scx_morpheus: a sched_ext scheduler that asks registered async-runtime
 * workers to yield at their own safe points.
 *
 * Scheduling policy for every task: weighted virtual time on one shared
 * queue. A task's vtime advances by the time it ran scaled by the inverse of
 * its weight (nice levels), so CPU time is shared in proportion to weight; a
 * task that slept is placed at most one slice behind the current vtime so it
 * cannot bank unbounded credit, and nothing starves. Wakeups that find an
 * idle CPU go straight to it.
 */
#include <scx/common.bpf.h>
#include "intf.h"

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

/* Tunables, set by the loader before load. */
const volatile u64 slice_ns = MORPHEUS_DEFAULT_SLICE_NS;

/*
 * Test hook: when the loader sets this non-zero (--inject-error-after-ms),
 * the next tick ejects the scheduler through scx_bpf_error(), exercising the
 * kernel's fallback path and the loader's exit report.
 */
volatile u32 inject_error;

/* Counters read by the loader (stats.rs). */
u64 nr_direct_dispatches;  /* wakeups placed straight on an idle CPU */
u64 nr_shared_enqueues;	   /* tasks queued on the shared vtime queue */
u64 nr_shared_dispatches;  /* tasks moved from it to a CPU */
u64 nr_idle_kicks;	   /* idle CPUs woken for newly queued work */
u64 nr_ticks;		   /* scheduler ticks observed */
u64 nr_queued_max;	   /* deepest shared queue seen at a tick */

/* The vtime of the most recently started task: the "now" of the queue. */
static u64 vtime_now;

static __always_inline void stat_inc(u64 *counter)
{
	__sync_fetch_and_add(counter, 1);
}

s32 BPF_STRUCT_OPS(morpheus_select_cpu, struct task_struct *p, s32 prev_cpu,
		   u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu;

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (is_idle) {
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_ns, 0);
		stat_inc(&nr_direct_dispatches);
	}
	return cpu;
}

void BPF_STRUCT_OPS(morpheus_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 vtime = p->scx.dsq_vtime;
	s32 cpu;

	/* A task that slept may lag the queue by at most one slice. */
	if (time_before(vtime, vtime_now - slice_ns))
		vtime = vtime_now - slice_ns;

	scx_bpf_dsq_insert_vtime(p, MORPHEUS_SHARED_DSQ, slice_ns, vtime, enq_flags);
	stat_inc(&nr_shared_enqueues);

	/* Work queued while a CPU sleeps must not wait for that CPU's tick. */
	cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	if (cpu >= 0) {
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		stat_inc(&nr_idle_kicks);
	}
}

void BPF_STRUCT_OPS(morpheus_dispatch, s32 cpu, struct task_struct *prev)
{
	if (scx_bpf_dsq_move_to_local(MORPHEUS_SHARED_DSQ, 0))
		stat_inc(&nr_shared_dispatches);
}

void BPF_STRUCT_OPS(morpheus_running, struct task_struct *p)
{
	if (time_before(vtime_now, p->scx.dsq_vtime))
		vtime_now = p->scx.dsq_vtime;
}

void BPF_STRUCT_OPS(morpheus_stopping, struct task_struct *p, bool runnable)
{
	u64 used = slice_ns > p->scx.slice ? slice_ns - p->scx.slice : 0;

	/* Charge the time used, scaled by the inverse of the task's weight. */
	scx_bpf_task_set_dsq_vtime(p, p->scx.dsq_vtime + used * 100 / p->scx.weight);
}

void BPF_STRUCT_OPS(morpheus_tick, struct task_struct *p)
{
	u64 queued;

	stat_inc(&nr_ticks);

	queued = scx_bpf_dsq_nr_queued(MORPHEUS_SHARED_DSQ);
	if (queued > nr_queued_max)
		nr_queued_max = queued;

	if (inject_error)
		scx_bpf_error("injected error %u (test hook --inject-error-after-ms)",
			      inject_error);
}

void BPF_STRUCT_OPS(morpheus_enable, struct task_struct *p)
{
	scx_bpf_task_set_dsq_vtime(p, vtime_now);
}

s32 BPF_STRUCT_OPS_SLEEPABLE(morpheus_init)
{
	return scx_bpf_create_dsq(MORPHEUS_SHARED_DSQ, -1);
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
	       .init		= (void *)morpheus_init,
	       .exit		= (void *)morpheus_exit,
	       .timeout_ms	= MORPHEUS_WATCHDOG_TIMEOUT_MS,
	       .name		= "morpheus");
