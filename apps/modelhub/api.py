"""`GET /api/models` and `POST /api/models/{name}/predict` (one onnxruntime batch per call)."""
from django.conf import settings
from ninja import Router, Schema
from ninja.errors import HttpError

from apps.core.ratelimit import rate_limit_hit

from .models import ModelVersion
from .runtime import ModelRuntimeError, PredictionInputError
from .selectors import ModelNotFound, model_listing, model_version_get
from .services import prediction_make
from .store import StoreError

router = Router(tags=["models"])


class ModelOut(Schema):
    name: str
    version: str
    kind: str
    aliases: list[str]


class PredictIn(Schema):
    inputs: list[str]
    version: str | None = None


class PredictionOut(Schema):
    label: str
    scores: dict[str, float]
    truncated: bool = False


class PredictOut(Schema):
    model: str
    version: str
    predictions: list[PredictionOut]
    latency_ms: float


@router.get("/models", response=list[ModelOut], summary="Registered model versions and their aliases")
def models_list(request):
    return model_listing()


@router.post("/models/{name}/predict", response=PredictOut, summary="Classify texts with a model version")
def models_predict(request, name: str, payload: PredictIn):
    rate_limit_hit(user=request.user, scope="predict")
    max_inputs, max_chars = settings.PREDICT_MAX_INPUTS, settings.PREDICT_MAX_TEXT_CHARS
    if len(payload.inputs) > max_inputs:
        raise HttpError(400, f"At most {max_inputs} inputs per call; got {len(payload.inputs)}.")
    too_long = [i for i, text in enumerate(payload.inputs) if len(text) > max_chars]
    if too_long:
        raise HttpError(422, f"Input #{too_long[0] + 1} has {len(payload.inputs[too_long[0]])} characters; the "
                             f"limit is {max_chars} per input ({len(too_long)} input(s) over it).")
    try:
        model_version = model_version_get(name=name, version=payload.version)
    except ModelNotFound as exc:
        raise HttpError(404, str(exc)) from exc
    if model_version.kind != ModelVersion.Kind.CLASSIFIER:
        raise HttpError(400, f"{model_version} is an {model_version.kind}: only classifiers predict labels.")
    try:
        batch = prediction_make(user=request.user, model_version=model_version, texts=payload.inputs, source="api")
    except PredictionInputError as exc:
        raise HttpError(400, str(exc)) from exc
    except (ModelRuntimeError, StoreError) as exc:
        raise HttpError(503, f"The model could not run: {exc}") from exc
    return {
        "model": batch.model, "version": batch.version, "latency_ms": round(batch.latency_ms, 3),
        "predictions": [{"label": p.label, "scores": p.scores, "truncated": p.truncated} for p in batch.predictions],
    }
