//! SandboxService messages to validated domain requests, and sandboxes,
//! events and providers back to messages.

use std::collections::BTreeMap;

use super::fields::{
    as_i64, duration_to_pb, enum_value, non_empty, positive_duration, sandbox_id, timestamp,
};
use super::metadata::{metadata_from_pb, metadata_to_pb};
use crate::api::preview::PreviewUrls;
use crate::error::{Error, Result};
use crate::pb;
use crate::provider::ProviderInfo;
use crate::sandbox::network::{AllowedHost, MAX_ALLOWED_HOSTS};
use crate::sandbox::rules;
use crate::sandbox::{
    CreateSandbox, IfExists, LabelSelector, ListQuery, NetworkMode, Resources, Sandbox,
    SandboxEvent, SandboxSpec, SandboxState, SandboxUpdate, TemplateRef, TimeoutUpdate,
};

pub use crate::sandbox::DEFAULT_WORKDIR;

/// The page size of a list request that sets none.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The largest page size.
pub const MAX_PAGE_SIZE: usize = 1000;

const MAX_CPU_MILLIS: i64 = 256_000;

const MIN_MEMORY_BYTES: i64 = 4 * 1024 * 1024;

const MAX_PIDS: i64 = 4_194_304;

/// A CreateSandbox request as a domain request.
pub fn create_request(request: pb::CreateSandboxRequest) -> Result<CreateSandbox> {
    let pb::CreateSandboxRequest {
        name,
        if_exists,
        request_id,
        provider,
        image,
        template,
        env,
        labels,
        metadata,
        workdir,
        resources,
        network,
        timeout,
        idle_timeout,
        volumes,
        read_only_root,
        runtime,
        allowed_hosts,
    } = request;

    if let Some(name) = &name {
        rules::check_name("name", name)?;
    }
    let if_exists = match enum_value::<pb::IfExists>("if_exists", if_exists)? {
        pb::IfExists::Unspecified | pb::IfExists::Fail => IfExists::Fail,
        pb::IfExists::ReturnExisting => {
            if name.is_none() {
                return Err(Error::invalid_argument(
                    "if_exists",
                    "IF_EXISTS_RETURN_EXISTING needs a name to look the sandbox up by",
                ));
            }
            IfExists::ReturnExisting
        }
    };
    let request_id = non_empty(request_id);
    if let Some(request_id) = &request_id {
        rules::check_request_id("request_id", request_id)?;
    }
    let image = non_empty(image);
    if let Some(image) = &image {
        rules::check_image("image", image)?;
    }
    let template = non_empty(template);
    if let Some(template) = &template {
        rules::check_template_reference("template", template)?;
        if image.is_some() {
            return Err(Error::invalid_argument(
                "template",
                "set image or template, not both",
            ));
        }
    }
    let env: BTreeMap<_, _> = env.into_iter().collect();
    rules::check_env("env", &env)?;
    let labels: BTreeMap<_, _> = labels.into_iter().collect();
    rules::check_labels("labels", &labels)?;
    // Unset with a template: the template's, else the default (filled in by
    // the manager once it has read the template).
    let workdir = match non_empty(workdir) {
        Some(workdir) => {
            rules::check_absolute_path("workdir", &workdir)?;
            workdir
        }
        None if template.is_some() => String::new(),
        None => DEFAULT_WORKDIR.to_owned(),
    };
    let network = network_from_pb(network)?;
    let allowed_hosts = allowed_hosts_from_pb(network, allowed_hosts)?;

    Ok(CreateSandbox {
        name,
        if_exists,
        request_id,
        provider: non_empty(provider),
        template,
        spec: SandboxSpec {
            image,
            env,
            workdir,
            resources: resources_from_pb(resources)?,
            // Resolved from `network` below by the manager.
            network: NetworkMode::default(),
            allowed_hosts,
            volumes: super::volume::volumes_from_pb(volumes)?,
            read_only_root,
            user: None,
            runtime: match non_empty(runtime) {
                Some(runtime) => {
                    rules::check_runtime("runtime", &runtime)?;
                    Some(runtime)
                }
                None => None,
            },
            setup_command: None,
            template: None,
            command_env: BTreeMap::new(),
            idle_timeout: idle_timeout
                .map(|d| positive_duration("idle_timeout", d))
                .transpose()?,
        },
        network,
        labels,
        metadata: metadata_from_pb("metadata", metadata)?,
        timeout: timeout
            .map(|d| positive_duration("timeout", d))
            .transpose()?,
    })
}

