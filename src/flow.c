/*-------------------------------------------------------------------------
 *
 * flow.c
 *	  Flow control of the channels, shared by all dispatcher workers: token
 *	  buckets, in-flight caps, Retry-After pauses, circuit breakers.
 *
 * One fixed array in shared memory holds, per channel, a token bucket and
 * the number of requests each worker has on the wire.  Channels are found
 * by name; a channel that does not fit (more than WITHDRAWAL_MAX_CHANNELS)
 * is served without a shared rate limit or in-flight cap, and nothing
 * says so.
 *
 * Each channel also has a circuit breaker: a run of
 * withdrawal.breaker_failures requests that failed in transport or were
 * answered 5xx opens it, and no worker is granted a send on the channel
 * for withdrawal.breaker_open_time; then it is half-open and grants one
 * request, the probe, to one worker; the probe's answer closes it, or its
 * failure opens it again for twice as long (up to
 * withdrawal.breaker_max_open_time).  Its payouts stay queued meanwhile:
 * a channel that grants nothing is not claimed from, so nothing is marked
 * sent, failed or refunded because of the breaker.
 *
 * The array is protected by the lock of shmem.c's shared state, which
 * shmem.c hands over at start-up; the critical sections are a few
 * arithmetic operations long.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/flow.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "flow.h"
#include "withdrawal.h"

typedef struct WithdrawalChannelSlot
{
	bool		used;
	char		name[NAMEDATALEN];
	double		tokens;			/* current bucket content */
	TimestampTz refilled_at;	/* when tokens was last brought up to date */
	TimestampTz blocked_until;	/* 429 Retry-After: no sends before this */
	int			in_flight[WITHDRAWAL_MAX_WORKERS];	/* per worker */
	/* for monitoring only */
	double		rate;			/* as last reserved with */
	int			burst;
	int64		throttled;		/* Retry-After pauses */
	char		unsendable[WITHDRAWAL_STATUS_TEXT_LEN];
	/* the circuit breaker */
	WithdrawalBreakerState breaker;
	int			breaker_failures;	/* consecutive failures */
	TimestampTz breaker_until;	/* open: nothing is granted before this */
	int			breaker_open_ms;	/* length of the last open period */
	bool		probe_out;		/* half-open: the probe is granted */
	int			probe_worker;	/* ... to this worker */
	TimestampTz probe_at;		/* ... at this time */
	int64		breaker_opened; /* times opened, for monitoring */
} WithdrawalChannelSlot;

/* A change of a breaker's state, logged once the lock is released */
typedef enum BreakerEvent
{
	BREAKER_EVENT_NONE,
	BREAKER_EVENT_OPENED,
	BREAKER_EVENT_REOPENED,
	BREAKER_EVENT_HALF_OPEN,
	BREAKER_EVENT_CLOSED,
	BREAKER_EVENT_DISABLED
} BreakerEvent;

typedef struct WithdrawalFlowState
{
	LWLock	   *lock;			/* shmem.c's */
	WithdrawalChannelSlot channels[WITHDRAWAL_MAX_CHANNELS];
} WithdrawalFlowState;

static WithdrawalFlowState *flow = NULL;

Size
WithdrawalFlowShmemSize(void)
{
	return MAXALIGN(sizeof(WithdrawalFlowState));
}

void
WithdrawalFlowShmemStartup(LWLock *lock)
{
	bool		found;

	flow = ShmemInitStruct("withdrawal channels", WithdrawalFlowShmemSize(), &found);
	if (!found)
	{
		memset(flow, 0, WithdrawalFlowShmemSize());
		flow->lock = lock;
	}
}

void
WithdrawalFlowForgetWorker(int worker)
{
	int			i;

	if (flow == NULL)
		return;
	LWLockAcquire(flow->lock, LW_EXCLUSIVE);
	for (i = 0; i < WITHDRAWAL_MAX_CHANNELS; i++)
	{
		WithdrawalChannelSlot *slot = &flow->channels[i];

		slot->in_flight[worker] = 0;
		/* a probe that dies with its worker is let through again */
		if (slot->probe_out && slot->probe_worker == worker)
			slot->probe_out = false;
	}
	LWLockRelease(flow->lock);
}

/*
 * Finds or creates the slot of a channel; call with the lock held
 * exclusively.  Returns NULL when every slot is taken.
 */
