# ruff: noqa: E501  (the template's lines are HTML; wrapping them would change the markup)
"""The report as one self-contained HTML file: inline CSS and SVG, no scripts, no external requests,
readable on screen and when printed (an examiner's binder)."""

from __future__ import annotations

from modelledger.report.schema import Report
from modelledger.report.templating import environment
from modelledger.report.timeline import ROLLBACK_COLOUR, picture

TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelledger report — {{ r.namespace }}{% if r.deployment %}/{{ r.deployment }}{% endif %}</title>
<style>
  :root { --ink: #1b1f24; --muted: #5b6470; --rule: #d0d7de; --ok: #1a7f37; --bad: #c0392b; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
         color: var(--ink); margin: 24px auto; max-width: 1180px; padding: 0 16px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  h2 { font-size: 18px; margin: 28px 0 6px; padding-top: 10px; border-top: 2px solid var(--ink); }
  h3 { font-size: 15px; margin: 18px 0 6px; }
  .meta, .note { color: var(--muted); }
  .ok { color: var(--ok); font-weight: 600; }
  .bad { color: var(--bad); font-weight: 600; }
  .warn { color: #9a6700; font-weight: 600; }
  table { border-collapse: collapse; width: 100%; margin: 4px 0 10px; font-size: 12.5px; }
  th, td { border-bottom: 1px solid var(--rule); padding: 3px 6px; text-align: left; vertical-align: top; }
  th { background: #f3f5f7; }
  code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
  td.mono { overflow-wrap: anywhere; }
  td.t { white-space: nowrap; }
  .timeline { width: 100%; height: auto; border: 1px solid var(--rule); background: #fff; }
  .timeline text { font: 12px system-ui, "DejaVu Sans", sans-serif; fill: var(--ink); }
  .answer { background: #f3f5f7; border-left: 4px solid #0072B2; padding: 6px 10px; }
  section.deployment { break-before: page; }
  section.deployment:first-of-type { break-before: auto; }
  @media print {
    body { margin: 0; max-width: none; font-size: 11px; }
    * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
    table, figure, .answer { break-inside: avoid; }
    h2, h3 { break-after: avoid; }
    a { color: inherit; text-decoration: none; }
  }
</style>
</head>
<body>
<header>
  <h1>Model deployment report: {{ r.namespace }}{% if r.deployment %} / {{ r.deployment }}{% endif %}</h1>
  <div class="meta">Generated {{ r.generated_at | ts }} by {{ r.generated_by }} · schema <code>{{ r.schema_ }}</code>
  · range {{ r.window.since | ts if r.window.since else "from the first revision" }} to {{ r.window.until | ts }}</div>
  {% if r.audit_log %}
  <p>Audit log <code>{{ r.audit_log.path }}</code>: {{ r.audit_log.records }} records ({{ r.audit_log.signed }} signed,
  {{ r.audit_log.unsigned }} unsigned), chain
  {% if r.audit_log.ok and (r.audit_log.unsigned or not r.audit_log.signatures_checked) %}<span class="warn">intact</span>
  {% elif r.audit_log.ok %}<span class="ok">verified</span>{% else %}<span class="bad">BROKEN at line
  {{ r.audit_log.line }}</span>: {{ r.audit_log.problem }}{% endif %}.</p>
  {% else %}
  <p class="note">No audit log given: revisions pruned from the status are not covered.</p>
  {% endif %}
  {% if r.keys %}
  <p>Signatures checked against {{ r.keys | length }} public key(s): <code>{{ r.keys | map("short") | join(", ") }}</code>;
  check this report offline with <code>modelledger audit verify --report FILE --public-key KEY</code>.</p>
  {% else %}
  <p class="note">No public keys were available: signatures were not checked.</p>
  {% endif %}
  {% if not r.deployments %}<p>No ModelDeployment found.</p>{% endif %}
</header>
{% for d, pic in sections %}
<section class="deployment">
<h2>{{ d.name }} <span class="meta">model {{ d.model_name }}</span></h2>
<p>Phase <strong>{{ d.phase or "—" }}</strong>; desired <code>{{ d.desired_version }}</code>, serving
<code>{{ d.serving_version or "—" }}</code> (revision {{ d.current_revision or "—" }}), stable revision
{{ d.stable_revision or "—" }}{% if d.quarantined %}; quarantined {{ d.quarantined | join(", ") }}{% endif %}.<br>
History: <span class="{{ {'Signed': 'ok', 'Tampered': 'bad'}.get(d.verification.history.verdict, 'warn') }}">{{ d.verification.history | verdict }}</span>
{% if d.verification.audit_log %} · against the audit log: {% if d.verification.audit_log.ok %}<span class="ok">consistent</span>
{% else %}<span class="bad">MISMATCH at revision {{ d.verification.audit_log.revision }}</span>:
{{ d.verification.audit_log.problem }}{% endif %}{% endif %}
{% if not d.history_complete %}<br><span class="note">Earlier revisions were pruned from the status; pass the audit log to cover them.</span>{% endif %}</p>
{% if d.served_at %}
<p class="answer">Served at {{ d.served_at.at | ts }}:
{% if d.served_at.known and d.served_at.revision %}<strong>revision {{ d.served_at.revision }},
{{ d.served_at.version }}</strong>{% elif d.served_at.known %}nothing{% else %}unknown (not covered by the sources){% endif %}</p>
{% endif %}
<figure>
<svg class="timeline" viewBox="0 0 {{ pic.width }} {{ pic.height }}" role="img" xmlns="http://www.w3.org/2000/svg"
     aria-label="Which version served when for {{ d.name }}">
  <defs>
    <pattern id="unknown-{{ loop.index }}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
      <rect width="6" height="6" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#9aa4ae" stroke-width="3"/>
    </pattern>
  </defs>
  {% for lane in pic.lanes %}
  <rect x="0" y="{{ lane.y }}" width="{{ pic.width }}" height="30" fill="{{ '#f6f8fa' if loop.index is odd else '#ffffff' }}"/>
  <rect x="6" y="{{ lane.y + 9 }}" width="12" height="12" fill="{{ lane.colour }}"/>
  <text x="24" y="{{ lane.y + 19 }}">{{ lane.version }}</text>
  {% endfor %}
  {% for t in pic.ticks %}
  <line x1="{{ t.x }}" y1="{{ 6 }}" x2="{{ t.x }}" y2="{{ pic.plot_bottom }}" stroke="#d0d7de" stroke-width="1"/>
  <text x="{{ t.x }}" y="{{ pic.plot_bottom + 16 }}" text-anchor="middle">{{ t.label }}</text>
  {% endfor %}
  {% set outer = loop %}
  {% for b in pic.bars %}
  <rect x="{{ b.x }}" y="{{ b.y }}" width="{{ b.width }}" height="{{ b.height }}" rx="3"
        fill="{{ b.colour if b.known_end else 'url(#unknown-%d)' % outer.index }}"
        stroke="{{ '#1b1f24' if b.stable else b.colour }}" stroke-width="{{ 2.5 if b.stable else 1 }}"><title>{{ b.title }}</title></rect>
  {% if b.width > 26 %}<text x="{{ b.x + 5 }}" y="{{ b.y + 15 }}" style="fill:#ffffff;font-weight:600">r{{ b.revision }}{{ " ★" if b.stable else "" }}</text>{% endif %}
  {% endfor %}
  {% for m in pic.rollbacks %}
  <line x1="{{ m.x }}" y1="4" x2="{{ m.x }}" y2="{{ pic.plot_bottom }}" stroke="{{ rollback }}" stroke-width="2" stroke-dasharray="5,3"><title>{{ m.title }}</title></line>
  <path d="M {{ m.x - 6 }} 2 L {{ m.x + 6 }} 2 L {{ m.x }} 11 Z" fill="{{ rollback }}"><title>{{ m.title }}</title></path>
  {% endfor %}
  <line x1="{{ pic.plot_left }}" y1="{{ pic.plot_bottom }}" x2="{{ pic.plot_right }}" y2="{{ pic.plot_bottom }}" stroke="#1b1f24"/>
</svg>
<figcaption class="note">Bars: which revision served when (★ and dark outline: stable; hatched: end unknown, later
revisions pruned). <span style="color: {{ rollback }}">▼ dashed lines: rollbacks</span>. Times in UTC.</figcaption>
</figure>

<h3>What served</h3>
<table>
<tr><th>Rev.</th><th>Version</th><th>From</th><th>Until</th><th>Cause</th><th>Actor</th><th>Stable</th><th>Artifact</th><th>Image</th></tr>
{% for t in d.timeline %}
<tr><td>{{ t.revision }}</td><td>{{ t.version }}</td><td class="t">{{ t.start | ts }}</td>
<td class="t">{{ (t.end | ts) if t.end else ("serving" if t.end_known else "unknown") }}</td><td>{{ t.cause }}</td>
<td>{{ t.actor }}</td><td>{{ "yes" if t.stable else "" }}</td>
<td class="mono">{{ (t.digests.artifact_digest | short) if t.digests else "—" }}</td>
<td class="mono">{{ t.digests.image if t.digests else "—" }}</td></tr>
{% endfor %}
</table>

<h3>Changes</h3>
<table>
<tr><th>Rev.</th><th>At</th><th>From</th><th>To</th><th>Commit</th><th>Cause</th><th>Actor</th><th>Verified</th><th>Approvers</th><th>Reason</th><th>Evidence</th><th>Hash</th><th>Signature</th></tr>
{% for c in d.changes %}
<tr><td>{{ c.revision }}</td><td class="t">{{ c.at | ts }}</td><td>{{ c.previous_version or "—" }}</td><td>{{ c.version }}</td>
<td class="mono"{% if c.gitops and c.gitops.repository %} title="{{ c.gitops.repository }}"{% endif %}>{{ c.gitops | gitops }}</td>
<td>{{ c.cause }}{% if c.rule %} ({{ c.rule }}){% endif %}</td><td>{{ c.actor }}</td><td>{{ c.actor_verified | verified }}</td>
<td>{{ c.approvers | join(", ") or "—" }}</td><td>{{ c.reason }}</td>
<td class="mono">{{ c.evidence | evidence }}</td><td class="mono">{{ c.hash | short }}</td>
<td class="{{ {'valid': 'ok', 'invalid': 'bad', 'unknownKey': 'bad'}.get(c.signature_state, 'warn') }}">{{ c.signature_state | signature }}</td></tr>
{% endfor %}
</table>

<h3>Stable markings</h3>
{% if d.stable_markings %}
<table>
<tr><th>Rev.</th><th>Version</th><th>At</th><th>By</th><th>Verified</th><th>Approvers</th><th>Message</th><th>Source</th><th>Signature</th></tr>
{% for m in d.stable_markings %}
<tr><td>{{ m.revision }}</td><td>{{ m.version or "?" }}</td><td class="t">{{ m.at | ts }}</td><td>{{ m.actor or "—" }}</td>
<td>{{ m.actor_verified | verified }}</td><td>{{ m.approvers | join(", ") or "—" }}</td>
<td>{{ m.message }}</td><td>{{ m.source }}</td><td>{{ m.signature_state | signature }}</td></tr>
{% endfor %}
</table>
{% else %}<p>None.</p>{% endif %}

<h3>Quarantines</h3>
{% if d.quarantines %}
<table>
<tr><th>Version</th><th>At</th><th>By revision</th><th>Cause</th><th>Actor</th><th>Lifted</th><th>Now</th></tr>
{% for q in d.quarantines %}
<tr><td>{{ q.version }}</td><td class="t">{{ q.at | ts }}</td><td>{{ q.revision }}</td><td>{{ q.cause }}</td><td>{{ q.actor }}</td>
<td>{% if q.lifted_at %}{{ q.lifted_at | ts }} by {{ q.lifted_by or "—" }}{% else %}—{% endif %}</td>
<td>{{ "quarantined" if q.current else "" }}</td></tr>
{% endfor %}
</table>
{% else %}<p>None.</p>{% endif %}

<h3>Revocations</h3>
{% if d.revocations %}
<table>
<tr><th>Version</th><th>Revoked</th><th>By</th><th>Reason</th><th>Rolled back by</th></tr>
{% for v in d.revocations %}
<tr><td>{{ v.version }}</td><td class="t">{{ v.revoked_at | ts }}</td><td>{{ v.revoked_by or "—" }}</td><td>{{ v.reason }}</td>
<td>{{ ("revision %d" % v.rollback_revision) if v.rollback_revision else "—" }}</td></tr>
{% endfor %}
</table>
{% else %}<p>None.</p>{% endif %}

<h3>Versions and provenance</h3>
<table>
<tr><th>Version</th><th>Artifact</th><th>Components</th><th>Code</th><th>Data</th><th>Training run</th><th>Metrics</th></tr>
{% for v in d.versions %}
<tr><td>{{ v.name }}{% if v.revoked %} <span class="bad">revoked</span>{% endif %}{% if not v.found %} <span class="note">(deleted)</span>{% endif %}</td>
<td class="mono">{{ v.artifact_digest | short }}</td>
<td class="mono">{% for c in v.components %}{{ c.name }} {{ c.digest | short }}<br>{% endfor %}</td>
<td class="mono">{% if v.code_commit %}{{ v.code_repository }}<br>{{ v.code_commit[:12] }}{% else %}—{% endif %}</td>
<td class="mono">{% for s in v.datasets %}{{ s.name }} {{ s.digest | short }}<br>{% endfor %}</td>
<td class="mono">{% if v.training_run_url %}<a href="{{ v.training_run_url }}">{{ v.training_run or "run" }}</a>\
{% else %}{{ v.training_run or "—" }}{% endif %}</td>
<td>{% for k, m in v.metrics.items() %}{{ k }} {{ m }}<br>{% endfor %}</td></tr>
{% endfor %}
</table>

{% if d.events %}
<h3>Events <span class="meta">(while the apiserver keeps them)</span></h3>
<table>
<tr><th>First seen</th><th>Type</th><th>Reason</th><th>Object</th><th>Message</th></tr>
{% for e in d.events %}
<tr><td class="t">{{ e.first_seen | ts }}</td><td>{{ e.type }}</td><td>{{ e.reason }}</td><td>{{ e.object_kind }}/{{ e.object_name }}</td><td>{{ e.message }}</td></tr>
{% endfor %}
</table>
{% endif %}
</section>
{% endfor %}
</body>
</html>
"""


def render(report: Report) -> str:
    sections = [(d, picture(d, report.window)) for d in report.deployments]
    return (
        environment(html=True)
        .from_string(TEMPLATE)
        .render(r=report, sections=sections, rollback=ROLLBACK_COLOUR)
    )
