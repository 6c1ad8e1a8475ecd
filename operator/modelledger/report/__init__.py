"""The compliance report: built from histories, versions, Events and the audit log; rendered as JSON,
Markdown or one self-contained HTML file."""
