/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  The worker's claims: how many sends each channel may start (its
 *	  share of the worker, and the shared flow control of flow.c), the
 *	  binding that may hold dispatch, the due scan, the claim statement,
 *	  and the start of the claimed payouts.
 *
 * A claim is ONE short transaction, committed durably: FOR UPDATE SKIP
 * LOCKED, a lease, status dispatching, attempts + 1 and sent_at, bounded
 * by the worker's free capacity and, per channel, by the channel's share
 * of it, the shared token bucket, the in-flight cap, the circuit breaker
 * and a processor's Retry-After.  Sent means maybe paid: nothing leaves
 * the machine before that commit (dispatch.c puts the payouts on the wire
 * afterwards, outside any transaction), so no crash can make a payout that
 * may have reached the processor look unsent.
 *
 * Dispatch is bound to the installation (binding.c): in a database whose
 * withdrawal.installation names another database system or database, a
 * restored copy, nothing is claimed, and the worker says so once, until
 * resume_dispatch() binds the payouts to it.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/claim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "args.h"
#include "binding.h"
#include "claim.h"
#include "dispatch.h"
#include "flow.h"
#include "indexscan.h"
#include "lifecycle.h"
#include "processor.h"
#include "spi.h"
#include "withdrawal.h"
#include "workerchannels.h"
#include "workerproc.h"

/*
 * Most due rows one scan of a channel and kind returns as candidates: the
 * claim needs a few more than it may take (other workers lock some first),
 * not the whole queue
 */
#define CLAIM_MAX_CANDIDATES	1000

static int	claim_rotation = 0;	/* which channel is served first */

static bool dispatch_state_known = false;	/* dispatch_held is up to date */
static bool dispatch_held = false;	/* bound to another installation */

/*
 * The binding is still the one this database's CREATE EXTENSION wrote, at
 * this time (WithdrawalBinding.fresh_since; 0 otherwise).  A restore that
 * is not one transaction loads rows for a while before the original's
 * binding: an outbox row queued before the installation existed is from
 * such a restore, and is not sent (scan_due).  restore_suspected: one was
 * seen; the sweep waits too.
 */
static TimestampTz binding_fresh_since = 0;
static bool restore_suspected = false;

static char *
copy_or_null(MemoryContext cxt, const char *s)
{
	return s ? MemoryContextStrdup(cxt, s) : NULL;
}

/* ---------- claiming ---------- */

/* A channel's part of a claim: how many rows it may give, how many it gave */
typedef struct ChannelClaim
{
	WithdrawalWorkerChannel *channel;
	int			granted;		/* reserved in shared memory */
	int			claimed;
	bool		probe;			/* the grant is a half-open breaker's probe */
} ChannelClaim;

typedef struct ClaimWork
{
	int			capacity;
	ChannelClaim *claims;
	int			nclaims;
	WithdrawalPayout *list;
	int			total;
} ClaimWork;

/*
 * A payout queued before this installation was created: a restore that has
 * not yet loaded the original's binding (withdrawal.installation).  Said
 * once per worker; nothing old is sent, and the sweep waits, until the
 * binding is loaded (dispatch is then held) or resumed.
 */
static void
note_restore_suspected(void)
{
	if (restore_suspected)
		return;
	restore_suspected = true;
	ereport(WARNING,
			(errmsg("withdrawal worker %d does not send payouts queued before this installation was created",
					MyWithdrawalWorker.index),
			 errdetail("The extension was created in database \"%s\" after they were queued: they come from a restore that has not loaded the original's binding yet."
					   "  They are sent only once dispatch is resumed here.",
					   withdrawal_database),
			 errhint("Restore with --single-transaction, or with withdrawal.workers = 0; if this copy is the one that should pay, run SELECT withdrawal.resume_dispatch('reason') in it.")));
}

typedef struct OutboxColumns
{
	AttrNumber	withdrawal_id;
	AttrNumber	next_attempt_at;
	AttrNumber	lease_until;
	AttrNumber	parked_at;
	AttrNumber	enqueued_at;
} OutboxColumns;			/* columns of withdrawal.outbox the scan reads */

/*
 * Finds, without the planner, the due rows of one channel and kind:
 * a scan of the index outbox_due, which keeps each channel's sends and
 * status queries in next_attempt_at order, for rows that are neither
 * leased nor parked, up to "want" of them, into ids.  Also lowers
 * *next_at to the time the first row that is not due yet falls due.
 *
 * Planned SQL does this badly on a new installation: without statistics,
 * "channel = $1" looks like it matches a single row, and the planner
 * sorts the whole queue at every claim.  The rows found are only
 * candidates: the claim statement locks them, skipping those another
 * worker took meanwhile, and checks them again.
 */
