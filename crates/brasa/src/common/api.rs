//! The management API client: the one HTTP path of every operator command. JSON in and out,
//! problem+json errors turned into their `detail`, and bodies streamed both ways for the bulk
//! transfers (`brasa sm import` uploads a file as it reads it, `brasa sm export` writes the
//! answer as it arrives).

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use std::time::Duration;
use ureq::http::{HeaderMap, Response};
use ureq::Body;

/// How long an ordinary request may take, end to end.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Talks HTTP/JSON to one daemon's management API.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:7780`) whose requests may take
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(base: String) -> Self {
        Self::with_timeout(base, DEFAULT_TIMEOUT)
    }

    /// A client whose requests may take `timeout` (bulk transfers of millions of rows).
    pub fn with_timeout(base: String, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .new_agent();
        Self { base, agent }
    }

    /// GET `path` and decode the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self.checked(&url, self.agent.get(&url).call())?;
        decode(&url, response)
    }

    /// POST `body` as JSON to `path` and decode the JSON answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self.checked(&url, self.agent.post(&url).send_json(body))?;
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
            .agent
            .post(&url)
            .header("content-type", content_type)
            .send(ureq::SendBody::from_reader(&mut body));
        let response = self.checked(&url, sent)?;
        decode(&url, response)
    }

    /// GET `path` and copy the answer into `out` as it arrives; returns the answer's headers.
    pub fn get_to_writer<W: Write>(&self, path: &str, out: &mut W) -> anyhow::Result<HeaderMap> {
        let url = self.url(path);
        let response = self.checked(&url, self.agent.get(&url).call())?;
        let (parts, body) = response.into_parts();
        std::io::copy(&mut body.into_reader(), out)
            .with_context(|| format!("reading the answer of {url}"))?;
        out.flush().context("writing the answer")?;
        Ok(parts.headers)
    }

    /// DELETE `path` and decode the JSON answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self.checked(&url, self.agent.delete(&url).call())?;
        decode(&url, response)
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
