//! A Cloud Run service binary run as Cloud Run runs it: `PORT` set, only the given environment
//! (plus `PATH`), JSON logs on stdout captured (read as they come, so a chatty service never
//! blocks on a full pipe), ready once `GET /healthz` answers 200, stopped with SIGTERM. Used for `export-loader`'s sibling services: `api-puller-cloud-run` and
//! `webhook-relay-cloud-run`.

use std::process::Stdio;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use crate::bin;

/// A running service; killed when dropped without [`CloudRunService::stop`].
pub struct CloudRunService {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    logs: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Copies `stream` into `sink` until it ends.
fn drain(
    mut stream: impl AsyncRead + Unpin + Send + 'static,
    sink: Arc<Mutex<Vec<u8>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    })
}

/// A free loopback port (bound then released; the service binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl CloudRunService {
    /// Starts `binary` with exactly `env` (and `PORT`, loopback listening) and waits until it
    /// answers `/healthz`; panics with its logs if it exits first or is not ready within 30 s.
    pub async fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        match Self::try_start(binary, env).await {
            Ok(service) => service,
            Err(logs) => panic!("{binary} did not start: {logs}"),
        }
    }

    /// [`Self::start`], returning the logs (stdout and stderr) when the service exits at start.
    pub async fn try_start(binary: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        let port = free_port();
        let mut child = Command::new(bin(binary))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("TAPLINE_LISTEN_HOST", "127.0.0.1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain(child.stdout.take().unwrap(), logs.clone()),
            drain(child.stderr.take().unwrap(), logs.clone()),
        ];
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if client
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return Ok(Self {
                    url,
                    child,
                    logs,
                    readers,
                });
            }
            if child.try_wait().unwrap().is_some() {
                for reader in readers {
                    let _ = reader.await;
                }
                return Err(String::from_utf8_lossy(&logs.lock().unwrap()).into_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{binary} did not answer /healthz within 30 s");
    }

    /// Sends SIGTERM, waits (20 s at most) and returns whether it exited 0, and its logs.
    pub async fn stop(mut self) -> (bool, String) {
        let pid = self.child.id().expect("running");
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.await;
        }
        let logs = String::from_utf8_lossy(&self.logs.lock().unwrap()).into_owned();
        (status.success(), logs)
    }
}
