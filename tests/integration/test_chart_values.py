"""The chart fits any cluster (issue 14): its ci/*-values.yaml files (defaults, HA, `global`, OpenShift-like,
every extra) lint strictly and pass a server-side dry run on the real plane under the `restricted` Pod
Security level; as a subchart; its alerts are valid PromQL that fire on the first rollback; its CRDs are
kept and left alone when someone else manages them; and the `helm test` check, run here against a real
operator process, passes on a live operator and fails otherwise.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.cli.main import build_parser
from modelledger.testing.access import ClusterAccess
from modelledger.testing.binaries import Binaries
from modelledger.testing.processes import free_port
from tests.helpers import eventually
from tests.integration.test_chart import CHART, RELEASE, helm
from tests.operator_process import OperatorProcess
from tests.scenario import V132, apply, model_deployment, versions

CI_VALUES = {
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*-values.yaml"))
}
MONITORING_APIS = (
    "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
)  # fmt: skip
MODELLEDGER_CRDS = {"modeldeployments.modelledger.io", "modelversions.modelledger.io"}
MODELLEDGER_CRDS |= {"modeldeploymentrequests.modelledger.io"}
ALERTS = {
    "ModelledgerRollback", "ModelledgerRuleBreached", "ModelledgerRuleErrors", "ModelledgerNoLeader",
    "ModelledgerSeveralLeaders", "ModelledgerEvaluationsStalled", "ModelledgerOperatorDown",
    "ModelledgerAuditSinkUnhealthy",
}  # fmt: skip
RUNBOOKS = "https://github.com/modelledger/modelledger/blob/main/docs/install.md#"


def render(*args: str, chart: Path = CHART, namespace: str = "default") -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(Binaries.locate().helm), "template", RELEASE, str(chart), "-n", namespace, *args],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, (kind, suffix, [d["metadata"]["name"] for d in found])
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = pod_spec(docs)["containers"][0]
    assert container["name"] == "operator"
    return container


def is_monitoring(doc: dict[str, Any]) -> bool:
    return str(doc["apiVersion"]).startswith("monitoring.coreos.com/")


def dry_run(plane: ClusterAccess, namespace: str, docs: list[dict[str, Any]]) -> None:
    """Server-side dry run of every object the plane serves (the Prometheus Operator's kinds are not),
    in a namespace enforcing the `restricted` Pod Security level (and warning for the Deployment's pods)."""
    served = [d for d in docs if not is_monitoring(d)]
    dry = plane.kubectl(
        "apply", "--dry-run=server", "--server-side", "--force-conflicts", "--field-manager=chart-test",
        "-n", namespace, "-f", "-", input=yaml.safe_dump_all(served),
    )  # fmt: skip
    assert dry.stdout.count("(server dry run)") == len(served), dry.stdout
    assert "PodSecurity" not in dry.stderr, dry.stderr


def restricted(plane: ClusterAccess, namespace: str) -> None:
    plane.kubectl(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip


def parse_run_args(container: dict[str, Any]) -> Any:
    """The container's args as the real `modelledger run` parses them (a SystemExit on an unknown flag)."""
    return build_parser().parse_args(container["args"])


# --- every ci/*-values.yaml: lint --strict, template, server-side dry run -----------------------------


def check_defaults(docs: list[dict[str, Any]]) -> None:
    pod = pod_spec(docs)
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert {
        d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"
    } == MODELLEDGER_CRDS
    container = operator_container(docs)
    assert "--pod-monitors" not in container["args"]
    assert container["livenessProbe"]["initialDelaySeconds"] == 15
    assert container["readinessProbe"]["periodSeconds"] == 10


def check_ha(docs: list[dict[str, Any]]) -> None:
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def check_global(docs: list[dict[str, Any]]) -> None:
    assert one(docs, "Deployment")["metadata"]["name"] == "modelledger"


def check_openshift(docs: list[dict[str, Any]]) -> None:
    for pod in (pod_spec(docs), one(docs, "Pod", "-test-health")["spec"]):
        context = pod["securityContext"]
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context), context
        assert context["runAsNonRoot"] is True
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator_container(docs)["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def check_extras(docs: list[dict[str, Any]]) -> None:
    deployment = one(docs, "Deployment")
    assert deployment["metadata"]["name"] == "ml-ledger"
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "ledger"
    for doc in docs:
        assert doc["metadata"]["labels"]["team"] == "ml-platform", doc["metadata"]["name"]
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert template["metadata"]["labels"]["cost-center"] == "4711"
    assert template["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}
    container = operator_container(docs)
    assert container["args"][-1] == "--prometheus-timeout=7"
    assert "--pod-monitors" in container["args"]
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]
    parsed = parse_run_args(container)
    assert parsed.pod_monitors is True
    assert parsed.prometheus_timeout == 7.0  # extraArgs come last and win
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"} in container["env"]
    assert {"name": "corporate-ca", "mountPath": "/etc/ssl/corporate", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "corporate-ca", "configMap": {"name": "corporate-ca"}} in template["spec"]["volumes"]
    assert [c["name"] for c in template["spec"]["containers"]] == ["operator", "audit-shipper"]
    assert container["ports"][0] == {"name": "health", "containerPort": 8081, "protocol": "TCP"}
    assert container["livenessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "health"},
        "initialDelaySeconds": 30, "periodSeconds": 15, "timeoutSeconds": 3, "failureThreshold": 5,
    }  # fmt: skip
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert container["readinessProbe"]["failureThreshold"] == 2
    assert container["securityContext"]["runAsNonRoot"] is True
    assert one(docs, "Service", "-health")["spec"]["ports"][0]["port"] == 8081
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "10s")
    assert endpoint["relabelings"][0]["targetLabel"] == "node"
    assert endpoint["metricRelabelings"][0]["regex"] == "python_gc_.*"
    rules = {r["alert"]: r for r in one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert set(rules) == ALERTS - {"ModelledgerRuleErrors"}
    assert rules["ModelledgerRollback"]["labels"] == {"severity": "page"}
    assert rules["ModelledgerRollback"]["annotations"]["runbook_url"] == (
        "https://runbooks.example.com/modelledger/rollback"
    )
    assert rules["ModelledgerNoLeader"]["annotations"]["runbook_url"] == RUNBOOKS + "modelledgernoleader"
    assert 'job="ml-ledger-metrics"' in rules["ModelledgerNoLeader"]["expr"]
    podmonitors = [
        rule
        for role in docs
        if role["kind"] == "ClusterRole" and role["metadata"]["name"] == "ml-ledger-operator"
        for rule in role["rules"]
        if "podmonitors" in rule["resources"]
    ]
    assert podmonitors == [
        {
            "apiGroups": ["monitoring.coreos.com"],
            "resources": ["podmonitors"],
            "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
        }
    ]
    for crd in (d for d in docs if d["kind"] == "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {}), "crds.keep=false"


CHECKS = {
    "defaults": check_defaults,
    "ha": check_ha,
    "global": check_global,
    "openshift": check_openshift,
    "extras": check_extras,
}


def test_every_ci_values_file_is_checked() -> None:
    assert set(CI_VALUES) == set(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_values_file_lints_strictly_and_passes_a_server_side_dry_run(
    plane: ClusterAccess, namespace: str, installed_crds: object, name: str
) -> None:
    values = CI_VALUES[name]
    linted = helm(plane, "lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in linted.stdout
    release = ["--set", "fullnameOverride=modelledger"] if name == "global" else []
    docs = render("-f", str(values), *release, *MONITORING_APIS, namespace=namespace)
    CHECKS[name](docs)
    # Every rendered argument is one `modelledger run` accepts.
    parse_run_args(operator_container(docs))
    restricted(plane, namespace)
    dry_run(plane, namespace, docs)


def test_as_a_subchart_with_globals(
    plane: ClusterAccess, namespace: str, installed_crds: object, tmp_path: Path
) -> None:
    """Helm hands a subchart the parent's `global` values: a schema without `global` fails the parent."""
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "modelledger")
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform",
                "version": "1.0.0",
                "dependencies": [{"name": "modelledger", "version": "0.1.0"}],
            }
        )
    )
    (parent / "values.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"imageRegistry": "registry.example.com", "clusterDomain": "cluster.local"},
                "modelledger": {"replicaCount": 2, "commonLabels": {"platform": "ml"}},
            }
        )
    )
    linted = helm(plane, "lint", "--strict", str(parent))
    assert "0 chart(s) failed" in linted.stdout, linted.stdout
    docs = render(chart=parent, namespace=namespace)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["platform"] == "ml"
    restricted(plane, namespace)
    dry_run(plane, namespace, docs)


