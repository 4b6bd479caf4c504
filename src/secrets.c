/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  Processor secrets read from withdrawal.secrets_file.
 *
 * The file holds one "name = value" per line; lines starting with "#" and
 * blank lines are ignored, white space around names and values is dropped,
 * and a value may be wrapped in double quotes to keep white space at its
 * ends.  There are no inline comments: "#" inside a value is part of it.
 *
 * Every lookup stats the file and re-reads it when the setting names
 * another file or when the file's identity (device, inode, size, mtime,
 * ctime, mode, owner) has changed, so an edit, a chmod or a SIGHUP that
 * points the setting elsewhere takes effect at the next lookup.  A file
 * that is not a regular file owned by the server's effective uid with no
 * group or other permission bits is refused with a WARNING and yields no
 * secrets.  Problems are reported once per change of the file, never with
 * the content of a line: a value must never reach a log line, an error
 * message, a table or pg_stat_activity.  The file's path goes to the
 * server log only: the setting is for superusers' eyes, while a WARNING
 * goes to whichever role's call looked a secret up (withdrawal_app's
 * receive_webhook(), for one).
 *
 * Values live in a child context of TopMemoryContext.  A pointer returned
 * by WithdrawalSecretGet stays valid across one reload (the previous
 * generation is kept) so that a caller holding an API key while it looks
 * up a webhook secret is never left with a dangling pointer; a generation
 * is wiped with explicit_bzero before its memory is released.
 *
 * Copyright (c) 2026, withdrawal developers
 *
 * IDENTIFICATION
 *	  src/secrets.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "common/string.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "args.h"
#include "crypto.h"
#include "secrets.h"
#include "withdrawal.h"

/* Longest secret name accepted by withdrawal.secret_fingerprint() */
#define WITHDRAWAL_MAX_SECRET_NAME	255

typedef struct WithdrawalSecret
{
	char	   *name;
	char	   *value;
} WithdrawalSecret;

/* One reading of the file; everything lives in cxt */
typedef struct WithdrawalSecretSet
{
	MemoryContext cxt;
	int			nsecrets;
	int			maxsecrets;
	WithdrawalSecret *secrets;
} WithdrawalSecretSet;

/* The setting's value when the file was last examined, or NULL */
static char *examined_path = NULL;

/* Identity of the file last examined (valid when examined_ok) */
static bool examined_ok = false;
static struct stat examined_stat;

/* errno of the last failed stat(), so that it is reported once */
static int	examined_errno = 0;

/* The secrets in force, and the generation before them */
static WithdrawalSecretSet *current_set = NULL;
static WithdrawalSecretSet *retired_set = NULL;

PG_FUNCTION_INFO_V1(withdrawal_secret_fingerprint);

/*
 * Wipes and frees a generation of secrets.
 */
static void
discard_set(WithdrawalSecretSet *set)
{
	int			i;

	if (set == NULL)
		return;
	for (i = 0; i < set->nsecrets; i++)
		explicit_bzero(set->secrets[i].value, strlen(set->secrets[i].value));
	MemoryContextDelete(set->cxt);
}

/*
 * Puts set in force; the one in force becomes the retired generation and
 * the retired one is freed.
 */
static void
install_set(WithdrawalSecretSet *set)
{
	discard_set(retired_set);
	retired_set = current_set;
	current_set = set;
}

/*
 * Sets the DETAIL of a report about the secrets file: detail for the
 * client, detail and the file's path for the server log.  Called inside
 * ereport(), like errdetail().
 */
static int
errdetail_secrets_file(const char *path, const char *detail)
{
	errdetail("%s", detail);
	return errdetail_log("%s The secrets file is \"%s\".", detail, path);
}

/*
 * True when two stat results describe the same file in the same state.
 */
static bool
same_file_state(const struct stat *a, const struct stat *b)
{
	if (a->st_dev != b->st_dev || a->st_ino != b->st_ino ||
		a->st_size != b->st_size || a->st_mode != b->st_mode ||
		a->st_uid != b->st_uid ||
		a->st_mtime != b->st_mtime || a->st_ctime != b->st_ctime)
		return false;
#ifdef st_mtime
	/* st_mtime is a macro over st_mtim where nanoseconds are available */
	if (a->st_mtim.tv_nsec != b->st_mtim.tv_nsec ||
		a->st_ctim.tv_nsec != b->st_ctim.tv_nsec)
		return false;
#endif
	return true;
}

/*
 * True when the file may hold secrets: a regular file owned by the server
 * user, with no permission for group or others.  Logs why not otherwise.
 */
