"""The chart's identity guards on the real plane, exercised by real users (client certificates issued by
the CSR API, a ServiceAccount token), never by impersonation.

The policies are rendered from the chart (`helm template --show-only templates/admission-policies.yaml`).
The status-writers policy is bound only to this module's namespace (by a label), so the rest of the suite
is unaffected, and removed after the module. The requester and version-setter guards are the session's
(conftest's identity_guards, every namespace) where that fixture exists; otherwise this module installs
them too, bound to its namespace, and removes them afterwards (cluster-scoped, fixed names: one copy).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.testing.access import ClusterAccess
from modelledger.testing.binaries import Binaries
from tests.helpers import eventually
from tests.identities import Person, people, service_account_kubeconfig, who_am_i
from tests.scenario import V132, V140, example, model_deployment

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelledger"
RELEASE = "modelledger"
MAP_API = "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy"
SELECTOR_LABEL = "modelledger.io/admission-test"
SET_BY = "modelledger.io/version-set-by"
SET_BY_UID = "modelledger.io/version-set-by-uid"
SET_BY_GROUPS = "modelledger.io/version-set-by-groups"
SET_FOR = "modelledger.io/version-set-for"
VERSION_ANNOTATIONS = (SET_BY, SET_BY_UID, SET_BY_GROUPS, SET_FOR)
STATUS_DENIED = "only the modelledger operator (system:serviceaccount:"
POLICIES = ("modelledger-status-writers", "modelledger-requester", "modelledger-version-setter")


@dataclass(frozen=True)
class Guarded:
    """The module's namespace, bound to the chart's policies, and who acts in it."""

    namespace: str
    operator: ClusterAccess  # the operator's ServiceAccount token
    operator_username: str
    people: dict[str, Person]
    mutating: bool  # the cluster serves MutatingAdmissionPolicy: requests and versions are stamped


def helm_template(*args: str) -> str:
    return subprocess.run(
        [str(Binaries.locate().helm), "template", RELEASE, str(CHART), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def serves_mutating_policies(plane: ClusterAccess) -> bool:
    found = plane.kubectl("api-resources", "--api-group=admissionregistration.k8s.io", "-o", "wide")
    return any(
        line.split()[0] == "mutatingadmissionpolicies" and "admissionregistration.k8s.io/v1beta1" in line
        for line in found.stdout.splitlines()[1:]
    )


def get(namespace: str, kind: str, name: str, access: ClusterAccess) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        access.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout
    )
    return found


def version_annotations(plane: ClusterAccess, namespace: str, name: str) -> dict[str, str]:
    metadata = get(namespace, "mdep", name, plane)["metadata"]
    found: dict[str, str] = metadata.get("annotations") or {}
    return {k: v for k, v in found.items() if k in VERSION_ANNOTATIONS}


def apply_as(access: ClusterAccess, namespace: str, *documents: dict[str, Any], check: bool = True) -> Any:
    return access.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents), check=check
    )


def patch_status(access: ClusterAccess, namespace: str, kind: str, name: str, status: dict[str, Any]) -> Any:
    return access.kubectl(
        "patch", "-n", namespace, kind, name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}), check=False,
    )  # fmt: skip


def deployment(name: str, version: str, **annotation: str) -> dict[str, Any]:
    document = model_deployment(version)
    document["metadata"] = {"name": name, **({"annotations": annotation} if annotation else {})}
    return document


def request(name: str, action: str = "Retry", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeploymentRequest",
        "metadata": {"name": name},
        "spec": {"deployment": "fraud-detector", "action": action, **spec},
    }


def assert_refused(
    result: subprocess.CompletedProcess[str], message: str, *, ignore_case: bool = False
) -> None:
    assert result.returncode != 0, f"accepted: {result.stdout}"
    stderr = result.stderr.lower() if ignore_case else result.stderr
    assert message in stderr, result.stderr


def requester_of(person: Person) -> dict[str, Any]:
    """`spec.requester` as admission stamps it for a certificate user (no UID)."""
    return {"username": person.username, "uid": "", "groups": list(person.user_info_groups)}


def entry(revision: int, version: str, actor: str) -> dict[str, Any]:
    return {
        "revision": revision,
        "version": version,
        "cause": "Deploy",
        "at": "2026-01-01T00:00:00Z",
        "actor": actor,
        "hash": "sha256:" + "ab" * 32,
        "stable": True,
    }


# --- set-up ---------------------------------------------------------------------------------------------


def _escape(key: str) -> str:
    """A --set path segment for a key with dots (a label name)."""
    return key.replace(".", "\\.")


@pytest.fixture(scope="module")
def guarded(
    plane: ClusterAccess,
    installed_crds: object,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Guarded]:
    token = uuid.uuid4().hex[:8]
    namespace, operator_ns = f"admission-{token}", f"modelledger-{token}"
    mutating = serves_mutating_policies(plane)
    # Where the session installs the requester and version-setter guards for every namespace (conftest's
    # identity_guards), use those: they have the same fixed names. Otherwise install them here too.
    try:
        request.getfixturevalue("identity_guards")
        ours: tuple[str, ...] = ("modelledger-status-writers",)
    except pytest.FixtureLookupError:
        ours = POLICIES
    rendered = helm_template(
        "-n", operator_ns,
        "--show-only", "templates/admission-policies.yaml",
        "--show-only", "templates/rbac-users.yaml",
        *(["--api-versions", MAP_API] if mutating else []),
        "--set-string", f"admission.namespaceSelector.matchLabels.{_escape(SELECTOR_LABEL)}={token}",
        "--set", "rbac.groupBindings[0].role=release-manager",
        "--set", "rbac.groupBindings[0].group=ml-release-managers",
        "--set", f"rbac.groupBindings[0].namespaces[0]={namespace}",
        "--set", "rbac.groupBindings[1].role=editor",
        "--set", "rbac.groupBindings[1].group=ml-engineers",
        "--set", f"rbac.groupBindings[1].namespaces[0]={namespace}",
    )  # fmt: skip
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert ("MutatingAdmissionPolicy" in {d["kind"] for d in documents}) == mutating
    documents = [d for d in documents if "AdmissionPolicy" not in d["kind"] or d["metadata"]["name"] in ours]
    for ns, labels in (
        (operator_ns, {}),
        (namespace, {SELECTOR_LABEL: token, "modelledger.io/test": "true"}),
    ):
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
        plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    # The operator's ServiceAccount, with the rights on status the chart's ClusterRole gives it.
    plane.kubectl("create", "serviceaccount", RELEASE, "-n", operator_ns)
    plane.kubectl(
        "create", "role", "operator-status", "-n", namespace, "--verb=get,list,watch,patch",
        "--resource=modeldeployments.modelledger.io,modelversions.modelledger.io",
        "--resource=modeldeploymentrequests.modelledger.io",
        "--resource=modeldeployments.modelledger.io/status,modelversions.modelledger.io/status",
        "--resource=modeldeploymentrequests.modelledger.io/status",
    )  # fmt: skip
    plane.kubectl(
        "create", "rolebinding", "operator-status", "-n", namespace, "--role=operator-status",
        f"--serviceaccount={operator_ns}:{RELEASE}",
    )  # fmt: skip
    manifests = yaml.safe_dump_all(documents)
    try:
        plane.kubectl(
            "apply", "--server-side", "--field-manager=modelledger-tests", "-f", "-", input=manifests
        )
        directory = tmp_path_factory.mktemp("identities")
        operator = service_account_kubeconfig(plane, operator_ns, RELEASE, directory / "operator.kubeconfig")
        guard = Guarded(
            namespace=namespace,
            operator=operator,
            operator_username=f"system:serviceaccount:{operator_ns}:{RELEASE}",
            people=people(plane, directory),
            mutating=mutating,
        )
        apply_as(plane, namespace, example(V132), example(V140))
        _wait_until_enforced(plane, guard)
        yield guard
    finally:
        plane.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=manifests, check=False)
        for ns in (namespace, operator_ns):
            plane.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def _wait_until_enforced(plane: ClusterAccess, guard: Guarded) -> None:
    """Policies and bindings reach the apiserver's admission plugins through informers: wait for them."""
    ns = guard.namespace
    apply_as(plane, ns, deployment("probe", V132))

    def status_denied() -> bool:
        result = patch_status(plane, ns, "mdep", "probe", {"currentRevision": 1})
        return result.returncode != 0 and STATUS_DENIED in result.stderr

    eventually(status_denied, 60, "the status-writers policy denies the admin's status write")

    admin = who_am_i(plane)["username"]

    def requester_guarded() -> bool:
        name = f"probe-{uuid.uuid4().hex[:6]}"
        created = apply_as(plane, ns, request(name, requester={"username": "someone-else"}), check=False)
        if created.returncode == 0:
            stored = get(ns, "mdreq", name, plane)["spec"].get("requester") or {}
            plane.kubectl("delete", "-n", ns, "mdreq", name, check=False)
            return guard.mutating and stored.get("username") == admin
        return not guard.mutating and "spec.requester" in created.stderr

    eventually(requester_guarded, 60, "the requester policies stamp or refuse a false requester")

    def version_guarded() -> bool:
        name = f"probe-{uuid.uuid4().hex[:6]}"
        result = apply_as(plane, ns, deployment(name, V140, **{SET_BY: "someone-else"}), check=False)
        if result.returncode == 0:
            stamped = version_annotations(plane, ns, name).get(SET_BY)
            plane.kubectl("delete", "-n", ns, "mdep", name, check=False)
            return guard.mutating and stamped == admin
        return not guard.mutating and "version-set" in result.stderr

    eventually(version_guarded, 60, "the version-setter policies stamp or refuse a false setter")
    plane.kubectl("delete", "-n", ns, "mdep", "probe")


