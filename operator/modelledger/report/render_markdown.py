# ruff: noqa: E501  (the template's lines are Markdown table rows; wrapping would split them)
"""The report as Markdown: for a ticket, a pull request or a wiki page."""

from __future__ import annotations

from modelledger.report.schema import Report
from modelledger.report.templating import environment

TEMPLATE = """\
# Model deployment report: namespace `{{ r.namespace }}`{% if r.deployment %}, `{{ r.deployment }}`{% endif %}


Generated {{ r.generated_at | ts }} by {{ r.generated_by }} (schema `{{ r.schema_ }}`).
Range: {{ r.window.since | ts if r.window.since else "the first revision" }} to {{ r.window.until | ts }}.
{% if r.audit_log %}
Audit log `{{ r.audit_log.path }}`: {{ r.audit_log.records }} records ({{ r.audit_log.signed }} signed, \
{{ r.audit_log.unsigned }} unsigned), chain \
{{ ("intact" if r.audit_log.unsigned or not r.audit_log.signatures_checked else "verified") if r.audit_log.ok \
else "BROKEN at line %s: %s" % (r.audit_log.line, r.audit_log.problem) }}.
{% else %}
No audit log given: revisions pruned from the status are not covered.
{% endif %}
{% if r.keys %}
Signatures checked against {{ r.keys | length }} public key(s): {{ r.keys | map("short") | join(", ") }}; check this report offline with `modelledger audit verify --report FILE --public-key KEY`.
{% else %}
No public keys were available: signatures were not checked.
{% endif %}
{% if not r.deployments %}

No ModelDeployment found.
{% endif %}
{% for d in r.deployments %}

## {{ d.name }} (model `{{ d.model_name }}`)

Phase {{ d.phase or "—" }}; desired `{{ d.desired_version }}`, serving `{{ d.serving_version or "—" }}` \
(revision {{ d.current_revision or "—" }}), stable revision {{ d.stable_revision or "—" }}\
{% if d.quarantined %}; quarantined: {{ d.quarantined | join(", ") }}{% endif %}.
History: {{ ("**%s**" if not d.verification.history.ok else "%s") % (d.verification.history | verdict) }}\
{% if d.verification.audit_log %}; against the audit log: {{ "consistent" if d.verification.audit_log.ok \
else "**MISMATCH** at revision %s: %s" % (d.verification.audit_log.revision, d.verification.audit_log.problem) }}\
{% endif %}.
{% if not d.history_complete %}
Note: earlier revisions were pruned from the status; pass the audit log to cover them.
{% endif %}
{% if d.served_at %}

**Served at {{ d.served_at.at | ts }}:** \
{% if d.served_at.known and d.served_at.revision %}revision {{ d.served_at.revision }}, \
`{{ d.served_at.version }}`{% elif d.served_at.known %}nothing{% else %}unknown (not covered by the sources)\
{% endif %}
{% endif %}

### What served

| Revision | Version | From | Until | Cause | Actor | Stable | Artifact | Image |
|---|---|---|---|---|---|---|---|---|
{% for t in d.timeline %}
| {{ t.revision }} | {{ t.version | cell }} | {{ t.start | ts }} | \
{{ (t.end | ts) if t.end else ("serving" if t.end_known else "unknown") }} | {{ t.cause }} | \
{{ t.actor | cell }} | {{ "yes" if t.stable else "" }} | \
{{ (t.digests.artifact_digest | short) if t.digests else "—" }} | {{ (t.digests.image | cell) if t.digests else "—" }} |
{% endfor %}

### Changes

| Revision | At | From | To | Commit | Cause | Actor | Verified | Approvers | Reason | Evidence | Signature |
|---|---|---|---|---|---|---|---|---|---|---|---|
{% for c in d.changes %}
| {{ c.revision }} | {{ c.at | ts }} | {{ (c.previous_version or "—") | cell }} | {{ c.version | cell }} | \
{{ c.gitops | gitops | cell }} | \
{{ c.cause }}{% if c.rule %} ({{ c.rule }}){% endif %} | {{ c.actor | cell }} | {{ c.actor_verified | verified }} | \
{{ (c.approvers | join(", ") or "—") | cell }} | {{ c.reason | cell }} | {{ c.evidence | evidence | cell }} | \
{{ c.signature_state | signature }} |
{% endfor %}

### Stable markings

{% for m in d.stable_markings %}
- revision {{ m.revision }} (`{{ m.version or "?" }}`) at {{ m.at | ts }} by {{ m.actor or "—" }}\
{% if m.actor_verified is not none %} (verified: {{ m.actor_verified | verified }}){% endif %}\
{% if m.approvers %}, approved by {{ m.approvers | join(", ") }}{% endif %}\
{% if m.message %}: {{ m.message }}{% endif %} [{{ m.source }}, {{ m.signature_state | signature }}]
{% else %}
None.
{% endfor %}

### Quarantines

{% for q in d.quarantines %}
- `{{ q.version }}` at {{ q.at | ts }} by revision {{ q.revision }} ({{ q.cause }}, {{ q.actor }})\
{% if q.lifted_at %}; lifted {{ q.lifted_at | ts }} by {{ q.lifted_by or "—" }}{% endif %}\
{% if q.current %}; still quarantined{% endif %}

{% else %}
None.
{% endfor %}

### Revocations

{% for v in d.revocations %}
- `{{ v.version }}` revoked {{ v.revoked_at | ts }} by {{ v.revoked_by or "—" }}: {{ v.reason }}\
{% if v.rollback_revision %} (rolled back by revision {{ v.rollback_revision }}){% endif %}

{% else %}
None.
{% endfor %}

### Versions and provenance

| Version | Artifact digest | Code commit | Data | Training run | Metrics |
|---|---|---|---|---|---|
{% for v in d.versions %}
| {{ v.name | cell }}{% if v.revoked %} (revoked){% endif %}{% if not v.found %} (deleted){% endif %} | \
{{ v.artifact_digest | short }} | {{ (v.code_commit or "—")[:12] }} | \
{{ v.datasets | map(attribute="name") | join(", ") | cell }} | {% if v.training_run_url %}[{{ (v.training_run or "run") | cell }}]({{ v.training_run_url | cell }})\
{% else %}{{ (v.training_run or "—") | cell }}{% endif %} | \
{{ v.metrics.items() | map("join", "=") | join(", ") | cell }} |
{% endfor %}
{% if d.events %}

### Events (while the apiserver keeps them)

{% for e in d.events %}
- {{ e.first_seen | ts }} {{ e.type }} {{ e.reason }} on {{ e.object_kind }}/{{ e.object_name }}: {{ e.message }}
{% endfor %}
{% endif %}
{% endfor %}
"""


def render(report: Report) -> str:
    return environment(html=False).from_string(TEMPLATE).render(r=report)
