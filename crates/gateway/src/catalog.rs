//! What each target's catalog holds: which schemas have a relation of a given name, its
//! columns, and functions (by OID and by name, with their volatility and argument types).
//! Policies use it to resolve unqualified names and `*`, to tell functions that may write
//! from those that cannot, and to name the function a fast-path call invokes.
//!
//! A snapshot is loaded over a session's own upstream connection right after login, when
//! there is none yet or it is stale (older than a minute, or a DDL statement went through
//! the gateway since). Sessions decide against whatever snapshot is current; a missing one
//! means unqualified names match every schema on the search path.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use portcullis_wire::FrameReader;
use portcullis_wire::backend::{self, DataRow, ErrorResponse};
use portcullis_wire::frontend::Query;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Snapshots older than this are reloaded at the next login.
const MAX_AGE: Duration = Duration::from_secs(60);

/// What the catalog is read with. Every value is sent as the hex of its UTF-8 bytes, so
/// that names read the same whatever the session's `client_encoding` and `bytea_output`
/// (the catalog is shared by every session of the target).
static QUERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let u = |e: &str| {
        format!("pg_catalog.encode(pg_catalog.convert_to(({e})::pg_catalog.text, 'UTF8'), 'hex')")
    };
    format!(
        "select {}, {}, {} \
         from pg_catalog.pg_class c \
         join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
         left join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped \
         where c.relkind in ('r', 'v', 'm', 'p', 'f', 'S') \
         order by n.nspname, c.relname, a.attnum; \
         select {}, {}, {}, {}, {} \
         from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace; \
         select {}, {}, {}, {} from pg_catalog.pg_operator o \
         join pg_catalog.pg_proc p on p.oid = o.oprcode join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
         where p.provolatile = 'v'; \
         select {t}, {n}, {p} from pg_catalog.pg_cast c \
         join pg_catalog.pg_type t on t.oid = c.casttarget join pg_catalog.pg_proc p on p.oid = c.castfunc \
         join pg_catalog.pg_namespace n on n.oid = p.pronamespace where p.provolatile = 'v' \
         union all select {t}, {n}, {p} from pg_catalog.pg_type t \
         join pg_catalog.pg_constraint k on k.contypid = t.oid \
         join pg_catalog.pg_depend d on d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass and d.objid = k.oid \
             and d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass \
         join pg_catalog.pg_proc p on p.oid = d.refobjid join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
         where p.provolatile = 'v'",
        u("n.nspname"),
        u("c.relname"),
        u("a.attname"),
        u("p.oid"),
        u("n.nspname"),
        u("p.proname"),
        u("p.provolatile"),
        u("p.proargtypes"),
        u("o.oprname"),
        u("n.nspname"),
        u("p.proname"),
        u("p.provolatile"),
        t = u("t.typname"),
        n = u("n.nspname"),
        p = u("p.proname"),
    )
});

/// The type OID of `regclass`.
const REGCLASS: u32 = 2205;

/// A function as the catalog describes it.
#[derive(Debug, Clone)]
pub struct Function {
    pub schema: String,
    pub name: String,
    /// `provolatile = 'v'`: it may change the database.
    pub volatile: bool,
    /// Argument type OIDs, in order.
    pub arguments: Vec<u32>,
}

/// One loaded catalog.
#[derive(Default)]
pub struct Snapshot {
    relations: HashMap<String, Vec<String>>,
    columns: HashMap<(String, String), Vec<String>>,
    functions: HashMap<u32, Function>,
    /// Per function name: each function's schema and volatility.
    by_name: HashMap<String, Vec<(String, bool)>>,
    /// Per function name: the argument positions where some overload takes a regclass.
    regclass_args: HashMap<String, Vec<usize>>,
    /// Per operator name: the volatile functions implementing one (schema, name).
    volatile_operators: HashMap<String, Vec<(String, String)>>,
    /// Per type name: the volatile functions a cast to it may run (schema, name).
    volatile_casts: HashMap<String, Vec<(String, String)>>,
    loaded: Option<Instant>,
}