# --- only the operator writes status ------------------------------------------------------------------


def test_people_cannot_write_status_even_with_rbac_but_the_operator_can(
    plane: ClusterAccess, guarded: Guarded
) -> None:
    ns, alice, carol = guarded.namespace, guarded.people["alice"], guarded.people["carol"]
    # Broad RBAC, as a careless admin might grant: alice may patch ModelDeployment status, carol
    # (an editor) ModelVersion status.
    plane.kubectl(
        "create", "role", "too-broad-mdep-status", "-n", ns, "--verb=get,patch,update",
        "--resource=modeldeployments.modelledger.io/status",
    )  # fmt: skip
    plane.kubectl("create", "rolebinding", "too-broad-mdep-status", "-n", ns,
                  "--role=too-broad-mdep-status", "--user=alice")  # fmt: skip
    plane.kubectl(
        "create", "role", "too-broad-mv-status", "-n", ns, "--verb=get,patch,update",
        "--resource=modelversions.modelledger.io/status",
    )  # fmt: skip
    plane.kubectl("create", "rolebinding", "too-broad-mv-status", "-n", ns,
                  "--role=too-broad-mv-status", "--user=carol")  # fmt: skip
    apply_as(carol.access, ns, deployment("status-guard", V132))

    attempts = {
        "stableRevision": {"stableRevision": 1},
        "quarantined": {"quarantined": [V140]},
        "currentRevision": {"currentRevision": 7},
        "history": {"history": [entry(1, V132, "alice")]},
    }

    def rbac_allows(person: Person, resource: str) -> bool:
        verb = ("auth", "can-i", "patch", resource, "--subresource=status", "-n", ns)
        return person.access.kubectl(*verb, check=False).stdout.strip() == "yes"

    assert eventually(lambda: rbac_allows(alice, "modeldeployments.modelledger.io"), 30, "alice's Role")
    for field, status in attempts.items():
        denied = patch_status(alice.access, ns, "mdep", "status-guard", status)
        assert denied.returncode != 0, f"alice wrote status.{field}"
        assert STATUS_DENIED in denied.stderr, denied.stderr
        assert f"not {alice.username}; see docs/security.md" in denied.stderr, denied.stderr
    # A full update (PUT) of the status subresource is the same UPDATE to admission.
    replaced = get(ns, "mdep", "status-guard", alice.access)
    replaced["status"] = {"stableRevision": 1, "currentRevision": 1}
    put = alice.kubectl(
        "replace", "--subresource=status", "-n", ns, "-f", "-", input=json.dumps(replaced), check=False
    )
    assert_refused(put, STATUS_DENIED)
    assert not get(ns, "mdep", "status-guard", plane).get("status"), "status changed"

    assert eventually(lambda: rbac_allows(carol, "modelversions.modelledger.io"), 30, "carol's Role")
    denied = patch_status(carol.access, ns, "mv", V132, {"phase": "Revoked"})
    assert_refused(denied, STATUS_DENIED)
    # Without the extra Role she has no RBAC for it at all, so RBAC is what refuses her there.
    plain = patch_status(carol.access, ns, "mdep", "status-guard", {"currentRevision": 7})
    assert_refused(plain, "forbidden", ignore_case=True)
    assert "ValidatingAdmissionPolicy" not in plain.stderr, "RBAC refuses her before admission"

    # The operator's ServiceAccount writes every one of them.
    for status in attempts.values():
        written = patch_status(guarded.operator, ns, "mdep", "status-guard", status)
        assert written.returncode == 0, written.stderr
    stored = get(ns, "mdep", "status-guard", plane)["status"]
    assert (stored["stableRevision"], stored["currentRevision"], stored["quarantined"]) == (1, 7, [V140])
    assert [e["revision"] for e in stored["history"]] == [1]
    written = patch_status(guarded.operator, ns, "mv", V132, {"phase": "Available"})
    assert written.returncode == 0, written.stderr
    assert get(ns, "mv", V132, plane)["status"]["phase"] == "Available"

    # The admin (system:masters) is no exception: break-glass is admission.extraStatusWriters.
    admin = patch_status(plane, ns, "mdep", "status-guard", {"currentRevision": 8})
    assert_refused(admin, STATUS_DENIED)


