"""Seed 000's REST API for sites and assets, on its paths: `/assets/sites/`, `/assets/assets/`
(list with `status`, `site`, `search`, `page`; create; retrieve; PUT; PATCH; DELETE) and
`GET /api/assets/{id}/sensors/` (the sensors of every device bound to the asset, as seed 000 asks).

Built with the project's toolkit (portal.api.toolkit): members by API key, access token or session;
everyone reads, admins change sites and assets (as on the pages); lists are seed 000's pages
{count, next, previous, results}. The filters are the pages' FilterSets.
"""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Count, ProtectedError
from django.shortcuts import get_object_or_404
from ninja import Field, Query
from ninja.responses import Status

from portal.api.endpoint import ApiError
from portal.api.toolkit import ErrorOut, PageNumber, Router, Schema, apply_changes, audit, member, paginate, text
from portal.facilities.filters import AssetFilter, SiteFilter
from portal.facilities.models import Asset, Site, validate_tag, validate_time_zone
from portal.tenancy.models import Role

router = Router(tags=["Assets (seed 000)"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}
ID = Field(None, ge=1, le=2**63 - 1)


def filtered(filterset_class, data: dict, queryset):
    return filterset_class({k: v for k, v in data.items() if v not in (None, "")}, queryset=queryset).qs


def checked(validator, value: str, field: str) -> str:
    from django.core.exceptions import ValidationError

    try:
        validator(value)
    except ValidationError as error:
        raise ApiError(
            400, "invalid_request", f"{field}: {error.messages[0]}", fields={field: error.messages[0]}
        ) from None
    return value


def save_or_conflict(instance, message: str, field: str) -> None:
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise ApiError(409, "conflict", message, fields={field: "taken"}) from None


def delete_or_conflict(request, instance, action: str, message: str) -> None:
    try:
        instance.delete()
    except ProtectedError:
        raise ApiError(409, "in_use", message) from None
    audit(request, action, instance, {"name": str(instance)})


# --- sites ----------------------------------------------------------------------------------------


class SiteIn(Schema):
    name: text(150, min_length=1)
    address: text(300) = ""
    time_zone: text(64) = "UTC"


class SitePatch(Schema):
    name: text(150, min_length=1) | None = None
    address: text(300) | None = None
    time_zone: text(64) | None = None


class SiteOut(Schema):
    id: int
    name: str
    address: str
    time_zone: str
    asset_count: int
    created_at: datetime


class SiteQuery(Schema):
    search: text(100) | None = None
    status: text(20) | None = Field(None, description="Accepted for seed 000's clients; sites have no status")


def sites():
    return Site.objects.annotate(asset_count=Count("assets")).order_by("name")


def site_values(payload: Schema, partial: bool) -> dict:
    values = payload.dict(exclude_unset=partial, exclude_none=partial)
    if "time_zone" in values:
        checked(validate_time_zone, values["time_zone"], "time_zone")
    return values


@router.get("/assets/sites/", response=list[SiteOut], auth=member(), summary="Sites")
@paginate(PageNumber)
def site_list(request, filters: Query[SiteQuery]):
    return filtered(SiteFilter, {"q": filters.search}, sites())


@router.post("/assets/sites/", response={201: SiteOut, **ERRORS}, auth=member(Role.ADMIN), summary="Create a site")
def site_create(request, payload: SiteIn):
    site = Site(**site_values(payload, partial=False))
    save_or_conflict(site, f"A site named “{site.name}” exists already.", "name")
    audit(request, "site.created", site, payload.dict())
    return Status(201, sites().get(pk=site.pk))


@router.get("/assets/sites/{site_id}/", response={200: SiteOut, **ERRORS}, auth=member(), summary="A site")
def site_detail(request, site_id: int):
    return get_object_or_404(sites(), pk=site_id)


def update_site(request, site_id: int, payload: Schema, partial: bool):
    site = get_object_or_404(Site, pk=site_id)
    changes = apply_changes(site, site_values(payload, partial))
    if changes:
        save_or_conflict(site, f"A site named “{site.name}” exists already.", "name")
        audit(request, "site.updated", site, changes)
    return sites().get(pk=site.pk)


@router.put(
    "/assets/sites/{site_id}/", response={200: SiteOut, **ERRORS}, auth=member(Role.ADMIN), summary="Replace a site"
)
def site_put(request, site_id: int, payload: SiteIn):
    return update_site(request, site_id, payload, partial=False)


@router.patch(
    "/assets/sites/{site_id}/", response={200: SiteOut, **ERRORS}, auth=member(Role.ADMIN), summary="Change a site"
)
def site_patch(request, site_id: int, payload: SitePatch):
    return update_site(request, site_id, payload, partial=True)


@router.delete(
    "/assets/sites/{site_id}/", response={204: None, **ERRORS}, auth=member(Role.ADMIN), summary="Delete a site"
)
def site_delete(request, site_id: int):
    site = get_object_or_404(Site, pk=site_id)
    delete_or_conflict(request, site, "site.deleted", "The site has assets: delete or move them first.")
    return Status(204, None)


# --- assets ---------------------------------------------------------------------------------------


class AssetIn(Schema):
    site: int = Field(ge=1, le=2**63 - 1, description="The site's id")
    tag: text(64, min_length=1)
    name: text(150) = ""
    asset_type: Asset.Type = Asset.Type.OTHER
    status: Asset.Status = Asset.Status.OPERATIONAL


class AssetPatch(Schema):
    site: int | None = ID
    tag: text(64, min_length=1) | None = None
    name: text(150) | None = None
    asset_type: Asset.Type | None = None
    status: Asset.Status | None = None


class AssetOut(Schema):
    id: int
    site: int = Field(alias="site_id")
    site_name: str = Field(alias="site.name")
    tag: str
    name: str
    asset_type: str = Field(alias="type")
    status: str
    device_count: int
    sensor_count: int
    created_at: datetime


class AssetQuery(Schema):
    status: Asset.Status | None = None
    site: int | None = ID
    search: text(100) | None = None


def assets():
    return (
        Asset.objects.select_related("site")
        .annotate(device_count=Count("bindings", distinct=True), sensor_count=Count("bindings__device__sensors"))
        .order_by("site__name", "tag")
    )


def asset_values(payload: Schema, partial: bool) -> dict:
    values = payload.dict(exclude_unset=partial, exclude_none=partial)
    if "asset_type" in values:
        values["type"] = values.pop("asset_type")
    if "site" in values:
        site = Site.objects.filter(pk=values.pop("site")).first()
        if site is None:
            raise ApiError(400, "invalid_request", "site: there is no such site.", fields={"site": "no such site"})
        values["site"] = site
    if "tag" in values:
        checked(validate_tag, values["tag"], "tag")
    return values


def tag_taken(asset) -> str:
    return f"The site already has an asset tagged “{asset.tag}”."


@router.get("/assets/assets/", response=list[AssetOut], auth=member(), summary="Assets")
@paginate(PageNumber)
def asset_list(request, filters: Query[AssetQuery]):
    return filtered(AssetFilter, {"status": filters.status, "site": filters.site, "q": filters.search}, assets())


@router.post("/assets/assets/", response={201: AssetOut, **ERRORS}, auth=member(Role.ADMIN), summary="Create an asset")
def asset_create(request, payload: AssetIn):
    asset = Asset(**asset_values(payload, partial=False))
    save_or_conflict(asset, tag_taken(asset), "tag")
    audit(request, "asset.created", asset, {"tag": asset.tag, "site": asset.site.name})
    return Status(201, assets().get(pk=asset.pk))


@router.get("/assets/assets/{asset_id}/", response={200: AssetOut, **ERRORS}, auth=member(), summary="An asset")
def asset_detail(request, asset_id: int):
    return get_object_or_404(assets(), pk=asset_id)


def update_asset(request, asset_id: int, payload: Schema, partial: bool):
    asset = get_object_or_404(Asset.objects.select_related("site"), pk=asset_id)
    changes = apply_changes(asset, asset_values(payload, partial))
    if changes:
        save_or_conflict(asset, tag_taken(asset), "tag")
        audit(request, "asset.updated", asset, changes)
    return assets().get(pk=asset.pk)


@router.put(
    "/assets/assets/{asset_id}/",
    response={200: AssetOut, **ERRORS},
    auth=member(Role.ADMIN),
    summary="Replace an asset",
)
def asset_put(request, asset_id: int, payload: AssetIn):
    return update_asset(request, asset_id, payload, partial=False)


@router.patch(
    "/assets/assets/{asset_id}/", response={200: AssetOut, **ERRORS}, auth=member(Role.ADMIN), summary="Change an asset"
)
def asset_patch(request, asset_id: int, payload: AssetPatch):
    return update_asset(request, asset_id, payload, partial=True)


@router.delete(
    "/assets/assets/{asset_id}/", response={204: None, **ERRORS}, auth=member(Role.ADMIN), summary="Delete an asset"
)
def asset_delete(request, asset_id: int):
    asset = get_object_or_404(Asset.objects.select_related("site"), pk=asset_id)
    delete_or_conflict(request, asset, "asset.deleted", "The asset cannot be deleted while something refers to it.")
    return Status(204, None)


# --- an asset's sensors ---------------------------------------------------------------------------


class AssetSensorOut(Schema):
    id: int
    device_id: str = Field(alias="device.device_id")
    sensor_id: str = Field(alias="key")
    type: str
    unit: str
    label: str


@router.get(
    "/api/assets/{asset_id}/sensors/",
    response={200: list[AssetSensorOut], **ERRORS},
    auth=member(),
    summary="The sensors of every device bound to an asset",
)
def asset_sensors(request, asset_id: int):
    return get_object_or_404(Asset, pk=asset_id).sensors()
