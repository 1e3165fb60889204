/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Registered workers: when a worker is hinted, kept on its CPU or made to
 * give way. Every decision is made on the worker's own CPU (ops.dispatch,
 * ops.running, ops.stopping, ops.tick), where its critical_depth, written
 * by the thread itself, is read in the thread's program order; the
 * remote ops.running/ops.stopping around a change of its properties made
 * from another CPU leave the worker's state alone (called_remotely()).
 * Included by main.bpf.c.
 */

/* What worker_decide() concluded. */
enum worker_verdict {
	WORKER_KEEP,		  /* keeps the CPU until the next decision */
	WORKER_YIELDED,		  /* answered its hint: gives way */
	WORKER_PREEMPT_WINDOW,	  /* a woken task's yield window ran out */
	WORKER_PREEMPT_CRITICAL,  /* a critical section reached the cap */
	WORKER_PREEMPT_OVERRUN,	  /* ran its slice plus its overrun allowance */
	WORKER_PREEMPT_ESCALATED, /* escalated (--enforce) */
	WORKER_PREEMPT_THROTTLED, /* throttled, its (shorter) slice used up */
	WORKER_GONE,		  /* no live SCB: scheduled like any task */
};

/*
 * Whether an escapable worker that lets a hint expire is escalated: with
 * --enforce and a policy that does something. With --escalation none it
 * is treated as in observer mode (its expired hint stays outstanding, and
 * no new one is sent until it answers), not hinted again and again.
 */
static __always_inline bool escalates(const struct morpheus_worker_ctx *wc)
{
	return enforce && (wc->flags & MORPHEUS_WORKER_ESCAPABLE) &&
	       escalation_policy != MORPHEUS_ESCALATION_NONE &&
	       escalation_policy < MORPHEUS_ESCALATION_POLICY_NR;
}

/* CPU time since the worker last blocked or answered a hint. */
static __always_inline u64 worker_ran(const struct morpheus_worker_ctx *wc, u64 now)
{
	return wc->ran_acc + (wc->run_start && now > wc->run_start ? now - wc->run_start : 0);
}

/*
 * The slice of worker @p, and in *@throttled whether it serves a throttle
 * (CGROUP_THROTTLE). A throttled worker gets a 1/MORPHEUS_THROTTLE_FACTOR
 * slice and, when others wait, gives its CPU away at its end with no hint,
 * no grace and no overrun allowance: it has shown that it ignores hints.
 * Its time is also charged MORPHEUS_THROTTLE_FACTOR times (ops.stopping),
 * but a charge alone does not cut its share: a task whose slice ends gives
 * way to whoever waits, so two tasks on a CPU take turns whatever their
 * vtimes. Shorter turns do: against one task running whole slices it gets
 * about 1/(1 + MORPHEUS_THROTTLE_FACTOR) of the CPU.
 */
static u64 worker_slice(struct task_struct *p, u64 now, bool *throttled)
{
	u64 slice = task_slice(p);

	*throttled = is_throttled(p, now);
	if (*throttled)
		slice /= MORPHEUS_THROTTLE_FACTOR;
	return slice;
}

/*
 * Whether the run of @wc starting on @cpu (whose record @cctx has just
 * counted it) only continues its previous one: it was taken off this CPU
 * while runnable and no other task of this scheduler ran here since. That
 * is a task of a higher class (the CPU stopper, which the soft-lockup
 * watchdog runs on every CPU every few seconds; an RT or deadline task)
 * that interrupted it: the kernel puts it back at the head of the CPU's
 * queue with what was left of its slice, and nobody waiting for the CPU
 * got a turn.
 */
static __always_inline bool worker_continues(const struct morpheus_worker_ctx *wc,
					     const struct cpu_ctx *cctx, s32 cpu)
{
	return (wc->flags & MORPHEUS_CTX_PREEMPTED) && wc->stop_cpu == (u32)cpu &&
	       cctx->run_id == wc->stop_run_id + 1;
}

/*
 * The worker starts running on @cpu: a new run with its slice's end (when a
 * hint becomes due if others wait) and the grace period moved by the time
 * it waited for a CPU. A new turn, too, unless the run only continues one
 * that a task outside this scheduler interrupted (worker_continues()): the
 * critical-section cap counts the waiters' time from the turn's start, so
 * that an interruption does not start it again. Arms the CPU's timer for
 * the first decision.
 */
