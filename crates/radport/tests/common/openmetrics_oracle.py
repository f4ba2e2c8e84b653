"""Parses an OpenMetrics text (stdin) with the Prometheus project's own parser and prints
every sample as JSON lines {"name", "labels", "value"}; exits non-zero (with the parser's
reason) if the text is not valid OpenMetrics. The oracle of tests/metrics.rs."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

text = sys.stdin.read()
families = list(text_string_to_metric_families(text))
for family in families:
    for sample in family.samples:
        print(json.dumps({"family": family.name, "type": family.type, "name": sample.name,
                          "labels": sample.labels, "value": sample.value}))
