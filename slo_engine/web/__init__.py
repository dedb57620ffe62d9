"""The read-only web view: the SLO list, an SLO's page, the changes and the incidents, built
from the same use cases (`app`) as the CLI and served by `slo-engine run` and `slo-engine ui`."""
