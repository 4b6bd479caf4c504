/*-------------------------------------------------------------------------
 *
 * secrets.h
 *	  Processor API keys and webhook secrets, read from the file named by
 *	  withdrawal.secrets_file, never stored in tables or logged.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/secrets.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef WITHDRAWAL_SECRETS_H
#define WITHDRAWAL_SECRETS_H

/*
 * Returns the secret called name, or NULL when there is none.  The file is
 * (re)read when withdrawal.secrets_file or the file itself changes; a file
 * not owned by the server user or readable by others is refused with a
 * log line and no secret is returned.  The result lives in a long-lived
 * context: do not pfree it, do not copy it into anything that is logged.
 */
extern const char *WithdrawalSecretGet(const char *name);

#endif							/* WITHDRAWAL_SECRETS_H */
