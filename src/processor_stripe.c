/*-------------------------------------------------------------------------
 *
 * processor_stripe.c
 *	  The stripe processor driver (form-encoded transfers).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor_stripe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/* The stripe driver lands here. */
