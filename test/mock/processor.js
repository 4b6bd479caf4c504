#!/usr/bin/env node
/*
 * processor.js
 *	  Mock payment processor for the withdrawal tests and benchmarks.
 *
 * Speaks the `http` driver protocol (POST /payouts, GET /payouts/{id}),
 * Stripe's shape (POST /v1/transfers, GET /v1/transfers/{id}, and
 * POST /v1/payouts, GET /v1/payouts/{id}) and PayPal Payouts' (POST
 * /v1/payments/payouts, one item per batch, idempotent by PayPal-Request-Id;
 * GET /v1/payments/payouts/{payout_batch_id}), honours idempotency keys the
 * way Stripe does, records every request and counts the effective payouts per
 * key and per withdrawal, and injects faults on demand.  Node.js standard
 * library only; binds 127.0.0.1 only.
 *
 *   node test/mock/processor.js --port 0 [--api-key KEY] [--status paid|pending]
 *                               [--log-limit N]
 *
 * prints one line {"port":N} on stdout once listening, and nothing else.
 *
 * Idempotency (per Idempotency-Key):
 *   same key + same parameters      -> the first stored response again
 *                                      (header Idempotent-Replayed: true),
 *                                      never a second payout
 *   same key + different parameters -> 422 idempotency_mismatch (http),
 *                                      400 idempotency_error (stripe),
 *                                      400 USER_BUSINESS_ERROR (paypal)
 *   same key still being processed  -> 409 (a "slow" fault keeps a key busy)
 *
 * Control routes (no auth, not counted in the request log or stats):
 *   POST /_control/faults   {"rules":[RULE,...]}  replaces the rule set
 *   GET  /_control/faults   current rules with the remaining counts
 *   GET  /_control/stats    counters (?keys=0 leaves out the per-key maps)
 *   GET  /_control/requests request log (?since=I&limit=N)
 *   POST /_control/reset    forgets everything, drops hung connections
 *   POST /_control/release  answers every request a "slow" fault holds now
 *   POST /_control/settle   {"id":<withdrawal id|ref|key>,"status":"paid"|
 *                            "failed"|"returned","failure_code":...}
 *                           what the processor later did with a payout, as
 *                           status queries then report it: pending -> paid
 *                           or failed (a failed one is no longer effective:
 *                           it was not and will not be paid), paid ->
 *                           returned (the money left and came back; still
 *                           effective).  Any other change is refused with
 *                           400 invalid_transition: a processor never
 *                           un-pays.  Settling to the current status is a
 *                           no-op.
 *   GET  /_control/truth    what the processor really did, per withdrawal:
 *                           {"in_flight":N,"held":N,"hung":N,"withdrawals":
 *                            {<id>:{"effective","status","returned","busy",
 *                                   "entries","ref","amount","protocol"}}}
 *                           effective: payout entries created for it that
 *                           are not failed (pending ones may still be paid,
 *                           returned ones did leave); status: the latest
 *                           entry's; returned: one of them was returned;
 *                           busy: a request for it is still being processed
 *                           or held by "slow", "hang" or "hang-after";
 *                           ?status=S1,S2 keeps the withdrawals whose latest
 *                           entry has one of these statuses, ?ids=I1,I2 these
 *                           withdrawals
 *
 * RULE: {"fault": F, "amount": A?, "times": N?, "method": "POST"|"GET"|"*"?,
 *        "protocol": "http"|"stripe"|"paypal"?, "retry_after": S?, "delay_ms": MS?,
 *        "status": CODE?, "code": "..."?, "type": "..."?,
 *        "should_retry": true|false?, "ref_length": N?}
 * The first rule that matches a request (method, default POST; protocol;
 * amount) and has times left is applied, and its count decremented.
 * Faults applied before anything is recorded (the processor never saw it):
 *   "500" | "502" | "503" | "504" (or any "5xx" code), "429" (Retry-After:
 *   retry_after, seconds or an HTTP date, default 1), "hang" (never
 *   answers; the connection stays open until the client closes it),
 *   "reset" (connection destroyed), "in-progress" (the answer to a key
 *   that is busy: status default 409, code idempotency_key_in_use on
 *   stripe and idempotency_in_progress on http)
 * Decisions, stored under the key like any answer:
 *   "reject" (4xx, status default 400, code default "account_closed",
 *   stripe error type default "invalid_request_error"), "failed" (http:
 *   200 with status "failed"; on stripe a decline, as "reject"),
 *   "pending", "paid" (ref_length: a
 *   processor reference of that many characters)
 * should_retry, on any fault that answers: the Stripe-Should-Retry header
 *   ("reject" with should_retry true is not stored: nothing was processed)"
 * Delays: "slow" (delay_ms, default 1000, before processing; the key is busy
 *   meanwhile; the payout is recorded even if the client has gone)
 * The processor paid but the answer was lost (payout recorded first):
 *   "malformed" (200, body not JSON), "truncated" (200, JSON cut in half),
 *   "reset-after" (connection destroyed), "hang-after" (never answers),
 *   "5xx-after" e.g. "502-after" (an error answer)
 */
'use strict';

const http = require('http');
const { performance } = require('perf_hooks');
const { URLSearchParams } = require('url');

/* ---- command line ---- */

