/*-------------------------------------------------------------------------
 *
 * workerchannels.h
 *	  The channels as a dispatcher worker sees them (workerchannels.c):
 *	  loaded with their processors at every claim, and this worker's
 *	  requests on the wire per channel.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/workerchannels.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_WORKERCHANNELS_H
#define WITHDRAWAL_WORKERCHANNELS_H

/* A channel and its processor, as loaded at the last claim */
typedef struct WithdrawalWorkerChannel
{
	char	   *name;
	double		rate;			/* <= 0: no rate limit */
	int			burst;
	int			max_in_flight;	/* <= 0: no cluster-wide cap */
	char	   *processor;
	char	   *driver;
	char	   *base_url;
	char	   *api_secret;
	int			connect_timeout_ms;
	int			request_timeout_ms;
	const char *unsendable;		/* why nothing can be sent, or NULL */
} WithdrawalWorkerChannel;

/*
 * Loads the enabled channels with their processors, in the current
 * transaction and SPI connection, into *channels (valid until the next
 * load); returns how many.  Says, once, when a channel can no longer or
 * can again dispatch, in the log and for monitor_channels.
 */
extern int	WithdrawalWorkerChannelsLoad(WithdrawalWorkerChannel **channels);

/*
 * The most requests one channel may have on this worker's wire: its
 * share (withdrawal.channel_share) when another channel sends over the
 * network, all of it otherwise.
 */
extern int	WithdrawalWorkerChannelShareCap(void);

/* This worker's requests on channel's wire, and a change of their number */
extern int	WithdrawalWorkerChannelInFlight(const char *channel);
extern void WithdrawalWorkerChannelOnWire(const char *channel, int delta);

/* Forgets what the worker kept per channel (the extension was dropped) */
extern void WithdrawalWorkerChannelsForget(void);

#endif							/* WITHDRAWAL_WORKERCHANNELS_H */
