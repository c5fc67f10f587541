//! Typed plugin options: each plugin reads `StageRequest.options` into its own
//! `#[serde(deny_unknown_fields)]` struct with [`parse`], which turns every problem into one
//! line naming the plugin and the option, and [`Scalar`] for values the old flags passed as
//! text or as JSON (`"true"` / `true`, `"50"` / `50`).

use kpaas_mesh_plugin_api::Descriptor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Reads `options` (a JSON object, or null for none) into `T`. `known` are the option names of
/// the plugin's schema; a key not among them is refused as
/// `PLUGIN: option 'KEY' is unknown (options: A, B)`, a value `T` cannot hold as
/// `PLUGIN: option KEY: <why>`. Every field of `T` must have a default.
pub fn parse<T: DeserializeOwned>(
    plugin: &str,
    known: &[&str],
    options: &Value,
) -> Result<T, String> {
    let map = match options {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) => m.clone(),
        other => return Err(format!("{plugin}: options must be a mapping, got {other}")),
    };
    if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "{plugin}: option '{key}' is unknown (options: {})",
            known.join(", ")
        ));
    }
    for (key, value) in &map {
        let one = Value::Object([(key.clone(), value.clone())].into_iter().collect());
        serde_json::from_value::<T>(one).map_err(|e| format!("{plugin}: option {key}: {e}"))?;
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| format!("{plugin}: options: {e}"))
}

/// The option names of a descriptor's schema.
pub fn names(descriptor: &Descriptor) -> Vec<&str> {
    descriptor.options.iter().map(|o| o.name.as_str()).collect()
}

/// A value given as text or as JSON; plugins validate it themselves so their messages can
/// quote it as the user wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

impl Scalar {
    /// As the user would have written it.
    pub fn plain(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }

    /// `true`/`false`, as JSON or text.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Text(s) if s == "true" || s == "false" => Some(s == "true"),
            _ => None,
        }
    }

    /// A non-negative whole number, as JSON or text.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::Number(n) => n.as_u64(),
            Scalar::Text(s) => s.trim().parse().ok(),
            Scalar::Bool(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Opts {
        name: Option<String>,
        on: bool,
    }

    #[test]
    fn errors_name_the_plugin_and_the_option() {
        let known = ["name", "on"];
        let o: Opts = parse("p", &known, &json!({"name": "x", "on": true})).unwrap();
        assert_eq!((o.name.as_deref(), o.on), (Some("x"), true));
        let o: Opts = parse("p", &known, &Value::Null).unwrap();
        assert!(o.name.is_none() && !o.on);
        let e = parse::<Opts>("p", &known, &json!({"nmae": 1})).unwrap_err();
        assert_eq!(e, "p: option 'nmae' is unknown (options: name, on)");
        let e = parse::<Opts>("p", &known, &json!({"name": "x", "on": 3})).unwrap_err();
        assert!(e.starts_with("p: option on: "), "{e}");
        assert!(parse::<Opts>("p", &known, &json!([1])).is_err());
        assert_eq!(Scalar::Text("true".into()).as_bool(), Some(true));
        assert_eq!(
            serde_json::from_value::<Scalar>(json!(7)).unwrap().as_u64(),
            Some(7)
        );
    }
}
