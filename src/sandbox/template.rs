//! What a template is: a named, versioned preset of a sandbox's spec, and
//! how a create request and a template combine. Plain data, used by the
//! store and the domain.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::model::{NetworkMode, Resources, SandboxSpec, TemplateRef, Volume};
use super::requests::CreateSandbox;

/// The working directory of sandboxes whose request and template name none.
pub const DEFAULT_WORKDIR: &str = "/workspace";

/// What a template's sandboxes are made of; `None` and empty fields leave
/// the choice to the request, then to the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// The provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// The image.
    #[serde(default)]
    pub image: Option<String>,
    /// Resource limits.
    #[serde(default)]
    pub resources: Resources,
    /// Environment variables; write-only like a sandbox's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// The network.
    #[serde(default)]
    pub network: Option<NetworkMode>,
    /// What an ALLOW_LIST sandbox may reach.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Named volumes, by the tenant's names.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// A shell line run once when a sandbox first starts.
    #[serde(default)]
    pub setup_command: Option<String>,
    /// Whether the root filesystem is read-only.
    #[serde(default)]
    pub read_only_root: bool,
    /// The container runtime.
    #[serde(default)]
    pub runtime: Option<String>,
    /// How many sandboxes of the latest version to keep ready to claim.
    #[serde(default)]
    pub warm_pool_size: u32,
}

/// One version of a template, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// `tpl_…`, shared by every version of the template.
    pub id: String,
    /// The owner.
    pub tenant: String,
    /// A name unique among the tenant's templates.
    pub name: String,
    /// 1 for a new template, one more for each change.
    pub version: i64,
    /// What its sandboxes are made of.
    pub spec: TemplateSpec,
    /// How this version was made: "create", "update", "build", or
    /// "snapshot of sbx_…".
    pub source: String,
    /// The image this version made (a build or a snapshot), which goes with
    /// the template.
    pub owned_image: Option<String>,
    /// When this version was made.
    pub created_at: SystemTime,
}

/// The image a template version's build or snapshot makes: named after the
/// template's id, so that its images are found and removed with it.
pub fn template_image(template_id: &str, version: i64) -> String {
    format!("paddock-template/{template_id}:{version}")
}

impl CreateSandbox {
    /// Fills in what the request leaves unset from `template`: the
    /// request's fields win, environment variables merge (the request's
    /// over the template's), and the sandbox records which version made it.
    pub fn apply_template(&mut self, template: &TemplateRecord) {
        let from = &template.spec;
        let spec = &mut self.spec;
        if self.provider.is_none() {
            self.provider.clone_from(&from.provider);
        }
        if spec.image.is_none() {
            spec.image.clone_from(&from.image);
        }
        let limits = &mut spec.resources;
        limits.cpu_millis = limits.cpu_millis.or(from.resources.cpu_millis);
        limits.memory_bytes = limits.memory_bytes.or(from.resources.memory_bytes);
        limits.pids = limits.pids.or(from.resources.pids);
        for (key, value) in &from.env {
            spec.env.entry(key.clone()).or_insert_with(|| value.clone());
        }
        if spec.workdir.is_empty() {
            spec.workdir = from
                .workdir
                .clone()
                .unwrap_or_else(|| DEFAULT_WORKDIR.to_owned());
        }
        if self.network.is_none() {
            self.network = from.network;
            if spec.allowed_hosts.is_empty() {
                spec.allowed_hosts.clone_from(&from.allowed_hosts);
            }
        }
        if spec.volumes.is_empty() {
            spec.volumes.clone_from(&from.volumes);
        }
        spec.read_only_root |= from.read_only_root;
        if spec.runtime.is_none() {
            spec.runtime.clone_from(&from.runtime);
        }
        spec.setup_command.clone_from(&from.setup_command);
        spec.template = Some(TemplateRef {
            id: template.id.clone(),
            name: template.name.clone(),
            version: template.version,
        });
    }
}

/// The spec of a sandbox that a snapshot of it should make again: its image
/// replaced by the snapshot's, no setup (it ran already).
pub fn spec_of_snapshot(sandbox: &SandboxSpec, image: &str, provider: &str) -> TemplateSpec {
    TemplateSpec {
        provider: Some(provider.to_owned()),
        image: Some(image.to_owned()),
        resources: sandbox.resources,
        env: sandbox.env.clone(),
        workdir: Some(sandbox.workdir.clone()),
        network: Some(sandbox.network),
        allowed_hosts: sandbox.allowed_hosts.clone(),
        volumes: sandbox
            .volumes
            .iter()
            .map(|volume| Volume {
                volume_id: String::new(),
                ..volume.clone()
            })
            .collect(),
        setup_command: None,
        read_only_root: sandbox.read_only_root,
        runtime: sandbox.runtime.clone(),
        warm_pool_size: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(spec: TemplateSpec) -> TemplateRecord {
        TemplateRecord {
            id: "tpl_1".into(),
            tenant: "acme".into(),
            name: "python-3.12".into(),
            version: 3,
            spec,
            source: "create".into(),
            owned_image: None,
            created_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_request_wins_and_the_template_fills_the_rest() {
        let mut request = CreateSandbox::default();
        request.spec.env.insert("MODE".into(), "request".into());
        request.spec.resources.memory_bytes = Some(1 << 30);
        request.apply_template(&template(TemplateSpec {
            provider: Some("docker".into()),
            image: Some("python:3.12".into()),
            resources: Resources {
                cpu_millis: Some(500),
                memory_bytes: Some(256 << 20),
                pids: None,
            },
            env: BTreeMap::from([
                ("MODE".into(), "template".into()),
                ("LANG".into(), "C.UTF-8".into()),
            ]),
            network: Some(NetworkMode::None),
            setup_command: Some("pip install -r requirements.txt".into()),
            ..TemplateSpec::default()
        }));
        assert_eq!(request.provider.as_deref(), Some("docker"));
        assert_eq!(request.spec.image.as_deref(), Some("python:3.12"));
        assert_eq!(request.spec.resources.cpu_millis, Some(500));
        assert_eq!(request.spec.resources.memory_bytes, Some(1 << 30));
        assert_eq!(request.spec.env["MODE"], "request");
        assert_eq!(request.spec.env["LANG"], "C.UTF-8");
        assert_eq!(request.spec.workdir, DEFAULT_WORKDIR);
        assert_eq!(request.network, Some(NetworkMode::None));
        assert_eq!(
            request.spec.setup_command.as_deref(),
            Some("pip install -r requirements.txt")
        );
        assert_eq!(
            request.spec.template.as_ref().map(TemplateRef::display),
            Some("python-3.12@3".to_owned())
        );
    }
}
