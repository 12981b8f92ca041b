from django.db import models


class Item(models.Model):
    sku = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=100)
    category = models.IntegerField(db_index=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    description = models.TextField()

    class Meta:
        ordering = ["id"]
