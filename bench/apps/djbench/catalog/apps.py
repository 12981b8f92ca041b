from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "djbench.catalog"
    label = "catalog"
