/*-------------------------------------------------------------------------
 *
 * workerchannels.c
 *	  The channels as a dispatcher worker sees them: the enabled channels
 *	  and their processors, loaded at every claim (so that a change to a
 *	  channel or a processor applies at the next claim), whether each can
 *	  send at all, its share of the worker, and this worker's requests on
 *	  its wire.
 *
 * A channel that cannot send (unknown driver, no base_url, a URL the
 * policy refuses, a secret missing from withdrawal.secrets_file, a daily
 * cap lowered below what it accepted today) is not claimed from: its
 * payouts stay queued and unsent instead of being claimed, marked sent and
 * failed by the transport.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/workerchannels.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "dispatch.h"
#include "flow.h"
#include "policy.h"
#include "processor.h"
#include "secrets.h"
#include "spi.h"
#include "url.h"
#include "withdrawal.h"
#include "workerchannels.h"
#include "workerproc.h"

/* Initial size of the per-channel state table (it grows) */
#define CHANNEL_STATES_SIZE	16

/*
 * What this worker keeps per channel across reloads: its requests on the
 * wire (for the channel's share of the worker) and the last reason the
 * channel could not send (logged when it changes).
 */
typedef struct ChannelState
{
	char		name[NAMEDATALEN];	/* hash key */
	int			in_flight;
	char		unsendable[WITHDRAWAL_STATUS_TEXT_LEN];
	bool		shared_noted;	/* unsendable copied to shared memory */
} ChannelState;

static MemoryContext channel_cxt = NULL;
static WithdrawalWorkerChannel *channels = NULL;
static int	nchannels = 0;
static HTAB *channel_states = NULL;
static int	network_channels = 0;	/* sendable channels not decided locally */

