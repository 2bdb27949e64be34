//! `ssehub serve` as a child process: the configuration's precedence and errors, the banner's
//! lines tried as printed, SIGTERM, and tokens kept out of the logs.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(20);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ssehub-cli-serve-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ssehub() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The tests set what they mean to; nothing leaks in from the environment running them.
    for (name, _) in std::env::vars() {
        if name.starts_with("SSEHUB_") {
            command.env_remove(name);
        }
    }
    command
}

async fn output(mut command: Command) -> (ExitStatus, String, String) {
    let output = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("timed out")
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_flag_beats_its_variable_which_beats_the_file_and_secrets_are_masked() {
    let dir = temp_dir("precedence");
    let file = dir.join("ssehub.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:61001\"\nheartbeat = \"11s\"\nretention-events = 7\npublisher-key = \"from-the-file-0123456789\"\ncors-origins = [\"https://file.example\"]\n",
    )
    .unwrap();
    let mut command = ssehub();
    command
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .args(["--heartbeat", "13s"])
        .env("SSEHUB_HEARTBEAT", "12s")
        .env("SSEHUB_RETENTION_EVENTS", "8")
        .env("SSEHUB_DATA_DIR", &dir);
    let (status, stdout, stderr) = output(command).await;
    assert!(status.success(), "{stderr}");
    for line in [
        "listen = \"127.0.0.1:61001\"", // the file alone
        "heartbeat = \"13s\"",          // flag over variable over file
        "retention-events = 8",         // variable over file
        "publisher-key = \"***\"",      // masked
        "cors-origins = [\"https://file.example\"]",
        "store = \"disk\"", // default
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} not in\n{stdout}");
    }
    assert!(!stdout.contains("from-the-file"), "{stdout}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn configuration_errors_name_the_setting_and_exit_2() {
    let dir = temp_dir("errors");
    let bad_file = dir.join("bad.toml");
    std::fs::write(&bad_file, "heartbeat = \"10s\"\nlisten-on = \"x\"\n").unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    /// Flags, variables, and what the error must say.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--listen", "localhost"],
            vec![],
            "'--listen <HOST:PORT>'",
        ),
        (
            vec![],
            vec![("SSEHUB_HEARTBEAT", "often")],
            "is not a duration",
        ),
        (
            vec![],
            vec![("SSEHUB_JWT_SECRET", "short")],
            "--jwt-secret (SSEHUB_JWT_SECRET): 5 bytes",
        ),
        (
            vec!["--cors-origin", "app.example"],
            vec![],
            "--cors-origin (SSEHUB_CORS_ORIGINS)",
        ),
        (vec!["--store", "tape"], vec![], "'--store <STORE>'"),
        (
            vec!["--config", bad_file.to_str().unwrap()],
            vec![],
            "unknown field `listen-on`",
        ),
        (
            vec!["--config", "/nonexistent.toml"],
            vec![],
            "--config /nonexistent.toml",
        ),
        (
            vec!["--max-event-bytes", "4MiB"],
            vec![],
            "--max-event-bytes",
        ),
        // TLS: both files or neither, and each file must hold what its flag names.
        (
            vec!["--tls-cert", not_pem],
            vec![],
            "--tls-key (SSEHUB_TLS_KEY): missing",
        ),
        (
            vec![],
            vec![("SSEHUB_TLS_KEY", not_pem)],
            "--tls-cert (SSEHUB_TLS_CERT): missing",
        ),
        (
            vec!["--tls-cert", "/nonexistent.crt", "--tls-key", not_pem],
            vec![],
            "--tls-cert (SSEHUB_TLS_CERT): /nonexistent.crt: ",
        ),
        (
            vec!["--tls-cert", not_pem, "--tls-key", not_pem],
            vec![],
            "no CERTIFICATE block",
        ),
        (
            vec!["--tls-handshake-timeout", "0"],
            vec![],
            "--tls-handshake-timeout",
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = ssehub();
        command
            .args(["serve", "--print-config"])
            .args(&args)
            .envs(env.clone());
        command.env("SSEHUB_DATA_DIR", &dir);
        let (status, _, stderr) = output(command).await;
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// A `serve` child on a free port with its banner read.
struct Serve {
    child: Child,
    banner: String,
    base: String,
    stderr: tokio::task::JoinHandle<String>,
}

impl Serve {
    async fn start(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = ssehub();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .envs(env.iter().copied());
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            stderr.read_to_string(&mut text).await.ok();
            text
        });
        let mut banner = String::new();
        // The banner ends with its last try-it line (the curl line).
        loop {
            let line = tokio::time::timeout(PATIENCE, stdout.next_line())
                .await
                .expect("no banner")
                .unwrap()
                .expect("serve exited before its banner");
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("curl") {
                break;
            }
        }
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let base = banner
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap()
            .to_owned();
        Self {
            child,
            banner,
            base,
            stderr,
        }
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// SIGTERM, then the exit status and everything logged.
    async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = rustix::process::Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("serve did not exit after SIGTERM")
            .unwrap();
        (status, self.stderr.await.unwrap())
    }
}

async fn get(addr: &str, request: &str) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, socket.read_to_string(&mut answer))
        .await
        .expect("no answer")
        .ok();
    answer
}

