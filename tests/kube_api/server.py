"""A TEST DOUBLE of the Kubernetes API server, for Paddock's tests only.

No Kubernetes API server can run on the machines these tests run on, so this
serves the subset of the API the kubernetes provider uses, over plain HTTP on
loopback:

- pods (create, get, list, watch, delete, and the exec subresource over
  WebSocket with the real channel protocols v5.channel.k8s.io and
  v4.channel.k8s.io), secrets, persistentvolumeclaims (core v1) and
  networkpolicies (networking.k8s.io/v1), with label selectors, resource
  versions, dry runs and watch streams;
- a small kubelet that backs each pod with real containers on the local
  Docker engine: init containers run to completion first, then the pod's
  container, with its volume mounts (emptyDir and claims as host
  directories, subPath included), environment (Secret references resolved),
  limits and securityContext; container exits, OOM kills and missing images
  show in the pod's status as a kubelet reports them.

Every object a client sends is validated against the Kubernetes OpenAPI
schemas of 1.30 and 1.35 (kubernetes-validate, strict: unknown fields fail),
and refused with 422 Invalid as an API server would. Every request is checked
against the RBAC rules given on the command line (the provider's API_ACCESS)
and refused with 403 outside them.

What it does not do: scheduling, networking (pods run with no network, so
NetworkPolicies are stored and validated, not enforced), admission beyond
RuntimeClass, quotas, graceful deletion's finalizers, authentication.

Usage: server.py STATE_DIR RBAC_JSON LABEL [EXEC_PROTOCOLS] — the exec
protocols it speaks, comma-separated, default v5.channel.k8s.io,v4.channel.k8s.io
(an older API server speaks v4 only); prints "listening PORT" when
ready; SIGTERM removes every container it made (all labelled LABEL).
"""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

VERSIONS = ("1.30.0", "1.35.0")
STATE = sys.argv[1]
RBAC = json.loads(sys.argv[2])
LABEL = sys.argv[3]
EXEC_PROTOCOLS = (sys.argv[4] if len(sys.argv) > 4 else "v5.channel.k8s.io,v4.channel.k8s.io").split(",")

RESOURCES = {
    # plural: (api prefix, kind, apiVersion)
    "pods": ("/api/v1", "Pod", "v1"),
    "secrets": ("/api/v1", "Secret", "v1"),
    "persistentvolumeclaims": ("/api/v1", "PersistentVolumeClaim", "v1"),
    "networkpolicies": ("/apis/networking.k8s.io/v1", "NetworkPolicy", "networking.k8s.io/v1"),
}
GROUPS = {"/api/v1": "", "/apis/networking.k8s.io/v1": "networking.k8s.io"}
PATH = re.compile(
    r"^(/api/v1|/apis/networking\.k8s\.io/v1)/namespaces/([a-z0-9-]+)/([a-z]+)"
    r"(?:/([a-z0-9.-]+))?(?:/(exec))?$"
)

lock = threading.Condition()
objects = {}  # (plural, namespace, name) -> object
history = []  # (resourceVersion, plural, namespace, type, object)
revision = [1]
containers = {}  # pod uid -> docker container id of its sandbox container
expired_before = [0]  # watches from an older resourceVersion get 410 Expired


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def docker(*args, check=True):
    done = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {args[0]}: {done.stderr.strip()}")
    return done


def status(code, reason, message):
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}


def record(plural, namespace, kind, obj):
    """Stores obj (or removes it for DELETED) with a new resourceVersion and
    tells watchers. Call with the lock held."""
    revision[0] += 1
    obj["metadata"]["resourceVersion"] = str(revision[0])
    key = (plural, namespace, obj["metadata"]["name"])
    if kind == "DELETED":
        objects.pop(key, None)
    else:
        objects[key] = obj
    history.append((revision[0], plural, namespace, kind, json.loads(json.dumps(obj))))
    lock.notify_all()


def selected(obj, selector):
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def parse_selector(text):
    selector = {}
    for term in filter(None, (text or "").split(",")):
        match = re.fullmatch(r"([A-Za-z0-9._/-]+)==?([A-Za-z0-9._-]*)", term)
        if not match:
            raise ValueError(f"unable to parse requirement: {term!r} (this test double knows k=v only)")
        selector[match.group(1)] = match.group(2)
    return selector


def validate(obj):
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            return f"{obj.get('kind')} {obj.get('metadata', {}).get('name')} is invalid against Kubernetes {version}: {path}: {error.message}"
    return None


