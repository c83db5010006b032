"""deploy/kubernetes/ describes the service the Dockerfile builds and app.config.Settings configures:
these tests validate the manifests against the Kubernetes schemas and fail when they drift apart
from the image or the code (a port, a user, a setting, a probe path...). No cluster is needed."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Match

from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = MANIFESTS / "kustomization.yaml"
MANIFEST_FILES = sorted(p for p in MANIFESTS.glob("*.y*ml") if p != KUSTOMIZATION)
KUBERNETES_VERSION = "1.30.0"
VALIDATOR_PIN = "kubernetes-validate==1.37.0"
SETTING_VARS = {name.upper(): name for name in Settings.model_fields}
UNITS = {"": 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}

Manifest = dict[str, Any]


def dockerfile_final_stage(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, args) of the last stage, continuations joined and comments dropped."""
    kept = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    lines = [line.strip() for line in re.sub(r"\s*\\\s*\n\s*", " ", kept).splitlines() if line.strip()]
    start = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return [(kw.upper(), args.strip()) for kw, _, args in (line.partition(" ") for line in lines[start + 1 :])]


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("2", "500m", "768Mi", "1G") as a number of cores or bytes."""
    match = re.fullmatch(r"([\d.]+)([a-zA-Z]*)", str(value))
    assert match and match[2] in UNITS, f"not a quantity: {value!r}"
    return float(match[1]) * UNITS[match[2]]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector (the only form these manifests use) picks these labels."""
    assert set(selector) == {"matchLabels"}, f"matchLabels only: {selector}"
    return bool(selector["matchLabels"]) and selector["matchLabels"].items() <= labels.items()


def serves_get(path: str) -> bool:
    """Whether the app answers GET `path`: asks its routes, as a request would (included routers too)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": b"", "headers": []}
    app = create_app(Settings(_env_file=None))  # no model is loaded: that happens in the lifespan
    return any(route.matches(scope)[0] == Match.FULL for route in app.routes)


@pytest.fixture(scope="module")
def image() -> dict[str, str]:
    """The final stage's EXPOSE, USER and ENV PORT: what the container actually offers."""
    final = dockerfile_final_stage((ROOT / "Dockerfile").read_text())
    (expose,) = [args for kw, args in final if kw == "EXPOSE"]
    user = [args for kw, args in final if kw == "USER"][-1]
    port = re.search(r"\bPORT=(\d+)", " ".join(args for kw, args in final if kw == "ENV"))
    assert port, "no ENV PORT in the Dockerfile's final stage"
    return {"expose": expose.split("/")[0], "user": user, "port": port[1]}


@pytest.fixture(scope="module")
def manifests() -> dict[str, Manifest]:
    """Every resource by kind; one of each kind is expected."""
    found: dict[str, Manifest] = {}
    for path in MANIFEST_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"a second {doc['kind']} in {path.name}"
            found[doc["kind"]] = doc
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(found)
    return found


