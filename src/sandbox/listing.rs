//! Reading sandboxes: one by id, pages of a tenant's sandboxes, and the
//! providers.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::{ListQuery, Manager, Sandbox, SandboxPage, SandboxState};
use crate::error::{Error, Result};
use crate::ids;
use crate::provider::ProviderInfo;
use crate::store::SandboxQuery;

impl Manager {
    /// Every provider with its description, and whether it is the default.
    pub async fn list_providers(&self) -> Vec<(ProviderInfo, bool)> {
        let default = self.providers().default_name();
        let mut out = Vec::new();
        for provider in self.providers().all() {
            let mut info = provider.info().await;
            // What callers may ask for here, not only what the provider has.
            info.capabilities.network_bridge &= self.config().allow_bridge_network;
            out.push((info, provider.name() == default));
        }
        out
    }

    /// One sandbox of `tenant`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Sandbox> {
        self.store()
            .get_sandbox(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no sandbox has id {id:?}")))
    }

    /// A page of the tenant's sandboxes.
    pub async fn list(&self, tenant: &str, query: ListQuery) -> Result<SandboxPage> {
        let states = if query.states.is_empty() {
            SandboxState::ALL
                .into_iter()
                .filter(|s| *s != SandboxState::Deleted)
                .collect()
        } else {
            query.states.clone()
        };
        let filter_digest = page_filter_digest(&states, &query.selector_text);
        let before_id = query
            .page_token
            .as_deref()
            .map(|token| decode_page_token(token, &filter_digest))
            .transpose()?;
        let mut sandboxes = self
            .store()
            .list_sandboxes(&SandboxQuery {
                tenant: Some(tenant.to_owned()),
                states,
                selector: query.selector,
                before_id,
                limit: query.page_size + 1,
            })
            .await?;
        let next_page_token = if sandboxes.len() > query.page_size {
            sandboxes.truncate(query.page_size);
            sandboxes
                .last()
                .map(|last| encode_page_token(&last.id, &filter_digest))
        } else {
            None
        };
        Ok(SandboxPage {
            sandboxes,
            next_page_token,
        })
    }
}

fn page_filter_digest(states: &[SandboxState], selector: &str) -> String {
    let mut hasher = Sha256::new();
    for state in states {
        hasher.update(state.as_str());
        hasher.update(b",");
    }
    hasher.update(b"|");
    hasher.update(selector.as_bytes());
    crate::ids::hex(&hasher.finalize()[..8])
}

fn encode_page_token(last_id: &str, filter_digest: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{last_id}|{filter_digest}"))
}

fn decode_page_token(token: &str, filter_digest: &str) -> Result<String> {
    let invalid = || {
        Error::invalid_argument(
            "page_token",
            "is not a token from an earlier ListSandboxes response",
        )
    };
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let mut parts = text.split('|');
    let (Some("v1"), Some(last_id), Some(digest), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if !ids::is_sandbox_id(last_id) {
        return Err(invalid());
    }
    if digest != filter_digest {
        return Err(Error::invalid_argument(
            "page_token",
            "was made for other filters; pass the same states and label_selector as the first page",
        ));
    }
    Ok(last_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn page_tokens_round_trip_and_bind_filters() {
        let id = ids::new_sandbox_id();
        let digest = page_filter_digest(&[SandboxState::Running], "a=b");
        let token = encode_page_token(&id, &digest);
        assert_eq!(decode_page_token(&token, &digest).unwrap(), id);
        let other = page_filter_digest(&[SandboxState::Running], "a=c");
        assert_eq!(
            decode_page_token(&token, &other).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert!(decode_page_token("garbage!", &digest).is_err());
    }
}
