"""Settings for the test suite: the project settings under a Redis key prefix unique to this run.

The prefix goes into the environment before the project settings are read, so
worker processes that tests start inherit it and share the same keys.
"""

import os
import uuid

os.environ.setdefault("DEALSITE_REDIS_PREFIX", f"dealsite-test-{uuid.uuid4().hex[:12]}")

from dealsite.settings import *  # noqa: F403

# Tests render admin pages without running collectstatic first, so they use
# the plain storage instead of the manifest that whitenoise builds.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
