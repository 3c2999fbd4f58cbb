//! Templates: made, versioned, listed and removed per tenant; built from a
//! Dockerfile or captured from a sandbox by its provider; and applied to
//! the creates that name them.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tracing::{info, instrument, warn};

use super::rules::parse_template_reference;
use super::template::{TemplateRecord, TemplateSpec, spec_of_snapshot, template_image};
use super::{CreateSandbox, Manager, SandboxState};
use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::ids;
use crate::provider::{BuildContext, ImageBuild, Provider};
use crate::store::TemplateRemoval;

/// The most sandboxes one tenant's templates keep warm together.
pub const MAX_WARM_PER_TENANT: u64 = 50;

/// What a build makes: the template, its Dockerfile and `ARG` values, and
/// the new version's spec when the caller gives one.
#[derive(Debug, Clone, Default)]
pub struct TemplateBuild {
    /// The template to make, or to give a new version.
    pub name: String,
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    /// `ARG` values.
    pub build_args: HashMap<String, String>,
    /// The new version's spec; `None` keeps the last version's (or an
    /// empty one for a new template).
    pub spec: Option<TemplateSpec>,
}

impl Manager {
    /// Makes version 1 of the tenant's template `name`.
    #[instrument(name = "template.create", skip(self, spec))]
    pub async fn create_template(
        &self,
        tenant: &str,
        name: &str,
        spec: TemplateSpec,
    ) -> Result<TemplateRecord> {
        self.check_template_spec(tenant, name, &spec).await?;
        let record = TemplateRecord {
            id: ids::new_template_id(),
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            version: 1,
            spec,
            source: "create".to_owned(),
            owned_image: None,
            created_at: clock::now(),
        };
        self.store().insert_template(&record).await?;
        self.wake_warm_pools();
        info!(template_id = %record.id, "template made");
        Ok(record)
    }

    /// The tenant's template by reference: "NAME" (latest) or
    /// "NAME@VERSION".
    pub async fn get_template(&self, tenant: &str, reference: &str) -> Result<TemplateRecord> {
        let (name, version) = parse_template_reference(reference).ok_or_else(|| {
            Error::invalid_argument("name", format!("{reference:?} is not NAME or NAME@VERSION"))
        })?;
        self.store()
            .get_template(tenant, name, version)
            .await?
            .ok_or_else(|| match version {
                Some(version) => {
                    Error::not_found(format!("template {name:?} has no version {version}"))
                }
                None => Error::not_found(format!("there is no template named {name:?}")),
            })
    }

    /// The tenant's templates at their latest versions, by name.
    pub async fn list_templates(&self, tenant: &str) -> Result<Vec<TemplateRecord>> {
        self.store().list_templates(Some(tenant)).await
    }

    /// Makes a new version of the tenant's template `name` with `spec`.
    #[instrument(name = "template.update", skip(self, spec))]
    pub async fn update_template(
        &self,
        tenant: &str,
        name: &str,
        spec: TemplateSpec,
    ) -> Result<TemplateRecord> {
        self.check_template_spec(tenant, name, &spec).await?;
        let last = self.get_template(tenant, name).await?;
        self.next_version(last, spec, "update".to_owned(), None)
            .await
    }

    /// Removes the tenant's template `name`, every version, and the images
    /// its builds and snapshots made.
    #[instrument(name = "template.delete", skip(self))]
    pub async fn delete_template(&self, tenant: &str, name: &str, force: bool) -> Result<()> {
        let versions = match self.store().delete_template(tenant, name, force).await? {
            TemplateRemoval::Removed(versions) => versions,
            TemplateRemoval::Missing => {
                return Err(Error::not_found(format!(
                    "there is no template named {name:?}"
                )));
            }
            TemplateRemoval::InUse(users) => {
                return Err(Error::failed_precondition(format!(
                    "template {name:?} made {} sandbox{} not deleted: {}; delete {} first, or set \
                     force",
                    users.len(),
                    if users.len() == 1 { "" } else { "es" },
                    users.join(", "),
                    if users.len() == 1 { "it" } else { "them" }
                )));
            }
        };
        // Its pool goes before its images, which the pool's sandboxes use.
        if let Some(first) = versions.first() {
            self.drain_pool(tenant, &first.id).await?;
        }
        for version in &versions {
            let Some(image) = &version.owned_image else {
                continue;
            };
            let provider_name = version
                .spec
                .provider
                .clone()
                .unwrap_or_else(|| self.providers().default_name().to_owned());
            let Ok(provider) = self.providers().get(&provider_name) else {
                continue;
            };
            // A sandbox still using the image keeps it (forced deletes);
            // the image is then the engine's to keep.
            if let Err(error) = self
                .call("provider.remove_image", provider.remove_image(image))
                .await
            {
                warn!(%image, %error, "a deleted template's image stays");
            }
        }
        info!(versions = versions.len(), "template deleted");
        Ok(())
    }

