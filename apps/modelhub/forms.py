from django import forms
from django.conf import settings

MAX_DEMO_TEXT_CHARS = 20_000


def version_choices(versions) -> list[tuple[str, str]]:
    choices = []
    for mv in versions:
        aliases = sorted(a.alias for a in mv.aliases.all())
        choices.append((mv.version, f"v{mv.version}" + (f" ({', '.join(aliases)})" if aliases else "")))
    return choices


class PredictForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "placeholder": "Type or paste a text to classify"}),
                           required=False, max_length=MAX_DEMO_TEXT_CHARS, strip=False)
    example = forms.CharField(required=False, widget=forms.HiddenInput, strip=False)
    version = forms.ChoiceField(required=False)

    def __init__(self, *args, versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = version_choices(versions)

    def clean(self):
        data = super().clean()
        # An example button submits its text as `example`; it wins over the text box.
        text = data.get("example") or data.get("text") or ""
        if not text.strip():
            self.add_error("text", "Type a text to classify: it is empty.")
        data["text"] = text
        return data


def classifier_choices(versions) -> list[tuple[str, str]]:
    """ "name@version" for every classifier version, labelled with its aliases."""
    choices = []
    for mv in versions:
        aliases = sorted(a.alias for a in mv.aliases.all())
        choices.append((f"{mv.name}@{mv.version}",
                        f"{mv.name} v{mv.version}" + (f" ({', '.join(aliases)})" if aliases else "")))
    return choices


class CompareForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 5, "placeholder": "One text a line"}), required=False,
                           max_length=MAX_DEMO_TEXT_CHARS * 5, strip=False, label="Texts, one a line")
    example = forms.CharField(required=False, widget=forms.HiddenInput, strip=False)
    a = forms.ChoiceField(label="Model A")
    b = forms.ChoiceField(label="Model B")

    def __init__(self, data=None, *args, versions=(), name: str = "", **kwargs):
        if data is not None and name:
            # a bare version ("2", the old links) means a version of this page's model
            data = data.copy()
            for side in ("a", "b"):
                if data.get(side) and "@" not in data[side]:
                    data[side] = f"{name}@{data[side]}"
        super().__init__(data, *args, **kwargs)
        choices = classifier_choices(versions)
        self.fields["a"].choices = choices
        self.fields["b"].choices = choices

    def clean(self):
        data = super().clean()
        text = data.get("example") or data.get("text") or ""
        if not text.strip():
            self.add_error("text", "Type a text to compare the models on: it is empty.")
        data["text"] = text
        return data


class FlagForm(forms.Form):
    version = forms.CharField(max_length=50)
    input_text = forms.CharField(widget=forms.HiddenInput, strip=False, max_length=MAX_DEMO_TEXT_CHARS)
    predicted_label = forms.CharField(widget=forms.HiddenInput, max_length=200)
    correct_label = forms.ChoiceField(required=False, label="Correct label (optional)")
    comment = forms.CharField(required=False, max_length=2000, widget=forms.TextInput(attrs={"placeholder": "Why is it wrong?"}))

    def __init__(self, *args, labels=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["correct_label"].choices = [("", "(don't know)")] + [(x, x) for x in labels]


class BatchUploadForm(forms.Form):
    file = forms.FileField(label="CSV file (UTF-8, with a header row)")
    text_column = forms.CharField(max_length=200, required=False, label="Text column",
                                  widget=forms.TextInput(attrs={"placeholder": "blank: the longest text column"}))
    allow_numeric = forms.BooleanField(required=False, label="Score a numbers-only column anyway")
    version = forms.ChoiceField(required=False)

    def __init__(self, *args, versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = version_choices(versions)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.BATCH_UPLOAD_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(f"The file is {upload.size / 2**20:.1f} MB; the limit is {limit / 2**20:.1f} MB.")
        return upload


class RegisterForm(forms.Form):
    uri = forms.CharField(max_length=500, label="Store URI of the version folder (inside the model store)",
                          widget=forms.TextInput(attrs={"placeholder": "s3://bucket/models/name/3 or /path/to/store/name/3"}))
    aliases = forms.CharField(required=False, max_length=200, label="Aliases to move to it (comma-separated)",
                              widget=forms.TextInput(attrs={"placeholder": "candidate"}))

    def clean_aliases(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.cleaned_data["aliases"].split(",") if a.strip())


class AliasForm(forms.Form):
    alias = forms.SlugField(max_length=50)
    version = forms.CharField(max_length=50)


class BatchPreviewForm(forms.Form):
    """The start of the chosen CSV (the browser sends at most PREVIEW_MAX_BYTES) and the column wanted."""

    file = forms.FileField()
    text_column = forms.CharField(max_length=200, required=False)
    partial = forms.BooleanField(required=False)
