/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  HTTP dispatch through the libcurl multi interface.
 *
 * The worker's latch loop drives libcurl in multi-socket mode: libcurl
 * tells us (socket callback) which sockets it wants watched, and those
 * sockets sit in one WaitEventSet together with the worker's latch and
 * postmaster death, so that SIGTERM, SIGHUP, a commit that queues work
 * and network readiness all end the same wait.  libcurl's own timer
 * (timer callback) bounds the wait.  Many transfers are in flight at
 * once, and the multi handle's connection cache keeps connections alive
 * between payouts.
 *
 * The WaitEventSet cannot drop a socket in PostgreSQL 15, so it is rebuilt
 * before the next wait whenever libcurl forgets one (a connection closed);
 * changes of interest (readable / writable) are applied in place.
 *
 * Nothing here runs inside a transaction or touches the database.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/dispatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "dispatch.h"
#include "json.h"
#include "secrets.h"
#include "url.h"
#include "withdrawal.h"

/*
 * Largest response body we keep: a processor's answer is a few hundred
 * bytes, and a larger one could not be parsed anyway (json.h)
 */
#define MAX_RESPONSE_BYTES	WITHDRAWAL_JSON_MAX_BYTES

/*
 * Connections libcurl keeps open between payouts: one per request on the
 * wire, and never fewer than this, so that a small withdrawal.max_in_flight
 * still reuses connections to a few processors
 */
#define MIN_CACHED_CONNECTIONS	16

/*
 * Room in the WaitEventSet: besides the latch and postmaster death, twice
 * the sockets libcurl watches now plus a few, so that new connections
 * usually fit without a rebuild, and never fewer than the minimum
 */
#define WES_FIXED_EVENTS		2
#define WES_MIN_SOCKETS			64
#define WES_SPARE_SOCKETS		8

/* Longest header value we read (Retry-After, Stripe-Should-Retry) */
#define HEADER_VALUE_BYTES		128

/* Sent with every request; kept as 1.0.0 sent it: a processor may filter on it */
#define USER_AGENT				"withdrawal/1.0"

/* State of one transfer on the wire, in its payout's context */
typedef struct Transfer
{
	dlist_node	node;			/* in "transfers" */
	WithdrawalPayout *payout;
	CURL	   *easy;
	struct curl_slist *headers;
	StringInfoData response;
	bool		too_large;
	long		retry_after_ms;
	int			should_retry;	/* Stripe-Should-Retry, -1 when absent */
	char		errbuf[CURL_ERROR_SIZE];
} Transfer;

/* A socket libcurl asked us to watch */
typedef struct Socket
{
	dlist_node	node;
	curl_socket_t fd;
	uint32		events;			/* WL_SOCKET_READABLE / WRITEABLE */
	int			pos;			/* position in the WaitEventSet, or -1 */
} Socket;

static MemoryContext dispatch_cxt = NULL;
static CURLM *multi = NULL;
static dlist_head sockets = DLIST_STATIC_INIT(sockets);
static dlist_head transfers = DLIST_STATIC_INIT(transfers);
static int	nsockets = 0;
static WaitEventSet *wes = NULL;
static int	wes_capacity = 0;
static int	wes_used = 0;
static bool wes_dirty = true;
static TimestampTz curl_deadline = 0;	/* 0: no libcurl timer */
static int	in_flight = 0;
static WithdrawalPayout *done_head = NULL;
static WithdrawalPayout *done_tail = NULL;
static int	done_count = 0;
static TimestampTz done_since = 0;	/* when the oldest done payout finished */

/* ---------- libcurl callbacks ---------- */

static void
add_socket_event(Socket *s)
{
	s->pos = AddWaitEventToSet(wes, s->events, s->fd, NULL, s);
	wes_used++;
}

