/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  Processor secrets read from withdrawal.secrets_file.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/secrets.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "secrets.h"

/* Placeholder until the secrets file reader lands: no secrets. */
const char *
WithdrawalSecretGet(const char *name)
{
	return NULL;
}
