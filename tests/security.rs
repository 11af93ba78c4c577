//! Who may call the server, and how: bearer tokens with scopes, JWTs from an
//! identity provider's JWKS file, the refusal to serve beyond loopback
//! without either, and TLS. Real server processes on real sockets.

use skewless_testkit as kit;

use std::path::Path;

use kit::{TempRepo, next_hour};
use serde_json::{Value, json};

const READ: &str = r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1001]}}"#;

fn push_body() -> String {
    let time = skewless_runtime::time::format_timestamp(next_hour());
    format!(
        r#"{{"push_source_name": "driver_stats_push_source",
            "df": {{"driver_id": [1001], "event_timestamp": ["{time}"], "created": ["{time}"],
                   "conv_rate": [0.25], "acc_rate": [0.5], "avg_daily_trips": [7]}}}}"#
    )
}

/// driver_stats, applied, nothing stored (auth does not need values).
fn applied_repo() -> TempRepo {
    let repo = TempRepo::with_data("driver_stats", next_hour());
    repo.ok(&["apply"]);
    repo
}

fn error_code(text: &str) -> String {
    let body: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    body["error"]["code"].as_str().unwrap_or_default().to_string()
}

/// `skewless token add NAME --scopes SCOPES`: the printed token.
fn add_token(repo: &TempRepo, name: &str, scopes: &str) -> String {
    repo.ok(&["token", "add", name, "--scopes", scopes]).trim().to_string()
}

#[test]
fn tokens_grant_their_scopes_and_nothing_else() {
    let repo = applied_repo();
    let reader = add_token(&repo, "reader", "read");
    let ingest = add_token(&repo, "ingest", "push");
    let ops = add_token(&repo, "ops", "admin");
    assert!(reader.starts_with("skw_") && reader.len() == 68, "{reader}");

    // The file holds hashes only, readable by its owner only.
    let tokens_file = repo.path().join("tokens.toml");
    let text = std::fs::read_to_string(&tokens_file).unwrap();
    for token in [&reader, &ingest, &ops] {
        assert!(!text.contains(token.as_str()), "a token is stored in clear:\n{text}");
        assert!(text.contains(&skewless_server::auth::token_hash(token)));
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&tokens_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A second token of the same name is refused, and the file is kept.
    let refused = repo.fails(&["token", "add", "reader", "--scopes", "read"]);
    assert!(refused.contains("a token named `reader` exists"), "{refused}");
    assert_eq!(std::fs::read_to_string(&tokens_file).unwrap(), text);

    // Configured in the repo, as a user would.
    let config = repo.path().join("skewless.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[server.auth]\ntokens = \"tokens.toml\"\n");
    std::fs::write(&config, toml).unwrap();
    let server = repo.serve(&[]);
    assert!(server.log().contains("bearer auth"), "{}", server.log());

    // Open: /health only.
    assert_eq!(server.get("/health").0, 200);
    for (path, token) in [
        ("/get-online-features", None),
        ("/get-online-features", Some("skw_nope")),
    ] {
        let (status, text) = server.post_as(token, path, READ);
        assert_eq!((status, error_code(&text).as_str()), (401, "invalid_token"), "{text}");
    }
    let (status, text) = server.get("/metrics");
    assert_eq!((status, error_code(&text).as_str()), (401, "invalid_token"));

    // read: features, catalog, API document; not push, not metrics.
    let token = Some(reader.as_str());
    assert_eq!(server.post_as(token, "/get-online-features", READ).0, 200);
    assert_eq!(server.get_as(token, "/v1/catalog").0, 200);
    assert_eq!(server.get_as(token, "/openapi.json").0, 200);
    let (status, text) = server.post_as(token, "/push", &push_body());
    assert_eq!(
        (status, error_code(&text).as_str()),
        (403, "insufficient_scope"),
        "{text}"
    );
    assert!(
        text.contains("token `reader` has scopes [read]; this route needs `push`"),
        "{text}"
    );
    assert_eq!(server.get_as(token, "/metrics").0, 403);

    // push: push only.
    let token = Some(ingest.as_str());
    let (status, text) = server.post_as(token, "/push", &push_body());
    assert_eq!(status, 200, "{text}");
    assert_eq!(server.post_as(token, "/get-online-features", READ).0, 403);

    // admin: everything; the pushed value is there.
    let token = Some(ops.as_str());
    assert_eq!(server.get_as(token, "/metrics").0, 200);
    let (status, text) = server.post_as(token, "/get-online-features", READ);
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["results"][1]["values"], json!([0.25]));
}

