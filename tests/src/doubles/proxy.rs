//! A TCP proxy that can be cut: a warehouse outage for tests, without stopping the shared
//! server other tests use. Cutting closes every open connection and refuses new ones until
//! restored.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Links {
    cut: bool,
    open: Vec<JoinHandle<()>>,
}

/// Forwards `127.0.0.1:<addr.port>` to a target.
pub struct CuttableProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    links: Arc<Mutex<Links>>,
    accept: JoinHandle<()>,
}

impl CuttableProxy {
    /// Starts forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(Mutex::new(Links::default()));
        let target = target.to_string();
        let shared = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut links = shared.lock().unwrap();
                if links.cut {
                    // Dropped at once: the client sees its connection closed.
                    continue;
                }
                let target = target.clone();
                links.open.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            addr,
            links,
            accept,
        }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        let mut links = self.links.lock().unwrap();
        links.cut = true;
        for link in links.open.drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.links.lock().unwrap().cut = false;
    }

    /// `url` (`postgres://user@host:port/db…`) pointed at this proxy.
    pub fn rewrite_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("url with scheme");
        let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!(
            "{scheme}://{}{}/{tail}",
            user.unwrap_or_default(),
            self.addr
        )
    }

    /// The `host:port` part of `url`.
    pub fn target_of(url: &str) -> String {
        let rest = url.split_once("://").expect("url with scheme").1;
        let authority = rest.split('/').next().unwrap();
        authority.rsplit('@').next().unwrap().to_string()
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
