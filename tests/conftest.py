"""The end-to-end suite needs a real Pulumi engine: it runs only through `scripts/e2e`."""

import os

collect_ignore = [] if os.environ.get("ASTATS_E2E") == "1" else ["e2e"]
