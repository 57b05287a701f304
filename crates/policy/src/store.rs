//! Loading policy files: parse, give each policy its id, check annotations, validate
//! against the schema, and report every problem with file, line and column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{Effect, PolicyId, PolicySet, Schema, ValidationMode, Validator};

/// Whether refusals are enforced or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Nothing is refused; would-be refusals are reported.
    Observe,
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Why a policy set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no policy files (*.cedar) found in {0}")]
    Empty(String),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<SourceError>),
}

/// What the gateway reads from a policy's annotations.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub id: String,
    pub approval: Option<String>,
    pub mask: Option<String>,
    pub max_rows: Option<u64>,
}

/// Which parts of the request context any policy reads: decisions that do not depend on
/// a part may be reused across its values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sensitivity {
    /// `context.statement.text`.
    pub text: bool,
    /// `hour`, `minute`, `weekday`, `date`.
    pub time: bool,
    /// `client_address`, `application_name`.
    pub client: bool,
}

/// A validated policy set, ready to decide.
pub struct PolicyStore {
    /// Policies that are enforced.
    pub(crate) enforced: PolicySet,
    /// The enforced set without `@approval` forbids: a request this set allows, but the
    /// enforced set denies, needs approval.
    pub(crate) without_approval: PolicySet,
    /// The enforced permits with their conditions dropped (only their scope left): a
    /// request one of them allows, which the enforced set refuses, was refused because the
    /// permit's condition did not hold.
    pub(crate) unconditioned: PolicySet,
    /// Every policy, observe-only ones included; `None` when nothing is observe-only.
    pub(crate) shadow: Option<PolicySet>,
    pub(crate) meta: HashMap<PolicyId, Meta>,
    pub(crate) mode: Mode,
    files: Vec<String>,
    count: usize,
    fingerprint: u64,
    sha256: String,
    sensitivity: Sensitivity,
    /// Names of permit policies annotated `@record`: statements they allow have their
    /// result rows recorded in the audit trail.
    recorded: std::collections::HashSet<String>,
    /// Names of permit policies annotated `@sensitive`: the bound parameters of statements
    /// they allow are masked in the audit trail.
    sensitive: std::collections::HashSet<String>,
    /// Every column a policy names (`Column::"schema.table.column"`): where the catalog
    /// cannot list a table's columns, a read of all of them is a read of these.
    named_columns: std::collections::BTreeSet<String>,
}

/// Masking strategies a `@mask` annotation may name.
pub const MASK_STRATEGIES: &[&str] = &["redact", "null", "hash", "partial", "email", "last4"];

pub(crate) fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::from_cedarschema_str(crate::SCHEMA)
            .map(|(s, _)| s)
            .unwrap_or_else(|e| panic!("the built-in Cedar schema does not parse: {e}"))
    })
}

/// Line and column (1-based) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

fn diagnostics(file: &str, text: &str, d: &dyn miette::Diagnostic, message: String) -> SourceError {
    let offset = d
        .labels()
        .and_then(|mut l| l.next())
        .map(|l| l.offset())
        .unwrap_or(0);
    let (line, column) = line_col(text, offset);
    let mut message = message;
    if let Some(help) = d.help() {
        message = format!("{message} ({help})");
    }
    SourceError {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

/// Policy files under `paths`: files as given, directories' `*.cedar` in name order.
pub fn policy_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|source| LoadError::Read {
                path: p.display().to_string(),
                source,
            })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "cedar"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(LoadError::Empty(p.display().to_string()));
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("files", &self.files)
            .field("policies", &self.count)
            .field("mode", &self.mode)
            .finish()
    }
}

impl PolicyStore {
    /// Loads the policy files under `paths` (files or directories of `*.cedar`).
    pub fn load(paths: &[PathBuf], mode: Mode) -> Result<PolicyStore, LoadError> {
        let mut sources = Vec::new();
        for f in policy_files(paths)? {
            let text = std::fs::read_to_string(&f).map_err(|source| LoadError::Read {
                path: f.display().to_string(),
                source,
            })?;
            sources.push((f.display().to_string(), text));
        }
        Self::from_sources(&sources, mode)
    }

