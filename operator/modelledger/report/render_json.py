"""The report as JSON (schema `modelledger.report/v2`), and the JSON Schema that documents it."""

from __future__ import annotations

import json

from modelledger.report.schema import Report


def render(report: Report) -> str:
    return report.model_dump_json(indent=2, by_alias=True) + "\n"


def json_schema() -> str:
    schema = Report.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = "https://modelledger.io/schemas/report/v2.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
