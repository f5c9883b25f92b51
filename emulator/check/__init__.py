"""Network-model conformance checks (``podlab check``): the seeds' three rules and, where a lab has them, the
Kubernetes e2e granular checks for Services, DNS and SNAT. See ``registry`` to add checks."""
from emulator.check.runner import run_file, run_lab

__all__ = ["run_file", "run_lab"]
