//! The management API client: the one HTTP path of every operator command. JSON in and out,
//! problem+json errors turned into their `detail`, and bodies streamed both ways for the bulk
//! transfers (`brasa sm import` uploads a file as it reads it, `brasa sm export` writes the
//! answer as it arrives). When the daemon requires credentials, every request carries the
//! bearer token of `--token`/`--token-file`, and HTTPS is verified against `--ca-cert`.

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use ureq::http::{HeaderMap, Response};
use ureq::Body;

/// How long an ordinary request may take, end to end.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How operator commands prove who they are and whom they trust: the same for every
/// request of the process, from the global flags, so it is set once in `main`.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The bearer token sent with every request.
    pub token: Option<String>,
    /// Root certificates that the daemon's HTTPS certificate must chain to (else the
    /// system's web roots).
    pub ca_certs: Option<Arc<Vec<ureq::tls::Certificate<'static>>>>,
}

static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();

impl Credentials {
    /// From `--token` (or the first line of `--token-file`) and `--ca-cert`.
    pub fn load(
        token: Option<&str>,
        token_file: Option<&Path>,
        ca_cert: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let token = match (token, token_file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token file {}", path.display()))?;
                let token = text.lines().next().unwrap_or("").trim().to_owned();
                if token.is_empty() {
                    return Err(anyhow!("the token file {} is empty", path.display()));
                }
                Some(token)
            }
            (None, None) => None,
        };
        let ca_certs = match ca_cert {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading the CA certificate {}", path.display()))?;
                let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                        Ok(_) => None,
                        Err(err) => Some(Err(err)),
                    })
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
                if certs.is_empty() {
                    return Err(anyhow!("{}: holds no PEM certificate", path.display()));
                }
                Some(Arc::new(certs))
            }
        };
        Ok(Self { token, ca_certs })
    }

    /// Makes these the credentials of every [`Client`] of this process (first call wins).
    pub fn install(self) {
        let _ = CREDENTIALS.set(self);
    }
}

/// Talks HTTP/JSON to one daemon's management API.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:7780`) whose requests may take
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(base: String) -> Self {
        Self::with_timeout(base, DEFAULT_TIMEOUT)
    }

    /// A client whose requests may take `timeout` (bulk transfers of millions of rows).
    pub fn with_timeout(base: String, timeout: Duration) -> Self {
        let credentials = CREDENTIALS.get().cloned().unwrap_or_default();
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout));
        if let Some(certs) = credentials.ca_certs {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(certs))
                    .build(),
            );
        }
        Self {
            base,
            agent: config.build().new_agent(),
            token: credentials.token,
        }
    }

    fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }

    /// GET `path` and decode the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self.checked(&url, self.authorized(self.agent.get(&url)).call())?;
        decode(&url, response)
    }

    /// POST `body` as JSON to `path` and decode the JSON answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = self.url(path);
        let response =
            self.checked(&url, self.authorized(self.agent.post(&url)).send_json(body))?;
        decode(&url, response)
    }

    /// POST the bytes of `body`, sent as they are read, with `content_type`, and decode the
    /// JSON answer.
    pub fn post_reader<R: Read, T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        mut body: R,
    ) -> anyhow::Result<T> {
        let url = self.url(path);
        let sent = self
            .authorized(self.agent.post(&url))
            .header("content-type", content_type)
            .send(ureq::SendBody::from_reader(&mut body));
        let response = self.checked(&url, sent)?;
        decode(&url, response)
    }

    /// GET `path` and copy the answer into `out` as it arrives; returns the answer's headers.
    pub fn get_to_writer<W: Write>(&self, path: &str, out: &mut W) -> anyhow::Result<HeaderMap> {
        let url = self.url(path);
        let response = self.checked(&url, self.authorized(self.agent.get(&url)).call())?;
        let (parts, body) = response.into_parts();
        std::io::copy(&mut body.into_reader(), out)
            .with_context(|| format!("reading the answer of {url}"))?;
        out.flush().context("writing the answer")?;
        Ok(parts.headers)
    }

    /// DELETE `path` and decode the JSON answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self.checked(&url, self.authorized(self.agent.delete(&url)).call())?;
        decode(&url, response)
    }

    /// The request with the token's Authorization header, when there is a token.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match self.authorization() {
            Some(value) => request.header("authorization", value),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The answer, if the daemon was reached and said yes; otherwise the error it gave
    /// (problem+json `detail`, or the body as it is).
    fn checked(
        &self,
        url: &str,
        sent: Result<Response<Body>, ureq::Error>,
    ) -> anyhow::Result<Response<Body>> {
        let mut response = sent.with_context(|| {
            format!("cannot reach the daemon at {url} (is it running? see --api)")
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|problem| problem.get("detail")?.as_str().map(str::to_string))
            .unwrap_or(text);
        Err(anyhow!("{detail} (HTTP {})", status.as_u16()))
    }
}

/// Decodes a JSON answer of any size as it is read.
fn decode<T: DeserializeOwned>(url: &str, response: Response<Body>) -> anyhow::Result<T> {
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    serde_json::from_reader(reader).with_context(|| format!("unexpected answer from {url}"))
}

/// Percent-encodes a URL path segment or query value (names may hold spaces, slashes, `@`).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