@pytest.fixture(scope="module")
def pod(manifests: dict[str, Manifest]) -> Manifest:
    return manifests["Deployment"]["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod: Manifest) -> Manifest:
    (server,) = pod["spec"]["containers"]
    return server


@pytest.fixture(scope="module")
def config(manifests: dict[str, Manifest]) -> dict[str, str]:
    return manifests["ConfigMap"]["data"]


@pytest.fixture(scope="module")
def settings(config: dict[str, str]) -> Settings:
    """The Settings the container gets: the ConfigMap as environment variables, read by the app's own class."""
    with pytest.MonkeyPatch.context() as env:
        for var in SETTING_VARS:
            env.delenv(var, raising=False)
        for key, value in config.items():
            assert isinstance(value, str), f"{key}: ConfigMap values are strings, quote {value!r}"
            env.setenv(key, value)
        return Settings(_env_file=None)  # a bad value raises pydantic's ValidationError, naming the setting


def test_manifests_are_valid_kubernetes() -> None:
    """Strict schema validation catches typos kubectl would only report at apply time."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.fail(f"kubernetes-validate is missing: {sys.executable} -m pip install {VALIDATOR_PIN}")
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "--kubernetes-version", KUBERNETES_VERSION]
    done = subprocess.run([*command, *map(str, MANIFEST_FILES)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_kustomization_lists_every_manifest() -> None:
    """`kubectl apply -k` applies only what is listed: a forgotten file is silently left out."""
    listed = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFEST_FILES]


def test_image_is_the_one_compose_builds(container: Manifest) -> None:
    """One name for one image: `docker compose build` makes what the cluster runs."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (service,) = compose["services"].values()
    assert container["image"] == service["image"]
    images = yaml.safe_load(KUSTOMIZATION.read_text()).get("images", [])
    assert all(i["name"] == container["image"].split(":")[0] for i in images)


def test_container_port_is_the_images_and_the_setting(
    pod: Manifest, container: Manifest, settings: Settings, image: dict[str, str]
) -> None:
    """The server listens on PORT; the image EXPOSEs it; probes and the Service use the port's name."""
    (port,) = container["ports"]
    assert port["name"] == "http"
    assert str(port["containerPort"]) == image["expose"] == image["port"] == str(settings.port)
    scrape = pod["metadata"].get("annotations", {}).get("prometheus.io/port")
    assert scrape in (None, str(settings.port)), "Prometheus scrapes another port"


def test_probes_hit_the_apps_health_routes(container: Manifest) -> None:
    """Liveness on /health (the process serves), readiness on /ready (the model is warm)."""
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    paths = {kind: probe["path"] for kind, probe in probes.items()}
    assert paths == {"startup": "/health", "liveness": "/health", "readiness": "/ready"}
    for path in set(paths.values()):
        assert serves_get(path), f"the app has no GET {path}"
    assert {probe["port"] for probe in probes.values()} == {container["ports"][0]["name"]}


def test_runs_as_the_images_user_without_privileges(pod: Manifest, container: Manifest, image: dict[str, str]) -> None:
    """The image's numeric USER, so runAsNonRoot can check it; nothing to escalate to."""
    pod_security, security = pod["spec"]["securityContext"], container["securityContext"]
    uid, _, gid = image["user"].partition(":")
    assert pod_security["runAsNonRoot"] is True
    assert (str(pod_security["runAsUser"]), str(pod_security["runAsGroup"])) == (uid, gid or uid)
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_read_only_root_with_a_memory_tmp(pod: Manifest, container: Manifest) -> None:
    """Uploads over 1 MB spool to /tmp, the only writable path; in memory, and bounded."""
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"
    assert quantity(volume["emptyDir"]["sizeLimit"]) < quantity(container["resources"]["limits"]["memory"])


def test_configmap_keys_are_settings_and_values_parse(config: dict[str, str], settings: Settings) -> None:
    """A typo'd key is ignored by the service; a bad value stops it at start-up: both caught here."""
    assert set(config) <= set(SETTING_VARS), f"not Settings fields: {sorted(set(config) - set(SETTING_VARS))}"
    assert "API_KEY" not in config, "the API key belongs in the Secret, not the ConfigMap"
    assert settings.host == "0.0.0.0", "the probes and the Service reach the pod's IP, not loopback"


def test_env_from_the_configmap_and_an_optional_secret(container: Manifest, manifests: dict[str, Manifest]) -> None:
    """No Secret, no key: the pod must still start (a required one would keep it from starting)."""
    assert [source["configMapRef"]["name"] for source in container["envFrom"]] == [
        manifests["ConfigMap"]["metadata"]["name"]
    ]
    env = {e["name"]: e for e in container.get("env", [])}
    assert set(env) <= set(SETTING_VARS), "env entries are settings too"
    assert env["API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_resources_fit_the_thread_settings(container: Manifest, settings: Settings) -> None:
    """onnxruntime runs INTRA_OP_THREADS threads per inference: fewer CPUs throttle every image."""
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert settings.intra_op_threads > 0, "0 means every core of the node, which a CPU limit cannot match"
    assert quantity(limits["cpu"]) >= quantity(requests["cpu"]) >= settings.intra_op_threads
    assert quantity(limits["memory"]) >= quantity(requests["memory"]) > 0


def test_grace_period_outlasts_the_prestop_sleep_and_the_drain(
    pod: Manifest, container: Manifest, settings: Settings
) -> None:
    """SIGKILL comes terminationGracePeriodSeconds after preStop starts: in-flight requests must finish."""
    hook = container["lifecycle"]["preStop"]
    sleep = hook["sleep"]["seconds"] if "sleep" in hook else int(hook["exec"]["command"][-1])
    assert sleep >= 2, "endpoint removal needs a few seconds to reach every proxy"
    assert pod["spec"]["terminationGracePeriodSeconds"] > settings.shutdown_timeout_s + sleep


def test_rolling_update_keeps_every_replica_serving(manifests: dict[str, Manifest], pod: Manifest) -> None:
    """A new pod first, an old one leaves once the new one is ready: capacity never drops."""
    spec = manifests["Deployment"]["spec"]
    assert spec["replicas"] >= 2
    assert selects(spec["selector"], pod["metadata"]["labels"])
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_service_targets_the_named_port(manifests: dict[str, Manifest], pod: Manifest, container: Manifest) -> None:
    """By name, so a PORT change needs one edit in the Deployment, not two."""
    spec = manifests["Service"]["spec"]
    assert spec.get("type", "ClusterIP") == "ClusterIP"
    assert spec["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = spec["ports"]
    assert port["port"] == 80 and port["targetPort"] == container["ports"][0]["name"]


def test_autoscaler_and_disruption_budget_cover_the_deployment(manifests: dict[str, Manifest], pod: Manifest) -> None:
    """A wrong name or selector leaves them silently idle: no scaling, no protection from drains."""
    deployment, hpa = manifests["Deployment"], manifests["HorizontalPodAutoscaler"]
    pdb = manifests["PodDisruptionBudget"]
    assert hpa["apiVersion"] == "autoscaling/v2" and pdb["apiVersion"] == "policy/v1"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert pdb["spec"]["minAvailable"] == 1
    assert selects(pdb["spec"]["selector"], pod["metadata"]["labels"])


def test_helpers_can_tell_good_from_bad() -> None:
    """The parsers above reject what they should, so the tests built on them can fail."""
    assert quantity("500m") == 0.5 and quantity("1Gi") == 2**30 and quantity(2) == 2
    with pytest.raises(AssertionError):
        quantity("2 cores")
    assert not selects({"matchLabels": {"app": "x"}}, {"app": "y"})
    assert serves_get("/health") and not serves_get("/no-such-path") and not serves_get("/segment")  # POST only
    assert dockerfile_final_stage("FROM a AS b\nUSER 1\nFROM c\nRUN x \\\n  # note\n  y\n") == [("RUN", "x y")]