/// Found as a new user: `token add` wrote tokens.toml into the repo, and
/// the next `serve` ran with no auth, taking an unauthenticated push.
#[test]
fn a_token_made_with_token_add_is_enforced_by_the_next_serve_with_no_further_step() {
    let repo = applied_repo();
    let open = repo.serve(&[]);
    assert!(open.log().contains("no auth"), "{}", open.log());
    drop(open);

    let reader = add_token(&repo, "reader", "read");
    let ingest = add_token(&repo, "ingest", "push");
    assert!(repo.path().join("tokens.toml").exists());
    let server = repo.serve(&[]);
    assert!(server.log().contains("bearer auth"), "{}", server.log());
    let (status, text) = server.post_as(None, "/push", &push_body());
    assert_eq!((status, error_code(&text).as_str()), (401, "invalid_token"), "{text}");
    let (status, text) = server.post_as(Some(&reader), "/push", &push_body());
    assert_eq!(
        (status, error_code(&text).as_str()),
        (403, "insufficient_scope"),
        "{text}"
    );
    assert_eq!(server.post_as(Some(&ingest), "/push", &push_body()).0, 200);
    assert_eq!(server.post_as(None, "/get-online-features", READ).0, 401);
    assert_eq!(server.post_as(Some(&reader), "/get-online-features", READ).0, 200);
}

#[test]
fn serving_beyond_loopback_needs_auth_or_an_explicit_flag() {
    let repo = applied_repo();
    let refused = repo.fails(&["serve", "--addr", "0.0.0.0:0"]);
    assert!(
        refused.contains("refusing to serve 0.0.0.0:0 without authentication"),
        "{refused}"
    );
    assert!(
        refused.contains("--insecure-no-auth") && refused.contains("skewless token add"),
        "{refused}"
    );

    let open = repo.serve_on("0.0.0.0:0", &["--insecure-no-auth"]);
    assert!(open.log().contains("no auth"), "{}", open.log());
    drop(open);

    // With a token, any address; the same request as `curl -H "Authorization: Bearer ..."`.
    let token = add_token(&repo, "reader", "read");
    let tokens = repo.path().join("tokens.toml");
    let server = repo.serve_on("0.0.0.0:0", &["--tokens", tokens.to_str().unwrap()]);
    assert_eq!(server.post("/get-online-features", READ).0, 401);
    assert_eq!(server.post_as(Some(&token), "/get-online-features", READ).0, 200);
    let curl = std::process::Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-d",
            READ,
        ])
        .arg(format!("{}/get-online-features", server.base))
        .output()
        .expect("curl runs");
    let printed = String::from_utf8_lossy(&curl.stdout);
    assert!(
        printed.ends_with("\n200") && printed.contains("\"feature_names\""),
        "{printed}"
    );

    // A server that would admit nothing is refused too.
    let refused = repo.fails(&["serve", "--max-in-flight", "0"]);
    assert!(refused.contains("invalid value '0' for '--max-in-flight"), "{refused}");

    // A broken tokens file stops the server before it listens, naming the file.
    std::fs::write(&tokens, "[tokens.x]\nsha256 = \"abc\"\nscopes = [\"read\"]\n").unwrap();
    let refused = repo.fails(&["serve", "--tokens", tokens.to_str().unwrap()]);
    assert!(
        refused.contains("tokens.toml") && refused.contains("tokens.x.sha256 is not 64 hex digits"),
        "{refused}"
    );
}

