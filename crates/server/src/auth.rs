//! Who may subscribe and who may publish: subscriber tokens (JWT, HS256 / RS256 / ES256) from a
//! header, a cookie or the query, anonymous subscribers when allowed, and the publisher key.
//!
//! A token's claims: `sub` (the uid, required), `exp` (required; the stream ends then),
//! `topics` (the topics it may ask for with `?topic=`, exact names or `prefix*`), `publish`
//! (`true` lets it `POST /push`), and `iss` / `aud` when the hub is told to check them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use ssehub_hub::server::{Authenticate, Refusal};
use ssehub_hub::{AllowedTopics, Subscriber};

use crate::config::{Config, TokenKey};

/// The claims of a subscriber (or publisher) token.
///
/// ```
/// let claims = ssehub_server::auth::Claims::new("alice", std::time::Duration::from_secs(60))
///     .topics(["orders/alice/*"]);
/// assert_eq!(claims.sub, "alice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// The uid. (A default so that a token without it is told "sub is missing", not "wrong type".)
    #[serde(default)]
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Topics (or `prefix*` patterns) the holder may subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Whether the holder may push.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish: bool,
}

impl Claims {
    /// Claims for `sub`, expiring `ttl` from now, with no topic and no publishing.
    ///
    /// ```
    /// let claims = ssehub_server::auth::Claims::new("bob", std::time::Duration::from_secs(3600));
    /// assert!(!claims.publish && claims.topics.is_empty());
    /// ```
    pub fn new(sub: impl Into<String>, ttl: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            sub: sub.into(),
            exp: (now + ttl).as_secs(),
            topics: Vec::new(),
            publish: false,
        }
    }

    /// Allows these topics.
    ///
    /// ```
    /// let claims = ssehub_server::auth::Claims::new("bob", std::time::Duration::from_secs(60)).topics(["news"]);
    /// assert_eq!(claims.topics, ["news"]);
    /// ```
    #[must_use]
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Allows pushing.
    ///
    /// ```
    /// let claims = ssehub_server::auth::Claims::new("backend", std::time::Duration::from_secs(60)).publish(true);
    /// assert!(claims.publish);
    /// ```
    #[must_use]
    pub fn publish(mut self, publish: bool) -> Self {
        self.publish = publish;
        self
    }
}

/// Signs `claims` as an HS256 token with `secret`: what an application's backend does for its
/// users (any JWT library will do; this is for tests and the `serve` banner).
///
/// # Errors
///
/// When the claims cannot be serialised (they always can).
///
/// ```
/// let claims = ssehub_server::auth::Claims::new("alice", std::time::Duration::from_secs(60));
/// let token = ssehub_server::auth::sign_hs256(&claims, "a secret of at least 32 bytes....")?;
/// assert_eq!(token.split('.').count(), 3);
/// # Ok::<(), jsonwebtoken::errors::Error>(())
/// ```
pub fn sign_hs256(claims: &Claims, secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Verifies tokens with the configured key and algorithm (and no other algorithm).
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a token key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The public key file could not be read.
    #[error("--jwt-public-key {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an RSA or EC public key in PEM.
    #[error("--jwt-public-key {path}: not an RSA or EC (P-256) public key in PEM form")]
    NotAKey {
        /// The file.
        path: String,
    },
}

impl Verifier {
    /// A verifier for `key`: HS256 for a secret; RS256 or ES256 (P-256) for a public key,
    /// chosen by the key's kind. `issuer` and `audience`, when given, must match the token's.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the public key file cannot be read or is not a key.
    ///
    /// ```
    /// use ssehub_server::auth::{Claims, Verifier, sign_hs256};
    /// use ssehub_server::config::TokenKey;
    ///
    /// let secret = "a secret of at least 32 bytes....".to_owned();
    /// let verifier = Verifier::new(&TokenKey::Secret { secret: secret.clone(), generated: false }, None, None)?;
    /// let token = sign_hs256(&Claims::new("alice", std::time::Duration::from_secs(60)), &secret).unwrap();
    /// assert_eq!(verifier.verify(&token).unwrap().sub, "alice");
    /// # Ok::<(), ssehub_server::auth::KeyError>(())
    /// ```
    pub fn new(
        key: &TokenKey,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Self, KeyError> {
        let (key, algorithm) = match key {
            TokenKey::Secret { secret, .. } => (
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ),
            TokenKey::PublicKey(path) => {
                let shown = path.display().to_string();
                let pem = std::fs::read(path).map_err(|source| KeyError::Read {
                    path: shown.clone(),
                    source,
                })?;
                if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    (key, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    (key, Algorithm::ES256)
                } else {
                    return Err(KeyError::NotAKey { path: shown });
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // A little clock skew between the token's issuer and this machine.
        validation.leeway = 5;
        match issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    /// The claims of `token` if it verifies.
    ///
    /// # Errors
    ///
    /// [`TokenError`] saying why not (expired, bad signature, another algorithm, ...).
    ///
    /// ```
    /// use ssehub_server::auth::{TokenError, Verifier};
    /// use ssehub_server::config::TokenKey;
    ///
    /// let key = TokenKey::Secret { secret: "a secret of at least 32 bytes....".into(), generated: false };
    /// let verifier = Verifier::new(&key, None, None)?;
    /// assert_eq!(verifier.verify("not.a.token").unwrap_err(), TokenError::Malformed);
    /// # Ok::<(), ssehub_server::auth::KeyError>(())
    /// ```
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) if data.claims.sub.is_empty() => Err(TokenError::Claims(
                "sub is missing or empty; it names the subscriber".to_owned(),
            )),
            Ok(data) => Ok(data.claims),
            Err(error) => Err(match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm
                }
                ErrorKind::InvalidIssuer => {
                    TokenError::Claims("iss is not the one expected".into())
                }
                ErrorKind::InvalidAudience => {
                    TokenError::Claims("aud is not the one expected".into())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::Claims(format!("{claim} is missing"))
                }
                ErrorKind::Json(_) => {
                    TokenError::Claims("sub, exp, topics or publish has the wrong type".into())
                }
                _ => TokenError::Malformed,
            }),
        }
    }
}

