//! The management API and console over real HTTP(S): who may do what (401, 403 for read-only
//! principals and for changes without the CSRF token, tokens for the CLI), login rate limits,
//! forged cookies, oversized and malformed requests, HTML shown escaped, TLS with a configured
//! certificate, and the refusal to listen beyond loopback without credentials and TLS.

mod console_support;
mod support;

use console_support::*;
use std::io::{Read, Write};
use std::process::Command;
use support::*;

#[test]
fn without_credentials_nothing_is_shown_and_tokens_carry_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let console = start_console(dir.path(), "");
    let base = console.base();

    // Nothing without credentials: 401 for the API and /metrics, the login page for the console.
    for path in ["/api/v1/radius/statistics", "/metrics", "/api/v1/sm/eps"] {
        let answer = request("GET", &format!("{base}{path}"), &[], None);
        assert_eq!(answer.status, 401, "{path}: {}", answer.body);
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"brasa\"")
        );
    }
    let answer = request("GET", &format!("{base}/ui/radius"), &[], None);
    assert_eq!(answer.status, 303);
    assert_eq!(
        answer.header("location"),
        Some("/ui/login?next=%2Fui%2Fradius")
    );
    let answer = request("GET", &format!("{base}/ui/login"), &[], None);
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("name=\"password\""));
    let answer = request("GET", &format!("{base}/ui/assets/htmx.min.js"), &[], None);
    assert_eq!(answer.status, 200, "static files need no login");

    // The CLI: refused without a token, working with one, read-only refused on changes.
    let denied = brasa_cli(&console, &[], &["show", "radius", "statistics"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("authentication required"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let read_only = ["--token", console.read_only_token.as_str()];
    let shown = ok(&brasa_cli(
        &console,
        &read_only,
        &["show", "radius", "statistics"],
    ));
    assert!(shown.contains("bng-1"), "{shown}");
    let refused = brasa_cli(
        &console,
        &read_only,
        &["sm", "login", "bob", "-m", "10.0.0.9"],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is read-only") && stderr.contains("HTTP 403"),
        "{stderr}"
    );
    // The operator token from a token file.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", console.operator_token)).unwrap();
    let done = ok(&brasa_cli(
        &console,
        &["--token-file", token_file.to_str().unwrap()],
        &["sm", "login", "bob", "-m", "10.0.0.9"],
    ));
    assert!(done.contains("bob"), "{done}");
    // BRASA_TOKEN in the environment.
    let output = Command::new(BRASA)
        .args(["--api", &base, "sm", "lookup", "10.0.0.9"])
        .env("BRASA_TOKEN", &console.operator_token)
        .output()
        .unwrap();
    assert!(ok(&output).contains("bob"));
    // A wrong token is no token.
    let wrong = brasa_cli(
        &console,
        &["--token", "0123"],
        &["show", "radius", "statistics"],
    );
    assert!(!wrong.status.success());

    // Prometheus with the read-only token sees the login counters.
    let bearer = format!("Bearer {}", console.read_only_token);
    let metrics = request(
        "GET",
        &format!("{base}/metrics"),
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("brasa_api_refused_total{reason=\"read_only\"} 1\n"),
        "{}",
        metrics.body
    );
    assert!(metrics
        .body
        .contains("brasa_api_refused_total{reason=\"unauthenticated\"}"));
}

#[test]
fn sessions_csrf_roles_and_forged_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let console = start_console(dir.path(), "");
    let base = console.base();
    let operator = login(&base, OPERATOR.0, OPERATOR.1).unwrap_or_else(|a| panic!("{}", a.body));
    let page = get_as(&operator, &format!("{base}/ui/python"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains(">Reload<"), "operators see the buttons");
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    let csrf = csrf_of(&page.body);
    let reload = format!("{base}/ui/python/scripts/python-script-1/reload");

    // Without the CSRF token, or with another one: refused, and nothing reloaded.
    let answer = post_form_as(&operator, &reload, Vec::new());
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("CSRF"), "{}", answer.body);
    let wrong = format!("csrf={}", "0".repeat(64));
    let answer = post_form_as(&operator, &reload, wrong.into_bytes());
    assert_eq!(answer.status, 403);
    // With it: done.
    let body = format!("csrf={csrf}").into_bytes();
    let answer = post_form_as(&operator, &reload, body);
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(answer
        .header("location")
        .unwrap()
        .contains("msg=python-script"));
    // The header form of the token works for scripts.
    let answer = request(
        "POST",
        &reload,
        &[("cookie", &operator), ("x-csrf-token", &csrf)],
        None,
    );
    assert_eq!(answer.status, 303);
    let stats = get_as(&operator, &format!("{base}/api/v1/python/statistics"));
    let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    assert_eq!(stats["worker"]["scripts"][0]["reloads"], 2);

    // A read-only user: no buttons, and POSTs refused even with the session's CSRF token.
    let reader = login(&base, READ_ONLY.0, READ_ONLY.1).unwrap_or_else(|a| panic!("{}", a.body));
    let page = get_as(&reader, &format!("{base}/ui/python"));
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains(">Reload<") && !page.body.contains("Debug on"),
        "no buttons"
    );
    let page = get_as(&reader, &format!("{base}/ui/subscribers"));
    assert!(!page.body.contains("Log a subscriber in") && !page.body.contains(">Resync<"));
    let csrf = csrf_of(&page.body); // the logout form's
    let body = format!("csrf={csrf}").into_bytes();
    let answer = post_form_as(&reader, &reload, body);
    assert_eq!(answer.status, 403);
    assert!(answer.body.contains("read-only"), "{}", answer.body);
    let answer = request(
        "POST",
        &format!("{base}/api/v1/sm/login"),
        &[("cookie", &reader), ("x-csrf-token", &csrf)],
        Some((
            "application/json",
            br#"{"name":"x","mappings":["10.9.0.1"]}"#.to_vec(),
        )),
    );
    assert_eq!(answer.status, 403);

    // Forged and stale cookies open nothing.
    let forged = format!("brasa_session={}", "ab".repeat(32));
    let answer = get_as(&forged, &format!("{base}/ui/overview"));
    assert_eq!(answer.status, 303);
    assert!(answer.header("location").unwrap().starts_with("/ui/login"));
    let answer = request(
        "GET",
        &format!("{base}/api/v1/radius/statistics"),
        &[("cookie", "brasa_session=../../etc")],
        None,
    );
    assert_eq!(answer.status, 401);
    // Logging out ends the session.
    let page = get_as(&operator, &format!("{base}/ui/overview"));
    let body = format!("csrf={}", csrf_of(&page.body)).into_bytes();
    let answer = post_form_as(&operator, &format!("{base}/ui/logout"), body);
    assert_eq!(answer.status, 303);
    assert!(answer.header("set-cookie").unwrap().contains("Max-Age=0"));
    let answer = get_as(&operator, &format!("{base}/ui/overview"));
    assert_eq!(answer.status, 303, "the old cookie is no session any more");

    // The session cookie's attributes.
    let answer = request(
        "POST",
        &format!("{base}/ui/login"),
        &[],
        Some((
            FORM,
            format!("user=ana&password={}", urlencode(OPERATOR.1)).into_bytes(),
        )),
    );
    let cookie = answer.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
}

