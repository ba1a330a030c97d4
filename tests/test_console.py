"""The events console through Flask's test client: access, pages, replays."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest

from gateway import DoNotRetry
from gateway.config import load_settings, secret_values
from gateway.console import present
from gateway.errors import ConfigError
from gateway.refusals import Refusal
from tests.conftest import ALL_SOURCES_TOML, example

TOKEN = "console-token-0123456789"
USER = "operator"
PASSWORD = "correct horse battery"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
GET_PAGES = [
    "/console/",
    "/console/deliveries",
    "/console/api/deliveries",
    "/console/events/1",
    "/console/api/events/1",
    "/console/events/1/replay",
    "/console/dead-letters",
    "/console/dead-letters/replay",
    "/console/handlers",
    "/console/refusals/1",
]
FORGED_BODY = b'{"id":"evt_forged","type":"message.read"}'
POST_FORMS = ["/console/events/1/replay", "/console/dead-letters/replay"]


@pytest.fixture
def console_app(make_app: Any) -> Any:
    """A gateway with the console on, both token and basic auth configured."""
    return make_app(
        ALL_SOURCES_TOML,
        GATEWAY_CONSOLE="1",
        GATEWAY_CONSOLE_TOKEN=TOKEN,
        GATEWAY_CONSOLE_USER=USER,
        GATEWAY_CONSOLE_PASSWORD=PASSWORD,
    )


@pytest.fixture
def console(console_app: Any) -> Any:
    """A test client of :func:`console_app`."""
    return console_app.test_client()


@pytest.fixture
def delivered(console_app: Any, console: Any, sign: Any, connect: Any) -> Any:
    """Store four message events; the ``failed`` one dead-letters a handler.

    Returns the gateway. Handlers: ``note`` succeeds for every message
    event, ``flaky`` raises for ``message.failed`` until ``fixed`` is set.
    """
    state = {"fixed": False}

    def note(source: str, event: Any) -> None:
        return None

    def flaky(source: str, event: Any) -> None:
        if event.type == "message.failed" and not state["fixed"]:
            raise DoNotRetry("provider said no")

    connect("message.*", note)
    connect("message.*", flaky)
    for name in ("sent", "delivered", "read", "failed"):
        body = example(f"message.{name}.json")
        answer = console.post(
            "/api/webhooks/integration",
            data=body,
            headers={"Content-Type": "application/json", **sign("hmac-sha256", body)},
        )
        assert answer.status_code == 202
    forged = console.post(
        "/api/webhooks/integration",
        data=FORGED_BODY,
        headers={
            "Content-Type": "application/json",
            "X-Integration-Signature": "0" * 64,
            "X-Request-Id": "req-forged-1",
        },
    )
    assert forged.status_code == 401
    gateway = console_app.extensions["gateway"]
    gateway.dispatcher.run_until_idle()
    assert gateway.refusals.flush(5.0)
    gateway.flaky_state = state
    return gateway


def csrf_from(page: Any) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, "the page holds no CSRF field"
    return found.group(1)


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def failed_pk(gateway: Any) -> int:
    return gateway.store.list_events(type_prefix="message.failed")[0].pk


def forged_refusal_id(gateway: Any) -> int:
    refusal_id = gateway.refusals.log.list(limit=1)[0].id
    assert refusal_id is not None
    return int(refusal_id)


def repost(console: Any, sign: Any, name: str) -> Any:
    body = example(name)
    return console.post(
        "/api/webhooks/integration",
        data=body,
        headers={"Content-Type": "application/json", **sign("hmac-sha256", body)},
    )


# -- configuration -------------------------------------------------------------


def test_console_is_off_by_default(make_app):
    client = make_app().test_client()
    assert client.get("/console/").status_code == 404


def test_enabling_the_console_without_credentials_is_a_config_error():
    with pytest.raises(ConfigError, match="needs credentials"):
        load_settings({"GATEWAY_CONSOLE": "1"})


def test_console_user_without_password_is_a_config_error():
    with pytest.raises(ConfigError, match="set together"):
        load_settings({"GATEWAY_CONSOLE": "1", "GATEWAY_CONSOLE_USER": USER})


def test_short_console_token_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 16"):
        load_settings({"GATEWAY_CONSOLE": "1", "GATEWAY_CONSOLE_TOKEN": "short"})


def test_console_credentials_are_redacted_from_logs():
    settings = load_settings(
        {
            "GATEWAY_CONSOLE": "1",
            "GATEWAY_CONSOLE_TOKEN": TOKEN,
            "GATEWAY_CONSOLE_USER": USER,
            "GATEWAY_CONSOLE_PASSWORD": PASSWORD,
        }
    )
    assert {TOKEN, PASSWORD} <= set(secret_values(settings))
    assert TOKEN not in repr(settings) and PASSWORD not in repr(settings)


# -- access control -------------------------------------------------------------


@pytest.mark.parametrize("url", GET_PAGES)
def test_every_page_refuses_a_visitor_without_credentials(console, delivered, url):
    response = console.get(url)
    assert response.status_code == 401
    assert "message.failed" not in response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("url", GET_PAGES)
def test_every_page_refuses_a_wrong_token(console, delivered, url):
    response = console.get(url, headers={"Authorization": "Bearer " + "x" * 24})
    assert response.status_code == 401


@pytest.mark.parametrize("url", GET_PAGES)
def test_every_page_answers_the_bearer_token(console, delivered, url):
    key = forged_refusal_id(delivered) if "refusals" in url else failed_pk(delivered)
    response = console.get(url.replace("/1", f"/{key}"), headers=BEARER)
    assert response.status_code == 200


@pytest.mark.parametrize("url", POST_FORMS)
def test_forms_refuse_a_visitor_without_credentials(console, delivered, url):
    response = console.post(url)
    assert response.status_code == 401
    assert delivered.store.dead_letter_pks() == [failed_pk(delivered)]


def test_basic_auth_with_the_right_password_is_let_in(console, delivered):
    assert console.get("/console/", headers=basic(USER, PASSWORD)).status_code == 200


def test_basic_auth_with_a_wrong_password_is_refused(console, delivered):
    response = console.get("/console/", headers=basic(USER, PASSWORD + "!"))
    assert response.status_code == 401


def test_basic_auth_with_a_wrong_user_is_refused(console, delivered):
    response = console.get("/console/", headers=basic("admin", PASSWORD))
    assert response.status_code == 401


def test_token_only_console_sends_visitors_to_the_sign_in_form(make_app):
    client = make_app(GATEWAY_CONSOLE="1", GATEWAY_CONSOLE_TOKEN=TOKEN).test_client()
    response = client.get("/console/deliveries?source=integration")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/console/login?next=")


def test_sign_in_with_the_token_opens_a_strict_http_only_session(console, delivered):
    form = console.get("/console/login")
    response = console.post(
        "/console/login",
        data={"token": TOKEN, "csrf_token": csrf_from(form), "next": "/console/"},
    )
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert console.get("/console/deliveries").status_code == 200


def test_sign_in_with_a_wrong_token_is_refused(console):
    form = console.get("/console/login")
    response = console.post(
        "/console/login", data={"token": "x" * 24, "csrf_token": csrf_from(form)}
    )
    assert response.status_code == 401
    assert console.get("/console/deliveries").status_code == 401


def test_sign_in_without_the_csrf_token_is_refused(console):
    console.get("/console/login")
    response = console.post("/console/login", data={"token": TOKEN})
    assert response.status_code == 403


def test_sign_in_never_redirects_off_the_console(console):
    form = console.get("/console/login")
    response = console.post(
        "/console/login",
        data={
            "token": TOKEN,
            "csrf_token": csrf_from(form),
            "next": "//evil.example/console",
        },
    )
    assert response.headers["Location"] == "/console/"


def test_sign_out_ends_the_session(console):
    form = console.get("/console/login")
    console.post("/console/login", data={"token": TOKEN, "csrf_token": csrf_from(form)})
    page = console.get("/console/")
    console.post("/console/logout", data={"csrf_token": csrf_from(page)})
    assert console.get("/console/").status_code == 401


def test_a_session_cookie_signed_for_other_credentials_is_refused(make_app, console):
    form = console.get("/console/login")
    console.post("/console/login", data={"token": TOKEN, "csrf_token": csrf_from(form)})
    cookie = console.get_cookie("gateway_console", path="/console").value
    other = make_app(
        GATEWAY_CONSOLE="1", GATEWAY_CONSOLE_TOKEN="another-token-0123456789"
    ).test_client()
    other.set_cookie("gateway_console", cookie, path="/console")
    assert other.get("/console/deliveries").status_code == 303


def test_pages_carry_a_strict_content_security_policy(console):
    response = console.get("/console/", headers=BEARER)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["Cache-Control"] == "no-store"


# -- CSRF ------------------------------------------------------------------------


def test_replay_post_without_csrf_token_is_refused(console, delivered):
    pk = failed_pk(delivered)
    response = console.post(f"/console/events/{pk}/replay", headers=BEARER)
    assert response.status_code == 403
    assert delivered.store.get_event(pk).status == "dead"


def test_replay_post_with_a_wrong_csrf_token_is_refused(console, delivered):
    pk = failed_pk(delivered)
    console.get("/console/", headers=BEARER)
    response = console.post(
        f"/console/events/{pk}/replay", headers=BEARER, data={"csrf_token": "forged"}
    )
    assert response.status_code == 403
    assert delivered.store.get_event(pk).status == "dead"


def test_dead_letter_replay_without_csrf_token_is_refused(console, delivered):
    response = console.post("/console/dead-letters/replay", headers=BEARER)
    assert response.status_code == 403
    assert delivered.store.dead_letter_pks() == [failed_pk(delivered)]


def test_replay_post_from_another_origin_is_refused(console, delivered):
    pk = failed_pk(delivered)
    token = csrf_from(console.get(f"/console/events/{pk}/replay", headers=BEARER))
    response = console.post(
        f"/console/events/{pk}/replay",
        headers={**BEARER, "Origin": "https://evil.example"},
        data={"csrf_token": token},
    )
    assert response.status_code == 403
    assert delivered.store.get_event(pk).status == "dead"


# -- deliveries ----------------------------------------------------------------


def deliveries_text(console: Any, query: str = "") -> str:
    response = console.get("/console/deliveries" + query, headers=BEARER)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_deliveries_are_listed_newest_first(console, delivered):
    text = deliveries_text(console)
    positions = [text.index(f">message.{name}<") for name in ("failed", "sent")]
    assert positions == sorted(positions)


def test_deliveries_filter_by_status(console, delivered):
    text = deliveries_text(console, "?status=dead")
    assert "message.failed" in text and "message.sent" not in text


def test_deliveries_filter_by_type_prefix(console, delivered, sign):
    body = example("stripe.invoice.paid.json")
    console.post(
        "/api/webhooks/stripe",
        data=body,
        headers={"Content-Type": "application/json", **sign("stripe", body)},
    )
    text = deliveries_text(console, "?type=message.*")
    assert "message.read" in text and "invoice.paid" not in text


def test_deliveries_filter_by_source(console, delivered, sign):
    body = example("stripe.invoice.paid.json")
    console.post(
        "/api/webhooks/stripe",
        data=body,
        headers={"Content-Type": "application/json", **sign("stripe", body)},
    )
    text = deliveries_text(console, "?source=stripe")
    assert "invoice.paid" in text and "message.read" not in text


def test_deliveries_filter_by_time(console, delivered, clock):
    assert "No delivery matches" in deliveries_text(console, "?since=2026-01-01T00:01")
    assert "message.read" in deliveries_text(console, "?until=2026-01-01T00:01")


def test_a_bad_filter_value_is_explained_not_a_500(console, delivered):
    text = deliveries_text(console, "?since=yesterday&status=lost")
    assert "must be a date and time" in text and "There is no status" in text


def test_deliveries_page_by_keyset(console_app, console, sign):
    gateway = console_app.extensions["gateway"]
    for number in range(55):
        body = f'{{"id":"evt_page_{number:02d}","type":"ping"}}'.encode()
        console.post(
            "/api/webhooks/integration",
            data=body,
            headers={"Content-Type": "application/json", **sign("hmac-sha256", body)},
        )
    first = deliveries_text(console)
    assert "evt_page_54" in first and "evt_page_04" not in first
    older = re.search(r'href="([^"]*before=(\d+))"', first)
    assert older
    second = deliveries_text(console, "?" + older.group(1).split("?", 1)[1])
    assert "evt_page_04" in second and "evt_page_54" not in second
    assert gateway.store.list_events(limit=1)[0].event.id == "evt_page_54"


def test_deliveries_json_gives_the_first_page(console, delivered):
    response = console.get("/console/api/deliveries?status=dead", headers=BEARER)
    assert [item["type"] for item in response.json["events"]] == ["message.failed"]


def test_filtered_delivery_pages_read_an_index(delivered):
    store = delivered.store
    with store._transaction() as cursor:
        for column in ("source", "status", "type"):
            cursor.execute(
                f"EXPLAIN QUERY PLAN SELECT pk FROM events WHERE {column} = ?"
                " AND pk < ? ORDER BY pk DESC LIMIT 51",
                ("x", 10),
            )
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "USING" in plan and "INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def test_filtered_duplicate_pages_read_the_partial_index(delivered):
    store = delivered.store
    with store._transaction() as cursor:
        cursor.execute(
            "EXPLAIN QUERY PLAN SELECT pk FROM events WHERE duplicates > 0"
            " AND pk < ? ORDER BY pk DESC LIMIT 51",
            (10,),
        )
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    assert "events_duplicate_pk" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


# -- duplicates and refusals --------------------------------------------------


def test_duplicate_filter_lists_only_events_that_were_repeated(
    console, delivered, sign
):
    answer = repost(console, sign, "message.read.json")
    assert answer.status_code == 200 and answer.json["duplicate"] is True
    repost(console, sign, "message.read.json")
    text = deliveries_text(console, "?status=duplicate")
    assert "message.read" in text and "message.sent" not in text
    assert "+2 duplicates" in text
    assert 'value="duplicate" selected' in text


def test_duplicate_filter_without_repeats_lists_nothing(console, delivered):
    assert "No delivery matches" in deliveries_text(console, "?status=duplicate")


def test_deliveries_json_carries_the_duplicate_count(console, delivered, sign):
    repost(console, sign, "message.sent.json")
    response = console.get("/console/api/deliveries?status=duplicate", headers=BEARER)
    assert [(item["type"], item["duplicates"]) for item in response.json["events"]] == [
        ("message.sent", 1)
    ]


def test_event_page_shows_how_many_duplicates_arrived(console, delivered, sign):
    repost(console, sign, "message.failed.json")
    page = console.get(f"/console/events/{failed_pk(delivered)}", headers=BEARER)
    text = page.get_data(as_text=True)
    assert "1 repeat delivery, acknowledged and not dispatched" in text
    assert 'datetime="2026-01-01T00:00:00Z"' in text


def test_event_page_without_repeats_says_none(console, delivered):
    page = console.get(f"/console/events/{failed_pk(delivered)}", headers=BEARER)
    assert re.search(r"<dt>Duplicates</dt><dd[^>]*>none</dd>", page.get_data(True))


def test_refused_filter_lists_refusals_with_their_reason(console, delivered):
    text = deliveries_text(console, "?status=refused")
    assert "invalid_signature" in text
    assert "no configured secret matched" in text
    assert "req-forged-1" in text and "127.0.0.1" in text
    assert f"{len(FORGED_BODY)} B" in text
    assert f"sha256 {hashlib.sha256(FORGED_BODY).hexdigest()[:12]}" in text
    assert "message.sent" not in text and "evt_forged" not in text


def test_refused_filter_narrows_by_source_and_time(console, delivered):
    assert "No refused delivery matches" in deliveries_text(
        console, "?status=refused&source=stripe"
    )
    assert "req-forged-1" in deliveries_text(
        console, "?status=refused&source=integration"
    )
    assert "No refused delivery matches" in deliveries_text(
        console, "?status=refused&since=2026-01-01T00:01"
    )
    assert "req-forged-1" in deliveries_text(
        console, "?status=refused&until=2026-01-01T00:01"
    )


def test_refused_filter_explains_that_type_does_not_apply(console, delivered):
    text = deliveries_text(console, "?status=refused&type=message.*")
    assert "the type filter was ignored" in text
    assert "req-forged-1" in text


def test_refused_list_pages_by_refusal_id(console, delivered):
    log = delivered.refusals.log
    log.insert(
        [
            Refusal(
                source="integration",
                at=1767225600.0 + number,
                status=401,
                code="missing_signature",
                request_id=f"req-page-{number:02d}",
            )
            for number in range(55)
        ]
    )
    first = deliveries_text(console, "?status=refused")
    assert "req-page-54" in first and "req-page-04" not in first
    older = re.search(r'href="[^"]*\?([^"]*before=\d+[^"]*)"', first)
    assert older
    second = deliveries_text(console, "?" + older.group(1).replace("&amp;", "&"))
    assert "req-page-04" in second and "req-forged-1" in second
    assert "req-page-54" not in second


def test_refusal_page_shows_reason_and_what_was_kept(console, delivered):
    refusal_id = forged_refusal_id(delivered)
    page = console.get(f"/console/refusals/{refusal_id}", headers=BEARER)
    text = page.get_data(as_text=True)
    assert "no configured secret matched" in text
    assert hashlib.sha256(FORGED_BODY).hexdigest() in text
    assert "x-integration-signature" in text
    assert "0" * 64 not in text and "evt_forged" not in text


def test_unknown_refusal_is_404(console, delivered):
    response = console.get("/console/refusals/999999", headers=BEARER)
    assert response.status_code == 404


def test_deliveries_json_lists_refusals_under_their_own_key(console, delivered):
    response = console.get("/console/api/deliveries?status=refused", headers=BEARER)
    [row] = response.json["refusals"]
    assert (row["code"], row["request_id"]) == ("invalid_signature", "req-forged-1")


# -- one event ------------------------------------------------------------------


def test_event_page_masks_signature_headers(console, delivered, sign):
    body = b'{"id":"evt_h","type":"ping","token":"tok_hidden_value"}'
    headers = {
        "Content-Type": "application/json",
        "X-Api-Key": "key_hidden_value",
        "X-Trace": "sha256=abcdef0123456789",
        **sign("hmac-sha256", body),
    }
    console.post("/api/webhooks/integration", data=body, headers=headers)
    pk = delivered.store.find_event("evt_h").pk
    text = console.get(f"/console/events/{pk}", headers=BEARER).get_data(as_text=True)
    assert "key_hidden_value" not in text
    assert "sha256=abcdef" not in text
    assert "tok_hidden_value" not in text
    assert "masked" in text


def test_event_page_shows_pretty_payload_and_each_try(console, delivered):
    pk = failed_pk(delivered)
    text = console.get(f"/console/events/{pk}", headers=BEARER).get_data(as_text=True)
    assert "\n  &#34;type&#34;: &#34;message.failed&#34;" in text
    assert "DoNotRetry: provider said no" in text
    assert " ms</td>" in text
    assert "Replay all failed handlers" in text


def test_replay_of_one_handler_asks_for_confirmation_first(console, delivered):
    pk = failed_pk(delivered)
    name = delivered.store.dead_letters()[0].handler
    page = console.get(
        f"/console/events/{pk}/replay", query_string={"handler": name}, headers=BEARER
    )
    assert "Replay this event?" in page.get_data(as_text=True)
    assert delivered.store.get_event(pk).status == "dead"


def test_replay_of_one_handler_queues_it_and_shows_the_result(console, delivered):
    pk = failed_pk(delivered)
    name = delivered.store.dead_letters()[0].handler
    page = console.get(
        f"/console/events/{pk}/replay", query_string={"handler": name}, headers=BEARER
    )
    response = console.post(
        f"/console/events/{pk}/replay",
        headers=BEARER,
        data={"csrf_token": csrf_from(page), "handler": name},
    )
    assert response.status_code == 303
    assert delivered.store.get_event(pk).status == "pending"
    shown = console.get(response.headers["Location"], headers=BEARER)
    assert "Replay queued" in shown.get_data(as_text=True)
    delivered.flaky_state["fixed"] = True
    delivered.dispatcher.run_until_idle()
    runs = delivered.store.handler_runs(pk)
    assert runs[name].status == "ok"
    assert delivered.store.get_event(pk).status == "done"


def test_replay_of_every_failed_handler_leaves_succeeded_ones(console, delivered):
    pk = failed_pk(delivered)
    before = {
        name: run.attempts for name, run in delivered.store.handler_runs(pk).items()
    }
    page = console.get(f"/console/events/{pk}/replay", headers=BEARER)
    console.post(
        f"/console/events/{pk}/replay",
        headers=BEARER,
        data={"csrf_token": csrf_from(page)},
    )
    delivered.flaky_state["fixed"] = True
    delivered.dispatcher.run_until_idle()
    attempts = delivered.store.attempts(pk)
    replayed = {attempt.handler for attempt in attempts[len(before) :]}
    assert len(replayed) == 1 and next(iter(replayed)).endswith("flaky")


def test_replay_of_an_unknown_handler_is_404(console, delivered):
    pk = failed_pk(delivered)
    response = console.get(
        f"/console/events/{pk}/replay",
        query_string={"handler": "nobody"},
        headers=BEARER,
    )
    assert response.status_code == 404


def test_unknown_event_is_404(console, delivered):
    assert console.get("/console/events/9999", headers=BEARER).status_code == 404


def test_event_json_reports_status_and_handlers(console, delivered):
    pk = failed_pk(delivered)
    body = console.get(f"/console/api/events/{pk}", headers=BEARER).json
    assert body["status"] == "dead"
    assert "dead" in body["handlers"].values()


# -- dead letters, handlers, overview ---------------------------------------------


def test_dead_letters_page_lists_each_dead_handler(console, delivered):
    text = console.get("/console/dead-letters", headers=BEARER).get_data(as_text=True)
    assert "provider said no" in text and "evt_01HQ7MSG0004" in text


def test_bulk_replay_of_dead_letters_queues_them(console, delivered):
    page = console.get("/console/dead-letters/replay", headers=BEARER)
    assert "1 dead letter(s)" in page.get_data(as_text=True)
    response = console.post(
        "/console/dead-letters/replay",
        headers=BEARER,
        data={"csrf_token": csrf_from(page)},
    )
    assert response.status_code == 303
    assert delivered.store.dead_letter_pks() == []
    shown = console.get("/console/dead-letters", headers=BEARER).get_data(as_text=True)
    assert "Replay queued for 1 event(s)" in shown


def test_handlers_page_shows_success_rate_per_handler(console, delivered):
    text = console.get("/console/handlers", headers=BEARER).get_data(as_text=True)
    assert "message.*" in text
    assert "100%" in text and "75%" in text


def test_overview_draws_charts_and_message_figures(console, delivered):
    text = console.get("/console/", headers=BEARER).get_data(as_text=True)
    assert text.count("<svg") >= 2
    assert "Stored deliveries per minute" in text
    assert "Messages by current status" in text


# -- masking rules -------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Authorization", "x-hub-signature-256", "stripe-signature", "X-Api-Key", "token"],
)
def test_credential_like_names_are_secret(name):
    assert present.is_secret_name(name)


@pytest.mark.parametrize("name", ["x-github-event", "key_id", "token_type", "author"])
def test_ordinary_names_are_not_secret(name):
    assert not present.is_secret_name(name)


@pytest.mark.parametrize(
    "value",
    ["Bearer abc", "sha256=00ff", "v1,Zm9v", "t=1,v1=ab", "whsec_Zm9v", "a" * 40],
)
def test_credential_like_values_are_masked(value):
    assert present.looks_secret(value)


def test_long_reasons_are_shortened_on_one_line():
    assert present.shorten("a  b\nc", 10) == "a b c"
    assert present.shorten("x" * 20, 8) == "xxxxxxx…"


def test_body_summary_gives_size_and_hash_prefix():
    assert present.body_summary(1234, "ab" * 32) == "1,234 B · sha256 abababababab…"
    assert present.body_summary(None, None) == "–"


@pytest.mark.parametrize(
    "url",
    [
        "/console/events/99999999999999999999999",
        "/console/api/events/99999999999999999999999",
        "/console/refusals/999999999999999999999",
        "/console/deliveries?before=99999999999999999999999999",
        "/console/deliveries?before=%C2%B2",
        "/console/deliveries?status=refused&before=%C2%B2",
        "/console/api/deliveries?before=99999999999999999999999999",
    ],
)
def test_out_of_range_keys_are_not_found_never_500(console, delivered, url):
    response = console.get(url, headers=BEARER)
    assert response.status_code in (200, 404)


def test_sign_in_next_with_a_line_break_goes_to_the_overview(console):
    response = console.get("/console/login?next=/console/%0d%0aX", headers=BEARER)
    assert response.status_code == 303
    assert "\r" not in response.headers["Location"]
    assert response.headers["Location"].endswith("/console/")