static WithdrawalChannelSlot *
channel_slot(const char *name, double burst)
{
	int			i;
	WithdrawalChannelSlot *free_slot = NULL;

	for (i = 0; i < WITHDRAWAL_MAX_CHANNELS; i++)
	{
		WithdrawalChannelSlot *slot = &flow->channels[i];

		if (slot->used && strcmp(slot->name, name) == 0)
			return slot;
		if (!slot->used && free_slot == NULL)
			free_slot = slot;
	}
	if (free_slot)
	{
		memset(free_slot, 0, sizeof(*free_slot));
		free_slot->used = true;
		strlcpy(free_slot->name, name, NAMEDATALEN);
		free_slot->tokens = burst;
		free_slot->refilled_at = GetCurrentTimestamp();
		free_slot->burst = (int) burst;
	}
	return free_slot;
}

/* A slot's token bucket brought up to now, refilled at rate up to burst */
static double
bucket_tokens(const WithdrawalChannelSlot *slot, double rate, int burst,
			  TimestampTz now)
{
	double		elapsed = (double) (now - slot->refilled_at) / (double) USECS_PER_SEC;

	return Min((double) burst, slot->tokens + Max(elapsed, 0) * rate);
}

/* ---------- the circuit breaker ---------- */

/*
 * Opens a slot's breaker for its next open period: withdrawal.breaker_open_time
 * the first time, twice the last one after a failed probe, at most
 * withdrawal.breaker_max_open_time.  Call with the lock held exclusively.
 */
static void
breaker_open(WithdrawalChannelSlot *slot, TimestampTz now, bool again)
{
	int64		ms = withdrawal_breaker_open_ms;

	if (again && slot->breaker_open_ms > 0)
		ms = Max((int64) slot->breaker_open_ms * 2, ms);
	ms = Min(ms, (int64) Max(withdrawal_breaker_max_open_ms, withdrawal_breaker_open_ms));
	slot->breaker = WITHDRAWAL_BREAKER_OPEN;
	slot->breaker_open_ms = (int) ms;
	slot->breaker_until = TimestampTzPlusMilliseconds(now, ms);
	slot->probe_out = false;
	slot->breaker_opened++;
}

/* Closes a slot's breaker; call with the lock held exclusively */
static void
breaker_close(WithdrawalChannelSlot *slot)
{
	slot->breaker = WITHDRAWAL_BREAKER_CLOSED;
	slot->breaker_failures = 0;
	slot->breaker_open_ms = 0;
	slot->probe_out = false;
}

/*
 * Logs a change of a breaker's state, once: only the process that made
 * the change under the lock logs it, after releasing the lock.
 */
static void
breaker_log(BreakerEvent event, const char *channel, int failures,
			int open_ms, const char *error)
{
	switch (event)
	{
		case BREAKER_EVENT_NONE:
			break;
		case BREAKER_EVENT_OPENED:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker opened after %d consecutive failures",
							channel, failures),
					 errdetail("Nothing is sent on the channel for %d ms; its payouts stay queued.  Last failure: %s",
							   open_ms, error ? error : "unknown")));
			break;
		case BREAKER_EVENT_REOPENED:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker opened again: the probe failed",
							channel),
					 errdetail("Nothing is sent on the channel for %d ms; its payouts stay queued.  Last failure: %s",
							   open_ms, error ? error : "unknown")));
			break;
		case BREAKER_EVENT_HALF_OPEN:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker half-open: sending one probe",
							channel)));
			break;
		case BREAKER_EVENT_CLOSED:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker closed: the probe was answered",
							channel)));
			break;
		case BREAKER_EVENT_DISABLED:
			ereport(LOG,
					(errmsg("withdrawal channel \"%s\" circuit breaker closed: withdrawal.breaker_failures is 0",
							channel)));
			break;
	}
}

/*
 * The breaker's part of a reservation, with the lock held: whether the
 * channel may send at all now, and whether the one request it may send is
 * the half-open probe.  Moves an open breaker whose time is up to
 * half-open.  Returns false (and sets *wait_ms when known) when nothing
 * may be sent.
 */