def test_status_sent_with_a_create_is_dropped(plane: ClusterAccess, guarded: Guarded) -> None:
    ns, carol, alice = guarded.namespace, guarded.people["carol"], guarded.people["alice"]
    document = deployment("created-with-status", V132)
    document["status"] = {"stableRevision": 1, "quarantined": [V140], "history": [entry(1, V132, "carol")]}
    apply_as(carol.access, ns, document)
    assert "status" not in get(ns, "mdep", "created-with-status", plane)
    ask = request(f"with-status-{uuid.uuid4().hex[:6]}", requester=requester_of(alice))
    ask["status"] = {"phase": "Applied", "message": "approved by nobody"}
    alice.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(ask))
    assert "status" not in get(ns, "mdreq", ask["metadata"]["name"], plane)
    denied = patch_status(alice.access, ns, "mdreq", ask["metadata"]["name"], {"phase": "Applied"})
    assert denied.returncode != 0, "alice wrote her request's status"
    written = patch_status(guarded.operator, ns, "mdreq", ask["metadata"]["name"], {"phase": "Rejected"})
    assert written.returncode == 0, written.stderr


# --- requests carry the authenticated requester -------------------------------------------------------


def test_a_request_names_its_real_requester(plane: ClusterAccess, guarded: Guarded) -> None:
    ns, alice, bob = guarded.namespace, guarded.people["alice"], guarded.people["bob"]
    alice_as_stored, bob_claim = requester_of(alice), requester_of(bob)

    claimed = request("claims-bob", "Rollback", reason="error rate", requester=bob_claim)
    created = alice.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(claimed), check=False)
    if guarded.mutating:
        assert created.returncode == 0, created.stderr
        assert get(ns, "mdreq", "claims-bob", plane)["spec"]["requester"] == alice_as_stored
    else:
        assert_refused(created, "spec.requester")
        absent = plane.kubectl("get", "-n", ns, "mdreq", "claims-bob", check=False)
        assert absent.returncode != 0, "stored although the requester was false"

    unclaimed = request("no-claim", "MarkStable")
    created = alice.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(unclaimed), check=False)
    if guarded.mutating:
        assert created.returncode == 0, created.stderr
        assert get(ns, "mdreq", "no-claim", plane)["spec"]["requester"] == alice_as_stored
    else:
        assert_refused(created, "spec.requester")

    # Alice's truthful claim is accepted either way; its spec, requester included, is immutable.
    truthful = request("truthful", "Retry", requester=alice_as_stored)
    alice.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(truthful))
    assert get(ns, "mdreq", "truthful", plane)["spec"]["requester"] == alice_as_stored
    changed = plane.kubectl(
        "patch", "-n", ns, "mdreq", "truthful", "--type=merge",
        "-p", json.dumps({"spec": {"requester": bob_claim}}), check=False,
    )  # fmt: skip
    assert_refused(changed, "immutable")

    # Bob's own request names bob, with his two groups.
    bob.kubectl(
        "create", "-n", ns, "-f", "-", input=json.dumps(request("bobs", "Retry", requester=bob_claim))
    )
    assert get(ns, "mdreq", "bobs", plane)["spec"]["requester"] == bob_claim
    # Nobody stored a request under bob's name but bob.
    listed = json.loads(plane.kubectl("get", "-n", ns, "mdreq", "-o", "json").stdout)["items"]
    named_bob = [r["metadata"]["name"] for r in listed if r["spec"]["requester"]["username"] == "bob"]
    assert named_bob == ["bobs"]