def allowed(group, resource, verb):
    return any(rule["group"] == group and rule["resource"] == resource and verb in rule["verbs"]
               for rule in RBAC)


# ---- the kubelet ----------------------------------------------------------

def quantity(text):
    match = re.fullmatch(r"(\d+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", str(text))
    if not match:
        raise ValueError(f"bad quantity {text!r}")
    number, unit = int(match.group(1)), match.group(2) or ""
    if unit == "m":
        return number / 1000
    scale = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[unit]
    return number * scale


def set_status(pod, **changes):
    with lock:
        current = objects.get(("pods", pod["metadata"]["namespace"], pod["metadata"]["name"]))
        if current is None or current["metadata"]["uid"] != pod["metadata"]["uid"]:
            return False
        if current["metadata"].get("deletionTimestamp"):
            return False
        current["status"].update(changes)
        record("pods", pod["metadata"]["namespace"], "MODIFIED", current)
        return True


def container_args(pod, container, volumes):
    ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
    args = ["create", "--name", f"k8s-{name}-{container['name']}-{uid[:8]}",
            "--label", f"{LABEL}=1", "--label", f"{LABEL}.pod={ns}.{name}",
            "--network", "none", "--hostname", name[:63]]
    for env in container.get("env") or []:
        if "value" in env:
            args += ["-e", f"{env['name']}={env['value']}"]
            continue
        ref = env["valueFrom"]["secretKeyRef"]
        with lock:
            secret = objects.get(("secrets", ns, ref["name"]))
        if secret is None or ref["key"] not in (secret.get("data") or {}):
            raise LookupError(("CreateContainerConfigError",
                               f"secret \"{ref['name']}\" not found or has no key \"{ref['key']}\""))
        value = base64.b64decode(secret["data"][ref["key"]]).decode()
        args += ["-e", f"{env['name']}={value}"]
    if container.get("workingDir"):
        args += ["-w", container["workingDir"]]
    for mount in container.get("volumeMounts") or []:
        source = volumes[mount["name"]]
        if mount.get("subPath"):
            source = os.path.join(source, mount["subPath"])
            os.makedirs(source, exist_ok=True)
        args += ["-v", f"{source}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}"]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        memory = int(quantity(limits["memory"]))
        args += ["--memory", str(memory), "--memory-swap", str(memory)]
    if "cpu" in limits:
        args += ["--cpus", str(quantity(limits["cpu"]))]
    security = container.get("securityContext") or {}
    if "runAsUser" in security:
        args += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
    if security.get("readOnlyRootFilesystem"):
        args += ["--read-only"]
    if security.get("privileged"):
        args += ["--privileged"]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for cap in (security.get("capabilities") or {}).get("drop") or []:
        args += ["--cap-drop", cap]
    for cap in (security.get("capabilities") or {}).get("add") or []:
        args += ["--cap-add", cap]
    if pod["spec"].get("runtimeClassName"):
        args += ["--runtime", pod["spec"]["runtimeClassName"]]
    command = container.get("command") or []
    if command:
        args += ["--entrypoint", command[0]]
    args += [container["image"], *command[1:], *(container.get("args") or [])]
    return args


def pod_volumes(pod):
    ns, uid = pod["metadata"]["namespace"], pod["metadata"]["uid"]
    volumes = {}
    for volume in pod["spec"].get("volumes") or []:
        if "emptyDir" in volume:
            path = os.path.join(STATE, "pods", uid, volume["name"])
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            with lock:
                if ("persistentvolumeclaims", ns, claim) not in objects:
                    raise LookupError(("ContainerCreating", f"persistentvolumeclaim \"{claim}\" not found"))
            path = os.path.join(STATE, "claims", ns, claim)
            os.makedirs(path, exist_ok=True)
        else:
            raise LookupError(("CreateContainerConfigError", f"volume {volume['name']}: this test double knows emptyDir and persistentVolumeClaim only"))
        volumes[volume["name"]] = path
    return volumes


def waiting(container, reason, message):
    return {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}