/// A ListSandboxes request as a domain query.
pub fn list_query(request: pb::ListSandboxesRequest) -> Result<ListQuery> {
    let pb::ListSandboxesRequest {
        states,
        label_selector,
        page_size,
        page_token,
    } = request;
    let mut wanted = Vec::new();
    for state in states {
        let state = state_from_pb("states", state)?;
        if !wanted.contains(&state) {
            wanted.push(state);
        }
    }
    wanted.sort();
    let page_size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 || n as usize > MAX_PAGE_SIZE => {
            return Err(Error::invalid_argument(
                "page_size",
                format!(
                    "{n} is out of range: use 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"
                ),
            ));
        }
        n => n as usize,
    };
    Ok(ListQuery {
        states: wanted,
        selector: LabelSelector::parse("label_selector", &label_selector)?,
        selector_text: label_selector,
        page_size,
        page_token: non_empty(page_token),
    })
}

/// An UpdateSandbox request as the sandbox id and the changes.
pub fn update_request(request: pb::UpdateSandboxRequest) -> Result<(String, SandboxUpdate)> {
    let pb::UpdateSandboxRequest {
        sandbox_id: id,
        update_mask,
        labels,
        metadata,
        timeout,
    } = request;
    let id = sandbox_id("sandbox_id", id)?;
    let paths = update_mask.map(|mask| mask.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid_argument(
            "update_mask",
            "must name the fields to change: any of labels, metadata, timeout",
        ));
    }
    let mut update = SandboxUpdate::default();
    let mut labels = Some(labels);
    let mut metadata = Some(metadata);
    let mut timeout = Some(timeout);
    for path in paths {
        match path.as_str() {
            "labels" => {
                let labels: BTreeMap<_, _> =
                    labels.take().unwrap_or_default().into_iter().collect();
                rules::check_labels("labels", &labels)?;
                update.labels = Some(labels);
            }
            "metadata" => {
                update.metadata = Some(metadata_from_pb("metadata", metadata.take().flatten())?);
            }
            "timeout" => {
                update.timeout = Some(match timeout.take().flatten() {
                    Some(d) => TimeoutUpdate::ExpireIn(positive_duration("timeout", d)?),
                    None => TimeoutUpdate::Never,
                });
            }
            other => {
                return Err(Error::invalid_argument(
                    "update_mask",
                    format!(
                        "{:?} cannot be updated; use labels, metadata or timeout",
                        rules::shorten(other)
                    ),
                ));
            }
        }
    }
    Ok((id, update))
}

/// A sandbox for the API, its public ports with their `urls`.
/// Environment values are left out.
pub fn sandbox_to_pb(sandbox: &Sandbox, urls: &PreviewUrls) -> pb::Sandbox {
    let Sandbox {
        id,
        tenant: _,
        name,
        provider,
        provider_ref,
        state,
        state_reason,
        spec,
        labels,
        metadata,
        request_id: _,
        request_fingerprint: _,
        created_at,
        updated_at,
        started_at,
        expires_at,
        last_activity_at,
        public_ports,
        revision,
    } = sandbox;
    pb::Sandbox {
        id: id.clone(),
        name: name.clone().unwrap_or_default(),
        provider: provider.clone(),
        provider_ref: provider_ref.clone().unwrap_or_default(),
        state: state_to_pb(*state) as i32,
        state_reason: state_reason.clone(),
        image: spec.image.clone().unwrap_or_default(),
        labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        metadata: (!metadata.is_empty()).then(|| metadata_to_pb(metadata)),
        workdir: spec.workdir.clone(),
        resources: spec.resources.is_limited().then(|| pb::Resources {
            cpu_millis: as_i64(spec.resources.cpu_millis),
            memory_bytes: as_i64(spec.resources.memory_bytes),
            pids: as_i64(spec.resources.pids),
        }),
        network: match spec.network {
            NetworkMode::Egress => pb::NetworkMode::Egress,
            NetworkMode::Bridge => pb::NetworkMode::Bridge,
            NetworkMode::None => pb::NetworkMode::None,
            NetworkMode::AllowList => pb::NetworkMode::AllowList,
        } as i32,
        env_keys: spec.env.keys().cloned().collect(),
        create_time: Some(timestamp(*created_at)),
        update_time: Some(timestamp(*updated_at)),
        start_time: started_at.map(timestamp),
        expire_time: expires_at.map(timestamp),
        last_activity_time: Some(timestamp(*last_activity_at)),
        idle_timeout: spec.idle_timeout.map(duration_to_pb),
        revision: *revision,
        read_only_root: spec.read_only_root,
        runtime: spec.runtime.clone().unwrap_or_default(),
        allowed_hosts: spec.allowed_hosts.clone(),
        exposed_ports: urls.exposed(id, public_ports),
        template: spec
            .template
            .as_ref()
            .map(TemplateRef::display)
            .unwrap_or_default(),
    }
}

