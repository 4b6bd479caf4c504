
/* withdrawal: nothing of the extension is usable by PUBLIC */

/*
 * Runs last so that it covers every object the parts above created;
 * each part grants its own objects to withdrawal_app, withdrawal_ops and
 * withdrawal_auditor.
 */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA withdrawal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA withdrawal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA withdrawal FROM PUBLIC;