/// Why a token was refused. The message goes back to the client: it says what is wrong with
/// the token, never what the key is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("the token is not a JWT")]
    Malformed,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The signature does not verify with the hub's key.
    #[error("the token's signature does not verify")]
    Signature,
    /// Signed with another algorithm than the hub's.
    #[error("the token is signed with an algorithm this hub does not accept")]
    Algorithm,
    /// A claim is missing or wrong.
    #[error("the token's claims are wrong: {0}")]
    Claims(String),
}

/// The access rules of one `serve`: subscribers (token, anonymous) and publishers (key, token).
#[derive(Debug)]
pub struct Access {
    verifier: Option<Verifier>,
    cookie: String,
    anonymous: Option<AllowedTopics>,
    publisher_key: Option<String>,
    anonymous_publish: bool,
}

impl Access {
    /// The rules `config` sets; `config`'s keys must be resolved
    /// ([`crate::keys`] has made or loaded them).
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the public key file cannot be used.
    ///
    /// ```
    /// use ssehub_server::config::{Config, Settings, StoreKind};
    ///
    /// let mut settings = Settings::default();
    /// settings.allow_anonymous = Some(true);
    /// settings.store = Some(StoreKind::Memory);
    /// let access = ssehub_server::auth::Access::new(&Config::from_settings(settings).unwrap())?;
    /// # Ok::<(), ssehub_server::auth::KeyError>(())
    /// ```
    pub fn new(config: &Config) -> Result<Self, KeyError> {
        let verifier = config
            .token_key
            .as_ref()
            .map(|key| {
                Verifier::new(
                    key,
                    config.jwt_issuer.as_deref(),
                    config.jwt_audience.as_deref(),
                )
            })
            .transpose()?;
        Ok(Self {
            verifier,
            cookie: config.jwt_cookie.clone(),
            anonymous: config
                .allow_anonymous
                .then(|| AllowedTopics::new(config.anonymous_topics.iter().map(String::as_str))),
            publisher_key: config.publisher_key.clone(),
            anonymous_publish: config.allow_anonymous_publish,
        })
    }

    /// Who is asking for a stream: the token's subscriber (its uid, topics and expiry), or an
    /// anonymous one when allowed; else the refusal (`401` with a challenge).
    ///
    /// # Errors
    ///
    /// A `401` [`Refusal`] for a missing (without anonymous access) or bad token.
    pub fn subscriber(&self, parts: &Parts) -> Result<Subscriber, Box<Refusal>> {
        let token = match token_from(parts, &self.cookie) {
            Ok(token) => token,
            Err(message) => return Err(unauthorized(message)),
        };
        let Some(token) = token else {
            return match &self.anonymous {
                Some(topics) => Ok(Subscriber::new(format!("anon-{}", ulid::Ulid::generate()))
                    .allow_topics(topics.clone())),
                None => Err(unauthorized(
                    "a token is required: send it as Authorization: Bearer, the cookie, or ?access_token=",
                )),
            };
        };
        let Some(verifier) = &self.verifier else {
            return Err(unauthorized(
                "this hub takes no tokens (no --jwt-secret or --jwt-public-key)",
            ));
        };
        let claims = verifier
            .verify(&token)
            .map_err(|error| unauthorized(&error.to_string()))?;
        let subscriber = Subscriber::new(claims.sub)
            .allow_topics(AllowedTopics::new(claims.topics.iter().map(String::as_str)));
        // An `exp` past what the clock can hold (a token "for ever") ends nothing.
        Ok(
            match UNIX_EPOCH.checked_add(Duration::from_secs(claims.exp)) {
                Some(at) => subscriber.expires_at(at),
                None => subscriber,
            },
        )
    }

