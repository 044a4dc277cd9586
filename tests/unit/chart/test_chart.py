"""charts/bluegreen as Helm renders it (Helm's own engine, tests/fixtures/helm.py): what a cluster would get."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest
import yaml

from bluegreen.settings import OperatorSettings
from tests.fixtures import helm

REPO = pathlib.Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "bluegreen"


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = helm.find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    operator: dict[str, Any] = containers[0]
    return operator


def env_of(operator: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in operator.get("env", [])}


def port(operator: dict[str, Any], name: str) -> int:
    ports = {item["name"]: item["containerPort"] for item in operator["ports"]}
    return ports[name]


def test_the_chart_lints_clean_with_defaults_and_with_every_option_on() -> None:
    everything = {"replicaCount": 3, "podDisruptionBudget": {"enabled": True},
                  "metrics": {"serviceMonitor": {"enabled": True}}, "dashboards": {"enabled": True},
                  "kubeStateMetrics": {"configMap": {"enabled": True}}, "watchNamespace": "fleet"}
    for values in ({}, everything):
        report = helm.lint(values)
        assert report["errors"] == []
        # Severity 1 is INFO (an icon is recommended); warnings (2) and errors (3+) fail.
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], values


def test_the_operator_runs_as_non_root_on_a_read_only_root_with_resources() -> None:
    objects = helm.render()
    pod = helm.find(objects, "Deployment")["spec"]["template"]["spec"]
    operator = container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = operator["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # Git mode's clones and credentials, and Python's temporary files, go to a writable /tmp.
    mounts = {mount["mountPath"]: mount["name"] for mount in operator["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert env_of(operator)["PYTHONDONTWRITEBYTECODE"] == "1"
    assert operator["resources"]["requests"]["cpu"] and operator["resources"]["requests"]["memory"]
    assert operator["resources"]["limits"]["memory"]


def test_the_pod_runs_as_the_user_the_image_declares() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\d+)\s*$", dockerfile, flags=re.MULTILINE)
    pod = helm.find(helm.render(), "Deployment")["spec"]["template"]["spec"]
    assert users and int(users[-1]) == pod["securityContext"]["runAsUser"]


def test_extra_volumes_reach_the_operator_for_a_private_ca() -> None:
    objects = helm.render({
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/bluegreen/ca", "readOnly": True}],
        "env": [{"name": "AWS_CA_BUNDLE", "value": "/etc/bluegreen/ca/ca.crt"}],
    })
    pod = helm.find(objects, "Deployment")["spec"]["template"]["spec"]
    operator = container(objects)
    assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
    assert {"name": "ca", "mountPath": "/etc/bluegreen/ca", "readOnly": True} in operator["volumeMounts"]
    assert {"name": "tmp", "mountPath": "/tmp"} in operator["volumeMounts"]
    assert env_of(operator)["AWS_CA_BUNDLE"] == "/etc/bluegreen/ca/ca.crt"
    with pytest.raises(helm.ChartError, match="mountPath"):
        helm.render({"extraVolumeMounts": [{"name": "ca"}]})


def test_the_probes_ask_the_health_endpoint_kopf_serves() -> None:
    operator = container(helm.render({"health": {"port": 9090}}))
    liveness = [arg for arg in operator["args"] if arg.startswith("--liveness=")]
    assert liveness == ["--liveness=http://0.0.0.0:9090/healthz"]
    assert port(operator, "health") == 9090
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_the_metrics_port_is_the_one_the_operator_reads_and_the_service_targets() -> None:
    objects = helm.render({"metrics": {"port": 9100, "service": {"port": 80}}})
    operator = container(objects)
    settings = OperatorSettings.from_env(env_of(operator))
    assert settings.metrics_port == port(operator, "metrics") == 9100
    service = helm.find(objects, "Service", "bluegreen-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 80, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = helm.find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_without_a_metrics_port_there_is_no_metrics_service_and_no_port() -> None:
    objects = helm.render({"metrics": {"port": 0}})
    operator = container(objects)
    assert OperatorSettings.from_env(env_of(operator)).metrics_port == 0
    assert "metrics" not in {item["name"] for item in operator["ports"]}
    assert [o for o in objects if o["kind"] == "Service"] == []


def test_the_service_monitor_scrapes_the_metrics_service_when_asked() -> None:
    assert [o for o in helm.render() if o["kind"] == "ServiceMonitor"] == []
    objects = helm.render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"},
                                                          "interval": "15s"}}})
    monitor = helm.find(objects, "ServiceMonitor")
    service = helm.find(objects, "Service", "bluegreen-metrics")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["bluegreen-system"]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                             "scrapeTimeout": "10s"}]
    with pytest.raises(helm.ChartError, match=r"metrics.serviceMonitor.enabled needs the metrics Service"):
        helm.render({"metrics": {"serviceMonitor": {"enabled": True}, "service": {"enabled": False}}})


def test_one_replica_runs_standalone_and_is_replaced_not_rolled() -> None:
    objects = helm.render()
    deployment = helm.find(objects, "Deployment")
    operator = container(objects)
    assert deployment["spec"]["replicas"] == 1
    assert "--standalone" in operator["args"]
    assert not [arg for arg in operator["args"] if arg.startswith("--peering")]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert [o for o in objects if o["apiVersion"].startswith("kopf.dev/")] == []


def test_more_replicas_meet_in_a_peering_object_the_chart_creates() -> None:
    objects = helm.render({"replicaCount": 2, "peering": {"lifetime": 20}})
    operator = container(objects)
    peering = helm.find(objects, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert f"--peering={peering['metadata']['name']}" in operator["args"]
    assert "--standalone" not in operator["args"]
    assert "--all-namespaces" in operator["args"]
    assert helm.find(objects, "Deployment")["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert OperatorSettings.from_env(env_of(operator)).peering_lifetime_seconds == 20
    # Its CRD comes with the chart (and crds/), or kopf would refuse to start with mandatory peering.
    crds = [yaml.safe_load(path.read_text()) for path in (CHART / "crds").glob("*.yaml")]
    assert {(c["spec"]["group"], c["spec"]["names"]["kind"], c["spec"]["scope"]) for c in crds} >= {
        ("kopf.dev", "ClusterKopfPeering", "Cluster"), ("kopf.dev", "KopfPeering", "Namespaced")}


def test_a_namespaced_operator_meets_in_a_kopf_peering_of_its_namespace() -> None:
    objects = helm.render({"replicaCount": 2, "watchNamespace": "fleet", "peering": {"name": "upgrades"}})
    operator = container(objects)
    peering = helm.find(objects, "KopfPeering")
    assert peering["metadata"] == {**peering["metadata"], "name": "upgrades", "namespace": "fleet"}
    assert {"--namespace=fleet", "--peering=upgrades"} <= set(operator["args"])
    assert "--all-namespaces" not in operator["args"]


def test_one_replica_can_still_ask_for_peering() -> None:
    objects = helm.render({"peering": {"enabled": True}})
    assert "--peering=bluegreen" in container(objects)["args"]
    helm.find(objects, "ClusterKopfPeering", "bluegreen")


def test_the_disruption_budget_is_optional_and_selects_the_operator() -> None:
    assert [o for o in helm.render() if o["kind"] == "PodDisruptionBudget"] == []
    objects = helm.render({"replicaCount": 2, "podDisruptionBudget": {"enabled": True}})
    budget = helm.find(objects, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["maxUnavailable"] == 1
    pod_labels = helm.find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_service_account_is_bound_to_the_cluster_role_and_used_by_the_pod() -> None:
    objects = helm.render(name="ops", namespace="upgrades")
    account = helm.find(objects, "ServiceAccount")
    binding = helm.find(objects, "ClusterRoleBinding")
    role = helm.find(objects, "ClusterRole")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": "upgrades"}]
    pod = helm.find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert not [o for o in helm.render({"rbac": {"create": False}}) if o["kind"].startswith("ClusterRole")]


@pytest.mark.parametrize(("values", "message"), [
    ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    ({"metrics": {"port": "8000"}}, "/metrics/port': got string, want integer"),
    ({"peering": {"lifetime": 0}}, "/peering/lifetime"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
])
def test_a_wrong_value_is_refused_naming_it(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.ChartError, match=re.escape(message)):
        helm.render(values)


def _leaves(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return set().union(*(_leaves(value, f"{prefix}{key}.") for key, value in node.items()))
    return {prefix.rstrip(".")}


def _schema_leaves(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Each value the schema describes; a free-form object (resources, podSecurityContext) is one value."""
    properties = schema.get("properties")
    if not properties:
        return {prefix.rstrip(".")}
    return set().union(*(_schema_leaves(value, f"{prefix}{key}.") for key, value in properties.items()))