#[test]
fn failed_logins_are_rate_limited_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let console = start_console(dir.path(), "");
    let base = console.base();
    for _ in 0..5 {
        let answer = login(&base, OPERATOR.0, "guess").err().unwrap();
        assert_eq!(answer.status, 401);
        assert!(answer.body.contains("wrong user name or password"));
    }
    // Now even the right password is refused for a while.
    let answer = login(&base, OPERATOR.0, OPERATOR.1).err().unwrap();
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert!(answer.body.contains("too many failed logins"));
    // Unknown users fail like wrong passwords.
    let answer = login(&base, "mallory", "x").err().unwrap();
    assert!(answer.status == 401 || answer.status == 429);
    let bearer = format!("Bearer {}", console.read_only_token);
    let metrics = request(
        "GET",
        &format!("{base}/metrics"),
        &[("authorization", &bearer)],
        None,
    )
    .body;
    assert!(
        metrics.contains("brasa_api_logins_total{outcome=\"failed\"} 5\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_api_logins_total{outcome=\"rate_limited\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_api_logins_total{outcome=\"ok\"} 0\n"),
        "{metrics}"
    );
    let log = console.daemon.log_text();
    assert!(
        log.contains("console login failed") && log.contains("\"ana\""),
        "logged with the user"
    );
    assert!(
        log.contains("console login refused"),
        "rate-limited logins are logged"
    );
}