    /// Builds an image from `context` on the provider of the template
    /// `build` names (sending the build's log lines to `log`) and makes it
    /// the image of a new version of that template, or of a new template.
    #[instrument(name = "template.build", skip_all, fields(template = %build.name))]
    pub async fn build_template(
        &self,
        tenant: &str,
        build: TemplateBuild,
        context: BuildContext,
        log: mpsc::Sender<String>,
    ) -> Result<TemplateRecord> {
        let last = self.store().get_template(tenant, &build.name, None).await?;
        let mut spec = build
            .spec
            .clone()
            .or_else(|| last.as_ref().map(|last| last.spec.clone()))
            .unwrap_or_default();
        self.check_template_spec(tenant, &build.name, &spec).await?;
        let provider_name = spec
            .provider
            .clone()
            .unwrap_or_else(|| self.providers().default_name().to_owned());
        let provider = self.providers().get(&provider_name)?.clone();
        if !provider.capabilities().template_builds {
            return Err(Error::failed_precondition(format!(
                "provider {provider_name} cannot build templates (see its `template_builds` \
                 capability in ListProviders)"
            )));
        }
        let (id, version) = version_after(last.as_ref());
        let image = template_image(&id, version);
        // A build takes as long as its Dockerfile asks: no provider-call
        // deadline, as for pulls.
        provider
            .build_image(
                ImageBuild {
                    tag: image.clone(),
                    dockerfile: build.dockerfile.clone(),
                    build_args: build.build_args.clone(),
                },
                context,
                log,
            )
            .await?;
        spec.image = Some(image.clone());
        spec.provider = Some(provider_name);
        let record = TemplateRecord {
            id,
            tenant: tenant.to_owned(),
            name: build.name.clone(),
            version,
            spec,
            source: "build".to_owned(),
            owned_image: Some(image.clone()),
            created_at: clock::now(),
        };
        let record = keep_version_with_image(self, provider.as_ref(), record).await?;
        info!(template_id = %record.id, version, "template built");
        Ok(record)
    }

    /// Captures sandbox `id`'s filesystem as the image of a new version of
    /// the tenant's template `name` (or of a new template).
    #[instrument(name = "sandbox.snapshot", skip(self))]
    pub async fn snapshot(&self, tenant: &str, id: &str, name: &str) -> Result<TemplateRecord> {
        let sandbox = self.get(tenant, id).await?;
        if !matches!(sandbox.state, SandboxState::Running | SandboxState::Stopped) {
            return Err(Error::failed_precondition(format!(
                "sandbox {id} is {}; only a RUNNING or STOPPED sandbox can be captured",
                sandbox.state.as_str()
            )));
        }
        if sandbox.spec.read_only_root {
            return Err(Error::failed_precondition(format!(
                "sandbox {id} has a read-only root: its workdir is a volume, which a snapshot \
                 cannot capture"
            )));
        }
        let provider = self.providers().get(&sandbox.provider)?.clone();
        if !provider.capabilities().snapshots {
            return Err(Error::failed_precondition(format!(
                "provider {} cannot capture a sandbox's filesystem (see its `snapshots` \
                 capability in ListProviders)",
                sandbox.provider
            )));
        }
        let last = self.store().get_template(tenant, name, None).await?;
        let (template_id, version) = version_after(last.as_ref());
        let image = template_image(&template_id, version);
        self.call("provider.snapshot", provider.snapshot(id, &image))
            .await?;
        let mut spec = spec_of_snapshot(&sandbox.spec, &image, &sandbox.provider);
        if let Some(last) = &last {
            // A new version of an existing template keeps its setup and its
            // warm pool (which the refill then makes of the snapshot).
            spec.setup_command.clone_from(&last.spec.setup_command);
            spec.warm_pool_size = last.spec.warm_pool_size;
        }
        let record = TemplateRecord {
            id: template_id,
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            version,
            spec,
            source: format!("snapshot of {id}"),
            owned_image: Some(image.clone()),
            created_at: clock::now(),
        };
        let record = keep_version_with_image(self, provider.as_ref(), record).await?;
        info!(template_id = %record.id, version, "sandbox captured");
        Ok(record)
    }

