/*-------------------------------------------------------------------------
 *
 * events.h
 *	  Status events for applications: the status_event table and NOTIFY.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/events.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_EVENTS_H
#define WITHDRAWAL_EVENTS_H

#include "utils/uuid.h"

/*
 * The NOTIFY channel of status changes (when withdrawal.notify_status is
 * on); the payload is "<withdrawal id> <new status>".
 */
#define WITHDRAWAL_STATUS_CHANNEL	"withdrawal_status"

/*
 * Queues the NOTIFY of a status change, sent at commit, when
 * withdrawal.notify_status is on.  request() calls it for the first status
 * of a withdrawal, whose status_event row it writes itself; the trigger on
 * withdrawal.withdrawal for every later change.
 */
extern void WithdrawalStatusNotify(const pg_uuid_t *withdrawal_id,
								   const char *status);

#endif							/* WITHDRAWAL_EVENTS_H */
