//! The test API server (tests/kube_api/server.py): a TEST DOUBLE of the
//! Kubernetes API for the kubernetes provider, since no API server can run
//! here. It backs pods with containers on the test Docker engine, validates
//! every object against the Kubernetes 1.30 and 1.35 schemas, and refuses
//! requests outside the provider's API_ACCESS.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The doubles of running test servers, by kubeconfig.
static DOUBLES: std::sync::Mutex<Vec<KubeApi>> = std::sync::Mutex::new(Vec::new());

/// Whether the kubernetes provider's tests can run here: Docker, the chart
/// tools' Python and the Paddock image (outside CI; under CI=true a missing
/// part fails).
pub fn available() -> bool {
    super::docker::available()
        && super::program_from("PADDOCK_TEST_CHART_PYTHON").is_some()
        && super::program_from("PADDOCK_TEST_IMAGE").is_some()
}

/// Points a test server's kubernetes provider at a new double, kept until
/// [`release`].
pub fn configure(args: &mut paddock::config::ServeArgs) {
    let api = KubeApi::start().expect("the test API server's parts are here");
    args.kube.kube_config = Some(api.kubeconfig.clone());
    args.kube.kube_agent_image = Some(api.agent_image.clone());
    args.kube.kube_default_image = Some(super::docker::BUSYBOX.into());
    DOUBLES.lock().unwrap().push(api);
}

/// Stops the double `kubeconfig` names, removing its containers.
pub fn release(kubeconfig: &std::path::Path) {
    let mut doubles = DOUBLES.lock().unwrap();
    doubles.retain(|api| api.kubeconfig != kubeconfig);
}

/// The double of the test server started with `args`.
pub fn with_double<T>(args_kubeconfig: &std::path::Path, f: impl FnOnce(&KubeApi) -> T) -> T {
    let doubles = DOUBLES.lock().unwrap();
    let api = doubles
        .iter()
        .find(|api| api.kubeconfig == args_kubeconfig)
        .expect("the server's double runs");
    f(api)
}

/// Settings of a kubernetes provider opened straight on the double
/// `kubeconfig` names, its objects under `scope`, the agent from
/// `agent_image`.
pub fn settings(
    kubeconfig: PathBuf,
    scope: &str,
    agent_image: &str,
) -> paddock::provider::KubernetesSettings {
    paddock::provider::KubernetesSettings {
        kubeconfig: Some(kubeconfig),
        context: None,
        namespace: String::new(),
        agent_image: agent_image.to_owned(),
        default_image: Some(super::docker::BUSYBOX.into()),
        agent: paddock::provider::AgentLaunch {
            binary: "/unused".into(),
            max_commands: 16,
            output_budget: 8 << 20,
        },
        scope: scope.to_owned(),
        workspace_size: "1Gi".into(),
        volume_size: "1Gi".into(),
        storage_class: None,
        runtime_class: None,
        runtime_classes: Vec::new(),
        node_selector: Default::default(),
        tolerations: Vec::new(),
        egress_blocked: paddock::sandbox::network::Ipv4Cidr::default_egress_blocked(),
    }
}

/// The namespace sandboxes go to in the double.
pub const NAMESPACE: &str = "sandboxes";

/// A running test API server and a kubeconfig that reaches it.
pub struct KubeApi {
    child: Child,
    /// The kubeconfig file naming it, its namespace [`NAMESPACE`].
    pub kubeconfig: PathBuf,
    /// The Paddock image the provider copies the agent from.
    pub agent_image: String,
    /// The label of every container the double makes.
    pub label: String,
    /// Where it listens, HOST:PORT.
    address: String,
    _dir: tempfile::TempDir,
}

impl KubeApi {
    /// Starts a double; `None` when its parts are not set up here (outside
    /// CI; under CI=true that fails).
    pub fn start() -> Option<Self> {
        Self::speaking("v5.channel.k8s.io,v4.channel.k8s.io")
    }

    /// Starts a double whose exec subresource speaks only `protocols`
    /// (comma-separated), as an older API server does.
    pub fn speaking(protocols: &str) -> Option<Self> {
        if !super::docker::available() {
            return None;
        }
        let python = super::program_from("PADDOCK_TEST_CHART_PYTHON")?;
        let agent_image = super::program_from("PADDOCK_TEST_IMAGE")?
            .display()
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        let rbac: Vec<serde_json::Value> = paddock::provider::API_ACCESS
            .iter()
            .map(|rule| {
                serde_json::json!({
                    "group": rule.group,
                    "resource": rule.resource,
                    "verbs": rule.verbs,
                })
            })
            .collect();
        let label = format!("io.paddock.kube-double-{}", uuid::Uuid::now_v7().simple());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kube_api/server.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(dir.path().join("state"))
            .arg(serde_json::to_string(&rbac).unwrap())
            .arg(&label)
            .arg(protocols)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the test API server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the test API server says {line:?}"));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    \
                 server: http://127.0.0.1:{port}\nusers:\n- name: tests\n  user: {{}}\n\
                 contexts:\n- name: double\n  context:\n    cluster: double\n    user: tests\n    \
                 namespace: {NAMESPACE}\ncurrent-context: double\n"
            ),
        )
        .unwrap();
        Some(Self {
            child,
            kubeconfig,
            agent_image,
            label,
            address: format!("127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    /// The Docker container backing the running pod of `sandbox_id`.
    pub fn container_of(&self, sandbox_id: &str) -> String {
        let pod = format!("{NAMESPACE}.paddock-{}", sandbox_id.replace('_', "-"));
        let out = Command::new("docker")
            .args(["ps", "-q", "--filter"])
            .arg(format!("label={}.pod={pod}", self.label))
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(!id.is_empty(), "a running container backs pod {pod}");
        id
    }

    /// Sends `method path` to the double as kubectl would; its status code
    /// and body.
    pub fn request(&self, method: &str, path: &str) -> (u16, String) {
        self.send(method, path, "")
    }

    /// POSTs the JSON `body` to `path`; the status code and answer.
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.send("POST", path, body)
    }

    fn send(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let server = &self.address;
        let mut stream = std::net::TcpStream::connect(server).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {server}\r\nContent-Length: {}\r\n\
             Content-Type: application/json\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let code = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: {answer}"));
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
        (code, body.unwrap_or_default())
    }

    /// Deletes the object at `path`, as `kubectl delete` would.
    pub fn delete(&self, path: &str) {
        let (code, body) = self.request("DELETE", path);
        assert_eq!(code, 200, "DELETE {path}: {body}");
    }

    /// Whether sandbox `sandbox_id`'s objects are complete (its Secret
    /// exists).
    pub fn sandbox_exists(&self, sandbox_id: &str) -> bool {
        let name = format!("paddock-{}", sandbox_id.replace('_', "-"));
        let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/{name}");
        match self.request("GET", &path) {
            (200, _) => true,
            (404, _) => false,
            (code, body) => panic!("GET {path}: {code} {body}"),
        }
    }
}

impl KubeApi {
    /// Whether a PersistentVolumeClaim of the namespace holds the volume
    /// whose provider object is `object` (`paddock-vol_…`, in its
    /// annotation).
    pub fn volume_claim_exists(&self, object: &str) -> bool {
        let path = format!("/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims");
        let (code, body) = self.request("GET", &path);
        assert_eq!(code, 200, "GET {path}: {body}");
        body.contains(object)
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        // SIGTERM: the double removes its containers before it exits.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
