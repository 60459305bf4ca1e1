"""The Helm chart in helm/breakwater, rendered by Helm's own engine and checked object by object.

Every variant (the default values and each ci/*-values.yaml) is linted and rendered with
helm-python-sdk (the Helm v4 SDK as a library: no helm binary, no cluster, no network), and every
rendered object is validated against the Kubernetes 1.30 API schemas with kubernetes-validate in
strict mode (unknown fields fail). ServiceMonitor, a CRD, has no schema there: it is the one kind
skipped, and its shape is asserted here instead. Then the properties the issue asks for are
asserted on the rendered objects, and the values schema is shown to reject typos and wrong types.

The channel catalog (catalog.*: inline channels in a ConfigMap of the chart's, or an existing
ConfigMap) is checked for what the pod sees: the file BREAKWATER_CATALOG names, mounted read-only,
validated by an init container, and a checksum that restarts the pods when the channels change.
tests/integration/test_chart_catalog.py runs the real gateway on the catalog rendered here.

The Grafana dashboard the chart ships (dashboards/breakwater.json, in a ConfigMap when
metrics.grafanaDashboard.enabled) is checked too: its structure, that every panel queries through
the datasource variable, and that its PromQL names only series a live app.operations.metrics.Metrics()
registry exports, with the labels those series have.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, get_args

import helm_python as helm
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate  # type: ignore[import-untyped]
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import FilePath

from app.broker.topology import Mismatch
from app.catalog.channel import MAX_NAME_LENGTH, NAME_PATTERN
from app.documents.asyncapi import setting_name
from app.events import DeliveryPath
from app.operations.metrics import BREAKER_STATE_VALUES, Metrics
from app.outbound.breaker import BreakerState
from app.settings import Settings
from app.tracing.settings import TracingSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "breakwater"
RELEASE = "bw"
NAMESPACE = "events"
KUBERNETES_VERSION = "1.30.0"
# Kinds kubernetes-validate has no schema for (custom resources); each is asserted by hand below.
CRD_KINDS = {"ServiceMonitor"}
OPTIONAL_KINDS = {"ServiceMonitor", "HorizontalPodAutoscaler", "NetworkPolicy", "Ingress"}
VARIANTS = ["default", *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))]

Obj = dict[str, Any]


def variant_values(variant: str) -> dict[str, Any]:
    if variant == "default":
        return {}
    loaded = yaml.safe_load((CHART / "ci" / variant).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def render_raw(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)


def parse(manifests: dict[str, str]) -> list[Obj]:
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


@functools.cache
def _rendered(variant: str) -> tuple[dict[str, str], list[Obj]]:
    manifests = render_raw(variant_values(variant))
    return manifests, parse(manifests)


def objects(variant: str) -> list[Obj]:
    return _rendered(variant)[1]


def kinds(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in kinds(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(objs: list[Obj]) -> Obj:
    spec: Obj = one(objs, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def container(objs: list[Obj]) -> Obj:
    containers = pod_spec(objs)["containers"]
    assert len(containers) == 1
    found: Obj = containers[0]
    return found


def pod_labels(objs: list[Obj]) -> dict[str, str]:
    labels: dict[str, str] = one(objs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    return labels


# The key of the dashboard in its ConfigMap: the file name the Grafana sidecar writes.
DASHBOARD_KEY = "breakwater.json"


def is_dashboard(obj: Obj) -> bool:
    return obj["kind"] == "ConfigMap" and DASHBOARD_KEY in obj.get("data", {})


def settings_configmap_name(objs: list[Obj]) -> str:
    """The ConfigMap the container takes its environment from: the gateway's settings (not the
    Grafana dashboard, not the channel catalog)."""
    (name,) = [e["configMapRef"]["name"] for e in container(objs)["envFrom"] if "configMapRef" in e]
    return str(name)


def config_data(objs: list[Obj]) -> dict[str, str]:
    """The gateway's settings."""
    data: dict[str, str] = one(objs, "ConfigMap", settings_configmap_name(objs))["data"]
    return data


def container_env(objs: list[Obj]) -> dict[str, str]:
    """The container's own `env` (not envFrom): name -> value."""
    env = container(objs).get("env", [])
    assert all(set(e) == {"name", "value"} for e in env), env
    return {e["name"]: e["value"] for e in env}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def fullname(variant: str) -> str:
    return str(variant_values(variant).get("fullnameOverride") or f"{RELEASE}-breakwater")


