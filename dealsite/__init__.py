"""dealsite: a live catalogue of Amazon deals from the Keepa API."""

from dealsite.celery import app as celery_app

__version__ = "0.1.0"
__all__ = ["__version__", "celery_app"]
