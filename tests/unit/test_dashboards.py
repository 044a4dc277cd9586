"""The chart's Grafana dashboard queries only metrics that exist, and the kube-state-metrics config reads real fields.

A dashboard panel on a misspelt metric shows "No data", the same as a quiet operator;
so every metric name in every PromQL expression of the dashboard must be one that
bluegreen.metrics registers or that the chart's kube-state-metrics configuration makes
kube-state-metrics export (named by kube-state-metrics' own rule). Every expression must
also parse as PromQL: Prometheus' promtool checks them as recording rules.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from bluegreen.api import spec as api
from bluegreen.api.status import Phase
from bluegreen.metrics import UpgradeMetrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bluegreen"
DASHBOARD = CHART / "dashboards" / "bluegreen.json"
KSM_CONFIG = CHART / "kube-state-metrics" / "clusterupgrades.yaml"
CRD = ROOT / "crds" / "bluegreen.io_clusterupgrades.yaml"

# Grafana's variables, replaced by what they stand for before promtool reads an expression.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                     "$namespace": ".*", "$upgrade": ".*"}
PROMQL_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                             "unless", "offset", "atan2"})


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions, keywords or labels."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\boffset\s+-?[\w$]+", " ", text)  # offset 5m
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", text)  # numbers
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        followed_by_call = re.match(r"\s*\(", text[match.end():]) is not None
        if not followed_by_call and match.group() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def dashboard_expressions(dashboard: dict[str, Any]) -> Iterator[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)  # Grafana's, not PromQL: its selector is
            assert found, query
            yield found.group(1)


def operator_metric_names() -> set[str]:
    """Every series name bluegreen.metrics can expose, with the suffixes of counters and histograms."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",)}
    return {family.name + suffix for family in UpgradeMetrics().registry.collect()
            for suffix in suffixes[family.type]}


def ksm_metric_names(config: dict[str, Any]) -> set[str]:
    """Names as kube-state-metrics builds them: the resource's metricNamePrefix (kube_customresource when
    unset; nothing when empty) and the metric's name, joined by an underscore."""
    names = set()
    for resource in config["spec"]["resources"]:
        prefix = resource.get("metricNamePrefix", "kube_customresource")
        for metric in resource["metrics"]:
            names.add("_".join(part for part in (prefix, metric["name"]) if part))
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def ksm_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(KSM_CONFIG.read_text())
    return loaded


def test_metric_names_are_told_from_functions_labels_and_ranges() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, phase) (increase(a_bucket{name=~"x", phase="Failed"}[7d])))'
            ' / on (namespace) group_left (name) b > 0 and time() - c offset 5m')
    assert metric_names(expr) == {"a_bucket", "b", "c"}
    assert metric_names('sum(rate(x_total{job="y"}[$__rate_interval])) * 1e3') == {"x_total"}


def test_every_metric_the_dashboard_queries_is_exported(dashboard: dict[str, Any], ksm_config: dict[str, Any]) -> None:
    exported = operator_metric_names() | ksm_metric_names(ksm_config)
    queried = {name for expr in dashboard_expressions(dashboard) for name in metric_names(expr)}
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, f"queried but exported by neither: {sorted(queried - exported)}"


def test_the_dashboard_shows_every_operator_metric(dashboard: dict[str, Any]) -> None:
    queried = {name for expr in dashboard_expressions(dashboard) for name in metric_names(expr)}
    families = {family.name for family in UpgradeMetrics().registry.collect()}
    shown = {family for family in families if any(name.startswith(family) for name in queried)}
    assert shown == families, f"on no panel: {sorted(families - shown)}"


def test_kube_state_metrics_names_follow_its_prefix_rule() -> None:
    def config(**resource: Any) -> dict[str, Any]:
        return {"spec": {"resources": [{**resource, "metrics": [{"name": "uptime"}]}]}}

    assert ksm_metric_names(config()) == {"kube_customresource_uptime"}
    assert ksm_metric_names(config(metricNamePrefix="myteam_foos")) == {"myteam_foos_uptime"}
    assert ksm_metric_names(config(metricNamePrefix="")) == {"uptime"}


def test_every_dashboard_expression_is_valid_promql(dashboard: dict[str, Any], tmp_path: pathlib.Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; hack/install-system-deps.sh)")
    rules = []
    for index, expr in enumerate(dashboard_expressions(dashboard)):
        for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
            expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_kube_state_metrics_reads_the_clusterupgrade_and_fields_its_schema_has(ksm_config: dict[str, Any]) -> None:
    crd = yaml.safe_load(CRD.read_text())
    (resource,) = ksm_config["spec"]["resources"]
    assert ksm_config["kind"] == "CustomResourceStateMetrics"
    assert resource["groupVersionKind"] == {"group": api.GROUP, "version": api.VERSION, "kind": api.KIND}
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == api.VERSION)["schema"]["openAPIV3Schema"]

    def exists(path: list[str]) -> bool:
        node = schema
        for key in path:
            if key == "metadata":
                return True  # ObjectMeta: not in the CRD's schema, always served
            node = (node.get("properties") or {}).get(key)
            if node is None:
                return False
        return True

    paths = [path for path in resource["labelsFromPath"].values()]
    for metric in resource["metrics"]:
        each = metric["each"]
        paths.append(each[each["type"][0].lower() + each["type"][1:]]["path"])
    missing = [path for path in paths if not exists(path)]
    assert not missing, f"not in the ClusterUpgrade schema: {missing}"
    phases = next(m for m in resource["metrics"] if m["each"]["type"] == "StateSet")["each"]["stateSet"]["list"]
    assert phases == [phase.value for phase in Phase]


@pytest.mark.parametrize("template", ["dashboard-configmap.yaml", "kube-state-metrics-configmap.yaml"])
def test_the_chart_ships_them_from_files_it_has_behind_values_it_documents(template: str) -> None:
    text = (CHART / "templates" / template).read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    files = re.findall(r'\.Files\.Get "([^"]+)"', text)
    assert files and all((CHART / path).is_file() for path in files), files
    for reference in re.findall(r"\.Values\.([\w.]+)", text):
        node: Any = values
        for key in reference.split("."):
            assert isinstance(node, dict) and key in node, f".Values.{reference} is not in values.yaml"
            node = node[key]
    off = re.search(r"\{\{-? if \.Values\.([\w.]+) \}\}", text)
    assert off is not None, "shipped only when asked"
    enabled: Any = values
    for key in off.group(1).split("."):
        enabled = enabled[key]
    assert enabled is False