static void worker_running(struct task_struct *p, struct morpheus_worker_ctx *wc,
			   struct cpu_ctx *cctx, s32 cpu, u64 now)
{
	struct morpheus_scb *scb = scb_of(wc);
	bool throttled;
	u64 slice = worker_slice(p, now, &throttled);
	u64 next;

	if (!worker_continues(wc, cctx, cpu))
		wc->turn_start = now;
	wc->flags &= ~MORPHEUS_CTX_PREEMPTED;
	wc->run_start = now;
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
	if (!scb)
		return;
	if (!(wc->flags & MORPHEUS_CTX_STARTED)) {
		wc->flags |= MORPHEUS_CTX_STARTED;
		scb->k.state = MORPHEUS_WORKER_RUNNING;
		stat_inc(&workers_started);
		emit(MORPHEUS_EVENT_WORKER_STATE, p, wc, 0, MORPHEUS_WORKER_RUNNING);
	}

	cctx->worker = true;
	cctx->hinted = wc->hint_seq != 0;
	cpu_worker_set(cpu, wc, true);
	catch_up_on_run(wc, scb);
	cctx->slice_end = now + (slice > wc->ran_acc ? slice - wc->ran_acc : 0);
	next = cctx->slice_end;
	if (wc->hint_seq && !(wc->flags & MORPHEUS_CTX_HINT_EXPIRED))
		next = min_u64(next, wc->hint_deadline);
	cpu_timer_arm(cctx, next, now);
}

/*
 * The worker stops running. A hint is answered by an acknowledgement or by
 * giving up the CPU (blocking). Involuntary preemption does not answer it,
 * and the CPU time keeps counting towards the next hint and the caps.
 * Where and in which run of @cctx's CPU it stopped is kept for
 * worker_continues().
 */
static void worker_stopping(struct task_struct *p, struct morpheus_worker_ctx *wc,
			    struct cpu_ctx *cctx, bool runnable, u64 used, u64 now)
{
	struct morpheus_scb *scb = scb_of(wc);

	wc->stop_ts = now;
	wc->stop_cpu = scx_bpf_task_cpu(p);
	wc->stop_run_id = cctx ? cctx->run_id : 0;
	if (runnable && cctx)
		wc->flags |= MORPHEUS_CTX_PREEMPTED;
	else
		wc->flags &= ~MORPHEUS_CTX_PREEMPTED;
	if (wc->flags & MORPHEUS_CTX_NEW_ROUND) {
		wc->flags &= ~MORPHEUS_CTX_NEW_ROUND;
		wc->ran_acc = 0;
	} else if (wc->hint_seq && scb &&
		   (READ_ONCE(scb->u.ack_seq) >= wc->hint_seq || !runnable)) {
		hint_answered(p, wc, scb, now);
		wc->ran_acc = 0;
	} else if (!runnable) {
		wc->ran_acc = 0;
	} else {
		wc->ran_acc += used;
	}
	if (!runnable)
		wc->contended_since = 0;
	wc->run_start = 0;
}

/*
 * Tick: publishes the load to the worker's SCB and notes a critical
 * section (escalation waits for a whole grace period outside them). No
 * decision is made here.
 */
static void worker_tick(struct morpheus_worker_ctx *wc, u64 now)
{
	struct morpheus_scb *scb = scb_of(wc);

	if (!scb)
		return;
	scb->k.pressure = cur_pressure;
	scb->k.slice_us = (cur_slice_ns ?: slice_ns) / NSEC_PER_USEC;
	/* Untrusted: only ever compared with zero. */
	if (READ_ONCE(scb->u.critical_depth))
		wc->crit_seen = now;
}

/* Tells the worker's runtime (SCBK_THROTTLED) whether it serves a penalty. */
static void worker_publish_throttle(struct morpheus_worker_ctx *wc, bool throttled)
{
	struct morpheus_scb *scb = scb_of(wc);

	if (!scb)
		return;
	if (throttled)
		scb->k.flags |= MORPHEUS_SCBK_THROTTLED;
	else
		scb->k.flags &= ~MORPHEUS_SCBK_THROTTLED;
}