/// An event for the API.
pub fn event_to_pb(event: &SandboxEvent, urls: &PreviewUrls) -> pb::WatchSandboxesResponse {
    pb::WatchSandboxesResponse {
        revision: event.revision,
        r#type: match event.event_type {
            crate::sandbox::EventType::Created => pb::SandboxEventType::Created,
            crate::sandbox::EventType::StateChanged => pb::SandboxEventType::StateChanged,
            crate::sandbox::EventType::Updated => pb::SandboxEventType::Updated,
        } as i32,
        time: Some(timestamp(event.time)),
        sandbox: Some(sandbox_to_pb(&event.sandbox, urls)),
    }
}

/// A provider's description for the API.
pub fn provider_to_pb(info: &ProviderInfo, is_default: bool) -> pb::Provider {
    let caps = &info.capabilities;
    pb::Provider {
        name: info.name.clone(),
        available: info.available,
        detail: info.detail.clone(),
        is_default,
        isolation: info.isolation.clone(),
        capabilities: Some(pb::ProviderCapabilities {
            tty: caps.tty,
            signals: caps.signals,
            stop_start: caps.stop_start,
            volumes: caps.volumes,
            network_none: caps.network_none,
            network_egress: caps.network_egress,
            network_bridge: caps.network_bridge,
            network_allow_list: caps.network_allow_list,
            port_forward: caps.port_forward,
            resource_limits: caps.resource_limits,
            images: caps.images,
            exec: caps.exec,
            files: caps.files,
            read_only_root: caps.read_only_root,
            template_builds: caps.template_builds,
            snapshots: caps.snapshots,
            // The pools are the control plane's: they need only commands.
            warm_pools: caps.exec,
        }),
        runtimes: info.runtimes.clone(),
    }
}

fn state_to_pb(state: SandboxState) -> pb::SandboxState {
    match state {
        SandboxState::Pending => pb::SandboxState::Pending,
        SandboxState::Starting => pb::SandboxState::Starting,
        SandboxState::Running => pb::SandboxState::Running,
        SandboxState::Stopping => pb::SandboxState::Stopping,
        SandboxState::Stopped => pb::SandboxState::Stopped,
        SandboxState::Deleting => pb::SandboxState::Deleting,
        SandboxState::Deleted => pb::SandboxState::Deleted,
        SandboxState::Failed => pb::SandboxState::Failed,
    }
}

fn state_from_pb(field: &str, value: i32) -> Result<SandboxState> {
    Ok(match enum_value::<pb::SandboxState>(field, value)? {
        pb::SandboxState::Unspecified => {
            return Err(Error::invalid_argument(
                field,
                "SANDBOX_STATE_UNSPECIFIED is not a state to filter by",
            ));
        }
        pb::SandboxState::Pending => SandboxState::Pending,
        pb::SandboxState::Starting => SandboxState::Starting,
        pb::SandboxState::Running => SandboxState::Running,
        pb::SandboxState::Stopping => SandboxState::Stopping,
        pb::SandboxState::Stopped => SandboxState::Stopped,
        pb::SandboxState::Deleting => SandboxState::Deleting,
        pb::SandboxState::Deleted => SandboxState::Deleted,
        pb::SandboxState::Failed => SandboxState::Failed,
    })
}

