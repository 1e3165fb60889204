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
	NSEC_PER_USEC = 1000,
	NSEC_PER_MSEC = 1000 * 1000,
};

#endif /* __MORPHEUS_INTF_H */
