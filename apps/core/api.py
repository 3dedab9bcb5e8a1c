from ninja import Router, Schema

router = Router(tags=["account"])


class MeOut(Schema):
    username: str
    is_staff: bool


@router.get("/me", response=MeOut, summary="Who the token or session belongs to")
def me(request):
    return {"username": request.user.get_username(), "is_staff": request.user.is_staff}