impl Snapshot {
    /// The function a fast-path call names.
    pub fn function(&self, oid: u32) -> Option<&Function> {
        self.functions.get(&oid)
    }

    pub fn relation_count(&self) -> usize {
        self.relations.values().map(Vec::len).sum()
    }
}

impl portcullis_policy::Catalog for Snapshot {
    fn schemas_with(&self, relation: &str) -> Option<Vec<String>> {
        Some(self.relations.get(relation).cloned().unwrap_or_default())
    }

    fn columns(&self, schema: &str, relation: &str) -> Option<Vec<String>> {
        self.columns
            .get(&(schema.to_string(), relation.to_string()))
            .cloned()
    }

    fn relations(&self) -> Option<Vec<(String, String)>> {
        Some(self.columns.keys().cloned().collect())
    }

    fn functions_named(&self, name: &str) -> Option<Vec<(String, bool)>> {
        Some(self.by_name.get(name).cloned().unwrap_or_default())
    }

    fn regclass_parameters(&self, name: &str) -> Vec<usize> {
        self.regclass_args.get(name).cloned().unwrap_or_default()
    }

    fn cast_functions(&self, ty: &str) -> Vec<(String, String)> {
        self.volatile_casts.get(ty).cloned().unwrap_or_default()
    }

    fn operator_functions(&self, op: &str) -> Vec<(String, String, bool)> {
        self.volatile_operators
            .get(op)
            .into_iter()
            .flatten()
            .map(|(schema, name)| (schema.clone(), name.clone(), true))
            .collect()
    }
}

/// A target whose catalog could not be loaded: unqualified names match every schema on
/// the search path, and no function is known, so every call may write.
pub struct Unloaded;

impl portcullis_policy::Catalog for Unloaded {
    fn schemas_with(&self, _relation: &str) -> Option<Vec<String>> {
        None
    }

    fn columns(&self, _schema: &str, _relation: &str) -> Option<Vec<String>> {
        None
    }

    fn functions_named(&self, _name: &str) -> Option<Vec<(String, bool)>> {
        Some(Vec::new())
    }
}

/// The catalog of one target.
#[derive(Default)]
pub struct TargetCatalog {
    current: ArcSwapOption<Snapshot>,
    stale: AtomicBool,
    loading: tokio::sync::Mutex<()>,
}

impl TargetCatalog {
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Marks the snapshot out of date (a DDL statement went through).
    pub fn changed(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    fn needs_load(&self) -> bool {
        match self.current.load().as_ref() {
            None => true,
            Some(s) => {
                self.stale.load(Ordering::Relaxed) || s.loaded.is_none_or(|t| t.elapsed() > MAX_AGE)
            }
        }
    }

    /// Loads a fresh snapshot over `upstream` (a logged-in, idle connection) if needed.
    /// Failures are logged: the session goes on with the snapshot it has, or none.
    pub async fn refresh<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        target: &str,
        upstream: &mut FrameReader<S>,
    ) {
        if !self.needs_load() {
            return;
        }
        let _guard = if self.current.load().is_none() {
            // No snapshot at all: wait for one being loaded rather than decide without.
            let guard = self.loading.lock().await;
            if !self.needs_load() {
                return;
            }
            guard
        } else {
            match self.loading.try_lock() {
                Ok(guard) => guard,
                // Another session is refreshing it; the current one serves meanwhile.
                Err(_) => return,
            }
        };
        self.stale.store(false, Ordering::Relaxed);
        match load(upstream).await {
            Ok(s) => {
                tracing::debug!(target, relations = s.relation_count(), "catalog loaded");
                self.current.store(Some(Arc::new(s)));
            }
            Err(e) => {
                self.stale.store(true, Ordering::Relaxed);
                tracing::warn!(target, error = %e, "cannot load the catalog; unqualified names will match every schema on the search path");
            }
        }
    }
}

/// All targets' catalogs.
#[derive(Default)]
pub struct Catalogs {
    map: ArcSwap<HashMap<String, Arc<TargetCatalog>>>,
    insert: std::sync::Mutex<()>,
}

