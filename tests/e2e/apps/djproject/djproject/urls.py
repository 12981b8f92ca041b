from django.contrib import admin
from django.urls import path

from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("items/", views.item_list, name="item-list"),
    path("items/new/", views.item_create, name="item-create"),
    path("upload/", views.upload, name="upload"),
    path("stream/", views.stream, name="stream"),
    path("meta/", views.meta, name="meta"),
    path("error/", views.error, name="error"),
    path("admin/", admin.site.urls),
]
