//! Stage plugins' options from the command line: `--set STAGE.KEY=VALUE` (or
//! `PLUGIN.KEY=VALUE`) and the alias flags that predate it (`--gateway-public`, `--os-cloud`,
//! `--netfix-opt`, `--sample-client`, `--weights`), typed by each plugin's option schema
//! ([`kpaas_mesh_plugin_api::OptionSpec`]) before anything runs. Pure: unit-tested here.

use crate::cli::MeshArgs;
use kpaas_mesh_kit::stages::{NETFIX, SAMPLE};
use kpaas_mesh_plugin_api::{Descriptor, OptionKind};
use serde_json::{Map, Value};

/// One option value the user gave, with the words they gave it in (for error lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Given {
    /// A stage name or a plugin name.
    pub target: String,
    pub key: String,
    pub value: String,
    /// `--set netfix.mode=dnat`, `--os-cloud mycloud`, ...
    pub origin: String,
    /// From an alias flag (or its environment variable) rather than `--set`: a plugin that
    /// does not declare the option ignores it instead of refusing it.
    pub alias: bool,
}

fn alias(target: &str, key: &str, value: &str, origin: String) -> Given {
    Given {
        target: target.into(),
        key: key.into(),
        value: value.into(),
        origin,
        alias: true,
    }
}

/// Every option value of `args`: the alias flags first, then `--set` (so `--set` wins).
pub fn given(args: &MeshArgs) -> Vec<Given> {
    let mut out = Vec::new();
    for kv in &args.gateway_public {
        let v = format!("{}={}", kv.key, kv.value);
        out.push(alias(
            NETFIX,
            "gateway_public",
            &v,
            format!("--gateway-public {v}"),
        ));
    }
    if let Some(cloud) = &args.os_cloud {
        out.push(alias(
            NETFIX,
            "os_cloud",
            cloud,
            format!("--os-cloud {cloud}"),
        ));
    }
    for kv in &args.netfix_opts {
        let key = kv.key.replace('-', "_");
        let mut g = alias(
            NETFIX,
            &key,
            &kv.value,
            format!("--netfix-opt {}={}", kv.key, kv.value),
        );
        // --netfix-opt always named the netfix plugin's own options: refuse unknown keys
        g.alias = false;
        out.push(g);
    }
    if let Some(client) = &args.sample_client {
        out.push(alias(
            SAMPLE,
            "client",
            client,
            format!("--sample-client {client}"),
        ));
    }
    for kv in &args.weights {
        let v = format!("{}={}", kv.key, kv.value);
        out.push(alias(SAMPLE, "weights", &v, format!("--weights {v}")));
    }
    for s in &args.set {
        out.push(Given {
            target: s.target.clone(),
            key: s.key.clone(),
            value: s.value.clone(),
            origin: format!("--set {}.{}={}", s.target, s.key, s.value),
            alias: false,
        });
    }
    out
}

/// Whether `g` is meant for the plugin `name` providing `stage`.
pub fn targets(g: &Given, stage: &str, name: &str) -> bool {
    g.target == stage || g.target == name
}

/// The options object of plugin `name` from the values aimed at it, typed by its schema.
/// `base` holds what the host itself sets (e.g. the cert stage's directory).
pub fn build(
    name: &str,
    descriptor: &Descriptor,
    given: &[&Given],
    base: Map<String, Value>,
) -> Result<Value, String> {
    let mut out = base;
    for g in given {
        let Some(spec) = descriptor.find_option(&g.key) else {
            if g.alias {
                continue;
            }
            let known: Vec<&str> = descriptor.options.iter().map(|o| o.name.as_str()).collect();
            return Err(if known.is_empty() {
                format!("{}: plugin {name} has no options", g.origin)
            } else {
                format!(
                    "{}: plugin {name} has no option '{}' (its options: {})",
                    g.origin,
                    g.key,
                    known.join(", ")
                )
            });
        };
        let bad = |want: &str| {
            format!(
                "{}: option {} of plugin {name} wants {want}",
                g.origin, spec.name
            )
        };
        match spec.kind {
            OptionKind::String => {
                out.insert(spec.name.clone(), Value::String(g.value.clone()));
            }
            OptionKind::Bool => {
                let b = match g.value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("true or false")),
                };
                out.insert(spec.name.clone(), Value::Bool(b));
            }
            OptionKind::Integer => {
                let n: u64 = g.value.parse().map_err(|_| bad("a whole number"))?;
                out.insert(spec.name.clone(), Value::from(n));
            }
            OptionKind::Map => {
                let entry = out
                    .entry(spec.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                let map = entry
                    .as_object_mut()
                    .ok_or_else(|| bad("KEY=VALUE pairs"))?;
                for pair in g.value.split(',').filter(|p| !p.is_empty()) {
                    match pair.split_once('=') {
                        Some((k, v)) if !k.is_empty() => {
                            map.insert(k.to_string(), Value::String(v.to_string()));
                        }
                        _ => return Err(bad("KEY=VALUE pairs")),
                    }
                }
            }
            OptionKind::List => {
                let entry = out
                    .entry(spec.name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let list = entry.as_array_mut().ok_or_else(|| bad("a list"))?;
                list.extend(
                    g.value
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| Value::String(p.to_string())),
                );
            }
        }
    }
    Ok(Value::Object(out))
}

