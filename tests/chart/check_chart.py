"""Checks charts/paddock with Helm's own library and the Kubernetes schemas.

Run by tests/chart.rs with the interpreter of .tools/chart-venv
(helm-python-sdk, kubernetes-validate, PyYAML). Exits non-zero, saying
why, on the first check that fails; prints one line per check passed.
"""

import base64
import json
import os
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml
from helm_python.chart import Chart, lint
from helm_python.errors import HelmError

CHART = Path(sys.argv[1])
KUBERNETES = "1.30.0"
VALUE_SETS = {
    "default": {},
    "postgres-3-replicas": yaml.safe_load((CHART / "ci/postgres-3-replicas.yaml").read_text()),
    "kubernetes-provider": yaml.safe_load((CHART / "ci/kubernetes-provider.yaml").read_text()),
}
# Kinds whose schema is a CRD's, not Kubernetes's own.
CUSTOM_KINDS = {"ServiceMonitor"}


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}")
        sys.exit(1)


def render(values):
    manifests = Chart.load(CHART).render(values, name="paddock", namespace="paddock")
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith(".yaml"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    check(len(found) == 1, f"one {kind}, found {len(found)}")
    return found[0]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


report = lint(CHART, strict=True, kube_version=f"v{KUBERNETES}")
serious = [m for m in report["messages"] if m["severity"] >= 2]
check(not report["errors"] and not serious, f"helm lint --strict: {report}")
print("lint: clean (strict)")

rendered = {}
for name, values in VALUE_SETS.items():
    objects = render(values)
    rendered[name] = objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            check(False, f"{name}: {obj['kind']} {obj['metadata']['name']}: {error.message}")
        labels = obj["metadata"].get("labels", {})
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                      "app.kubernetes.io/version", "app.kubernetes.io/managed-by"):
            check(label in labels, f"{name}: {obj['kind']} lacks the label {label}")
    kinds = sorted(o["kind"] for o in objects)
    print(f"{name}: rendered and valid against Kubernetes {KUBERNETES}: {', '.join(kinds)}")

# The default: one replica on SQLite with its volume.
default = rendered["default"]
deployment = one(default, "Deployment")
pod = deployment["spec"]["template"]["spec"]
server = pod["containers"][0]
check(deployment["spec"]["replicas"] == 1, "one replica by default")
check(deployment["spec"]["strategy"]["type"] == "Recreate", "SQLite's one server is replaced, not rolled")
check(one(default, "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"] == "1Gi",
      "a 1Gi volume for SQLite")
check(pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001,
      f"pod security context: {pod['securityContext']}")
check(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "seccomp RuntimeDefault")
check(server["securityContext"] == {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}, f"container security context: {server['securityContext']}")
check(pod["automountServiceAccountToken"] is False, "no API token without the Kubernetes provider")
ports = {p["name"]: p["containerPort"] for p in server["ports"]}
check(ports == {"grpc": 50051, "metrics": 9090}, f"ports: {ports}")
check(server["startupProbe"]["grpc"]["port"] == 50051, "a native gRPC startup probe")
check(server["livenessProbe"]["grpc"]["port"] == 50051, "a native gRPC liveness probe")
check(server["readinessProbe"]["grpc"] == {"port": 50051, "service": "paddock.v1.SandboxService"},
      f"readiness probe: {server['readinessProbe']}")
env = env_of(server)
check(env["PADDOCK_METRICS_LISTEN"]["value"] == "0.0.0.0:9090", "metrics on 9090")
check("PADDOCK_DATABASE_URL" not in env, "no database URL for SQLite")
check(env["PADDOCK_BOOTSTRAP_API_KEY"]["valueFrom"]["secretKeyRef"] == {
    "name": "paddock-bootstrap-key", "key": "api-key"}, "the bootstrap key from its Secret")
bootstrap = [o for o in default if o["kind"] == "Secret" and o["metadata"]["name"] == "paddock-bootstrap-key"]
check(len(bootstrap) == 1, "the chart makes the bootstrap key's Secret")
key = base64.b64decode(bootstrap[0]["data"]["api-key"]).decode()
check(re.fullmatch(r"pdk_[0-9a-f]{64}", key) is not None, f"a well-formed bootstrap key: {key[:8]}...")
service = one(default, "Service")
service_ports = {p["name"]: (p["port"], p.get("appProtocol")) for p in service["spec"]["ports"]}
check(service_ports == {"grpc": (50051, "grpc"), "metrics": (9090, "http")}, f"service: {service_ports}")
policy = one(default, "NetworkPolicy")
check(policy["spec"]["policyTypes"] == ["Ingress"], "the server's NetworkPolicy governs ingress")
check(not [o for o in default if o["kind"] in ("Role", "RoleBinding", "PodDisruptionBudget")],
      "no RBAC or PDB by default")