#[test]
fn oversized_and_malformed_requests_are_refused_and_html_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let console = start_console(dir.path(), "");
    let base = console.base();
    let operator = login(&base, OPERATOR.0, OPERATOR.1).unwrap_or_else(|a| panic!("{}", a.body));
    let page = get_as(&operator, &format!("{base}/ui/subscribers"));
    let csrf = csrf_of(&page.body);

    // A form larger than any console page posts.
    let status = refused_upload_status(
        &format!("{base}/ui/subscribers/login"),
        &[("cookie", &operator)],
        FORM,
        200 * 1024,
    );
    assert_eq!(status, 413);
    // A JSON body over the API's limit.
    let bearer = format!("Bearer {}", console.operator_token);
    let status = refused_upload_status(
        &format!("{base}/api/v1/sm/login"),
        &[("authorization", &bearer)],
        "application/json",
        3 * 1024 * 1024,
    );
    assert_eq!(status, 413);
    // Malformed JSON and malformed forms.
    let answer = request(
        "POST",
        &format!("{base}/api/v1/sm/login"),
        &[("authorization", &bearer)],
        Some(("application/json", b"{\"name\":".to_vec())),
    );
    assert!(
        answer.status == 400 || answer.status == 422,
        "{}",
        answer.status
    );
    let answer = post_form_as(
        &operator,
        &format!("{base}/ui/python/scripts/python-script-1/debug"),
        format!("csrf={csrf}&on=perhaps").into_bytes(),
    );
    assert!(
        answer.status == 400 || answer.status == 422,
        "{}",
        answer.status
    );
    // A request that is not HTTP at all, and one with a huge header.
    for raw in [
        b"\x16\x03\x01garbage\r\n\r\n".to_vec(),
        [
            b"GET /ui/ HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec(),
            vec![b'a'; 1 << 20],
            b"\r\n\r\n".to_vec(),
        ]
        .concat(),
    ] {
        let mut stream = std::net::TcpStream::connect(console.api).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(&raw);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    }
    // The daemon is still there.
    assert_eq!(
        request("GET", &format!("{base}/ui/login"), &[], None).status,
        200
    );

    // HTML in names and properties is shown as text.
    let name = "<img src=x onerror=alert(1)>";
    let property = "<script>alert(2)</script>";
    let done = brasa_cli(
        &console,
        &["--token", console.operator_token.as_str()],
        &[
            "sm",
            "login",
            name,
            "-m",
            "10.7.7.7",
            "-p",
            &format!("note={property}"),
        ],
    );
    ok(&done);
    let record = get_as(
        &operator,
        &format!("{base}/ui/subscribers/by-name/{}", urlencode(name)),
    );
    assert_eq!(record.status, 200);
    assert!(
        record.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        record.body
    );
    assert!(record
        .body
        .contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
    assert!(!record.body.contains(name) && !record.body.contains(property));
    let search = get_as(
        &operator,
        &format!("{base}/ui/subscribers?by=prefix&q={}", urlencode("<img")),
    );
    assert!(search.body.contains("&lt;img src=x"), "{}", search.body);
    assert!(!search.body.contains(name));
    // A flash message is text too.
    let flash = get_as(
        &operator,
        &format!("{base}/ui/overview?err={}", urlencode("<b>bold</b>")),
    );
    assert!(flash.body.contains("&lt;b&gt;bold&lt;/b&gt;"));
    // A login page that would send the browser elsewhere afterwards sends it to the console.
    let page = request(
        "GET",
        &format!("{base}/ui/login?next={}", urlencode("//evil.example/")),
        &[],
        None,
    );
    assert!(
        page.body.contains("name=\"next\" value=\"/ui/\""),
        "{}",
        page.body
    );
}

