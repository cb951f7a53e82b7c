from django.contrib import admin
from django.urls import path

from dealsite import views

admin.site.site_header = "dealsite"
admin.site.site_title = "dealsite admin"
admin.site.index_title = "Deals, deal queries and the Keepa token ledger"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    # Before admin/ so that the admin's catch-all does not take it; admin_view requires a staff login.
    path("admin/token-panel/", admin.site.admin_view(views.token_panel), name="token-panel"),
    path("admin/", admin.site.urls),
]
