/*-------------------------------------------------------------------------
 *
 * url.h
 *	  The URL policy for processor endpoints: https, or plain http to a
 *	  loopback host when withdrawal.allow_insecure_loopback is on.
 *
 * Layer 0: used by config.c (when a base_url is written), by the worker
 * (before it claims for a channel) and by dispatch.c (before each send).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/url.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_URL_H
#define WITHDRAWAL_URL_H

/*
 * true when url may be used; else false with *why, palloc'd, saying why.
 * Raises no ERROR.
 */
extern bool WithdrawalUrlAllowed(const char *url, char **why);

#endif							/* WITHDRAWAL_URL_H */
