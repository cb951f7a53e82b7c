"""Settings for the test suite: the project settings under a Redis key prefix unique to this run.

The prefix goes into the environment before the project settings are read, so
worker processes that tests start inherit it and share the same keys.
"""

import os
import uuid

os.environ.setdefault("DEALSITE_REDIS_PREFIX", f"dealsite-test-{uuid.uuid4().hex[:12]}")

from dealsite.settings import *  # noqa: E402, F403
