"""The Celery application. Its settings are the CELERY_* names in Django settings."""

from __future__ import annotations

import os

from celery import Celery

from dealsite import heartbeats

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dealsite.settings")

app = Celery("dealsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Workers and beat write heartbeats to Redis, which health_report and /healthz read.
heartbeats.install(app)
