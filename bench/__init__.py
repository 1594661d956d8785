"""chatsite's performance benchmark: `python -m bench` (the CLI in bench/run.py, the shared runner
in bench/runner.py, one module per scenario in bench/scenarios/; docs/performance.md)."""
