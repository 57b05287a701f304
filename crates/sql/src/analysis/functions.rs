//! What built-in functions do beyond computing a value, by name.
//!
//! Classification goes by the function's own name whatever its schema, so a user-defined
//! `public.pg_read_file` is treated like the real one: the safe direction to be wrong in.

use std::collections::BTreeSet;

use super::facts::FunctionClass;

const SERVER_FILES: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    "pg_ls_dir",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_logicalmapdir",
    "pg_ls_replslotdir",
    "lo_import",
    "lo_export",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "pg_logdir_ls",
];

const DYNAMIC_SQL: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_fetch",
    "dblink_send_query",
    "dblink_get_result",
    "dblink_build_sql_insert",
    "dblink_build_sql_update",
    "dblink_build_sql_delete",
];

const SENDS_DATA: &[&str] = &[
    "pg_notify",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_open",
    "dblink_send_query",
    "pg_logical_emit_message",
];

const SESSION_CONFIG: &[&str] = &["set_config"];

const ADMIN: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_origin_create",
    "pg_log_backend_memory_contexts",
];

const LARGE_OBJECTS: &[&str] = &[
    "lo_creat",
    "lo_create",
    "lo_open",
    "lo_close",
    "loread",
    "lowrite",
    "lo_lseek",
    "lo_lseek64",
    "lo_tell",
    "lo_tell64",
    "lo_truncate",
    "lo_truncate64",
    "lo_unlink",
    "lo_get",
    "lo_put",
    "lo_from_bytea",
    "lo_import",
    "lo_export",
];

/// Built-in functions that change data or shared state: writes, whatever statement calls
/// them.
const WRITES: &[&str] = &[
    // Large objects that are created, changed or removed.
    "lo_creat",
    "lo_create",
    "lo_open",
    "lowrite",
    "lo_truncate",
    "lo_truncate64",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_import",
    "lo_export",
    // Sequences.
    "nextval",
    "setval",
    // Advisory locks hold other sessions up.
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    // Other servers, other backends, the WAL, replication, statistics, indexes.
    "dblink_exec",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_logical_emit_message",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_replication_origin_advance",
    "pg_replication_origin_session_setup",
    "pg_replication_origin_session_reset",
    "pg_replication_origin_xact_setup",
    "pg_replication_origin_xact_reset",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_create_restore_point",
    "pg_switch_wal",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_slru",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_replication_slot",
    "pg_stat_reset_subscription_stats",
    "pg_stat_statements_reset",
    "brin_summarize_new_values",
    "brin_summarize_range",
    "brin_desummarize_range",
    "gin_clean_pending_list",
    "pg_import_system_collations",
    "pg_extension_config_dump",
    "pg_nextoid",
    "pg_stop_making_pinned_objects",
];

/// Built-in (`pg_catalog`) functions the catalog marks volatile that change nothing but
/// the session's own transient state: reading clocks, random numbers, sleeping, sizes and
/// statistics, the server's status. Every other volatile function is a write.
const HARMLESS_VOLATILE: &[&str] = &[
    // TABLESAMPLE methods.
    "system",
    "bernoulli",
    "system_rows",
    "system_time",
    "random",
    "random_normal",
    "setseed",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "currval",
    "lastval",
    "current_query",
    "currtid2",
    "txid_status",
    "pg_xact_status",
    "pg_xact_commit_timestamp",
    "pg_xact_commit_timestamp_origin",
    "pg_last_committed_xact",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_isolation_test_session_is_blocked",
    "pg_lock_status",
    "pg_database_size",
    "pg_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_total_relation_size",
    "pg_tablespace_size",
    "pg_partition_tree",
    "pg_partition_ancestors",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_get_wal_replay_pause_state",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_jit_available",
    "pg_collation_actual_version",
    "pg_database_collation_actual_version",
    "pg_notification_queue_usage",
    "pg_sequence_last_value",
    "pg_get_multixact_members",
    "pg_prepared_xact",
    "pg_stat_clear_snapshot",
    "pg_stat_force_next_flush",
    "pg_stat_have_stats",
    "pg_stat_get_recovery_prefetch",
    "pg_stat_get_xact_numscans",
    "pg_stat_get_xact_tuples_returned",
    "pg_stat_get_xact_tuples_fetched",
    "pg_stat_get_xact_tuples_inserted",
    "pg_stat_get_xact_tuples_updated",
    "pg_stat_get_xact_tuples_deleted",
    "pg_stat_get_xact_tuples_hot_updated",
    "pg_stat_get_xact_blocks_fetched",
    "pg_stat_get_xact_blocks_hit",
    "pg_stat_get_xact_function_calls",
    "pg_stat_get_xact_function_total_time",
    "pg_stat_get_xact_function_self_time",
    "pg_get_wal_resource_managers",
    "pg_show_replication_origin_status",
    "pg_replication_origin_progress",
    "pg_replication_origin_session_is_setup",
    "pg_replication_origin_session_progress",
];