print("default: one SQLite replica, probes, ports, security context as the README says")

# Postgres and three replicas.
shared = rendered["postgres-3-replicas"]
deployment = one(shared, "Deployment")
pod = deployment["spec"]["template"]["spec"]
env = env_of(pod["containers"][0])
check(deployment["spec"]["replicas"] == 3, "three replicas")
check(env["PADDOCK_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
    "name": "paddock-database", "key": "database-url"}, f"database URL from the Secret: {env}")
database = [o for o in shared if o["kind"] == "Secret" and o["metadata"]["name"] == "paddock-database"]
check(len(database) == 1 and database[0]["stringData"]["database-url"].startswith("postgres://"),
      "the URL's Secret")
check(not [o for o in shared if o["kind"] == "PersistentVolumeClaim"], "no volume with Postgres")
check(one(shared, "PodDisruptionBudget")["spec"]["minAvailable"] == 1, "a PDB for replicas")
check(pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname", "replicas spread")
check(env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"].startswith("http://"), "OTLP endpoint as env")
check(one(shared, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics", "a ServiceMonitor")
check(env["PADDOCK_PREVIEW_LISTEN"]["value"] == "0.0.0.0:8080", "the preview proxy on 8080")
check(env["PADDOCK_PREVIEW_DOMAIN"]["value"] == "https://preview.example.com", "the preview domain")
shared_ports = {p["name"]: p["port"] for p in one(shared, "Service")["spec"]["ports"]}
check(shared_ports.get("preview") == 8080, f"the Service's preview port: {shared_ports}")
check({p["name"] for p in pod["containers"][0]["ports"]} == {"grpc", "metrics", "preview"},
      "the container's preview port")
print("postgres-3-replicas: Secret, no volume, PDB, spread, ServiceMonitor, OTLP env, previews")

# The Kubernetes provider's RBAC and TLS.
k8s = rendered["kubernetes-provider"]
role = one(k8s, "Role")
check(role["metadata"]["namespace"] == "paddock-sandboxes", "the Role is in the sandbox namespace")
rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
# Exactly the access the provider uses (its API_ACCESS, which the test API
# server also enforces), handed over by tests/chart.rs.
used = {((r["group"],), (r["resource"],)): set(r["verbs"]) for r in json.loads(os.environ["PADDOCK_PROVIDER_API_ACCESS"])}
check(rules == used, f"the Role grants {rules}, the provider uses {used}")
pod_env = env_of(one(k8s, "Deployment")["spec"]["template"]["spec"]["containers"][0])
check(pod_env["PADDOCK_KUBE_NAMESPACE"]["value"] == "paddock-sandboxes", "the provider's namespace")
check(pod_env["PADDOCK_KUBE_AGENT_IMAGE"]["value"].startswith("paddock:"), "the agent from the chart's image")
binding = one(k8s, "RoleBinding")
check(binding["subjects"] == [{"kind": "ServiceAccount", "name": "paddock", "namespace": "paddock"}],
      f"binding: {binding['subjects']}")
pod = one(k8s, "Deployment")["spec"]["template"]["spec"]
check(pod["automountServiceAccountToken"] is True, "the provider gets its token")
server = pod["containers"][0]
check(server["readinessProbe"]["tcpSocket"]["port"] == "grpc", "with TLS the port is probed")
env = env_of(server)
check(env["PADDOCK_TLS_CERT"]["value"] == "/etc/paddock/tls/tls.crt", "TLS from the Secret")
print("kubernetes-provider: Role in the sandbox namespace with exactly the provider's rules, TLS")

# Bad values are refused, saying why.
BAD = [
    ({"replicaCount": 3}, "replicaCount is 3, but state is in SQLite"),
    ({"replicaCount": 2, "database": {"url": ""}}, "set database.url (postgres://...) or database.existingSecret"),
    ({"replicaCount": -1}, "replicaCount"),
    ({"database": {"url": "mysql://db/paddock"}}, "database.url must be a Postgres URL"),
    ({"tls": {"enabled": True}}, "tls.enabled needs tls.secretName"),
]
for values, expected in BAD:
    chart = Chart.load(CHART)
    try:
        chart.validate_schema(values)
        render(values)
    except HelmError as error:
        message = str(error)
        check(expected in message, f"{values}: refused with {message!r}, not naming {expected!r}")
        print(f"refused {values}: {message.splitlines()[-1][:160]}")
        continue
    check(False, f"{values} was accepted")
print("all chart checks passed")
