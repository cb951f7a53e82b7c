"""Deal ingestion: the update_recent_deals service behind the management command and the Celery task."""

from deals.ingestion.service import (
    IngestionOptions,
    IngestionStopped,
    PageProgress,
    update_recent_deals,
)

__all__ = ["IngestionOptions", "IngestionStopped", "PageProgress", "update_recent_deals"]
