//! The plugin's own blocking HTTP client for Keystone and Neutron (ureq with rustls; no
//! async runtime). [`Session::login`] gets a token and the Neutron URL; the JSON calls map
//! Neutron's error bodies to [`ApiError`]. The token lives in a [`Secret`] and is only ever
//! written into the `X-Auth-Token` header.

use crate::config::{CloudConfig, Secret};
use crate::keystone;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use ureq::Agent;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// How long one HTTP exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A failed Neutron call, shown as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub method: &'static str,
    /// The path below Neutron's `/v2.0`, query included.
    pub path: String,
    /// 0 when no HTTP answer came (connection refused, timeout).
    pub status: u16,
    /// Neutron's error type, e.g. `IpAddressAlreadyAllocated`; empty when none.
    pub kind: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == 0 {
            write!(f, "Neutron {} {}: {}", self.method, self.path, self.message)
        } else if self.kind.is_empty() {
            write!(
                f,
                "Neutron {} {}: HTTP {}: {}",
                self.method, self.path, self.status, self.message
            )
        } else {
            write!(
                f,
                "Neutron {} {}: HTTP {} {}: {}",
                self.method, self.path, self.status, self.kind, self.message
            )
        }
    }
}

/// Neutron's error body `{"NeutronError": {"type", "message", "detail"}}` (or a plain text).
pub fn parse_error(method: &'static str, path: &str, status: u16, body: &str) -> ApiError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let ne = &v["NeutronError"];
    let (kind, message) = if ne.is_object() {
        (
            ne["type"].as_str().unwrap_or("").to_string(),
            ne["message"].as_str().unwrap_or("").to_string(),
        )
    } else if let Some(m) = v["error"]["message"].as_str() {
        (String::new(), m.to_string())
    } else {
        (String::new(), one_line(body, 200))
    };
    ApiError {
        method,
        path: path.to_string(),
        status,
        kind,
        message,
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}...", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&k=v` with encoded values.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

fn agent(cfg: &CloudConfig) -> Result<Agent, String> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = &cfg.cacert {
        let pem = std::fs::read(path).map_err(|e| format!("cacert {path}: {e}"))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err(format!("cacert {path}: no PEM certificate in it"));
        }
        let certs: Vec<Certificate<'static>> = certs;
        tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
    }
    if cfg.insecure {
        tls = tls.disable_verification(true);
    }
    Ok(Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .tls_config(tls.build())
        .build()
        .into())
}

/// An authenticated session: a token (never shown) and the Neutron URL.
pub struct Session {
    agent: Agent,
    token: Secret,
    /// Neutron's `/v2.0` root.
    pub network: String,
    /// The project the token is scoped to (from the token body).
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    /// The Keystone v3 URL used, for messages.
    pub auth_url: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("network", &self.network)
            .field("project_id", &self.project_id)
            .field("token", &self.token)
            .finish()
    }
}

impl Session {
    /// Logs in to Keystone (`POST /v3/auth/tokens`) and finds Neutron in the catalog
    /// (or `network_endpoint_override`).
    pub fn login(cfg: &CloudConfig) -> Result<Session, String> {
        let agent = agent(cfg)?;
        let url = format!("{}/auth/tokens", keystone::identity_v3(&cfg.auth_url));
        let body = keystone::token_request(cfg).to_string();
        let mut resp = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(body.as_bytes())
            .map_err(|e| {
                format!(
                    "cannot reach Keystone at {} for {}: {}",
                    keystone::identity_v3(&cfg.auth_url),
                    cfg.credentials.who(),
                    keystone::redact_secrets(cfg, &e.to_string())
                )
            })?;
        let status = resp.status().as_u16();
        let token = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(Secret::new);
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if status != 201 && status != 200 {
            return Err(keystone::auth_error(cfg, status, &text));
        }
        let token = token.ok_or_else(|| {
            format!(
                "Keystone at {} answered {status} without an X-Subject-Token header",
                keystone::identity_v3(&cfg.auth_url)
            )
        })?;
        let parsed: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "Keystone at {} sent an unreadable token body: {e}",
                keystone::identity_v3(&cfg.auth_url)
            )
        })?;
        let network = match &cfg.network_endpoint {
            Some(u) => keystone::neutron_v2(u),
            None => keystone::network_endpoint(&parsed, cfg.region_name.as_deref(), &cfg.interface)
                .map_err(|e| format!("{e} (Keystone {})", keystone::identity_v3(&cfg.auth_url)))?,
        };
        Ok(Session {
            agent,
            token,
            network,
            project_id: parsed["token"]["project"]["id"].as_str().map(String::from),
            project_name: parsed["token"]["project"]["name"]
                .as_str()
                .map(String::from),
            auth_url: keystone::identity_v3(&cfg.auth_url),
        })
    }

    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.network);
        let err = |e: ureq::Error| ApiError {
            method,
            path: path.to_string(),
            status: 0,
            kind: String::new(),
            message: format!("no answer from {}: {e}", self.network),
        };
        let token = self.token.expose();
        let result = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("X-Auth-Token", token)
                .header("Accept", "application/json")
                .call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("X-Auth-Token", token)
                .header("Accept", "application/json")
                .call(),
            (m, b) => {
                let req = if m == "POST" {
                    self.agent.post(&url)
                } else {
                    self.agent.put(&url)
                };
                let req = req
                    .header("X-Auth-Token", token)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json");
                match b {
                    Some(b) => req.send(b.to_string().as_bytes()),
                    None => req.send_empty(),
                }
            }
        };
        let mut resp = result.map_err(err)?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(err)?;
        if !(200..300).contains(&status) {
            return Err(parse_error(method, path, status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ApiError {
            method,
            path: path.to_string(),
            status,
            kind: String::new(),
            message: format!("unreadable JSON: {e}"),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.call("GET", path, None)
    }
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.call("POST", path, Some(body))
    }
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.call("PUT", path, Some(body))
    }
    /// Deletes; a 404 (already gone) counts as done. True when something was deleted.
    pub fn delete(&self, path: &str) -> Result<bool, ApiError> {
        match self.call("DELETE", path, None) {
            Ok(_) => Ok(true),
            Err(e) if e.status == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutron_errors_become_one_line() {
        let e = parse_error(
            "POST",
            "/ports",
            409,
            r#"{"NeutronError": {"type": "IpAddressAlreadyAllocated", "message": "IP address 172.21.0.200 already allocated in subnet abc", "detail": ""}}"#,
        );
        assert_eq!(e.kind, "IpAddressAlreadyAllocated");
        assert_eq!(
            e.to_string(),
            "Neutron POST /ports: HTTP 409 IpAddressAlreadyAllocated: IP address 172.21.0.200 already allocated in subnet abc"
        );
        let e = parse_error(
            "GET",
            "/networks",
            401,
            "<html>\n<h1>401 Unauthorized</h1>\n</html>",
        );
        assert_eq!(e.kind, "");
        assert_eq!(
            e.to_string(),
            "Neutron GET /networks: HTTP 401: <html> <h1>401 Unauthorized</h1> </html>"
        );
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            with_query(
                "/ports",
                &[
                    ("tags", "kpaas-mesh,kpaas-mesh-cluster=c1"),
                    ("fixed_ips", "ip_address=10.0.0.1")
                ]
            ),
            "/ports?tags=kpaas-mesh%2Ckpaas-mesh-cluster%3Dc1&fixed_ips=ip_address%3D10.0.0.1"
        );
        assert_eq!(with_query("/ports", &[]), "/ports");
    }
}
