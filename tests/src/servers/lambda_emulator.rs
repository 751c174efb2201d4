//! cargo-lambda's Lambda runtime API emulator (`cargo lambda watch --only-lambda-apis`) with a
//! function binary of this workspace attached, invoked through the Lambda Invoke API.
//!
//! The function is started the way the emulator documents (its `AWS_LAMBDA_*` variables) rather
//! than built by `watch`, whose own `cargo run` has another fingerprint and would rebuild the
//! workspace. `make test` puts cargo-lambda's folder in `TAPLINE_TEST_CARGO_LAMBDA`.

use std::process::Stdio;

use serde_json::Value;
use tokio::process::{Child, Command};

/// The emulator and one function attached to it; both stop when dropped.
pub struct LambdaEmulator {
    port: u16,
    watch: Child,
    /// The function's process (its stdout, the JSON logs, is read by `logs`).
    pub function: Child,
    /// Reads the function's stdout as it is written: a pipe nobody reads fills up (64 KiB on
    /// Linux) and then blocks the function's logging, and with it the function.
    logs: tokio::task::JoinHandle<Vec<u8>>,
    /// Functions attached by name ([`Self::attach`]), with their log readers.
    named: Vec<(Child, tokio::task::JoinHandle<Vec<u8>>)>,
}

impl LambdaEmulator {
    /// Starts the emulator, then the built binary `bin` with `env`, and waits until the
    /// emulator listens (bounded; a function that exits at start fails here).
    pub async fn start(bin: &str, env: &[(&str, &str)]) -> Self {
        Self::start_as(None, bin, env).await
    }

    /// [`Self::start`] with the function named `name` ([`Self::attach`] adds more).
    pub async fn start_named(name: &str, bin: &str, env: &[(&str, &str)]) -> Self {
        Self::start_as(Some(name), bin, env).await
    }

    async fn start_as(name: Option<&str>, bin: &str, env: &[(&str, &str)]) -> Self {
        let folder = std::env::var("TAPLINE_TEST_CARGO_LAMBDA").unwrap_or_else(|_| {
            panic!(
                "TAPLINE_TEST_CARGO_LAMBDA (the folder with cargo-lambda) is not set: run `make test`"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut watch = Command::new(format!("{folder}/cargo-lambda"))
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start cargo lambda watch");
        // The function connects to the runtime API at start and exits if it cannot: wait.
        let mut listening = false;
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                listening = true;
                break;
            }
            assert!(
                watch.try_wait().unwrap().is_none(),
                "cargo lambda watch exited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(listening, "cargo lambda watch never listened");
        let (function, logs) = spawn_function(port, name, bin, env);
        Self {
            port,
            watch,
            function,
            logs,
            named: Vec::new(),
        }
    }

    /// Attaches `bin` as the function `name` (its runtime API is the emulator's per-function
    /// one, `/.rt/NAME`), invoked at `{endpoint}/2015-03-31/functions/NAME/invocations`.
    pub fn attach(&mut self, name: &str, bin: &str, env: &[(&str, &str)]) {
        self.named
            .push(spawn_function(self.port, Some(name), bin, env));
    }

    /// The Invoke API's base URL (what `AWS_ENDPOINT_URL_LAMBDA` holds for a client).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Invokes the function with `payload`: (HTTP status, JSON answer).
    pub async fn invoke(&self, payload: &Value) -> (u16, Value) {
        self.invoke_function("_", payload).await
    }

    /// Invokes the function `name` with `payload`: (HTTP status, JSON answer).
    pub async fn invoke_function(&self, name: &str, payload: &Value) -> (u16, Value) {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{name}/invocations",
            self.port
        );
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap()
            .post(&url)
            .json(payload)
            .send()
            .await
            .expect("invoke");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Stops the function and the emulator (SIGTERM); returns the function's logs.
    pub async fn stop(mut self) -> String {
        for (mut function, _) in std::mem::take(&mut self.named) {
            function.kill().await.unwrap();
        }
        self.function.kill().await.unwrap();
        let logs = self.logs.await.expect("the log reader");
        let pid = self.watch.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.watch.wait().await.unwrap();
        String::from_utf8_lossy(&logs).into_owned()
    }
}

/// Starts the built binary `bin` as a function of the emulator on `port`: the default one
/// (`_`, the bare runtime API) or `name`. Its stdout (the JSON logs) is read as it comes.
fn spawn_function(
    port: u16,
    name: Option<&str>,
    bin: &str,
    env: &[(&str, &str)],
) -> (Child, tokio::task::JoinHandle<Vec<u8>>) {
    let runtime_api = match name {
        Some(name) => format!("http://127.0.0.1:{port}/.rt/{name}"),
        None => format!("http://127.0.0.1:{port}/.rt"),
    };
    let mut command = Command::new(crate::bin(bin));
    command
        .env("AWS_LAMBDA_FUNCTION_NAME", name.unwrap_or("_"))
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut function = command.spawn().expect("start the function");
    let mut stdout = function.stdout.take().expect("piped stdout");
    let logs = tokio::spawn(async move {
        let mut logs = Vec::new();
        // Ends at EOF, when the function exits.
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut logs).await;
        logs
    });
    (function, logs)
}