static int
scan_due(const char *channel, const char *kind, TimestampTz now, int want,
		 Datum *ids, TimestampTz *next_at)
{
	static OutboxColumns col;
	Relation	rel;
	Relation	index;
	ScanKeyData keys[3];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	int			n = 0;

	rel = table_open(WithdrawalRelationOid("outbox"), AccessShareLock);
	index = index_open(WithdrawalRelationOid("outbox_due"), AccessShareLock);
	if (col.withdrawal_id == 0)
	{
		TupleDesc	tupdesc = RelationGetDescr(rel);

		col.withdrawal_id = SPI_fnumber(tupdesc, "withdrawal_id");
		col.next_attempt_at = SPI_fnumber(tupdesc, "next_attempt_at");
		col.lease_until = SPI_fnumber(tupdesc, "lease_until");
		col.parked_at = SPI_fnumber(tupdesc, "parked_at");
		col.enqueued_at = SPI_fnumber(tupdesc, "enqueued_at");
	}
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ, CStringGetTextDatum(channel));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ, CStringGetTextDatum(kind));

	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (n < want && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		TimestampTz due;

		(void) slot_getattr(slot, col.parked_at, &isnull);
		if (!isnull)
			continue;
		due = DatumGetTimestampTz(slot_getattr(slot, col.next_attempt_at, &isnull));
		if (due > now)
		{
			/* the rest of this channel and kind is due later still */
			if (*next_at == 0 || due < *next_at)
				*next_at = due;
			break;
		}
		{
			Datum		lease = slot_getattr(slot, col.lease_until, &isnull);

			if (!isnull && DatumGetTimestampTz(lease) >= now)
				continue;		/* on the wire */
		}
		if (binding_fresh_since != 0 &&
			DatumGetTimestampTz(slot_getattr(slot, col.enqueued_at, &isnull)) < binding_fresh_since)
		{
			note_restore_suspected();
			continue;			/* older than this installation */
		}
		ids[n++] = datumCopy(slot_getattr(slot, col.withdrawal_id, &isnull), false, UUID_LEN);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return n;
}

/*
 * Claims up to "limit" of the candidate rows, in their order: locks both
 * rows (skipping those another worker holds), checks them again, leases the
 * outbox row, and moves a send to dispatching with attempts + 1 and
 * sent_at, the durable fact that it may reach the processor
 * (WithdrawalClaimPayouts).  Appends the claimed payouts to w->list;
 * returns how many.
 */
static int
claim_candidates(ClaimWork *w, ChannelClaim *cc, Datum *ids, int nids, int limit)
{
	WithdrawalWorkerChannel *c = cc->channel;
	int			i;
	int			n;

	n = (int) WithdrawalClaimPayouts(ids, nids, limit, withdrawal_lease_seconds,
									  MyWithdrawalWorker.index);
	for (i = 0; i < n; i++)
	{
		MemoryContext cxt = AllocSetContextCreate(MyWithdrawalWorker.cxt, "withdrawal payout",
												  ALLOCSET_SMALL_SIZES);
		WithdrawalPayout *p = MemoryContextAllocZero(cxt, sizeof(WithdrawalPayout));
		MemoryContext old = MemoryContextSwitchTo(cxt);
		bool		isnull;
		Datum		destination;

		p->cxt = cxt;
		p->id = *DatumGetUUIDP(WithdrawalSpiGet(i, 1, &isnull));
		strlcpy(p->id_text, WithdrawalUuidText(&p->id), sizeof(p->id_text));
		p->query = strcmp(WithdrawalSpiGetText(i, 2), "query") == 0;
		p->lease_until = DatumGetTimestampTz(WithdrawalSpiGet(i, 3, &isnull));
		p->account_id = WithdrawalSpiGetText(i, 4);
		p->currency = WithdrawalSpiGetText(i, 5);
		p->amount = DatumGetInt64(WithdrawalSpiGet(i, 6, &isnull));
		p->attempts = DatumGetInt32(WithdrawalSpiGet(i, 7, &isnull));
		/* copied: the driver reads it after the claim's transaction ended */
		destination = WithdrawalSpiGet(i, 8, &isnull);
		p->destination = isnull ? NULL : DatumGetJsonbPCopy(destination);
		p->known_ref = WithdrawalSpiGetText(i, 9);
		p->busy_answers = DatumGetInt32(WithdrawalSpiGet(i, 10, &isnull));
		p->channel = pstrdup(c->name);
		p->processor = copy_or_null(cxt, c->processor);
		p->driver_name = copy_or_null(cxt, c->driver);
		p->base_url = copy_or_null(cxt, c->base_url);
		p->api_secret_name = copy_or_null(cxt, c->api_secret);
		p->connect_timeout_ms = c->connect_timeout_ms;
		p->request_timeout_ms = c->request_timeout_ms;
		p->burst = c->burst;
		p->reserved = true;
		p->breaker_probe = cc->probe;
		MemoryContextSwitchTo(old);
		p->next = w->list;
		w->list = p;
	}
	cc->claimed += n;
	return n;
}

