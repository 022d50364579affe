"""The port audit: compose and runtime port parsing, the rules, and the reports (JSON, SARIF)."""