    /// Fills a create request in from the template it names, if any, and
    /// returns that template.
    pub(super) async fn apply_template(
        &self,
        tenant: &str,
        request: &mut CreateSandbox,
    ) -> Result<Option<TemplateRecord>> {
        let Some(reference) = request.template.clone() else {
            return Ok(None);
        };
        let template = self.get_template(tenant, &reference).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::not_found(format!("template: {}", e.message()))
            } else {
                e
            }
        })?;
        request.apply_template(&template);
        Ok(Some(template))
    }

    async fn next_version(
        &self,
        last: TemplateRecord,
        spec: TemplateSpec,
        source: String,
        owned_image: Option<String>,
    ) -> Result<TemplateRecord> {
        let record = TemplateRecord {
            version: last.version + 1,
            spec,
            source,
            owned_image,
            created_at: clock::now(),
            ..last
        };
        self.store()
            .insert_template(&record)
            .await
            .map_err(changed_meanwhile)?;
        self.wake_warm_pools();
        info!(template_id = %record.id, version = record.version, "template version made");
        Ok(record)
    }

    /// Checks what template `name` asks for against the tenant's quotas and
    /// the providers this server has. Its warm pool and the tenant's other
    /// templates' pools together keep at most [`MAX_WARM_PER_TENANT`]
    /// sandboxes, and no more than the tenant's quota of running sandboxes:
    /// pooled sandboxes run outside that quota until claimed.
    async fn check_template_spec(
        &self,
        tenant: &str,
        name: &str,
        spec: &TemplateSpec,
    ) -> Result<()> {
        if let Some(provider) = &spec.provider {
            self.providers().get(provider)?;
        }
        self.config()
            .quotas
            .check_resources(tenant, &spec.resources)?;
        self.config()
            .quotas
            .check_allowed_hosts(tenant, &spec.allowed_hosts)?;
        if spec.warm_pool_size == 0 {
            return Ok(());
        }
        let others: u64 = self
            .store()
            .list_templates(Some(tenant))
            .await?
            .iter()
            .filter(|template| template.name != name)
            .map(|template| u64::from(template.spec.warm_pool_size))
            .sum();
        let limit = self
            .quota(tenant)
            .running_sandboxes
            .map_or(MAX_WARM_PER_TENANT, |quota| quota.min(MAX_WARM_PER_TENANT));
        let wanted = others + u64::from(spec.warm_pool_size);
        if wanted > limit {
            return Err(Error::resource_exhausted(format!(
                "spec.warm_pool_size: tenant {tenant}'s templates would keep {wanted} sandboxes \
                 warm ({others} for its other templates); at most {limit} may be (the smaller of \
                 {MAX_WARM_PER_TENANT} and its quota of running sandboxes)"
            )));
        }
        Ok(())
    }
}

/// The id and number of the version after `last`: 1 of a new template
/// when there is none.
fn version_after(last: Option<&TemplateRecord>) -> (String, i64) {
    match last {
        Some(last) => (last.id.clone(), last.version + 1),
        None => (ids::new_template_id(), 1),
    }
}

/// Writes `record`, a version whose image a build or a snapshot just made;
/// when another change took that version first, the image is no
/// template's and goes.
async fn keep_version_with_image(
    manager: &Manager,
    provider: &dyn Provider,
    record: TemplateRecord,
) -> Result<TemplateRecord> {
    if let Err(error) = manager.store().insert_template(&record).await {
        if let Some(image) = &record.owned_image
            && let Err(cleanup) = provider.remove_image(image).await
        {
            warn!(%image, error = %cleanup, "an image no template owns stays");
        }
        return Err(changed_meanwhile(error));
    }
    Ok(record)
}

/// A version conflict said as such: another change made that version first.
fn changed_meanwhile(error: Error) -> Error {
    if error.kind() == ErrorKind::AlreadyExists {
        Error::new(
            ErrorKind::Aborted,
            format!("{}; try again", error.message()),
        )
    } else {
        error
    }
}
