//! TemplateService messages: names and specs checked by the rules a create
//! request follows, records to `Template`.

use std::collections::BTreeMap;

use super::fields::{as_i64, duration_to_pb, non_empty, timestamp};
use super::sandbox::{allowed_hosts_from_pb, network_from_pb, resources_from_pb};
use super::volume::volumes_from_pb;
use crate::error::{Error, Result};
use crate::pb;
use crate::sandbox::{NetworkMode, TemplateRecord, TemplateSpec, WarmPoolStatus, rules};

/// The longest setup command.
const MAX_SETUP_BYTES: usize = 16 << 10;

/// The most sandboxes one template may keep warm.
const MAX_WARM_POOL_SIZE: u32 = 50;

/// A template name from field `field`, checked.
pub fn template_name(field: &str, name: String) -> Result<String> {
    rules::check_template_name(field, &name)?;
    Ok(name)
}

/// A template reference ("NAME" or "NAME@VERSION") from field `field`.
pub fn template_reference(field: &str, reference: String) -> Result<String> {
    rules::check_template_reference(field, &reference)?;
    Ok(reference)
}

/// A template spec, checked; fields are named under `field`.
pub fn spec_from_pb(field: &str, spec: Option<pb::TemplateSpec>) -> Result<TemplateSpec> {
    let pb::TemplateSpec {
        provider,
        image,
        resources,
        env,
        workdir,
        network,
        allowed_hosts,
        volumes,
        setup_command,
        read_only_root,
        runtime,
        warm_pool_size,
    } = spec.unwrap_or_default();
    let named = |error: Error| prefixed(field, error);
    let image = non_empty(image);
    if let Some(image) = &image {
        rules::check_image("image", image).map_err(named)?;
    }
    let env: BTreeMap<_, _> = env.into_iter().collect();
    rules::check_env("env", &env).map_err(named)?;
    let workdir = non_empty(workdir);
    if let Some(workdir) = &workdir {
        rules::check_absolute_path("workdir", workdir).map_err(named)?;
    }
    let network = network_from_pb(network).map_err(named)?;
    let allowed_hosts = allowed_hosts_from_pb(network, allowed_hosts).map_err(named)?;
    let runtime = non_empty(runtime);
    if let Some(runtime) = &runtime {
        rules::check_runtime("runtime", runtime).map_err(named)?;
    }
    let setup_command = non_empty(setup_command);
    if let Some(setup) = &setup_command
        && (setup.len() > MAX_SETUP_BYTES || setup.contains('\0'))
    {
        return Err(Error::invalid_argument(
            &format!("{field}.setup_command"),
            format!("must be at most {MAX_SETUP_BYTES} bytes with no NUL byte"),
        ));
    }
    if warm_pool_size > MAX_WARM_POOL_SIZE {
        return Err(Error::invalid_argument(
            &format!("{field}.warm_pool_size"),
            format!(
                "{warm_pool_size} is more than the {MAX_WARM_POOL_SIZE} sandboxes a template \
                 may keep warm"
            ),
        ));
    }
    let provider = super::volume::provider(provider).map_err(named)?;
    Ok(TemplateSpec {
        provider,
        image,
        resources: resources_from_pb(resources).map_err(named)?,
        env,
        workdir,
        network,
        allowed_hosts,
        volumes: volumes_from_pb(volumes).map_err(named)?,
        setup_command,
        read_only_root,
        runtime,
        warm_pool_size,
    })
}

/// An error about a field of the spec, named as the caller sent it.
fn prefixed(field: &str, error: Error) -> Error {
    Error::new(error.kind(), format!("{field}.{}", error.message()))
}

/// A template version as the API shows it, with its warm pool if it has
/// one: environment values left out.
pub fn template_to_pb(template: &TemplateRecord, pool: Option<&WarmPoolStatus>) -> pb::Template {
    let spec = &template.spec;
    pb::Template {
        name: template.name.clone(),
        version: template.version,
        id: template.id.clone(),
        spec: Some(pb::TemplateSpec {
            provider: spec.provider.clone().unwrap_or_default(),
            image: spec.image.clone().unwrap_or_default(),
            resources: spec.resources.is_limited().then(|| pb::Resources {
                cpu_millis: as_i64(spec.resources.cpu_millis),
                memory_bytes: as_i64(spec.resources.memory_bytes),
                pids: as_i64(spec.resources.pids),
            }),
            env: Default::default(),
            workdir: spec.workdir.clone().unwrap_or_default(),
            network: match spec.network {
                None => pb::NetworkMode::Unspecified,
                Some(NetworkMode::Egress) => pb::NetworkMode::Egress,
                Some(NetworkMode::Bridge) => pb::NetworkMode::Bridge,
                Some(NetworkMode::None) => pb::NetworkMode::None,
                Some(NetworkMode::AllowList) => pb::NetworkMode::AllowList,
            } as i32,
            allowed_hosts: spec.allowed_hosts.clone(),
            volumes: spec
                .volumes
                .iter()
                .map(|volume| pb::Volume {
                    name: volume.name.clone(),
                    mount_path: volume.mount_path.clone(),
                    read_only: volume.read_only,
                })
                .collect(),
            setup_command: spec.setup_command.clone().unwrap_or_default(),
            read_only_root: spec.read_only_root,
            runtime: spec.runtime.clone().unwrap_or_default(),
            warm_pool_size: spec.warm_pool_size,
        }),
        env_keys: spec.env.keys().cloned().collect(),
        source: template.source.clone(),
        create_time: Some(timestamp(template.created_at)),
        warm_pool: pool.map(|pool| pb::WarmPool {
            ready: pool.ready,
            starting: pool.starting,
            hits: pool.hits,
            misses: pool.misses,
            last_refill_duration: pool.last_refill.map(duration_to_pb),
            failures: pool.failures,
            last_failure: pool.last_failure.clone().unwrap_or_default(),
        }),
    }
}
