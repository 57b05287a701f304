//! TLS on both legs: the gateway's server side for clients, and client configurations for
//! targets (no verification, or full verification against a CA), plus the certificate hash
//! SCRAM channel binding needs.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::Digest;

use crate::config::UpstreamTls;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The ALPN protocol of PostgreSQL connections (PostgreSQL 17's direct TLS requires it).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The server configurations for client connections (which negotiate ALPN `postgresql`)
/// and for the control port (HTTP, no ALPN).
pub fn server_configs(
    cert: &Path,
    key: &Path,
) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} contains no certificate", cert.display()));
    }
    crate::config::warn_if_shared(key, "private key");
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not work together: {e}"))?;
    let mut postgres = config.clone();
    // A client that offers ALPN must offer `postgresql`, as PostgreSQL 17+ demands.
    postgres.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok((Arc::new(postgres), Arc::new(config)))
}

/// The client configuration for a target, or `None` for plain TCP.
pub fn upstream_config(
    mode: UpstreamTls,
    ca_file: Option<&Path>,
) -> Result<Option<Arc<ClientConfig>>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match mode {
        UpstreamTls::Disable => return Ok(None),
        UpstreamTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
        UpstreamTls::VerifyFull => {
            let ca = ca_file.ok_or("verify-full needs ca_file")?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?
            {
                let cert =
                    cert.map_err(|e| format!("cannot parse CA file {}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable CA certificate in {}: {e}", ca.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// The server name to present and verify for `host`.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|_| format!("'{host}' is not a valid host name"))
}

/// `tls = "require"`: encrypt, but accept any certificate, like libpq's `sslmode=require`.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The `tls-server-end-point` channel binding data (RFC 5929): the server certificate
/// hashed with its signature's hash, where MD5 and SHA-1 become SHA-256. `None` when the
/// signature algorithm has no such hash (Ed25519, RSA-PSS), as PostgreSQL also refuses.
pub fn server_end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm_oid(cert)?;
    // DER contents of the OIDs, grouped by the hash to use.
    const SHA256: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04], // md5WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05], // sha1WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b], // sha256WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],             // ecdsa-with-SHA1
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],       // ecdsa-with-SHA256
    ];
    const SHA384: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const SHA512: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
    ];
    if SHA256.contains(&oid) {
        Some(sha2::Sha256::digest(cert).to_vec())
    } else if SHA384.contains(&oid) {
        Some(sha2::Sha384::digest(cert).to_vec())
    } else if SHA512.contains(&oid) {
        Some(sha2::Sha512::digest(cert).to_vec())
    } else {
        None
    }
}

/// Reads one DER header at `pos`: (tag, content start, content length).
fn der_header(data: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *data.get(pos)?;
    let first = *data.get(pos + 1)? as usize;
    if first < 0x80 {
        return Some((tag, pos + 2, first));
    }
    let n = first & 0x7f;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *data.get(pos + 2 + i)? as usize;
    }
    Some((tag, pos + 2 + n, len))
}

/// The OID of `Certificate.signatureAlgorithm`: a certificate is
/// SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, … }, … }.
/// Walking three headers is all that is needed, so no X.509 parser is pulled in.
fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (tag, body, _) = der_header(cert, 0)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs_body, tbs_len) = der_header(cert, body)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, alg_body, _) = der_header(cert, tbs_body.checked_add(tbs_len)?)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, oid_body, oid_len) = der_header(cert, alg_body)?;
    if tag != OID {
        return None;
    }
    cert.get(oid_body..oid_body.checked_add(oid_len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_binding_hash_of_an_ecdsa_sha256_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        assert_eq!(
            signature_algorithm_oid(&der).unwrap(),
            &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        );
        assert_eq!(
            server_end_point_hash(&der).unwrap(),
            sha2::Sha256::digest(&der).to_vec()
        );
        assert!(server_end_point_hash(&der[..10]).is_none());
        assert!(server_end_point_hash(&[]).is_none());
    }
}