static bool
breaker_admits(WithdrawalChannelSlot *slot, TimestampTz now, long *wait_ms,
			   bool *half_open, BreakerEvent *event)
{
	*half_open = false;
	if (withdrawal_breaker_failures <= 0)
	{
		if (slot->breaker != WITHDRAWAL_BREAKER_CLOSED)
			*event = BREAKER_EVENT_DISABLED;
		breaker_close(slot);
		return true;
	}
	if (slot->breaker == WITHDRAWAL_BREAKER_OPEN)
	{
		if (slot->breaker_until > now)
		{
			*wait_ms = (long) ((slot->breaker_until - now) / 1000) + 1;
			return false;
		}
		slot->breaker = WITHDRAWAL_BREAKER_HALF_OPEN;
		slot->probe_out = false;
		*event = BREAKER_EVENT_HALF_OPEN;
	}
	if (slot->breaker == WITHDRAWAL_BREAKER_HALF_OPEN)
	{
		/*
		 * One probe at a time.  A probe whose outcome never comes back (its
		 * payouts abandoned with a dropped extension) is given up after a
		 * lease, as its payout would be.
		 */
		if (slot->probe_out &&
			!TimestampDifferenceExceeds(slot->probe_at, now, withdrawal_lease_seconds * 1000))
			return false;
		slot->probe_out = false;
		*half_open = true;
	}
	return true;
}

bool
WithdrawalChannelBreakerNote(const char *channel, int worker,
							 WithdrawalBreakerVerdict verdict, bool probe,
							 const char *error, int burst)
{
	WithdrawalChannelSlot *slot;
	TimestampTz now = GetCurrentTimestamp();
	BreakerEvent event = BREAKER_EVENT_NONE;
	int			failures = 0;
	int			open_ms = 0;

	if (flow == NULL || (verdict == WITHDRAWAL_BREAKER_NONE && !probe))
		return false;
	LWLockAcquire(flow->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot == NULL)
	{
		LWLockRelease(flow->lock);
		return false;
	}
	if (withdrawal_breaker_failures <= 0)
	{
		if (slot->breaker != WITHDRAWAL_BREAKER_CLOSED)
			event = BREAKER_EVENT_DISABLED;
		breaker_close(slot);
	}
	else
	{
		switch (slot->breaker)
		{
			case WITHDRAWAL_BREAKER_CLOSED:
				if (verdict == WITHDRAWAL_BREAKER_SUCCESS)
					slot->breaker_failures = 0;
				else if (verdict == WITHDRAWAL_BREAKER_FAILURE &&
						 ++slot->breaker_failures >= withdrawal_breaker_failures)
				{
					breaker_open(slot, now, false);
					event = BREAKER_EVENT_OPENED;
				}
				break;
			case WITHDRAWAL_BREAKER_OPEN:

				/*
				 * Requests that were on the wire when it opened: they neither
				 * close it (the probe does) nor keep it open longer.
				 */
				break;
			case WITHDRAWAL_BREAKER_HALF_OPEN:
				if (!probe || !slot->probe_out || slot->probe_worker != worker)
					break;
				slot->probe_out = false;
				if (verdict == WITHDRAWAL_BREAKER_SUCCESS)
				{
					breaker_close(slot);
					event = BREAKER_EVENT_CLOSED;
				}
				else if (verdict == WITHDRAWAL_BREAKER_FAILURE)
				{
					slot->breaker_failures++;
					breaker_open(slot, now, true);
					event = BREAKER_EVENT_REOPENED;
				}
				/* a probe that sent nothing: the next claim sends another */
				break;
		}
	}
	failures = slot->breaker_failures;
	open_ms = slot->breaker_open_ms;
	LWLockRelease(flow->lock);

	breaker_log(event, channel, failures, open_ms, error);
	/* the other workers may be waiting for the probe: the channel is open */
	return event == BREAKER_EVENT_CLOSED || event == BREAKER_EVENT_DISABLED;
}

/* ---------- flow control ---------- */

