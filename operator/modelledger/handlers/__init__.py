"""Thin Kopf handlers: parse, ask the core, apply through the adapters."""
