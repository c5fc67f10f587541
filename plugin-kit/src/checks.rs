//! Check builders: every stage's `check` rows are built here, one way, so a row always has its
//! group, and detail, items and hint are added only where a check has them.
//!
//! ```
//! use kpaas_mesh_kit::checks::{Checks, Row};
//! const CHECKS: Checks = Checks("linkerd-multicluster");
//! let row = CHECKS.fail("Link resources exist", "no Link").hint("run link");
//! assert_eq!(row.group, "linkerd-multicluster");
//! ```

use kpaas_mesh_plugin_api::{CheckResult, CheckStatus};

/// The group the rows of one stage belong to (`linkerd check` prints it as a heading).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checks(pub &'static str);

impl Checks {
    /// A row with a status and nothing else.
    pub fn row(self, name: impl Into<String>, status: CheckStatus) -> CheckResult {
        CheckResult {
            group: self.0.into(),
            name: name.into(),
            status,
            detail: String::new(),
            items: Vec::new(),
            hint: String::new(),
        }
    }

    pub fn ok(self, name: impl Into<String>) -> CheckResult {
        self.row(name, CheckStatus::Ok)
    }

    pub fn fail(self, name: impl Into<String>, detail: impl Into<String>) -> CheckResult {
        self.row(name, CheckStatus::Fail).detail(detail)
    }

    pub fn warn(self, name: impl Into<String>, detail: impl Into<String>) -> CheckResult {
        self.row(name, CheckStatus::Warn).detail(detail)
    }

    pub fn skipped(self, name: impl Into<String>, detail: impl Into<String>) -> CheckResult {
        self.row(name, CheckStatus::Skipped).detail(detail)
    }

    /// Ok, or failed with `detail`, as `bad` says.
    pub fn ok_unless(
        self,
        name: impl Into<String>,
        bad: bool,
        detail: impl Into<String>,
    ) -> CheckResult {
        if bad {
            self.fail(name, detail)
        } else {
            self.ok(name)
        }
    }
}

/// The optional parts of a row, added to it.
pub trait Row {
    fn detail(self, detail: impl Into<String>) -> Self;
    fn items(self, items: Vec<String>) -> Self;
    fn hint(self, hint: impl Into<String>) -> Self;
}

impl Row for CheckResult {
    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
    fn items(mut self, items: Vec<String>) -> Self {
        self.items = items;
        self
    }
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_the_group_and_only_what_is_given() {
        const C: Checks = Checks("g");
        let r = C.ok("a").items(vec!["x".into()]);
        assert_eq!(
            (r.group.as_str(), r.status, r.items.len(), r.detail.as_str()),
            ("g", CheckStatus::Ok, 1, "")
        );
        let r = C.ok_unless("b", true, "broken").hint("fix it");
        assert_eq!(
            (r.status, r.detail.as_str(), r.hint.as_str()),
            (CheckStatus::Fail, "broken", "fix it")
        );
        assert_eq!(C.ok_unless("b", false, "broken").detail, "");
        assert_eq!(C.warn("c", "w").status, CheckStatus::Warn);
        assert_eq!(C.skipped("d", "s").status, CheckStatus::Skipped);
    }
}