/*
 * The worker's thread exits with its registration live: a hint still
 * outstanding is dropped, and its SCB says it is dead (the loader reaps
 * the slot on the event).
 */
static void worker_exit(struct task_struct *p, struct morpheus_worker_ctx *wc)
{
	struct morpheus_scb *scb;

	if (wc->hint_seq && !(wc->flags & MORPHEUS_CTX_HINT_EXPIRED) && hint_settle(wc))
		stat_inc(&hints_dropped);
	wc->hint_seq = 0;
	scb = scb_of(wc);
	if (scb)
		scb->k.state = MORPHEUS_WORKER_DEAD;
	stat_inc(&workers_exited);
	emit(MORPHEUS_EVENT_WORKER_STATE, p, wc, 0, MORPHEUS_WORKER_DEAD);
}

/*
 * The decision about worker @p, still runnable on @cpu (from ops.dispatch:
 * its slice ran out, a timer or a waker kicked the CPU, or it yielded).
 * Returns the verdict; for WORKER_KEEP, *until is the next decision.
 *
 * Others waiting and its slice used up (or a woken task entitled to its
 * CPU): it is hinted. Then, in this order: a critical section keeps the CPU
 * until others have waited max_critical_ns (shared among them,
 * shared_allowance()); an escapable worker that let a hint expire and has
 * had a whole grace period outside critical sections is escalated
 * (--enforce); a throttled worker's (shorter) slice ending, a woken task's
 * yield window ending, or running its overrun allowance (max_overrun_ns,
 * shared likewise) past its slice, preempts it.
 * Nobody waiting: it goes on.
 */
static u32 worker_decide(struct task_struct *p, struct morpheus_worker_ctx *wc,
			 struct cpu_ctx *cctx, s32 cpu, u64 now, u64 *until)
{
	struct morpheus_scb *scb = scb_of(wc);
	bool throttled;
	u64 slice = worker_slice(p, now, &throttled);
	u64 ran, next, due, waited_since, overrun;
	bool waiters, depth;

	if (!scb)
		return WORKER_GONE;
	ran = worker_ran(wc, now);
	/* Untrusted: only ever compared with zero. */
	depth = READ_ONCE(scb->u.critical_depth) != 0;
	if (depth) {
		if (!wc->crit_start)
			wc->crit_start = now;
		wc->crit_seen = now;
	} else {
		wc->crit_start = 0;
	}
	waiters = others_wait_for(cpu);

	if (wc->hint_seq) {
		if (READ_ONCE(scb->u.ack_seq) >= wc->hint_seq) {
			/* At a safe point: a new round; give way if anyone waits. */
			hint_answered(p, wc, scb, now);
			cctx->hinted = false;
			wc->ran_acc = 0;
			wc->run_start = now;
			cctx->slice_end = now + slice;
			ran = 0;
			if (waiters)
				return WORKER_YIELDED;
		} else if (!(wc->flags & MORPHEUS_CTX_HINT_EXPIRED) && now > wc->hint_deadline) {
			hint_expire(p, wc, now);
		}
	}

	if (!waiters) {
		wc->calm_ts = now;
		wc->contended_since = 0;
		cctx->want_ts = 0;
		cctx->wait_ts = 0;
		next = now + slice;
		if (wc->hint_seq && !(wc->flags & MORPHEUS_CTX_HINT_EXPIRED))
			next = min_u64(next, wc->hint_deadline);
		*until = next;
		return WORKER_KEEP;
	}

	if (!wc->contended_since)
		wc->contended_since = cctx->wait_ts && cctx->wait_ts < now ? cctx->wait_ts : now;

	/*
	 * A woken task wants the CPU: hint at once. Ran a slice while others
	 * have waited more than a blip: hint, due when both became true.
	 */
	due = 0;
	if (cctx->want_ts)
		due = cctx->want_ts;
	else if (ran >= slice)
		due = max_u64(wc->contended_since, cctx->slice_end) + MORPHEUS_WAIT_BLIP_NS;
	if (!wc->hint_seq && due && now >= due && hint_issue(p, wc, scb, now, ran, due))
		cctx->hinted = true;

