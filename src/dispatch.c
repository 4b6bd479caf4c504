/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  HTTP dispatch through the libcurl multi interface.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/dispatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

/* The dispatcher lands here. */
