//! Where the OpenStack credentials come from, read the way the `openstack` CLI reads them:
//! a `clouds.yaml` entry (`--os-cloud NAME`, or `OS_CLOUD`) with `secure.yaml` merged over it,
//! and the `OS_*` environment variables (an openrc), which fill in what the entry leaves out
//! (typically `OS_PASSWORD`) or are used alone when no cloud is named.
//!
//! Everything here is pure over a [`Sources`] (environment lookup, file reader, home
//! directory), so it is unit-tested without touching the real environment. Secrets are held in
//! [`Secret`], whose `Debug` never shows the value.

use serde_yaml_ng::Value as Yaml;
use std::fmt;
use std::path::{Path, PathBuf};

/// A password, application-credential secret or token. `Debug` prints `<redacted>`; the value
/// is only reachable through [`Secret::expose`], used where it goes on the wire.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for the one place it is sent (request body or header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the plugin authenticates to Keystone v3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `password` auth, scoped to a project.
    Password {
        username: Option<String>,
        user_id: Option<String>,
        user_domain_name: Option<String>,
        user_domain_id: Option<String>,
        password: Secret,
        project_name: Option<String>,
        project_id: Option<String>,
        project_domain_name: Option<String>,
        project_domain_id: Option<String>,
    },
    /// `v3applicationcredential` auth: already scoped to the project it was made in.
    ApplicationCredential {
        id: Option<String>,
        name: Option<String>,
        /// For a credential given by name: its owner.
        username: Option<String>,
        user_id: Option<String>,
        user_domain_name: Option<String>,
        user_domain_id: Option<String>,
        secret: Secret,
    },
}

impl Credentials {
    /// Who is authenticating, for error messages (never a secret).
    pub fn who(&self) -> String {
        match self {
            Credentials::Password {
                username,
                user_id,
                project_name,
                project_id,
                ..
            } => format!(
                "user '{}' (project '{}')",
                username.as_deref().or(user_id.as_deref()).unwrap_or("?"),
                project_name
                    .as_deref()
                    .or(project_id.as_deref())
                    .unwrap_or("?")
            ),
            Credentials::ApplicationCredential {
                id, name, username, ..
            } => {
                let cred = id.as_deref().or(name.as_deref()).unwrap_or("?");
                match username {
                    Some(u) => format!("application credential '{cred}' of user '{u}'"),
                    None => format!("application credential '{cred}'"),
                }
            }
        }
    }
}

/// One cloud, ready to authenticate against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudConfig {
    /// Keystone's URL as configured (with or without `/v3`).
    pub auth_url: String,
    pub credentials: Credentials,
    /// Only catalog endpoints in this region are used.
    pub region_name: Option<String>,
    /// `public` (default), `internal` or `admin`.
    pub interface: String,
    /// A CA bundle (PEM) for Keystone's and Neutron's TLS certificates.
    pub cacert: Option<String>,
    /// `verify: false` / `OS_INSECURE=true`: do not verify TLS certificates.
    pub insecure: bool,
    /// `network_endpoint_override`: use this Neutron URL instead of the catalog's.
    pub network_endpoint: Option<String>,
    /// Where this came from, for messages: `clouds.yaml cloud 'x' (/path)` or `OS_* environment`.
    pub source: String,
}

/// What the loader reads: environment, files, home directory. [`Sources::system`] is the real one.
pub struct Sources<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub read: &'a dyn Fn(&Path) -> Option<String>,
    pub home: Option<PathBuf>,
}

fn real_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn real_read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

impl Sources<'static> {
    /// The process environment and file system.
    pub fn system() -> Sources<'static> {
        Sources {
            env: &real_env,
            read: &real_read,
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

impl Sources<'_> {
    fn var(&self, k: &str) -> Option<String> {
        (self.env)(k).filter(|v| !v.is_empty())
    }

    /// The directories searched for `clouds.yaml` / `secure.yaml`, in order.
    fn config_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![PathBuf::from(".")];
        if let Some(x) = self.var("XDG_CONFIG_HOME") {
            dirs.push(Path::new(&x).join("openstack"));
        } else if let Some(h) = &self.home {
            dirs.push(h.join(".config/openstack"));
        }
        dirs.push(PathBuf::from("/etc/openstack"));
        dirs
    }
}

