//! The providers a server drives, chosen at start-up, by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::contract::Provider;
use crate::error::{Error, Result};

/// The providers a server drives, chosen at start-up, and the default one.
#[derive(Clone)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn Provider>>,
    default: String,
}

impl Providers {
    /// Providers by name with `default` used when a request names none.
    /// Fails when `default` is not among them.
    pub fn new(providers: Vec<Arc<dyn Provider>>, default: &str) -> Result<Self> {
        let by_name: BTreeMap<_, _> = providers
            .into_iter()
            .map(|p| (p.name().to_owned(), p))
            .collect();
        if !by_name.contains_key(default) {
            return Err(Error::invalid_argument(
                "provider",
                format!("the default provider {default:?} is not configured"),
            ));
        }
        Ok(Self {
            by_name,
            default: default.to_owned(),
        })
    }

    /// The provider used when a request names none.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The provider called `name`, or INVALID_ARGUMENT naming the known ones.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Provider>> {
        self.by_name.get(name).ok_or_else(|| {
            Error::invalid_argument(
                "provider",
                format!(
                    "unknown provider {:?}; this server has: {}",
                    crate::sandbox::rules::shorten(name),
                    self.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Every provider's name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Every provider, in name order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.by_name.values()
    }
}
