"""Ship one broad deal query so that the first run of update_recent_deals has something to fetch."""

from django.db import migrations

DEFAULT_QUERY_NAME = "amazon-com-all"

# Amazon price drops on amazon.com (domain 1) found in the last day.
DEFAULT_SELECTION = {
    "domainId": 1,
    "priceTypes": [0],
    "dateRange": 0,
    "page": 0,
    "sortType": 1,
    "isFilterEnabled": False,
    "isRangeEnabled": False,
}


def create_default_query(apps, schema_editor):
    DealQuery = apps.get_model("deals", "DealQuery")
    DealQuery.objects.get_or_create(
        name=DEFAULT_QUERY_NAME,
        defaults={"selection": DEFAULT_SELECTION, "domain": DEFAULT_SELECTION["domainId"], "is_active": True},
    )


def delete_default_query(apps, schema_editor):
    DealQuery = apps.get_model("deals", "DealQuery")
    DealQuery.objects.filter(name=DEFAULT_QUERY_NAME, runs__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("deals", "0001_initial")]

    operations = [migrations.RunPython(create_default_query, delete_default_query)]