# --- monitoring ----------------------------------------------------------------------------------------


def test_service_monitor_keeps_the_operators_namespace_label_by_default() -> None:
    docs = render("--set", "metrics.serviceMonitor.enabled=true", *MONITORING_APIS)
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}
    docs = render(
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.honorLabels=false"
    )
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"], "only where the API is served"
    docs = render(
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.honorLabels=false",
        *MONITORING_APIS,
    )  # fmt: skip
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["honorLabels"] is False


def test_pod_monitors_rbac_and_flag_only_when_enabled() -> None:
    def podmonitor_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            rule
            for doc in docs
            if doc["kind"] in ("ClusterRole", "Role")
            for rule in doc["rules"]
            if "monitoring.coreos.com" in rule.get("apiGroups", [])
        ]

    off = render()
    assert podmonitor_rules(off) == []
    assert "--pod-monitors" not in operator_container(off)["args"]
    on = render("--set", "podMonitors.enabled=true", "--set", "watchNamespaces[0]=ml-prod")
    [rule] = podmonitor_rules(on)
    assert rule["resources"] == ["podmonitors"]
    assert rule["verbs"] == ["get", "list", "watch", "create", "patch", "update", "delete"]
    # The namespaced ClusterRole, bound in the watched namespaces only.
    role = next(d for d in on if d["kind"] == "ClusterRole" and rule in d["rules"])
    bindings = [d for d in on if d.get("roleRef", {}).get("name") == role["metadata"]["name"]]
    assert [(b["kind"], b["metadata"]["namespace"]) for b in bindings] == [("RoleBinding", "ml-prod")]
    assert parse_run_args(operator_container(on)).pod_monitors is True