	if (depth) {
		/*
		 * Critical sections are honoured until others have waited the
		 * cap (their share of it), never beyond. They began waiting
		 * after the last calm decision, or were waiting when this turn
		 * began (worker_running(): an interrupted run resumed is the
		 * same turn, or every interruption would start the cap again).
		 */
		u64 cap = shared_allowance(cpu, max_critical_ns);

		waited_since = wc->calm_ts > wc->turn_start ? wc->calm_ts : wc->turn_start;
		if (!waited_since)
			/* Registered while running: no run start seen yet. */
			waited_since = wc->crit_start;
		if (now - waited_since >= cap) {
			stat_inc(&critical_cap_violations);
			emit(MORPHEUS_EVENT_CRITICAL_CAP, p, wc, wc->hint_seq,
			     now - wc->crit_start);
			wc->crit_start = 0;
			return WORKER_PREEMPT_CRITICAL;
		}
		next = waited_since + cap;
	} else {
		if (throttled && ran >= slice)
			return WORKER_PREEMPT_THROTTLED;
		if (escalates(wc) && (wc->flags & MORPHEUS_CTX_HINT_EXPIRED) &&
		    now - wc->crit_seen >= grace_ns) {
			/*
			 * Recovery, not policy: the worker ignored a hint past
			 * its grace, and has had a whole grace period outside
			 * critical sections to answer it (a hint deferred by a
			 * section is answered at the first checkpoint after it).
			 */
			escalate(p, wc, scb, now);
			wc->flags &= ~MORPHEUS_CTX_HINT_EXPIRED;
			wc->hint_seq = 0;
			cctx->hinted = false;
			return WORKER_PREEMPT_ESCALATED;
		}
		if (cctx->want_ts && now >= cctx->want_ts + yield_window_ns)
			return WORKER_PREEMPT_WINDOW;
		overrun = shared_allowance(cpu, max_overrun_ns);
		if (ran >= slice + overrun) {
			stat_inc(&overrun_cap_violations);
			return WORKER_PREEMPT_OVERRUN;
		}
		next = now + (slice + overrun - ran);
		if (throttled)
			next = min_u64(next, now + (slice - ran));
		if (cctx->want_ts)
			next = min_u64(next, cctx->want_ts + yield_window_ns);
		if (escalates(wc) && (wc->flags & MORPHEUS_CTX_HINT_EXPIRED))
			next = min_u64(next, wc->crit_seen + grace_ns);
	}
	/* When the hint becomes due. */
	if (!wc->hint_seq && ran < slice)
		next = min_u64(next, now + (slice - ran) + MORPHEUS_WAIT_BLIP_NS);
	else if (!wc->hint_seq && due > now)
		next = min_u64(next, due);
	if (wc->hint_seq && !(wc->flags & MORPHEUS_CTX_HINT_EXPIRED))
		next = min_u64(next, wc->hint_deadline);
	*until = next;
	return WORKER_KEEP;
}

/* Worker @p keeps @cpu until @until: its slice and the CPU's timer say so. */
static void worker_keep(struct task_struct *p, struct cpu_ctx *cctx, s32 cpu, u64 now, u64 until)
{
	/* A deadline already passed is decided on again right away. */
	u64 left = until > now ? until - now : 0;

	if (left < MORPHEUS_KEEP_FLOOR_NS)
		left = MORPHEUS_KEEP_FLOOR_NS;
	scx_bpf_task_set_slice(p, left);
	cpu_timer_arm(cctx, now + left, now);
}

/*
 * Worker @p gave its CPU to another task for @verdict. After a cap or an
 * escalation a new round starts when it next runs; a woken task's
 * preemption leaves its round (and outstanding hint) as they were.
 */
static void worker_gave_way(struct morpheus_worker_ctx *wc, u32 verdict)
{
	switch (verdict) {
	case WORKER_PREEMPT_WINDOW:
		stat_inc(&nr_window_preempts);
		break;
	case WORKER_PREEMPT_CRITICAL:
	case WORKER_PREEMPT_OVERRUN:
	case WORKER_PREEMPT_ESCALATED:
	case WORKER_PREEMPT_THROTTLED:
		wc->flags |= MORPHEUS_CTX_NEW_ROUND;
		break;
	default:
		break;
	}
}