function parseArgs(argv) {
	const opts = { port: 0, apiKey: null, status: 'paid', logLimit: 2000000 };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const next = () => {
			if (i + 1 >= argv.length)
				die(`option ${a} needs a value`);
			return argv[++i];
		};
		if (a === '--port')
			opts.port = Number(next());
		else if (a === '--api-key')
			opts.apiKey = next();
		else if (a === '--status')
			opts.status = next();
		else if (a === '--log-limit')
			opts.logLimit = Number(next());
		else
			die(`unknown option ${a}`);
	}
	if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)
		die('--port must be an integer between 0 and 65535');
	if (opts.status !== 'paid' && opts.status !== 'pending')
		die('--status must be paid or pending');
	if (!Number.isInteger(opts.logLimit) || opts.logLimit < 0)
		die('--log-limit must be a non-negative integer');
	return opts;
}

function die(msg) {
	process.stderr.write(`processor.js: ${msg}\n`);
	process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const expectedAuth = opts.apiKey === null ? null : `Bearer ${opts.apiKey}`;

/* ---- state ---- */

const PRE_FAULTS = new Set(['429', 'hang', 'reset', 'in-progress']);
const DECISIONS = new Set(['reject', 'failed', 'pending', 'paid']);
const AFTER_FAULTS = new Set(['malformed', 'truncated', 'reset-after', 'hang-after']);
const MAX_BODY = 1 << 20;
const REPLAYED = Object.freeze({ 'Idempotent-Replayed': 'true' });

let state;
let rules = [];

function freshState() {
	return {
		t0: performance.now(),
		byKey: new Map(),			/* idempotency key -> payout entry */
		byRef: new Map(),			/* processor ref (po_/tr_) -> entry */
		byWithdrawal: new Map(),	/* withdrawal id -> entry (latest) */
		allByWithdrawal: new Map(), /* withdrawal id -> every entry */
		perWithdrawal: new Map(),	/* withdrawal id -> effective payouts */
		log: [],
		logDropped: 0,
		requests: 0,
		payoutRequests: 0,
		statusRequests: 0,
		effective: 0,
		maxPerKey: 0,
		maxPerWithdrawal: 0,
		replays: 0,
		mismatches: 0,
		conflicts: 0,
		unauthorized: 0,
		invalid: 0,
		byStatus: Object.create(null),
		faults: Object.create(null),
		inFlight: 0,
		maxInFlight: 0,
		busyKeys: 0,
		/* sliding one-second window over payout POSTs */
		window: [],
		windowHead: 0,
		maxPerSecond: 0,
		firstPayoutMs: null,
		lastPayoutMs: null,
		seq: 0,
	};
}
state = freshState();

/* requests held by "hang" or "slow", so reset/release can reach them */
const hung = new Set();
const held = new Set();

function nowMs() {
	return Math.round((performance.now() - state.t0) * 1000) / 1000;
}

function newRef(prefix) {
	state.seq++;
	return prefix + '_' + process.pid.toString(36) + state.seq.toString(36).padStart(8, '0');
}

/* ---- rules ---- */

function validFault(f) {
	if (typeof f !== 'string')
		return false;
	if (PRE_FAULTS.has(f) || DECISIONS.has(f) || AFTER_FAULTS.has(f) || f === 'slow')
		return true;
	return /^5\d\d(-after)?$/.test(f);
}

function setRules(list) {
	if (!Array.isArray(list))
		throw new Error('"rules" must be an array');
	const out = [];
	for (const r of list) {
		if (r === null || typeof r !== 'object')
			throw new Error('each rule must be an object');
		if (!validFault(r.fault))
			throw new Error(`unknown fault ${JSON.stringify(r.fault)}`);
		if (r.times !== undefined && r.times !== null && !(Number.isInteger(r.times) && r.times >= 0))
			throw new Error('"times" must be a non-negative integer');
		if (r.amount !== undefined && r.amount !== null && !Number.isInteger(r.amount))
			throw new Error('"amount" must be an integer');
		const method = r.method === undefined ? 'POST' : String(r.method).toUpperCase();
		if (!['POST', 'GET', '*'].includes(method))
			throw new Error('"method" must be POST, GET or *');
		if (r.protocol !== undefined && !['http', 'stripe', 'paypal'].includes(r.protocol))
			throw new Error('"protocol" must be http, stripe or paypal');
		out.push({
			fault: r.fault,
			amount: r.amount === undefined ? null : r.amount,
			times: r.times === undefined || r.times === null ? null : r.times,
			method,
			protocol: r.protocol === undefined ? null : r.protocol,
			retry_after: r.retry_after === undefined ? 1 : String(r.retry_after),
			delay_ms: r.delay_ms === undefined ? 1000 : Number(r.delay_ms),
			status: r.status === undefined ? null : Number(r.status),
			code: r.code === undefined ? null : String(r.code),
			type: r.type === undefined ? null : String(r.type),
			should_retry: r.should_retry === undefined ? null : Boolean(r.should_retry),
			ref_length: r.ref_length === undefined ? null : Number(r.ref_length),
			applied: 0,
		});
	}
	rules = out;
}

/* The first rule matching this request with times left, consumed. */
function takeRule(method, protocol, amount) {
	for (let i = 0; i < rules.length; i++) {
		const r = rules[i];
		if (r.times !== null && r.times <= 0)
			continue;
		if (r.method !== '*' && r.method !== method)
			continue;
		if (r.protocol !== null && r.protocol !== protocol)
			continue;
		if (r.amount !== null && r.amount !== amount)
			continue;
		if (r.times !== null)
			r.times--;
		r.applied++;
		state.faults[r.fault] = (state.faults[r.fault] || 0) + 1;
		return r;
	}
	return null;
}

/* ---- answers ---- */

/* ctx: {req, res, rec, protocol, released, closed} */

function send(ctx, code, body, extraHeaders) {
	const { res, rec } = ctx;
	if (ctx.closed || res.writableEnded)
		return;
	const text = typeof body === 'string' ? body : JSON.stringify(body);
	const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) };
	if (extraHeaders)
		Object.assign(headers, extraHeaders);
	res.writeHead(code, headers);
	res.end(text);
	rec.status = code;
	countStatus(code);
}

