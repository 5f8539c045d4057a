from django.urls import path

from portal.outlets import views

urlpatterns = [
    path("outlets/", views.outlet_list, name="outlets-outlet-list"),
    path("outlets/<int:pk>/", views.outlet_detail, name="outlets-outlet-detail"),
    path("outlets/<int:pk>/live/", views.outlet_live, name="outlets-outlet-live"),
    path("machines/", views.machine_list, name="outlets-machine-list"),
    path("machines/<int:pk>/", views.machine_detail, name="outlets-machine-detail"),
    path("machines/<int:pk>/live/", views.machine_live, name="outlets-machine-live"),
    path("machines/bindings/<int:pk>/end/", views.binding_end, name="outlets-binding-end"),
    path("counters/", views.device_list, name="outlets-device-list"),
    path("counters/live/", views.device_list_live, name="outlets-device-list-live"),
    path("counters/<int:pk>/register/", views.device_register, name="outlets-device-register"),
    path("usage/events/", views.event_list, name="outlets-event-list"),
    path("usage/", views.usage_stats, name="outlets-usage"),
    path("usage/flush/", views.flush, name="outlets-flush"),
]