# --- Helm's own checks -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_is_clean(variant: str) -> None:
    report = helm.lint(
        CHART, variant_values(variant), strict=True, kube_version=f"v{KUBERNETES_VERSION}"
    )
    assert report["total_charts_linted"] == 1
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems, problems
    assert not report["errors"], report["errors"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_template_per_object(variant: str) -> None:
    manifests, _ = _rendered(variant)
    for path, text in manifests.items():
        docs = [d for d in yaml.safe_load_all(text) if d] if path.endswith(".yaml") else []
        assert len(docs) <= 1, f"{path} renders {len(docs)} objects"


# --- Kubernetes API validity -------------------------------------------------------------------


def assert_service_monitor_shape(sm: Obj, service: Obj, headless: Obj) -> None:
    """What kubernetes-validate cannot check for the CRD, checked here against prometheus-operator's
    monitoring.coreos.com/v1 ServiceMonitor fields the chart uses."""
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"}
    spec = sm["spec"]
    assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = spec["selector"]
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    for expression in selector.get("matchExpressions", []):
        assert set(expression) <= {"key", "operator", "values"}
        assert expression["operator"] in {"In", "NotIn", "Exists", "DoesNotExist"}

    def matches(labels: dict[str, str]) -> bool:
        ok = selects(selector["matchLabels"], labels)
        for expression in selector.get("matchExpressions", []):
            present = expression["key"] in labels
            ok = ok and (present if expression["operator"] == "Exists" else not present)
        return ok

    # It scrapes every pod once: through the regular Service, not also through the headless one.
    assert matches(service["metadata"]["labels"])
    assert not matches(headless["metadata"]["labels"])
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert isinstance(endpoint["honorLabels"], bool)
    for key in ("interval", "scrapeTimeout"):
        if key in endpoint:
            assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", endpoint[key])


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_objects_are_valid_kubernetes(variant: str) -> None:
    objs = objects(variant)
    assert objs
    problems = []
    for obj in objs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CRD_KINDS:
            continue  # no API schema in kubernetes-validate: asserted below
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{where} is invalid at {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{where}: {exc.message} (only {CRD_KINDS} may be skipped)")
        expected = NAMESPACE
        if is_dashboard(obj):  # where the Grafana sidecar watches, when set
            expected = dashboard_values(variant).get("namespace") or NAMESPACE
        if obj["metadata"].get("namespace") != expected:
            problems.append(f"{where} is not in namespace {expected}")
    assert not problems, "\n".join(problems)
    name = fullname(variant)
    for sm in kinds(objs, "ServiceMonitor"):
        assert_service_monitor_shape(
            sm, one(objs, "Service", name), one(objs, "Service", f"{name}-headless")
        )


# --- The workload ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_statefulset_gives_every_pod_its_own_store(variant: str) -> None:
    objs = objects(variant)
    sts = one(objs, "StatefulSet")
    spec = sts["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"]
    # The claim comes from the template (one per pod), not from a volume all pods would share.
    assert "data" not in {v["name"] for v in pod_spec(objs).get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in container(objs)["volumeMounts"]}
    assert mounts["data"] == "/data"
    assert config_data(objs)["BREAKWATER_STORE_PATH"] == "/data/fallback.db"
    # Removing or scaling down a pod keeps its volume and the backlog in it.
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    # The governing Service is the headless one.
    headless = one(objs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(spec["selector"]["matchLabels"], pod_labels(objs))


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_use_healthz_and_readyz(variant: str) -> None:
    c = container(objs := objects(variant))
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert str(port_names["http"]) == config_data(objs)["BREAKWATER_HTTP_PORT"]
    assert config_data(objs)["BREAKWATER_HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("variant", VARIANTS)
def test_resources_are_set(variant: str) -> None:
    resources = container(objects(variant))["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_is_locked_down(variant: str) -> None:
    objs = objects(variant)
    pod = pod_spec(objs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(objs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # With a read-only root, /tmp is a bounded emptyDir.
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["sizeLimit"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container(objs)["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False
    # An init container (the catalog check) runs the same image, as locked down and as bounded.
    for init in pod.get("initContainers", []):
        assert init["securityContext"] == sc, init["name"]
        assert init["resources"] == container(objs)["resources"], init["name"]
        assert init["image"] == container(objs)["image"], init["name"]
        assert init["imagePullPolicy"] == container(objs)["imagePullPolicy"], init["name"]
        assert {"name": "tmp", "mountPath": "/tmp"} in init["volumeMounts"], init["name"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_termination_grace_outlasts_graceful_shutdown(variant: str) -> None:
    objs = objects(variant)
    grace = float(config_data(objs)["BREAKWATER_SHUTDOWN_GRACE_S"])
    pre_stop = container(objs).get("lifecycle", {}).get("preStop")
    sleep = float(pre_stop["exec"]["command"][1]) if pre_stop else 0.0
    # SIGTERM comes after the preStop sleep; uvicorn then waits up to `grace` for HTTP requests
    # and the inbound consumers up to `grace` again (app/operations/server.py, app/gateway.py).
    assert pod_spec(objs)["terminationGracePeriodSeconds"] > sleep + 2 * grace
    assert one(objs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["args"] == ["run"]


def test_grace_period_and_gateway_setting_come_from_one_value() -> None:
    for grace in (5, 45):
        objs = parse(render_raw({"shutdown": {"graceSeconds": grace, "preStopSleepSeconds": 3}}))
        assert config_data(objs)["BREAKWATER_SHUTDOWN_GRACE_S"] == str(grace)
        assert pod_spec(objs)["terminationGracePeriodSeconds"] == 3 + 2 * grace + 10
        assert container(objs)["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "3"]
    objs = parse(render_raw({"shutdown": {"preStopSleepSeconds": 0}}))
    assert "lifecycle" not in container(objs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_are_spread_over_nodes(variant: str) -> None:
    objs = objects(variant)
    anti = pod_spec(objs)["affinity"]["podAntiAffinity"]
    preset = variant_values(variant).get("podAntiAffinityPreset", "soft")
    if preset == "hard":
        (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    else:
        (weighted,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        term = weighted["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"]["matchLabels"], pod_labels(objs))


def test_default_is_several_replicas_with_a_disruption_budget() -> None:
    objs = objects("default")
    assert one(objs, "StatefulSet")["spec"]["replicas"] >= 2
    assert one(objs, "StatefulSet")["spec"]["podManagementPolicy"] == "Parallel"
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(objs))


def test_several_replicas_variant() -> None:
    objs = objects("replicas-values.yaml")
    sts = one(objs, "StatefulSet", "events-gateway")
    assert sts["spec"]["replicas"] == 4
    pdb = one(objs, "PodDisruptionBudget")
    assert 0 < pdb["spec"]["minAvailable"] < sts["spec"]["replicas"]
    assert "maxUnavailable" not in pdb["spec"]
    # One claim template, so four pods get four volumes; every pod gets the same settings, so all
    # of them consume the same inbound queues.
    assert len(sts["spec"]["volumeClaimTemplates"]) == 1
    assert "cpu" not in container(objs)["resources"]["limits"]
    assert one(objs, "Service", "events-gateway-headless")["spec"]["clusterIP"] == "None"


# --- Settings: ConfigMap, Secret --------------------------------------------------------------

SETTINGS = {setting_name(name) for name in Settings.model_fields}
SECRET_SETTINGS = {
    "BREAKWATER_BROKER_URL",
    "BREAKWATER_INBOUND_BROKER_URL",
    "BREAKWATER_API_TOKENS",
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_configmap_holds_real_settings_and_no_credentials(variant: str) -> None:
    data = config_data(objects(variant))
    extra = set(variant_values(variant).get("extraConfig", {}))
    unknown = set(data) - SETTINGS - extra
    assert not unknown, f"not settings of app/settings.py: {unknown}"
    assert not set(data) & SECRET_SETTINGS
    assert all(isinstance(v, str) for v in data.values())
    # Values the gateway's pydantic settings accept as they are written.
    assert int(data["BREAKWATER_STORE_MAX_BYTES"]) > 0
    float(data["BREAKWATER_PUBLISH_TIMEOUT_S"])
    float(data["BREAKWATER_REPLAY_RATE"])


def test_every_setting_is_reachable_from_the_chart() -> None:
    objs = objects("all-optional-values.yaml")
    secret = one(objs, "Secret")
    # The container's own env holds the one setting that is a path into a ConfigMap volume
    # (BREAKWATER_CATALOG); every other is in the settings ConfigMap or the Secret.
    written = {**config_data(objs), **container_env(objs)}
    covered = set(written) | set(secret["data"])
    missing = SETTINGS - covered
    assert not missing, (
        f"settings the chart cannot set (add them to values and the ConfigMap): {missing}"
    )
    assert set(container_env(objs)) <= SETTINGS | {CATALOG_SETTING}
    # A setting naming a file the gateway reads is reachable only with the file in the pod.
    unmounted = {s for s in FILE_SETTINGS if not provided_by_a_volume(objs, written.get(s))}
    assert not unmounted, f"file settings whose file no volume provides: {unmounted}"


def test_tracing_values_set_the_otel_variables_the_gateway_reads() -> None:
    assert {k: v for k, v in config_data(objects("default")).items() if k.startswith("OTEL_")} == {
        "OTEL_TRACES_EXPORTER": "none"
    }
    data = config_data(objects("all-optional-values.yaml"))
    tracing = {k: v for k, v in data.items() if k.startswith("OTEL_")}
    assert tracing == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability.svc:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": (
            "http://otel-collector.observability.svc:4318/v1/traces"
        ),
        "OTEL_SERVICE_NAME": "orders-gateway",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    # As the gateway reads them: tracing on, sampling a quarter of the new traces.
    read = TracingSettings(**tracing)  # type: ignore[arg-type]
    assert read.tracing
    assert read.otel_traces_sampler_arg == 0.25


def test_secret_holds_the_credentials() -> None:
    values = variant_values("all-optional-values.yaml")
    objs = objects("all-optional-values.yaml")
    data = {k: base64.b64decode(v).decode() for k, v in one(objs, "Secret")["data"].items()}
    assert data == {
        "BREAKWATER_BROKER_URL": values["broker"]["url"],
        "BREAKWATER_INBOUND_BROKER_URL": values["broker"]["inboundUrl"],
        "BREAKWATER_API_TOKENS": ",".join(values["auth"]["apiTokens"]),
    }
    env_from = container(objs)["envFrom"]
    assert env_from[-1] == {"secretRef": {"name": one(objs, "Secret")["metadata"]["name"]}}
    annotations = one(objs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= set(annotations)


def test_existing_secret_replaces_the_charts_secret() -> None:
    objs = objects("existing-secret-values.yaml")
    assert not kinds(objs, "Secret")
    assert {"secretRef": {"name": "breakwater-credentials"}} in container(objs)["envFrom"]
    annotations = one(objs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations
    # No ServiceAccount of its own: the named one is used; the platform assigns user ids.
    assert not kinds(objs, "ServiceAccount")
    assert pod_spec(objs)["serviceAccountName"] == "breakwater-runtime"
    assert "runAsUser" not in pod_spec(objs)["securityContext"]
    assert "fsGroup" not in pod_spec(objs)["securityContext"]
    assert not kinds(objs, "PodDisruptionBudget")
    claim = one(objs, "StatefulSet")["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == ""


def test_default_secret_has_no_credentials_and_notes_warn() -> None:
    manifests, objs = _rendered("default")
    assert one(objs, "Secret")["data"] == {}
    notes = manifests["breakwater/templates/NOTES.txt"]
    assert "WARNING: no broker is configured" in notes
    assert "/docs/asyncapi" in notes
    assert "breakwater store stats" in notes


# --- Broker TLS: PEM files from an existing Secret ---------------------------------------------

NOTES = "breakwater/templates/NOTES.txt"
TLS_DIR = "/etc/breakwater/tls"
# The channel catalog's file (catalog.*, below): a ConfigMap volume, not the broker TLS Secret.
CATALOG_SETTING = "BREAKWATER_CATALOG"
# Settings naming a file the gateway reads (pydantic FilePath): the pod must have the file.
FILE_SETTINGS = {
    setting_name(name)
    for name, field in Settings.model_fields.items()
    if field.annotation == FilePath or FilePath in get_args(field.annotation)
}
# Those the broker TLS Secret provides.
TLS_FILE_SETTINGS = FILE_SETTINGS - {CATALOG_SETTING}
# The value of broker.tls naming the Secret key behind each of them.
TLS_KEYS = {
    "BREAKWATER_BROKER_CA_FILE": "caKey",
    "BREAKWATER_BROKER_CERT_FILE": "certKey",
    "BREAKWATER_BROKER_KEY_FILE": "keyKey",
}


def test_tls_keys_are_the_file_settings() -> None:
    assert set(TLS_KEYS) == TLS_FILE_SETTINGS


def tls_values(values: Obj) -> Obj:
    """broker.tls as the chart sees it: the chart's defaults under the given values."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    tls: Obj = {**defaults["broker"]["tls"], **values.get("broker", {}).get("tls", {})}
    return tls


def secret_files(objs: list[Obj]) -> dict[str, tuple[str, str]]:
    """Every file a Secret volume puts in the container: its path -> (Secret name, key)."""
    volumes = {v["name"]: v for v in pod_spec(objs).get("volumes", [])}
    files = {}
    for mount in container(objs)["volumeMounts"]:
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret is None:
            continue
        # Projected items only: with the whole Secret mounted, its files would depend on its keys.
        assert secret.get("items"), f"volume {mount['name']} mounts a whole Secret"
        for item in secret["items"]:
            path = f"{mount['mountPath'].rstrip('/')}/{item['path']}"
            files[path] = (secret["secretName"], item["key"])
    return files


def provided_by_a_volume(objs: list[Obj], path: str | None) -> bool:
    """Whether a volume of the container provides the file at `path`: a projected item of a
    Secret, or a key of a ConfigMap mounted read-only (the chart's own: a key it renders; an
    existing one, whose keys the chart cannot see: any file directly under its mount)."""
    if path is None:
        return False
    if path in secret_files(objs):
        return True
    file = PurePosixPath(path)
    volumes = {v["name"]: v for v in pod_spec(objs).get("volumes", [])}
    for mount in container(objs)["volumeMounts"]:
        config_map = volumes.get(mount["name"], {}).get("configMap")
        if config_map is None or file.parent != PurePosixPath(mount["mountPath"]):
            continue
        assert mount.get("readOnly") is True, f"{mount['name']} is mounted writable"
        rendered = [
            c for c in kinds(objs, "ConfigMap") if c["metadata"]["name"] == config_map["name"]
        ]
        return not rendered or file.name in rendered[0]["data"]
    return False


def assert_broker_tls(objs: list[Obj], tls: Obj, notes: str) -> None:
    """The pod sees broker.tls as the values say: a read-only mount of the Secret's keys, and the
    file settings pointing at them; nothing of it when disabled."""
    data = config_data(objs)
    secret_volumes = [v for v in pod_spec(objs).get("volumes", []) if "secret" in v]
    tls_mounts = [m for m in container(objs)["volumeMounts"] if m["mountPath"] == TLS_DIR]
    if not tls["enabled"]:
        assert not secret_volumes
        assert not tls_mounts
        assert not TLS_FILE_SETTINGS & set(data)
        assert "Broker TLS" not in notes
        return
    (volume,) = secret_volumes
    (mount,) = tls_mounts
    assert mount == {"name": volume["name"], "mountPath": TLS_DIR, "readOnly": True}
    secret = volume["secret"]
    assert secret["secretName"] == tls["existingSecret"]
    # Read by owner and group, nobody else, and no item loosens it. The kubelet gives the files
    # the pod's fsGroup, a supplementary group of the gateway's process: without one, the platform
    # must assign it (the notes say so).
    assert secret["defaultMode"] == 0o440
    assert all("mode" not in item for item in secret["items"])
    assert "optional" not in secret  # a missing Secret or key stops the pod, visibly
    if pod_spec(objs)["securityContext"].get("fsGroup") is None:
        assert "WARNING: podSecurityContext.fsGroup is null" in notes
    # Each setting whose key is set names the file that key is projected to; nothing else is.
    wanted = {setting: tls[value] for setting, value in TLS_KEYS.items() if tls[value]}
    files = secret_files(objs)
    assert {s: files[data[s]] for s in TLS_FILE_SETTINGS & set(data)} == {
        s: (tls["existingSecret"], key) for s, key in wanted.items()
    }
    assert set(files) == {data[s] for s in wanted}
    assert all(data[s].startswith(f"{TLS_DIR}/") for s in wanted)
    assert f'Secret "{tls["existingSecret"]}" is mounted read-only at {TLS_DIR}' in notes


@pytest.mark.parametrize("variant", VARIANTS)
def test_broker_tls_is_mounted_only_when_enabled(variant: str) -> None:
    manifests, objs = _rendered(variant)
    assert_broker_tls(objs, tls_values(variant_values(variant)), manifests[NOTES])


def test_some_variants_have_broker_tls_and_some_not() -> None:
    enabled = {tls_values(variant_values(v))["enabled"] for v in VARIANTS}
    assert enabled == {True, False}
    # The variant with every option has mutual TLS: all three file settings.
    assert set(config_data(objects("all-optional-values.yaml"))) >= TLS_FILE_SETTINGS


@pytest.mark.parametrize(
    "tls",
    [
        pytest.param({"certKey": "", "keyKey": ""}, id="ca-only"),
        pytest.param(
            {"caKey": "", "certKey": "client.pem", "keyKey": "client-key.pem"},
            id="client-cert-and-system-cas",
        ),
        pytest.param(
            {"caKey": "root.pem", "certKey": "client.pem", "keyKey": "client.pem"},
            id="cert-and-key-in-one-pem",
        ),
    ],
)
def test_broker_tls_follows_its_values(tls: Obj) -> None:
    values = {
        "broker": {
            "url": "amqps://bw:secret@rabbitmq:5671/",
            "tls": {"enabled": True, "existingSecret": "rabbitmq-client", **tls},
        }
    }
    manifests = render_raw(values)
    objs = parse(manifests)
    assert_broker_tls(objs, tls_values(values), manifests[NOTES])
    kubernetes_validate.validate(one(objs, "StatefulSet"), KUBERNETES_VERSION, strict=True)
    assert "WARNING: broker.tls" not in manifests[NOTES]


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        pytest.param(
            {}, "broker.tls.enabled is true but broker.tls.existingSecret is empty", id="no-secret"
        ),
        pytest.param(
            {"existingSecret": "s", "keyKey": ""},
            "broker.tls.certKey and broker.tls.keyKey go together",
            id="cert-without-key",
        ),
        pytest.param(
            {"existingSecret": "s", "certKey": ""},
            "broker.tls.certKey and broker.tls.keyKey go together",
            id="key-without-cert",
        ),
        pytest.param(
            {"existingSecret": "s", "caKey": "", "certKey": "", "keyKey": ""},
            "there is nothing to mount",
            id="no-key-at-all",
        ),
    ],
)
def test_broker_tls_fails_the_render_when_incomplete(tls: Obj, message: str) -> None:
    with pytest.raises(helm.HelmError) as caught:
        render_raw({"broker": {"tls": {"enabled": True, **tls}}})
    assert message in str(caught.value)


def test_disabled_broker_tls_needs_nothing() -> None:
    # The keys of a disabled section are not checked: it can be prepared before it is turned on.
    objs = parse(render_raw({"broker": {"tls": {"enabled": False, "certKey": ""}}}))
    assert not TLS_FILE_SETTINGS & set(config_data(objs))


def test_notes_warn_when_tls_meets_plain_amqp() -> None:
    values = {
        "broker": {
            "url": "amqps://bw:pass-one@a:5671/, amqp://bw:pass-two@b:5672/",
            "inboundUrl": "amqp://in:pass-three@c:5672/",
            "tls": {"enabled": True, "existingSecret": "rabbitmq-client"},
        }
    }
    notes = render_raw(values)[NOTES]
    assert "WARNING: broker.tls.enabled is true, but these broker URLs are amqp://" in notes
    assert "URL #2 of broker.url, broker.inboundUrl." in notes
    # Named by value and position, never written out: the URLs hold passwords.
    assert "pass-" not in notes
    # No broker at all: the hint suggests a TLS URL.
    notes = render_raw({"broker": {"tls": {"enabled": True, "existingSecret": "s"}}})[NOTES]
    assert "--set broker.url='amqps://USER:PASS@HOST:5671/'" in notes
    assert "WARNING: broker.tls" not in notes
    # Credentials from an existing Secret: the chart cannot see the URLs, the notes say what they need.
    notes = render_raw({"existingSecret": "creds", **values})[NOTES]
    assert "WARNING: broker.tls" not in notes
    assert 'The broker URLs in the Secret "creds" must be amqps://' in notes


def test_notes_warn_when_no_fs_group_makes_the_tls_files_readable() -> None:
    values = {
        "podSecurityContext": {"fsGroup": None},
        "broker": {"tls": {"enabled": True, "existingSecret": "s"}},
    }
    notes = render_raw(values)[NOTES]
    assert "WARNING: podSecurityContext.fsGroup is null" in notes
    assert (
        "WARNING: podSecurityContext.fsGroup" not in render_raw({"broker": values["broker"]})[NOTES]
    )


# --- The channel catalog ----------------------------------------------------------------------

CATALOG_DIR = "/etc/breakwater/catalog"
CATALOG_VARIANT = "catalog-values.yaml"
CATALOG_KEY = "catalog.yaml"
CATALOG_INIT = "validate-catalog"
# The keys of a channel, in the order the chart writes them.
CHANNEL_KEYS = (
    "name",
    "summary",
    "description",
    "deprecated",
    "compatibility",
    "payload",
    "examples",
)


def catalog_values(values: Obj) -> Obj:
    """catalog as the chart sees it: the chart's defaults under the given values."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    catalog: Obj = {**defaults["catalog"], **values.get("catalog", {})}
    return catalog


def catalog_configmaps(objs: list[Obj]) -> list[Obj]:
    """ConfigMaps of the chart holding a catalog file: neither the settings nor the dashboard."""
    settings = settings_configmap_name(objs)
    return [
        o
        for o in kinds(objs, "ConfigMap")
        if not is_dashboard(o) and o["metadata"]["name"] != settings
    ]


def template_annotations(objs: list[Obj]) -> dict[str, str]:
    found: dict[str, str] = one(objs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    return found


def rendered_catalog(objs: list[Obj]) -> Obj:
    """The catalog file of the chart's catalog ConfigMap, parsed."""
    (cm,) = catalog_configmaps(objs)
    loaded: Obj = yaml.safe_load(cm["data"][CATALOG_KEY])
    return loaded


def assert_catalog(objs: list[Obj], catalog: Obj, name: str, notes: str) -> None:
    """The pod sees catalog.* as the values say: the catalog ConfigMap mounted read-only, the file
    BREAKWATER_CATALOG names in it, the init container checking that file, the checksum of the
    inline catalog on the pod template; nothing of it for the built-in catalog."""
    env = container_env(objs)
    volumes = [v for v in pod_spec(objs).get("volumes", []) if "configMap" in v]
    mounts = [m for m in container(objs)["volumeMounts"] if m["mountPath"] == CATALOG_DIR]
    inits = pod_spec(objs).get("initContainers", [])
    rendered = catalog_configmaps(objs)
    annotations = template_annotations(objs)
    if not catalog["channels"] and not catalog["existingConfigMap"]:
        assert CATALOG_SETTING not in env
        assert CATALOG_SETTING not in config_data(objs)
        assert not volumes
        assert not mounts
        assert not inits
        assert not rendered
        assert "checksum/catalog" not in annotations
        assert "Channel catalog: the gateway's built-in default" in notes
        return
    (volume,) = volumes
    (mount,) = mounts
    assert mount == {"name": volume["name"], "mountPath": CATALOG_DIR, "readOnly": True}
    assert "optional" not in volume["configMap"]  # a missing ConfigMap stops the pod, visibly
    assert CATALOG_SETTING not in config_data(objs)  # one place says where the file is
    path = env[CATALOG_SETTING]
    assert provided_by_a_volume(objs, path)
    map_name = volume["configMap"]["name"]
    if catalog["channels"]:
        (cm,) = rendered
        assert cm["metadata"]["name"] == map_name == f"{name}-catalog"
        assert path == f"{CATALOG_DIR}/{CATALOG_KEY}"
        assert set(cm["data"]) == {CATALOG_KEY}
        text = cm["data"][CATALOG_KEY]
        # Exactly the values' channels, nothing added, nothing lost.
        assert yaml.safe_load(text) == {"channels": catalog["channels"]}
        # The checksum is the file's own: it changes exactly when the pods' file does.
        assert annotations["checksum/catalog"] == hashlib.sha256(text.encode()).hexdigest()
        assert f"ConfigMap: {map_name}, key {CATALOG_KEY}" in notes
        names = ", ".join(c["name"] for c in catalog["channels"])
        assert f"Channels:  {names}" in notes
    else:
        assert not rendered
        assert map_name == catalog["existingConfigMap"]
        assert path == f"{CATALOG_DIR}/{catalog['existingConfigMapKey']}"
        # The chart cannot see the map: no checksum, and the notes say how to restart.
        assert "checksum/catalog" not in annotations
        assert f'the existing ConfigMap "{map_name}"' in notes
        assert f"rollout restart statefulset/{name}" in notes
    assert f"File:      {path} (BREAKWATER_CATALOG), read-only" in notes
    if catalog["validate"]:
        (init,) = inits
        assert init["name"] == CATALOG_INIT
        assert init["args"] == ["catalog", "validate", path]
        assert "command" not in init  # the image's entrypoint, `breakwater`
        assert mount in init["volumeMounts"]
        assert f"-c {CATALOG_INIT}" in notes
    else:
        assert not inits
        assert "catalog.validate is false" in notes


@pytest.mark.parametrize("variant", VARIANTS)
def test_catalog_is_mounted_as_the_values_say(variant: str) -> None:
    manifests, objs = _rendered(variant)
    assert_catalog(
        objs, catalog_values(variant_values(variant)), fullname(variant), manifests[NOTES]
    )


def test_variants_cover_every_kind_of_catalog() -> None:
    def kind(variant: str) -> str:
        catalog = catalog_values(variant_values(variant))
        if catalog["channels"]:
            return "inline"
        return "existing" if catalog["existingConfigMap"] else "built-in"

    assert {kind(v) for v in VARIANTS} == {"inline", "existing", "built-in"}
    assert kind("default") == "built-in"
    assert kind(CATALOG_VARIANT) == "inline"


def test_default_runs_the_built_in_catalog() -> None:
    objs = objects("default")
    assert catalog_values({}) == {
        "channels": [],
        "existingConfigMap": "",
        "existingConfigMapKey": CATALOG_KEY,
        "validate": True,
    }
    assert "initContainers" not in pod_spec(objs)
    assert "env" not in container(objs)
    assert CATALOG_DIR not in {m["mountPath"] for m in container(objs)["volumeMounts"]}
    assert not catalog_configmaps(objs)


def test_catalog_variant_is_two_valid_channels() -> None:
    objs = objects(CATALOG_VARIANT)
    channels = rendered_catalog(objs)["channels"]
    assert [c["name"] for c in channels] == ["shipments.dispatched", "customers.registered.v2"]
    for channel in channels:
        assert set(channel) <= set(CHANNEL_KEYS)
        payload = channel["payload"]
        assert payload["type"] == "object"
        assert payload["additionalProperties"] is False
        # A JSON Schema of draft 2020-12 that each of its (one) examples satisfies, formats too.
        jsonschema.Draft202012Validator.check_schema(payload)
        validator = jsonschema.Draft202012Validator(
            payload, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        (example,) = channel["examples"]
        validator.validate(example)
        # ... and that rejects an unknown key, so the example is not valid by accident.
        assert not validator.is_valid({**example, "unknown_key": 1})
    shipments, customers = (c["payload"] for c in channels)
    assert shipments["properties"]["weight_kg"]["type"] == "string"  # a decimal, never a float
    assert shipments["properties"]["weight_kg"]["pattern"]
    assert shipments["properties"]["carrier"]["enum"]
    assert customers["properties"]["email"]["format"] == "email"
    assert customers["properties"]["loyalty_points"] == {"type": "integer", "minimum": 0}
    assert "loyalty_points" not in customers["required"]
    # The keys are written in the documented order (name first), not sorted.
    (cm,) = catalog_configmaps(objs)
    first = [line.strip() for line in cm["data"][CATALOG_KEY].splitlines() if "- name:" in line]
    assert first == [f"- name: {c['name']}" for c in channels]


def _with_channels(channels: list[Obj], **catalog: Any) -> Obj:
    return {"catalog": {"channels": channels, **catalog}}


def _catalog_checksum(values: Obj) -> str:
    return template_annotations(parse(render_raw(values)))["checksum/catalog"]


def test_catalog_checksum_changes_when_a_channel_changes() -> None:
    channels = variant_values(CATALOG_VARIANT)["catalog"]["channels"]
    base = parse(render_raw(_with_channels(channels)))
    checksum = template_annotations(base)["checksum/catalog"]
    assert _catalog_checksum(_with_channels(copy.deepcopy(channels))) == checksum  # stable

    summary = copy.deepcopy(channels)
    summary[0]["summary"] = "A shipment was handed to its carrier."
    schema = copy.deepcopy(channels)
    schema[1]["payload"]["properties"]["loyalty_points"]["minimum"] = 1
    example = copy.deepcopy(channels)
    example[1]["examples"][0]["loyalty_points"] = 7
    changed = {
        "summary": summary,
        "schema": schema,
        "example": example,
        "order": list(reversed(channels)),
        "fewer": channels[:1],
    }
    seen = {checksum}
    for what, variant in changed.items():
        objs = parse(render_raw(_with_channels(variant)))
        new = template_annotations(objs)["checksum/catalog"]
        assert new not in seen, f"the checksum ignores a change of {what}"
        seen.add(new)
        # Only the catalog's checksum: the settings did not change.
        assert (
            template_annotations(objs)["checksum/config"]
            == template_annotations(base)["checksum/config"]
        )
        assert rendered_catalog(objs) == {"channels": variant}


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"catalog": {"existingConfigMap": "orders-catalog-v3"}}, id="existing"),
        pytest.param(
            {
                "catalog": {
                    "existingConfigMap": "orders-catalog-v3",
                    "existingConfigMapKey": "channels.json",
                    "validate": False,
                }
            },
            id="existing-other-key-unchecked",
        ),
        pytest.param(
            _with_channels(
                [{"name": "a", "summary": "A.", "payload": {"type": "object"}, "examples": [{}]}],
                validate=False,
            ),
            id="inline-unchecked",
        ),
        pytest.param(
            {
                "fullnameOverride": "events-gateway",
                **_with_channels(
                    [
                        {
                            "name": "audit_log-entry.v1",
                            "summary": "An entry of the audit log.",
                            "description": "Line one.\n\nLine *two*: with `code`.\n",
                            "deprecated": True,
                            "compatibility": "NONE",
                            "payload": {"type": "object", "properties": {"n": {"type": "null"}}},
                            "examples": [{"n": None}, {}],
                        }
                    ]
                ),
            },
            id="inline-every-key",
        ),
    ],
)
def test_catalog_follows_its_values(values: Obj) -> None:
    manifests = render_raw(values)
    objs = parse(manifests)
    name = values.get("fullnameOverride") or f"{RELEASE}-breakwater"
    assert_catalog(objs, catalog_values(values), name, manifests[NOTES])
    for obj in objs:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_existing_catalog_configmap_is_mounted_whole_and_not_rendered() -> None:
    manifests = render_raw({"catalog": {"existingConfigMap": "orders-catalog-v3"}})
    assert not manifests.get("breakwater/templates/catalog-configmap.yaml", "").strip()
    objs = parse(manifests)
    assert not catalog_configmaps(objs)
    (volume,) = [v for v in pod_spec(objs)["volumes"] if "configMap" in v]
    # Whole: a catalog's `payloadFile: <key>` may name another key of the map.
    assert volume["configMap"] == {"name": "orders-catalog-v3"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            _with_channels(
                [{"name": "a", "summary": "A.", "payload": {}, "examples": [{}]}],
                existingConfigMap="orders-catalog-v3",
            ),
            "catalog.channels and catalog.existingConfigMap are both set",
            id="inline-and-existing",
        ),
        pytest.param(
            _with_channels(
                [
                    {"name": "a.b", "summary": "A.", "payload": {}, "examples": [{}]},
                    {"name": "a.b", "summary": "Again.", "payload": {}, "examples": [{}]},
                ]
            ),
            'the channel "a.b" is declared twice',
            id="a-name-twice",
        ),
    ],
)
def test_catalog_fails_the_render_when_ambiguous(values: Obj, message: str) -> None:
    with pytest.raises(helm.HelmError) as caught:
        render_raw(values)
    assert message in str(caught.value)


# --- Services, service account -----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_reach_the_pods(variant: str) -> None:
    objs = objects(variant)
    name = fullname(variant)
    regular = one(objs, "Service", name)
    headless = one(objs, "Service", f"{name}-headless")
    assert regular["spec"].get("clusterIP") != "None"
    for service in (regular, headless):
        assert selects(service["spec"]["selector"], pod_labels(objs))
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == "http"
    assert headless["spec"]["publishNotReadyAddresses"] is True


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_account(variant: str) -> None:
    objs = objects(variant)
    for sa in kinds(objs, "ServiceAccount"):
        assert sa["metadata"]["name"] == pod_spec(objs)["serviceAccountName"]
        assert sa["automountServiceAccountToken"] is False


# --- Optional parts ----------------------------------------------------------------------------


def test_optional_parts_are_off_by_default() -> None:
    present = {o["kind"] for o in objects("default")}
    assert not present & OPTIONAL_KINDS
    assert not [o for o in objects("default") if is_dashboard(o)]
    assert present == {
        "ConfigMap",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    }


def test_all_optional_parts_render_and_fit_together() -> None:
    objs = objects("all-optional-values.yaml")
    name = fullname("all-optional-values.yaml")
    assert {o["kind"] for o in objs} >= OPTIONAL_KINDS

    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": name,
    }
    assert "replicas" not in one(objs, "StatefulSet")["spec"]  # the HPA owns the count

    policy = one(objs, "NetworkPolicy")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(objs))
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert {"port": 8000, "protocol": "TCP"} in policy["spec"]["ingress"][0]["ports"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 5671} <= egress_ports

    ingress = one(objs, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert set(paths) == {"/v1/events", "/docs"}
    for path in paths.values():
        assert path["backend"]["service"] == {"name": name, "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]

    sm = one(objs, "ServiceMonitor")
    assert sm["metadata"]["namespace"] == "monitoring"
    assert sm["metadata"]["labels"]["release"] == "prometheus"

    (dashboard_cm,) = [o for o in objs if is_dashboard(o)]
    assert dashboard_cm["metadata"]["namespace"] == "monitoring"
    assert dashboard_cm["metadata"]["labels"]["grafana_dashboard"] == "1"

    # Digest pinning wins over the tag.
    assert container(objs)["image"].endswith("@sha256:" + "0" * 64)


# --- The values schema -------------------------------------------------------------------------


# The smallest channel the schema accepts; the cases below break one thing of it.
CHANNEL: Obj = {"name": "a.b", "summary": "A.", "payload": {"type": "object"}, "examples": [{}]}


def _channel(**changes: Any) -> Obj:
    channel = {**CHANNEL, **changes}
    return {"catalog": {"channels": [{k: v for k, v in channel.items() if v is not None}]}}


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        pytest.param({"replicas": 3}, "replicas", id="unknown-top-level-key"),
        pytest.param({"persistence": {"sizee": "4Gi"}}, "sizee", id="unknown-nested-key"),
        pytest.param(
            {"metrics": {"serviceMonitor": {"enable": True}}}, "enable", id="unknown-deep-key"
        ),
        pytest.param({"replicaCount": "two"}, "replicaCount", id="wrong-type-integer"),
        pytest.param({"autoscaling": {"enabled": "yes"}}, "enabled", id="wrong-type-boolean"),
        pytest.param({"config": {"storeMaxBytes": "1GB"}}, "storeMaxBytes", id="wrong-type-bytes"),
        pytest.param({"config": {"logFormat": "xml"}}, "logFormat", id="not-in-enum"),
        pytest.param({"broker": {"url": "http://rabbit:5672/"}}, "url", id="not-an-amqp-url"),
        pytest.param({"extraConfig": {"LOG_LEVEL": "debug"}}, "LOG_LEVEL", id="not-a-setting"),
        pytest.param({"affinity": {"podAntiAfinity": {}}}, "podAntiAfinity", id="affinity-typo"),
        pytest.param({"broker": {"tls": {"enabled": "yes"}}}, "enabled", id="tls-not-a-boolean"),
        pytest.param({"broker": {"tls": {"secretName": "s"}}}, "secretName", id="tls-typo"),
        pytest.param(
            {"broker": {"tls": {"caKey": "certs/ca.crt"}}}, "caKey", id="tls-key-not-a-key"
        ),
        pytest.param(
            {"broker": {"tls": {"existingSecret": "Broker_TLS"}}},
            "existingSecret",
            id="tls-secret-not-a-name",
        ),
        pytest.param(
            {"catalog": {"existingConfigmap": "c"}}, "existingConfigmap", id="catalog-typo"
        ),
        pytest.param({"catalog": {"validate": "yes"}}, "validate", id="catalog-not-a-boolean"),
        pytest.param({"catalog": {"channels": {"a.b": {}}}}, "channels", id="channels-not-a-list"),
        pytest.param(_channel(sumary="A."), "'sumary' not allowed", id="channel-key-typo"),
        pytest.param(
            _channel(name="Orders.Created"),
            "/catalog/channels/0/name",
            id="channel-name-upper-case",
        ),
        pytest.param(
            _channel(name="orders..created"),
            "/catalog/channels/0/name",
            id="channel-name-empty-part",
        ),
        pytest.param(
            _channel(name="orders/created"), "/catalog/channels/0/name", id="channel-name-path"
        ),
        pytest.param(
            _channel(name="o" * 242), "/catalog/channels/0/name", id="channel-name-too-long"
        ),
        pytest.param(
            _channel(summary=None), "missing property 'summary'", id="channel-without-summary"
        ),
        pytest.param(
            _channel(summary="One.\nTwo."),
            "/catalog/channels/0/summary",
            id="channel-summary-two-lines",
        ),
        pytest.param(
            _channel(examples=[]), "/catalog/channels/0/examples", id="channel-without-examples"
        ),
        pytest.param(
            _channel(payload="schemas/x.json"),
            "/catalog/channels/0/payload",
            id="payload-not-an-object",
        ),
        pytest.param(
            _channel(payload=None, payloadFile="x.json"),
            "'payloadFile' not allowed",
            id="payload-file-inline",
        ),
        pytest.param(
            _channel(compatibility="backward"),
            "/catalog/channels/0/compatibility",
            id="compatibility-enum",
        ),
        pytest.param(
            _channel(deprecated="no"),
            "/catalog/channels/0/deprecated",
            id="deprecated-not-a-boolean",
        ),
        pytest.param(
            {"catalog": {"existingConfigMap": "c", "existingConfigMapKey": "a/b.yaml"}},
            "existingConfigMapKey",
            id="catalog-key-not-a-key",
        ),
    ],
)
def test_schema_rejects_typos_and_wrong_types(values: dict[str, Any], mentions: str) -> None:
    with pytest.raises(helm.HelmError) as caught:
        render_raw(values)
    assert mentions in str(caught.value)


def _schema() -> Obj:
    schema: Obj = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return schema


def _schema_nodes(node: Obj, path: str = "") -> Iterator[tuple[str, Obj]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{key}".lstrip("."))
    if isinstance(node.get("items"), dict):
        yield from _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}.*")


# Kubernetes objects passed through as they are; their content is checked after rendering by
# kubernetes-validate --strict (test_rendered_objects_are_valid_kubernetes).
PASS_THROUGH = {
    "affinity.nodeAffinity",
    "affinity.podAffinity",
    "affinity.podAntiAffinity",
    "topologySpreadConstraints[].labelSelector",
    "networkPolicy.extraIngress[].from[]",
    "networkPolicy.extraIngress[].ports[]",
    "networkPolicy.extraEgress[].to[]",
    "networkPolicy.extraEgress[].ports[]",
}
# JSON Schemas passed through into the catalog file; `breakwater catalog validate` (the init
# container) and the gateway check them.
JSON_SCHEMAS = {"catalog.channels[].payload"}


def test_schema_is_closed_at_every_level() -> None:
    open_nodes = set()
    for path, node in _schema_nodes(_schema()):
        if "properties" in node:
            assert node.get("additionalProperties") is False, (
                f"{path or '<root>'} accepts unknown keys"
            )
        elif node.get("type") == "object":
            # A map (labels, annotations, extra settings): the values' type is still fixed.
            assert "additionalProperties" in node, f"{path} does not say what it accepts"
            if node["additionalProperties"] is True:
                open_nodes.add(path)
    assert open_nodes == PASS_THROUGH | JSON_SCHEMAS


def _leaves(values: Obj, schema: Obj, prefix: str = "") -> Iterator[str]:
    """Documented keys: a map (labels, annotations; no `properties` in the schema) is one key,
    even when its default is not empty."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        node = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and value and "properties" in node:
            yield from _leaves(value, node, f"{path}.")
        else:
            yield path


def test_every_value_is_documented_and_in_the_schema() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    documented = re.findall(r"^\s*## @param (\S+) \S", text, re.MULTILINE)
    values = yaml.safe_load(text)
    leaves = set(_leaves(values, _schema()))
    assert len(documented) == len(set(documented)), "a key is documented twice"
    assert set(documented) == leaves, {
        "undocumented": leaves - set(documented),
        "documented but absent": set(documented) - leaves,
    }
    schema_paths = {path for path, _ in _schema_nodes(_schema())}
    missing = {leaf for leaf in leaves if leaf not in schema_paths}
    assert not missing, f"values without a schema: {missing}"
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)  # the defaults satisfy the schema


# --- The Grafana dashboard ---------------------------------------------------------------------

DASHBOARD_FILE = CHART / "dashboards" / "breakwater.json"
DASHBOARD_UID = "breakwater-gateway"
# Every panel and query goes through the `datasource` variable: no data source uid is hard-coded.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The built-in "Annotations & Alerts" of every dashboard: Grafana's own, not a data source.
GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}
PANEL_TYPES = {"row", "stat", "state-timeline", "timeseries", "table"}
GRID_COLUMNS = 24
# Labels Prometheus puts on every series scraped through the ServiceMonitor (target labels); the
# dashboard's variables and its per-pod breakdown use these.
TARGET_LABELS = {"namespace", "service", "pod"}
FILTERS = {"namespace": ("=", "$namespace"), "service": ("=~", "$service"), "pod": ("=~", "$pod")}
BOUND_VARIABLE = "store_max_bytes"

SERIES = re.compile(r"\bbreakwater_[A-Za-z0-9_]+")
SELECTOR = re.compile(
    r"\b(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)\{(?P<matchers>[^}]*)\}(?P<range>\[[^\]]*\])?"
)
MATCHER = re.compile(r'(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>[^"]*)"')
BY_CLAUSE = re.compile(r"\bby\s*\((?P<labels>[^)]*)\)")
VARIABLE_USE = re.compile(r"\$\{?(?P<name>[A-Za-z0-9_]+)")


@functools.cache
def exported_series() -> dict[str, tuple[str, frozenset[str]]]:
    """Series name -> (metric type, label names), from a live registry of the gateway's own.

    Every labelled metric gets one sample first, so the exposition lists every series name the
    gateway can export (counters with `_total`, the histogram with `_bucket`, `_count`, `_sum`)
    with its labels."""
    metrics = Metrics()
    metrics.watch(lambda: BreakerState.closed, lambda: 0, lambda: 0)
    metrics.event_accepted("orders", "published")
    metrics.event_rejected("orders", "invalid_payload")
    metrics.event_replayed("orders")
    metrics.deprecated_event("orders")
    metrics.repeat("orders", "http")
    metrics.delivery_withdrawn("orders")
    metrics.watch_idempotency(lambda: 0, lambda: 0.0)
    metrics.watch_consumers(lambda: {"breakwater.in.orders": "active"})
    metrics.topology("outbound", [Mismatch("exchange", "breakwater.events", "differs", "costs")])
    for path in DeliveryPath:
        metrics.published("orders", 0.01, path)
    text = generate_latest(metrics.registry).decode()
    series: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.samples, f"{family.name} exported no sample"
        for sample in family.samples:
            series[sample.name] = (family.type, frozenset(sample.labels))
    return series


def dashboard_values(variant: str) -> Obj:
    found: Obj = variant_values(variant).get("metrics", {}).get("grafanaDashboard", {})
    return found


def load_dashboard() -> Obj:
    loaded: Obj = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def dashboard_with_bound(bound: int) -> Obj:
    """The dashboard file as the chart ships it: the store bound variable holds config.storeMaxBytes."""
    dashboard = load_dashboard()
    (variable,) = [v for v in variables(dashboard) if v["name"] == BOUND_VARIABLE]
    value = str(bound)
    variable["query"] = value
    variable["current"] = {"selected": False, "text": value, "value": value}
    variable["options"] = [{"selected": True, "text": value, "value": value}]
    return dashboard


def variables(dashboard: Obj) -> list[Obj]:
    found: list[Obj] = dashboard["templating"]["list"]
    return found


def panels(dashboard: Obj) -> list[Obj]:
    """Every panel, the ones inside collapsed rows too."""
    out: list[Obj] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_queries(dashboard: Obj) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every Prometheus annotation."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def variable_queries(dashboard: Obj) -> Iterator[tuple[str, str]]:
    for variable in variables(dashboard):
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["query"]["query"]
            yield f"variable {variable['name']} (definition)", variable["definition"]


def all_queries(dashboard: Obj) -> list[tuple[str, str]]:
    return [*panel_queries(dashboard), *variable_queries(dashboard)]


def walk(node: Any) -> Iterator[Obj]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def rendered_dashboard(cm: Obj) -> Obj:
    loaded: Obj = json.loads(cm["data"][DASHBOARD_KEY])
    return loaded


def chart_store_bound(variant_overrides: Obj) -> int:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    bound = variant_overrides.get("config", {}).get("storeMaxBytes")
    return int(bound if bound is not None else defaults["config"]["storeMaxBytes"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_dashboard_configmap_renders_only_when_enabled(variant: str) -> None:
    objs = objects(variant)
    wanted = dashboard_values(variant)
    found = [o for o in objs if is_dashboard(o)]
    if not wanted.get("enabled", False):
        assert not found
        return
    (cm,) = found
    assert cm["metadata"]["name"] == f"{fullname(variant)}-grafana-dashboard"
    assert cm["metadata"]["namespace"] == (wanted.get("namespace") or NAMESPACE)
    labels = cm["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1"  # the Grafana sidecar's default label
    assert labels.items() >= wanted.get("labels", {}).items()
    assert labels["app.kubernetes.io/instance"] == RELEASE
    annotations = cm["metadata"].get("annotations", {})
    assert annotations.items() >= wanted.get("annotations", {}).items()
    assert set(cm["data"]) == {DASHBOARD_KEY}
    # The file as it is, with this release's store bound in its variable.
    bound = chart_store_bound(variant_values(variant))
    assert rendered_dashboard(cm) == dashboard_with_bound(bound)


def test_at_least_one_variant_ships_the_dashboard() -> None:
    assert any(dashboard_values(v).get("enabled") for v in VARIANTS)


def test_dashboard_configmap_follows_its_values() -> None:
    manifests = render_raw(
        {
            "commonLabels": {"team": "platform"},
            "config": {"storeMaxBytes": 17179869184},
            "metrics": {
                "grafanaDashboard": {
                    "enabled": True,
                    "namespace": "grafana",
                    "labels": {"grafana_dashboard": "breakwater", "team": "observability"},
                    "annotations": {"grafana_folder": "Gateways"},
                }
            },
        }
    )
    text = manifests["breakwater/templates/grafana-dashboard-configmap.yaml"]
    cm = yaml.safe_load(text)
    assert is_dashboard(cm)
    assert cm["metadata"]["namespace"] == "grafana"
    labels = cm["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "breakwater"
    # The object's own label wins over the common one, and is written once.
    assert labels["team"] == "observability"
    assert text.count("\n    team: ") == 1
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Gateways"
    assert rendered_dashboard(cm) == dashboard_with_bound(17179869184)
    kubernetes_validate.validate(cm, KUBERNETES_VERSION, strict=True)
    # A ConfigMap holds at most 1 MiB.
    assert len(text.encode()) < 1024 * 1024
    notes = manifests["breakwater/templates/NOTES.txt"]
    assert "grafana/bw-breakwater-grafana-dashboard" in notes
    assert "WARNING: metrics.serviceMonitor.enabled is false" in notes


def test_dashboard_default_bound_is_the_charts() -> None:
    (variable,) = [v for v in variables(load_dashboard()) if v["name"] == BOUND_VARIABLE]
    assert variable["query"] == str(chart_store_bound({}))
    assert variable["current"]["value"] == variable["query"]


def test_dashboard_structure_is_sane() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == DASHBOARD_UID
    assert len(dashboard["uid"]) <= 40
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard.get("id") is None  # Grafana assigns it
    assert "__inputs" not in dashboard  # an export for manual import, which the sidecar cannot fill
    all_panels = panels(dashboard)
    assert all_panels
    ids = [p["id"] for p in all_panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    cells: dict[tuple[int, int], int] = {}
    for panel in all_panels:
        where = f"panel {panel['id']}"
        assert panel["type"] in PANEL_TYPES, f"{where}: type {panel['type']}"
        assert panel.get("title", "").strip(), f"{where} has no title"
        assert "gridPos" in panel, f"{where} has no gridPos"
        grid = panel["gridPos"]
        assert set(grid) >= {"h", "w", "x", "y"}, f"{where}: gridPos {grid}"
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), where
        assert min(grid["w"], grid["h"]) > 0, f"{where} has no area"
        assert min(grid["x"], grid["y"]) >= 0, f"{where} is off the grid"
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, f"{where} is wider than the grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel["id"])
                assert other == panel["id"], f"{where} overlaps panel {other}"
        if panel["type"] == "row":
            assert not panel.get("targets"), f"{where}: a row queries nothing"
            assert grid["w"] == GRID_COLUMNS
        else:
            assert panel.get("targets"), f"{where} has no query"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), f"{where}: refIds are not unique"
            assert all(t.get("expr", "").strip() for t in panel["targets"]), where


def test_every_panel_queries_through_the_datasource_variable() -> None:
    dashboard = load_dashboard()
    by_name = {v["name"]: v for v in variables(dashboard)}
    source = by_name["datasource"]
    assert source["type"] == "datasource"
    assert source["query"] == "prometheus"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        where = f"panel {panel['id']} {panel['title']!r}"
        assert panel["datasource"] == DATASOURCE, where
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, where
    for variable in variables(dashboard):
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    for annotation in dashboard["annotations"]["list"]:
        expected = GRAFANA_BUILTIN if annotation.get("builtIn") else DATASOURCE
        assert annotation["datasource"] == expected, annotation["name"]
    # No data source uid anywhere but the variable (and Grafana's built-in annotations).
    for node in walk(dashboard):
        if "datasource" in node and isinstance(node["datasource"], dict):
            assert node["datasource"] in (DATASOURCE, GRAFANA_BUILTIN), node["datasource"]
    assert "DS_" not in json.dumps(dashboard)


def test_dashboard_variables_are_defined_and_filter_every_query() -> None:
    dashboard = load_dashboard()
    names = {v["name"] for v in variables(dashboard)}
    assert {"datasource", "namespace", "service", "pod", BOUND_VARIABLE} <= names
    by_name = {v["name"]: v for v in variables(dashboard)}
    for name in ("service", "pod"):
        # "All" must match every value: a regex, so a multi-value selection works too.
        assert by_name[name]["multi"], name
        assert by_name[name]["includeAll"], name
        assert by_name[name]["allValue"] == ".*"
    for _, text in all_queries(dashboard):
        for use in VARIABLE_USE.finditer(text):
            name = use["name"]
            assert name.startswith("__") or name in names, f"undefined variable ${name}: {text}"
    # Every series a panel or annotation reads is narrowed to the chosen namespace, release and pods.
    for where, expr in panel_queries(dashboard):
        selectors = list(SELECTOR.finditer(expr))
        for selector in selectors:
            matchers = {
                m["label"]: (m["op"], m["value"]) for m in MATCHER.finditer(selector["matchers"])
            }
            for label, wanted in FILTERS.items():
                assert matchers.get(label) == wanted, f"{where}: {selector[0]} lacks {label}"
        named = SERIES.findall(expr)
        assert len(named) == len([s for s in selectors if s["name"].startswith("breakwater_")]), (
            f"{where}: a breakwater series without a selector: {expr}"
        )


def test_dashboard_reads_only_series_the_gateway_exports() -> None:
    dashboard = load_dashboard()
    series = exported_series()
    used: set[str] = set()
    for where, expr in all_queries(dashboard):
        for name in SERIES.findall(expr):
            assert name in series, (
                f"{where}: {name} is not exported by app/operations/metrics.py ({expr})"
            )
            used.add(name)
        for selector in SELECTOR.finditer(expr):
            name = selector["name"]
            if name not in series:
                continue
            kind, labels = series[name]
            for matcher in MATCHER.finditer(selector["matchers"]):
                assert matcher["label"] in labels | TARGET_LABELS, (
                    f"{where}: {name} has no label {matcher['label']}"
                )
            # Counters and the histogram's series are read as rates over Grafana's rate interval;
            # gauges as they are.
            if kind in {"counter", "histogram"}:
                assert selector["range"] == "[$__rate_interval]", f"{where}: {selector[0]}"
                assert re.search(r"\brate\(\s*$", expr[: selector.start()]), f"{where}: {expr}"
            else:
                assert selector["range"] is None, f"{where}: a gauge as a range: {selector[0]}"
        # Aggregations keep labels the series have (or `le`, for the histogram's quantiles).
        available = set().union(*(series[n][1] for n in SERIES.findall(expr) if n in series))
        for clause in BY_CLAUSE.finditer(expr):
            for label in (part.strip() for part in clause["labels"].split(",")):
                assert label in available | TARGET_LABELS, f"{where}: by {label}: {expr}"
    # And every series family of the gateway is on the dashboard.
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in series}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    assert families == shown, f"not on the dashboard: {families - shown}"


def test_dashboard_label_values_are_the_gateways() -> None:
    known = {
        "status": {"published", "stored"},
        "path": {p.value for p in DeliveryPath},
    }
    for where, expr in panel_queries(load_dashboard()):
        for selector in SELECTOR.finditer(expr):
            for matcher in MATCHER.finditer(selector["matchers"]):
                if matcher["label"] in known:
                    assert matcher["value"] in known[matcher["label"]], f"{where}: {matcher[0]}"


def _queries_of(panel: Obj) -> str:
    return "\n".join(t["expr"] for t in panel.get("targets", []))


def _mapping_texts(mappings: list[Obj]) -> dict[str, str]:
    texts = {}
    for mapping in mappings:
        assert mapping["type"] == "value"
        for value, result in mapping["options"].items():
            texts[value] = result["text"]
    return texts


def test_breaker_panels_name_the_states() -> None:
    dashboard = load_dashboard()
    breaker = [p for p in panels(dashboard) if "breakwater_breaker_state" in _queries_of(p)]
    assert {"stat", "state-timeline", "table"} <= {p["type"] for p in breaker}
    states = {str(value): state.value for state, value in BREAKER_STATE_VALUES.items()}
    colours = {"closed": "green", "half_open": "orange", "open": "red"}
    for panel in breaker:
        config = panel["fieldConfig"]
        if panel["type"] == "table":
            (override,) = [o for o in config["overrides"] if o["matcher"]["options"] == "Breaker"]
            properties = {p["id"]: p["value"] for p in override["properties"]}
            mappings = properties["mappings"]
        else:
            mappings = config["defaults"]["mappings"]
        assert _mapping_texts(mappings) == states, panel["title"]
        for options in (m["options"] for m in mappings):
            for value, result in options.items():
                assert result["color"] == colours[states[value]], panel["title"]


def test_dashboard_has_what_on_call_needs() -> None:
    dashboard = load_dashboard()
    queries = {p["id"]: _queries_of(p) for p in panels(dashboard)}

    def grouped(metric: str, *labels: str) -> bool:
        wanted = ", ".join(labels)
        return any(metric in q and f"by ({wanted})" in q for q in queries.values())

    assert grouped("breakwater_events_accepted_total", "status")
    assert grouped("breakwater_events_accepted_total", "channel")
    assert grouped("breakwater_events_rejected_total", "reason")
    assert grouped("breakwater_events_replayed_total", "channel")
    assert grouped("breakwater_store_depth", "pod")
    assert grouped("breakwater_store_bytes", "pod")
    # Store bytes against the bound.
    assert any(
        "breakwater_store_bytes" in q and f"${BOUND_VARIABLE}" in q for q in queries.values()
    )
    # Publish latency quantiles for each path, from the histogram.
    for path in DeliveryPath:
        for quantile in ("0.5", "0.95", "0.99"):
            assert any(
                f"histogram_quantile({quantile}, " in q
                and "breakwater_publish_seconds_bucket" in q
                and f'path="{path.value}"' in q
                for q in queries.values()
            ), f"no p{quantile} for path {path.value}"
    # A per-pod breakdown: the panels under the "Per pod" row aggregate by pod.
    top = dashboard["panels"]
    (row_index,) = [i for i, p in enumerate(top) if p["type"] == "row" and p["title"] == "Per pod"]
    per_pod = top[row_index + 1 :]
    assert len(per_pod) >= 4
    for panel in per_pod:
        assert panel["type"] != "row"
        for target in panel["targets"]:
            clauses = BY_CLAUSE.findall(target["expr"])
            assert clauses, f"{panel['title']}: {target['expr']}"
            assert all("pod" in c for c in clauses), f"{panel['title']}: {target['expr']}"


def test_the_schema_takes_the_channel_names_the_gateway_takes() -> None:
    """A name the chart accepts but the gateway refuses would fail only at start, in the pod."""
    schema: Obj = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    name = schema["properties"]["catalog"]["properties"]["channels"]["items"]["properties"]["name"]
    assert name["maxLength"] == MAX_NAME_LENGTH
    assert name["pattern"] == NAME_PATTERN.pattern