function countStatus(code) {
	state.byStatus[code] = (state.byStatus[code] || 0) + 1;
}

function destroy(ctx) {
	ctx.rec.status = 'reset';
	countStatus('reset');
	ctx.req.socket.destroy();
}

function hang(ctx) {
	ctx.rec.status = 'hang';
	countStatus('hang');
	hung.add(ctx);
	ctx.req.socket.once('close', () => hung.delete(ctx));
}

function errorBody(protocol, type, code, message) {
	if (protocol === 'stripe')
		return { error: { type, code, message } };
	if (protocol === 'paypal')
		return { name: code, message, debug_id: newRef('dbg') };
	return { error: { code, message } };
}

function sendError(ctx, httpCode, type, code, message, headers) {
	send(ctx, httpCode, errorBody(ctx.protocol, type, code, message), headers);
}

/* An answer as the processor would send it, after post-processing faults. */
function deliver(ctx, stored, rule, replayed) {
	const headers = Object.assign({}, stored.headers || {}, replayed ? REPLAYED : {});
	const fault = rule ? rule.fault : null;
	if (fault === 'malformed') {
		send(ctx, 200, '{"id": ' + stored.ref + ', "status": paid,, <html>', headers);
		ctx.rec.status = 'malformed';
	} else if (fault === 'truncated') {
		const text = stored.body;
		send(ctx, 200, text.slice(0, Math.max(1, Math.floor(text.length / 2))), headers);
		ctx.rec.status = 'truncated';
	} else if (fault === 'reset-after')
		destroy(ctx);
	else if (fault === 'hang-after')
		hang(ctx);
	else if (fault !== null && /^5\d\d-after$/.test(fault))
		sendError(ctx, Number(fault.slice(0, 3)), 'api_error', 'processor_error',
			'the processor failed after accepting the payout');
	else
		send(ctx, stored.code, stored.body, headers);
}

/* The Stripe-Should-Retry header a rule asks for, added to headers */
function ruleHeaders(rule, headers) {
	const h = Object.assign({}, headers || {});
	if (rule && rule.should_retry !== null)
		h['Stripe-Should-Retry'] = String(rule.should_retry);
	return h;
}

/*
 * A request with this key is still being processed: Stripe answers 409
 * idempotency_key_in_use (and says to retry), the http protocol 409
 * idempotency_in_progress.
 */
function inProgress(ctx, protocol, httpCode, rule) {
	if (protocol === 'stripe')
		return sendError(ctx, httpCode, 'invalid_request_error', 'idempotency_key_in_use',
			'There is currently another in-progress request using this Idempotent Key.',
			ruleHeaders(rule, { 'Stripe-Should-Retry': 'true' }));
	if (protocol === 'paypal')
		return sendError(ctx, httpCode, null, 'REQUEST_IN_PROGRESS',
			'a request with this PayPal-Request-Id is still being processed', ruleHeaders(rule, null));
	return sendError(ctx, httpCode, 'idempotency_error', 'idempotency_in_progress',
		'a request with this idempotency key is still being processed', ruleHeaders(rule, null));
}

/* ---- payouts ---- */

/* PayPal's item status for each of the mock's payout statuses */
const PAYPAL_ITEM_STATUS = Object.freeze({
	pending: 'PENDING', paid: 'SUCCESS', failed: 'FAILED', returned: 'RETURNED',
});

function objectFor(entry) {
	if (entry.protocol === 'paypal')
		return {
			batch_header: {
				payout_batch_id: entry.ref,
				batch_status: entry.status === 'pending' ? 'PENDING' : 'SUCCESS',
				sender_batch_header: { sender_batch_id: entry.withdrawalId, recipient_type: 'EMAIL' },
			},
			items: [{
				payout_item_id: entry.ref + '_1',
				payout_batch_id: entry.ref,
				transaction_status: PAYPAL_ITEM_STATUS[entry.status],
				errors: entry.status === 'failed' ? { name: entry.failureCode } : undefined,
				payout_item: {
					amount: entry.metadata.amount,
					receiver: entry.destination,
					recipient_type: 'EMAIL',
					sender_item_id: entry.withdrawalId,
				},
			}],
		};
	if (entry.protocol === 'http')
		return {
			id: entry.ref,
			payout_id: entry.withdrawalId,
			status: entry.status,
			amount: entry.amount,
			currency: entry.currency,
			failure_code: entry.failureCode,
		};
	if (entry.kind === 'transfer')
		return {
			id: entry.ref,
			object: 'transfer',
			amount: entry.amount,
			amount_reversed: entry.status === 'returned' ? entry.amount : 0,
			currency: entry.currency,
			created: entry.created,
			destination: entry.destination,
			livemode: false,
			metadata: entry.metadata,
			reversed: entry.status === 'returned',
			transfer_group: entry.transferGroup,
		};
	return {
		id: entry.ref,
		object: 'payout',
		amount: entry.amount,
		currency: entry.currency,
		created: entry.created,
		destination: entry.destination,
		livemode: false,
		metadata: entry.metadata,
		method: 'standard',
		status: entry.status,
		failure_code: entry.failureCode,
	};
}