def test_a_service_account_request_carries_its_uid(plane: ClusterAccess, guarded: Guarded) -> None:
    if not guarded.mutating:
        pytest.skip("stamping needs MutatingAdmissionPolicy")
    ns = guarded.namespace
    # The operator's role cannot create requests; a ServiceAccount that may (a CI job, say) is stamped.
    plane.kubectl("create", "role", "sa-requests", "-n", ns, "--verb=create",
                  "--resource=modeldeploymentrequests.modelledger.io")  # fmt: skip
    plane.kubectl("create", "rolebinding", "sa-requests", "-n", ns, "--role=sa-requests",
                  f"--user={guarded.operator_username}")  # fmt: skip
    ask = json.dumps(request("from-a-service-account", "Retry"))

    def created() -> bool:
        done = guarded.operator.kubectl("create", "-n", ns, "-f", "-", input=ask, check=False)
        return done.returncode == 0

    eventually(created, 30, "the ServiceAccount creates a request")
    requester = get(ns, "mdreq", "from-a-service-account", plane)["spec"]["requester"]
    assert requester["username"] == guarded.operator_username
    assert len(requester["uid"]) == 36, requester  # a ServiceAccount token carries the account's UID
    assert "system:serviceaccounts" in requester["groups"]


# --- who set spec.version --------------------------------------------------------------------------------


