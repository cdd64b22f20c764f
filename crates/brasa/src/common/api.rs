//! The management API client used by operator commands.

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Talks HTTP/JSON to one daemon's management API.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:7780`).
    pub fn new(base: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .new_agent();
        Self { base, agent }
    }

    /// GET `path` and decode the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self.agent.get(&url).call().with_context(|| {
            format!("cannot reach the daemon at {url} (is it running? see --api)")
        })?;
        Self::decode(&url, response)
    }

    /// POST `body` as JSON to `path` and decode the JSON answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self.agent.post(&url).send_json(body).with_context(|| {
            format!("cannot reach the daemon at {url} (is it running? see --api)")
        })?;
        Self::decode(&url, response)
    }

    /// DELETE `path` and decode the JSON answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self.agent.delete(&url).call().with_context(|| {
            format!("cannot reach the daemon at {url} (is it running? see --api)")
        })?;
        Self::decode(&url, response)
    }

    fn decode<T: DeserializeOwned>(
        url: &str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> anyhow::Result<T> {
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|problem| problem.get("detail")?.as_str().map(str::to_string))
                .unwrap_or(text);
            return Err(anyhow!("{detail} (HTTP {})", status.as_u16()));
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer from {url}"))
    }
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
