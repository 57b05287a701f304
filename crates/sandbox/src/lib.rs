//! Throwaway infrastructure for the demo and the test harness: PostgreSQL clusters started
//! from the machine's own binaries, a development OIDC issuer that signs real JWTs, and
//! self-signed TLS certificates.
//!
//! Nothing here is used by `portcullis serve`; it exists so that `portcullis demo` and the
//! tests run against real parts.

pub mod certs;
pub mod issuer;
pub mod pg;

pub use certs::TestCa;
pub use issuer::{DevIssuer, KeyKind};
pub use pg::{PgCluster, PgOptions};

/// A free TCP port on 127.0.0.1, chosen by the kernel.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}
