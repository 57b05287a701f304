//! Secret references (`env:NAME`, `file:PATH`) and the secrets they resolve to.

use std::path::PathBuf;

/// Where a secret lives. Configuration files name secrets; they never contain them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
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

    /// Reads the secret. A file's trailing newline is dropped, as editors and
    /// `echo` add one.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| format!("environment variable {name} is not set")),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
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