async fn connections(addr: &str) -> u64 {
    let answer = get(
        addr,
        "GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let stats: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    stats["connections"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn the_banners_listen_and_curl_lines_work_as_printed() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let dir = temp_dir("banner");
    let serve = Serve::start(&dir, &[], &[]).await;
    let line = |banner: &str, start: &str| {
        banner
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in\n{banner}"))
            .to_owned()
    };
    let key = std::fs::read_to_string(dir.join("publisher.key")).unwrap();
    assert!(
        serve.banner.contains(key.trim()),
        "a new key is shown: {}",
        serve.banner
    );
    // The listen line, with `ssehub` being this build.
    let listen_line = line(&serve.banner, "ssehub listen ");
    let listen_line = listen_line.replacen("ssehub", env!("CARGO_BIN_EXE_ssehub"), 1);
    let listener = {
        let mut command = Command::new("sh");
        command
            .args(["-c", &format!("exec {listen_line}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        command.spawn().unwrap()
    };
    let mut listener = listener;
    let mut events = BufReader::new(listener.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while connections(&serve.addr()).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listen line never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let curl = std::process::Command::new("sh")
        .args(["-c", &format!("{} -s", line(&serve.banner, "curl "))])
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&curl.stdout);
    assert!(
        reply.starts_with(r#"{"code":0,"msg":"ok""#),
        "curl said {reply}"
    );
    let event = tokio::time::timeout(PATIENCE, events.next_line())
        .await
        .expect("the pushed event never reached the listen line")
        .unwrap()
        .unwrap();
    assert!(event.ends_with("hello"), "{event}");
    // The push line, with `ssehub` being this build.
    let push_line =
        line(&serve.banner, "ssehub push ").replacen("ssehub", env!("CARGO_BIN_EXE_ssehub"), 1);
    let pushed = std::process::Command::new("sh")
        .args(["-c", &push_line])
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let event = tokio::time::timeout(PATIENCE, events.next_line())
        .await
        .expect("the push line's event never reached the listen line")
        .unwrap()
        .unwrap();
    assert!(event.ends_with("hello from ssehub push"), "{event}");
    let id = String::from_utf8_lossy(&pushed.stdout).trim().to_owned();
    assert!(
        !id.is_empty() && event.contains(&id),
        "the printed id {id} is the event's: {event}"
    );
    listener.kill().await.ok();
    let (status, _) = serve.terminate().await;
    assert!(status.success());

    // A second start keeps the key, shows only where it is, and the curl line still works.
    let serve = Serve::start(&dir, &[], &[]).await;
    assert!(!serve.banner.contains(key.trim()), "{}", serve.banner);
    let curl = std::process::Command::new("sh")
        .args(["-c", &format!("{} -s", line(&serve.banner, "curl "))])
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&curl.stdout);
    assert!(reply.starts_with(r#"{"code":0"#), "curl said {reply}");
    serve.terminate().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn sigterm_ends_streams_with_the_close_event_and_exits_0_and_tokens_stay_out_of_the_logs() {
    let dir = temp_dir("sigterm");
    let secret = "a-secret-for-the-cli-serve-test-0123456789";
    let serve = Serve::start(
        &dir,
        &["--allow-anonymous"],
        &[("SSEHUB_JWT_SECRET", secret), ("RUST_LOG", "trace")],
    )
    .await;
    // A token in the query, valid and not: neither may reach the logs.
    let bogus = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bogus-signature-kept-out-of-logs";
    let refused = get(
        &serve.addr(),
        &format!("GET /events?access_token={bogus} HTTP/1.1\r\nHost: t\r\n\r\n"),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let mut stream = TcpStream::connect(serve.addr()).await.unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while connections(&serve.addr()).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, logs) = serve.terminate().await;
    assert!(status.success(), "{status:?}\n{logs}");
    let mut body = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut body))
        .await
        .expect("the stream did not end")
        .ok();
    assert!(body.contains("event: close\n"), "{body}");
    assert!(
        !logs.contains("bogus-signature"),
        "a token reached the logs:\n{logs}"
    );
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(
        logs.contains("DEBUG"),
        "debug logging was on, so a logged URI would show: {logs}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_readme_documents_every_flag_and_variable_of_serve() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let mut checked = 0;
    for word in help.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '=') {
        let word = word.trim_end_matches([',', '.', ')', ';', '`']);
        let is_flag = word.starts_with("--") && word.len() > 2 && word != "--help";
        if is_flag || word.starts_with("SSEHUB_") {
            assert!(
                readme.contains(&format!("`{word}")),
                "{word} is in `ssehub serve --help` but not in the README's table"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 50,
        "only {checked} flags and variables found in --help"
    );
}

#[tokio::test]
async fn ssehub_token_signs_with_the_secret_serve_generated() {
    let dir = temp_dir("token");
    let serve = Serve::start(&dir, &[], &[]).await;
    let mut command = ssehub();
    command
        .args([
            "token",
            "--sub",
            "alice",
            "--topic",
            "orders/*",
            "--ttl",
            "10m",
            "--data-dir",
        ])
        .arg(&dir);
    let (status, stdout, stderr) = output(command).await;
    assert!(status.success(), "{stderr}");
    let token = stdout.trim();
    let mut stream = TcpStream::connect(serve.addr()).await.unwrap();
    stream
        .write_all(
            format!("GET /events?topic=orders/1&access_token={token} HTTP/1.1\r\nHost: t\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0u8; 15];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut head))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    // Outside its topics: refused.
    let answer = get(
        &serve.addr(),
        &format!("GET /events?topic=news&access_token={token} HTTP/1.1\r\nHost: t\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    drop(stream);
    serve.terminate().await;
    let mut command = ssehub();
    command.args(["token", "--sub", "a", "--data-dir", "/nonexistent"]);
    let (status, _, stderr) = output(command).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("jwt.secret"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}