function countEffective(entry) {
	entry.effective++;
	state.effective++;
	if (entry.effective > state.maxPerKey)
		state.maxPerKey = entry.effective;
	if (entry.withdrawalId !== null) {
		const n = (state.perWithdrawal.get(entry.withdrawalId) || 0) + 1;
		state.perWithdrawal.set(entry.withdrawalId, n);
		if (n > state.maxPerWithdrawal)
			state.maxPerWithdrawal = n;
	}
}

/* A pending payout that fails was never paid: it stops counting. */
function uncountEffective(entry) {
	entry.effective--;
	state.effective--;
	if (entry.withdrawalId !== null)
		state.perWithdrawal.set(entry.withdrawalId, state.perWithdrawal.get(entry.withdrawalId) - 1);
}

/* What the processor may do to a payout later: it never un-pays one. */
const SETTLE_TRANSITIONS = Object.freeze({
	pending: ['paid', 'failed'],
	paid: ['returned'],
});

/*
 * Changes a payout's status as /_control/settle asks; returns an error
 * message when the change is one no processor makes, else null.
 */
function settleEntry(entry, status, failureCode) {
	if (entry.status === status)
		return null;
	const allowed = SETTLE_TRANSITIONS[entry.status] || [];
	if (!allowed.includes(status))
		return `a payout cannot go from ${entry.status} to ${status}`;
	if (status === 'failed')
		uncountEffective(entry);
	entry.status = status;
	entry.failureCode = status === 'paid' ? null : (failureCode || 'account_closed');
	return null;
}

/* The withdrawal a request is about (a Stripe status query names a ref). */
function requestWithdrawal(ctx) {
	const id = ctx.rec.withdrawal_id;
	const entry = id === null ? undefined : state.byRef.get(id);
	return entry === undefined ? id : entry.withdrawalId;
}

/*
 * The processor's truth per withdrawal, to judge the books by: see
 * GET /_control/truth at the top.
 */
function truth(statuses, ids) {
	const waiting = new Set();
	for (const h of held)
		waiting.add(requestWithdrawal(h.ctx));
	for (const ctx of hung)
		waiting.add(requestWithdrawal(ctx));
	const withdrawals = {};
	const wanted = ids === null ? state.allByWithdrawal.keys() : ids.filter((id) => state.allByWithdrawal.has(id));
	for (const id of wanted) {
		const all = state.allByWithdrawal.get(id);
		const last = all[all.length - 1];
		if (statuses !== null && !statuses.includes(last.status))
			continue;
		withdrawals[id] = {
			effective: all.filter((e) => e.status !== 'failed').length,
			status: last.status,
			returned: all.some((e) => e.status === 'returned'),
			busy: waiting.has(id) || all.some((e) => e.busy),
			entries: all.length,
			ref: last.ref,
			amount: last.amount,
			protocol: last.protocol,
		};
	}
	return { in_flight: state.inFlight, held: held.size, hung: hung.size, withdrawals };
}

/*
 * Processes a validated payout creation.  p: {protocol, kind, key,
 * fingerprint, withdrawalId, amount, currency, ...}
 */
