//! Keystone v3 authentication, pure parts: the `POST /v3/auth/tokens` body for password and
//! application-credential auth, the lookup of the `network` endpoint in the token's catalog
//! (region and interface aware), and the one-line errors for a refused login. The HTTP call
//! itself is in [`crate::http`].

use crate::config::{CloudConfig, Credentials};
use serde_json::{Map, Value, json};

/// Keystone's v3 root: `auth_url` with `/v3` added when it is not there.
pub fn identity_v3(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        base.to_string()
    } else {
        format!("{base}/v3")
    }
}

fn domain(name: &Option<String>, id: &Option<String>) -> Option<Value> {
    match (id, name) {
        (Some(id), _) => Some(json!({"id": id})),
        (None, Some(name)) => Some(json!({"name": name})),
        (None, None) => None,
    }
}

fn user(
    username: &Option<String>,
    user_id: &Option<String>,
    dname: &Option<String>,
    did: &Option<String>,
) -> Map<String, Value> {
    let mut u = Map::new();
    if let Some(id) = user_id {
        u.insert("id".into(), json!(id));
    } else if let Some(name) = username {
        u.insert("name".into(), json!(name));
        if let Some(d) = domain(dname, did) {
            u.insert("domain".into(), d);
        }
    }
    u
}

/// The body of `POST /v3/auth/tokens`. It carries the password or secret: never log it.
pub fn token_request(cfg: &CloudConfig) -> Value {
    match &cfg.credentials {
        Credentials::Password {
            username,
            user_id,
            user_domain_name,
            user_domain_id,
            password,
            project_name,
            project_id,
            project_domain_name,
            project_domain_id,
        } => {
            let mut u = user(username, user_id, user_domain_name, user_domain_id);
            u.insert("password".into(), json!(password.expose()));
            let project = match project_id {
                Some(id) => json!({"id": id}),
                None => {
                    let mut p = json!({"name": project_name});
                    if let Some(d) = domain(project_domain_name, project_domain_id) {
                        p["domain"] = d;
                    }
                    p
                }
            };
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": u}},
                "scope": {"project": project}
            }})
        }
        Credentials::ApplicationCredential {
            id,
            name,
            username,
            user_id,
            user_domain_name,
            user_domain_id,
            secret,
        } => {
            let mut ac = Map::new();
            match id {
                Some(id) => {
                    ac.insert("id".into(), json!(id));
                }
                None => {
                    ac.insert("name".into(), json!(name));
                    ac.insert(
                        "user".into(),
                        Value::Object(user(username, user_id, user_domain_name, user_domain_id)),
                    );
                }
            }
            ac.insert("secret".into(), json!(secret.expose()));
            // An application credential is scoped already; asking for a scope is an error.
            json!({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": ac
            }}})
        }
    }
}

/// The Neutron URL from the token body's catalog: the `network` service's endpoint with
/// `interface`, in `region` when given. `/v2.0` is added (Neutron's catalog URLs lack it).
pub fn network_endpoint(
    token_body: &Value,
    region: Option<&str>,
    interface: &str,
) -> Result<String, String> {
    let catalog = token_body["token"]["catalog"]
        .as_array()
        .ok_or("the Keystone token has no service catalog")?;
    let services: Vec<&Value> = catalog.iter().filter(|s| s["type"] == "network").collect();
    if services.is_empty() {
        let types: Vec<&str> = catalog.iter().filter_map(|s| s["type"].as_str()).collect();
        return Err(format!(
            "the Keystone catalog has no 'network' service (Neutron); it has: {}",
            if types.is_empty() {
                "nothing".to_string()
            } else {
                types.join(", ")
            }
        ));
    }
    let mut seen = Vec::new();
    for s in &services {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let e_region = e["region_id"]
                .as_str()
                .or(e["region"].as_str())
                .unwrap_or("");
            let e_iface = e["interface"].as_str().unwrap_or("");
            seen.push(format!("{e_iface}@{e_region}"));
            if e_iface == interface
                && region.is_none_or(|r| r == e_region)
                && let Some(url) = e["url"].as_str()
            {
                return Ok(neutron_v2(url));
            }
        }
    }
    Err(format!(
        "the Keystone catalog has no {interface} 'network' endpoint{} (it has: {})",
        region
            .map(|r| format!(" in region {r}"))
            .unwrap_or_default(),
        seen.join(", ")
    ))
}

/// Neutron's v2.0 root for a catalog or override URL.
pub fn neutron_v2(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with("/v2.0") {
        base.to_string()
    } else {
        format!("{base}/v2.0")
    }
}

/// The one-line error for a refused `POST /v3/auth/tokens`: names the auth URL and who
/// tried, never the password, secret or a token.
pub fn auth_error(cfg: &CloudConfig, status: u16, body: &str) -> String {
    let url = identity_v3(&cfg.auth_url);
    let who = cfg.credentials.who();
    let said = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or_default();
    let said = redact_secrets(cfg, &said);
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    match status {
        401 => format!(
            "OpenStack authentication failed at {url} for {who}: Keystone answered 401{said} \
             (wrong user, password or application credential, or no role in that project; from {})",
            cfg.source
        ),
        403 => format!("OpenStack refused {who} at {url} (403{said})"),
        404 => format!("{url} is not a Keystone v3 endpoint (404 on /auth/tokens; check auth_url)"),
        s => format!("Keystone at {url} answered {s} to the login of {who}{said}"),
    }
}

