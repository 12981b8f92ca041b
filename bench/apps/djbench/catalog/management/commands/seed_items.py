"""Idempotently fill the catalog with a fixed set of rows (200 items, 10 categories)."""

from decimal import Decimal

from django.core.management.base import BaseCommand

from djbench.catalog.models import Item

WORDS = "red green blue small large steel wooden classic modern compact deluxe basic".split()


class Command(BaseCommand):
    help = "Seed the benchmark catalog"

    def handle(self, *args, **options):
        if Item.objects.count() == 200:
            self.stdout.write("catalog already seeded (200 items)")
            return
        Item.objects.all().delete()
        Item.objects.bulk_create(
            Item(
                sku=f"SKU-{i:05d}",
                name=f"{WORDS[i % 12]} {WORDS[(i * 7) % 12]} widget {i}",
                category=i % 10,
                price=Decimal(f"{5 + (i * 37) % 500}.{i % 100:02d}"),
                description=" ".join(WORDS[(i + k) % 12] for k in range(20)),
            )
            for i in range(200)
        )
        self.stdout.write("seeded 200 items")
