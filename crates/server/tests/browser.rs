//! End to end in a real browser: the Debian `chromium`, headless, driven over the DevTools
//! protocol (chromiumoxide), against `Hubserver` in-process on 127.0.0.1.
//!
//! - a page's `EventSource` (`withCredentials`, the token in an HttpOnly cookie of the page's
//!   site) gets a uni-cast, a topic push and a broadcast; across a restart it gets, through
//!   `Last-Event-ID`, exactly the events pushed while it was away; after a restart that lost the
//!   history its `history-gap` listener runs;
//! - seven tabs on one origin: over cleartext HTTP/1.1 the seventh waits for one of the six
//!   connections the browser allows a host;
//! - the live page draws its charts (a screenshot is kept under
//!   `$CARGO_TARGET_TMPDIR/browser-artifacts/`), pushes from its form and logs a topic's events
//!   as text.
//!
//! Without chromium each test says "skipped: chromium not found" and passes, unless
//! `SSEHUB_TEST_BROWSER=1` (which `.ci/run` sets), where that is a failure.
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use serde_json::Value;
use ssehub_server::auth::Claims;
use ssehub_server::config::{Settings, StoreKind};
use support::{KEY, PATIENCE, Running, settings, temp_dir, token};
use tokio::task::JoinHandle;

const HOUR: Duration = Duration::from_secs(3600);

/// Where the Debian package puts it, or what `SSEHUB_CHROMIUM` names.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SSEHUB_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A headless chromium with a profile of its own, for one test.
struct Chromium {
    browser: Browser,
    handler: JoinHandle<()>,
    profile: PathBuf,
}

impl Chromium {
    /// Starts chromium; `None` (after saying so) when it is not installed and the run does not
    /// require it.
    async fn launch() -> Option<Self> {
        Self::launch_with(&[]).await
    }

    /// As [`launch`](Self::launch), with more command-line switches.
    async fn launch_with(switches: &[&str]) -> Option<Self> {
        let Some(executable) = chromium() else {
            assert!(
                std::env::var_os("SSEHUB_TEST_BROWSER").is_none_or(|v| v.is_empty() || v == "0"),
                "SSEHUB_TEST_BROWSER is set but chromium was not found (install the Debian package chromium, or set SSEHUB_CHROMIUM)"
            );
            eprintln!("skipped: chromium not found (install the Debian package chromium)");
            return None;
        };
        let profile = temp_dir("chromium-profile");
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .new_headless_mode()
            // Root in a container: the sandbox cannot start.
            .no_sandbox()
            .user_data_dir(&profile)
            .window_size(1280, 1000)
            .viewport(Viewport {
                width: 1280,
                height: 1000,
                device_scale_factor: Some(1.0),
                ..Viewport::default()
            })
            .arg("--disable-gpu")
            .args(switches.iter().copied())
            .launch_timeout(PATIENCE)
            .request_timeout(PATIENCE)
            .build()
            .unwrap();
        let (browser, mut events) = Browser::launch(config).await.unwrap();
        // The connection's events must be read for any command to complete; some of a newer
        // chromium's events do not parse in this client, which matters to nothing here.
        let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
        Some(Self {
            browser,
            handler,
            profile,
        })
    }

    async fn open(&self, url: &str) -> Page {
        self.browser.new_page(url).await.unwrap()
    }

    async fn close(mut self) {
        self.browser.close().await.ok();
        self.browser.wait().await.ok();
        self.handler.abort();
        std::fs::remove_dir_all(&self.profile).ok();
    }
}

/// The value of `expression` in `page`.
async fn eval(page: &Page, expression: &str) -> Value {
    page.evaluate(expression)
        .await
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .into_value::<Value>()
        .unwrap_or(Value::Null)
}

/// Evaluates `expression` until it is truthy (JS's sense), within the tests' patience; its value.
async fn until(page: &Page, expression: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let value = eval(page, expression).await;
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still false after {PATIENCE:?}: {expression}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A site of its own (another port of 127.0.0.1) serving `page` at `/`, with these extra
/// headers: the application that embeds the hub's streams.
async fn site(page: String, headers: Vec<(&'static str, String)>) -> (SocketAddr, JoinHandle<()>) {
    use axum::response::IntoResponse;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            let headers = headers.clone();
            async move {
                let mut response = axum::response::Html(page).into_response();
                for (name, value) in headers {
                    response.headers_mut().append(name, value.parse().unwrap());
                }
                response
            }
        }),
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (addr, task)
}

