from datetime import date, timedelta

from django import forms
from django.utils import timezone

from .selectors import DateRange

DEFAULT_DAYS = 14
MAX_DAYS = 366


class DateRangeForm(forms.Form):
    """The `from` / `to` GET parameters (ISO dates, both inclusive); blank means the last two weeks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        widget = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
        self.fields["from"] = forms.DateField(required=False, label="From", widget=widget)
        self.fields["to"] = forms.DateField(required=False, label="To", widget=widget)

    @staticmethod
    def default_range(today: date | None = None) -> DateRange:
        today = today or timezone.localdate()
        return DateRange(start=today - timedelta(days=DEFAULT_DAYS - 1), end=today)

    def clean(self):
        data = super().clean()
        default = self.default_range()
        end = data.get("to") or default.end
        start = data.get("from") or (end - timedelta(days=DEFAULT_DAYS - 1))
        if start > end:
            raise forms.ValidationError("“From” must be on or before “To”.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Pick at most {MAX_DAYS} days.")
        data["range"] = DateRange(start=start, end=end)
        return data