function createPayout(ctx, p) {
	const rule = takeRule('POST', p.protocol, p.amount);
	const fault = rule ? rule.fault : null;
	ctx.rec.fault = fault;

	/* the processor is down or refuses to look: nothing recorded */
	if (fault !== null && /^5\d\d$/.test(fault))
		return sendError(ctx, Number(fault), 'api_error', 'processor_unavailable',
			'the processor is temporarily unavailable', ruleHeaders(rule, null));
	/* an error the processor says to retry is not stored under the key */
	if (fault === 'reject' && rule.should_retry === true)
		return sendError(ctx, rule.status || 400, rule.type || 'invalid_request_error',
			rule.code || 'account_closed', 'the request could not be processed now', ruleHeaders(rule, null));
	if (fault === '429')
		return sendError(ctx, 429, 'rate_limit_error', 'rate_limited', 'too many requests',
			ruleHeaders(rule, { 'Retry-After': String(rule.retry_after) }));
	if (fault === 'hang')
		return hang(ctx);
	if (fault === 'reset')
		return destroy(ctx);
	if (fault === 'in-progress')
		return inProgress(ctx, p.protocol, rule.status || 409, rule);

	let entry = p.key === null ? undefined : state.byKey.get(p.key);
	if (entry !== undefined) {
		if (entry.fingerprint !== p.fingerprint) {
			state.mismatches++;
			if (p.protocol === 'stripe')
				return sendError(ctx, 400, 'idempotency_error', 'idempotency_key_reused',
					'Keys for idempotent requests can only be used with the same parameters they were first used with.');
			if (p.protocol === 'paypal')
				return sendError(ctx, 400, null, 'USER_BUSINESS_ERROR',
					'Batch with given sender_batch_id already exists');
			return sendError(ctx, 422, 'idempotency_error', 'idempotency_mismatch',
				'the idempotency key was used with different parameters');
		}
		if (entry.busy) {
			state.conflicts++;
			return inProgress(ctx, p.protocol, 409, null);
		}
		state.replays++;
		ctx.rec.replayed = true;
		ctx.rec.ref = entry.ref;
		if (fault === 'slow')
			return delay(ctx, rule, () => deliver(ctx, entry.stored, null, true));
		return deliver(ctx, entry.stored, rule, true);
	}

	entry = {
		protocol: p.protocol,
		kind: p.kind,
		key: p.key,
		fingerprint: p.fingerprint,
		withdrawalId: p.withdrawalId,
		ref: newRef(p.kind === 'transfer' ? 'tr' : 'po'),
		amount: p.amount,
		currency: p.currency,
		destination: p.destination,
		metadata: p.metadata,
		transferGroup: p.transferGroup,
		created: Math.floor(Date.now() / 1000),
		status: null,
		failureCode: null,
		effective: 0,
		busy: true,
		stored: null,
	};
	if (p.key !== null)
		state.byKey.set(p.key, entry);
	if (p.withdrawalId !== null) {
		const all = state.allByWithdrawal.get(p.withdrawalId);
		if (all === undefined)
			state.allByWithdrawal.set(p.withdrawalId, [entry]);
		else
			all.push(entry);
	}
	state.busyKeys++;

	const decide = (after) => {
		entry.busy = false;
		state.busyKeys--;
		let decision = after && DECISIONS.has(after.fault) ? after.fault : null;
		/* Stripe creates no failed transfers: it declines the request */
		if (decision === 'failed' && p.protocol === 'stripe')
			decision = 'reject';
		if (decision === 'paid' && after.ref_length !== null)
			entry.ref = 'r'.repeat(Math.max(1, after.ref_length));
		if (decision === 'reject') {
			entry.status = 'failed';
			entry.failureCode = after.code || 'account_closed';
			entry.stored = {
				code: after.status || 400,
				body: JSON.stringify(errorBody(p.protocol, after.type || 'invalid_request_error',
					entry.failureCode, 'the payout was declined by the processor')),
				ref: entry.ref,
				headers: ruleHeaders(after, null),
			};
		} else {
			if (decision === 'failed') {
				entry.status = 'failed';
				entry.failureCode = after.code || 'account_closed';
			} else if (entry.kind === 'transfer')
				entry.status = 'paid';
			else
				entry.status = decision || opts.status;
			if (entry.status !== 'failed')
				countEffective(entry);
			entry.stored = { code: 200, body: JSON.stringify(objectFor(entry)), ref: entry.ref };
		}
		state.byRef.set(entry.ref, entry);
		if (entry.withdrawalId !== null)
			state.byWithdrawal.set(entry.withdrawalId, entry);
		ctx.rec.ref = entry.ref;
		const post = after !== null && (AFTER_FAULTS.has(after.fault) || /^5\d\d-after$/.test(after.fault)) ? after : null;
		deliver(ctx, entry.stored, post, false);
	};

	if (fault === 'slow')
		return delay(ctx, rule, () => decide(null));
	return decide(rule);
}

/* Holds a request delay_ms (or until /_control/release), then goes on. */
function delay(ctx, rule, then) {
	const h = { ctx, then, timer: null };
	h.timer = setTimeout(() => {
		held.delete(h);
		then();
	}, rule.delay_ms);
	held.add(h);
}

function releaseHeld() {
	const n = held.size;
	for (const h of Array.from(held)) {
		clearTimeout(h.timer);
		held.delete(h);
		h.then();
	}
	return n;
}

/* Canonical JSON: keys sorted, so a resend with other key order matches. */
function canonical(v) {
	if (Array.isArray(v))
		return '[' + v.map(canonical).join(',') + ']';
	if (v !== null && typeof v === 'object')
		return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
	return JSON.stringify(v);
}

function httpCreate(ctx, body) {
	let p;
	try {
		p = JSON.parse(body);
	} catch (e) {
		state.invalid++;
		return sendError(ctx, 400, 'invalid_request_error', 'invalid_json', 'the body is not valid JSON');
	}
	const key = ctx.req.headers['idempotency-key'];
	ctx.rec.key = key === undefined ? null : key;
	if (p === null || typeof p !== 'object' || Array.isArray(p))
		return invalid(ctx, 'the body must be a JSON object');
	ctx.rec.amount = Number.isInteger(p.amount) ? p.amount : null;
	ctx.rec.withdrawal_id = typeof p.id === 'string' ? p.id : null;
	if (key === undefined || key === '')
		return invalid(ctx, 'the Idempotency-Key header is required');
	if (typeof p.id !== 'string' || p.id === '')
		return invalid(ctx, '"id" must be a non-empty string');
	if (!Number.isInteger(p.amount) || p.amount <= 0)
		return invalid(ctx, '"amount" must be a positive integer');
	if (typeof p.currency !== 'string' || !/^[A-Z]{3}$/.test(p.currency))
		return invalid(ctx, '"currency" must be an ISO 4217 code');
	if (p.destination !== undefined && (p.destination === null || typeof p.destination !== 'object'))
		return invalid(ctx, '"destination" must be an object');
	createPayout(ctx, {
		protocol: 'http',
		kind: 'payout',
		key,
		fingerprint: canonical({
			id: p.id, account_id: p.account_id, amount: p.amount, currency: p.currency,
			channel: p.channel, destination: p.destination,
		}),
		withdrawalId: p.id,
		amount: p.amount,
		currency: p.currency,
		destination: p.destination,
		metadata: null,
		transferGroup: null,
	});
}

