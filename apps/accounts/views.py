from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .models import ApiToken
from .selectors import api_token_list
from .services import api_token_create, api_token_revoke


@login_required
def token_list(request):
    new_token = None
    if request.method == "POST":
        _, new_token = api_token_create(user=request.user, name=request.POST.get("name", "").strip())
    return render(request, "accounts/tokens.html", {"tokens": api_token_list(user=request.user), "new_token": new_token})


@login_required
@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    api_token_revoke(token=token, by=request.user)
    messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("token-list")