int
WithdrawalChannelReserve(const char *channel, double rate, int burst,
						 int max_in_flight, int worker, int want,
						 long *wait_ms, bool *probe)
{
	WithdrawalChannelSlot *slot;
	TimestampTz now = GetCurrentTimestamp();
	BreakerEvent event = BREAKER_EVENT_NONE;
	bool		half_open;
	int			granted = want;
	int			i;

	*wait_ms = -1;
	*probe = false;
	if (flow == NULL || want <= 0)
		return Max(want, 0);

	LWLockAcquire(flow->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot == NULL)
	{
		LWLockRelease(flow->lock);
		return want;
	}

	slot->rate = rate;
	slot->burst = burst;
	if (slot->blocked_until > now)
	{
		*wait_ms = (long) ((slot->blocked_until - now) / 1000) + 1;
		LWLockRelease(flow->lock);
		return 0;
	}
	if (!breaker_admits(slot, now, wait_ms, &half_open, &event))
	{
		LWLockRelease(flow->lock);
		breaker_log(event, channel, 0, 0, NULL);
		return 0;
	}
	if (half_open)
		granted = Min(granted, 1);

	if (max_in_flight > 0)
	{
		int			total = 0;

		for (i = 0; i < WITHDRAWAL_MAX_WORKERS; i++)
			total += slot->in_flight[i];
		granted = Min(granted, Max(max_in_flight - total, 0));
	}

	if (rate > 0)
	{
		slot->tokens = bucket_tokens(slot, rate, burst, now);
		slot->refilled_at = now;
		granted = Min(granted, (int) floor(slot->tokens));
		slot->tokens -= granted;
		if (granted < want)
		{
			double		missing = 1.0 - (slot->tokens - floor(slot->tokens));

			*wait_ms = (long) ceil(missing / rate * 1000.0);
		}
	}
	else
		slot->tokens = burst;

	if (half_open && granted > 0)
	{
		slot->probe_out = true;
		slot->probe_worker = worker;
		slot->probe_at = now;
		*probe = true;
	}
	slot->in_flight[worker] += granted;
	LWLockRelease(flow->lock);
	breaker_log(event, channel, 0, 0, NULL);
	return granted;
}

void
WithdrawalChannelRelease(const char *channel, int worker, int unsent,
						 int done, int burst)
{
	WithdrawalChannelSlot *slot;

	if (flow == NULL || (unsent <= 0 && done <= 0))
		return;
	LWLockAcquire(flow->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot)
	{
		slot->in_flight[worker] = Max(slot->in_flight[worker] - unsent - done, 0);
		slot->tokens = Min((double) burst, slot->tokens + unsent);
		/* a probe granted and not claimed: the next claim may take it */
		if (unsent > 0 && slot->breaker == WITHDRAWAL_BREAKER_HALF_OPEN &&
			slot->probe_out && slot->probe_worker == worker)
			slot->probe_out = false;
	}
	LWLockRelease(flow->lock);
}

void
WithdrawalChannelBlock(const char *channel, long ms, int burst)
{
	WithdrawalChannelSlot *slot;
	TimestampTz until;

	if (flow == NULL || ms <= 0)
		return;
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	LWLockAcquire(flow->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot && slot->blocked_until < until)
		slot->blocked_until = until;
	if (slot)
		slot->throttled++;
	LWLockRelease(flow->lock);
}

void
WithdrawalChannelNoteUnsendable(const char *channel, const char *why, int burst)
{
	WithdrawalChannelSlot *slot;

	if (flow == NULL)
		return;
	LWLockAcquire(flow->lock, LW_EXCLUSIVE);
	slot = channel_slot(channel, burst);
	if (slot)
		strlcpy(slot->unsendable, why ? why : "", sizeof(slot->unsendable));
	LWLockRelease(flow->lock);
}

/* ---------- monitoring ---------- */

int
WithdrawalShmemChannels(WithdrawalChannelStatus *out, int max)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;
	int			i;

	if (flow == NULL)
		return -1;
	LWLockAcquire(flow->lock, LW_SHARED);
	for (i = 0; i < WITHDRAWAL_MAX_CHANNELS && n < max; i++)
	{
		WithdrawalChannelSlot *slot = &flow->channels[i];
		WithdrawalChannelStatus *st = &out[n];
		int			w;

		if (!slot->used)
			continue;
		memset(st, 0, sizeof(*st));
		strlcpy(st->name, slot->name, sizeof(st->name));
		st->rate = slot->rate;
		st->burst = slot->burst;
		st->tokens = slot->tokens;
		/* the bucket as the next reservation would find it */
		if (slot->rate > 0)
			st->tokens = bucket_tokens(slot, slot->rate, slot->burst, now);
		st->blocked_until = slot->blocked_until;
		st->throttled = slot->throttled;
		for (w = 0; w < WITHDRAWAL_MAX_WORKERS; w++)
			st->in_flight += slot->in_flight[w];
		strlcpy(st->unsendable, slot->unsendable, sizeof(st->unsendable));
		st->breaker = slot->breaker;
		st->breaker_until = slot->breaker_until;
		st->breaker_failures = slot->breaker_failures;
		st->breaker_opened = slot->breaker_opened;
		n++;
	}
	LWLockRelease(flow->lock);
	return n;
}