static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	Socket	   *s = (Socket *) socketp;

	if (what == CURL_POLL_REMOVE)
	{
		if (s)
		{
			dlist_delete(&s->node);
			nsockets--;
			pfree(s);
			curl_multi_assign(multi, fd, NULL);
		}
		wes_dirty = true;
		return 0;
	}

	if (s == NULL)
	{
		s = MemoryContextAllocZero(dispatch_cxt, sizeof(Socket));
		s->fd = fd;
		s->pos = -1;
		dlist_push_tail(&sockets, &s->node);
		nsockets++;
		curl_multi_assign(multi, fd, s);
	}
	s->events = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		s->events |= WL_SOCKET_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		s->events |= WL_SOCKET_WRITEABLE;

	if (!wes_dirty && wes != NULL)
	{
		if (s->pos >= 0)
			ModifyWaitEvent(wes, s->pos, s->events, NULL);
		else if (wes_used < wes_capacity)
			add_socket_event(s);
		else
			wes_dirty = true;
	}
	return 0;
}

static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		curl_deadline = 0;
	else
		curl_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		n = size * nmemb;

	if (t->response.len + n > MAX_RESPONSE_BYTES)
	{
		t->too_large = true;
		return 0;
	}
	appendBinaryStringInfo(&t->response, data, n);
	return n;
}

/*
 * The value of header line data (of n bytes) when its name is "name" (with
 * the colon, lower case), trimmed, in buf; NULL for another header.
 */
static char *
header_value(const char *data, size_t n, const char *name, char *buf, size_t bufsize)
{
	size_t		namelen = strlen(name);
	size_t		vlen;
	char	   *start;

	if (n <= namelen || pg_strncasecmp(data, name, namelen) != 0)
		return NULL;
	vlen = Min(n - namelen, bufsize - 1);
	memcpy(buf, data + namelen, vlen);
	buf[vlen] = '\0';
	while (vlen > 0 && (buf[vlen - 1] == '\r' || buf[vlen - 1] == '\n' || buf[vlen - 1] == ' '))
		buf[--vlen] = '\0';
	for (start = buf; *start == ' '; start++)
		;
	return start;
}

/*
 * Captures Retry-After (delay-seconds or an HTTP date), capped by
 * withdrawal.retry_after_cap so that a far date cannot close a channel for
 * years, and Stripe-Should-Retry.
 */
static size_t
header_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	Transfer   *t = (Transfer *) userp;
	size_t		n = size * nmemb;
	char		buf[HEADER_VALUE_BYTES];
	char	   *value;

	if ((value = header_value(data, n, "retry-after:", buf, sizeof(buf))) != NULL)
	{
		char	   *end;
		long		secs = strtol(value, &end, 10);
		double		ms = -1;

		if (end != value && *end == '\0' && secs >= 0)
			ms = (double) secs * 1000.0;
		else
		{
			time_t		when = curl_getdate(value, NULL);

			if (when > 0)
				ms = Max((double) when - (double) time(NULL), 0.0) * 1000.0;
		}
		if (ms >= 0)
			t->retry_after_ms = (long) Min(ms, (double) withdrawal_retry_after_cap_ms);
	}
	else if ((value = header_value(data, n, "stripe-should-retry:", buf, sizeof(buf))) != NULL)
	{
		if (pg_strcasecmp(value, "true") == 0)
			t->should_retry = 1;
		else if (pg_strcasecmp(value, "false") == 0)
			t->should_retry = 0;
	}
	return n;
}

/* ---------- set-up ---------- */

static void
dispatch_exit(int code, Datum arg)
{
	if (multi)
	{
		curl_multi_cleanup(multi);
		multi = NULL;
	}
	curl_global_cleanup();
}

void
WithdrawalDispatchInit(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialise libcurl")));
	dispatch_cxt = AllocSetContextCreate(TopMemoryContext, "withdrawal dispatch",
										 ALLOCSET_DEFAULT_SIZES);
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	on_proc_exit(dispatch_exit, (Datum) 0);
	if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback) != CURLM_OK ||
		curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback) != CURLM_OK ||
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
						  (long) Max(withdrawal_max_in_flight, MIN_CACHED_CONNECTIONS)) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not configure the libcurl multi handle")));
}