function stripeCreate(ctx, body, kind) {
	const form = new URLSearchParams(body);
	const key = ctx.req.headers['idempotency-key'];
	ctx.rec.key = key === undefined || key === '' ? null : key;
	const metadata = {};
	const pairs = [];
	for (const [k, v] of form) {
		pairs.push(k + '=' + v);
		const m = /^metadata\[(.+)\]$/.exec(k);
		if (m)
			metadata[m[1]] = v;
	}
	pairs.sort();
	const amountText = form.get('amount');
	const amount = amountText !== null && /^[0-9]+$/.test(amountText) ? Number(amountText) : null;
	ctx.rec.amount = amount;
	const withdrawalId = metadata.withdrawal_id || form.get('transfer_group') || ctx.rec.key;
	ctx.rec.withdrawal_id = withdrawalId === undefined ? null : withdrawalId;
	const currency = form.get('currency');
	const destination = form.get('destination');
	if (amount === null || amount <= 0)
		return stripeMissing(ctx, 'amount', amountText === null);
	if (currency === null || !/^[a-z]{3}$/.test(currency))
		return stripeMissing(ctx, 'currency', currency === null);
	if (kind === 'transfer' && (destination === null || !/^acct_/.test(destination)))
		return stripeMissing(ctx, 'destination', destination === null);
	createPayout(ctx, {
		protocol: 'stripe',
		kind,
		key: ctx.rec.key,
		fingerprint: kind + '\n' + pairs.join('&'),
		withdrawalId: ctx.rec.withdrawal_id,
		amount,
		currency,
		destination,
		metadata,
		transferGroup: form.get('transfer_group'),
	});
}

/* PayPal's decimals per currency: none for these, two for the others */
const PAYPAL_NO_DECIMALS = new Set(['HUF', 'JPY', 'TWD']);

/* A PayPal amount {"value": "12.34", "currency": "USD"} in minor units, or null */
function paypalMinor(amount) {
	if (amount === null || typeof amount !== 'object' || typeof amount.value !== 'string' ||
		typeof amount.currency !== 'string' || !/^[A-Z]{3}$/.test(amount.currency))
		return null;
	const m = PAYPAL_NO_DECIMALS.has(amount.currency) ? /^([0-9]+)()$/.exec(amount.value)
		: /^([0-9]+)\.([0-9]{2})$/.exec(amount.value);
	if (m === null)
		return null;
	const minor = Number(m[1] + m[2]);
	return Number.isSafeInteger(minor) && minor > 0 ? minor : null;
}

/* POST /v1/payments/payouts: a batch of exactly one item */
function paypalCreate(ctx, body) {
	let p;
	try {
		p = JSON.parse(body);
	} catch (e) {
		state.invalid++;
		return sendError(ctx, 400, null, 'MALFORMED_REQUEST', 'the body is not valid JSON');
	}
	const requestId = ctx.req.headers['paypal-request-id'];
	const header = p !== null && typeof p === 'object' ? p.sender_batch_header : null;
	const items = p !== null && typeof p === 'object' ? p.items : null;
	const item = Array.isArray(items) && items.length === 1 && items[0] !== null &&
		typeof items[0] === 'object' ? items[0] : null;
	const batchId = header && typeof header.sender_batch_id === 'string' && header.sender_batch_id !== ''
		? header.sender_batch_id : null;
	const amount = item === null ? null : paypalMinor(item.amount);
	ctx.rec.key = requestId === undefined || requestId === '' ? batchId : requestId;
	ctx.rec.withdrawal_id = batchId;
	ctx.rec.amount = amount;
	if (batchId === null || amount === null || typeof item.receiver !== 'string' || item.receiver === '') {
		state.invalid++;
		return sendError(ctx, 400, null, 'VALIDATION_ERROR', 'Invalid request - see details');
	}
	createPayout(ctx, {
		protocol: 'paypal',
		kind: 'payout',
		key: ctx.rec.key,
		fingerprint: canonical(p),
		withdrawalId: batchId,
		amount,
		currency: item.amount.currency,
		destination: item.receiver,
		metadata: { amount: item.amount },
		transferGroup: null,
	});
}

function stripeMissing(ctx, param, missing) {
	state.invalid++;
	send(ctx, 400, {
		error: {
			type: 'invalid_request_error',
			code: missing ? 'parameter_missing' : 'parameter_invalid',
			param,
			message: missing ? `Missing required param: ${param}.` : `Invalid ${param}.`,
		},
	});
}

function invalid(ctx, message) {
	state.invalid++;
	sendError(ctx, 400, 'invalid_request_error', 'invalid_request', message);
}

/*
 * A status query's fault rule: taken and counted; returns the rule, and
 * whether the request has been answered (or dropped) by its fault.
 */
function statusFault(ctx, id) {
	state.statusRequests++;
	ctx.rec.withdrawal_id = id;
	const rule = takeRule('GET', ctx.protocol, null);
	const fault = rule ? rule.fault : null;
	ctx.rec.fault = fault;
	let done = true;
	if (fault !== null && /^5\d\d(-after)?$/.test(fault))
		sendError(ctx, Number(fault.slice(0, 3)), 'api_error', 'processor_unavailable',
			'the processor is temporarily unavailable', ruleHeaders(rule, null));
	else if (fault === '429')
		sendError(ctx, 429, 'rate_limit_error', 'rate_limited', 'too many requests',
			ruleHeaders(rule, { 'Retry-After': String(rule.retry_after) }));
	else if (fault === 'hang' || fault === 'hang-after')
		hang(ctx);
	else if (fault === 'reset' || fault === 'reset-after')
		destroy(ctx);
	else
		done = false;
	return { rule, fault, done };
}