impl Catalogs {
    pub fn get(&self, target: &str) -> Arc<TargetCatalog> {
        if let Some(c) = self.map.load().get(target) {
            return c.clone();
        }
        let _guard = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.map.load();
        if let Some(c) = current.get(target) {
            return c.clone();
        }
        let mut next = HashMap::clone(&current);
        let c = Arc::new(TargetCatalog::default());
        next.insert(target.to_string(), c.clone());
        self.map.store(Arc::new(next));
        c
    }

    /// The current snapshot of `target`, if loaded.
    pub fn snapshot(&self, target: &str) -> Option<Arc<Snapshot>> {
        self.map.load().get(target).and_then(|c| c.snapshot())
    }
}

/// Runs the catalog query and reads its rows.
async fn load<S: AsyncRead + AsyncWrite + Unpin>(
    upstream: &mut FrameReader<S>,
) -> Result<Snapshot, String> {
    let io = |e: std::io::Error| e.to_string();
    let stream = upstream.get_mut();
    stream
        .write_all(Query::new(QUERY.as_bytes()).message().as_bytes())
        .await
        .map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut snapshot = Snapshot::default();
    let mut statement = 0;
    let mut error = None;
    loop {
        let msg = upstream
            .next_message()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the target closed the connection")?;
        match msg.tag() {
            backend::DATA_ROW => {
                let row = DataRow::decode(msg).map_err(|e| e.to_string())?;
                let v: Vec<Option<String>> = row.values().map(|v| v.map(from_hex)).collect();
                match (statement, v.as_slice()) {
                    (0, [Some(schema), Some(rel), column]) => {
                        let key = (schema.clone(), rel.clone());
                        if !snapshot.columns.contains_key(&key) {
                            snapshot
                                .relations
                                .entry(rel.clone())
                                .or_default()
                                .push(schema.clone());
                        }
                        let cols = snapshot.columns.entry(key).or_default();
                        if let Some(c) = column {
                            cols.push(c.clone());
                        }
                    }
                    (
                        1,
                        [
                            Some(oid),
                            Some(schema),
                            Some(name),
                            Some(volatility),
                            Some(args),
                        ],
                    ) => {
                        if let Ok(oid) = oid.parse() {
                            let volatile = volatility == "v";
                            snapshot
                                .by_name
                                .entry(name.clone())
                                .or_default()
                                .push((schema.clone(), volatile));
                            let arguments: Vec<u32> = args
                                .split_whitespace()
                                .filter_map(|a| a.parse().ok())
                                .collect();
                            for (i, _) in arguments
                                .iter()
                                .enumerate()
                                .filter(|(_, t)| **t == REGCLASS)
                            {
                                let at = snapshot.regclass_args.entry(name.clone()).or_default();
                                if !at.contains(&i) {
                                    at.push(i);
                                }
                            }
                            snapshot.functions.insert(
                                oid,
                                Function {
                                    schema: schema.clone(),
                                    name: name.clone(),
                                    volatile,
                                    arguments,
                                },
                            );
                        }
                    }
                    (3, [Some(ty), Some(schema), Some(function)]) => snapshot
                        .volatile_casts
                        .entry(ty.clone())
                        .or_default()
                        .push((schema.clone(), function.clone())),
                    (2, [Some(op), Some(schema), Some(function), Some(_)]) => snapshot
                        .volatile_operators
                        .entry(op.clone())
                        .or_default()
                        .push((schema.clone(), function.clone())),
                    _ => {}
                }
            }
            backend::COMMAND_COMPLETE => statement += 1,
            backend::ERROR_RESPONSE => {
                error = Some(
                    ErrorResponse::decode(&msg)
                        .map(|e| e.message().to_string())
                        .unwrap_or_default(),
                );
            }
            backend::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match error {
        Some(e) => Err(e),
        None => {
            snapshot.loaded = Some(Instant::now());
            Ok(snapshot)
        }
    }
}

/// A value the catalog query sent as the hex of its UTF-8 bytes.
fn from_hex(hex: &[u8]) -> String {
    let bytes = hex::decode(hex).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}