    /// Whether the request may push: the publisher key as a bearer token, a token whose claims
    /// allow publishing, or anyone with `--allow-anonymous-publish`.
    ///
    /// # Errors
    ///
    /// `401` with the reason when no credential, or a wrong one, was sent; `403` for a valid
    /// token that may not publish.
    pub fn may_publish(&self, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        if self.anonymous_publish {
            return Ok(());
        }
        let Some(credential) =
            bearer(headers).map_err(|m| (StatusCode::UNAUTHORIZED, m.to_owned()))?
        else {
            return Err((
                StatusCode::UNAUTHORIZED,
                "pushing needs the publisher key as Authorization: Bearer KEY".to_owned(),
            ));
        };
        if let Some(key) = &self.publisher_key
            && constant_time_eq(credential.as_bytes(), key.as_bytes())
        {
            return Ok(());
        }
        // Not the key: perhaps a token that may publish.
        match self.verifier.as_ref().map(|v| v.verify(credential)) {
            Some(Ok(claims)) if claims.publish => Ok(()),
            Some(Ok(_)) => Err((
                StatusCode::FORBIDDEN,
                "this token may not publish (its claims have no \"publish\": true)".to_owned(),
            )),
            Some(Err(TokenError::Malformed)) | None => {
                Err((StatusCode::UNAUTHORIZED, "wrong publisher key".to_owned()))
            }
            Some(Err(error)) => Err((StatusCode::UNAUTHORIZED, error.to_string())),
        }
    }
}

/// The lean server's authentication: [`Access::subscriber`].
#[derive(Debug, Clone)]
pub struct SubscriberAuth(pub Arc<Access>);

impl Authenticate for SubscriberAuth {
    fn authenticate(
        &self,
        parts: &Parts,
    ) -> impl Future<Output = Result<Subscriber, Refusal>> + Send {
        std::future::ready(self.0.subscriber(parts).map_err(|refusal| *refusal))
    }
}

/// A `401` with a JSON envelope and a Bearer challenge naming the error (RFC 6750).
fn unauthorized(message: &str) -> Box<Refusal> {
    let challenge = format!(
        "Bearer error=\"invalid_token\", error_description=\"{}\"",
        message.replace(['"', '\\'], "'")
    );
    let mut refusal = Refusal::new(StatusCode::UNAUTHORIZED)
        .with_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .with_body(ssehub_hub::push_api::error_envelope(401, message));
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        refusal = refusal.with_header(header::WWW_AUTHENTICATE, value);
    }
    Box::new(refusal)
}

/// The token of a stream request: `Authorization: Bearer`, else the cookie, else
/// `?access_token=` (a browser's EventSource can set no header). `Ok(None)`: none sent.
fn token_from(parts: &Parts, cookie: &str) -> Result<Option<String>, &'static str> {
    if let Some(token) = bearer(&parts.headers)? {
        return Ok(Some(token.to_owned()));
    }
    for value in parts.headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=')
                && name == cookie
                && !token.is_empty()
            {
                return Ok(Some(token.trim_matches('"').to_owned()));
            }
        }
    }
    let query = parts.uri.query().unwrap_or_default();
    for pair in query.split('&') {
        if let Some(token) = pair.strip_prefix("access_token=") {
            let token = percent_encoding::percent_decode_str(token)
                .decode_utf8()
                .map_err(|_| "access_token is not UTF-8")?;
            return Ok((!token.is_empty()).then(|| token.into_owned()));
        }
    }
    Ok(None)
}

/// The credential of `Authorization: Bearer X`; an `Authorization` of another scheme is an error.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    match value.split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(credential.trim()))
        }
        _ => Err("Authorization must be \"Bearer <token>\""),
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::request::Builder) -> Parts {
        request
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn the_token_is_taken_from_the_header_then_the_cookie_then_the_query() {
        let both = parts(
            http::Request::get("/events?access_token=q%2Eq")
                .header("authorization", "Bearer h")
                .header("cookie", "other=1; ssehub_token=c"),
        );
        assert_eq!(token_from(&both, "ssehub_token"), Ok(Some("h".into())));
        let cookie = parts(
            http::Request::get("/events?access_token=q").header("cookie", "a=b; ssehub_token=c"),
        );
        assert_eq!(token_from(&cookie, "ssehub_token"), Ok(Some("c".into())));
        let query = parts(http::Request::get("/events?topic=x&access_token=q%2Eq"));
        assert_eq!(token_from(&query, "ssehub_token"), Ok(Some("q.q".into())));
        let none = parts(http::Request::get("/events?topic=x"));
        assert_eq!(token_from(&none, "ssehub_token"), Ok(None));
        let basic = parts(http::Request::get("/events").header("authorization", "Basic eA=="));
        assert!(token_from(&basic, "ssehub_token").is_err());
    }

    #[test]
    fn keys_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
