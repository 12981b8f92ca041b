from django.urls import path

from djbench.catalog import views

urlpatterns = [
    path("", views.item_list),
    path("items/", views.item_list),
]