    /// Builds a store from `(name, text)` sources.
    pub fn from_sources(
        sources: &[(String, String)],
        mode: Mode,
    ) -> Result<PolicyStore, LoadError> {
        let schema = schema();
        let mut errors = Vec::new();
        let mut all = PolicySet::new();
        let mut meta = HashMap::new();
        let mut origin: HashMap<PolicyId, (String, usize)> = HashMap::new();
        let mut observe_ids = Vec::new();
        let mut recorded = std::collections::HashSet::new();
        let mut sensitive = std::collections::HashSet::new();
        for (file_index, (file, text)) in sources.iter().enumerate() {
            let set = match PolicySet::from_str(text) {
                Ok(s) => s,
                Err(e) => {
                    for err in e.iter() {
                        errors.push(diagnostics(file, text, err, err.to_string()));
                    }
                    continue;
                }
            };
            let stem = Path::new(file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.clone());
            for (n, policy) in set.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{stem}#{n}"));
                let pid = PolicyId::new(&id);
                let policy = policy.new_id(pid.clone());
                let at = |message: String| SourceError {
                    file: file.clone(),
                    line: 1,
                    column: 1,
                    message: format!("policy '{id}': {message}"),
                };
                let approval = policy.annotation("approval").map(str::to_string);
                let mask = policy.annotation("mask").map(str::to_string);
                let max_rows = match policy.annotation("max_rows") {
                    None => None,
                    Some(v) => match v.parse::<u64>() {
                        Ok(n) => Some(n),
                        Err(_) => {
                            errors.push(at(format!("@max_rows(\"{v}\") is not a whole number")));
                            None
                        }
                    },
                };
                let effect = policy.effect();
                if approval.as_deref().is_some_and(str::is_empty) {
                    errors.push(at("@approval needs the group that approves".into()));
                }
                if approval.is_some() && effect != Effect::Forbid {
                    errors.push(at("@approval belongs on a forbid policy".into()));
                }
                if let Some(m) = &mask {
                    if effect != Effect::Forbid {
                        errors.push(at(
                            "@mask belongs on a forbid policy for read_unmasked".into()
                        ));
                    }
                    if !MASK_STRATEGIES.contains(&m.as_str()) {
                        errors.push(at(format!(
                            "@mask(\"{m}\") names no masking strategy (use one of {})",
                            MASK_STRATEGIES.join(", ")
                        )));
                    }
                }
                if max_rows.is_some() && effect != Effect::Permit {
                    errors.push(at("@max_rows belongs on a permit policy".into()));
                }
                if let Some((other, _)) = origin.get(&pid) {
                    errors.push(at(format!("the id is already used in {other}")));
                    continue;
                }
                if policy.annotation("observe").is_some() {
                    observe_ids.push(pid.clone());
                }
                for (annotation, set) in [("record", &mut recorded), ("sensitive", &mut sensitive)]
                {
                    if policy.annotation(annotation).is_some() {
                        if effect == Effect::Permit {
                            set.insert(id.clone());
                        } else {
                            errors.push(at(format!("@{annotation} belongs on a permit policy")));
                        }
                    }
                }
                origin.insert(pid.clone(), (file.clone(), file_index));
                meta.insert(
                    pid.clone(),
                    Meta {
                        id: id.clone(),
                        approval,
                        mask,
                        max_rows,
                    },
                );
                if let Err(e) = all.add(policy) {
                    errors.push(at(e.to_string()));
                }
            }
        }
        if errors.is_empty() {
            let result = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
            for e in result.validation_errors() {
                let (file, index) = origin.get(e.policy_id()).cloned().unwrap_or_default();
                let text = sources.get(index).map(|(_, t)| t.as_str()).unwrap_or("");
                errors.push(diagnostics(
                    &file,
                    text,
                    e,
                    format!("policy '{}': {e}", e.policy_id()),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(LoadError::Invalid(errors));
        }

        let subset = |keep: &dyn Fn(&PolicyId) -> bool| -> PolicySet {
            let mut s = PolicySet::new();
            for p in all.policies() {
                if keep(p.id()) {
                    // Ids are unique in `all`, so adding to a fresh set cannot fail.
                    let _ = s.add(p.clone());
                }
            }
            s
        };
        let enforced = match mode {
            Mode::Observe => PolicySet::new(),
            Mode::Enforce => subset(&|id| !observe_ids.contains(id)),
        };
        let without_approval = subset(&|id| {
            !observe_ids.contains(id) && meta.get(id).is_none_or(|m: &Meta| m.approval.is_none())
        });
        let shadow = (mode == Mode::Observe || !observe_ids.is_empty()).then(|| all.clone());
        let mut unconditioned = PolicySet::new();
        for p in enforced.policies() {
            if p.effect() != cedar_policy::Effect::Permit {
                continue;
            }
            // Only permits whose conditions read the context alone (the time, the client,
            // the statement): one whose condition is about who or what (a group written
            // in `when`) would permit nothing more for a better moment.
            let scope_only = p.to_json().ok().and_then(|mut json| {
                let mut vars = std::collections::BTreeSet::new();
                collect_vars(json.get("conditions")?, &mut vars);
                if vars != std::collections::BTreeSet::from(["context".to_string()]) {
                    return None;
                }
                json.as_object_mut()?
                    .insert("conditions".into(), serde_json::json!([]));
                cedar_policy::Policy::from_json(Some(p.id().clone()), json).ok()
            });
            if let Some(s) = scope_only {
                // Ids are unique in `enforced`, so adding cannot fail.
                let _ = unconditioned.add(s);
            }
        }
        // A textual scan errs towards "sensitive": a policy that mentions `hour` in a
        // string makes decisions time-dependent, which only costs cache hits.
        let mut sensitivity = Sensitivity::default();
        let mut named_columns = std::collections::BTreeSet::new();
        for p in all.policies() {
            if let Ok(json) = p.to_json() {
                collect_columns(&json, &mut named_columns);
            }
            let src = p.to_string();
            sensitivity.text |= src.contains(".text") || src.contains("[\"text\"]");
            sensitivity.time |= ["hour", "minute", "weekday", "date"]
                .iter()
                .any(|w| src.contains(w));
            sensitivity.client |=
                src.contains("client_address") || src.contains("application_name");
        }
        let mut digest = <sha2::Sha256 as sha2::Digest>::new();
        for (name, text) in sources {
            for part in [name.as_bytes(), b"\0", text.as_bytes(), b"\0"] {
                sha2::Digest::update(&mut digest, part);
            }
        }
        let sha256 = hex::encode(sha2::Digest::finalize(digest));
        let mut fingerprint: u64 = 0xcbf29ce484222325;
        for (name, text) in sources {
            for b in name.bytes().chain(text.bytes()) {
                fingerprint = (fingerprint ^ b as u64).wrapping_mul(0x100000001b3);
            }
        }
        Ok(PolicyStore {
            enforced,
            without_approval,
            unconditioned,
            shadow,
            count: meta.len(),
            meta,
            mode,
            files: sources.iter().map(|(n, _)| n.clone()).collect(),
            fingerprint,
            sha256,
            sensitivity,
            recorded,
            sensitive,
            named_columns,
        })
    }

    /// The columns of `table` (`schema.name`) that some policy names.
    pub fn named_columns_of(&self, table: &str) -> Vec<String> {
        let prefix = format!("{table}.");
        self.named_columns
            .iter()
            .filter_map(|c| c.strip_prefix(&prefix))
            .filter(|c| !c.contains('.'))
            .map(str::to_string)
            .collect()
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn files(&self) -> &[String] {
        &self.files
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Which parts of the context the policies read.
    pub fn sensitivity(&self) -> Sensitivity {
        self.sensitivity
    }

    /// A hash of the files' names and contents, to tell policy versions apart in logs.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether the policy with this name asks for its statements' rows to be recorded.
    pub fn records(&self, name: &str) -> bool {
        self.recorded.contains(name)
    }

    /// Whether the policy with this name marks its statements' parameters as sensitive.
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.sensitive.contains(name)
    }

    /// SHA-256 over every file's name and text, in load order: names the policy set in
    /// the audit trail.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub(crate) fn meta(&self, id: &PolicyId) -> Option<&Meta> {
        self.meta.get(id)
    }

    /// The conditions (`when { … }`, `unless { … }`) of the enforced policy with this
    /// name, as written, for `policy explain`.
    pub fn conditions(&self, name: &str) -> Option<String> {
        let policy = self
            .enforced
            .policies()
            .find(|p| self.meta(p.id()).is_some_and(|m| m.id == name))?;
        let text = policy.to_string();
        let rest = text.get(scope_end(&text)?..)?.trim();
        let rest = rest.strip_suffix(';').unwrap_or(rest).trim();
        (!rest.is_empty()).then(|| rest.to_string())
    }
}

/// Where a policy's scope ends in its text: after the parenthesis that closes the one
/// following `permit` or `forbid` (annotations before it have parentheses too, and
/// strings may hold any).
fn scope_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut depth, mut in_string, mut escaped, mut in_scope) = (0usize, false, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'(' => {
                if depth == 0 {
                    let before = text[..i].trim_end();
                    in_scope = before.ends_with("permit") || before.ends_with("forbid");
                }
                depth += 1;
            }
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 && in_scope {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Collects the variables (`principal`, `action`, `resource`, `context`) an expression
/// in a policy's JSON form reads.
fn collect_vars(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(o) => {
            if let Some(var) = o.get("Var").and_then(|v| v.as_str()) {
                out.insert(var.to_string());
            }
            for child in o.values() {
                collect_vars(child, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|c| collect_vars(c, out)),
        _ => {}
    }
}

/// Collects the ids of `Column` entities anywhere in a policy's JSON form (its scope and
/// its conditions).
fn collect_columns(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(o) => {
            if o.get("type").and_then(|t| t.as_str()) == Some("Column")
                && let Some(id) = o.get("id").and_then(|i| i.as_str())
            {
                out.insert(id.to_string());
            }
            for child in o.values() {
                collect_columns(child, out);
            }
        }
        serde_json::Value::Array(a) => {
            for child in a {
                collect_columns(child, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<PolicyStore, LoadError> {
        PolicyStore::from_sources(&[("p.cedar".into(), text.into())], Mode::Enforce)
    }

    #[test]
    fn valid_policies_load_with_their_ids() {
        let s = load(
            r#"@id("readers")
permit(principal in Group::"data-science", action == Action::"select", resource in Schema::"reporting");
forbid(principal, action == Action::"invoke", resource in FunctionClass::"server_files");"#,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.meta.contains_key(&PolicyId::new("readers")));
        assert!(s.meta.contains_key(&PolicyId::new("p#1")));
    }

    #[test]
    fn parse_errors_have_line_and_column() {
        let e = load("permit(principal, action, resource);\n\npermit(principal action, resource);")
            .unwrap_err();
        let LoadError::Invalid(errors) = e else {
            panic!("{e}")
        };
        assert_eq!((errors[0].file.as_str(), errors[0].line), ("p.cedar", 3));
        assert!(errors[0].column > 1, "{errors:?}");
    }

    #[test]
    fn validation_errors_have_line_and_column() {
        let e = load("permit(principal, action, resource);\npermit(principal, action == Action::\"selekt\", resource);")
            .unwrap_err();
        let LoadError::Invalid(errors) = e else {
            panic!("{e}")
        };
        assert_eq!(errors[0].line, 2, "{errors:?}");
        assert!(errors[0].message.contains("selekt"), "{errors:?}");
        let e = load("permit(principal, action, resource) when { context.hour == \"nine\" };")
            .unwrap_err();
        assert!(e.to_string().contains("p.cedar:1:"), "{e}");
    }

    #[test]
    fn annotations_are_checked() {
        for (text, needle) in [
            (
                "@max_rows(\"lots\") permit(principal, action, resource);",
                "whole number",
            ),
            (
                "@max_rows(\"5\") forbid(principal, action, resource);",
                "permit policy",
            ),
            (
                "@approval(\"managers\") permit(principal, action, resource);",
                "forbid policy",
            ),
            (
                "@record forbid(principal, action, resource);",
                "@record belongs on a permit policy",
            ),
            (
                "@sensitive forbid(principal, action, resource);",
                "@sensitive belongs on a permit policy",
            ),
            (
                "@mask(\"scramble\") forbid(principal, action == Action::\"read_unmasked\", resource);",
                "masking strategy",
            ),
            (
                "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") permit(principal, action, resource);",
                "already used",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