#[test]
fn an_open_loopback_api_refuses_changes_from_other_sites() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"));
    let auth = free_udp_port("127.0.0.1");
    let config = format!(
        "[api]\nlisten = \"{api}\"\n[radius]\n[[radius.client]]\nname = \"nas\"\naddress = \"127.0.0.1\"\nsecret = \"s\"\n[[radius.server]]\nname = \"a\"\nauth_listen = \"127.0.0.1:{auth}\"\nlocal = \"u\"\n[[radius.local]]\nname = \"u\"\n[python]\n[[python.script]]\nname = \"s1\"\nfile = \"{}\"\n[[python.policy]]\nname = \"p1\"\n",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/python/python_cache.py")
            .display()
    );
    let _daemon = start_brasa(dir.path(), &config, api.parse().unwrap());
    let base = format!("http://{api}");
    let reload = format!("{base}/api/v1/python/scripts/s1/reload");
    // The CLI (no browser headers) may.
    assert_eq!(request("POST", &reload, &[], None).status, 200);
    // A page on another site that makes the browser post here may not.
    let answer = request("POST", &reload, &[("sec-fetch-site", "cross-site")], None);
    assert_eq!(answer.status, 403);
    let answer = request("POST", &reload, &[("origin", "http://evil.example")], None);
    assert_eq!(answer.status, 403);
    // The console pages need no login, and their forms still carry a CSRF token.
    let page = request("GET", &format!("{base}/ui/python"), &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("loopback, no login"));
    let csrf = csrf_of(&page.body);
    let console_reload = format!("{base}/ui/python/scripts/s1/reload");
    assert_eq!(
        request("POST", &console_reload, &[], Some((FORM, Vec::new()))).status,
        403
    );
    let body = format!("csrf={csrf}").into_bytes();
    assert_eq!(
        request("POST", &console_reload, &[], Some((FORM, body))).status,
        303
    );
    // There is nothing to log in to.
    assert_eq!(
        request("GET", &format!("{base}/ui/login"), &[], None).status,
        303
    );
}

#[test]
fn listening_beyond_loopback_needs_credentials_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brasa.toml");
    std::fs::write(
        &path,
        "data_dir = \"d\"\n\n[api]\nlisten = \"0.0.0.0:7780\"\n",
    )
    .unwrap();
    let output = Command::new(BRASA)
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("brasa.toml:4:10: listening on 0.0.0.0:7780, beyond loopback, needs [[api.user]] or [[api.token]] entries and tls_cert/tls_key"),
        "{stderr}"
    );
    // `brasa rae` and `brasa curling` take only an address: loopback only.
    let output = Command::new(BRASA)
        .args([
            "curling",
            "cafe",
            "2.2",
            "2000",
            "2.1",
            "3000",
            "1",
            "1.2",
            "2000",
            "1.1",
            "--mgmt-listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback only"));
}

#[test]
fn https_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // A self-signed end-entity certificate: webpki refuses a CA certificate as one.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let console = start_console(
        &dir.path().join("daemon"),
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let base = format!("https://{}", console.api);
    let token = ["--token", console.operator_token.as_str()];
    // Trusting the certificate: works.
    let output = Command::new(BRASA)
        .args(["--api", &base, "--ca-cert", cert.to_str().unwrap()])
        .args(token)
        .args(["show", "radius", "statistics"])
        .output()
        .unwrap();
    assert!(ok(&output).contains("bng-1"));
    // Not trusting it: refused by the client.
    let output = Command::new(BRASA)
        .args(["--api", &base])
        .args(token)
        .args(["show", "radius", "statistics"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    // Plain HTTP to the TLS port gets no answer.
    let mut stream = std::net::TcpStream::connect(console.api).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("brasa_"));
    // The session cookie is Secure over HTTPS (openssl's client, trusting the certificate).
    let form = format!("user=ana&password={}", urlencode(OPERATOR.1));
    let request_text = format!(
        "POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-connect",
            &console.api.to_string(),
            "-CAfile",
        ])
        .arg(&cert)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    client
        .stdin
        .take()
        .unwrap()
        .write_all(request_text.as_bytes())
        .unwrap();
    let output = client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("HTTP/1.1 303"), "{text}");
    assert!(
        text.to_lowercase()
            .contains("httponly; samesite=strict; max-age=28800; secure"),
        "{text}"
    );
}
