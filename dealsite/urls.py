from django.contrib import admin
from django.urls import path

admin.site.site_header = "dealsite"
admin.site.site_title = "dealsite admin"
admin.site.index_title = "Deals, deal queries and the Keepa token ledger"

urlpatterns = [
    path("admin/", admin.site.urls),
]
