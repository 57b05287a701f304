//! `portcullis connect`: a loopback listener for tools that cannot carry a token (DBeaver,
//! DataGrip, older drivers). Each local connection gets a TLS session to the gateway that
//! logs in with the cached, refreshed token; then bytes flow unchanged both ways. The
//! local side needs no password and only loopback peers are served.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{BufMut, BytesMut};
use portcullis_wire::startup::{PROTOCOL_3_0, StartupMessage, StartupPacket, ssl_request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;

/// What `connect` was told.
#[derive(clap::Args)]
pub struct ConnectArgs {
    /// The target (database name) to reach through the gateway.
    pub target: String,
    /// Local port to listen on (loopback only).
    #[arg(long, default_value_t = 5433)]
    pub port: u16,
    /// The gateway, host:port.
    #[arg(long, env = "PORTCULLIS_GATEWAY", default_value = "127.0.0.1:6432")]
    pub gateway: String,
    /// The issuer whose cached token to use (when logged in to several).
    #[arg(long, env = "PORTCULLIS_ISSUER")]
    pub issuer: Option<String>,
    /// CA certificates for the gateway's TLS certificate, beside the system's.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

struct Proxy {
    target: String,
    gateway: String,
    server_name: rustls::pki_types::ServerName<'static>,
    tls: TlsConnector,
    issuer: Option<String>,
}

fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?)?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    // Fail now, not at the first connection, when there is no usable login.
    crate::login::fresh_token(args.issuer.as_deref(), Duration::from_secs(60)).await?;
    let host = args
        .gateway
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
        .context("--gateway must be host:port")?;
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
        .with_context(|| format!("'{host}' is not a host name or address"))?;
    let proxy = Arc::new(Proxy {
        target: args.target.clone(),
        gateway: args.gateway.clone(),
        server_name,
        tls: TlsConnector::from(Arc::new(tls_config(args.ca_file.as_deref())?)),
        issuer: args.issuer.clone(),
    });
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let local = listener.local_addr()?;
    eprintln!(
        "portcullis connect: listening on {local} for target \"{}\" through {}; no password needed, e.g. psql -h 127.0.0.1 -p {} {}",
        args.target,
        args.gateway,
        local.port(),
        args.target
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = accepted?;
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, peer, &proxy).await {
                        eprintln!("portcullis connect: {peer}: {e:#}");
                    }
                });
            }
            r = crate::wait_for_shutdown() => return r,
        }
    }
}

async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> anyhow::Result<(u32, Vec<u8>)> {
    let len = r.read_u32().await? as usize;
    if !(8..=portcullis_wire::startup::MAX_STARTUP_PACKET).contains(&len) {
        bail!("invalid startup packet length {len}");
    }
    let mut body = vec![0; len - 4];
    r.read_exact(&mut body).await?;
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    Ok((code, body))
}

/// An ErrorResponse for the local client, which speaks the protocol but sent no password.
fn local_error(message: &str) -> Vec<u8> {
    portcullis_wire::backend::ErrorResponse::new(
        portcullis_wire::backend::Severity::Fatal,
        "08001",
        message,
    )
    .to_message()
    .as_bytes()
    .to_vec()
}

async fn serve(mut local: TcpStream, peer: SocketAddr, proxy: &Proxy) -> anyhow::Result<()> {
    if !peer.ip().is_loopback() {
        bail!("refused: not a loopback peer");
    }
    let _ = local.set_nodelay(true);
    let startup = loop {
        let (code, body) = read_packet(&mut local).await?;
        match code {
            // The local leg stays on this machine: no TLS, no GSSAPI.
            SSL_REQUEST | GSSENC_REQUEST => local.write_all(b"N").await?,
            CANCEL_REQUEST => {
                let mut gateway = open(proxy).await?;
                let mut packet = BytesMut::with_capacity(body.len() + 4);
                packet.put_u32(body.len() as u32 + 4);
                packet.put_slice(&body);
                gateway.write_all(&packet).await?;
                gateway.flush().await?;
                return Ok(());
            }
            _ => match StartupPacket::decode(&body)? {
                StartupPacket::Startup(m) => break m,
                _ => bail!("unexpected startup packet"),
            },
        }
    };
    let token =
        match crate::login::fresh_token(proxy.issuer.as_deref(), Duration::from_secs(30)).await {
            Ok(t) => t,
            Err(e) => {
                local.write_all(&local_error(&format!("{e:#}"))).await?;
                return Ok(());
            }
        };
    let mut params: Vec<(&str, &[u8])> = startup
        .params
        .iter()
        .filter(|(k, _)| k != "database")
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect();
    params.push(("database", proxy.target.as_bytes()));
    let mut gateway = match open(proxy).await {
        Ok(g) => g,
        Err(e) => {
            local.write_all(&local_error(&format!("{e:#}"))).await?;
            return Ok(());
        }
    };
    gateway
        .write_all(&StartupMessage::encode(PROTOCOL_3_0, &params))
        .await?;
    gateway.flush().await?;
    // The gateway asks for the token as a cleartext password (over TLS); anything else
    // (an error) goes to the local client as is.
    let tag = gateway.read_u8().await?;
    let len = gateway.read_u32().await? as usize;
    if !(4..=64 * 1024).contains(&len) {
        bail!("the gateway sent a malformed authentication message");
    }
    let mut body = vec![0; len - 4];
    gateway.read_exact(&mut body).await?;
    if tag == b'R' && body.get(..4) == Some(&[0, 0, 0, 3]) {
        let mut password = BytesMut::new();
        password.put_u8(b'p');
        password.put_u32((4 + token.len() + 1) as u32);
        password.put_slice(token.as_bytes());
        password.put_u8(0);
        gateway.write_all(&password).await?;
        gateway.flush().await?;
    } else {
        let mut msg = BytesMut::new();
        msg.put_u8(tag);
        msg.put_u32(len as u32);
        msg.put_slice(&body);
        local.write_all(&msg).await?;
    }
    tokio::io::copy_bidirectional(&mut local, &mut gateway).await?;
    Ok(())
}

/// A TLS connection to the gateway. The token never travels in the clear.
async fn open(proxy: &Proxy) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(&proxy.gateway)
        .await
        .with_context(|| format!("cannot reach the gateway at {}", proxy.gateway))?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(&ssl_request()).await?;
    let answer = tcp.read_u8().await?;
    if answer != b'S' {
        bail!(
            "the gateway at {} does not offer TLS; the token is never sent in the clear",
            proxy.gateway
        );
    }
    proxy
        .tls
        .connect(proxy.server_name.clone(), tcp)
        .await
        .with_context(|| format!("TLS handshake with the gateway at {} failed", proxy.gateway))
}