/// Removes the configured secrets from a server message, should one ever echo them.
pub fn redact_secrets(cfg: &CloudConfig, text: &str) -> String {
    let secret = match &cfg.credentials {
        Credentials::Password { password, .. } => password,
        Credentials::ApplicationCredential { secret, .. } => secret,
    };
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret.expose(), "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn cfg(credentials: Credentials) -> CloudConfig {
        CloudConfig {
            auth_url: "http://127.0.0.1:5000".into(),
            credentials,
            region_name: None,
            interface: "public".into(),
            cacert: None,
            insecure: false,
            network_endpoint: None,
            source: "OS_* environment".into(),
        }
    }

    fn password() -> Credentials {
        Credentials::Password {
            username: Some("kpaas".into()),
            user_id: None,
            user_domain_name: Some("Default".into()),
            user_domain_id: None,
            password: Secret::new("pw-123"),
            project_name: Some("kpaas-mesh".into()),
            project_id: None,
            project_domain_name: Some("Default".into()),
            project_domain_id: None,
        }
    }

    #[test]
    fn password_body_is_scoped_to_the_project() {
        let b = token_request(&cfg(password()));
        assert_eq!(
            b,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "kpaas", "domain": {"name": "Default"}, "password": "pw-123"}}},
                "scope": {"project": {"name": "kpaas-mesh", "domain": {"name": "Default"}}}
            }})
        );
    }

    #[test]
    fn application_credential_body_has_no_scope() {
        let by_id = Credentials::ApplicationCredential {
            id: Some("ac1".into()),
            name: None,
            username: None,
            user_id: None,
            user_domain_name: None,
            user_domain_id: None,
            secret: Secret::new("s"),
        };
        assert_eq!(
            token_request(&cfg(by_id)),
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "ac1", "secret": "s"}}}})
        );
        let by_name = Credentials::ApplicationCredential {
            id: None,
            name: Some("mesh".into()),
            username: Some("kpaas".into()),
            user_id: None,
            user_domain_name: Some("Default".into()),
            user_domain_id: None,
            secret: Secret::new("s"),
        };
        assert_eq!(
            token_request(&cfg(by_name))["auth"]["identity"]["application_credential"],
            json!({"name": "mesh", "secret": "s",
                   "user": {"name": "kpaas", "domain": {"name": "Default"}}})
        );
    }

    #[test]
    fn urls() {
        assert_eq!(identity_v3("http://k:5000"), "http://k:5000/v3");
        assert_eq!(identity_v3("http://k:5000/v3/"), "http://k:5000/v3");
        assert_eq!(neutron_v2("http://n:9696"), "http://n:9696/v2.0");
        assert_eq!(neutron_v2("http://n:9696/v2.0/"), "http://n:9696/v2.0");
    }

    #[test]
    fn catalog_lookup_by_interface_and_region() {
        // Shaped like the Keystone v3 API reference's token response.
        let body = json!({"token": {"catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "region_id": "RegionOne", "url": "http://k/v3"}]},
            {"type": "network", "endpoints": [
                {"interface": "internal", "region_id": "RegionOne", "region": "RegionOne", "url": "http://n-int:9696"},
                {"interface": "public", "region_id": "RegionOne", "url": "http://n1:9696/"},
                {"interface": "public", "region_id": "RegionTwo", "url": "http://n2:9696"}
            ]}
        ]}});
        assert_eq!(
            network_endpoint(&body, None, "public").unwrap(),
            "http://n1:9696/v2.0"
        );
        assert_eq!(
            network_endpoint(&body, Some("RegionTwo"), "public").unwrap(),
            "http://n2:9696/v2.0"
        );
        assert_eq!(
            network_endpoint(&body, Some("RegionOne"), "internal").unwrap(),
            "http://n-int:9696/v2.0"
        );
        let err = network_endpoint(&body, Some("RegionThree"), "public").unwrap_err();
        assert!(
            err.contains("no public 'network' endpoint in region RegionThree")
                && err.contains("public@RegionTwo"),
            "{err}"
        );
        let err = network_endpoint(
            &json!({"token": {"catalog": [{"type": "compute", "endpoints": []}]}}),
            None,
            "public",
        )
        .unwrap_err();
        assert!(
            err.contains("no 'network' service") && err.contains("compute"),
            "{err}"
        );
    }

    #[test]
    fn auth_errors_name_url_and_user_but_not_the_password() {
        let c = cfg(password());
        let e = auth_error(
            &c,
            401,
            r#"{"error": {"code": 401, "message": "The request you have made requires authentication. pw-123", "title": "Unauthorized"}}"#,
        );
        assert!(e.contains("http://127.0.0.1:5000/v3"), "{e}");
        assert!(e.contains("user 'kpaas' (project 'kpaas-mesh')"), "{e}");
        assert!(!e.contains("pw-123"), "{e}");
        assert!(!e.contains('\n'));
        let e = auth_error(&c, 404, "");
        assert!(e.contains("not a Keystone v3 endpoint"), "{e}");
    }
}
