//! kpaas-mesh stage plugin **cert**: the guide's section 3.1 (`step certificate create` for a
//! trust anchor and an issuer), done with rcgen and made idempotent.
//!
//! - `up` (and `certs generate`): reuses valid files in the cert directory, imports a
//!   user-supplied anchor, or generates what is missing; never overwrites a file it did not
//!   verify; hands the PEMs to later stages as [`CertOutputs`].
//! - `status` (`certs inspect`): a table of every file plus the checks below.
//! - `check`: chain, key match, key format, file modes and expiry checks.
//! - `down`: nothing; the certificates are the operator's files.
//!
//! Pure logic: files are read through fact queries and written through plan actions.

pub mod keys;
pub mod pki;
pub mod rotate;

use keys::AnchorKey;
use kpaas_mesh_kit::CertOptions;
use kpaas_mesh_kit::CertOutputs;
use kpaas_mesh_kit::checks::{Checks, Row};
use kpaas_mesh_plugin_api::{
    Action, CheckResult, CheckStatus, FactAnswer, FactQuery, Operation, OptionKind, Plan,
    PluginError, StagePlugin, StageRequest, StageResponse, Table,
};
use pki::CertInfo;
use pki::Role;
use time::{Duration, OffsetDateTime};

kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "cert",
    description: "Linkerd trust anchor and issuer certificates (guide 3.1), generated with rcgen",
    descriptor: || {
        kpaas_mesh_plugin_api::Descriptor::new(kpaas_mesh_kit::stages::CERT, &kpaas_mesh_kit::stages::LIFECYCLE)
            .option("anchor_cert", OptionKind::String, None, "a trust anchor certificate to import instead of generating one")
            .option("anchor_key", OptionKind::String, None, "the private key of anchor_cert")
            .option("issuer_validity_secs", OptionKind::Integer, Some("31536000"), "validity of a new issuer certificate in seconds (guide: 8760h)")
            .option("anchor_validity_secs", OptionKind::Integer, Some("315360000"), "validity of a new trust anchor in seconds (10 years)")
            .option("warn_days", OptionKind::Integer, Some("60"), "warn when a certificate expires within this many days")
            .option("rotate", OptionKind::String, None, "set by `certs rotate`: issuer or anchor (one phase per run, planned from the clusters)")
    },
    constructor: || Ok(CertStage),
}

/// Heading of the checks this stage reports.
pub const CHECK_GROUP: &str = "kpaas-mesh certificates";

/// The cert stage.
#[derive(Debug, Default, Clone, Copy)]
pub struct CertStage;

impl StagePlugin for CertStage {
    fn run(&self, request: StageRequest) -> Result<StageResponse, PluginError> {
        let opts: CertOptions = serde_json::from_value(request.options.clone())
            .map_err(|e| format!("cert: invalid options ({e})"))?;
        if matches!(
            request.operation,
            Operation::Down | Operation::Link | Operation::Unlink
        ) {
            let mut plan = Plan::default();
            if request.operation == Operation::Down {
                plan.notes.push(format!(
                    "certificates in {} are kept (they are yours; delete them by hand if unused)",
                    opts.dir
                ));
            }
            return Ok(StageResponse::Plan(plan));
        }
        let paths = Paths::new(&opts);
        let missing = request.missing(paths.queries());
        if !missing.is_empty() {
            return Ok(StageResponse::NeedFacts { queries: missing });
        }
        let files = Files::from_facts(&request, &paths)?;
        let now = OffsetDateTime::now_utc();
        if request.operation == Operation::Up
            && let Some(kind) = opts.rotate.as_deref()
        {
            let missing = request.missing(rotate::queries(&request));
            if !missing.is_empty() {
                return Ok(StageResponse::NeedFacts { queries: missing });
            }
            let plan = match kind {
                "issuer" => rotate::plan_issuer_rotation(&request, &opts, &paths, &files, now)?,
                "anchor" => rotate::plan_anchor_rotation(&request, &opts, &paths, &files, now)?,
                other => {
                    return Err(
                        format!("cert: rotate is 'issuer' or 'anchor', not '{other}'").into(),
                    );
                }
            };
            return Ok(StageResponse::Plan(plan));
        }
        let mut plan = match request.operation {
            Operation::Up => plan_up(&opts, &paths, &files, now)?,
            Operation::Status => inspect(&opts, &files, now, true),
            _ => inspect(&opts, &files, now, false),
        };
        if matches!(request.operation, Operation::Check | Operation::Status)
            && !request.clusters.is_empty()
        {
            let missing = request.missing(cluster_issuer_queries(&request));
            if !missing.is_empty() {
                return Ok(StageResponse::NeedFacts { queries: missing });
            }
            let live = live_certificates(&request);
            plan.checks
                .extend(cluster_issuer_checks(&request, &opts, &files, now));
            plan.checks.push(issuers_trusted_by_every_peer(&live));
            if let Some(row) = rotate::progress(&request, &files) {
                plan.checks.push(row);
            }
            if request.operation == Operation::Status {
                plan.tables.push(live_table(&live, now));
            }
        }
        Ok(StageResponse::Plan(plan))
    }
}

use kpaas_mesh_kit::anchors::{issuer_secret_query, secret_text, trust_roots_query};

fn cluster_issuer_queries(request: &StageRequest) -> Vec<FactQuery> {
    request
        .clusters
        .iter()
        .flat_map(|c| [issuer_secret_query(&c.name), trust_roots_query(&c.name)])
        .collect()
}

/// What makes Linkerd's identity controller refuse the issuer a cluster runs with, in the
/// order it tests them (2.14's `pkg/identity/service.go` `loadCredentials`: read the key pair,
/// verify the certificate against the trust roots, require a CA), plus the match with the local
/// anchor. `Err` is the cause, one line.
fn issuer_problem(
    cluster: &str,
    secret: &serde_json::Value,
    roots: Option<&serde_json::Value>,
    anchors: &[CertInfo],
    now: OffsetDateTime,
) -> Result<CertInfo, String> {
    let what = format!("{cluster}: linkerd-identity-issuer");
    let crt = secret_text(secret, "crt.pem").ok_or(format!("{what} holds no readable crt.pem"))?;
    let issuer = pki::parse_cert(&what, &crt)?;
    let key = secret_text(secret, "key.pem").ok_or(format!("{what} holds no readable key.pem"))?;
    // Linkerd 2.14.10's `pkg/tls/codec.go` `DecodePEMKey` reads `EC PRIVATE KEY`, `RSA PRIVATE
    // KEY` and PKCS#8 `PRIVATE KEY` (the e2e test shows its identity controller starting with a
    // PKCS#8 issuer key); kpaas-mesh writes SEC1 like `step`, and needs P-256 either way.
    let parsed = pki::parse_key(&format!("{what} key.pem"), &key)?;
    pki::check_key_matches(&what, &issuer, &parsed.public)?;
    let bundle = roots
        .and_then(|cm| cm["data"]["ca-bundle.crt"].as_str())
        .ok_or(format!(
            "{cluster}: no linkerd/linkerd-identity-trust-roots to verify the issuer with"
        ))?;
    let roots = pki::parse_bundle(&format!("{cluster}: linkerd-identity-trust-roots"), bundle)?;
    if !roots
        .iter()
        .any(|r| pki::verify_signed_by(&issuer, r).is_ok())
    {
        return Err(format!(
            "{what} is not signed by any root in linkerd-identity-trust-roots (Linkerd's identity controller refuses it: signed by unknown authority)"
        ));
    }
    if now > issuer.not_after {
        return Err(format!(
            "{what} expired on {} (Linkerd's identity controller refuses it)",
            pki::rfc3339(issuer.not_after)
        ));
    }
    if now < issuer.not_before {
        return Err(format!(
            "{what} is not valid before {}",
            pki::rfc3339(issuer.not_before)
        ));
    }
    if !issuer.is_ca {
        return Err(format!(
            "{what} is not a CA certificate (basicConstraints CA:TRUE missing); Linkerd needs an intermediate CA"
        ));
    }
    if anchors.is_empty() {
        return Err("no local trust anchor to verify against".into());
    }
    if anchors
        .iter()
        .all(|a| pki::verify_signed_by(&issuer, a).is_err())
    {
        return Err(format!(
            "{what} is not signed by the local trust anchor (the certs dir holds another anchor)"
        ));
    }
    Ok(issuer)
}

