/*-------------------------------------------------------------------------
 *
 * monitor.c
 *	  SQL read functions over the shared state of the dispatcher: each
 *	  channel's flow control and circuit breaker, and each worker's own
 *	  report.
 *
 * The monitoring views (sql/install/60_monitor.sql) join these with the
 * tables.  Everything here is a copy taken under the lock that protects
 * it (shmem.c), so a reader never sees a half-written message, and never
 * holds a lock while it builds rows.  Without shared_preload_libraries
 * there is no shared state: the functions return no rows, and the views
 * show NULL where the state would be.
 *
 * The worker's pid and errors are here because pg_stat_activity shows
 * another role's process only to members of pg_read_all_stats, and the
 * server log only to whoever can read its files.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/monitor.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "flow.h"
#include "shmem.h"
#include "withdrawal.h"

PG_FUNCTION_INFO_V1(withdrawal_channel_state);
PG_FUNCTION_INFO_V1(withdrawal_monitor_workers);

#define CHANNEL_STATE_COLS	12
#define WORKER_COLS			15

/* The circuit breaker's states, as monitor_channels names them */
static const char *const breaker_state_names[] = {
	[WITHDRAWAL_BREAKER_CLOSED] = "closed",
	[WITHDRAWAL_BREAKER_OPEN] = "open",
	[WITHDRAWAL_BREAKER_HALF_OPEN] = "half-open",
};

/* A timestamp column: NULL for the zero that means "never" */
static void
put_timestamp(Datum *values, bool *nulls, int col, TimestampTz ts)
{
	values[col] = TimestampTzGetDatum(ts);
	nulls[col] = ts == 0;
}

/* A text column: NULL for the empty string that means "none" */
static void
put_text(Datum *values, bool *nulls, int col, const char *s)
{
	nulls[col] = s[0] == '\0';
	values[col] = nulls[col] ? (Datum) 0 : CStringGetTextDatum(s);
}

/*
 * channel_state(): the shared flow-control state of every channel a worker
 * has used since the server started: rate and burst as last used, tokens
 * in the bucket now (NULL without a rate limit), the end of the last
 * Retry-After pause, the number of such pauses, requests on the wire over
 * all workers, why the workers cannot dispatch on it (NULL: they can), and
 * its circuit breaker: state, end of the last open period, consecutive
 * failures counted, times opened.
 */
Datum
withdrawal_channel_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WithdrawalChannelStatus *channels;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	channels = palloc(sizeof(WithdrawalChannelStatus) * WITHDRAWAL_MAX_CHANNELS);
	n = WithdrawalShmemChannels(channels, WITHDRAWAL_MAX_CHANNELS);
	for (i = 0; i < n; i++)
	{
		WithdrawalChannelStatus *c = &channels[i];
		Datum		values[CHANNEL_STATE_COLS];
		bool		nulls[CHANNEL_STATE_COLS];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(c->name);
		values[1] = Float8GetDatum(c->rate);
		nulls[1] = c->rate <= 0;
		values[2] = Int32GetDatum(c->burst);
		values[3] = Float8GetDatum(c->tokens);
		nulls[3] = c->rate <= 0;
		put_timestamp(values, nulls, 4, c->blocked_until);
		values[5] = Int64GetDatum(c->throttled);
		values[6] = Int32GetDatum(c->in_flight);
		put_text(values, nulls, 7, c->unsendable);
		values[8] = CStringGetTextDatum(breaker_state_names[c->breaker]);
		put_timestamp(values, nulls, 9, c->breaker_until);
		values[10] = Int32GetDatum(c->breaker_failures);
		values[11] = Int64GetDatum(c->breaker_opened);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(channels);
	return (Datum) 0;
}

/*
 * monitor_workers(): one row per dispatcher worker (withdrawal.workers of
 * them), with what the worker last reported about itself.  A worker that
 * is not running has a NULL pid and keeps its last errors.
 */
Datum
withdrawal_monitor_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WithdrawalWorkerStatus *workers;
	int			nworkers = Min(withdrawal_workers, WITHDRAWAL_MAX_WORKERS);
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (!withdrawal_preloaded || nworkers <= 0)
		return (Datum) 0;
	workers = palloc(sizeof(WithdrawalWorkerStatus) * nworkers);
	n = WithdrawalShmemWorkers(workers, nworkers);
	for (i = 0; i < n; i++)
	{
		WithdrawalWorkerStatus *w = &workers[i];
		Datum		values[WORKER_COLS];
		bool		nulls[WORKER_COLS];
		bool		running = w->pid != 0;

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(i);
		values[1] = Int32GetDatum(w->pid);
		nulls[1] = !running;
		if (w->state[0] == '\0')
			values[2] = CStringGetTextDatum("not started");
		else
			values[2] = CStringGetTextDatum(w->state);
		put_timestamp(values, nulls, 3, running ? w->started_at : 0);
		put_timestamp(values, nulls, 4, running ? w->last_loop_at : 0);
		values[5] = Int32GetDatum(w->in_flight);
		values[6] = Int64GetDatum(w->sent);
		values[7] = Int64GetDatum(w->recorded);
		values[8] = Int64GetDatum(w->failed);
		values[9] = Int64GetDatum(w->dead);
		values[10] = Int64GetDatum(w->send_errors);
		put_text(values, nulls, 11, w->last_error);
		put_timestamp(values, nulls, 12, w->last_error_at);
		put_text(values, nulls, 13, w->last_send_error);
		put_timestamp(values, nulls, 14, w->last_send_error_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(workers);
	return (Datum) 0;
}
