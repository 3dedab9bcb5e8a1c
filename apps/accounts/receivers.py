"""Signal receivers: failed and locked-out logins go to the audit log (connected in AccountsConfig.ready)."""
from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from .selectors import request_client_ip
from .services import login_failure_record, login_lockout_record


@receiver(user_login_failed, dispatch_uid="accounts.login_failed_audit")
def login_failed_audit(sender, credentials: dict, request=None, **kwargs) -> None:
    # `credentials` is cleansed by Django (the password masked); only the username is kept. django-axes's own
    # receiver ran first ("axes" comes before this app in INSTALLED_APPS) and marked a refused locked-out attempt.
    username = str(credentials.get(get_user_model().USERNAME_FIELD) or "")
    login_failure_record(username=username, client_ip=request_client_ip(request) if request is not None else None,
                         locked_out=bool(getattr(request, "axes_locked_out", False)))


@receiver(user_locked_out, dispatch_uid="accounts.login_locked_out_audit")
def login_locked_out_audit(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    login_lockout_record(username=str(username or ""), client_ip=ip_address)
