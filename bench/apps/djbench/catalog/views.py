from django.shortcuts import render

from djbench.catalog.models import Item


def item_list(request):
    # Exactly one ORM query (SQLite), then a template render.
    items = list(Item.objects.filter(category=3)[:20])
    return render(request, "catalog/items.html", {"items": items, "category": 3})
