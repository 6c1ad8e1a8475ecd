"""The Helm chart on the real plane: lint, server-side dry run, schema failures, and least privilege.

The operator image cannot run here (no container runtime: kwok fakes the kubelets), so the chart is
installed with replicaCount 0 and the operator runs as a local process under the chart's ServiceAccount
token: a full deploy → breach → automatic rollback with only the chart's RBAC proves it is enough.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.testing.access import ClusterAccess
from modelledger.testing.binaries import Binaries
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import Exporter
from tests.fixtures.health import capture, health
from tests.helpers import eventually
from tests.identities import service_account_kubeconfig
from tests.scenario import (
    V132,
    V140,
    apply,
    get,
    model_deployment,
    revoke,
    status,
    versions,
    wait_phase,
    wait_served,
    with_rules,
)

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelledger"
RELEASE = "modelledger"
PEERING = "modelledger-test"  # Kopf peering: only with leaderElection.enabled=false (the legacy HA)


def helm(plane: ClusterAccess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(Binaries.locate().helm), "--kubeconfig", str(plane.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def set_args(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


# --- lint, template, dry run -----------------------------------------------------------------------

VALUE_SETS = {
    "defaults": {},
    "ha-namespaced": {
        "replicaCount": "2",  # the Lease elects the leader: no peering needed
        "prometheus.url": "https://prometheus.monitoring:9090",
        "prometheus.bearerToken.secretName": "prometheus-token",
        "prometheus.ca.configMapName": "prometheus-ca",
        "auditLog.enabled": "true",
        "dashboard.enabled": "true",
        "metrics.serviceMonitor.enabled": "true",
        "metrics.prometheusRule.enabled": "true",
        "rbac.groupBindings[0].role": "release-manager",
        "rbac.groupBindings[0].group": "oidc:ml-release-managers",
    },
    "ha-clusterwide": {"replicaCount": "3", "rbac.userRoles.create": "false"},
    "ha-kopf-peering": {
        "replicaCount": "2",
        "leaderElection.enabled": "false",
        "peering.enabled": "true",
        "rbac.userRoles.create": "false",
    },
}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_and_template_pass_a_server_side_dry_run(
    plane: ClusterAccess, namespace: str, installed_crds: object, values: dict[str, str]
) -> None:
    if values.get("rbac.groupBindings[0].role"):
        values = {**values, "rbac.groupBindings[0].namespaces[0]": namespace}
    if values.get("replicaCount") == "2":
        values = {**values, "watchNamespaces[0]": namespace}
    # The peering objects need Kopf's CRDs to exist for a dry run (helm install creates them first).
    plane.kubectl("apply", "--server-side", "-f", str(CHART / "crds" / "kopf-peerings.yaml"))
    plane.wait_established("kopfpeerings.kopf.dev")
    plane.wait_established("clusterkopfpeerings.kopf.dev")
    linted = helm(plane, "lint", "--strict", str(CHART), *set_args(values))
    assert "0 chart(s) failed" in linted.stdout
    args = ("template", RELEASE, str(CHART), "-n", namespace, "--include-crds", *set_args(values))
    rendered = helm(plane, *args).stdout
    kinds = [doc["kind"] for doc in yaml.safe_load_all(rendered) if doc]
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole"} <= set(kinds)
    # Server-side, as ArgoCD's ServerSideApply=true does; forced because the session's CRDs were applied
    # by another field manager.
    dry = plane.kubectl(
        "apply", "--dry-run=server", "--server-side", "--force-conflicts", "--field-manager=chart-test",
        "-n", namespace, "-f", "-", input=rendered,
    )  # fmt: skip
    assert dry.stdout.count("(server dry run)") == len(kinds)


def render(*args: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [str(Binaries.locate().helm), "template", RELEASE, str(CHART), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def test_the_deployment_is_locked_down() -> None:
    docs = render()
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    rules = [
        rule
        for doc in docs
        if doc["kind"] == "ClusterRole" and doc["metadata"]["name"].startswith(RELEASE)
        for rule in doc["rules"]
    ]
    assert not [r for r in rules if "secrets" in r["resources"] or "*" in r["resources"] + r["verbs"]]
    # Secrets only in the release namespace's Role: read one by name, never list or watch.
    roles = [doc for doc in docs if doc["kind"] == "Role"]
    secret_rules = [r for role in roles for r in role["rules"] if "secrets" in r["resources"]]
    assert secret_rules
    for rule in secret_rules:
        assert not {"list", "watch", "*"} & set(rule["verbs"]), rule
        if {"get", "update", "patch", "delete"} & set(rule["verbs"]):
            assert rule["resourceNames"] == ["modelledger-audit-signing-key"], rule
    assert "--operator-namespace=default" in container["args"]


def test_monitoring_objects_only_where_the_prometheus_operator_is() -> None:
    wanted = ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true"]
    without = {d["kind"] for d in render(*wanted)}
    assert not without & {"ServiceMonitor", "PrometheusRule"}
    apis = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]
    apis += ["--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]
    docs = render(*wanted, *apis, "--set", "dashboard.enabled=true")
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == "metrics"
    alerts = {r["alert"] for r in by_kind["PrometheusRule"]["spec"]["groups"][0]["rules"]}
    assert "ModelledgerRollback" in alerts
    dashboard = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("dashboard")
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["modelledger.json"])["uid"] == "modelledger-overview"


def test_high_availability_uses_the_lease_a_budget_and_the_right_strategy() -> None:
    single = {d["kind"]: d for d in render()}
    assert single["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}, "never two at once"
    assert "PodDisruptionBudget" not in single
    args = single["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args
    assert "--leader-elect-resource-name=modelledger" in args
    assert not any(arg.startswith("--peering") for arg in args)
    env = single["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env

    docs = render("--set", "replicaCount=2", "--set", "peering.enabled=true")  # the Lease wins
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["Deployment"]["spec"]["strategy"]["type"] == "RollingUpdate"
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert not {"KopfPeering", "ClusterKopfPeering"} & set(by_kind)
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("leader-election"))
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["modelledger"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]

    legacy = render(
        "--set", "replicaCount=2", "--set", "peering.enabled=true", "--set", "leaderElection.enabled=false"
    )
    kinds = {d["kind"] for d in legacy}
    assert "ClusterKopfPeering" in kinds
    assert not any(d["kind"] == "Role" and d["metadata"]["name"].endswith("leader-election") for d in legacy)
    args = next(d for d in legacy if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert "--no-leader-elect" in args
    assert "--peering=modelledger" in args


# --- bad values --------------------------------------------------------------------------------------

BAD_VALUES = {
    "wrong-type": ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
    "unknown-key": ({"replicas": "2"}, "additional properties 'replicas' not allowed"),
    "unknown-nested-key": ({"prometheus.token": "abc"}, "additional properties 'token' not allowed"),
    "bad-enum": ({"logLevel": "LOUD"}, "logLevel"),
    "glob-namespace": ({"watchNamespaces[0]": "ml-*"}, "watchNamespaces"),
    "ha-without-election": (
        {"replicaCount": "2", "leaderElection.enabled": "false"},
        "replicaCount > 1 needs leaderElection.enabled=true (or peering.enabled=true)",
    ),
    "lease-shorter-than-deadline": (
        {"leaderElection.leaseDurationSeconds": "10"},
        "leaseDurationSeconds must be longer than renewDeadlineSeconds",
    ),
    "lease-name": ({"leaderElection.leaseName": "Not_A_Name"}, "leaderElection"),
}


@pytest.mark.parametrize(("values", "message"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_fail_with_a_clear_message(
    plane: ClusterAccess, namespace: str, values: dict[str, str], message: str
) -> None:
    args = set_args(values)
    installed = helm(
        plane, "install", "bad", str(CHART), "-n", namespace, "--dry-run=server", *args, check=False
    )
    assert installed.returncode != 0
    assert message in installed.stderr, installed.stderr
    # `helm lint` reports a template's fail() only as INFO, so check `helm template` (what GitOps runs).
    rendered = helm(plane, "template", "bad", str(CHART), *args, check=False)
    assert rendered.returncode != 0
    assert message in rendered.stderr, rendered.stderr


# --- least privilege: install, then run the operator as the chart's ServiceAccount -------------------


@pytest.fixture
def release(
    plane: ClusterAccess, namespace: str, installed_crds: object, prometheus: PrometheusServer
) -> Iterator[str]:
    """The chart installed (replicaCount 0) in a namespace of its own that it yields, watching `namespace`."""
    operator_ns = f"modelledger-{uuid.uuid4().hex[:6]}"
    values = {
        "replicaCount": "0",
        "watchNamespaces[0]": namespace,
        "prometheus.url": prometheus.url,
        "rbac.groupBindings[0].role": "viewer",
        "rbac.groupBindings[0].group": "oidc:ml-viewers",
        "rbac.groupBindings[0].namespaces[0]": namespace,
        "rbac.groupBindings[1].role": "editor",
        "rbac.groupBindings[1].group": "oidc:ml-engineers",
        "rbac.groupBindings[1].namespaces[0]": namespace,
        "rbac.groupBindings[2].role": "release-manager",
        "rbac.groupBindings[2].group": "oidc:ml-release-managers",
        "rbac.groupBindings[2].namespaces[0]": namespace,
        # The admission policies are cluster-scoped with fixed names: the session's identity guards
        # (conftest) and test_admission.py install them from this chart, so this release does not.
        "admission.enabled": "false",
    }
    helm(plane, "install", RELEASE, str(CHART), "-n", operator_ns, "--create-namespace", *set_args(values))
    try:
        yield operator_ns
    finally:
        helm(plane, "uninstall", RELEASE, "-n", operator_ns, "--wait", "--timeout=60s", check=False)
        plane.kubectl("delete", "namespace", operator_ns, "--wait=false", check=False)


class SandboxedOperator:
    """`modelledger run` as the chart's pod would run it (namespaced, leader election on a Lease in
    `--operator-namespace`), with a token kubeconfig."""

    def __init__(
        self,
        access: ClusterAccess,
        namespace: str,
        prometheus_url: str,
        log: Path,
        extra: list[str] | None = None,
    ) -> None:
        self.log = log
        liveness = free_port()
        argv = [
            sys.executable,
            "-m",
            "modelledger.cli.main",
            "run",
            f"--namespace={namespace}",
            f"--liveness=http://127.0.0.1:{liveness}/healthz",
            f"--metrics-address=127.0.0.1:{free_port()}",
            f"--prometheus-url={prometheus_url}",
            *(extra or []),
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=access.env())

        def live() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited {self.process.returncode}:\n{self.text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        eventually(live, 60, "operator liveness")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def forbidden(self) -> list[str]:
        # Kopf logs APIForbiddenError / "Not enough permissions"; the kubernetes client "(403)".
        signs = ("forbidden", "(403)", "not enough permissions")
        return [line for line in self.text().splitlines() if any(s in line.lower() for s in signs)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def can_i(plane: ClusterAccess, namespace: str, *args: str) -> bool:
    result = plane.kubectl("auth", "can-i", *args, "-n", namespace, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def test_roles_separate_rollback_requests_and_keep_secrets_out_of_reach(
    plane: ClusterAccess, namespace: str, release: str
) -> None:
    operator = f"--as=system:serviceaccount:{release}:{RELEASE}"
    for ns in (namespace, release, "default", "kube-system"):
        assert not can_i(plane, ns, "get", "secrets", operator), f"operator reads Secrets in {ns}"
        assert not can_i(plane, ns, "list", "secrets", operator), f"operator lists Secrets in {ns}"
        assert not can_i(plane, ns, "watch", "secrets", operator), f"operator watches Secrets in {ns}"
        assert not can_i(plane, ns, "list", "configmaps", operator), f"operator lists ConfigMaps in {ns}"
    # The audit signing key: its own Secret and public-key ConfigMap, in the release namespace only.
    assert can_i(plane, release, "get", "secret/modelledger-audit-signing-key", operator)
    assert not can_i(plane, release, "get", "secret/some-other-secret", operator)
    assert not can_i(plane, release, "update", "secret/modelledger-audit-signing-key", operator)
    assert can_i(plane, release, "create", "secrets", operator)
    assert can_i(plane, release, "patch", "configmap/modelledger-audit-keys", operator)
    assert not can_i(plane, release, "patch", "configmap/some-other-config", operator)
    # Leader election: its one Lease in the release namespace.
    assert can_i(plane, release, "get", "leases.coordination.k8s.io/modelledger", operator)
    assert can_i(plane, release, "update", "leases.coordination.k8s.io/modelledger", operator)
    assert can_i(plane, release, "create", "leases.coordination.k8s.io", operator)
    assert not can_i(plane, release, "update", "leases.coordination.k8s.io/other", operator)
    assert not can_i(plane, release, "delete", "leases.coordination.k8s.io/modelledger", operator)
    assert not can_i(plane, namespace, "create", "leases.coordination.k8s.io", operator)
    for ns in (namespace, "default"):
        assert not can_i(plane, ns, "get", "secret/modelledger-audit-signing-key", operator), ns
        assert not can_i(plane, ns, "create", "secrets", operator), ns
    assert not can_i(plane, "default", "list", "modeldeployments.modelledger.io", operator), "unwatched ns"
    for resource in ("modeldeployments", "modelversions", "modeldeploymentrequests"):
        assert can_i(
            plane, namespace, "patch", f"{resource}.modelledger.io", "--subresource=status", operator
        )
    assert can_i(plane, namespace, "watch", "modeldeploymentrequests.modelledger.io", operator)
    assert not can_i(plane, namespace, "create", "modeldeploymentrequests.modelledger.io", operator)
    # It checks that the identity guards are installed (cluster-scoped, read only).
    assert can_i(
        plane, namespace, "list", "validatingadmissionpolicies.admissionregistration.k8s.io", operator
    )
    assert not can_i(
        plane, namespace, "patch", "validatingadmissionpolicies.admissionregistration.k8s.io", operator
    )

    def person(group: str) -> tuple[str, str]:
        return ("--as=someone@example.com", f"--as-group={group}")

    request = ("create", "modeldeploymentrequests.modelledger.io")
    viewer, editor, manager = (
        person("oidc:ml-viewers"),
        person("oidc:ml-engineers"),
        person("oidc:ml-release-managers"),
    )
    assert can_i(plane, namespace, "list", "modeldeployments.modelledger.io", *viewer)
    assert can_i(plane, namespace, "list", "modeldeploymentrequests.modelledger.io", *viewer)
    assert not can_i(plane, namespace, *request, *viewer), "a viewer must not request a rollback"
    assert not can_i(plane, namespace, "patch", "modeldeployments.modelledger.io", *viewer)
    assert can_i(plane, namespace, "patch", "modeldeployments.modelledger.io", *editor)
    assert can_i(plane, namespace, "list", "modeldeploymentrequests.modelledger.io", *editor)
    assert not can_i(plane, namespace, *request, *editor), "an editor must not request a rollback"
    assert can_i(plane, namespace, *request, *manager), "a release manager requests rollbacks"
    assert can_i(plane, namespace, "delete", "modeldeploymentrequests.modelledger.io", *manager)
    assert not can_i(plane, namespace, "patch", "modeldeploymentrequests.modelledger.io", *manager)
    assert not can_i(plane, namespace, "patch", "modeldeployments.modelledger.io", *manager)
    assert not can_i(plane, "default", *request, *manager), "bound in its namespaces only"
    # Nobody but the operator writes status (the admission policy enforces it even beyond RBAC).
    for role in (viewer, editor, manager):
        for resource in ("modeldeployments", "modelversions", "modeldeploymentrequests"):
            for verb in ("patch", "update"):
                status_write = (verb, f"{resource}.modelledger.io", "--subresource=status")
                assert not can_i(plane, namespace, *status_write, *role), (role, resource, verb)
    # Aggregated into the built-in roles: a namespace `view` binding shows models too.
    view = plane.kubectl("get", "clusterrole", "view", "-o", "json").stdout
    assert "modeldeployments" in view
    assert "modeldeploymentrequests" in view


def phase_object(plane: ClusterAccess, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return get(plane, namespace, kind, name)


def check_health(
    plane: ClusterAccess, namespace: str, kind: str, name: str, fixture: str, expected: str
) -> dict[str, str]:
    """The Lua health of the live object, and the object captured as a fixture when asked to."""
    obj = phase_object(plane, namespace, kind, name)
    capture(fixture, obj)
    verdict = health(obj)
    assert verdict["status"] == expected, (fixture, verdict, obj.get("status"))
    return verdict


def test_the_charts_rbac_is_enough_for_an_automatic_rollback(
    plane: ClusterAccess,
    namespace: str,
    release: str,
    prometheus: PrometheusServer,
    exporter: Exporter,
    tmp_path: Path,
) -> None:
    access = service_account_kubeconfig(plane, release, RELEASE, tmp_path / "operator.kubeconfig")
    errors = exporter.gauge("test_error_rate", "errors per request", ("namespace", "deployment"))
    errors.labels(namespace, "fraud-detector").set(0.0)
    prometheus.wait_for_target(exporter.name, timeout=30)
    operator = SandboxedOperator(
        access,
        namespace,
        prometheus.url,
        tmp_path / "operator.log",
        extra=[f"--operator-namespace={release}"],  # as the chart's Deployment passes it
    )
    try:
        _deploy_breach_rollback(plane, namespace, errors)
        _other_phases(plane, namespace)
    except BaseException:
        sys.stderr.write(operator.text()[-6000:])
        raise
    finally:
        operator.stop()
    assert operator.forbidden() == [], "the chart's ClusterRole misses a permission"
    lease = json.loads(plane.kubectl("get", "lease", RELEASE, "-n", release, "-o", "json").stdout)
    assert lease["spec"]["leaseTransitions"] == 0, "the operator elected itself with the chart's rights"
    assert "holderIdentity" not in lease["spec"], "and released the Lease when it stopped"


def _deploy_breach_rollback(plane: ClusterAccess, namespace: str, errors: Any) -> None:
    versions(plane, namespace)
    apply(plane, namespace, with_rules(V132, bake="2s", **{"for": "1s"}))
    eventually(lambda: status(plane, namespace).stable_revision == 1, 60, "revision 1 stable")
    check_health(plane, namespace, "mv", V132, "modelversion-available", "Healthy")
    apply(plane, namespace, with_rules(V140, bake="1h", **{"for": "1s"}))
    wait_served(plane, namespace, V140, 2, timeout=60)
    wait_phase(plane, namespace, "Healthy", timeout=60)
    check_health(plane, namespace, "mdep", "fraud-detector", "modeldeployment-healthy", "Healthy")

    errors.labels(namespace, "fraud-detector").set(1.0)

    def rolled_back() -> bool:
        return any(e.cause.value == "AutomaticRollback" for e in status(plane, namespace).history)

    eventually(rolled_back, 90, "an AutomaticRollback history entry")
    st = wait_phase(plane, namespace, "RolledBack", timeout=60)
    top = st.history[0]
    assert (top.cause.value, top.version, top.rule) == ("AutomaticRollback", V132, "error-rate")
    assert st.quarantined == [V140]
    wait_served(plane, namespace, V132, top.revision, timeout=60)
    check_health(plane, namespace, "mdep", "fraud-detector", "modeldeployment-rolledback", "Degraded")


def _other_phases(plane: ClusterAccess, namespace: str) -> None:
    # Failed: the named version does not exist.
    missing = model_deployment("fraud-detector-9-9-9")
    missing["metadata"]["name"] = "missing-version"
    apply(plane, namespace, missing)
    eventually(lambda: _phase(plane, namespace, "missing-version") == "Failed", 60, "phase Failed")
    check_health(plane, namespace, "mdep", "missing-version", "modeldeployment-failed", "Degraded")

    # Progressing: pods that no node accepts never become available.
    pending = model_deployment(V132)
    pending["metadata"]["name"] = "unschedulable"
    pending["spec"]["template"] = {"nodeSelector": {"modelledger.io/no-such-node": "true"}}
    apply(plane, namespace, pending)
    eventually(lambda: _phase(plane, namespace, "unschedulable") == "Progressing", 60, "phase Progressing")
    check_health(plane, namespace, "mdep", "unschedulable", "modeldeployment-progressing", "Progressing")

    # Degraded: the served version is revoked and no stable, non-revoked revision is left.
    revoke(plane, namespace, V132, "failed the fairness audit")
    wait_phase(plane, namespace, "Degraded", timeout=60)
    check_health(plane, namespace, "mdep", "fraud-detector", "modeldeployment-degraded", "Degraded")
    eventually(
        lambda: get(plane, namespace, "mv", V132).get("status", {}).get("phase") == "Revoked", 30, "Revoked"
    )
    check_health(plane, namespace, "mv", V132, "modelversion-revoked", "Suspended")


def _phase(plane: ClusterAccess, namespace: str, name: str) -> str | None:
    phase: str | None = (get(plane, namespace, "mdep", name).get("status") or {}).get("phase")
    return phase
