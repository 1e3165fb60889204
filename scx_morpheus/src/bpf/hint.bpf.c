/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Hints and escalation: a registered worker's SCB, issuing, answering and
 * expiring hints with their histograms and events, and the escalation
 * policies (kick, throttle). Included by main.bpf.c.
 */

/*
 * Records an event for the loader (reaping exited workers, --debug). The
 * loader is never woken for one: it drains the ring every
 * MORPHEUS_EVENT_DRAIN_MS. A wakeup per event would cost a context switch
 * per hint, and the woken loader would take a CPU from the very workers
 * being hinted.
 */
static void emit(u32 kind, struct task_struct *p, struct morpheus_worker_ctx *wc, u64 seq,
		 u64 value)
{
	struct morpheus_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(&ring_drops);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->tgid = p->tgid;
	e->tid = p->pid;
	e->slot = wc->slot;
	e->hint_seq = seq;
	e->value = value;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* The word @wc's lease holds while its registration is live in @state. */
static __always_inline u64 lease_word(const struct morpheus_worker_ctx *wc, u32 state)
{
	return ((u64)wc->lease_gen << 32) | state;
}

/* @wc's lease word in the leases array. */
static __always_inline u64 *lease_of(const struct morpheus_worker_ctx *wc)
{
	u32 key = wc->lease;

	return bpf_map_lookup_elem(&leases, &key);
}

/*
 * Moves @wc's lease from @from to @to. False when it does not hold @from:
 * the loader ended the registration (and settled any outstanding hint).
 */
static bool lease_move(const struct morpheus_worker_ctx *wc, u32 from, u32 to)
{
	u64 *lease = lease_of(wc);
	u64 old = lease_word(wc, from);

	return lease && __sync_val_compare_and_swap(lease, old, lease_word(wc, to)) == old;
}

/*
 * The registration of @p, or NULL: none, another process's (a registration
 * only ever applies to a thread of the registering process), or one the
 * loader ended (its lease ended or serves another registration).
 */
static __always_inline struct morpheus_worker_ctx *worker_of(struct task_struct *p)
{
	struct morpheus_worker_ctx *wc;
	u64 *lease, held;

	wc = bpf_task_storage_get(&worker_ctxs, p, 0, 0);
	if (!wc || wc->tgid != (u32)p->tgid)
		return NULL;
	lease = lease_of(wc);
	if (!lease)
		return NULL;
	held = READ_ONCE(*lease);
	if (held != lease_word(wc, MORPHEUS_LEASE_IDLE) &&
	    held != lease_word(wc, MORPHEUS_LEASE_HINTED))
		return NULL;
	return wc;
}

/*
 * The SCB of slot @slot of process @tgid, or NULL when the process's SCB
 * array is gone (its session ended). The client can write every byte of the SCB, the kernel
 * line too, so nothing BPF decides on is read back from the kernel line:
 * the registration lives in @wc (task storage only the loader and BPF
 * write), and the kernel line is a copy BPF writes out for the runtime.
 */
static struct morpheus_scb *scb_at(u32 tgid, u32 slot)
{
	void *array = bpf_map_lookup_elem(&scb_maps, &tgid);

	if (!array)
		return NULL;
	return bpf_map_lookup_elem(array, &slot);
}

/* The SCB of registration @wc (scb_at() of its process and slot). */
static __always_inline struct morpheus_scb *scb_of(struct morpheus_worker_ctx *wc)
{
	return scb_at(wc->tgid, wc->slot);
}

/*
 * Stores hint sequence @seq in @scb's signal word, keeping its catch-ups
 * (io.bpf.c adds those from other CPUs, hence the compare-and-swap). After
 * four lost races the word is simply replaced: the hint must get through,
 * a lost catch-up only delays serving I/O to the next event.
 */
static void hint_signal(struct morpheus_scb *scb, u64 seq)
{
	u64 old, word;
	u32 i;

	bpf_for(i, 0, 4) {
		old = READ_ONCE(scb->k.hint_seq);
		word = ((old & ~MORPHEUS_HINT_SEQ_MASK) | (seq & MORPHEUS_HINT_SEQ_MASK)) &
		       MORPHEUS_SIGNAL_KERNEL_BITS;
		if (__sync_val_compare_and_swap(&scb->k.hint_seq, old, word) == old)
			return;
	}
	__atomic_exchange_n(&scb->k.hint_seq, seq & MORPHEUS_HINT_SEQ_MASK, __ATOMIC_SEQ_CST);
}

/*
 * Asks @p to yield at its next checkpoint. @due is when the hint became
 * due (its slice ran out while others waited, or a task started waiting
 * behind it, or a woken task became entitled to its CPU); the delay to now
 * goes into hint_delay_hist. False, and nothing issued, when the loader
 * has just ended the registration.
 */
static bool hint_issue(struct task_struct *p, struct morpheus_worker_ctx *wc,
		       struct morpheus_scb *scb, u64 now, u64 ran, u64 due)
{
	u64 seq;

	if (!lease_move(wc, MORPHEUS_LEASE_IDLE, MORPHEUS_LEASE_HINTED))
		return false;
	seq = ++wc->last_hint_seq;
	wc->hint_seq = seq;
	wc->hint_ts = now;
	wc->hint_deadline = now + grace_ns;
	wc->flags &= ~MORPHEUS_CTX_HINT_EXPIRED;
	/*
	 * Issue time and deadline must be visible before the new sequence:
	 * the compare-and-swap is a full barrier. The sequence comes from
	 * @wc, not from the SCB, whose value the client may have overwritten.
	 */
	scb->k.hint_issued_ns = now;
	scb->k.hint_deadline_ns = wc->hint_deadline;
	hint_signal(scb, seq);
	stat_inc(&hints_sent);
	hist_add(hint_delay_hist, due && due < now ? now - due : 0);
	emit(MORPHEUS_EVENT_HINT, p, wc, seq, ran);
	return true;
}

/*
 * Settles @wc's outstanding hint: true when it is ours to count (the
 * loader did not end the registration first and count it as dropped).
 */
static bool hint_settle(struct morpheus_worker_ctx *wc)
{
	return lease_move(wc, MORPHEUS_LEASE_HINTED, MORPHEUS_LEASE_IDLE);
}

/*
 * The worker acknowledged its hint or gave up its CPU. An expired hint was
 * already counted at its deadline.
 */
static void hint_answered(struct task_struct *p, struct morpheus_worker_ctx *wc,
			  struct morpheus_scb *scb, u64 now)
{
	u64 resp = now - wc->hint_ts;
	bool expired = wc->flags & MORPHEUS_CTX_HINT_EXPIRED;

	if (!expired && hint_settle(wc)) {
		stat_inc(&hints_answered);
		if (now <= wc->hint_deadline) {
			stat_inc(&hints_answered_in_grace);
			if (scb)
				__sync_fetch_and_add(&scb->k.hints_answered, 1);
		}
		hist_add(hint_response_hist, resp);
		emit(MORPHEUS_EVENT_ANSWERED, p, wc, wc->hint_seq, resp);
	}
	wc->hint_seq = 0;
	wc->flags &= ~MORPHEUS_CTX_HINT_EXPIRED;
}

/* The outstanding hint's deadline passed unanswered. */
static void hint_expire(struct task_struct *p, struct morpheus_worker_ctx *wc, u64 now)
{
	wc->flags |= MORPHEUS_CTX_HINT_EXPIRED;
	if (!hint_settle(wc))
		return;
	stat_inc(&hints_expired);
	emit(MORPHEUS_EVENT_EXPIRED, p, wc, wc->hint_seq, now - wc->hint_ts);
}

/*
 * Sets @key to the throttle entry for @p: its user in its cgroup, or in its
 * process in the root cgroup (never the root cgroup as a whole). A throttle
 * reaches the offender's other tasks in the same group, never another
 * user's.
 */
static void throttle_key(struct task_struct *p, struct morpheus_throttle_key *key)
{
	key->group = BPF_CORE_READ(p, cgroups, dfl_cgrp, kn, id);
	key->uid = BPF_CORE_READ(p, real_cred, uid.val);
	key->__pad = 0;
	if (key->group <= 1)
		key->group = (1ull << 63) | (u32)p->tgid;
}

/*
 * Whether @p's group serves a throttle now; an expired entry is removed
 * (and throttles_active counted down) on the way.
 */
static bool is_throttled(struct task_struct *p, u64 now)
{
	struct morpheus_throttle_key key;
	struct morpheus_throttle *t;

	if (!throttles_active)
		return false;
	throttle_key(p, &key);
	t = bpf_map_lookup_elem(&throttled, &key);
	if (!t)
		return false;
	if (now < t->until_ns)
		return true;
	if (!bpf_map_delete_elem(&throttled, &key))
		__sync_fetch_and_sub(&throttles_active, 1);
	return false;
}

/* Throttles @p's group (throttle_key()) for throttle_ns from @now. */
static void throttle(struct task_struct *p, u64 now)
{
	struct morpheus_throttle t = {.until_ns = now + throttle_ns};
	struct morpheus_throttle_key key;

	throttle_key(p, &key);

	if (!bpf_map_update_elem(&throttled, &key, &t, BPF_NOEXIST))
		__sync_fetch_and_add(&throttles_active, 1);
	else
		bpf_map_update_elem(&throttled, &key, &t, BPF_EXIST);
	stat_inc(&throttles);
}

/*
 * Applies the escalation policy to @p, running on this CPU (only when
 * escalates() holds: --enforce, an escapable worker, a policy that acts).
 */
static void escalate(struct task_struct *p, struct morpheus_worker_ctx *wc,
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
	/* escalates() admits no other policy; the bound is the verifier's. */
	if (policy >= MORPHEUS_ESCALATION_POLICY_NR)
		return;

	if (policy == MORPHEUS_ESCALATION_CGROUP_THROTTLE)
		throttle(p, now);
	__sync_fetch_and_add(&escalations[policy], 1);
	__sync_fetch_and_add(&scb->k.escalations, 1);
	emit(MORPHEUS_EVENT_ESCALATED, p, wc, wc->hint_seq, policy);
}