def test_the_version_setter_is_the_authenticated_user(plane: ClusterAccess, guarded: Guarded) -> None:
    if not guarded.mutating:
        pytest.skip(
            "stamping needs MutatingAdmissionPolicy; test_false_version_setters_are_refused covers the rest"
        )
    ns, carol = guarded.namespace, guarded.people["carol"]
    carols = {
        SET_BY: "carol",
        SET_BY_UID: "",
        SET_BY_GROUPS: ",".join(carol.user_info_groups),
    }

    apply_as(carol.access, ns, deployment("stamped", V132))
    assert version_annotations(plane, ns, "stamped") == {**carols, SET_FOR: V132}

    # A new spec.version by `kubectl apply`: stamped with carol, for the new version.
    apply_as(carol.access, ns, deployment("stamped", V140))
    assert version_annotations(plane, ns, "stamped") == {**carols, SET_FOR: V140}

    # Claiming bob along with a version change: overwritten with the truth.
    bob_claim = {SET_BY: "bob", SET_BY_GROUPS: ",".join(guarded.people["bob"].user_info_groups)}
    apply_as(carol.access, ns, deployment("stamped", V132, **bob_claim))
    assert version_annotations(plane, ns, "stamped") == {**carols, SET_FOR: V132}

    # Claiming bob without a version change: what was there stays.
    apply_as(carol.access, ns, deployment("stamped", V132, **{**bob_claim, SET_FOR: V132}))
    assert version_annotations(plane, ns, "stamped") == {**carols, SET_FOR: V132}

    # An update that leaves spec.version alone keeps them, even one that drops them (server-side apply
    # of a manifest that owned them, by another manager) or deletes them outright.
    def scaled(**annotation: str) -> dict[str, Any]:
        document = deployment("stamped", V132, **annotation)
        document["spec"]["replicas"] = 3
        return document

    apply_as(carol.access, ns, scaled())
    assert version_annotations(plane, ns, "stamped") == {**carols, SET_FOR: V132}
    for manifest in (scaled(**{SET_BY: "carol"}), scaled()):
        carol.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=argocd", "-n", ns, "-f", "-",
            input=yaml.safe_dump(manifest),
        )  # fmt: skip
        assert version_annotations(plane, ns, "stamped") == {**carols, SET_FOR: V132}
    removal = [
        {"op": "remove", "path": "/metadata/annotations/" + key.replace("/", "~1")} for key in (SET_BY,)
    ]
    carol.kubectl("patch", "-n", ns, "mdep", "stamped", "--type=json", "-p", json.dumps(removal))
    stored = get(ns, "mdep", "stamped", plane)
    assert stored["spec"]["replicas"] == 3
    assert version_annotations(plane, ns, "stamped") == {**carols, SET_FOR: V132}

    # Another person's change of version names them.
    alice = guarded.people["alice"]
    plane.kubectl("create", "rolebinding", "alice-edits", "-n", ns, "--clusterrole=modelledger-editor",
                  "--user=alice")  # fmt: skip
    bump = json.dumps({"spec": {"version": V140}})
    eventually(
        lambda: alice.kubectl("patch", "-n", ns, "mdep", "stamped", "--type=merge", "-p", bump,
                              check=False).returncode == 0,
        30, "alice may edit",
    )  # fmt: skip
    assert version_annotations(plane, ns, "stamped") == {
        SET_BY: "alice",
        SET_BY_UID: "",
        SET_BY_GROUPS: ",".join(alice.user_info_groups),
        SET_FOR: V140,
    }


