/*-------------------------------------------------------------------------
 *
 * processor_sandbox.c
 *	  The sandbox processor driver: no network, settles by itself.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor_sandbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/* The sandbox driver lands here. */