/// The network asked for; `None` leaves the choice to the provider.
pub(super) fn network_from_pb(value: i32) -> Result<Option<NetworkMode>> {
    Ok(match enum_value::<pb::NetworkMode>("network", value)? {
        pb::NetworkMode::Unspecified => None,
        pb::NetworkMode::Egress => Some(NetworkMode::Egress),
        pb::NetworkMode::Bridge => Some(NetworkMode::Bridge),
        pb::NetworkMode::None => Some(NetworkMode::None),
        pb::NetworkMode::AllowList => Some(NetworkMode::AllowList),
    })
}

/// The checked, canonical `allowed_hosts` of a request for `network`:
/// entries only with NETWORK_MODE_ALLOW_LIST, each parsed, no repeats.
pub(super) fn allowed_hosts_from_pb(
    network: Option<NetworkMode>,
    entries: Vec<String>,
) -> Result<Vec<String>> {
    if entries.is_empty() {
        return Ok(entries);
    }
    if network != Some(NetworkMode::AllowList) {
        return Err(Error::invalid_argument(
            "allowed_hosts",
            "only a NETWORK_MODE_ALLOW_LIST sandbox has allowed hosts; set network to it, or \
             leave allowed_hosts empty",
        ));
    }
    if entries.len() > MAX_ALLOWED_HOSTS {
        return Err(Error::invalid_argument(
            "allowed_hosts",
            format!(
                "{} entries is more than the {MAX_ALLOWED_HOSTS} allowed; use a \"*.\" wildcard or a \
                 wider range",
                entries.len()
            ),
        ));
    }
    let mut canonical: Vec<String> = Vec::with_capacity(entries.len());
    for entry in &entries {
        let host: AllowedHost = entry
            .parse()
            .map_err(|why: String| Error::invalid_argument("allowed_hosts", why))?;
        let host = host.to_string();
        if !canonical.contains(&host) {
            canonical.push(host);
        }
    }
    Ok(canonical)
}

pub(super) fn resources_from_pb(resources: Option<pb::Resources>) -> Result<Resources> {
    let Some(pb::Resources {
        cpu_millis,
        memory_bytes,
        pids,
    }) = resources
    else {
        return Ok(Resources::default());
    };
    let limit = |field: &str, value: i64, min: i64, max: i64| -> Result<Option<u64>> {
        match value {
            0 => Ok(None),
            v if v < min || v > max => Err(Error::invalid_argument(
                field,
                format!("{v} is out of range: use {min} to {max}, or 0 for no limit"),
            )),
            v => Ok(Some(v as u64)),
        }
    };
    Ok(Resources {
        cpu_millis: limit("resources.cpu_millis", cpu_millis, 1, MAX_CPU_MILLIS)?,
        memory_bytes: limit(
            "resources.memory_bytes",
            memory_bytes,
            MIN_MEMORY_BYTES,
            i64::MAX,
        )?,
        pids: limit("resources.pids", pids, 1, MAX_PIDS)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::convert::metadata::struct_to_json;
    use crate::error::ErrorKind;

    #[test]
    fn metadata_round_trips() {
        let json =
            serde_json::json!({"purpose": "eval", "params": {"n": 3, "tags": ["a", null, true]}});
        let map = json.as_object().unwrap().clone();
        let back = struct_to_json("metadata", metadata_to_pb(&map)).unwrap();
        assert_eq!(serde_json::Value::Object(back), json);
    }

    #[test]
    fn durations_must_be_positive() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert!(positive_duration("t", d(0, 0)).is_err());
        assert!(positive_duration("t", d(-1, 0)).is_err());
        assert_eq!(
            positive_duration("t", d(1, 5)).unwrap(),
            Duration::new(1, 5)
        );
    }

    #[test]
    fn unknown_enum_values_are_invalid() {
        let err = create_request(pb::CreateSandboxRequest {
            network: 42,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().starts_with("network:"), "{}", err.message());
    }
}