/// Signs `claims` as an identity provider would.
fn jwt(algorithm: jsonwebtoken::Algorithm, kid: &str, key: &jsonwebtoken::EncodingKey, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// A JWKS file with the fixture RSA key and a P-256 key made here; their
/// signing keys.
fn identity_provider(dir: &Path) -> (jsonwebtoken::EncodingKey, jsonwebtoken::EncodingKey) {
    use base64::Engine;
    let fixtures = kit::root().join("tests/fixtures");
    let rsa_pem = std::fs::read(fixtures.join("jwt_rs256_test_key.pem")).unwrap();
    let rsa_jwk: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("jwt_rs256_test_key.jwk.json")).unwrap()).unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = ec.public_key_raw(); // 0x04 || x || y
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "test-ec", "alg": "ES256", "use": "sig",
                        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    let jwks = json!({"keys": [rsa_jwk, ec_jwk]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
    (
        jsonwebtoken::EncodingKey::from_rsa_pem(&rsa_pem).unwrap(),
        jsonwebtoken::EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
    )
}

#[test]
fn jwts_signed_by_the_identity_provider_carry_scopes() {
    use jsonwebtoken::Algorithm::{ES256, RS256};
    let repo = applied_repo();
    let (rsa, ec) = identity_provider(repo.path());
    let jwks = repo.path().join("jwks.json");
    let server = repo.serve(&[
        "--jwks",
        jwks.to_str().unwrap(),
        "--jwt-issuer",
        "https://idp.example",
        "--jwt-scopes-claim",
        "permissions",
    ]);
    let exp = skewless_runtime::time::now_micros() / 1_000_000 + 600;
    let claims =
        |scopes: Value| json!({"sub": "model-a", "iss": "https://idp.example", "exp": exp, "permissions": scopes});

    let reader = jwt(RS256, "test-rsa", &rsa, claims(json!("read openid")));
    assert_eq!(server.post_as(Some(&reader), "/get-online-features", READ).0, 200);
    let (status, text) = server.post_as(Some(&reader), "/push", &push_body());
    assert_eq!(
        (status, error_code(&text).as_str()),
        (403, "insufficient_scope"),
        "{text}"
    );
    assert!(text.contains("JWT subject `model-a`"), "{text}");

    let pusher = jwt(ES256, "test-ec", &ec, claims(json!(["push"])));
    let (status, text) = server.post_as(Some(&pusher), "/push", &push_body());
    assert_eq!(status, 200, "{text}");

    let refused = [
        // Expired.
        jwt(
            RS256,
            "test-rsa",
            &rsa,
            json!({"iss": "https://idp.example", "exp": exp - 7200, "permissions": "read"}),
        ),
        // Another issuer.
        jwt(
            RS256,
            "test-rsa",
            &rsa,
            json!({"iss": "https://evil.example", "exp": exp, "permissions": "read"}),
        ),
        // No expiry.
        jwt(
            RS256,
            "test-rsa",
            &rsa,
            json!({"iss": "https://idp.example", "permissions": "read"}),
        ),
        // Signed by the EC key but claiming the RSA key's id.
        jwt(ES256, "test-rsa", &ec, claims(json!("read"))),
        // Tampered: another payload under the same signature.
        {
            let good = jwt(RS256, "test-rsa", &rsa, claims(json!("read")));
            let forged = jwt(RS256, "test-rsa", &rsa, claims(json!("admin")));
            let (head, rest) = good.split_once('.').unwrap();
            let signature = rest.rsplit_once('.').unwrap().1;
            format!("{head}.{}.{signature}", forged.split('.').nth(1).unwrap())
        },
    ];
    for token in refused {
        let (status, text) = server.post_as(Some(&token), "/get-online-features", READ);
        assert_eq!((status, error_code(&text).as_str()), (401, "invalid_token"), "{text}");
        assert!(text.contains("invalid JWT"), "{text}");
    }
}

#[test]
fn tls_serves_https_with_the_given_certificate() {
    let mut repo = applied_repo();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = repo.path().join("cert.pem");
    let key = repo.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let reader = add_token(&repo, "reader", "read");
    // Tokens by environment this time.
    let tokens = repo.path().join("tokens.toml");
    repo.env
        .push(("SKEWLESS_TOKENS".into(), tokens.to_str().unwrap().into()));
    let server = repo.serve(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(server.log().contains("bearer auth"), "{}", server.log());
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let addr = server.base.trim_start_matches("https://").to_string();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (status, text) = https_post(&addr, certified.cert.der(), &reader, "/get-online-features", READ).await;
        assert_eq!(status, 200, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["metadata"]["feature_names"], json!(["driver_id", "conv_rate"]));

        // Not in clear: a plain HTTP request on the TLS port gets no HTTP answer.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
        plain
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
        assert!(
            !answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    });

    // A key that is not PEM stops the server with a message naming the files.
    std::fs::write(&key, "not a key").unwrap();
    let refused = repo.fails(&[
        "serve",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(
        refused.contains("TLS certificate") && refused.contains("key.pem"),
        "{refused}"
    );
}

/// One HTTPS POST that trusts only `ca` (the self-signed certificate).
async fn https_post(addr: &str, ca: &[u8], token: &str, path: &str, body: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.to_vec().into()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the server's certificate");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::post(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
