//! What callers ask of the manager, validated: the domain's side of a
//! create, update or list request, and a page of answers.

use std::time::Duration;

use serde::Serialize;

use super::{LabelSelector, Labels, Metadata, NetworkMode, Sandbox, SandboxSpec, SandboxState};

/// What CreateSandbox does when the name is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum IfExists {
    /// Answer ALREADY_EXISTS.
    #[default]
    Fail,
    /// Return the existing sandbox.
    ReturnExisting,
}

/// A validated create request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateSandbox {
    /// A name unique among the tenant's live sandboxes.
    pub name: Option<String>,
    /// What to do when the name is taken.
    pub if_exists: IfExists,
    /// The caller's idempotency key.
    pub request_id: Option<String>,
    /// The provider; `None` for the server's default.
    pub provider: Option<String>,
    /// A template name.
    pub template: Option<String>,
    /// What the sandbox is made of. Its `network` is replaced by the
    /// resolved [`CreateSandbox::network`] when the record is written.
    pub spec: SandboxSpec,
    /// The network asked for; `None` for the provider's default.
    pub network: Option<NetworkMode>,
    /// Labels.
    pub labels: Labels,
    /// Free-form caller data.
    pub metadata: Metadata,
    /// The lifetime; `None` for the server's default.
    pub timeout: Option<Duration>,
}

/// A new lifetime for a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutUpdate {
    /// Expire this long from now.
    ExpireIn(Duration),
    /// Never expire.
    Never,
}

/// The changes of an UpdateSandbox; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct SandboxUpdate {
    /// New labels, replacing the old.
    pub labels: Option<Labels>,
    /// New metadata, replacing the old.
    pub metadata: Option<Metadata>,
    /// A new lifetime.
    pub timeout: Option<TimeoutUpdate>,
}

/// A validated list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only these states; empty for every state but DELETED.
    pub states: Vec<SandboxState>,
    /// Only sandboxes whose labels match.
    pub selector: LabelSelector,
    /// The selector as the caller wrote it, to tie page tokens to it.
    pub selector_text: String,
    /// The most sandboxes on a page.
    pub page_size: usize,
    /// The token of the page to get, if not the first.
    pub page_token: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct SandboxPage {
    /// The sandboxes, newest first.
    pub sandboxes: Vec<Sandbox>,
    /// The token of the next page, if there is one.
    pub next_page_token: Option<String>,
}
