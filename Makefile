# Makefile for the withdrawal extension (PGXS)

EXTENSION = withdrawal
EXTVERSION = 1.1.0

MODULE_big = withdrawal
OBJS = \
	src/withdrawal.o \
	src/json.o \
	src/url.o \
	src/args.o \
	src/spi.o \
	src/indexscan.o \
	src/cache.o \
	src/config.o \
	src/config_seed.o \
	src/config_audit.o \
	src/audit.o \
	src/audit_verify.o \
	src/crypto.o \
	src/binding.o \
	src/ledger.o \
	src/credit_many.o \
	src/statement.o \
	src/lock.o \
	src/lifecycle.o \
	src/channel.o \
	src/blocklist.o \
	src/policy.o \
	src/request.o \
	src/methods.o \
	src/review.o \
	src/secrets.o \
	src/flow.o \
	src/shmem.o \
	src/workerproc.o \
	src/workerchannels.o \
	src/claim.o \
	src/record.o \
	src/ops.o \
	src/worker.o \
	src/dispatch.o \
	src/processor.o \
	src/processor_sandbox.o \
	src/processor_http.o \
	src/processor_stripe.o \
	src/processor_paypal.o \
	src/webhook_signature.o \
	src/webhook_event.o \
	src/webhook.o \
	src/events.o \
	src/reconcile.o \
	src/monitor.o

PGFILEDESC = "withdrawal - user payouts inside PostgreSQL"

# The install script of the current version is assembled from the ordered
# parts in sql/install/, one per subsystem.  Released install scripts are
# kept verbatim (sql/released.sha256 pins them) and upgrade scripts carry
# each release's delta.
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))

# Listed by name: sql/ also holds the extension scripts.
REGRESS = core bad_input roles audit dispatch webhook webhook_parity reconcile policy review proof access monitor bulk restore events holds config_audit returns methods statement invariants
REGRESS_OPTS = --inputdir=. --temp-instance=tmp_check_regress --temp-config=test/regress.conf

# Isolation specs (specs/*.spec, expected/*.out): the documented races,
# interleaved step by step by PostgreSQL's isolation tester, on a temporary
# instance of their own with the same settings.
ISOLATION = idempotency daily_limit four_eyes webhook_race sweep_lock_order
ISOLATION_OPTS = --temp-instance=tmp_check_iso --temp-config=test/regress.conf

SHLIB_LINK += -lcurl -lssl -lcrypto
PG_CPPFLAGS += -I$(srcdir)/src -DWITHDRAWAL_VERSION='"$(EXTVERSION)"'

EXTRA_CLEAN = tmp_check_regress tmp_check_iso output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/$(EXTENSION)--$(EXTVERSION).sql: $(sort $(wildcard sql/install/*.sql))
	cat $^ > $@

# TAP tests against an installed extension; tools/test.sh sets PATH to a
# private installation so that nothing is installed system-wide.
PROVE_TESTS ?= $(wildcard test/t/*.pl)
.PHONY: prove-installcheck
prove-installcheck:
	rm -rf $(CURDIR)/tmp_check
	cd $(srcdir) && TESTDIR='$(CURDIR)' PATH="$(bindir):$$PATH" PGPORT='6$(DEF_PGPORT)' \
	   PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' \
	   $(PROVE) -I $(pgxsdir)/src/test/perl -I test/perl $(PROVE_FLAGS) $(PROVE_TESTS)
