import hashlib

from django.core.files.storage import default_storage
from django.db.models import Count, Sum
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render

from .forms import ItemForm, UploadForm
from .models import Item


def index(request):
    return HttpResponse("django ok", content_type="text/plain")


def item_list(request):
    """An ORM query with a filter, ordering and an aggregate."""
    qs = Item.objects.all()
    min_price = request.GET.get("min_price")
    if min_price is not None:
        qs = qs.filter(price_cents__gte=int(min_price))
    totals = qs.aggregate(count=Count("id"), total=Sum("price_cents"))
    return JsonResponse(
        {
            "items": [{"name": i.name, "price_cents": i.price_cents} for i in qs],
            "count": totals["count"],
            "total": totals["total"] or 0,
        }
    )


def item_create(request):
    if request.method == "POST":
        form = ItemForm(request.POST)
        if form.is_valid():
            form.save()
            return redirect("item-list")
        return render(request, "shop/item_form.html", {"form": form}, status=400)
    return render(request, "shop/item_form.html", {"form": ItemForm()})


def upload(request):
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if not form.is_valid():
            return JsonResponse({"errors": form.errors}, status=400)
        f = form.cleaned_data["file"]
        digest = hashlib.sha256()
        for chunk in f.chunks():
            digest.update(chunk)
        f.seek(0)
        stored = default_storage.save(f"uploads/{f.name}", f)
        return JsonResponse(
            {
                "name": f.name,
                "size": f.size,
                "sha256": digest.hexdigest(),
                "note": form.cleaned_data["note"],
                "stored_size": default_storage.size(stored),
                "handler": type(f).__name__,
            }
        )
    return render(request, "shop/upload.html", {"form": UploadForm()})


def stream(request):
    n = int(request.GET.get("n", 5))
    return StreamingHttpResponse((f"row {i}\n" for i in range(n)), content_type="text/plain")


def meta(request):
    return JsonResponse(
        {
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME"),
            "full_path": request.get_full_path(),
            "absolute_uri": request.build_absolute_uri(),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "method": request.method,
            "get": request.GET.dict(),
            "user_agent": request.META.get("HTTP_USER_AGENT"),
        }
    )


def error(request):
    raise LookupError("django view failure marker 9b1e")