static void
push_done(WithdrawalPayout *p)
{
	p->next = NULL;
	if (done_tail)
		done_tail->next = p;
	else
	{
		done_head = p;
		done_since = GetCurrentTimestamp();
	}
	done_tail = p;
	done_count++;
}

int
WithdrawalDispatchDoneCount(TimestampTz *since)
{
	if (since)
		*since = done_since;
	return done_count;
}

WithdrawalPayout *
WithdrawalDispatchNextDone(void)
{
	WithdrawalPayout *p = done_head;

	if (p)
	{
		done_head = p->next;
		if (done_head == NULL)
			done_tail = NULL;
		p->next = NULL;
		done_count--;
	}
	return p;
}

int
WithdrawalDispatchInFlight(void)
{
	return in_flight;
}

/*
 * Sets an option of t->easy; the first one libcurl refuses is remembered
 * (failed_option, failed_code) and the payout not sent.
 */
#define SETOPT(option, value) \
	do { \
		CURLcode	setopt_rc_ = curl_easy_setopt(t->easy, option, value); \
		\
		if (setopt_rc_ != CURLE_OK && failed_option == NULL) \
		{ \
			failed_option = #option; \
			failed_code = setopt_rc_; \
		} \
	} while (0)

/* Adds a header line; the buffer is wiped because it may hold a secret */
static void
add_header(Transfer *t, const char *name, const char *value)
{
	char	   *line = psprintf("%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(t->headers, line);

	explicit_bzero(line, strlen(line));
	pfree(line);
	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building a processor request")));
	t->headers = l;
}

bool
WithdrawalDispatchStart(WithdrawalPayout *p)
{
	const WithdrawalDriver *driver = WithdrawalDriverFind(p->driver_name);
	WithdrawalHttpRequest req;
	MemoryContext old;
	Transfer   *t;
	char	   *why;
	long		timeout_ms;
	const char *failed_option = NULL;
	CURLcode	failed_code = CURLE_OK;

	p->outcome = WITHDRAWAL_OUTCOME_NONE;
	p->should_retry = -1;
	if (driver == NULL)
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
							   "processor \"%s\" has unknown driver", p->processor);
		push_done(p);
		return false;
	}
	if (driver->decide)
	{
		driver->decide(p);
		push_done(p);
		return false;
	}

	old = MemoryContextSwitchTo(p->cxt);
	memset(&req, 0, sizeof(req));
	driver->build(p, &req);
	if (p->outcome != WITHDRAWAL_OUTCOME_NONE)
	{
		MemoryContextSwitchTo(old);
		push_done(p);
		return false;
	}
	if (!WithdrawalUrlAllowed(req.url, &why))
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "%s", why);
		MemoryContextSwitchTo(old);
		push_done(p);
		return false;
	}

	t = palloc0(sizeof(Transfer));
	t->should_retry = -1;
	initStringInfo(&t->response);
	t->easy = curl_easy_init();
	if (t->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	p->transfer = t;

	if (p->api_secret_name)
	{
		const char *secret = WithdrawalSecretGet(p->api_secret_name);
		char	   *bearer;

		if (secret == NULL)
		{
			curl_easy_cleanup(t->easy);
			t->easy = NULL;
			p->transfer = NULL;
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
								   "api secret \"%s\" of processor \"%s\" is not in withdrawal.secrets_file",
								   p->api_secret_name, p->processor);
			MemoryContextSwitchTo(old);
			push_done(p);
			return false;
		}
		bearer = psprintf("Bearer %s", secret);
		add_header(t, "Authorization", bearer);
		explicit_bzero(bearer, strlen(bearer));
		pfree(bearer);
	}
	if (req.extra_header)
	{
		struct curl_slist *l = curl_slist_append(t->headers, req.extra_header);

		if (l == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory building a processor request")));
		t->headers = l;
	}
	add_header(t, "Idempotency-Key", p->id_text);
	add_header(t, "Accept", "application/json");
	if (req.body)
		add_header(t, "Content-Type", req.content_type);
	/* no "Expect: 100-continue" round trip */
	add_header(t, "Expect", "");

	timeout_ms = Min((long) p->request_timeout_ms, (long) withdrawal_http_timeout_ms);
	SETOPT(CURLOPT_URL, req.url);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_VERBOSE, 0L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	if (withdrawal_ca_file && withdrawal_ca_file[0] != '\0')
		SETOPT(CURLOPT_CAINFO, withdrawal_ca_file);
	SETOPT(CURLOPT_TIMEOUT_MS, timeout_ms);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, Min((long) p->connect_timeout_ms, timeout_ms));
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(CURLOPT_USERAGENT, USER_AGENT);
	SETOPT(CURLOPT_HTTPHEADER, t->headers);
	SETOPT(CURLOPT_WRITEFUNCTION, write_callback);
	SETOPT(CURLOPT_WRITEDATA, t);
	SETOPT(CURLOPT_HEADERFUNCTION, header_callback);
	SETOPT(CURLOPT_HEADERDATA, t);
	SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
	SETOPT(CURLOPT_PRIVATE, p);
	if (strcmp(req.method, "POST") == 0)
	{
		SETOPT(CURLOPT_POSTFIELDSIZE, (long) strlen(req.body));
		SETOPT(CURLOPT_COPYPOSTFIELDS, req.body);
	}
	else
		SETOPT(CURLOPT_HTTPGET, 1L);
	MemoryContextSwitchTo(old);

	/*
	 * An option libcurl refused (a build without a protocol, TLS or the
	 * option itself) would send something else than intended, or nothing:
	 * nothing was sent, so the payout is retried with the same key and the
	 * error says which option.
	 */
	if (failed_option != NULL)
	{
		WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
							   "libcurl refused option %s: %s; nothing was sent in this attempt",
							   failed_option, curl_easy_strerror(failed_code));
		curl_easy_cleanup(t->easy);
		curl_slist_free_all(t->headers);
		t->easy = NULL;
		t->headers = NULL;
		p->transfer = NULL;
		push_done(p);
		return false;
	}

	if (curl_multi_add_handle(multi, t->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not add a transfer to the libcurl multi handle")));
	t->payout = p;
	dlist_push_tail(&transfers, &t->node);
	p->on_wire = true;
	in_flight++;
	return true;
}

/* Takes a transfer off the wire and frees what libcurl holds for it */
static void
end_transfer(Transfer *t)
{
	curl_multi_remove_handle(multi, t->easy);
	curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	t->easy = NULL;
	t->headers = NULL;
	dlist_delete(&t->node);
	t->payout->transfer = NULL;
	in_flight--;
}

void
WithdrawalDispatchAbandonAll(void)
{
	dlist_mutable_iter iter;
	WithdrawalPayout *p;

	dlist_foreach_modify(iter, &transfers)
	{
		Transfer   *t = dlist_container(Transfer, node, iter.cur);

		p = t->payout;
		end_transfer(t);
		MemoryContextDelete(p->cxt);
	}
	while ((p = WithdrawalDispatchNextDone()) != NULL)
		MemoryContextDelete(p->cxt);
}

/*
 * A processor reference is stored and indexed: one that is too long or
 * holds control characters is dropped, and said so in last_error, while
 * the outcome stands (a processor that pays and answers with a strange id
 * has still paid).
 */
static void
check_processor_ref(WithdrawalPayout *p)
{
	const char *ref = p->processor_ref;
	size_t		len;
	size_t		i;

	if (ref == NULL)
		return;
	len = strlen(ref);
	for (i = 0; i < len; i++)
		if ((unsigned char) ref[i] < 0x20 || ref[i] == 0x7f)
			break;
	if (len > 0 && len <= WITHDRAWAL_MAX_PROCESSOR_REF && i == len)
		return;
	p->processor_ref = NULL;
	if (p->error == NULL)
		WithdrawalPayoutResult(p, p->outcome,
							   "processor reference not stored: %zu bytes%s (at most %d printable bytes are)",
							   len, i < len ? " with control characters" : "",
							   WITHDRAWAL_MAX_PROCESSOR_REF);
}

/* Classifies a finished transfer and queues its payout as done */
static void
finish_transfer(CURL *easy, CURLcode code)
{
	WithdrawalPayout *p = NULL;
	Transfer   *t;
	const WithdrawalDriver *driver;
	long		status = 0;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &p);
	Assert(p != NULL);
	t = (Transfer *) p->transfer;
	driver = WithdrawalDriverFind(p->driver_name);

	p->retry_after_ms = t->retry_after_ms;
	p->should_retry = t->should_retry;

	if (code != CURLE_OK)
	{
		if (t->too_large)
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
								   "processor response larger than %d bytes", MAX_RESPONSE_BYTES);
		else
		{
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY, "transport error: %s",
								   t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
			p->transport_failed = true;
		}
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(p->cxt);

		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		p->http_status = status;
		driver->classify(p, status, t->response.data, t->response.len);
		MemoryContextSwitchTo(old);
		if (p->outcome == WITHDRAWAL_OUTCOME_NONE)
			WithdrawalPayoutResult(p, WITHDRAWAL_OUTCOME_RETRY,
								   "unclassified HTTP status %ld", status);
		check_processor_ref(p);
	}

	end_transfer(t);
	push_done(p);
}