/* This worker's state of a channel, made at the first look */
static ChannelState *
channel_state(const char *name)
{
	char		key[NAMEDATALEN];
	bool		found;
	ChannelState *state;

	if (channel_states == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(ChannelState);
		ctl.hcxt = MyWithdrawalWorker.cxt;
		channel_states = hash_create("withdrawal worker channels", CHANNEL_STATES_SIZE, &ctl,
									 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, name, NAMEDATALEN);
	state = hash_search(channel_states, key, HASH_ENTER, &found);
	if (!found)
	{
		state->in_flight = 0;
		state->unsendable[0] = '\0';
		state->shared_noted = false;
	}
	return state;
}

/*
 * Why a channel cannot send anything now, or NULL: checked before a claim,
 * so that its payouts stay queued (and unsent) instead of being claimed,
 * marked sent and failed by the transport.
 */
static const char *
channel_unsendable(const WithdrawalWorkerChannel *c)
{
	const WithdrawalDriver *driver = WithdrawalDriverFind(c->driver);
	char	   *why;

	if (driver == NULL)
		return psprintf("processor \"%s\" has unknown driver \"%s\"", c->processor, c->driver);
	if (driver->decide != NULL)
		return NULL;
	if (c->base_url == NULL)
		return psprintf("processor \"%s\" has no base_url", c->processor);
	if (!WithdrawalUrlAllowed(c->base_url, &why))
		return why;
	if (c->api_secret && WithdrawalSecretGet(c->api_secret) == NULL)
		return psprintf("api secret \"%s\" of processor \"%s\" is not in withdrawal.secrets_file",
						c->api_secret, c->processor);
	return NULL;
}

/*
 * Logs a channel's ability to send when it changes, and shows it in
 * shared memory for monitor_channels (also at the first look after a
 * start: the shared copy may date from a previous worker).
 */
static void
note_sendable(const WithdrawalWorkerChannel *c)
{
	ChannelState *state = channel_state(c->name);
	const char *why = c->unsendable ? c->unsendable : "";
	bool		changed = strncmp(state->unsendable, why, sizeof(state->unsendable) - 1) != 0;

	if (changed || !state->shared_noted)
	{
		WithdrawalChannelNoteUnsendable(c->name, c->unsendable, c->burst);
		state->shared_noted = true;
	}
	if (!changed)
		return;
	if (c->unsendable)
		ereport(WARNING,
				(errmsg("withdrawal channel \"%s\" cannot dispatch: %s", c->name, c->unsendable),
				 errdetail("Its payouts stay queued and are not sent until this is fixed.")));
	else
		ereport(LOG,
				(errmsg("withdrawal channel \"%s\" can dispatch again", c->name)));
	strlcpy(state->unsendable, why, sizeof(state->unsendable));
}

int
WithdrawalWorkerChannelsLoad(WithdrawalWorkerChannel **loaded)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext old;
	int			i;

	WithdrawalPrepare(&plan,
					  "SELECT c.name, c.rate_per_second, c.burst, c.max_in_flight,"
					  "       p.name, p.driver, p.base_url, p.api_secret,"
					  "       p.connect_timeout_ms, p.request_timeout_ms"
					  "  FROM withdrawal.channel c JOIN withdrawal.processor p"
					  "    ON p.name = c.processor"
					  " WHERE c.enabled",
					  0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 0, SPI_OK_SELECT);

	if (channel_cxt == NULL)
		channel_cxt = AllocSetContextCreate(MyWithdrawalWorker.cxt, "withdrawal channels",
											ALLOCSET_SMALL_SIZES);
	MemoryContextReset(channel_cxt);
	old = MemoryContextSwitchTo(channel_cxt);
	nchannels = (int) SPI_processed;
	channels = palloc0(sizeof(WithdrawalWorkerChannel) * Max(nchannels, 1));
	for (i = 0; i < nchannels; i++)
	{
		WithdrawalWorkerChannel *c = &channels[i];
		bool		isnull;
		Datum		d;

		c->name = WithdrawalSpiGetText(i, 1);
		d = WithdrawalSpiGet(i, 2, &isnull);
		c->rate = isnull ? 0 : DatumGetFloat8(d);
		c->burst = DatumGetInt32(WithdrawalSpiGet(i, 3, &isnull));
		d = WithdrawalSpiGet(i, 4, &isnull);
		c->max_in_flight = isnull ? 0 : DatumGetInt32(d);
		c->processor = WithdrawalSpiGetText(i, 5);
		c->driver = WithdrawalSpiGetText(i, 6);
		c->base_url = WithdrawalSpiGetText(i, 7);
		c->api_secret = WithdrawalSpiGetText(i, 8);
		c->connect_timeout_ms = DatumGetInt32(WithdrawalSpiGet(i, 9, &isnull));
		c->request_timeout_ms = DatumGetInt32(WithdrawalSpiGet(i, 10, &isnull));
		c->unsendable = channel_unsendable(c);
	}
	MemoryContextSwitchTo(old);
	network_channels = 0;
	for (i = 0; i < nchannels; i++)
	{
		const WithdrawalDriver *driver = WithdrawalDriverFind(channels[i].driver);

		/*
		 * A daily cap lowered below what the channel accepted today holds
		 * its payouts until the channel's next day (policy.c).  Read after
		 * the loop above: it may reload the policy cache through SPI.
		 */
		if (channels[i].unsendable == NULL)
		{
			old = MemoryContextSwitchTo(channel_cxt);
			channels[i].unsendable = WithdrawalChannelCapHold(channels[i].name);
			MemoryContextSwitchTo(old);
		}
		note_sendable(&channels[i]);
		if (channels[i].unsendable == NULL && driver != NULL && driver->decide == NULL)
			network_channels++;
	}
	*loaded = channels;
	return nchannels;
}

int
WithdrawalWorkerChannelShareCap(void)
{
	if (network_channels <= 1)
		return withdrawal_max_in_flight;
	return Max(1, withdrawal_max_in_flight * withdrawal_channel_share / 100);
}

int
WithdrawalWorkerChannelInFlight(const char *channel)
{
	return channel_state(channel)->in_flight;
}

void
WithdrawalWorkerChannelOnWire(const char *channel, int delta)
{
	channel_state(channel)->in_flight += delta;
}

void
WithdrawalWorkerChannelsForget(void)
{
	hash_destroy(channel_states);
	channel_states = NULL;
}