def run_pod(pod):
    """Runs pod's containers as its kubelet would, reporting in its status."""
    spec = pod["spec"]
    main = spec["containers"][0]
    try:
        volumes = pod_volumes(pod)
        for init in spec.get("initContainers") or []:
            if not image_present(pod, init, "initContainerStatuses"):
                return
            created = docker(*container_args(pod, init, volumes)).stdout.strip()
            docker("start", created)
            code = int(docker("wait", created).stdout.strip() or "1")
            logs = docker("logs", "--tail", "5", created, check=False)
            docker("rm", "-f", created, check=False)
            state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                    "message": (logs.stderr or logs.stdout).strip()[-300:] or None,
                                    "startedAt": now(), "finishedAt": now()}}
            state["terminated"] = {k: v for k, v in state["terminated"].items() if v is not None}
            set_status(pod, initContainerStatuses=[{"name": init["name"], "image": init["image"], "imageID": "",
                                                     "ready": code == 0, "restartCount": 0, "state": state}])
            if code != 0:
                set_status(pod, phase="Failed")
                return
        if not image_present(pod, main, "containerStatuses"):
            return
        created = docker(*container_args(pod, main, volumes)).stdout.strip()
    except LookupError as problem:
        reason, message = problem.args[0]
        set_status(pod, containerStatuses=[waiting(main, reason, message)])
        return
    except RuntimeError as error:
        set_status(pod, containerStatuses=[waiting(main, "CreateContainerError", str(error))])
        return
    with lock:
        containers[pod["metadata"]["uid"]] = created
    started = docker("start", created, check=False)
    if started.returncode != 0:
        set_status(pod, phase="Failed", containerStatuses=[{
            "name": main["name"], "image": main["image"], "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": 128, "reason": "StartError", "message": started.stderr.strip()}}}])
        return
    running = {"name": main["name"], "image": main["image"], "imageID": "", "ready": True,
               "restartCount": 0, "containerID": f"docker://{created}", "started": True,
               "state": {"running": {"startedAt": now()}}}
    if not set_status(pod, phase="Running", podIP="", containerStatuses=[running],
                      conditions=[{"type": "Ready", "status": "True"}]):
        return
    code = int(docker("wait", created, check=False).stdout.strip() or "137")
    oom = docker("inspect", "-f", "{{.State.OOMKilled}}", created, check=False).stdout.strip() == "true"
    terminated = {"exitCode": code, "reason": "OOMKilled" if oom else ("Completed" if code == 0 else "Error"),
                  "startedAt": running["state"]["running"]["startedAt"], "finishedAt": now(),
                  "containerID": f"docker://{created}"}
    set_status(pod, phase="Succeeded" if code == 0 else "Failed",
               conditions=[{"type": "Ready", "status": "False"}],
               containerStatuses=[{**running, "ready": False, "state": {"terminated": terminated}}])


def image_present(pod, container, field):
    if docker("image", "inspect", container["image"], check=False).returncode == 0:
        return True
    set_status(pod, **{field: [waiting(container, "ErrImagePull",
                                       f"rpc error: code = NotFound desc = failed to pull and unpack image \"{container['image']}\": not found")]})
    return False