static void
drain_messages(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE)
			finish_transfer(msg->easy_handle, msg->data.result);
	}
}

static void
rebuild_wait_event_set(void)
{
	dlist_iter	iter;

	if (wes)
		FreeWaitEventSet(wes);
	wes_capacity = Max(WES_MIN_SOCKETS, 2 * nsockets + WES_SPARE_SOCKETS);
	wes = CreateWaitEventSet(dispatch_cxt, wes_capacity + WES_FIXED_EVENTS);
	wes_used = 0;
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	dlist_foreach(iter, &sockets)
	{
		Socket	   *s = dlist_container(Socket, node, iter.cur);

		s->pos = -1;
		add_socket_event(s);
	}
	wes_dirty = false;
}

bool
WithdrawalDispatchWait(long timeout_ms)
{
	WaitEvent  *events;
	int			nevents;
	int			i;
	int			running;
	bool		latch_set = false;
	TimestampTz now;

	if (wes_dirty || wes == NULL)
		rebuild_wait_event_set();

	if (curl_deadline != 0)
	{
		long		curl_ms;

		now = GetCurrentTimestamp();
		curl_ms = curl_deadline <= now ? 0 : (long) ((curl_deadline - now + 999) / 1000);
		if (timeout_ms < 0 || curl_ms < timeout_ms)
			timeout_ms = curl_ms;
	}

	events = palloc(sizeof(WaitEvent) * (wes_capacity + WES_FIXED_EVENTS));
	nevents = WaitEventSetWait(wes, timeout_ms, events, wes_capacity + WES_FIXED_EVENTS,
							   PG_WAIT_EXTENSION);
	for (i = 0; i < nevents; i++)
	{
		WaitEvent  *e = &events[i];

		if (e->events & WL_LATCH_SET)
			latch_set = true;
		else if (e->events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			mask = 0;

			if (e->events & WL_SOCKET_READABLE)
				mask |= CURL_CSELECT_IN;
			if (e->events & WL_SOCKET_WRITEABLE)
				mask |= CURL_CSELECT_OUT;
			curl_multi_socket_action(multi, e->fd, mask, &running);
		}
	}
	pfree(events);

	if (curl_deadline != 0 && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_deadline = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	drain_messages();
	return latch_set;
}
