//! Label selectors: `team=ml,env!=prod,gpu,!scratch`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::sandbox::rules::{check_label_key, check_label_value};

/// The most requirements in one selector.
pub const MAX_REQUIREMENTS: usize = 32;

/// One requirement on a sandbox's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// The label is present with this value.
    Equals(String, String),
    /// The label is absent, or present with another value.
    NotEquals(String, String),
    /// The label is present, with any value.
    Exists(String),
    /// The label is absent.
    NotExists(String),
}

/// Requirements that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// The requirements, in the order written.
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses a comma-separated selector; an empty string selects everything.
    /// `field` names the request field in errors.
    pub fn parse(field: &str, text: &str) -> Result<Self> {
        let mut requirements = Vec::new();
        for raw in text.split(',') {
            let term = raw.trim();
            if term.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(Error::invalid_argument(
                    field,
                    format!("{text:?} has an empty requirement between commas"),
                ));
            }
            requirements.push(parse_requirement(field, term)?);
        }
        if requirements.len() > MAX_REQUIREMENTS {
            return Err(Error::invalid_argument(
                field,
                format!(
                    "has {} requirements; at most {MAX_REQUIREMENTS} are allowed",
                    requirements.len()
                ),
            ));
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|req| match req {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

fn parse_requirement(field: &str, term: &str) -> Result<Requirement> {
    let requirement = if let Some((key, value)) = term.split_once("!=") {
        Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
    } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
    } else if let Some(key) = term.strip_prefix('!') {
        Requirement::NotExists(key.trim().to_owned())
    } else {
        Requirement::Exists(term.to_owned())
    };
    match &requirement {
        Requirement::Equals(key, value) | Requirement::NotEquals(key, value) => {
            check_label_key(field, key)?;
            check_label_value(field, value)?;
        }
        Requirement::Exists(key) | Requirement::NotExists(key) => check_label_key(field, key)?,
    }
    Ok(requirement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_form() {
        let selector = LabelSelector::parse("s", "a=1, b==2,c!=3,d,!e").unwrap();
        assert_eq!(
            selector.requirements,
            vec![
                Requirement::Equals("a".into(), "1".into()),
                Requirement::Equals("b".into(), "2".into()),
                Requirement::NotEquals("c".into(), "3".into()),
                Requirement::Exists("d".into()),
                Requirement::NotExists("e".into()),
            ]
        );
    }

    #[test]
    fn matching() {
        let selector = LabelSelector::parse("s", "team=ml,!scratch,env!=prod").unwrap();
        assert!(selector.matches(&labels(&[("team", "ml")])));
        assert!(selector.matches(&labels(&[("team", "ml"), ("env", "dev")])));
        assert!(!selector.matches(&labels(&[("team", "ml"), ("env", "prod")])));
        assert!(!selector.matches(&labels(&[("team", "ml"), ("scratch", "")])));
        assert!(!selector.matches(&labels(&[])));
        assert!(LabelSelector::parse("s", "").unwrap().matches(&labels(&[])));
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["a,,b", "bad key=1", "a=bad value", "=x", "!", ","] {
            assert!(LabelSelector::parse("s", bad).is_err(), "{bad}");
        }
    }
}
