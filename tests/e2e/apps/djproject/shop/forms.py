from django import forms

from .models import Item


class ItemForm(forms.ModelForm):
    class Meta:
        model = Item
        fields = ["name", "price_cents"]


class UploadForm(forms.Form):
    note = forms.CharField(max_length=100, required=False)
    file = forms.FileField()
