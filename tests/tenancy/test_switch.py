from django.test import Client
from helpers import sign_in


def test_switching_hands_the_user_over_to_the_other_tenant(as_acme):
    client = as_acme("acme_owner")
    response = client.get("/switch/globex/")
    assert response.status_code == 302
    target = response["Location"]
    assert target.startswith("http://globex.localhost/accounts/handoff/?token=")
    globex = Client(HTTP_HOST="globex.localhost")
    landed = globex.get(target.replace("http://globex.localhost", ""))
    assert landed.status_code == 302 and landed["Location"] == "/"
    assert globex.get("/").status_code == 200
    # the link works once
    assert Client(HTTP_HOST="globex.localhost").get(target.replace("http://globex.localhost", "")).status_code == 403


def test_a_handoff_token_is_only_for_its_tenant(as_acme):
    target = as_acme("acme_owner").get("/switch/globex/")["Location"]
    stolen = target.replace("http://globex.localhost", "")
    assert Client(HTTP_HOST="acme.localhost").get(stolen).status_code == 403


def test_switching_to_a_tenant_one_is_not_a_member_of_is_404(globex_client, people):
    sign_in(globex_client, people["globex_owner"], "globex")
    assert globex_client.get("/switch/acme/").status_code == 404


def test_the_switcher_lists_the_other_tenants(as_acme):
    response = as_acme("acme_owner").get("/")
    assert b"/switch/globex/" in response.content