static bool
file_acceptable(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("secrets file is not a regular file"),
				 errdetail_secrets_file(path, "The file is refused and no secrets are available.")));
		return false;
	}
	if (st->st_uid != geteuid())
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("secrets file is not owned by the database server user"),
				 errdetail_secrets_file(path,
										psprintf("The file is refused and no secrets are available: it is owned by uid %d, the server runs as uid %d.",
												 (int) st->st_uid, (int) geteuid())),
				 errhint("Make the server's operating system user the owner of the file and give it mode 0600.")));
		return false;
	}
	if ((st->st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("secrets file has group or world access"),
				 errdetail_secrets_file(path,
										psprintf("The file is refused and no secrets are available: its permissions are %04o, they must be u=rw (0600) or less.",
												 (unsigned int) (st->st_mode & 07777))),
				 errhint("Fix it with chmod 0600.")));
		return false;
	}
	return true;
}

/*
 * True when name is a valid secret name: letters, digits, "_", "." and "-".
 */
static bool
valid_name(const char *name)
{
	const char *p;

	if (*name == '\0')
		return false;
	for (p = name; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			return false;
	}
	return true;
}

/*
 * Adds the secret of one line to set (in set's context).  The line is
 * modified in place.  Reports a bad line by number, never by content.
 */
static void
parse_line(WithdrawalSecretSet *set, char *line, int lineno, const char *path)
{
	char	   *name;
	char	   *value;
	char	   *eq;
	char	   *end;
	size_t		len;
	int			i;

	pg_strip_crlf(line);
	name = line;
	while (*name == ' ' || *name == '\t')
		name++;
	if (*name == '\0' || *name == '#')
		return;

	eq = strchr(name, '=');
	if (eq == NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("invalid line %d in the secrets file", lineno),
				 errdetail_secrets_file(path, "Each line must be \"name = value\", a comment starting with \"#\", or blank; the line is ignored.")));
		return;
	}

	/* name: up to "=", trailing blanks dropped */
	end = eq;
	while (end > name && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = '\0';
	if (!valid_name(name))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("invalid secret name on line %d of the secrets file", lineno),
				 errdetail_secrets_file(path, "Names consist of letters, digits, \"_\", \".\" and \"-\"; the line is ignored.")));
		return;
	}

	/* value: after "=", surrounding blanks dropped, optional quotes */
	value = eq + 1;
	while (*value == ' ' || *value == '\t')
		value++;
	len = strlen(value);
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
		value[--len] = '\0';
	if (len >= 2 && value[0] == '"' && value[len - 1] == '"')
	{
		value[len - 1] = '\0';
		value++;
		len -= 2;
	}
	if (len == 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("secret \"%s\" on line %d of the secrets file is empty", name, lineno),
				 errdetail_secrets_file(path, "The line is ignored.")));
		return;
	}

	for (i = 0; i < set->nsecrets; i++)
	{
		if (strcmp(set->secrets[i].name, name) == 0)
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("secret \"%s\" is defined more than once in the secrets file", name),
					 errdetail_secrets_file(path, psprintf("The definition on line %d is used.", lineno))));
			explicit_bzero(set->secrets[i].value, strlen(set->secrets[i].value));
			pfree(set->secrets[i].value);
			set->secrets[i].value = MemoryContextStrdup(set->cxt, value);
			return;
		}
	}

	if (set->nsecrets == set->maxsecrets)
	{
		set->maxsecrets *= 2;
		set->secrets = repalloc(set->secrets, sizeof(WithdrawalSecret) * set->maxsecrets);
	}
	set->secrets[set->nsecrets].name = MemoryContextStrdup(set->cxt, name);
	set->secrets[set->nsecrets].value = MemoryContextStrdup(set->cxt, value);
	set->nsecrets++;
}

/*
 * Reads the secrets file at path.  Returns the secrets, or NULL (after a
 * WARNING) when the file cannot be read or is refused.  Sets examined_stat
 * to the identity of the file actually opened.
 */
