//! `Hubserver` in-process on 127.0.0.1, spoken to over real sockets: every route, every way in
//! and every refusal, CORS, token expiry, and shutdown with clients that resume.
#![allow(clippy::unwrap_used)] // test code: a panic is how a test reports

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ssehub_server::auth::Claims;
use ssehub_server::units::Size;
use support::{KEY, Running, SECRET, settings, token, within};

const HOUR: Duration = Duration::from_secs(3600);

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn unicast(uid: &str, data: &str) -> String {
    format!(r#"{{"uids":["{uid}"],"events":[{{"data":"{data}"}}]}}"#)
}

#[tokio::test]
async fn every_route_answers_and_a_push_reaches_only_its_uid() {
    let hub = Running::start(settings()).await;
    let mut alice = hub
        .stream("/events", &bearer(&token(&Claims::new("alice", HOUR))))
        .await;
    let mut bob = hub
        .stream("/events", &bearer(&token(&Claims::new("bob", HOUR))))
        .await;
    assert_eq!(alice.status, 200, "{}", alice.head);
    assert!(
        alice.head.contains("content-type: text/event-stream"),
        "{}",
        alice.head
    );

    let pushed = hub.push(Some(KEY), &unicast("alice", "for alice")).await;
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let envelope: serde_json::Value = serde_json::from_str(&pushed.body).unwrap();
    assert_eq!(envelope["code"], 0);
    assert_eq!(envelope["data"]["connections"], 1);
    let id = envelope["data"]["ids"][0].as_str().unwrap().to_owned();
    let event = alice.event().await.unwrap();
    assert_eq!(
        (event.data.as_str(), event.id.as_deref()),
        ("for alice", Some(id.as_str()))
    );
    // Bob's first event is his own: alice's never reached him.
    assert_eq!(
        hub.push(Some(KEY), &unicast("bob", "for bob")).await.status,
        200
    );
    assert_eq!(bob.data().await, "for bob");

    let stats = hub.request("GET /stats HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(stats.status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    assert_eq!(
        (
            &stats["total"],
            &stats["success"],
            &stats["connections"],
            &stats["users"]
        ),
        (&2.into(), &2.into(), &2.into(), &2.into())
    );

    let metrics = hub
        .request("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        metrics.body.contains("ssehub_connections 2"),
        "{}",
        metrics.body
    );

    let health = hub
        .request("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    let ready = hub.request("GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (200, r#"{"status":"ready"}"#)
    );
    let missing = hub.request("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.msg().starts_with("no such route"),
        "{}",
        missing.body
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_token_is_taken_from_the_header_a_cookie_or_the_query() {
    let hub = Running::start(settings()).await;
    let header = hub
        .stream("/events", &bearer(&token(&Claims::new("h", HOUR))))
        .await;
    let cookie = hub
        .stream(
            "/events",
            &format!(
                "Cookie: theme=dark; ssehub_token={}\r\n",
                token(&Claims::new("c", HOUR))
            ),
        )
        .await;
    let query = hub
        .stream(
            &format!("/events?access_token={}", token(&Claims::new("q", HOUR))),
            "",
        )
        .await;
    for (uid, mut stream) in [("h", header), ("c", cookie), ("q", query)] {
        assert_eq!(stream.status, 200, "{uid}: {}", stream.head);
        assert_eq!(hub.push(Some(KEY), &unicast(uid, uid)).await.status, 200);
        assert_eq!(stream.data().await, uid);
    }
    hub.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_the_reason() {
    let hub = Running::start(settings()).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = token(&Claims::new("alice", HOUR));
    let mut tampered = good.clone().into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let mut expired = Claims::new("alice", HOUR);
    expired.exp = now - 120;
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &Claims::new("alice", HOUR),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let other_secret =
        ssehub_server::auth::sign_hs256(&Claims::new("alice", HOUR), &"x".repeat(40)).unwrap();
    let no_sub = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({ "exp": now + 3600 }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    for (what, headers, reason) in [
        ("no token", String::new(), "a token is required"),
        ("expired", bearer(&token(&expired)), "the token has expired"),
        ("tampered", bearer(&tampered), "signature does not verify"),
        (
            "HS384",
            bearer(&hs384),
            "algorithm this hub does not accept",
        ),
        (
            "another secret",
            bearer(&other_secret),
            "signature does not verify",
        ),
        ("no sub", bearer(&no_sub), "sub is missing"),
        ("not a JWT", bearer("abc"), "not a JWT"),
        (
            "Basic",
            "Authorization: Basic YTpi\r\n".to_owned(),
            "Bearer <token>",
        ),
    ] {
        let refused = hub.stream("/events", &headers).await;
        assert_eq!(refused.status, 401, "{what}: {}", refused.head);
        assert!(
            refused
                .head
                .contains("www-authenticate: Bearer error=\"invalid_token\""),
            "{what}: {}",
            refused.head
        );
        let body = refused.rest().await;
        assert!(body.contains(reason), "{what}: {body}");
    }
    assert_eq!(hub.hub.stats().connections, 0);
    hub.stop().await;
}

#[tokio::test]
async fn topics_are_limited_by_the_tokens_claims() {
    let hub = Running::start(settings()).await;
    let alice = token(&Claims::new("alice", HOUR).topics(["orders/alice/*", "news"]));
    let mut stream = hub
        .stream("/events?topic=orders/alice/7&topic=news", &bearer(&alice))
        .await;
    assert_eq!(stream.status, 200, "{}", stream.head);
    let pushed = hub
        .push(
            Some(KEY),
            r#"{"topics":["orders/alice/7"],"events":[{"data":"shipped"}]}"#,
        )
        .await;
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    assert_eq!(stream.data().await, "shipped");

    let refused = hub
        .stream("/events?topic=orders/bob/1", &bearer(&alice))
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.rest().await.contains("orders/bob/1"));
    let none = token(&Claims::new("carol", HOUR));
    let refused = hub.stream("/events?topic=news", &bearer(&none)).await;
    assert_eq!(
        refused.status, 403,
        "a token without topics may ask for none"
    );
    hub.stop().await;
}

#[tokio::test]
async fn pushing_needs_the_publisher_key_or_a_token_that_may_publish() {
    let hub = Running::start(settings()).await;
    let body = unicast("alice", "x");
    let answer = hub.push(None, &body).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    assert!(answer.msg().contains("publisher key"), "{}", answer.body);
    assert_eq!(
        hub.push(Some("wrong-key"), &body).await.msg(),
        "wrong publisher key"
    );
    let subscriber = token(&Claims::new("alice", HOUR));
    let answer = hub.push(Some(&subscriber), &body).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    let publisher = token(&Claims::new("backend", HOUR).publish(true));
    assert_eq!(hub.push(Some(&publisher), &body).await.status, 200);
    let mut expired = Claims::new("backend", HOUR).publish(true);
    expired.exp = 1;
    let answer = hub.push(Some(&token(&expired)), &body).await;
    assert_eq!(
        (answer.status, answer.msg().as_str()),
        (401, "the token has expired")
    );
    assert_eq!(hub.push(Some(KEY), &body).await.status, 200);
    assert_eq!(
        hub.hub.stats().total,
        0,
        "nobody listened; only two pushes were taken"
    );

    // Without the key the body is never read: a request that announces one and sends nothing
    // is answered at once (reading it would wait for the request timeout, 30 s).
    for credential in ["", "Authorization: Bearer wrong-key\r\n"] {
        let started = std::time::Instant::now();
        let answer = hub
            .request(&format!(
                "POST /push HTTP/1.1\r\nHost: t\r\n{credential}Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
            ))
            .await;
        assert_eq!(answer.status, 401, "{credential:?}: {}", answer.head);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    hub.stop().await;
}

#[tokio::test]
async fn anonymous_subscribers_get_a_uid_of_their_own_and_only_the_open_topics() {
    let mut config = settings();
    config.allow_anonymous = Some(true);
    config.anonymous_topics = vec!["public/*".into()];
    config.allow_anonymous_publish = Some(true);
    let hub = Running::start(config).await;
    let mut first = hub.stream("/events?topic=public/news", "").await;
    let second = hub.stream("/events", "").await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(
        hub.hub.stats().online_users,
        2,
        "each anonymous stream has a uid of its own"
    );
    // Anonymous publishing (told to): no key needed.
    let pushed = hub
        .push(
            None,
            r#"{"topics":["public/news"],"events":[{"data":"open"}]}"#,
        )
        .await;
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    assert_eq!(first.data().await, "open");
    let refused = hub.stream("/events?topic=private", "").await;
    assert_eq!(refused.status, 403);
    // A bad token is still refused, not taken as anonymous.
    assert_eq!(hub.stream("/events", &bearer("abc")).await.status, 401);
    hub.stop().await;
}

#[tokio::test]
async fn limits_and_bad_input_get_their_status_and_a_message() {
    let mut config = settings();
    config.max_streams_per_uid = Some(1);
    let hub = Running::start(config).await;
    let big = "x".repeat(70 * 1024);
    let too_big_body = hub.push(Some(KEY), &unicast("a", &big)).await;
    assert_eq!(too_big_body.status, 413, "{}", too_big_body.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&too_big_body.body).unwrap()["code"],
        413
    );
    let big_event = hub
        .push(Some(KEY), &unicast("a", &"y".repeat(20 * 1024)))
        .await;
    assert_eq!(big_event.status, 413, "{}", big_event.body);
    assert!(big_event.msg().contains("data"), "{}", big_event.body);
    for (body, field) in [
        ("{", "not a valid push request"),
        (r#"{"uids":[],"events":[{"data":"x"}]}"#, "uids"),
        (r#"{"uid":["a"],"events":[{"data":"x"}]}"#, "uid"),
        (
            r#"{"uids":["a"],"events":[{"event":"close","data":"x"}]}"#,
            "close",
        ),
        (r#"{"topics":["a\u0001"],"events":[{"data":"x"}]}"#, "topic"),
    ] {
        let answer = hub.push(Some(KEY), body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert!(answer.msg().contains(field), "{body}: {}", answer.body);
    }
    let alice = bearer(&token(&Claims::new("alice", HOUR).topics(["*"])));
    let bad_topic = hub.stream("/events?topic=%01", &alice).await;
    assert_eq!(bad_topic.status, 400);
    let first = hub.stream("/events", &alice).await;
    assert_eq!(first.status, 200);
    // Over the per-uid cap: a stream that tells the client when to come back.
    let second = hub.stream("/events", &alice).await;
    assert!(second.head.contains("retry-after: "), "{}", second.head);
    assert!(second.rest().await.contains("retry: "));
    assert_eq!(hub.hub.stats().connections, 1);
    hub.stop().await;
}

#[tokio::test]
async fn cors_answers_preflights_and_marks_streams_for_listed_origins_only() {
    let mut config = settings();
    config.cors_origins = vec!["https://app.example".into()];
    let hub = Running::start(config).await;
    let alice = token(&Claims::new("alice", HOUR));
    for (origin, allowed) in [
        ("https://app.example", true),
        ("https://evil.example", false),
    ] {
        let preflight = hub
            .request(&format!(
                "OPTIONS /events HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\n\r\n"
            ))
            .await;
        assert_eq!(preflight.status, 200, "{}", preflight.head);
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            allowed.then_some(origin),
            "{}",
            preflight.head
        );
        let stream = hub
            .stream(
                "/events",
                &format!("Origin: {origin}\r\nCookie: ssehub_token={alice}\r\n"),
            )
            .await;
        assert_eq!(stream.status, 200);
        let head = stream.head.to_ascii_lowercase();
        assert_eq!(
            head.contains(&format!("access-control-allow-origin: {origin}\r\n")),
            allowed,
            "{head}"
        );
        assert_eq!(
            head.contains("access-control-allow-credentials: true"),
            allowed
        );
        assert!(head.contains("vary: origin"), "{head}");
        let refused = hub
            .stream("/events", &format!("Origin: {origin}\r\n"))
            .await;
        assert_eq!(refused.status, 401);
        assert_eq!(
            refused.head.contains("access-control-allow-origin"),
            allowed,
            "a browser may read the 401 only from a listed origin"
        );
        let pushed = hub
            .request(&format!(
                "POST /push HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 2\r\n\r\n{{}}"
            ))
            .await;
        assert_eq!(
            pushed.header("access-control-allow-origin"),
            allowed.then_some(origin)
        );
    }
    hub.stop().await;

    // Off until origins are given.
    let hub = Running::start(settings()).await;
    let stream = hub
        .stream(
            "/events",
            &format!(
                "Origin: https://app.example\r\n{}",
                bearer(&token(&Claims::new("a", HOUR)))
            ),
        )
        .await;
    assert!(!stream.head.contains("access-control"), "{}", stream.head);
    hub.stop().await;
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let hub = Running::start(settings()).await;
    let mut claims = Claims::new("alice", HOUR);
    claims.exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let mut stream = hub.stream("/events", &bearer(&token(&claims))).await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        hub.push(Some(KEY), &unicast("alice", "still valid"))
            .await
            .status,
        200
    );
    assert_eq!(stream.data().await, "still valid");
    let started = std::time::Instant::now();
    assert_eq!(stream.event().await, None, "the stream ends at exp");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            >= claims.exp
    );
    hub.stop().await;
}

#[tokio::test]
async fn tokens_signed_with_rs256_or_es256_verify_with_the_public_key_and_nothing_else() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    for (kind, algorithm) in [("rsa", Algorithm::RS256), ("ec", Algorithm::ES256)] {
        let mut config = settings();
        config.jwt_secret = None;
        config.jwt_public_key = Some(format!("{fixtures}/{kind}-public.pem").into());
        let hub = Running::start(config).await;
        let private = std::fs::read(format!("{fixtures}/{kind}-private.pem")).unwrap();
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private).unwrap(),
            _ => EncodingKey::from_ec_pem(&private).unwrap(),
        };
        let signed =
            jsonwebtoken::encode(&Header::new(algorithm), &Claims::new("alice", HOUR), &key)
                .unwrap();
        let mut stream = hub.stream("/events", &bearer(&signed)).await;
        assert_eq!(stream.status, 200, "{kind}: {}", stream.head);
        assert_eq!(
            hub.push(Some(KEY), &unicast("alice", kind)).await.status,
            200
        );
        assert_eq!(stream.data().await, kind);
        // The classic confusion: an HS256 token whose "secret" is the public key.
        let public = std::fs::read(format!("{fixtures}/{kind}-public.pem")).unwrap();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims::new("alice", HOUR),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(
            hub.stream("/events", &bearer(&forged)).await.status,
            401,
            "{kind}"
        );
        hub.stop().await;
    }
}

#[tokio::test]
async fn generated_secrets_are_kept_private_and_shown_once() {
    let dir = support::temp_dir("keys");
    let mut config = settings();
    config.store = Some(ssehub_server::config::StoreKind::Disk);
    config.data_dir = Some(dir.clone());
    config.publisher_key = None;
    config.jwt_secret = None;
    let first = Running::start(config.clone()).await;
    let key = std::fs::read_to_string(dir.join("publisher.key")).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 64);
    assert!(first.banner.contains(key), "{}", first.banner);
    #[cfg(unix)]
    for file in ["publisher.key", "jwt.secret"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
    }
    assert_eq!(first.push(Some(key), &unicast("a", "x")).await.status, 200);
    first.stop().await;
    let second = Running::start(config).await;
    assert!(
        !second.banner.contains(key),
        "shown only when made: {}",
        second.banner
    );
    assert!(second.banner.contains("publisher.key"), "{}", second.banner);
    assert_eq!(second.push(Some(key), &unicast("a", "x")).await.status, 200);
    second.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn shutdown_sends_close_or_with_restart_lets_clients_resume_from_the_history() {
    let dir = support::temp_dir("restart");
    let mut config = settings();
    config.store = Some(ssehub_server::config::StoreKind::Disk);
    config.data_dir = Some(dir.clone());
    let alice = bearer(&token(&Claims::new("alice", HOUR)));

    // Without --restart: the `close` event, then the end.
    let hub = Running::start(config.clone()).await;
    let mut stream = hub.stream("/events", &alice).await;
    hub.stop().await;
    let close = stream.event().await.unwrap();
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(stream.event().await, None);

    // With --restart: the stream ends without `close`; a client that comes back to the next
    // run with its last id gets what was pushed meanwhile, once.
    config.restart = Some(true);
    let hub = Running::start(config.clone()).await;
    let mut stream = hub.stream("/events", &alice).await;
    assert_eq!(
        hub.push(Some(KEY), &unicast("alice", "one")).await.status,
        200
    );
    let one = stream.event().await.unwrap();
    assert_eq!(one.data.as_str(), "one");
    hub.stop().await;
    assert_eq!(stream.event().await, None, "ended without the close event");
    let hub = Running::start(config).await;
    for data in ["two", "three"] {
        assert_eq!(
            hub.push(Some(KEY), &unicast("alice", data)).await.status,
            200
        );
    }
    let last_id = one.id.unwrap();
    let mut resumed = hub
        .stream("/events", &format!("{alice}Last-Event-ID: {last_id}\r\n"))
        .await;
    assert_eq!(resumed.data().await, "two");
    assert_eq!(resumed.data().await, "three");
    assert_eq!(
        hub.push(Some(KEY), &unicast("alice", "four")).await.status,
        200
    );
    assert_eq!(resumed.data().await, "four");
    hub.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn readiness_fails_once_the_hub_closes() {
    let hub = Running::start(settings()).await;
    assert_eq!(
        hub.request("GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .status,
        200
    );
    let closing = hub.hub.clone();
    within(closing.close()).await;
    let answer = hub.request("GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(answer.status, 503);
    assert!(answer.msg().contains("shutting down"));
    hub.stop().await;
}

#[test]
fn the_size_setting_is_in_bytes() {
    assert_eq!("64KiB".parse::<Size>().unwrap(), Size(65536));
}

#[tokio::test]
async fn a_token_with_an_expiry_past_the_clocks_range_never_ends_its_stream() {
    let hub = Running::start(settings()).await;
    let mut claims = Claims::new("alice", HOUR);
    claims.exp = u64::MAX;
    let mut stream = hub.stream("/events", &bearer(&token(&claims))).await;
    assert_eq!(stream.status, 200, "{}", stream.head);
    assert_eq!(
        hub.push(Some(KEY), &unicast("alice", "still here"))
            .await
            .status,
        200
    );
    assert_eq!(stream.data().await, "still here");
    hub.stop().await;
}