/* GET /payouts/{id} and GET /v1/transfers|payouts/{id} */
function getPayout(ctx, id, kind) {
	const { rule, fault, done } = statusFault(ctx, id);
	if (done)
		return;

	let entry;
	if (ctx.protocol === 'http')
		entry = state.byWithdrawal.get(id) || state.byRef.get(id) || state.byKey.get(id);
	else
		entry = state.byRef.get(id);
	if (entry !== undefined && (entry.protocol !== ctx.protocol || (kind !== null && entry.kind !== kind)))
		entry = undefined;
	const answer = () => {
		if (entry === undefined || entry.stored === null) {
			if (ctx.protocol === 'paypal')
				return sendError(ctx, 404, null, 'RESOURCE_NOT_FOUND', 'The specified resource does not exist.');
			if (ctx.protocol === 'stripe')
				return send(ctx, 404, {
					error: {
						type: 'invalid_request_error', code: 'resource_missing', param: 'id',
						message: `No such ${kind}: '${id}'`,
					},
				});
			return sendError(ctx, 404, 'invalid_request_error', 'not_found', 'no payout with this id');
		}
		ctx.rec.ref = entry.ref;
		const stored = { code: 200, body: JSON.stringify(objectFor(entry)), ref: entry.ref };
		deliver(ctx, stored, fault === 'malformed' || fault === 'truncated' ? rule : null, false);
	};
	if (fault === 'slow')
		return delay(ctx, rule, answer);
	answer();
}

/*
 * GET /v1/transfers?transfer_group=G: Stripe's list of the transfers of a
 * group, the only status query that finds a transfer by the withdrawal id
 * when its tr_ id was never received.  A declined request created nothing
 * and is not listed.
 */
function listTransfers(ctx, query) {
	const group = query.get('transfer_group');
	if (statusFault(ctx, group).done)
		return;
	const data = [];
	for (const entry of state.allByWithdrawal.get(group) || [])
		if (entry.protocol === 'stripe' && entry.kind === 'transfer' && entry.stored !== null &&
			entry.stored.code === 200)
			data.push(objectFor(entry));
	send(ctx, 200, { object: 'list', url: '/v1/transfers', has_more: false, data });
}

/* ---- control ---- */

function control(req, res, path, query, body) {
	const reply = (code, obj) => {
		const text = JSON.stringify(obj);
		res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
		res.end(text);
	};
	let input = null;
	if (req.method === 'POST' && body.length > 0) {
		try {
			input = JSON.parse(body);
		} catch (e) {
			return reply(400, { error: { code: 'invalid_json', message: 'the body is not valid JSON' } });
		}
	}
	if (path === '/_control/faults' && req.method === 'POST') {
		try {
			setRules(input === null ? [] : input.rules);
		} catch (e) {
			return reply(400, { error: { code: 'invalid_rules', message: e.message } });
		}
		return reply(200, { ok: true, rules: rules.length });
	}
	if (path === '/_control/faults' && req.method === 'GET')
		return reply(200, { rules });
	if (path === '/_control/stats' && req.method === 'GET')
		return reply(200, stats(query.get('keys') !== '0'));
	if (path === '/_control/requests' && req.method === 'GET') {
		const since = Math.max(0, Number(query.get('since') || 0));
		const limit = query.has('limit') ? Number(query.get('limit')) : state.log.length;
		return reply(200, state.log.slice(since, since + limit));
	}
	if (path === '/_control/reset' && req.method === 'POST') {
		for (const h of held)
			clearTimeout(h.timer);
		held.clear();
		for (const ctx of hung)
			ctx.req.socket.destroy();
		hung.clear();
		rules = [];
		state = freshState();
		return reply(200, { ok: true });
	}
	if (path === '/_control/release' && req.method === 'POST')
		return reply(200, { ok: true, released: releaseHeld() });
	if (path === '/_control/settle' && req.method === 'POST') {
		const id = input && input.id;
		const status = input && input.status;
		if (!['pending', 'paid', 'failed', 'returned'].includes(status))
			return reply(400, { error: { code: 'invalid_status', message: 'status must be pending, paid, failed or returned' } });
		const entry = state.byWithdrawal.get(id) || state.byRef.get(id) || state.byKey.get(id);
		if (entry === undefined || entry.stored === null)
			return reply(404, { error: { code: 'not_found', message: 'no payout with this id' } });
		const refused = settleEntry(entry, status, input.failure_code);
		if (refused !== null)
			return reply(400, { error: { code: 'invalid_transition', message: refused } });
		return reply(200, objectFor(entry));
	}
	if (path === '/_control/truth' && req.method === 'GET')
		return reply(200, truth(query.has('status') ? query.get('status').split(',') : null,
			query.has('ids') ? query.get('ids').split(',') : null));
	return reply(404, { error: { code: 'not_found', message: 'no such control route' } });
}

function stats(withKeys) {
	const s = {
		requests: state.requests,
		payout_requests: state.payoutRequests,
		status_requests: state.statusRequests,
		effective_payouts: state.effective,
		max_effective_per_key: state.maxPerKey,
		max_effective_per_withdrawal: state.maxPerWithdrawal,
		distinct_keys: state.byKey.size,
		replays: state.replays,
		mismatches: state.mismatches,
		conflicts: state.conflicts,
		unauthorized: state.unauthorized,
		invalid: state.invalid,
		by_status: state.byStatus,
		faults: state.faults,
		in_flight: state.inFlight,
		max_in_flight: state.maxInFlight,
		busy_keys: state.busyKeys,
		held: held.size,
		hung: hung.size,
		max_payout_requests_per_second: state.maxPerSecond,
		first_payout_ms: state.firstPayoutMs,
		last_payout_ms: state.lastPayoutMs,
		log_dropped: state.logDropped,
		uptime_ms: nowMs(),
	};
	if (withKeys) {
		const keys = {};
		for (const [k, e] of state.byKey)
			keys[k] = e.effective;
		const withdrawals = {};
		for (const [k, n] of state.perWithdrawal)
			withdrawals[k] = n;
		s.keys = keys;
		s.withdrawals = withdrawals;
	}
	return s;
}