/// `check` on clusters: the issuer each cluster runs with would be accepted by Linkerd's
/// identity controller, chains to the local trust anchor and is valid long enough.
fn cluster_issuer_checks(
    request: &StageRequest,
    opts: &CertOptions,
    files: &Files,
    now: OffsetDateTime,
) -> Vec<CheckResult> {
    // ca.crt, and during an anchor rotation its successor ca-new.crt
    let anchors: Vec<CertInfo> = [&files.ca_crt, &files.new_crt]
        .into_iter()
        .flatten()
        .filter_map(|f| pki::parse_cert(&f.path, &f.text).ok())
        .collect();
    let mut oks = Vec::new();
    let mut problems: Vec<(CheckStatus, String)> = Vec::new();
    for c in &request.clusters {
        let secret = match request.fact(&issuer_secret_query(&c.name)) {
            Some(FactAnswer::Object { object: Some(o) }) => o.clone(),
            Some(FactAnswer::Error { message }) => {
                problems.push((CheckStatus::Fail, format!("{}: {message}", c.name)));
                continue;
            }
            _ => {
                problems.push((
                    CheckStatus::Fail,
                    format!("{}: no Secret linkerd/linkerd-identity-issuer (is the control plane installed?)", c.name),
                ));
                continue;
            }
        };
        let roots = match request.fact(&trust_roots_query(&c.name)) {
            Some(FactAnswer::Object { object }) => object.clone(),
            _ => None,
        };
        let issuer = match issuer_problem(&c.name, &secret, roots.as_ref(), &anchors, now) {
            Ok(i) => i,
            Err(e) => {
                problems.push((CheckStatus::Fail, e));
                continue;
            }
        };
        let what = format!("{}: linkerd-identity-issuer", c.name);
        let days = issuer.days_left(now);
        if days < i64::from(opts.warn_days) {
            problems.push((CheckStatus::Warn, format!("{what} expires in {days} days")));
        } else {
            oks.push(format!("{} ({days} days left)", c.name));
        }
    }
    let status = problems
        .iter()
        .map(|(s, _)| *s)
        .max()
        .unwrap_or(CheckStatus::Ok);
    vec![CheckResult {
        group: CHECK_GROUP.to_string(),
        name: format!(
            "every cluster's issuer chains to the trust anchor and is valid for at least {} days",
            opts.warn_days
        ),
        status,
        detail: problems
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join("; "),
        items: oks,
        hint: String::new(),
    }]
}

/// What one cluster runs with: its trust roots and its issuer (either may be missing).
struct Live {
    cluster: String,
    roots: Vec<CertInfo>,
    issuer: Option<CertInfo>,
}

/// Every cluster's trust roots (`linkerd-identity-trust-roots`) and issuer certificate
/// (`linkerd-identity-issuer`), as far as they parse.
fn live_certificates(request: &StageRequest) -> Vec<Live> {
    request
        .clusters
        .iter()
        .map(|c| {
            let roots = match request.fact(&trust_roots_query(&c.name)) {
                Some(FactAnswer::Object { object: Some(cm) }) => cm["data"]["ca-bundle.crt"]
                    .as_str()
                    .and_then(|b| pki::parse_bundle(&c.name, b).ok())
                    .unwrap_or_default(),
                _ => vec![],
            };
            let issuer = match request.fact(&issuer_secret_query(&c.name)) {
                Some(FactAnswer::Object { object: Some(s) }) => {
                    secret_text(s, "crt.pem").and_then(|crt| pki::parse_cert(&c.name, &crt).ok())
                }
                _ => None,
            };
            Live {
                cluster: c.name.clone(),
                roots,
                issuer,
            }
        })
        .collect()
}

/// `status`: per cluster the roots it trusts and the issuer it runs with, which of its roots
/// signs that issuer, and the days left.
fn live_table(live: &[Live], now: OffsetDateTime) -> Table {
    let fp = |c: &CertInfo| kpaas_mesh_kit::anchors::fingerprint(&c.der);
    Table {
        title: "certificates on the clusters".into(),
        columns: [
            "CLUSTER",
            "TRUST ROOTS",
            "ISSUER",
            "NOT AFTER",
            "DAYS LEFT",
            "SIGNED BY",
        ]
        .map(String::from)
        .to_vec(),
        rows: live
            .iter()
            .map(|l| {
                let roots = if l.roots.is_empty() {
                    "none".to_string()
                } else {
                    l.roots.iter().map(fp).collect::<Vec<_>>().join(" ")
                };
                match &l.issuer {
                    None => vec![
                        l.cluster.clone(),
                        roots,
                        "none".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ],
                    Some(i) => vec![
                        l.cluster.clone(),
                        roots,
                        i.subject.clone(),
                        pki::rfc3339(i.not_after),
                        i.days_left(now).to_string(),
                        l.roots
                            .iter()
                            .find(|r| pki::verify_signed_by(i, r).is_ok())
                            .map(fp)
                            .unwrap_or_else(|| "none of its roots".into()),
                    ],
                }
            })
            .collect(),
    }
}