def test_values_and_their_schema_describe_the_same_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    described = _schema_leaves(json.loads((CHART / "values.schema.json").read_text()))
    in_values = _leaves(values)
    # Every default sits at or under a value the schema describes, and every described value has a default.
    assert sorted(p for p in in_values if not any(p == d or p.startswith(f"{d}.") for d in described)) == []
    assert sorted(d for d in described if not any(p == d or p.startswith(f"{d}.") for p in in_values)) == []


def test_every_value_is_documented_in_the_readme() -> None:
    described = _schema_leaves(json.loads((CHART / "values.schema.json").read_text()))
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n### Chart values\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    missing = sorted(path for path in described if f"`{path}`" not in section)
    assert missing == [], "document these chart values in the README's 'Chart values' table"


def test_every_setting_the_operator_reads_from_its_environment_is_documented() -> None:
    sources = "\n".join(path.read_text() for path in (REPO / "operator" / "bluegreen").rglob("*.py")
                        if "sim" not in path.relative_to(REPO / "operator" / "bluegreen").parts)
    names = set(re.findall(r"\bBLUEGREEN_[A-Z_]+\b", sources))
    assert "BLUEGREEN_METRICS_PORT" in names
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n### Operator settings\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    assert sorted(name for name in names if f"`{name}`" not in section) == []