static WithdrawalSecretSet *
read_secrets_file(const char *path)
{
	FILE	   *volatile fp;
	WithdrawalSecretSet *volatile set = NULL;
	struct stat st;

	fp = AllocateFile(path, "r");
	if (fp == NULL)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not open the secrets file: %m"),
				 errdetail_secrets_file(path, "No secrets are available.")));
		return NULL;
	}
	if (fstat(fileno(fp), &st) != 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not stat the secrets file: %m"),
				 errdetail_secrets_file(path, "No secrets are available.")));
		FreeFile(fp);
		return NULL;
	}
	examined_stat = st;
	if (!file_acceptable(path, &st))
	{
		FreeFile(fp);
		return NULL;
	}

	PG_TRY();
	{
		MemoryContext cxt;
		MemoryContext oldcxt;
		StringInfoData line;
		int			lineno = 0;
		bool		failed;

		cxt = AllocSetContextCreate(TopMemoryContext, "withdrawal secrets",
									ALLOCSET_SMALL_SIZES);
		set = MemoryContextAllocZero(cxt, sizeof(WithdrawalSecretSet));
		set->cxt = cxt;
		set->maxsecrets = 8;
		set->secrets = MemoryContextAlloc(cxt, sizeof(WithdrawalSecret) * set->maxsecrets);

		oldcxt = MemoryContextSwitchTo(cxt);
		initStringInfo(&line);
		/* room for a typical line, so that no stale copy is left behind */
		enlargeStringInfo(&line, 4096);
		while (pg_get_line_buf(fp, &line))
			parse_line(set, line.data, ++lineno, path);
		failed = ferror(fp) != 0;
		explicit_bzero(line.data, line.maxlen);
		pfree(line.data);
		MemoryContextSwitchTo(oldcxt);

		if (failed)
		{
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not read the secrets file: %m"),
					 errdetail_secrets_file(path, "No secrets are available.")));
			discard_set(set);
			set = NULL;
		}
		else
			ereport(DEBUG1,
					(errmsg_internal("read %d secrets from the secrets file", set->nsecrets),
					 errdetail_log("The secrets file is \"%s\".", path)));
	}
	PG_CATCH();
	{
		FreeFile(fp);
		discard_set(set);
		PG_RE_THROW();
	}
	PG_END_TRY();

	FreeFile(fp);
	return set;
}

/*
 * Forgets everything known about the file previously examined.
 */
static void
forget_file(void)
{
	if (examined_path != NULL)
		pfree(examined_path);
	examined_path = NULL;
	examined_ok = false;
	examined_errno = 0;
	install_set(NULL);
}

/*
 * Brings current_set up to date with the setting and the file.
 */
static void
refresh_secrets(void)
{
	const char *path = withdrawal_secrets_file;
	struct stat st;

	if (path == NULL || path[0] == '\0')
	{
		if (examined_path != NULL)
			forget_file();
		return;
	}
	if (examined_path == NULL || strcmp(examined_path, path) != 0)
	{
		forget_file();
		examined_path = MemoryContextStrdup(TopMemoryContext, path);
	}

	if (stat(path, &st) != 0)
	{
		int			save_errno = errno;

		if (examined_ok || examined_errno != save_errno)
		{
			errno = save_errno;
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not stat the secrets file: %m"),
					 errdetail_secrets_file(path, "No secrets are available.")));
		}
		examined_ok = false;
		examined_errno = save_errno;
		if (current_set != NULL)
			install_set(NULL);
		return;
	}
	if (examined_ok && same_file_state(&st, &examined_stat))
		return;

	examined_stat = st;
	examined_ok = true;
	examined_errno = 0;
	install_set(read_secrets_file(path));
}

/*
 * Returns the secret called name, or NULL; see secrets.h.
 */
const char *
WithdrawalSecretGet(const char *name)
{
	int			i;

	if (name == NULL)
		return NULL;
	refresh_secrets();
	if (current_set == NULL)
		return NULL;
	for (i = 0; i < current_set->nsecrets; i++)
	{
		if (strcmp(current_set->secrets[i].name, name) == 0)
			return current_set->secrets[i].value;
	}
	return NULL;
}

/*
 * withdrawal.secret_fingerprint(name text) returns text
 *
 * Hex SHA-256 of the secret called name, or NULL when there is none: lets
 * the owner check which key is in force without ever seeing it.
 */
Datum
withdrawal_secret_fingerprint(PG_FUNCTION_ARGS)
{
	char	   *name = WithdrawalArgText(fcinfo, 0, "name", WITHDRAWAL_MAX_SECRET_NAME);
	const char *value;
	uint8		digest[WITHDRAWAL_SHA256_LEN];
	char		hex[WITHDRAWAL_SHA256_LEN * 2 + 1];

	value = WithdrawalSecretGet(name);
	if (value == NULL)
		PG_RETURN_NULL();

	WithdrawalSha256(value, strlen(value), digest);

	hex_encode((const char *) digest, sizeof(digest), hex);
	hex[sizeof(hex) - 1] = '\0';
	explicit_bzero(digest, sizeof(digest));
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}