/// A port nobody listens on now (the hub of the restart test takes it and keeps it).
async fn free_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn push_body(to: &str, data: &str) -> String {
    format!(r#"{{{to}"events":[{{"data":"{data}"}}]}}"#)
}

/// The `id`s of the pushes in `answer`'s envelope.
fn pushed_id(answer: &support::Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let envelope: Value = serde_json::from_str(&answer.body).unwrap();
    envelope["data"]["ids"][0].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_source_with_a_cookie_gets_its_events_resumes_across_a_restart_and_hears_of_a_gap()
{
    let Some(chromium) = Chromium::launch().await else {
        return;
    };
    let hub_addr = free_port().await;
    let data_dir = temp_dir("browser-restart");
    // The application's page: it logs in (an HttpOnly cookie of its site, which the hub's
    // port shares) and listens to the hub on another origin.
    let claims = Claims::new("alice", HOUR).topics(["news"]);
    let page = format!(
        r#"<!doctype html><title>app</title><script>
window.received = []; window.gaps = []; window.opens = 0;
const url = "http://{hub_addr}/events?topic=news";
const source = new EventSource(url, {{ withCredentials: true }});
source.addEventListener("open", () => window.opens++);
source.addEventListener("message", (e) => window.received.push({{ id: e.lastEventId, data: e.data }}));
source.addEventListener("history-gap", (e) => window.gaps.push(JSON.parse(e.data)));
// The same stream without credentials: no cookie, so the hub refuses it and the browser gives up.
window.plain = new EventSource(url);
</script>"#
    );
    let (site_addr, site_task) = site(
        page,
        vec![(
            "set-cookie",
            format!(
                "ssehub_token={}; Path=/; HttpOnly; SameSite=Strict",
                token(&claims)
            ),
        )],
    )
    .await;
    let hub_settings = move |dir: &PathBuf| Settings {
        listen: Some(hub_addr),
        store: Some(StoreKind::Disk),
        data_dir: Some(dir.clone()),
        cors_origins: vec![format!("http://{site_addr}")],
        // Streams end without `close`, so the page reconnects and resumes.
        restart: Some(true),
        ..settings()
    };
    let first = Running::start(hub_settings(&data_dir)).await;
    let tab = chromium.open(&format!("http://{site_addr}/")).await;
    until(&tab, "window.opens === 1").await;
    assert_eq!(
        eval(&tab, "window.plain.readyState").await,
        2,
        "the EventSource without credentials was let in: the cookie is not what authenticates"
    );
    assert_eq!(
        eval(&tab, "document.cookie").await,
        "",
        "the token cookie is HttpOnly"
    );

    let mut expected = Vec::new();
    for (to, data) in [
        (r#""uids":["alice"],"#, "to alice"),
        (r#""topics":["news"],"#, "on news"),
        ("", "to everyone"),
    ] {
        let id = pushed_id(&first.push(Some(KEY), &push_body(to, data)).await);
        expected.push(serde_json::json!({ "id": id, "data": data }));
    }
    until(&tab, "window.received.length === 3").await;
    assert_eq!(
        eval(&tab, "window.received").await,
        Value::from(expected.clone())
    );

    // Restart: the stream ends; while the page waits to reconnect (3 s, the browser's default)
    // the next hub, on the same port and history, takes two pushes before it serves anyone.
    first.stop().await;
    let mut missed = Vec::new();
    let second = Running::start_prepared(hub_settings(&data_dir), |hub| {
        let missed = &mut missed;
        async move {
            for data in ["missed one", "missed two"] {
                let receipt = hub
                    .push(["alice"], [ssehub_wire::Event::new(data)])
                    .await
                    .unwrap();
                missed.push((receipt.ids[0].to_string(), data));
            }
        }
    })
    .await;
    assert_eq!(
        eval(&tab, "window.opens").await,
        1,
        "the page reconnected before the missed events were pushed: the test proves nothing"
    );
    // Then one more, live: once it is in, anything replayed is in too, so the list is final.
    let live = pushed_id(
        &second
            .push(Some(KEY), &push_body(r#""uids":["alice"],"#, "live"))
            .await,
    );
    for (id, data) in missed {
        expected.push(serde_json::json!({ "id": id, "data": data }));
    }
    expected.push(serde_json::json!({ "id": live, "data": "live" }));
    until(&tab, "window.received.some((e) => e.data === 'live')").await;
    assert_eq!(
        eval(&tab, "window.received").await,
        Value::from(expected),
        "the missed events, each once, in order, then the live one"
    );
    assert_eq!(eval(&tab, "window.opens").await, 2);
    assert_eq!(eval(&tab, "window.gaps.length").await, 0);

    // A restart that lost the history: the page's last id is unknown there.
    second.stop().await;
    std::fs::remove_dir_all(&data_dir).unwrap();
    let third = Running::start(hub_settings(&data_dir)).await;
    let gaps = until(&tab, "window.gaps.length > 0 && window.gaps").await;
    assert_eq!(gaps, serde_json::json!([{ "last_event_id": live }]));

    third.stop().await;
    chromium.close().await;
    site_task.abort();
    std::fs::remove_dir_all(&data_dir).ok();
}

/// How the seven tabs reach the hub.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// Cleartext HTTP/1.1: a browser opens at most six connections to one host, and each
    /// stream holds one.
    Http1,
    /// HTTPS with HTTP/2 (ALPN `h2`): the streams share one connection.
    TlsH2,
}

/// Seven tabs of one site, each with an `EventSource` on the hub; then a broadcast.
async fn seven_tabs(transport: Transport) {
    // A certificate made here, which the browser cannot check: told to accept it.
    let switches: &[&str] = match transport {
        Transport::Http1 => &[],
        Transport::TlsH2 => &["--ignore-certificate-errors"],
    };
    let Some(chromium) = Chromium::launch_with(switches).await else {
        return;
    };
    let certificate_dir = temp_dir("seven-tabs-tls");
    let (tls_cert, tls_key) = match transport {
        Transport::Http1 => (None, None),
        Transport::TlsH2 => {
            let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
            let (cert, key) = (certificate_dir.join("c.pem"), certificate_dir.join("k.pem"));
            std::fs::write(&cert, made.cert.pem()).unwrap();
            std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
            (Some(cert), Some(key))
        }
    };
    let hub = Running::start(Settings {
        allow_anonymous: Some(true),
        cors_origins: vec!["*".to_owned()],
        tls_cert,
        tls_key,
        ..settings()
    })
    .await;
    let events = match transport {
        Transport::Http1 => format!("http://{}/events", hub.addr),
        Transport::TlsH2 => format!("https://{}/events", hub.addr),
    };
    let page = format!(
        r#"<!doctype html><title>tab</title><script>
window.received = []; window.opens = 0;
const source = new EventSource("{events}");
source.addEventListener("open", () => window.opens++);
source.addEventListener("message", (e) => window.received.push(e.data));
</script>"#
    );
    let (site_addr, site_task) = site(page, Vec::new()).await;
    let mut tabs = Vec::new();
    for _ in 0..7 {
        let tab = chromium.open(&format!("http://{site_addr}/")).await;
        until(&tab, "typeof source === 'object'").await;
        tabs.push(tab);
    }
    let everyone = |data: &str| push_body("", data);
    match transport {
        Transport::Http1 => {
            for tab in &tabs[..6] {
                until(tab, "window.opens === 1").await;
            }
            pushed_id(&hub.push(Some(KEY), &everyone("first")).await);
            for tab in &tabs[..6] {
                until(tab, "window.received.includes('first')").await;
            }
            // The six have their streams and the broadcast; the seventh asked before it was
            // pushed and is still waiting for a connection.
            assert_eq!(hub.hub.stats().connections, 6);
            assert_eq!(
                eval(&tabs[6], "[source.readyState, window.received.length]").await,
                serde_json::json!([0, 0]),
                "the seventh tab got a stream over HTTP/1.1"
            );
            // A tab closed frees its connection: the seventh gets it.
            tabs.remove(0).close().await.unwrap();
            until(&tabs[5], "window.opens === 1").await;
            pushed_id(&hub.push(Some(KEY), &everyone("second")).await);
            for tab in &tabs {
                until(tab, "window.received.includes('second')").await;
            }
        }
        Transport::TlsH2 => {
            // All seven open: their streams share the one HTTP/2 connection.
            for tab in &tabs {
                until(tab, "window.opens === 1").await;
            }
            assert_eq!(hub.hub.stats().connections, 7);
            // Pushed to the hub itself: this test's push helper speaks cleartext only.
            hub.hub
                .broadcast([ssehub_hub::Event::new("first")])
                .await
                .unwrap();
            for tab in &tabs {
                until(tab, "window.received.includes('first')").await;
            }
        }
    }
    hub.stop().await;
    chromium.close().await;
    site_task.abort();
    std::fs::remove_dir_all(&certificate_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http1_the_seventh_tab_of_a_site_waits_for_a_connection() {
    seven_tabs(Transport::Http1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_and_http2_seven_tabs_of_a_site_all_receive() {
    seven_tabs(Transport::TlsH2).await;
}

/// The live page of `hub`, its stats feed open.
async fn live_page(chromium: &Chromium, hub: &Running) -> Page {
    let page = chromium.open(&format!("http://{}/", hub.addr)).await;
    until(
        &page,
        "document.getElementById('feed-state').textContent === 'live'",
    )
    .await;
    page
}

/// The pixels of `canvas` within a small distance of `colour` (`#rrggbb`): how many, how many
/// rows they span (a flat line two or three, a line that moved many) and how many columns (the
/// samples drawn so far: the chart moves in from the right, about 3 px a second).
async fn pixels_of(page: &Page, canvas: &str, colour: &str) -> (u64, u64, u64) {
    let script = format!(
        r#"(() => {{
  const canvas = document.getElementById("{canvas}");
  const want = [1, 3, 5].map((i) => parseInt("{colour}".slice(i, i + 2), 16));
  const image = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let count = 0; const rows = new Set(); const columns = new Set();
  for (let i = 0; i < image.data.length; i += 4) {{
    const d = image.data;
    if (d[i + 3] > 128 && Math.abs(d[i] - want[0]) + Math.abs(d[i + 1] - want[1]) + Math.abs(d[i + 2] - want[2]) < 60) {{
      count++; rows.add(Math.floor(i / 4 / canvas.width)); columns.add((i / 4) % canvas.width);
    }}
  }}
  return [count, rows.size, columns.size];
}})()"#
    );
    let value = eval(page, &script).await;
    let number = |i: usize| value[i].as_u64().unwrap();
    (number(0), number(1), number(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_charts_the_hub_as_it_moves() {
    let Some(chromium) = Chromium::launch().await else {
        return;
    };
    let hub = Running::start(settings()).await;
    // Some people online: three users, four streams, two topics.
    let mut streams = Vec::new();
    for (uid, topic) in [
        ("ann", "news"),
        ("ann", "sport"),
        ("bo", "news"),
        ("cy", ""),
    ] {
        let claims = Claims::new(uid, HOUR).topics(["news", "sport"]);
        let target = if topic.is_empty() {
            "/events".to_owned()
        } else {
            format!("/events?topic={topic}")
        };
        let stream = hub
            .stream(
                &target,
                &format!("Authorization: Bearer {}\r\n", token(&claims)),
            )
            .await;
        assert_eq!(stream.status, 200);
        streams.push(stream);
    }
    let page = live_page(&chromium, &hub).await;
    let (blank_rates, _, _) = pixels_of(&page, "chart-rates", "#dd6b20").await;

    // Pushes in waves until the page has charted some seconds of them: five, or
    // SSEHUB_LIVE_PAGE_SECONDS (a longer run makes the README's screenshot).
    let seconds: u64 = std::env::var("SSEHUB_LIVE_PAGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut round = 0u32;
    let deadline = tokio::time::Instant::now() + PATIENCE + Duration::from_secs(seconds);
    loop {
        round += 1;
        for _ in 0..1 + (round / 4) % 8 {
            pushed_id(
                &hub.push(Some(KEY), &push_body(r#""topics":["news"],"#, "tick"))
                    .await,
            );
        }
        let (pixels, rows, columns) = pixels_of(&page, "chart-rates", "#dd6b20").await;
        // The seconds charted (about 3 px each), the line risen well above its floor.
        if columns >= 3 * seconds && rows >= 20 {
            assert!(
                pixels > blank_rates,
                "{pixels} pixels of the pushes line, {blank_rates} before"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pushes line never rose: {pixels} pixels over {rows} rows and {columns} columns"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (deliveries, rows, _) = pixels_of(&page, "chart-rates", "#c53030").await;
    assert!(
        deliveries > 30 && rows >= 20,
        "deliveries line: {deliveries} pixels, {rows} rows"
    );
    assert_ne!(
        eval(
            &page,
            "document.getElementById('now-deliveries').textContent"
        )
        .await,
        "–",
        "no rate shown"
    );
    for (canvas, colour, series) in [
        ("chart-online", "#2b6cb0", "connections"),
        ("chart-online", "#2f855a", "users"),
        ("chart-topics", "#805ad5", "topics"),
    ] {
        let (pixels, rows, columns) = pixels_of(&page, canvas, colour).await;
        assert!(
            columns >= 15 && rows <= 4,
            "the {series} line: {pixels} pixels over {rows} rows and {columns} columns, not a flat line of a few seconds"
        );
    }
    assert_eq!(
        eval(
            &page,
            "['connections', 'users', 'topics'].map((n) => document.getElementById('now-' + n).textContent)"
        )
        .await,
        serde_json::json!(["4", "3", "2"])
    );

    let png = page
        .screenshot(ScreenshotParams::builder().full_page(true).build())
        .await
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let path = artifacts.join("live-page.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());

    drop(streams);
    hub.stop().await;
    chromium.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_pushes_from_its_form_and_logs_a_topic_as_text() {
    let Some(chromium) = Chromium::launch().await else {
        return;
    };
    let hub = Running::start(settings()).await;
    let page = live_page(&chromium, &hub).await;
    let type_into = async |selector: &str, text: &str| {
        page.find_element(selector)
            .await
            .unwrap()
            .click()
            .await
            .unwrap()
            .type_str(text)
            .await
            .unwrap();
    };
    // Listen to a topic, with a token typed in.
    let listener = token(&Claims::new("watcher", HOUR).topics(["news"]));
    type_into("#log-topic", "news").await;
    type_into("#log-token", &listener).await;
    page.find_element("#log-start")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &page,
        "document.getElementById('log-state').textContent === 'listening to news'",
    )
    .await;

    // Push, from the form, data that would run script if it were ever parsed as HTML.
    let attack = r#"<img src=x onerror="window.pwned=1"><b>bold</b>"#;
    eval(&page, "document.getElementById('push-data').value = ''").await;
    type_into("#push-key", KEY).await;
    page.find_element("#push-to").await.unwrap();
    eval(&page, "document.getElementById('push-to').value = 'topics'").await;
    type_into("#push-names", "news").await;
    type_into("#push-data", attack).await;
    page.find_element("#push-form button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let result = until(&page, "(() => { const t = document.getElementById('push-result').textContent; return t.startsWith('200') && t; })()").await;
    assert!(result.as_str().unwrap().contains(r#""code":0"#), "{result}");

    let shown = until(&page, "document.querySelector('#log li pre')?.textContent").await;
    assert_eq!(shown, attack, "the log shows the data as text");
    assert_eq!(
        eval(
            &page,
            "[document.querySelectorAll('#log img, #log b').length, typeof window.pwned]"
        )
        .await,
        serde_json::json!([0, "undefined"]),
        "the data became elements"
    );
    // The key was used and kept nowhere but the field.
    assert_eq!(
        eval(
            &page,
            "[localStorage.length, sessionStorage.length, document.cookie]"
        )
        .await,
        serde_json::json!([0, 0, ""])
    );
    // A wrong key is refused, and says so.
    eval(
        &page,
        "document.getElementById('push-key').value = 'not the key'",
    )
    .await;
    page.find_element("#push-form button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &page,
        "document.getElementById('push-result').textContent.startsWith('401')",
    )
    .await;

    hub.stop().await;
    chromium.close().await;
}
