/*-------------------------------------------------------------------------
 *
 * processor_http.c
 *	  The generic http processor driver (JSON protocol).
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/processor_http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/* The http driver lands here. */