def rules_file(tmp_path: Path, *args: str) -> tuple[Path, dict[str, dict[str, Any]]]:
    rule = one(
        render("--set", "metrics.prometheusRule.enabled=true", *args, *MONITORING_APIS), "PrometheusRule"
    )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path, {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_alerts_are_valid_toggleable_and_carry_runbooks(tmp_path: Path) -> None:
    path, alerts = rules_file(tmp_path)
    assert set(alerts) == ALERTS
    for name, alert in alerts.items():
        assert alert["annotations"]["runbook_url"] == RUNBOOKS + name.lower()
        assert alert["labels"]["severity"] in ("warning", "critical")
    checked = promtool("check", "rules", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    # Runbook anchors exist in docs/install.md (GitHub lower-cases headings into anchors).
    install = (CHART.parents[1] / "docs" / "install.md").read_text()
    for name in ALERTS:
        assert f"\n### {name}\n" in install, f"docs/install.md has no runbook section for {name}"

    _, fewer = rules_file(
        tmp_path,
        "--set", "metrics.prometheusRule.alerts.ModelledgerRollback.enabled=false",
        "--set", "metrics.prometheusRule.runbookBaseUrl=",
    )  # fmt: skip
    assert set(fewer) == ALERTS - {"ModelledgerRollback"}
    assert not [a for a in fewer.values() if "runbook_url" in a["annotations"]]
    none = ["--set", "metrics.prometheusRule.enabled=true", *MONITORING_APIS]
    for name in ALERTS:
        none += ["--set", f"metrics.prometheusRule.alerts.{name}.enabled=false"]
    assert not [d for d in render(*none) if d["kind"] == "PrometheusRule"], "no empty rule group"


def test_the_first_rollback_fires_the_alert_because_the_counter_starts_at_zero(tmp_path: Path) -> None:
    """promtool's rule unit test: a counter that exists at 0 (adapters/metrics.py) alerts on its first
    rollback; one that appears at 1, as it would without the pre-initialisation, never does."""
    path, alerts = rules_file(tmp_path)
    labels = 'namespace="ml-prod",deployment="{}",cause="AutomaticRollback"'
    (tmp_path / "test.yaml").write_text(
        yaml.safe_dump(
            {
                "rule_files": [path.name],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {
                                "series": f"modelledger_rollbacks_total{{{labels.format('fraud')}}}",
                                "values": "0 0 0 1 1 1",
                            },
                            {
                                "series": f"modelledger_rollbacks_total{{{labels.format('late')}}}",
                                "values": "_ _ _ 1 1 1",
                            },
                        ],
                        "alert_rule_test": [
                            {"eval_time": "2m", "alertname": "ModelledgerRollback", "exp_alerts": []},
                            {
                                "eval_time": "5m",
                                "alertname": "ModelledgerRollback",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {
                                            "severity": "warning",
                                            "namespace": "ml-prod",
                                            "deployment": "fraud",
                                            "cause": "AutomaticRollback",
                                        },
                                        "exp_annotations": {
                                            "runbook_url": RUNBOOKS + "modelledgerrollback",
                                            "summary": "ml-prod/fraud was rolled back (AutomaticRollback)",
                                            "description": "See `modelledger history fraud -n ml-prod`.",
                                        },
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        )
    )
    tested = promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "ModelledgerRollback" in alerts


# --- CRDs -----------------------------------------------------------------------------------------------


def test_crds_are_templated_kept_and_optional() -> None:
    crds = [d for d in render() if d["kind"] == "CustomResourceDefinition"]
    assert {c["metadata"]["name"] for c in crds} == MODELLEDGER_CRDS
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        generated = yaml.safe_load(
            (CHART.parents[1] / "crds" / f"{crd['spec']['names']['plural']}.yaml").read_text()
        )
        assert crd["spec"] == generated["spec"], "rendered as generated"
    assert not [d for d in render("--set", "crds.install=false") if d["kind"] == "CustomResourceDefinition"]


def test_crds_managed_elsewhere_are_left_alone(plane: ClusterAccess, installed_crds: object) -> None:
    """The session applied crds/ with kubectl: an install neither takes them over nor fails on them."""
    namespace = f"modelledger-{uuid.uuid4().hex[:6]}"
    installed = helm(
        plane, "install", RELEASE, str(CHART), "-n", namespace, "--create-namespace", "--dry-run=server",
        "--set", "admission.enabled=false", "--set", "rbac.userRoles.create=false",
    )  # fmt: skip
    manifest = installed.stdout.split("\nNOTES:")[0]
    kinds = [d["kind"] for d in yaml.safe_load_all(manifest.split("\nMANIFEST:", 1)[1]) if d]
    assert "Deployment" in kinds
    assert "CustomResourceDefinition" not in kinds
    assert "modeldeployments.modelledger.io" in installed.stdout.split("\nNOTES:")[1], "NOTES name them"


# --- helm test -------------------------------------------------------------------------------------------


def helm_test_command(*args: str) -> list[str]:
    pod = one(render(*args), "Pod", "-test-health")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    command: list[str] = container["command"]
    assert command[0] == "python"
    return command


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)  # a leader whose deployment loops stalled
        self.end_headers()
        self.wfile.write(b'{"stalled": ["ml-prod/fraud"]}')

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stalled_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


def test_helm_test_checks_the_health_endpoint_of_a_real_operator(
    plane: ClusterAccess,
    namespace: str,
    operator: OperatorProcess,
    stalled_endpoint: str,
) -> None:
    command = helm_test_command("--set", "health.port=8089")
    url, attempts = command[3], command[4]
    assert url == f"http://{RELEASE}-health.default.svc:8089/healthz", "through the -health Service"
    service = one(render("--set", "health.port=8089"), "Service", "-health")
    assert service["spec"]["ports"][0] == {
        "name": "health",
        "port": 8089,
        "targetPort": "health",
        "protocol": "TCP",
    }
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"

    def check(target: str, tries: str = attempts) -> subprocess.CompletedProcess[str]:
        # The pod's command, with this interpreter for `python` and a local URL for the Service's.
        argv = [sys.executable, *command[1:3], target, tries]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    operator.start()
    live = check(f"http://127.0.0.1:{operator.health_port}/healthz")
    assert live.returncode == 0, live.stdout + live.stderr
    assert "/healthz: 200" in live.stdout

    stalled = check(stalled_endpoint, "1")
    assert stalled.returncode == 1
    assert "503" in stalled.stderr
    refused = check(f"http://127.0.0.1:{free_port()}/healthz", "1")
    assert refused.returncode == 1
    assert "Connection refused" in refused.stderr

    # The same process exposes process_* series and a ModelDeployment's rollback counters at 0.
    body = operator.metrics()
    assert "\nprocess_cpu_seconds_total " in body
    assert "\nprocess_resident_memory_bytes " in body
    assert "python_gc_objects_collected_total" in body
    versions(plane, namespace)
    apply(plane, namespace, model_deployment(V132))
    labels = f'deployment="fraud-detector",namespace="{namespace}"'
    zero = f'modelledger_rollbacks_total{{cause="AutomaticRollback",{labels}}} 0.0'
    eventually(lambda: zero in operator.metrics(), 60, "the rollback counter at 0")
    for cause in ("ManualRollback", "Revocation"):
        assert zero.replace("AutomaticRollback", cause) in operator.metrics()
