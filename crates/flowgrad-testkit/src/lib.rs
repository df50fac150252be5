//! What the workspace's tests share: where the parity fixtures and the test broker are, and fault
//! injection — a TCP proxy in front of a real service (RabbitMQ, the S3 server) that can drop
//! every connection and refuse new ones, then accept again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The parity fixture sets: `$FLOWGRAD_FIXTURES`, else `shared/fixtures` beside the checkout.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("FLOWGRAD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"))
}

/// A finished process's stdout and stderr, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The RabbitMQ the tests use: `$FLOWGRAD_TEST_AMQP_URL`, else the local broker as guest.
pub fn amqp_url() -> String {
    std::env::var("FLOWGRAD_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A TCP proxy to `upstream` that can be cut and restored.
pub struct TcpProxy {
    addr: SocketAddr,
    /// `(cut, relays)`: both under one lock so that no connection slips through a cut.
    state: Arc<Mutex<(bool, Vec<AbortHandle>)>>,
    acceptor: AbortHandle,
}

impl TcpProxy {
    /// Listens on a free loopback port and relays every connection to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new((false, Vec::new())));
        let relays = state.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut guard = relays.lock().unwrap_or_else(PoisonError::into_inner);
                if guard.0 {
                    continue; // cut: close at once
                }
                let upstream = upstream.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                guard.1.push(relay.abort_handle());
            }
        })
        .abort_handle();
        Ok(TcpProxy { addr, state, acceptor })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes all relayed connections and refuses new ones.
    pub fn cut(&self) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        guard.0 = true;
        for relay in guard.1.drain(..) {
            relay.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = false;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

/// Splits `url` into (everything before `host:port`, `host:port`, the rest).
pub fn split_host(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let end = start + rest.find(['/', '?']).unwrap_or(rest.len());
    let host_start = url[start..end].rfind('@').map_or(start, |at| start + at + 1);
    (&url[..host_start], &url[host_start..end], &url[end..])
}

/// `url` with its `host:port` replaced by `addr` (credentials, path and query kept).
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (before, _, after) = split_host(url);
    format!("{before}{addr}{after}")
}

/// The `host:port` of `url`, with `default_port` when the URL names none.
pub fn upstream(url: &str, default_port: u16) -> String {
    let (_, host, _) = split_host(url);
    if host.contains(':') { host.to_owned() } else { format!("{host}:{default_port}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten_around_the_host() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(via("amqp://guest:guest@10.0.0.1:5672/%2f", addr), "amqp://guest:guest@127.0.0.1:4000/%2f");
        assert_eq!(via("http://127.0.0.1:9000", addr), "http://127.0.0.1:4000");
        assert_eq!(upstream("amqp://u:p@rabbit/%2f", 5672), "rabbit:5672");
        assert_eq!(upstream("http://127.0.0.1:9000", 80), "127.0.0.1:9000");
    }

    #[tokio::test]
    async fn cut_closes_connections_and_restore_accepts_again() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxy = TcpProxy::start(echo_addr.to_string()).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        proxy.cut();
        let mut rest = vec![];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the relayed connection is closed by a cut");
        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}
