/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Catch-ups: I/O for a process whose workers are all busy.
 *
 * An async runtime notices new I/O only when one of its workers polls its
 * I/O driver: when it parks (blocks in epoll_wait) or yields between
 * tasks. While every worker runs a long task, a request that arrives waits
 * for the next such yield, however idle the rest of the process: under
 * load that is a hint or a local budget away, milliseconds. The kernel
 * sees the moment it arrives: epoll's wake-up callback (ep_poll_callback)
 * runs for the runtime's epoll instance and finds nobody waiting. Then the
 * worker of that process running on some CPU gets a catch-up in its
 * signal word (abi.h), and at its next checkpoint its runtime serves its
 * ready tasks, the I/O driver first, and keeps the CPU; when none of its
 * workers runs, the first to run again gets it. A catch-up costs the
 * worker a pass through its runtime's scheduler and gains it no CPU time.
 *
 * Which process an epoll instance serves is learned from its waiters:
 * when the callback finds a registered worker waiting on it (a parked
 * runtime), the instance is recorded as that process's. Nothing else is
 * traced: a wake-up of an instance no worker ever waited on costs one
 * hash lookup.
 *
 * The callback runs in the waker's context (a softirq for network
 * packets, the writer for local sockets and pipes), on any CPU: it reads
 * other CPUs' running workers (cpu_workers) without synchronisation. A
 * worker that stops meanwhile finds its catch-up at its next checkpoint,
 * which is harmless. Included by main.bpf.c.
 */

/* The registered worker a CPU runs, for catch-ups (tgid 0: none). */
struct cpu_worker {
	u32 tgid;
	u32 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MORPHEUS_MAX_CPUS);
	__type(key, u32);
	__type(value, struct cpu_worker);
} cpu_workers SEC(".maps");

/* epoll instance (struct eventpoll address) -> the process it serves. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MORPHEUS_MAX_EPOLL_OWNERS);
	__type(key, u64);
	__type(value, u32);
} epoll_owners SEC(".maps");

/* Process with a catch-up due while none of its workers ran -> since when. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MORPHEUS_MAX_PROCESSES);
	__type(key, u32);
	__type(value, u64);
} deferred_catch_ups SEC(".maps");

/* The record of what @cpu runs for catch-ups, or NULL. */
static __always_inline struct cpu_worker *cpu_worker(s32 cpu)
{
	u32 key = cpu;

	return bpf_map_lookup_elem(&cpu_workers, &key);
}

/* Worker @wc starts (@on) or stops running on @cpu. */
static void cpu_worker_set(s32 cpu, const struct morpheus_worker_ctx *wc, bool on)
{
	struct cpu_worker *cw = cpu_worker(cpu);

	if (!cw)
		return;
	if (on) {
		cw->slot = wc->slot;
		WRITE_ONCE(cw->tgid, wc->tgid);
	} else {
		WRITE_ONCE(cw->tgid, 0);
	}
}

/* One more catch-up in @scb's signal word. */
static void catch_up_signal(struct morpheus_scb *scb)
{
	u64 field = MORPHEUS_CATCH_UP_MASK << MORPHEUS_CATCH_UP_SHIFT;
	u64 old, word;
	u32 i;

	/* Bounded: a loss only delays the catch-up to the next I/O. */
	bpf_for(i, 0, 4) {
		old = READ_ONCE(scb->k.hint_seq);
		word = (old & ~field) | ((old + (1ull << MORPHEUS_CATCH_UP_SHIFT)) & field);
		word &= MORPHEUS_SIGNAL_KERNEL_BITS;
		if (__sync_val_compare_and_swap(&scb->k.hint_seq, old, word) == old) {
			stat_inc(&catch_ups);
			return;
		}
	}
}

/*
 * I/O became ready for process @tgid with none of its threads waiting:
 * a catch-up for a worker of it running on some CPU, else for the first
 * to run.
 */
static void catch_up_process(u32 tgid, u64 now)
{
	u32 nr = scx_bpf_nr_cpu_ids();
	struct morpheus_scb *scb;
	struct cpu_worker *cw;
	u32 i;

	bpf_for(i, 0, MORPHEUS_CPU_SCAN) {
		if (i >= nr)
			break;
		cw = cpu_worker(i);
		if (!cw || READ_ONCE(cw->tgid) != tgid)
			continue;
		scb = scb_at(tgid, READ_ONCE(cw->slot));
		if (scb) {
			catch_up_signal(scb);
			return;
		}
	}
	/*
	 * The wait starts at the first catch-up due since one of its workers
	 * last ran: a later one must not restart catch_up_delay_hist's clock.
	 */
	bpf_map_update_elem(&deferred_catch_ups, &tgid, &now, BPF_NOEXIST);
	stat_inc(&catch_ups_deferred);
}

/*
 * Worker @wc starts running: a catch-up that came due for its process
 * while none of its workers ran is its, and how long the I/O waited for
 * it is counted (catch_up_delay_hist).
 */
static void catch_up_on_run(const struct morpheus_worker_ctx *wc, struct morpheus_scb *scb)
{
	u32 tgid = wc->tgid;
	u64 *due = bpf_map_lookup_elem(&deferred_catch_ups, &tgid);
	u64 since, now = bpf_ktime_get_ns();

	if (!due)
		return;
	since = *due;
	if (bpf_map_delete_elem(&deferred_catch_ups, &tgid))
		return;
	hist_add(catch_up_delay_hist, now > since ? now - since : 0);
	catch_up_signal(scb);
}

/*
 * Whether @t, a task that waits on an epoll instance, is a registered
 * worker: then the instance serves its process.
 */
static bool waiter_is_worker(struct task_struct *t)
{
	struct task_struct *task;
	bool worker = false;

	task = bpf_task_from_pid(BPF_CORE_READ(t, pid));
	if (!task)
		return false;
	worker = worker_of(task) != NULL;
	bpf_task_release(task);
	return worker;
}

/*
 * epoll's wake-up callback for the item behind @wait (an fd of an epoll
 * instance became ready with @key's events): learns the instance's owner
 * from a worker waiting on it, or, with nobody waiting, asks the owner's
 * running worker to catch up.
 */
SEC("fentry/ep_poll_callback")
int BPF_PROG(morpheus_epoll_ready, wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct eppoll_entry *pwq = (void *)wait - bpf_core_field_offset(struct eppoll_entry, wait);
	struct epitem *epi = BPF_CORE_READ(pwq, base);
	struct eventpoll *ep = BPF_CORE_READ(epi, ep);
	u64 events = (u64)key, id = (u64)ep;
	struct list_head *first, *head;
	struct task_struct *waiter;
	u32 tgid, *owner;

	if (!ep)
		return 0;
	/* Not an event the item waits for: epoll ignores it too. */
	if (events && !(events & BPF_CORE_READ(epi, event.events)))
		return 0;

	owner = bpf_map_lookup_elem(&epoll_owners, &id);
	head = &ep->wq.head;
	first = BPF_CORE_READ(ep, wq.head.next);
	if (first && first != head) {
		/* Someone waits and is being woken: learn who, nothing else. */
		waiter = BPF_CORE_READ(
			(wait_queue_entry_t *)((void *)first -
					       bpf_core_field_offset(wait_queue_entry_t, entry)),
			private);
		tgid = BPF_CORE_READ(waiter, tgid);
		if ((!owner || *owner != tgid) && waiter_is_worker(waiter))
			bpf_map_update_elem(&epoll_owners, &id, &tgid, BPF_ANY);
		return 0;
	}
	if (owner)
		catch_up_process(*owner, bpf_ktime_get_ns());
	return 0;
}