/// Whether `pg_catalog.name`, which the catalog marks volatile, is known to write
/// nothing.
pub fn harmless_volatile(name: &str) -> bool {
    HARMLESS_VOLATILE.contains(&name)
}

/// The classes of the function called `name` (already folded to lower case by the parser).
pub fn classify(name: &str) -> BTreeSet<FunctionClass> {
    let mut out = BTreeSet::new();
    for (list, class) in [
        (SERVER_FILES, FunctionClass::ServerFiles),
        (DYNAMIC_SQL, FunctionClass::DynamicSql),
        (SENDS_DATA, FunctionClass::SendsData),
        (SESSION_CONFIG, FunctionClass::SessionConfig),
        (ADMIN, FunctionClass::Admin),
        (LARGE_OBJECTS, FunctionClass::LargeObjects),
        (WRITES, FunctionClass::Writes),
    ] {
        if list.contains(&name) {
            out.insert(class);
        }
    }
    out
}

/// Functions whose constant arguments the analysis reads, or which name an object or a
/// setting by a constant (`nextval('s')`, `current_setting('x')`): statements passing them
/// constants never share an analysis with statements passing others.
const NAME_ARGUMENTS: &[&str] = &[
    "nextval",
    "currval",
    "setval",
    "current_setting",
    "to_regclass",
    "to_regproc",
    "to_regprocedure",
    "to_regoper",
    "to_regoperator",
    "to_regtype",
    "to_regrole",
    "to_regnamespace",
    "to_regcollation",
];

/// Whether the constants passed to `name` may matter to the analysis: any classified
/// function, and the functions that take an object's or a setting's name.
pub(crate) fn reads_constant_arguments(name: &str) -> bool {
    NAME_ARGUMENTS.contains(&name) || !classify(name).is_empty()
}

/// Large-object functions by the OID the fast-path FunctionCall names: libpq and drivers
/// call these through the protocol rather than through SQL.
pub fn large_object_function_by_oid(oid: u32) -> Option<&'static str> {
    Some(match oid {
        952 => "lo_open",
        953 => "lo_close",
        954 => "loread",
        955 => "lowrite",
        956 => "lo_lseek",
        957 => "lo_creat",
        715 => "lo_create",
        958 => "lo_tell",
        1004 => "lo_truncate",
        964 => "lo_unlink",
        3170 => "lo_lseek64",
        3171 => "lo_tell64",
        3172 => "lo_truncate64",
        764 => "lo_import",
        767 => "lo_import",
        765 => "lo_export",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(classify("pg_read_file").contains(&FunctionClass::ServerFiles));
        assert!(classify("lo_export").contains(&FunctionClass::ServerFiles));
        assert!(classify("lo_export").contains(&FunctionClass::LargeObjects));
        assert!(classify("dblink").contains(&FunctionClass::SendsData));
        assert!(classify("query_to_xml").contains(&FunctionClass::DynamicSql));
        assert!(classify("lower").is_empty());
        assert_eq!(large_object_function_by_oid(765), Some("lo_export"));
        for writes in [
            "lo_from_bytea",
            "nextval",
            "setval",
            "pg_advisory_lock",
            "dblink_exec",
        ] {
            assert!(
                classify(writes).contains(&FunctionClass::Writes),
                "{writes}"
            );
        }
        assert!(!classify("currval").contains(&FunctionClass::Writes));
        assert!(harmless_volatile("random") && !harmless_volatile("nextval"));
    }
}
