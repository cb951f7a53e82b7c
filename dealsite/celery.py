"""The Celery application. Its settings are the CELERY_* names in Django settings."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dealsite.settings")

app = Celery("dealsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