/*
 * Claims for one channel: its sends first, then its status queries, up to
 * what the channel was granted and the capacity left.  Candidates are
 * found generously (another worker may be locking the first ones) and
 * claimed in their order.
 */
static void
claim_channel(ClaimWork *w, ChannelClaim *cc, TimestampTz now)
{
	static const char *const kinds[] = {"send", "query"};
	int			k;

	for (k = 0; k < lengthof(kinds); k++)
	{
		int			want = Min(cc->granted - cc->claimed, w->capacity - w->total);
		int			room = Min(want * (withdrawal_workers + 1), CLAIM_MAX_CANDIDATES);
		Datum	   *ids;
		int			nids;

		if (want <= 0)
			return;
		ids = palloc(sizeof(Datum) * room);
		nids = scan_due(cc->channel->name, kinds[k], now, room, ids, &MyWithdrawalWorker.next_claim_at);
		if (nids > 0)
			w->total += claim_candidates(w, cc, ids, nids, want);
	}
}

void
WithdrawalClaimPlanSandbox(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		d;

	WithdrawalPrepare(&plan, "SELECT min(due_at) FROM withdrawal.sandbox_event", 0, NULL);
	WithdrawalExecute(plan, NULL, NULL, true, 1, SPI_OK_SELECT);
	d = WithdrawalSpiGet(0, 1, &isnull);
	if (!isnull)
		WithdrawalEarliest(&MyWithdrawalWorker.next_sandbox_at, DatumGetTimestampTz(d));
}

/*
 * Whether dispatch is held because the payouts are bound to another
 * installation (binding.c), from the copy of the binding that this
 * backend keeps until withdrawal.installation changes.  Worker 0 logs the
 * state when it starts held and whenever it changes, once.
 */
static bool
binding_holds_dispatch(void)
{
	WithdrawalBinding b;
	int			level = MyWithdrawalWorker.index == 0 ? WARNING : DEBUG1;

	if (!WithdrawalBindingCheck(&b) && dispatch_state_known)
		return dispatch_held;
	binding_fresh_since = b.held ? 0 : b.fresh_since;
	if (!binding_fresh_since)
		restore_suspected = false;
	if (dispatch_state_known && b.held == dispatch_held)
		return dispatch_held;

	if (b.held && !b.found)
		ereport(level,
				(errmsg("withdrawal workers hold dispatch in database \"%s\": the payouts are bound to no installation",
						withdrawal_database),
				 errdetail("withdrawal.installation has no row.  Nothing is sent to any processor until dispatch is resumed."),
				 errhint("If this database is the one that should pay, run SELECT withdrawal.resume_dispatch('reason') in it.")));
	else if (b.held)
		ereport(level,
				(errmsg("withdrawal workers hold dispatch in database \"%s\": its payouts are bound to another installation",
						withdrawal_database),
				 errdetail("The payouts are bound to database \"%s\" (OID %u) of database system " INT64_FORMAT
						   "; this is database OID %u of database system " INT64_FORMAT
						   ", a restored or copied database.  Nothing is sent to any processor until dispatch is resumed.",
						   b.bound_database_name, b.bound_database_oid, b.bound_system_identifier,
						   b.database_oid, b.system_identifier),
				 errhint("If this copy is the one that should pay, run SELECT withdrawal.resume_dispatch('reason') in it.")));
	else if (dispatch_state_known)
		ereport(MyWithdrawalWorker.index == 0 ? LOG : DEBUG1,
				(errmsg("withdrawal workers resume dispatch in database \"%s\": its payouts are bound to this installation",
						withdrawal_database)));
	dispatch_held = b.held;
	dispatch_state_known = true;
	return dispatch_held;
}

/*
 * The claim transaction: loads the channels, asks each sendable channel's
 * shared state how many requests it may start (its share of this worker,
 * its cluster-wide cap, its token bucket, a Retry-After pause), and claims.
 * Channels take turns at being first, so that none is always served last.
 * Then finds when to claim next (the first row not due yet, the first
 * sandbox event).
 */