def test_false_version_setters_are_refused(plane: ClusterAccess, guarded: Guarded) -> None:
    """The validating policy alone (as on a cluster without MutatingAdmissionPolicy): false claims fail."""
    ns, carol = guarded.namespace, guarded.people["carol"]
    with _without_mutating_policies(plane, guarded):
        claim = deployment("claimed", V132, **{SET_BY: "bob"})
        refused = apply_as(carol.access, ns, claim, check=False)
        assert_refused(refused, "version-set")

        truthful = {SET_BY: "carol", SET_BY_GROUPS: ",".join(carol.user_info_groups), SET_FOR: V132}
        apply_as(carol.access, ns, deployment("claimed", V132, **truthful))
        assert version_annotations(plane, ns, "claimed") == truthful

        # Unchanged version: the annotations cannot change, nor be added.
        moved = apply_as(
            carol.access, ns, deployment("claimed", V132, **{**truthful, SET_BY: "bob"}), check=False
        )
        assert_refused(moved, "change only with spec.version")
        added = apply_as(
            carol.access, ns, deployment("claimed", V132, **{**truthful, SET_BY_UID: "x"}), check=False
        )
        assert_refused(added, "change only with spec.version")

        # A new version may keep the previous stamp as it was (GitOps tools never touch it): it names
        # another version, so the operator records this change as unverified. It credits nobody falsely.
        apply_as(carol.access, ns, deployment("claimed", V140, **truthful))
        assert version_annotations(plane, ns, "claimed") == truthful
        # ...but a stale stamp that would name the new version is refused: it would credit carol with
        # what the admin does here.
        stale = apply_as(plane, ns, deployment("claimed", V132, **truthful), check=False)
        assert_refused(stale, "version-set")

        # Requests: without stamping, only a truthful requester is accepted.
        alice = guarded.people["alice"]
        none = alice.kubectl(
            "create", "-n", ns, "-f", "-", input=json.dumps(request("unstamped")), check=False
        )
        assert_refused(none, "spec.requester")


