from __future__ import annotations

import re

from django import forms
from django.conf import settings

from .models import Entity
from .services import EntityInput, LinkingError, MentionInput, mention_from_bracketed


class LinkForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Paris Hilton flew from Paris to Java…"}),
        max_length=settings.LINKING_MAX_TEXT_CHARS,
        error_messages={
            "max_length": "The text is too long: at most %(limit_value)d characters (it has %(show_value)d). Split it."
        },
    )


class EntityForm(forms.Form):
    id = forms.SlugField(max_length=128, help_text="lower-case id, e.g. paris_texas")
    name = forms.CharField(max_length=200)
    type = forms.ChoiceField(choices=Entity.Type.choices)
    aliases = forms.CharField(required=False, help_text="comma-separated; the name when empty")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    url = forms.URLField(required=False, assume_scheme="https")
    mentions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "One sentence a line, the mention in [brackets]."}),
        help_text="one sentence a line, with the mention in [brackets]",
    )

    def clean_mentions(self) -> list[MentionInput]:
        lines = [line.strip() for line in self.cleaned_data["mentions"].splitlines() if line.strip()]
        try:
            return [mention_from_bracketed(line) for line in lines]
        except LinkingError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def entity_input(self) -> EntityInput:
        data = self.cleaned_data
        aliases = [a.strip() for a in re.split(r"[,\n]", data["aliases"]) if a.strip()]
        return EntityInput(
            key=data["id"],
            name=data["name"],
            type=data["type"],
            aliases=aliases,
            description=data["description"],
            url=data["url"],
            mentions=data["mentions"],
        )


class MentionForm(forms.Form):
    """A mention either as a [bracketed] sentence or as text + span (the linking page's "this one")."""

    sentence = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"size": 60}), help_text="the mention in [brackets]"
    )
    text = forms.CharField(required=False, widget=forms.HiddenInput)
    start = forms.IntegerField(required=False, widget=forms.HiddenInput)
    end = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if data.get("sentence"):
            try:
                data["mention"] = mention_from_bracketed(data["sentence"])
            except LinkingError as exc:
                raise forms.ValidationError(str(exc)) from exc
        elif data.get("text") and data.get("start") is not None and data.get("end") is not None:
            data["mention"] = MentionInput(data["text"], data["start"], data["end"])
        else:
            raise forms.ValidationError("Give a sentence with the mention in [brackets].")
        return data


class AliasForm(forms.Form):
    alias = forms.CharField(max_length=200)