/// Reads the first existing file of `candidates`.
fn first_file(src: &Sources, candidates: &[PathBuf]) -> Option<(PathBuf, String)> {
    candidates
        .iter()
        .find_map(|p| (src.read)(p).map(|c| (p.clone(), c)))
}

/// Merges `over` into `base` (mappings key by key).
fn merge(base: &mut Yaml, over: &Yaml) {
    match (base, over) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn yaml_str(v: &Yaml, key: &str) -> Option<String> {
    match v.get(key)? {
        Yaml::String(s) if !s.is_empty() => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The raw fields, from clouds.yaml then filled from the environment.
#[derive(Default, Debug)]
struct Fields {
    auth_type: Option<String>,
    auth_url: Option<String>,
    username: Option<String>,
    user_id: Option<String>,
    password: Option<Secret>,
    project_name: Option<String>,
    project_id: Option<String>,
    user_domain_name: Option<String>,
    user_domain_id: Option<String>,
    project_domain_name: Option<String>,
    project_domain_id: Option<String>,
    domain_name: Option<String>,
    domain_id: Option<String>,
    app_cred_id: Option<String>,
    app_cred_name: Option<String>,
    app_cred_secret: Option<Secret>,
    region_name: Option<String>,
    interface: Option<String>,
    cacert: Option<String>,
    insecure: Option<bool>,
    network_endpoint: Option<String>,
}

fn fill(slot: &mut Option<String>, v: Option<String>) {
    if slot.is_none() {
        *slot = v;
    }
}

fn truthy(s: &str) -> bool {
    matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

impl Fields {
    fn from_cloud(entry: &Yaml) -> Fields {
        let empty = Yaml::Null;
        let auth = entry.get("auth").unwrap_or(&empty);
        let a = |k: &str| yaml_str(auth, k);
        Fields {
            auth_type: yaml_str(entry, "auth_type"),
            auth_url: a("auth_url"),
            username: a("username"),
            user_id: a("user_id"),
            password: a("password").map(Secret),
            project_name: a("project_name").or_else(|| a("tenant_name")),
            project_id: a("project_id").or_else(|| a("tenant_id")),
            user_domain_name: a("user_domain_name"),
            user_domain_id: a("user_domain_id"),
            project_domain_name: a("project_domain_name"),
            project_domain_id: a("project_domain_id"),
            domain_name: a("domain_name"),
            domain_id: a("domain_id"),
            app_cred_id: a("application_credential_id"),
            app_cred_name: a("application_credential_name"),
            app_cred_secret: a("application_credential_secret").map(Secret),
            region_name: yaml_str(entry, "region_name"),
            interface: yaml_str(entry, "interface").or_else(|| yaml_str(entry, "endpoint_type")),
            cacert: yaml_str(entry, "cacert"),
            insecure: yaml_str(entry, "verify")
                .map(|v| !truthy(&v))
                .or_else(|| yaml_str(entry, "insecure").map(|v| truthy(&v))),
            network_endpoint: yaml_str(entry, "network_endpoint_override"),
        }
    }

    /// `OS_*` variables fill what is still missing.
    fn fill_from_env(&mut self, src: &Sources) {
        let e = |k: &str| src.var(k);
        fill(&mut self.auth_type, e("OS_AUTH_TYPE"));
        fill(&mut self.auth_url, e("OS_AUTH_URL"));
        fill(&mut self.username, e("OS_USERNAME"));
        fill(&mut self.user_id, e("OS_USER_ID"));
        if self.password.is_none() {
            self.password = e("OS_PASSWORD").map(Secret);
        }
        fill(
            &mut self.project_name,
            e("OS_PROJECT_NAME").or_else(|| e("OS_TENANT_NAME")),
        );
        fill(
            &mut self.project_id,
            e("OS_PROJECT_ID").or_else(|| e("OS_TENANT_ID")),
        );
        fill(&mut self.user_domain_name, e("OS_USER_DOMAIN_NAME"));
        fill(&mut self.user_domain_id, e("OS_USER_DOMAIN_ID"));
        fill(&mut self.project_domain_name, e("OS_PROJECT_DOMAIN_NAME"));
        fill(&mut self.project_domain_id, e("OS_PROJECT_DOMAIN_ID"));
        fill(&mut self.domain_name, e("OS_DOMAIN_NAME"));
        fill(&mut self.domain_id, e("OS_DOMAIN_ID"));
        fill(&mut self.app_cred_id, e("OS_APPLICATION_CREDENTIAL_ID"));
        fill(&mut self.app_cred_name, e("OS_APPLICATION_CREDENTIAL_NAME"));
        if self.app_cred_secret.is_none() {
            self.app_cred_secret = e("OS_APPLICATION_CREDENTIAL_SECRET").map(Secret);
        }
        fill(&mut self.region_name, e("OS_REGION_NAME"));
        fill(
            &mut self.interface,
            e("OS_INTERFACE").or_else(|| e("OS_ENDPOINT_TYPE")),
        );
        fill(&mut self.cacert, e("OS_CACERT"));
        if self.insecure.is_none() {
            self.insecure = e("OS_INSECURE").map(|v| truthy(&v));
        }
        fill(
            &mut self.network_endpoint,
            e("OS_NETWORK_ENDPOINT_OVERRIDE"),
        );
    }

    fn into_config(self, source: String) -> Result<CloudConfig, String> {
        let auth_url = self
            .auth_url
            .ok_or_else(|| format!("{source}: no auth_url (OS_AUTH_URL): where is Keystone?"))?;
        let auth_type = self
            .auth_type
            .as_deref()
            .map(|t| t.to_ascii_lowercase().replace(['-', '_'], ""));
        let app_cred = match auth_type.as_deref() {
            Some("v3applicationcredential" | "applicationcredential") => true,
            Some("password" | "v3password") => false,
            Some(other) => {
                return Err(format!(
                    "{source}: auth_type '{other}' is not supported (password, v3applicationcredential)"
                ));
            }
            None => self.app_cred_secret.is_some(),
        };
        // Like keystoneauth, a domain given once applies to user and project alike; with
        // none at all, the Default domain (what a Keystone's first users live in).
        let user_domain_name = self.user_domain_name.or(self.domain_name.clone());
        let user_domain_id = self.user_domain_id.or(self.domain_id.clone());
        let project_domain_name = self.project_domain_name.or(self.domain_name);
        let project_domain_id = self.project_domain_id.or(self.domain_id);
        let default_domain = |name: Option<String>, id: &Option<String>| {
            if name.is_none() && id.is_none() {
                Some("Default".to_string())
            } else {
                name
            }
        };
        let credentials = if app_cred {
            let secret = self.app_cred_secret.ok_or_else(|| {
                format!(
                    "{source}: application credential auth needs application_credential_secret (OS_APPLICATION_CREDENTIAL_SECRET)"
                )
            })?;
            if self.app_cred_id.is_none()
                && (self.app_cred_name.is_none()
                    || (self.username.is_none() && self.user_id.is_none()))
            {
                return Err(format!(
                    "{source}: application credential auth needs application_credential_id, or its name and the user"
                ));
            }
            Credentials::ApplicationCredential {
                id: self.app_cred_id,
                name: self.app_cred_name,
                user_domain_name: if self.username.is_some() {
                    default_domain(user_domain_name, &user_domain_id)
                } else {
                    None
                },
                username: self.username,
                user_id: self.user_id,
                user_domain_id,
                secret,
            }
        } else {
            if self.username.is_none() && self.user_id.is_none() {
                return Err(format!(
                    "{source}: password auth needs a username (OS_USERNAME) or user_id"
                ));
            }
            let password = self.password.ok_or_else(|| {
                format!(
                    "{source}: password auth needs a password (OS_PASSWORD) for user '{}'",
                    self.username
                        .as_deref()
                        .or(self.user_id.as_deref())
                        .unwrap_or("?")
                )
            })?;
            if self.project_name.is_none() && self.project_id.is_none() {
                return Err(format!(
                    "{source}: password auth needs a project (OS_PROJECT_NAME or OS_PROJECT_ID): Neutron objects belong to a project"
                ));
            }
            Credentials::Password {
                user_domain_name: if self.username.is_some() {
                    default_domain(user_domain_name, &user_domain_id)
                } else {
                    None
                },
                username: self.username,
                user_id: self.user_id,
                user_domain_id,
                password,
                project_domain_name: if self.project_name.is_some() {
                    default_domain(project_domain_name, &project_domain_id)
                } else {
                    None
                },
                project_name: self.project_name,
                project_id: self.project_id,
                project_domain_id,
            }
        };
        let interface = match self.interface.as_deref() {
            None => "public".to_string(),
            Some(i) => {
                let i = i.trim_end_matches("URL").to_ascii_lowercase();
                if !matches!(i.as_str(), "public" | "internal" | "admin") {
                    return Err(format!(
                        "{source}: interface '{i}' is not one of public, internal, admin"
                    ));
                }
                i
            }
        };
        Ok(CloudConfig {
            auth_url,
            credentials,
            region_name: self.region_name,
            interface,
            cacert: self.cacert,
            insecure: self.insecure.unwrap_or(false),
            network_endpoint: self.network_endpoint,
            source,
        })
    }
}

/// The cloud to use: `os_cloud` (the `--os-cloud` flag; else `OS_CLOUD`) from clouds.yaml
/// (`clouds_yaml` when given, else `OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
/// `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`: the first that exists),
/// with `OS_*` filling the gaps; with no cloud named, the `OS_*` variables alone.
pub fn load(
    os_cloud: Option<&str>,
    clouds_yaml: Option<&str>,
    src: &Sources,
) -> Result<CloudConfig, String> {
    let cloud = os_cloud
        .map(String::from)
        .filter(|c| !c.is_empty())
        .or_else(|| src.var("OS_CLOUD"));
    let Some(cloud) = cloud else {
        if src.var("OS_AUTH_URL").is_none() {
            return Err(
                "no OpenStack credentials: give --os-cloud NAME (a clouds.yaml entry) \
                        or set OS_AUTH_URL and the other OS_* variables (source your openrc file)"
                    .into(),
            );
        }
        let mut f = Fields::default();
        f.fill_from_env(src);
        return f.into_config("OS_* environment".into());
    };
    let dirs = src.config_dirs();
    let candidates: Vec<PathBuf> = match clouds_yaml {
        Some(p) => vec![PathBuf::from(p)],
        None => src
            .var("OS_CLIENT_CONFIG_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(dirs.iter().map(|d| d.join("clouds.yaml")))
            .collect(),
    };
    let Some((path, text)) = first_file(src, &candidates) else {
        let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "cloud '{cloud}': no clouds.yaml found (looked at {})",
            list.join(", ")
        ));
    };
    let doc: Yaml = serde_yaml_ng::from_str(&text)
        .map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?;
    let Some(mut entry) = doc
        .get("clouds")
        .and_then(|c| c.get(cloud.as_str()))
        .cloned()
    else {
        let names: Vec<String> = doc
            .get("clouds")
            .and_then(|c| c.as_mapping())
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        return Err(format!(
            "cloud '{cloud}' is not in {} (clouds there: {})",
            path.display(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ));
    };
    let secure_candidates: Vec<PathBuf> = src
        .var("OS_CLIENT_SECURE_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(path.parent().map(|d| d.join("secure.yaml")))
        .chain(dirs.iter().map(|d| d.join("secure.yaml")))
        .collect();
    if let Some((spath, stext)) = first_file(src, &secure_candidates) {
        let sdoc: Yaml = serde_yaml_ng::from_str(&stext)
            .map_err(|e| format!("{}: not valid YAML: {e}", spath.display()))?;
        if let Some(over) = sdoc.get("clouds").and_then(|c| c.get(cloud.as_str())) {
            merge(&mut entry, over);
        }
    }
    let mut f = Fields::from_cloud(&entry);
    f.fill_from_env(src);
    f.into_config(format!("clouds.yaml cloud '{cloud}' ({})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn with<'a>(
        env: &'a BTreeMap<&'static str, &'static str>,
        files: &'a BTreeMap<PathBuf, &'static str>,
        f: impl FnOnce(&Sources) -> Result<CloudConfig, String>,
    ) -> Result<CloudConfig, String> {
        let e = |k: &str| env.get(k).map(|v| v.to_string());
        let r = |p: &Path| files.get(p).map(|v| v.to_string());
        let src = Sources {
            env: &e,
            read: &r,
            home: Some(PathBuf::from("/home/op")),
        };
        f(&src)
    }

    const CLOUDS: &str = r#"
clouds:
  kpaas:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: operator
      project_name: k-paas
      user_domain_name: Users
      project_domain_name: Projects
    region_name: RegionTwo
    interface: internal
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000
      application_credential_id: abc123
      application_credential_secret: s3cr3t
  insecure:
    auth:
      auth_url: http://k/v3
      username: u
      password: p
      project_id: pid
    verify: false
    cacert: /ca.pem
"#;

    #[test]
    fn clouds_yaml_entry_with_password_from_secure_yaml_then_env() {
        let env = BTreeMap::from([("OS_PASSWORD", "from-env")]);
        let mut files = BTreeMap::from([(
            PathBuf::from("/home/op/.config/openstack/clouds.yaml"),
            CLOUDS,
        )]);
        let c = with(&env, &files, |s| load(Some("kpaas"), None, s)).unwrap();
        assert_eq!(c.auth_url, "https://keystone.example:5000/v3");
        assert_eq!(c.region_name.as_deref(), Some("RegionTwo"));
        assert_eq!(c.interface, "internal");
        assert!(
            c.source.contains("clouds.yaml cloud 'kpaas'"),
            "{}",
            c.source
        );
        let Credentials::Password {
            username,
            password,
            user_domain_name,
            project_domain_name,
            project_name,
            ..
        } = &c.credentials
        else {
            panic!("{:?}", c.credentials)
        };
        assert_eq!(username.as_deref(), Some("operator"));
        assert_eq!(password.expose(), "from-env");
        assert_eq!(user_domain_name.as_deref(), Some("Users"));
        assert_eq!(project_domain_name.as_deref(), Some("Projects"));
        assert_eq!(project_name.as_deref(), Some("k-paas"));

        // secure.yaml next to clouds.yaml wins over the environment (it is part of the entry).
        files.insert(
            PathBuf::from("/home/op/.config/openstack/secure.yaml"),
            "clouds:\n  kpaas:\n    auth:\n      password: from-secure\n",
        );
        let c = with(&env, &files, |s| load(Some("kpaas"), None, s)).unwrap();
        let Credentials::Password { password, .. } = &c.credentials else {
            panic!()
        };
        assert_eq!(password.expose(), "from-secure");
    }

    #[test]
    fn search_order_and_os_cloud_variable() {
        let env = BTreeMap::from([("OS_CLOUD", "appcred")]);
        let files = BTreeMap::from([
            (PathBuf::from("./clouds.yaml"), CLOUDS),
            (
                PathBuf::from("/etc/openstack/clouds.yaml"),
                "clouds: {other: {}}",
            ),
        ]);
        let c = with(&env, &files, |s| load(None, None, s)).unwrap();
        assert!(c.source.contains("./clouds.yaml"), "{}", c.source);
        let Credentials::ApplicationCredential {
            id, secret, name, ..
        } = &c.credentials
        else {
            panic!("{:?}", c.credentials)
        };
        assert_eq!((id.as_deref(), name.as_deref()), (Some("abc123"), None));
        assert_eq!(secret.expose(), "s3cr3t");
        assert_eq!(c.interface, "public");

        // An explicit clouds_yaml path is the only one read.
        let err = with(&env, &files, |s| load(None, Some("/nope/clouds.yaml"), s)).unwrap_err();
        assert_eq!(
            err,
            "cloud 'appcred': no clouds.yaml found (looked at /nope/clouds.yaml)"
        );
        let err = with(&env, &files, |s| {
            load(Some("x"), Some("/etc/openstack/clouds.yaml"), s)
        })
        .unwrap_err();
        assert_eq!(
            err,
            "cloud 'x' is not in /etc/openstack/clouds.yaml (clouds there: other)"
        );
    }

    #[test]
    fn verify_false_and_cacert() {
        let env = BTreeMap::new();
        let files = BTreeMap::from([(PathBuf::from("/etc/openstack/clouds.yaml"), CLOUDS)]);
        let c = with(&env, &files, |s| load(Some("insecure"), None, s)).unwrap();
        assert!(c.insecure);
        assert_eq!(c.cacert.as_deref(), Some("/ca.pem"));
        let Credentials::Password {
            project_id,
            project_domain_name,
            user_domain_name,
            ..
        } = &c.credentials
        else {
            panic!()
        };
        assert_eq!(project_id.as_deref(), Some("pid"));
        // Scoped by project ID: no project domain needed; the user still gets Default.
        assert_eq!(project_domain_name, &None);
        assert_eq!(user_domain_name.as_deref(), Some("Default"));
    }

    #[test]
    fn environment_alone_like_an_openrc() {
        let env = BTreeMap::from([
            ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
            ("OS_USERNAME", "admin"),
            ("OS_PASSWORD", "pw"),
            ("OS_PROJECT_NAME", "admin"),
            ("OS_DOMAIN_NAME", "corp"),
            ("OS_REGION_NAME", "RegionOne"),
            ("OS_INTERFACE", "publicURL"),
        ]);
        let files = BTreeMap::new();
        let c = with(&env, &files, |s| load(None, None, s)).unwrap();
        assert_eq!(c.source, "OS_* environment");
        assert_eq!(c.interface, "public");
        assert_eq!(c.region_name.as_deref(), Some("RegionOne"));
        let Credentials::Password {
            user_domain_name,
            project_domain_name,
            ..
        } = &c.credentials
        else {
            panic!()
        };
        assert_eq!(user_domain_name.as_deref(), Some("corp"));
        assert_eq!(project_domain_name.as_deref(), Some("corp"));

        let env = BTreeMap::from([
            ("OS_AUTH_URL", "http://k"),
            ("OS_APPLICATION_CREDENTIAL_ID", "id1"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "sec"),
        ]);
        let c = with(&env, &files, |s| load(None, None, s)).unwrap();
        assert!(matches!(
            c.credentials,
            Credentials::ApplicationCredential { .. }
        ));
    }

    #[test]
    fn missing_pieces_are_named_and_secrets_never_shown() {
        let files = BTreeMap::new();
        let err = with(&BTreeMap::new(), &files, |s| load(None, None, s)).unwrap_err();
        assert!(
            err.contains("--os-cloud") && err.contains("OS_AUTH_URL"),
            "{err}"
        );
        let env = BTreeMap::from([("OS_AUTH_URL", "http://k"), ("OS_USERNAME", "bob")]);
        let err = with(&env, &files, |s| load(None, None, s)).unwrap_err();
        assert_eq!(
            err,
            "OS_* environment: password auth needs a password (OS_PASSWORD) for user 'bob'"
        );
        let env = BTreeMap::from([
            ("OS_AUTH_URL", "http://k"),
            ("OS_USERNAME", "bob"),
            ("OS_PASSWORD", "hunter2-secret"),
        ]);
        let err = with(&env, &files, |s| load(None, None, s)).unwrap_err();
        assert!(err.contains("needs a project"), "{err}");
        let env = BTreeMap::from([("OS_AUTH_URL", "http://k"), ("OS_AUTH_TYPE", "token")]);
        let err = with(&env, &files, |s| load(None, None, s)).unwrap_err();
        assert!(err.contains("auth_type 'token' is not supported"), "{err}");

        let env = BTreeMap::from([
            ("OS_AUTH_URL", "http://k"),
            ("OS_USERNAME", "bob"),
            ("OS_PASSWORD", "hunter2-secret"),
            ("OS_PROJECT_NAME", "p"),
        ]);
        let c = with(&env, &files, |s| load(None, None, s)).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        assert_eq!(c.credentials.who(), "user 'bob' (project 'p')");
    }
}
