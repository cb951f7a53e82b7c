"""Database helpers shared by the apps."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connections
from django.db.models import Model

logger = logging.getLogger(__name__)


def save_on_fresh_connection_if_lost(instance: Model) -> None:
    """Save `instance`, once more on a new connection if the database dropped the old one.

    A database restart kills every open connection, and a long-running worker
    or command would otherwise fail every later write on the dead one. Inside
    a transaction the error is raised as it is, because the transaction is lost.
    """
    try:
        instance.save()
    except DatabaseError as error:
        connection = connections[instance._state.db or "default"]
        if connection.in_atomic_block:
            raise
        logger.warning("Saving %s failed (%s); retrying on a new database connection.",
                       instance._meta.label, " ".join(str(error).split()))
        connection.close()
        instance.save()