/// `--set` values aimed at no stage or plugin of the command: one line for the first.
pub fn unclaimed(given: &[Given], claimed: impl Fn(&Given) -> bool) -> Option<&Given> {
    given.iter().find(|g| !g.alias && !claimed(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_plugin_api::Operation;
    use serde_json::json;

    fn d() -> Descriptor {
        Descriptor::new("netfix", &[Operation::Up])
            .option("mode", OptionKind::String, Some("gateway-address"), "m")
            .option("output_chain", OptionKind::Bool, Some("false"), "o")
            .option("resync_secs", OptionKind::Integer, Some("60"), "r")
            .option("gateway_public", OptionKind::Map, None, "g")
            .option("zones", OptionKind::List, None, "z")
    }

    fn set(target: &str, key: &str, value: &str) -> Given {
        Given {
            target: target.into(),
            key: key.into(),
            value: value.into(),
            origin: format!("--set {target}.{key}={value}"),
            alias: false,
        }
    }

    #[test]
    fn values_are_typed_by_the_schema() {
        let g = [
            set("netfix", "mode", "dnat"),
            set("netfix", "output_chain", "true"),
            set("netfix", "resync_secs", "30"),
            alias(
                "netfix",
                "gateway_public",
                "c1=203.0.113.1",
                "--gateway-public c1=…".into(),
            ),
            set("netfix", "gateway_public", "c2=203.0.113.2,c3=203.0.113.3"),
            set("netfix", "zones", "a,b"),
        ];
        let refs: Vec<&Given> = g.iter().collect();
        let v = build("netfix-x", &d(), &refs, Map::new()).unwrap();
        assert_eq!(
            v,
            json!({"mode": "dnat", "output_chain": true, "resync_secs": 30,
                "gateway_public": {"c1": "203.0.113.1", "c2": "203.0.113.2", "c3": "203.0.113.3"},
                "zones": ["a", "b"]})
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_option_and_the_plugin() {
        let one = |g: Given| build("netfix-x", &d(), &[&g], Map::new()).unwrap_err();
        assert_eq!(
            one(set("netfix", "imgae", "x")),
            "--set netfix.imgae=x: plugin netfix-x has no option 'imgae' \
             (its options: mode, output_chain, resync_secs, gateway_public, zones)"
        );
        assert_eq!(
            one(set("netfix", "output_chain", "yes")),
            "--set netfix.output_chain=yes: option output_chain of plugin netfix-x wants true or false"
        );
        assert_eq!(
            one(set("netfix", "resync_secs", "-1")),
            "--set netfix.resync_secs=-1: option resync_secs of plugin netfix-x wants a whole number"
        );
        assert!(one(set("netfix", "gateway_public", "c1")).ends_with("wants KEY=VALUE pairs"));
        let none = Descriptor::new("smi", &[Operation::Up]);
        let g = set("smi", "x", "1");
        assert_eq!(
            build("smi", &none, &[&g], Map::new()).unwrap_err(),
            "--set smi.x=1: plugin smi has no options"
        );
        // an alias the plugin does not declare is not its business
        let a = alias("netfix", "os_cloud", "c", "--os-cloud c".into());
        assert_eq!(
            build("netfix-x", &d(), &[&a], Map::new()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn set_values_must_be_claimed() {
        let g = vec![
            alias("sample", "client", "c1", "--sample-client c1".into()),
            set("dns", "zone", "x"),
        ];
        let first = unclaimed(&g, |g| g.target == "sample").unwrap();
        assert_eq!(first.origin, "--set dns.zone=x");
        assert!(unclaimed(&g, |_| true).is_none());
    }
}