class _without_mutating_policies:
    """Unbind the mutating policies for a block, then bind them again as they were (waiting for both)."""

    def __init__(self, plane: ClusterAccess, guarded: Guarded) -> None:
        self.plane, self.guarded = plane, guarded
        self.bindings: list[dict[str, Any]] = []

    def _stamped(self) -> tuple[bool, bool]:
        """Whether a false requester, and a false version setter, are stamped over (else refused)."""
        ns, name = self.guarded.namespace, f"probe-{uuid.uuid4().hex[:6]}"
        document = json.dumps(request(name, requester={"username": "someone-else"}))
        asked = self.plane.kubectl("create", "-n", ns, "-f", "-", input=document, check=False)
        claim = json.dumps(deployment(name, V132, **{SET_BY: "someone-else"}))
        deployed = self.plane.kubectl("create", "-n", ns, "-f", "-", input=claim, check=False)
        for kind in ("mdreq", "mdep"):
            self.plane.kubectl("delete", "-n", ns, kind, name, "--ignore-not-found", check=False)
        return asked.returncode == 0, deployed.returncode == 0

    def __enter__(self) -> None:
        if not self.guarded.mutating:
            return
        for name in ("modelledger-requester", "modelledger-version-setter"):
            live = json.loads(
                self.plane.kubectl("get", "mutatingadmissionpolicybinding", name, "-o", "json").stdout
            )
            meta = live["metadata"]
            live["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
            self.bindings.append(live)
            self.plane.kubectl("delete", "mutatingadmissionpolicybinding", name)
        eventually(lambda: self._stamped() == (False, False), 60, "mutating policies unbound")

    def __exit__(self, *_: object) -> None:
        if self.bindings:
            self.plane.kubectl(
                "apply", "--server-side", "--force-conflicts", "--field-manager=modelledger-tests",
                "-f", "-", input=yaml.safe_dump_all(self.bindings),
            )  # fmt: skip
            eventually(lambda: self._stamped() == (True, True), 60, "mutating policies bound again")


def test_the_guards_have_the_names_the_operator_looks_up(plane: ClusterAccess, guarded: Guarded) -> None:
    for name in POLICIES:
        plane.kubectl("get", "validatingadmissionpolicy", name)
        binding = json.loads(
            plane.kubectl("get", "validatingadmissionpolicybinding", name, "-o", "json").stdout
        )
        assert binding["spec"]["policyName"] == name
        assert binding["spec"]["validationActions"] == ["Deny"]
    if guarded.mutating:
        for name in ("modelledger-requester", "modelledger-version-setter"):
            plane.kubectl("get", "mutatingadmissionpolicy", name)
            plane.kubectl("get", "mutatingadmissionpolicybinding", name)


def test_the_local_plane_stamps_and_signs(
    local_plane_only: None, plane: ClusterAccess, guarded: Guarded
) -> None:
    """The plane runs what production clusters should: MutatingAdmissionPolicy served (so the stamping
    paths above ran, not only the validating fallback) and the CSR API signing client certificates."""
    assert serves_mutating_policies(plane), "kube-apiserver needs the MutatingAdmissionPolicy feature gate"
    assert guarded.mutating
    assert who_am_i(guarded.people["carol"].access)["username"] == "carol"
