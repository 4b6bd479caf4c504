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

/*
 * The NOTIFY channel of status changes (when withdrawal.notify_status is
 * on); the payload is "<withdrawal id> <new status>".
 */
#define WITHDRAWAL_STATUS_CHANNEL	"withdrawal_status"

#endif							/* WITHDRAWAL_EVENTS_H */