/// `check`: cross-cluster mTLS works when every cluster's issuer chains to a root that every
/// other cluster trusts — also while a trust-anchor rotation is in progress (root sets that
/// differ but overlap), where Linkerd's "clusters share trust anchors" compares exact sets.
fn issuers_trusted_by_every_peer(live: &[Live]) -> CheckResult {
    let mut problems = vec![];
    let mut oks = vec![];
    for l in live {
        let Some(issuer) = &l.issuer else { continue };
        let untrusting: Vec<&str> = live
            .iter()
            .filter(|p| p.cluster != l.cluster)
            .filter(|p| {
                !p.roots
                    .iter()
                    .any(|r| pki::verify_signed_by(issuer, r).is_ok())
            })
            .map(|p| p.cluster.as_str())
            .collect();
        if untrusting.is_empty() {
            oks.push(l.cluster.clone());
        } else {
            problems.push(format!(
                "{}'s issuer is not signed by any root {} trusts",
                l.cluster,
                untrusting.join(", ")
            ));
        }
    }
    CheckResult {
        group: CHECK_GROUP.to_string(),
        name: "every cluster's issuer is trusted by every peer".into(),
        status: if problems.is_empty() {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        detail: problems.join("; "),
        items: oks,
        hint: String::new(),
    }
}

/// Where the four files (and an optional import) live.
struct Paths {
    ca_crt: String,
    ca_key: String,
    issuer_crt: String,
    issuer_key: String,
    /// The new anchor of an anchor rotation ([`rotate::NEW_ANCHOR_CRT`]).
    new_crt: String,
    new_key: String,
    import: Option<(String, String)>,
}

impl Paths {
    fn new(opts: &CertOptions) -> Self {
        let dir = opts.dir.trim_end_matches('/');
        let at = |f: &str| {
            if dir.is_empty() {
                f.to_string()
            } else {
                format!("{dir}/{f}")
            }
        };
        Paths {
            ca_crt: at("ca.crt"),
            ca_key: at("ca.key"),
            issuer_crt: at("issuer.crt"),
            issuer_key: at("issuer.key"),
            new_crt: at(rotate::NEW_ANCHOR_CRT),
            new_key: at(rotate::NEW_ANCHOR_KEY),
            import: opts.anchor_cert.clone().zip(opts.anchor_key.clone()),
        }
    }

    fn queries(&self) -> Vec<FactQuery> {
        let mut paths = vec![
            &self.ca_crt,
            &self.ca_key,
            &self.issuer_crt,
            &self.issuer_key,
            &self.new_crt,
            &self.new_key,
        ];
        if let Some((c, k)) = &self.import {
            paths.extend([c, k]);
        }
        // each file once (an anchor given as the same file for cert and key is asked for once)
        let mut seen = std::collections::BTreeSet::new();
        paths.retain(|p| seen.insert(p.as_str()));
        paths
            .into_iter()
            .map(|p| FactQuery::File { path: p.clone() })
            .collect()
    }
}

/// A file the host read for us.
#[derive(Clone, Debug)]
struct File {
    path: String,
    text: String,
    mode: Option<u32>,
}

struct Files {
    ca_crt: Option<File>,
    ca_key: Option<File>,
    issuer_crt: Option<File>,
    issuer_key: Option<File>,
    new_crt: Option<File>,
    new_key: Option<File>,
    import: Option<(File, File)>,
}

impl Files {
    fn from_facts(request: &StageRequest, paths: &Paths) -> Result<Self, String> {
        let read = |path: &String| -> Result<Option<File>, String> {
            match request.fact(&FactQuery::File { path: path.clone() }) {
                Some(FactAnswer::File { contents, mode }) => {
                    Ok(contents.clone().map(|text| File {
                        path: path.clone(),
                        text,
                        mode: *mode,
                    }))
                }
                Some(FactAnswer::Error { message }) => {
                    Err(format!("cannot read {path}: {message}"))
                }
                other => Err(format!("cert: unexpected answer for {path}: {other:?}")),
            }
        };
        let import = match &paths.import {
            Some((c, k)) => {
                let cert = read(c)?.ok_or_else(|| format!("--anchor-cert {c}: no such file"))?;
                let key = read(k)?.ok_or_else(|| format!("--anchor-key {k}: no such file"))?;
                Some((cert, key))
            }
            None => None,
        };
        Ok(Files {
            ca_crt: read(&paths.ca_crt)?,
            ca_key: read(&paths.ca_key)?,
            issuer_crt: read(&paths.issuer_crt)?,
            issuer_key: read(&paths.issuer_key)?,
            new_crt: read(&paths.new_crt)?,
            new_key: read(&paths.new_key)?,
            import,
        })
    }
}

const CERT_MODE: u32 = 0o644;
const KEY_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

fn write(path: &str, contents: String, secret: bool) -> Action {
    Action::WriteFile {
        path: path.to_string(),
        contents,
        mode: if secret { KEY_MODE } else { CERT_MODE },
        dir_mode: DIR_MODE,
        secret,
    }
}

fn secs(s: u64) -> Duration {
    Duration::seconds(s.min(i64::MAX as u64) as i64)
}

/// A verified CA certificate with (maybe) its key.
struct Ca {
    cert: CertInfo,
    key: Option<AnchorKey>,
}

fn load_ca(cert: &File, key: Option<&File>, now: OffsetDateTime, role: Role) -> Result<Ca, String> {
    let info = pki::parse_cert(&cert.path, &cert.text)?;
    pki::validate_ca(&cert.path, &info, now, role)?;
    let key = match key {
        Some(k) => {
            let parsed: AnchorKey = match role {
                Role::Issuer => pki::parse_key(&k.path, &k.text)?.into(),
                Role::Anchor => pki::parse_anchor_key(&k.path, &k.text)?,
            };
            pki::check_key_matches(&k.path, &info, &parsed.public)?;
            Some(parsed)
        }
        None => None,
    };
    Ok(Ca { cert: info, key })
}

fn plan_up(
    opts: &CertOptions,
    paths: &Paths,
    files: &Files,
    now: OffsetDateTime,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let anchor = plan_anchor(opts, paths, files, now, &mut plan)?;
    let (issuer_cert, issuer_key) = plan_issuer(opts, paths, files, &anchor, now, &mut plan)?;
    plan_key_modes(files, &mut plan);
    plan.checks.extend(expiry_checks(
        opts,
        &[("trust anchor", &anchor.cert), ("issuer", &issuer_cert)],
        now,
    ));
    plan.outputs = serde_json::to_value(CertOutputs {
        trust_anchor_pem: anchor.cert.pem.clone(),
        issuer_cert_pem: issuer_cert.pem.clone(),
        issuer_key_pem: pki::key_pem(&issuer_key),
        rotation: None,
    })
    .map_err(|e| e.to_string())?;
    Ok(plan)
}

/// The trust anchor: imported, reused from the directory, or generated (its writes and notes
/// go into `plan`).
fn plan_anchor(
    opts: &CertOptions,
    paths: &Paths,
    files: &Files,
    now: OffsetDateTime,
    plan: &mut Plan,
) -> Result<Ca, String> {
    Ok(match (&files.import, &files.ca_crt, &files.ca_key) {
        (Some((cert, key)), existing, existing_key) => {
            let ca = load_ca(cert, Some(key), now, Role::Anchor)?;
            if let Some(existing) = existing {
                let there = pki::parse_cert(&existing.path, &existing.text)?;
                if there.der != ca.cert.der {
                    return Err(format!(
                        "{} already holds a different trust anchor; refusing to overwrite it \
                         (choose another directory or remove it)",
                        existing.path
                    ));
                }
            } else {
                plan.actions
                    .push(write(&paths.ca_crt, ca.cert.pem.clone(), false));
            }
            let key = ca.key.as_ref().expect("import has a key");
            let key_there = existing_key
                .as_ref()
                .map(|k| pki::parse_anchor_key(&k.path, &k.text))
                .transpose()?;
            if key_there.as_ref().map(|k| &k.public) != Some(&key.public) {
                if existing_key.is_some() {
                    return Err(format!(
                        "{} holds a different key than --anchor-key; refusing to overwrite it",
                        paths.ca_key
                    ));
                }
                plan.actions
                    .push(write(&paths.ca_key, pki::anchor_key_pem(key), true));
            }
            plan.notes
                .push(format!("imported trust anchor from {}", cert.path));
            ca
        }
        (None, Some(cert), key) => {
            let ca = load_ca(cert, key.as_ref(), now, Role::Anchor)?;
            plan.notes.push(format!(
                "reusing trust anchor {} (expires {})",
                cert.path,
                pki::rfc3339(ca.cert.not_after)
            ));
            ca
        }
        (None, None, Some(key)) => {
            return Err(format!(
                "{} exists but {} does not; restore the certificate or remove the key",
                key.path, paths.ca_crt
            ));
        }
        (None, None, None) => {
            if let Some(issuer) = files.issuer_crt.as_ref().or(files.issuer_key.as_ref()) {
                return Err(format!(
                    "{} exists but {} does not; an issuer is useless without its trust anchor",
                    issuer.path, paths.ca_crt
                ));
            }
            let made = pki::generate_anchor(now, secs(opts.anchor_validity_secs))?;
            let cert = pki::parse_cert(&paths.ca_crt, &made.cert_pem)?;
            plan.actions
                .push(write(&paths.ca_crt, made.cert_pem, false));
            plan.actions
                .push(write(&paths.ca_key, pki::key_pem(&made.key), true));
            plan.notes.push(format!(
                "generating trust anchor {} (ECDSA P-256, expires {})",
                pki::ANCHOR_CN,
                pki::rfc3339(cert.not_after)
            ));
            Ca {
                cert,
                key: Some(made.key.into()),
            }
        }
    })
}

/// The issuer: reused if it is a valid CA signed by the anchor, otherwise issued from it.
fn plan_issuer(
    opts: &CertOptions,
    paths: &Paths,
    files: &Files,
    anchor: &Ca,
    now: OffsetDateTime,
    plan: &mut Plan,
) -> Result<(CertInfo, keys::P256Key), String> {
    Ok(match (&files.issuer_crt, &files.issuer_key) {
        (Some(crt), Some(key)) => {
            let ca = load_ca(crt, Some(key), now, Role::Issuer)?;
            pki::verify_signed_by(&ca.cert, &anchor.cert).map_err(|_| {
                format!(
                    "{} is not signed by the trust anchor {}; remove {} and {} to issue a new one",
                    crt.path,
                    anchor_path(files, paths),
                    crt.path,
                    key.path
                )
            })?;
            plan.notes.push(format!(
                "reusing issuer {} (expires {})",
                crt.path,
                pki::rfc3339(ca.cert.not_after)
            ));
            (
                ca.cert,
                ca.key
                    .and_then(|k| k.p256)
                    .expect("an issuer is loaded with its P-256 key"),
            )
        }
        (None, None) => {
            let anchor_key = anchor.key.as_ref().ok_or_else(|| {
                format!(
                    "{} is missing: cannot issue an issuer without the trust anchor's key",
                    paths.ca_key
                )
            })?;
            let (cert, key) = issue_into(opts, paths, &anchor.cert, anchor_key, now, plan)?;
            plan.notes.push(format!(
                "issuing {} (ECDSA P-256, expires {})",
                pki::ISSUER_CN,
                pki::rfc3339(cert.not_after)
            ));
            (cert, key)
        }
        (Some(one), None) | (None, Some(one)) => {
            return Err(format!(
                "{} exists without its pair ({} / {}); restore both or remove it",
                one.path, paths.issuer_crt, paths.issuer_key
            ));
        }
    })
}

/// A new issuer signed by `anchor`, written to `issuer.crt`/`issuer.key` by `plan`.
fn issue_into(
    opts: &CertOptions,
    paths: &Paths,
    anchor: &CertInfo,
    anchor_key: &AnchorKey,
    now: OffsetDateTime,
    plan: &mut Plan,
) -> Result<(CertInfo, keys::P256Key), String> {
    let made = pki::issue_issuer(anchor, anchor_key, now, secs(opts.issuer_validity_secs))?;
    let cert = pki::parse_cert(&paths.issuer_crt, &made.cert_pem)?;
    plan.actions
        .push(write(&paths.issuer_crt, made.cert_pem, false));
    plan.actions
        .push(write(&paths.issuer_key, pki::key_pem(&made.key), true));
    Ok((cert, made.key))
}

/// Existing key files that others can read get rewritten with 0600.
fn plan_key_modes(files: &Files, plan: &mut Plan) {
    for key in [&files.ca_key, &files.issuer_key].into_iter().flatten() {
        if key.mode.is_some_and(|m| m & 0o077 != 0) {
            plan.actions.push(write(&key.path, key.text.clone(), true));
            plan.notes.push(format!(
                "tightening {} to mode 0600 (was {:04o})",
                key.path,
                key.mode.unwrap_or(0) & 0o7777
            ));
        }
    }
}

fn anchor_path(files: &Files, paths: &Paths) -> String {
    files
        .import
        .as_ref()
        .map(|(c, _)| c.path.clone())
        .unwrap_or_else(|| paths.ca_crt.clone())
}

fn check(name: &str, status: CheckStatus, detail: impl Into<String>, hint: &str) -> CheckResult {
    Checks(CHECK_GROUP)
        .row(name, status)
        .detail(detail)
        .hint(hint)
}

fn expiry_checks(
    opts: &CertOptions,
    certs: &[(&str, &CertInfo)],
    now: OffsetDateTime,
) -> Vec<CheckResult> {
    certs
        .iter()
        .map(|(what, cert)| {
            let days = cert.days_left(now);
            let name = format!("{what} is valid for at least {} days", opts.warn_days);
            if days < 0 {
                check(&name, CheckStatus::Fail, format!("expired on {}", pki::rfc3339(cert.not_after)), "")
            } else if days < i64::from(opts.warn_days) {
                check(
                    &name,
                    CheckStatus::Warn,
                    format!("expires in {days} days ({})", pki::rfc3339(cert.not_after)),
                    "rotate it: https://linkerd.io/2.14/tasks/manually-rotating-control-plane-tls-credentials/",
                )
            } else {
                check(&name, CheckStatus::Ok, format!("{days} days left"), "")
            }
        })
        .collect()
}

/// `certs inspect` (with the table) and `check` (checks only).
fn inspect(opts: &CertOptions, files: &Files, now: OffsetDateTime, with_table: bool) -> Plan {
    let mut plan = Plan::default();
    let mut table = Table {
        title: format!("certificates in {}", opts.dir),
        columns: [
            "FILE",
            "SUBJECT",
            "ISSUER",
            "KEY TYPE",
            "NOT AFTER",
            "DAYS LEFT",
            "STATUS",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![],
    };
    let name_of = |f: &Option<File>, default: &str| {
        f.as_ref()
            .map(|f| f.path.clone())
            .unwrap_or_else(|| default.to_string())
    };
    let mut certs: Vec<(&str, Option<CertInfo>)> = vec![];
    for (label, file, key_file, p256) in [
        ("trust anchor", &files.ca_crt, &files.ca_key, false),
        ("issuer", &files.issuer_crt, &files.issuer_key, true),
    ] {
        let cert_name = name_of(file, if p256 { "issuer.crt" } else { "ca.crt" });
        let key_name = name_of(key_file, if p256 { "issuer.key" } else { "ca.key" });
        let (row, cert_row, info) = inspect_cert(opts, file, &cert_name, label, p256, now);
        plan.checks.push(row);
        table.rows.push(cert_row);
        let (rows, key_row) = inspect_key(key_file, &key_name, &cert_name, label, p256, &info);
        plan.checks.extend(rows);
        table.rows.push(key_row);
        certs.push((label, info));
    }
    if let [(_, Some(anchor)), (_, Some(issuer))] = &certs[..] {
        plan.checks.push(chain_check(anchor, issuer));
    }
    let valid: Vec<(&str, &CertInfo)> = certs
        .iter()
        .filter_map(|(l, c)| c.as_ref().map(|c| (*l, c)))
        .collect();
    plan.checks.extend(expiry_checks(opts, &valid, now));
    if with_table {
        plan.tables.push(table);
    }
    plan
}

/// One certificate file of the certs dir: its check row ("a valid ECDSA CA"), its table row,
/// and what it holds (when it parses).
fn inspect_cert(
    opts: &CertOptions,
    file: &Option<File>,
    cert_name: &str,
    label: &str,
    p256: bool,
    now: OffsetDateTime,
) -> (CheckResult, Vec<String>, Option<CertInfo>) {
    let parsed = file.as_ref().map(|f| pki::parse_cert(&f.path, &f.text));
    let (status, info) = match &parsed {
        None => ("missing".to_string(), None),
        Some(Err(e)) => (format!("invalid: {e}"), None),
        Some(Ok(info)) => match pki::validate_ca(
            cert_name,
            info,
            now,
            if p256 { Role::Issuer } else { Role::Anchor },
        ) {
            Ok(()) if info.days_left(now) < i64::from(opts.warn_days) => (
                format!("WARN: expires in {} days", info.days_left(now)),
                Some(info.clone()),
            ),
            Ok(()) => ("ok".to_string(), Some(info.clone())),
            Err(e) => (e, Some(info.clone())),
        },
    };
    let ca_ok = matches!(&status[..], "ok") || status.starts_with("WARN");
    let row = check(
        &format!("{label} certificate is a valid ECDSA CA"),
        if ca_ok {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        if ca_ok {
            String::new()
        } else {
            format!("{cert_name}: {status}")
        },
        "",
    );
    let table_row = match &info {
        Some(i) => vec![
            cert_name.to_string(),
            i.subject.clone(),
            i.issuer.clone(),
            i.key_type.clone(),
            pki::rfc3339(i.not_after),
            i.days_left(now).to_string(),
            status.clone(),
        ],
        None => vec![
            cert_name.to_string(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            status.clone(),
        ],
    };
    (row, table_row, info)
}

/// The private key beside a certificate: its format, that it matches, its mode; check rows
/// and its table row.
fn inspect_key(
    key_file: &Option<File>,
    key_name: &str,
    cert_name: &str,
    label: &str,
    p256: bool,
    info: &Option<CertInfo>,
) -> (Vec<CheckResult>, Vec<String>) {
    let mut checks = vec![];
    let (key_type, key_status) = match key_file {
        None => ("-".to_string(), "missing".to_string()),
        Some(k) => {
            let format = if k.text.contains("BEGIN EC PRIVATE KEY") {
                "EC PRIVATE KEY"
            } else if k.text.contains("BEGIN RSA PRIVATE KEY") {
                "RSA PRIVATE KEY"
            } else {
                "PRIVATE KEY (PKCS#8)"
            };
            let parsed: Result<AnchorKey, String> = if p256 {
                pki::parse_key(&k.path, &k.text).map(AnchorKey::from)
            } else {
                pki::parse_anchor_key(&k.path, &k.text)
            };
            let mut notes = vec![];
            match (&parsed, &info) {
                (Err(e), _) => notes.push(format!("invalid: {e}")),
                (Ok(key), Some(cert)) => match pki::check_key_matches(&k.path, cert, &key.public) {
                    Ok(()) => notes.push(format!("matches {cert_name}")),
                    Err(_) => notes.push(format!("does NOT match {cert_name}")),
                },
                (Ok(_), None) => notes.push("no certificate to match".into()),
            }
            if let Some(mode) = k.mode.filter(|m| m & 0o077 != 0) {
                notes.push(format!("mode {:04o}, should be 0600", mode & 0o7777));
            }
            let ok = parsed.is_ok() && notes.len() == 1 && notes[0].starts_with("matches");
            checks.push(check(
                &format!(
                    "{label} key matches its certificate, is 0600 and in a format Linkerd reads"
                ),
                if ok {
                    CheckStatus::Ok
                } else if parsed.is_ok() && notes[0].starts_with("matches") {
                    CheckStatus::Warn
                } else {
                    CheckStatus::Fail
                },
                if ok {
                    String::new()
                } else {
                    format!("{key_name}: {}", notes.join("; "))
                },
                "",
            ));
            (format!("ECDSA P-256 ({format})"), notes.join("; "))
        }
    };
    if key_file.is_none() {
        checks.push(check(
            &format!("{label} key is present"),
            if p256 {
                CheckStatus::Fail
            } else {
                CheckStatus::Warn
            },
            format!("{key_name} is missing"),
            if p256 {
                ""
            } else {
                "without ca.key no new issuer can be issued"
            },
        ));
    }
    let table_row = vec![
        key_name.to_string(),
        "-".into(),
        "-".into(),
        key_type,
        "-".into(),
        "-".into(),
        key_status,
    ];
    (checks, table_row)
}

/// The row "issuer chains to the trust anchor".
fn chain_check(anchor: &CertInfo, issuer: &CertInfo) -> CheckResult {
    let signed = pki::verify_signed_by(issuer, anchor);
    check(
        "issuer chains to the trust anchor",
        if signed.is_ok() {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        signed.err().unwrap_or_default(),
        "",
    )
}

#[cfg(test)]
pub(crate) mod tests {
    //! The stage driven the way the host drives it: facts answered from a real directory,
    //! plans applied to it, every rejection checked.
    use super::*;
    use kpaas_mesh_kit::testkit::{World, converse, converse_facts};
    use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Runs one operation to its plan, answering file facts from disk as the host does; the
    /// stage asks for nothing but files.
    fn plan(op: Operation, opts: &CertOptions) -> Result<Plan, String> {
        let mut req = StageRequest::new(op, vec![]);
        req.options = serde_json::to_value(opts).unwrap();
        let (plan, facts) = converse_facts(&CertStage, req, &World::new().with_disk())?;
        for f in &facts {
            assert!(
                matches!(f.query, FactQuery::File { .. }),
                "cert asked for {:?}",
                f.query
            );
        }
        Ok(plan)
    }

    /// Writes a plan's files the way the host does (mode included).
    pub(crate) fn apply(p: &Plan) {
        for a in &p.actions {
            let Action::WriteFile {
                path,
                contents,
                mode,
                dir_mode,
                ..
            } = a
            else {
                panic!("cert planned {a:?}")
            };
            let path = Path::new(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::set_permissions(
                path.parent().unwrap(),
                std::fs::Permissions::from_mode(*dir_mode),
            )
            .unwrap();
            std::fs::write(path, contents).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
    }

    pub(crate) fn up(opts: &CertOptions) -> Result<Plan, String> {
        let p = plan(Operation::Up, opts)?;
        apply(&p);
        Ok(p)
    }

    pub(crate) fn dir() -> (tempfile::TempDir, CertOptions) {
        let tmp = tempfile::tempdir().unwrap();
        let opts = CertOptions::new(tmp.path().join("certs").display().to_string());
        (tmp, opts)
    }

    pub(crate) fn read(opts: &CertOptions, f: &str) -> String {
        std::fs::read_to_string(format!("{}/{f}", opts.dir)).unwrap()
    }

    pub(crate) fn write(opts: &CertOptions, f: &str, text: &str) {
        std::fs::write(format!("{}/{f}", opts.dir), text).unwrap();
    }

    #[test]
    fn generates_then_reuses_and_hands_pems_on() {
        let (_tmp, opts) = dir();
        let first = up(&opts).unwrap();
        assert_eq!(first.actions.len(), 4);
        let modes: Vec<u32> = first
            .actions
            .iter()
            .map(|a| match a {
                Action::WriteFile { mode, secret, .. } => {
                    assert_eq!(*secret, *mode == 0o600);
                    *mode
                }
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(modes, [0o644, 0o600, 0o644, 0o600]);
        let out: CertOutputs = serde_json::from_value(first.outputs.clone()).unwrap();
        assert_eq!(out.trust_anchor_pem, read(&opts, "ca.crt"));
        assert_eq!(out.issuer_cert_pem, read(&opts, "issuer.crt"));
        assert_eq!(out.issuer_key_pem, read(&opts, "issuer.key"));
        assert!(
            out.issuer_key_pem
                .starts_with("-----BEGIN EC PRIVATE KEY-----")
        );

        let second = up(&opts).unwrap();
        assert!(second.actions.is_empty(), "{:?}", second.actions);
        assert_eq!(second.outputs, first.outputs, "same PEMs on a re-run");
        assert!(second.checks.iter().all(|c| c.status == CheckStatus::Ok));
    }

    #[test]
    fn a_missing_issuer_is_reissued_from_the_kept_anchor() {
        let (_tmp, opts) = dir();
        up(&opts).unwrap();
        let anchor = read(&opts, "ca.crt");
        let old_issuer = read(&opts, "issuer.crt");
        std::fs::remove_file(format!("{}/issuer.crt", opts.dir)).unwrap();
        std::fs::remove_file(format!("{}/issuer.key", opts.dir)).unwrap();
        let p = up(&opts).unwrap();
        assert_eq!(p.actions.len(), 2);
        assert_eq!(read(&opts, "ca.crt"), anchor);
        assert_ne!(read(&opts, "issuer.crt"), old_issuer);
    }

    #[test]
    fn keys_readable_by_others_are_tightened() {
        let (_tmp, opts) = dir();
        up(&opts).unwrap();
        let key = format!("{}/issuer.key", opts.dir);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = up(&opts).unwrap();
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("tightening") && n.contains("0644"))
        );
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_imported_anchor_gets_a_fresh_issuer() {
        let (_tmp, src) = dir();
        up(&src).unwrap();
        let (_tmp2, mut opts) = dir();
        opts.anchor_cert = Some(format!("{}/ca.crt", src.dir));
        opts.anchor_key = Some(format!("{}/ca.key", src.dir));
        let p = up(&opts).unwrap();
        assert_eq!(p.actions.len(), 4);
        assert_eq!(read(&opts, "ca.crt"), read(&src, "ca.crt"));
        assert_ne!(read(&opts, "issuer.crt"), read(&src, "issuer.crt"));
        let anchor = pki::parse_cert("a", &read(&opts, "ca.crt")).unwrap();
        let issuer = pki::parse_cert("i", &read(&opts, "issuer.crt")).unwrap();
        pki::verify_signed_by(&issuer, &anchor).unwrap();
        // Importing again is a no-op; importing a different anchor into the dir is refused.
        assert!(up(&opts).unwrap().actions.is_empty());
        let (_tmp3, other) = dir();
        up(&other).unwrap();
        opts.anchor_cert = Some(format!("{}/ca.crt", other.dir));
        opts.anchor_key = Some(format!("{}/ca.key", other.dir));
        let err = up(&opts).unwrap_err();
        assert!(
            err.contains("already holds a different trust anchor"),
            "{err}"
        );
    }

    fn self_signed(
        params: CertificateParams,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (String, String) {
        let key = KeyPair::generate_for(alg).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn named(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p
    }

    fn import(cert: &str, key: &str) -> Result<Plan, String> {
        let (tmp, mut opts) = dir();
        let c = tmp.path().join("in.crt");
        let k = tmp.path().join("in.key");
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        opts.anchor_cert = Some(c.display().to_string());
        opts.anchor_key = Some(k.display().to_string());
        let r = up(&opts);
        drop(tmp);
        r
    }

    #[test]
    fn non_ca_anchors_are_rejected() {
        let mut p = named("leaf");
        p.is_ca = IsCa::NoCa;
        let (cert, key) = self_signed(p, &rcgen::PKCS_ECDSA_P256_SHA256);
        let err = import(&cert, &key).unwrap_err();
        assert!(err.contains("is not a CA certificate"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn expired_and_not_yet_valid_anchors_are_rejected() {
        let now = OffsetDateTime::now_utc();
        let mut p = named("old");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = now - Duration::days(30);
        p.not_after = now - Duration::days(1);
        let (cert, key) = self_signed(p, &rcgen::PKCS_ECDSA_P256_SHA256);
        let err = import(&cert, &key).unwrap_err();
        assert!(err.contains("expired on"), "{err}");

        let mut p = named("future");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = now + Duration::days(1);
        p.not_after = now + Duration::days(30);
        let (cert, key) = self_signed(p, &rcgen::PKCS_ECDSA_P256_SHA256);
        let err = import(&cert, &key).unwrap_err();
        assert!(err.contains("not valid yet"), "{err}");
    }

    /// A self-signed CA made by openssl with `genpkey` arguments (rcgen with ring cannot make
    /// RSA keys): (certificate, key as openssl writes it).
    fn openssl_ca(genpkey: &[&str], digest: &str) -> (String, String) {
        let tmp = tempfile::tempdir().unwrap();
        let (k, c) = (tmp.path().join("k.pem"), tmp.path().join("c.pem"));
        let ok = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (ks, cs) = (k.to_str().unwrap(), c.to_str().unwrap());
        let mut g = vec!["genpkey"];
        g.extend(genpkey);
        g.extend(["-out", ks]);
        ok(&g);
        ok(&[
            "req",
            "-x509",
            "-new",
            "-key",
            ks,
            digest,
            "-days",
            "3650",
            "-subj",
            "/CN=root.linkerd.cluster.local",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            cs,
        ]);
        (
            std::fs::read_to_string(c).unwrap(),
            std::fs::read_to_string(k).unwrap(),
        )
    }

    /// Linkerd's identity controller reads roots with Go's crypto/x509 (`DecodePEMCertPool`) and verifies the
    /// issuer against them, so a root of any type Go verifies works; kpaas-mesh takes those it can sign an
    /// issuer with (ring: RSA, ECDSA P-256/P-384, Ed25519). The issuer itself stays ECDSA P-256.
    #[test]
    fn anchors_of_every_key_type_linkerd_verifies_are_imported() {
        let mut p = named("p384");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let (p384, p384_key) = self_signed(p, &rcgen::PKCS_ECDSA_P384_SHA384);
        let mut p = named("ed25519");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let (ed, ed_key) = self_signed(p, &rcgen::PKCS_ED25519);
        let (rsa, rsa_key) = openssl_ca(
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "-sha256",
        );
        // the same key as PKCS#1 `RSA PRIVATE KEY`, as older tools write it
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("k"), &rsa_key).unwrap();
        let pkcs1 = std::process::Command::new("openssl")
            .args(["pkey", "-traditional", "-in"])
            .arg(tmp.path().join("k"))
            .output()
            .unwrap();
        let rsa_pkcs1 = String::from_utf8(pkcs1.stdout).unwrap();
        assert!(
            rsa_pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "{rsa_pkcs1}"
        );
        for (what, cert, key, kind) in [
            ("P-384", &p384, &p384_key, "ECDSA P-384"),
            ("Ed25519", &ed, &ed_key, "Ed25519"),
            ("RSA PKCS#8", &rsa, &rsa_key, "RSA 2048"),
            ("RSA PKCS#1", &rsa, &rsa_pkcs1, "RSA 2048"),
        ] {
            let (tmp, mut opts) = dir();
            let c = tmp.path().join("in.crt");
            let k = tmp.path().join("in.key");
            std::fs::write(&c, cert).unwrap();
            std::fs::write(&k, key).unwrap();
            opts.anchor_cert = Some(c.display().to_string());
            opts.anchor_key = Some(k.display().to_string());
            let p = up(&opts).unwrap_or_else(|e| panic!("{what}: {e}"));
            let out: CertOutputs = serde_json::from_value(p.outputs).unwrap();
            let anchor = pki::parse_cert("ca.crt", &out.trust_anchor_pem).unwrap();
            assert_eq!(anchor.key_type, kind, "{what}");
            let issuer = pki::parse_cert("issuer.crt", &out.issuer_cert_pem).unwrap();
            assert_eq!(issuer.key_type, "ECDSA P-256", "{what}");
            pki::verify_signed_by(&issuer, &anchor).unwrap_or_else(|e| panic!("{what}: {e}"));
            // openssl agrees that the issuer chains to the anchor
            std::fs::write(tmp.path().join("i.pem"), &out.issuer_cert_pem).unwrap();
            let v = std::process::Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(&c)
                .arg(tmp.path().join("i.pem"))
                .output()
                .unwrap();
            assert!(
                v.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&v.stderr)
            );
            // the key is kept (0600) and read back by a second run, which changes nothing
            assert_eq!(
                std::fs::metadata(format!("{}/ca.key", opts.dir))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
            opts.anchor_cert = None;
            opts.anchor_key = None;
            let again = up(&opts).unwrap();
            assert!(again.actions.is_empty(), "{what}: {:?}", again.actions);
            // and inspect calls the pair fine
            let i = plan(Operation::Check, &opts).unwrap();
            assert!(
                i.checks.iter().all(|c| c.status != CheckStatus::Fail),
                "{what}: {:?}",
                i.checks
            );
        }
    }

    #[test]
    fn wrong_key_types_and_mismatched_keys_are_rejected() {
        let (weak, weak_key) = openssl_ca(
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            "-sha256",
        );
        let err = import(&weak, &weak_key).unwrap_err();
        assert!(
            err.contains("key type is RSA 1024; a trust anchor must be RSA (2048 bits or more)"),
            "{err}"
        );
        let (p521, p521_key) = openssl_ca(
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "-sha512",
        );
        let err = import(&p521, &p521_key).unwrap_err();
        assert!(err.contains("key type is ECDSA (not P-256)"), "{err}");

        let (_tmp, a) = dir();
        up(&a).unwrap();
        let (_tmp2, b) = dir();
        up(&b).unwrap();
        let err = import(&read(&a, "ca.crt"), &read(&b, "ca.key")).unwrap_err();
        assert!(err.contains("does not match the certificate"), "{err}");

        // A mismatched issuer key in the directory is refused too.
        write(&a, "issuer.key", &read(&b, "issuer.key"));
        let err = up(&a).unwrap_err();
        assert!(
            err.contains("issuer.key: the private key does not match"),
            "{err}"
        );
    }

    #[test]
    fn an_issuer_from_another_anchor_is_rejected() {
        let (_tmp, a) = dir();
        up(&a).unwrap();
        let (_tmp2, b) = dir();
        up(&b).unwrap();
        write(&a, "issuer.crt", &read(&b, "issuer.crt"));
        write(&a, "issuer.key", &read(&b, "issuer.key"));
        let err = up(&a).unwrap_err();
        assert!(err.contains("is not signed by the trust anchor"), "{err}");
    }

    #[test]
    fn half_pairs_are_refused() {
        let (_tmp, a) = dir();
        up(&a).unwrap();
        std::fs::remove_file(format!("{}/issuer.key", a.dir)).unwrap();
        let err = up(&a).unwrap_err();
        assert!(err.contains("exists without its pair"), "{err}");

        let (_tmp2, b) = dir();
        up(&b).unwrap();
        std::fs::remove_file(format!("{}/ca.crt", b.dir)).unwrap();
        let err = up(&b).unwrap_err();
        assert!(err.contains("ca.key exists but"), "{err}");
    }

    #[test]
    fn inspect_reports_files_and_warns_before_expiry() {
        let (_tmp, mut opts) = dir();
        opts.issuer_validity_secs = 30 * 86400;
        up(&opts).unwrap();
        let p = plan(Operation::Status, &opts).unwrap();
        let table = &p.tables[0];
        assert_eq!(table.rows.len(), 4);
        assert_eq!(table.rows[2][1], pki::ISSUER_CN);
        assert_eq!(table.rows[2][3], "ECDSA P-256");
        assert!(
            table.rows[2][6].starts_with("WARN: expires in 29 days"),
            "{:?}",
            table.rows[2]
        );
        let expiry = p
            .checks
            .iter()
            .find(|c| c.name.starts_with("issuer is valid for at least 60 days"))
            .unwrap();
        assert_eq!(expiry.status, CheckStatus::Warn);
        // Check mode: no table, same checks.
        let c = plan(Operation::Check, &opts).unwrap();
        assert!(c.tables.is_empty());
        assert_eq!(c.checks.len(), p.checks.len());
    }

    #[test]
    fn inspect_accepts_pkcs8_issuer_keys_as_linkerd_does_and_flags_missing_files() {
        // Linkerd 2.14.10's DecodePEMKey reads PKCS#8 too (tests/e2e/tests/identity.rs runs its identity
        // controller with one), so a PKCS#8 key passes; the table names the format.
        let (_tmp, opts) = dir();
        up(&opts).unwrap();
        let key = pki::parse_key("k", &read(&opts, "issuer.key")).unwrap();
        let pkcs8 = pem::encode(&pem::Pem::new("PRIVATE KEY", keys::to_pkcs8(&key)));
        write(&opts, "issuer.key", &pkcs8);
        let p = plan(Operation::Check, &opts).unwrap();
        let key_check = p
            .checks
            .iter()
            .find(|c| c.name.starts_with("issuer key"))
            .unwrap();
        assert_eq!(key_check.status, CheckStatus::Ok, "{}", key_check.detail);

        std::fs::remove_file(format!("{}/issuer.crt", opts.dir)).unwrap();
        let p = plan(Operation::Check, &opts).unwrap();
        assert!(p.checks.iter().any(|c| c.status == CheckStatus::Fail));
    }

    #[test]
    fn check_verifies_the_issuer_every_cluster_runs_with() {
        use base64::Engine;
        use kpaas_mesh_plugin_api::ClusterRef;
        let (_tmp, opts) = dir();
        up(&opts).unwrap();
        let (_tmp2, other) = dir();
        up(&other).unwrap();
        let names = ["cluster1", "cluster2", "cluster3", "cluster4", "cluster5"];
        let clusters = names
            .map(|n| ClusterRef {
                name: n.into(),
                context: n.into(),
            })
            .to_vec();
        let mut req = StageRequest::new(Operation::Check, clusters);
        req.options = serde_json::to_value(&opts).unwrap();
        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
        let secret = |crt: &str, key: &str| serde_json::json!({"data": {"crt.pem": b64(crt), "key.pem": b64(key)}});
        let roots = |ca: &str| serde_json::json!({"data": {"ca-bundle.crt": ca}});
        // An issuer from the local anchor that expired a month ago.
        let anchor = pki::parse_cert("ca.crt", &read(&opts, "ca.crt")).unwrap();
        let anchor_key = pki::parse_key("ca.key", &read(&opts, "ca.key")).unwrap();
        let now = OffsetDateTime::now_utc();
        let expired = pki::issue_issuer(
            &anchor,
            &anchor_key.clone().into(),
            now - Duration::days(400),
            Duration::days(370),
        )
        .unwrap();
        let expired_key = pki::key_pem(&expired.key);
        let (ca, ca2) = (read(&opts, "ca.crt"), read(&other, "ca.crt"));
        let (crt, key) = (read(&opts, "issuer.crt"), read(&opts, "issuer.key"));
        let (crt2, key2) = (read(&other, "issuer.crt"), read(&other, "issuer.key"));
        let mut world = World::new().with_disk();
        // cluster1: as `up` installs it. cluster2: another mesh's issuer under this mesh's roots. cluster3: no
        // control plane. cluster4: another mesh altogether (its own roots). cluster5: expired.
        for (cluster, crt, key, ca) in [
            ("cluster1", &crt, &key, &ca),
            ("cluster2", &crt2, &key2, &ca),
            ("cluster4", &crt2, &key2, &ca2),
            ("cluster5", &expired.cert_pem, &expired_key, &ca),
        ] {
            world.add_object(
                cluster,
                "v1",
                "Secret",
                Some("linkerd"),
                "linkerd-identity-issuer",
                secret(crt, key),
            );
            world.add_object(
                cluster,
                "v1",
                "ConfigMap",
                Some("linkerd"),
                "linkerd-identity-trust-roots",
                roots(ca),
            );
        }
        let p = converse(&CertStage, req.clone(), &world).unwrap();
        let c = p
            .checks
            .iter()
            .find(|c| c.name.starts_with("every cluster's issuer chains"))
            .unwrap();
        assert_eq!(c.status, CheckStatus::Fail);
        assert_eq!(c.items.len(), 1, "{c:?}");
        assert!(c.items[0].starts_with("cluster1 ("), "{c:?}");
        for want in [
            "cluster2: linkerd-identity-issuer is not signed by any root in linkerd-identity-trust-roots",
            "cluster3: no Secret linkerd/linkerd-identity-issuer",
            "cluster4: linkerd-identity-issuer is not signed by the local trust anchor",
            "cluster5: linkerd-identity-issuer expired on",
        ] {
            assert!(c.detail.contains(want), "{want}: {}", c.detail);
        }
        // across clusters: cluster4's issuer (another anchor) is trusted by nobody else, and
        // cluster4 trusts nobody else's
        let peers = p.checks.last().unwrap();
        assert_eq!(
            peers.name,
            "every cluster's issuer is trusted by every peer"
        );
        assert_eq!(peers.status, CheckStatus::Fail);
        assert!(
            peers
                .detail
                .contains("cluster4's issuer is not signed by any root cluster1, cluster2, cluster3, cluster5 trusts"),
            "{}",
            peers.detail
        );
        assert!(
            peers
                .detail
                .contains("cluster1's issuer is not signed by any root cluster3, cluster4 trusts")
        );

        // a rotation in progress: cluster1 trusts old+new, cluster2 only the new; both issuers
        // come from the new anchor: every peer trusts every issuer
        let mut req2 = req.clone();
        req2.clusters.truncate(2);
        let mut w = World::new().with_disk();
        for (cluster, bundle) in [
            ("cluster1", format!("{ca}{ca2}")),
            ("cluster2", ca2.clone()),
        ] {
            w.add_object(
                cluster,
                "v1",
                "Secret",
                Some("linkerd"),
                "linkerd-identity-issuer",
                secret(&crt2, &key2),
            );
            w.add_object(
                cluster,
                "v1",
                "ConfigMap",
                Some("linkerd"),
                "linkerd-identity-trust-roots",
                roots(&bundle),
            );
        }
        let p = converse(&CertStage, req2.clone(), &w).unwrap();
        let peers = p.checks.last().unwrap();
        assert_eq!(peers.status, CheckStatus::Ok, "{peers:?}");
        assert_eq!(peers.items, ["cluster1", "cluster2"]);
        // status: the roots and which one signs each issuer
        req2.operation = Operation::Status;
        let p = converse(&CertStage, req2, &w).unwrap();
        let t = p
            .tables
            .iter()
            .find(|t| t.title == "certificates on the clusters")
            .unwrap();
        let fp2 = kpaas_mesh_kit::anchors::fingerprints(&ca2).unwrap()[0].clone();
        assert_eq!(t.rows[0][5], fp2);
        assert_eq!(t.rows[1][1], fp2);
        assert_eq!(t.rows[0][1].split(' ').count(), 2);
    }

    #[test]
    fn down_keeps_the_files() {
        let (_tmp, opts) = dir();
        let p = plan(Operation::Down, &opts).unwrap();
        assert!(p.actions.is_empty());
        assert!(p.notes[0].contains("are kept"));
    }

    #[test]
    fn bad_options_are_one_line() {
        let mut req = StageRequest::new(Operation::Up, vec![]);
        req.options = serde_json::json!({"dir": 5});
        let err = CertStage.run(req).unwrap_err();
        assert!(
            err.message.starts_with("cert: invalid options"),
            "{}",
            err.message
        );
    }
}