def remove_pod(pod, grace):
    uid = pod["metadata"]["uid"]
    with lock:
        container = containers.pop(uid, None)
    if container:
        if grace > 0:
            docker("stop", "-t", str(grace), container, check=False)
        docker("rm", "-f", container, check=False)
    shutil.rmtree(os.path.join(STATE, "pods", uid), ignore_errors=True)
    with lock:
        key = ("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        current = objects.get(key)
        if current is not None and current["metadata"]["uid"] == uid:
            record("pods", pod["metadata"]["namespace"], "DELETED", current)


# ---- WebSocket exec ---------------------------------------------------------

def ws_send(sock, send_lock, payload, opcode=0x2):
    header = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        header += bytes([n])
    elif n < 1 << 16:
        header += bytes([126]) + struct.pack(">H", n)
    else:
        header += bytes([127]) + struct.pack(">Q", n)
    with send_lock:
        sock.sendall(header + payload)


def read_exact(stream, n):
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def ws_frames(stream):
    while True:
        first, second = read_exact(stream, 2)
        opcode, n = first & 0x0F, second & 0x7F
        if n == 126:
            n = struct.unpack(">H", read_exact(stream, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", read_exact(stream, 8))[0]
        mask = read_exact(stream, 4) if second & 0x80 else None
        payload = read_exact(stream, n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        yield opcode, payload


# ---- HTTP ----------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, method):
        url = urlsplit(self.path)
        query = {k: v for k, v in parse_qs(url.query).items()}
        one = lambda key, default=None: query.get(key, [default])[0]
        if method == "POST" and url.path == "/test-double/expire-watches":
            # For tests: every open watch ends, and resuming from before now
            # is 410 Expired, as after an etcd compaction.
            with lock:
                expired_before[0] = revision[0] + 1
                lock.notify_all()
            return self.reply(200, {"expiredBefore": expired_before[0]})
        match = PATH.match(url.path)
        if not match or match.group(3) not in RESOURCES or RESOURCES[match.group(3)][0] != match.group(1):
            return self.reply(*status(404, "NotFound", f"the server could not find the requested resource ({method} {url.path})"))
        prefix, namespace, plural, name, sub = match.groups()
        group = GROUPS[prefix]
        if sub == "exec":
            if not name or plural != "pods":
                return self.reply(*status(404, "NotFound", "exec is a subresource of pods"))
            verb, resource = method.lower() if method == "GET" else "create", "pods/exec"
        elif method == "POST":
            verb, resource = "create", plural
        elif method == "DELETE":
            verb, resource = "delete", plural
        elif name:
            verb, resource = "get", plural
        else:
            verb, resource = ("watch" if one("watch") in ("1", "true") else "list"), plural
        if not allowed(group, resource, verb):
            return self.reply(*status(403, "Forbidden", f"{resource} is forbidden: cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{namespace}\" (not in the provider's API_ACCESS)"))
        try:
            selector = parse_selector(one("labelSelector"))
        except ValueError as error:
            return self.reply(*status(400, "BadRequest", str(error)))
        if sub == "exec":
            return self.exec(namespace, name, query)
        if verb == "create":
            return self.create(plural, namespace, one("dryRun") == "All")
        if verb == "delete":
            return self.delete(plural, namespace, name, query)
        if verb == "get":
            with lock:
                obj = objects.get((plural, namespace, name))
            if obj is None:
                return self.reply(*status(404, "NotFound", f"{plural} \"{name}\" not found"))
            return self.reply(200, obj)
        if verb == "list":
            with lock:
                items = [o for (p, ns, _), o in sorted(objects.items()) if p == plural and ns == namespace and selected(o, selector)]
                version = str(revision[0])
            kind = RESOURCES[plural][1]
            return self.reply(200, {"kind": f"{kind}List", "apiVersion": RESOURCES[plural][2],
                                    "metadata": {"resourceVersion": version}, "items": items})
        return self.watch(plural, namespace, selector, int(one("resourceVersion", "0") or 0),
                          int(one("timeoutSeconds", "60")))

    def create(self, plural, namespace, dry_run):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        kind, api_version = RESOURCES[plural][1], RESOURCES[plural][2]
        if body.get("kind") != kind or body.get("apiVersion") != api_version:
            return self.reply(*status(400, "BadRequest", f"expected {api_version} {kind}, got {body.get('apiVersion')} {body.get('kind')}"))
        meta = body.setdefault("metadata", {})
        if meta.get("namespace", namespace) != namespace:
            return self.reply(*status(400, "BadRequest", "the namespace of the object does not match the namespace of the request"))
        problem = validate(body)
        if problem:
            return self.reply(*status(422, "Invalid", problem))
        if plural == "pods" and body["spec"].get("runtimeClassName"):
            runtimes = docker("info", "--format", "{{json .Runtimes}}").stdout
            if body["spec"]["runtimeClassName"] not in json.loads(runtimes or "{}"):
                return self.reply(*status(403, "Forbidden", f"pod rejected: RuntimeClass \"{body['spec']['runtimeClassName']}\" not found"))
        if dry_run:
            return self.reply(201, body)
        with lock:
            if (plural, namespace, meta["name"]) in objects:
                return self.reply(*status(409, "AlreadyExists", f"{plural} \"{meta['name']}\" already exists"))
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now())
            if plural == "pods":
                body["status"] = {"phase": "Pending"}
            if plural == "persistentvolumeclaims":
                body["status"] = {"phase": "Bound"}
            record(plural, namespace, "ADDED", body)
            created = json.loads(json.dumps(body))
        if plural == "pods":
            threading.Thread(target=run_pod, args=(created,), daemon=True).start()
        self.reply(201, created)

    def delete(self, plural, namespace, name, query):
        if int(self.headers.get("Content-Length", 0) or 0):
            options = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        else:
            options = {}
        grace = options.get("gracePeriodSeconds", int(query.get("gracePeriodSeconds", ["30"])[0]))
        with lock:
            obj = objects.get((plural, namespace, name))
            if obj is None:
                return self.reply(*status(404, "NotFound", f"{plural} \"{name}\" not found"))
            if plural != "pods":
                record(plural, namespace, "DELETED", obj)
                if plural == "persistentvolumeclaims":
                    shutil.rmtree(os.path.join(STATE, "claims", namespace, name), ignore_errors=True)
                return self.reply(200, obj)
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = now()
                obj["metadata"]["deletionGracePeriodSeconds"] = grace
                record(plural, namespace, "MODIFIED", obj)
            pod = json.loads(json.dumps(obj))
        threading.Thread(target=remove_pod, args=(pod, grace), daemon=True).start()
        self.reply(200, pod)

    def watch(self, plural, namespace, selector, since, timeout):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.time() + min(timeout, 60)
        position = 0
        try:
            while time.time() < deadline:
                if since < expired_before[0]:
                    gone = status(410, "Expired", f"too old resource version: {since} ({expired_before[0]})")[1]
                    line = json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    break
                with lock:
                    while position < len(history) and history[position][0] <= since:
                        position += 1
                    pending = history[position:]
                    position = len(history)
                    if not pending:
                        lock.wait(timeout=max(0.0, min(1.0, deadline - time.time())))
                for version, p, ns, kind, obj in pending:
                    since = version
                    if p == plural and ns == namespace and selected(obj, selector):
                        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def exec(self, namespace, name, query):
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        protocol = next((p for p in EXEC_PROTOCOLS if p in offered), None)
        if self.headers.get("Upgrade", "").lower() != "websocket" or protocol is None:
            return self.reply(*status(400, "BadRequest", f"exec needs a WebSocket upgrade with one of {', '.join(EXEC_PROTOCOLS)}"))
        with lock:
            pod = objects.get(("pods", namespace, name))
            container = containers.get(pod["metadata"]["uid"]) if pod else None
        if pod is None:
            return self.reply(*status(404, "NotFound", f"pods \"{name}\" not found"))
        wanted = query.get("container", [pod["spec"]["containers"][0]["name"]])[0]
        if wanted != pod["spec"]["containers"][0]["name"]:
            return self.reply(*status(400, "BadRequest", f"container {wanted} is not valid for pod {name}"))
        if pod["status"].get("phase") != "Running" or container is None:
            return self.reply(*status(400, "BadRequest", f"unable to upgrade connection: container not found (\"{wanted}\")"))
        command = query.get("command", [])
        flag = lambda key: query.get(key, ["false"])[0] in ("1", "true")
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        sock, send_lock = self.connection, threading.Lock()
        process = subprocess.Popen(["docker", "exec", "-i", container, *command],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)

        def pump(stream, channel, wanted):
            while True:
                data = stream.read1(1 << 16) if hasattr(stream, "read1") else os.read(stream.fileno(), 1 << 16)
                if not data:
                    return
                if wanted:
                    try:
                        ws_send(sock, send_lock, bytes([channel]) + data)
                    except OSError:
                        return

        outputs = [threading.Thread(target=pump, args=(process.stdout, 1, flag("stdout")), daemon=True),
                   threading.Thread(target=pump, args=(process.stderr, 2, flag("stderr")), daemon=True)]
        for thread in outputs:
            thread.start()

        def feed():
            try:
                for opcode, payload in ws_frames(self.rfile):
                    if opcode == 0x8:
                        break
                    if opcode == 0x9:
                        ws_send(sock, send_lock, payload, opcode=0xA)
                    elif opcode == 0x2 and payload:
                        if payload[0] == 0:
                            process.stdin.write(payload[1:])
                        elif payload[0] == 255 and protocol.startswith("v5") and payload[1:2] == b"\x00":
                            process.stdin.close()
            except (EOFError, OSError, ValueError):
                pass
            try:
                process.stdin.close()
            except OSError:
                pass
            process.terminate()

        threading.Thread(target=feed, daemon=True).start()
        code = process.wait()
        for thread in outputs:
            thread.join()
        if code == 0:
            result = {"metadata": {}, "status": "Success"}
        else:
            result = {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: {code}",
                      "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        try:
            ws_send(sock, send_lock, bytes([3]) + json.dumps(result).encode())
            ws_send(sock, send_lock, struct.pack(">H", 1000), opcode=0x8)
        except OSError:
            pass

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")


def clean_up(*_):
    listed = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if listed:
        docker("rm", "-f", *listed, check=False)
    shutil.rmtree(STATE, ignore_errors=True)
    os._exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, clean_up)
    signal.signal(signal.SIGINT, clean_up)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