static void
claim_body(void *arg)
{
	ClaimWork  *w = (ClaimWork *) arg;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	WithdrawalWorkerChannel *channels;
	int			nchannels;
	int			i;

	/* a restored copy claims nothing until resumed */
	if (binding_holds_dispatch())
		return;
	nchannels = WithdrawalWorkerChannelsLoad(&channels);
	w->claims = MemoryContextAllocZero(MyWithdrawalWorker.iter_cxt, sizeof(ChannelClaim) * Max(nchannels, 1));
	claim_rotation = nchannels > 0 ? (claim_rotation + 1) % nchannels : 0;
	for (i = 0; i < nchannels && w->total < w->capacity; i++)
	{
		WithdrawalWorkerChannel *c = &channels[(i + claim_rotation) % nchannels];
		ChannelClaim *cc = &w->claims[w->nclaims];
		int			headroom;
		long		wait_ms;

		if (c->unsendable)
			continue;
		headroom = WithdrawalWorkerChannelShareCap() - WithdrawalWorkerChannelInFlight(c->name);
		if (headroom <= 0)
			continue;
		cc->channel = c;
		cc->granted = WithdrawalChannelReserve(c->name, c->rate, c->burst, c->max_in_flight,
											   MyWithdrawalWorker.index, Min(headroom, w->capacity - w->total),
											   &wait_ms, &cc->probe);
		if (wait_ms >= 0)
			WithdrawalEarliest(&MyWithdrawalWorker.next_claim_at, WithdrawalLaterMs(wait_ms));
		if (cc->granted == 0)
			continue;
		w->nclaims++;
		claim_channel(w, cc, now);
		/* a channel that gave all it was granted may have more waiting */
		if (cc->claimed == cc->granted)
			MyWithdrawalWorker.claim_backlog = true;
	}
	if (w->total >= w->capacity)
		MyWithdrawalWorker.claim_backlog = true;
	WithdrawalClaimPlanSandbox();
}

/* Gives back what the claim reserved and did not use */
static void
release_unclaimed(ClaimWork *w)
{
	int			i;

	for (i = 0; i < w->nclaims; i++)
		if (w->claims[i].granted > w->claims[i].claimed)
			WithdrawalChannelRelease(w->claims[i].channel->name, MyWithdrawalWorker.index,
									 w->claims[i].granted - w->claims[i].claimed, 0,
									 w->claims[i].channel->burst);
}

/*
 * Claims up to capacity payouts in one transaction, committed durably, and
 * starts them.  Nothing leaves the machine before that commit.
 */
void
WithdrawalClaimAndStart(int capacity)
{
	ClaimWork	w;
	WithdrawalPayout *p;
	WithdrawalPayout *next;

	memset(&w, 0, sizeof(w));
	w.capacity = capacity;
	MyWithdrawalWorker.next_claim_at = 0;
	MyWithdrawalWorker.claim_backlog = false;

	if (!WithdrawalRunTransaction("withdrawal: claiming payouts", true, claim_body, &w, NULL))
	{
		/* nothing was claimed: the rolled-back claim marked nothing sent */
		for (p = w.list; p; p = next)
		{
			next = p->next;
			MemoryContextDelete(p->cxt);
		}
		w.list = NULL;
		for (int i = 0; i < w.nclaims; i++)
			w.claims[i].claimed = 0;
		release_unclaimed(&w);
		MyWithdrawalWorker.next_claim_at = WithdrawalLaterMs(WITHDRAWAL_ERROR_PAUSE_MS);
		return;
	}
	release_unclaimed(&w);
	if (MyWithdrawalWorker.next_claim_at == 0)
		MyWithdrawalWorker.next_claim_at = WithdrawalLaterMs(WITHDRAWAL_IDLE_WAIT_MS);

	if (w.total > 0)
		pgstat_report_activity(STATE_IDLE, psprintf("withdrawal: sending %d payouts", w.total));
	for (p = w.list; p; p = next)
	{
		next = p->next;
		if (WithdrawalDispatchStart(p))
		{
			WithdrawalWorkerChannelOnWire(p->channel, 1);
			MyWithdrawalWorker.sent++;
		}
	}
}

void
WithdrawalClaimForget(void)
{
	WithdrawalWorkerChannelsForget();
	dispatch_state_known = false;
}

/*
 * Whether the worker may act on payouts: not while dispatch is held, nor
 * before the first claim has found out (binding_holds_dispatch).
 */
bool
WithdrawalClaimPayoutsAllowed(void)
{
	return dispatch_state_known && !dispatch_held && !restore_suspected;
}

bool
WithdrawalClaimHeld(void)
{
	return dispatch_held;
}
