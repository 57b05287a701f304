//! Secret references (`env:NAME`, `file:PATH`) and the secrets they resolve to.

use std::path::PathBuf;

/// Where a secret lives. Configuration files name secrets; they never contain them. Read
/// from the configuration as `env:NAME` or `file:PATH`, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    /// Not a reference (perhaps the secret itself): why, and nothing of what was written,
    /// so no error message or log can repeat it. `Config::parse` refuses it, naming the
    /// setting.
    Invalid(String),
}

impl<'de> serde::Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Never a deserialization error: the parser's message would quote the line.
        let s = String::deserialize(d)?;
        Ok(SecretRef::parse(&s).unwrap_or_else(SecretRef::Invalid))
    }
}

impl SecretRef {
    /// A relative `file:` path made relative to `dir` (the configuration's directory).
    pub fn relative_to(&mut self, dir: &std::path::Path) {
        if let SecretRef::File(p) = self
            && p.is_relative()
        {
            *p = dir.join(&*p);
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() {
                return Err("secret 'env:' needs a variable name".into());
            }
            Ok(SecretRef::Env(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("secret 'file:' needs a path".into());
            }
            Ok(SecretRef::File(PathBuf::from(path)))
        } else {
            Err("secret must be 'env:NAME' or 'file:PATH', never the secret itself".into())
        }
    }

    /// Why this is not a reference, if it is not.
    pub fn invalid(&self) -> Option<&str> {
        match self {
            SecretRef::Invalid(why) => Some(why),
            _ => None,
        }
    }

    /// Reads the secret. A file's trailing newline is dropped, as editors and
    /// `echo` add one.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Invalid(why) => Err(why.clone()),
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| format!("environment variable {name} is not set")),
            SecretRef::File(path) => {
                warn_if_shared(path, "secret file");
                std::fs::read_to_string(path)
                    .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))
            }
        }
    }
}

/// Warns when a file holding a secret or a private key can be read by others than its
/// owner and group (mode `o+r`) or written by anyone but its owner: it still works, but
/// someone else on the machine may have it.
pub fn warn_if_shared(path: &std::path::Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the {what} can be read by others than its owner; make it 0600"
            );
        }
    }
}

/// A resolved secret. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        assert!(SecretRef::parse("hunter2").is_err());
        assert!(SecretRef::parse("env:").is_err());
        let dir = std::env::temp_dir().join(format!("portcullis-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "s3cret\n").unwrap();
        let r = SecretRef::parse(&format!("file:{}", f.display())).unwrap();
        let s = r.resolve().unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = SecretRef::Env("PORTCULLIS_SURELY_UNSET".into())
            .resolve()
            .unwrap_err();
        assert!(e.contains("PORTCULLIS_SURELY_UNSET"));
    }
}