/* Sliding one-second window of payout POSTs: amortised O(1). */
function notePayoutRequest(t) {
	state.payoutRequests++;
	if (state.firstPayoutMs === null)
		state.firstPayoutMs = t;
	state.lastPayoutMs = t;
	const w = state.window;
	w.push(t);
	while (w[state.windowHead] <= t - 1000)
		state.windowHead++;
	const n = w.length - state.windowHead;
	if (n > state.maxPerSecond)
		state.maxPerSecond = n;
	if (state.windowHead > 4096 && state.windowHead * 2 > w.length) {
		state.window = w.slice(state.windowHead);
		state.windowHead = 0;
	}
}

/* ---- dispatch ---- */

const STRIPE_GET = /^\/v1\/(transfers|payouts)\/([^/]+)$/;
const HTTP_GET = /^\/payouts\/([^/]+)$/;
const PAYPAL_GET = /^\/v1\/payments\/payouts\/([^/]+)$/;

function route(req, res, body) {
	const q = req.url.indexOf('?');
	const path = q < 0 ? req.url : req.url.slice(0, q);

	if (path.startsWith('/_control/'))
		return control(req, res, path, new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1)), body);

	const t = nowMs();
	const protocol = path.startsWith('/v1/payments/') ? 'paypal' : path.startsWith('/v1/') ? 'stripe' : 'http';
	const rec = {
		t_ms: t, method: req.method, path, protocol, key: null, amount: null, withdrawal_id: null,
		status: null, fault: null, replayed: false, ref: null,
		stripe_version: req.headers['stripe-version'] || null,
	};
	state.requests++;
	if (state.log.length < opts.logLimit)
		state.log.push(rec);
	else
		state.logDropped++;
	const ctx = { req, res, rec, protocol, closed: false };
	state.inFlight++;
	if (state.inFlight > state.maxInFlight)
		state.maxInFlight = state.inFlight;
	/* "close" follows "finish", or comes alone when the connection drops */
	const gen = state;
	res.once('close', () => {
		ctx.closed = true;
		gen.inFlight--;
	});

	if (req.method === 'POST' && (path === '/payouts' || path === '/v1/transfers' || path === '/v1/payouts' ||
		path === '/v1/payments/payouts'))
		notePayoutRequest(t);

	if (expectedAuth !== null && req.headers.authorization !== expectedAuth) {
		state.unauthorized++;
		return sendError(ctx, 401, 'invalid_request_error', 'unauthorized',
			'Invalid API Key provided.', { 'WWW-Authenticate': 'Bearer' });
	}
	if (req.method === 'POST') {
		if (path === '/payouts')
			return httpCreate(ctx, body);
		if (path === '/v1/transfers')
			return stripeCreate(ctx, body, 'transfer');
		if (path === '/v1/payouts')
			return stripeCreate(ctx, body, 'payout');
		if (path === '/v1/payments/payouts')
			return paypalCreate(ctx, body);
	} else if (req.method === 'GET') {
		let m = PAYPAL_GET.exec(path);
		if (m)
			return getPayout(ctx, decodeURIComponent(m[1]), null);
		m = HTTP_GET.exec(path);
		if (m && protocol === 'http')
			return getPayout(ctx, decodeURIComponent(m[1]), null);
		m = STRIPE_GET.exec(path);
		if (m)
			return getPayout(ctx, decodeURIComponent(m[2]), m[1] === 'transfers' ? 'transfer' : 'payout');
		if (path === '/v1/transfers')
			return listTransfers(ctx, new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1)));
	}
	sendError(ctx, 404, 'invalid_request_error', 'not_found', 'unknown route');
}

const server = http.createServer((req, res) => {
	const chunks = [];
	let size = 0;
	let tooBig = false;
	req.on('data', (c) => {
		size += c.length;
		if (size > MAX_BODY)
			tooBig = true;
		else
			chunks.push(c);
	});
	req.on('end', () => {
		if (tooBig) {
			res.writeHead(413, { 'Content-Type': 'application/json', Connection: 'close' });
			res.end('{"error":{"code":"too_large","message":"body too large"}}');
			return;
		}
		const body = chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8');
		try {
			route(req, res, body);
		} catch (e) {
			process.stderr.write(`processor.js: ${e.stack}\n`);
			if (!res.headersSent) {
				res.writeHead(500, { 'Content-Type': 'application/json' });
				res.end('{"error":{"code":"mock_bug","message":"internal error of the mock"}}');
			}
		}
	});
});

/* A hung request must stay open for as long as the client waits. */
server.requestTimeout = 0;
server.headersTimeout = 60000;
server.keepAliveTimeout = 120000;
server.timeout = 0;

server.on('clientError', (err, socket) => {
	if (socket.writable)
		socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
});

server.listen(opts.port, '127.0.0.1', () => {
	process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

server.on('error', (e) => die(e.message));

function shutdown() {
	for (const ctx of hung)
		ctx.req.socket.destroy();
	server.close(() => process.exit(0));
	if (server.closeAllConnections)
		server.closeAllConnections();
	setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
