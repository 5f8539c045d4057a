from django.urls import path

from portal.facilities import live, views

urlpatterns = [
    path("sites/", views.site_list, name="facilities-site-list"),
    path("sites/new/", views.site_create, name="facilities-site-create"),
    path("sites/<int:pk>/", views.site_detail, name="facilities-site-detail"),
    path("sites/<int:pk>/edit/", views.site_edit, name="facilities-site-edit"),
    path("sites/<int:pk>/delete/", views.site_delete, name="facilities-site-delete"),
    path("assets/", views.asset_list, name="facilities-asset-list"),
    path("assets/new/", views.asset_create, name="facilities-asset-create"),
    path("assets/<int:pk>/", views.asset_detail, name="facilities-asset-detail"),
    path("assets/<int:pk>/live/", live.asset_live, name="facilities-asset-live"),
    path("assets/<int:pk>/edit/", views.asset_edit, name="facilities-asset-edit"),
    path("assets/<int:pk>/delete/", views.asset_delete, name="facilities-asset-delete"),
    path("assets/<int:pk>/devices/new/", views.binding_create, name="facilities-binding-create"),
    path("assets/<int:pk>/devices/<int:binding_pk>/remove/", views.binding_delete, name="facilities-binding-delete"),
]
