from django.urls import reverse

NAVIGATION = [
    ("Samples", "samples:page"),
    ("Fallbacks", "warehouse:list"),
    ("Models", "modelhub:list"),
    ("Entity linking", "linking:page"),
    ("Dashboard", "dashboard"),
]


def app_context(request):
    path = request.path
    nav = []
    for label, name in NAVIGATION:
        try:
            url = reverse(name)
        except Exception:  # an app not wired yet must not break every page
            continue
        nav.append({"label": label, "url": url, "active": path.startswith(url)})
    return {"nav_items": nav, "app_name": "Samplescope"}
