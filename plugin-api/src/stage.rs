//! The pipeline's stages, in the order `up` runs them (the order of the K-PaaS guide).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One step of the guide, provided by one or more plugins (netfix has several).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Guide 3.1: trust anchor and issuer.
    Cert,
    /// Guide 3.2–3.3: linkerd-crds and linkerd-control-plane.
    ControlPlane,
    /// Guide 3.4: linkerd-multicluster and the links between clusters.
    Multicluster,
    /// Guide 3.5: make every gateway reachable from its peers.
    Netfix,
    /// Guide 3.6: linkerd-smi.
    Smi,
    /// Guide 4: the helloworld sample and its traffic split.
    Sample,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::Cert,
        Stage::ControlPlane,
        Stage::Multicluster,
        Stage::Netfix,
        Stage::Smi,
        Stage::Sample,
    ];

    /// The stage's name as used on the command line and in plugin metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Cert => "cert",
            Stage::ControlPlane => "control-plane",
            Stage::Multicluster => "multicluster",
            Stage::Netfix => "netfix",
            Stage::Smi => "smi",
            Stage::Sample => "sample",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown stage '{s}' (stages: {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_order() {
        let names: Vec<_> = Stage::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "cert",
                "control-plane",
                "multicluster",
                "netfix",
                "smi",
                "sample"
            ]
        );
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!(Stage::Cert < Stage::Sample);
    }

    #[test]
    fn unknown_stage_lists_the_known_ones() {
        let err = "dns".parse::<Stage>().unwrap_err();
        assert!(err.contains("unknown stage 'dns'"), "{err}");
        assert!(err.contains("control-plane"), "{err}");
    }
}
