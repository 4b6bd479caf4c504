/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  Processor webhooks: signature verification, deduplication, settlement.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/webhook.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/* receive_webhook lands here. */
