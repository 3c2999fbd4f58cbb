//! Providers make and run the objects behind sandboxes: a directory, a
//! container, a pod. The domain drives them through [`Provider`]
//! (contract.rs); they never see the store. This file only names the parts:
//! the providers depend on the contract, never on each other or on this
//! hub.

mod agent_process;
mod contract;
mod docker;
mod kubernetes;
mod layout;
mod proc_usage;
mod process;
mod registry;

pub use contract::{
    AgentLaunch, BuildContext, Capabilities, ImageBuild, NetworkBytes, Observation, Observed,
    Provider, ProviderInfo, ProvisionRequest, Usage,
};
pub use docker::{AgentTransport, DockerProvider, DockerSettings};
pub use kubernetes::{API_ACCESS, ApiAccess, KubernetesProvider, KubernetesSettings};
pub use process::ProcessProvider;
pub use registry::Providers;
