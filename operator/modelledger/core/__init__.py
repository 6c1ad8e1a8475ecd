"""Pure decisions: history, rules, rollback choice, PromQL templating. No kopf, kubernetes or network."""
