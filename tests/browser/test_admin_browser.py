"""The admin in a real browser (headless Chromium, Selenium): a support person logs in, opens the
dashboard (charts drawn, refreshing by themselves), finds a dead-lettered delivery, retries it
with the admin action and sees it succeed once the real worker has delivered it to the real
receiver. Screenshots of every step go to ``VOCELIO_TEST_ARTIFACTS_DIR``."""
import random
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt
from endpoints import services as endpoint_services
from events.models import Event, EventType
from tests.conftest import wait_until

pytestmark = [pytest.mark.browser]

PASSWORD = "pw-browser-support-1"


def seed_traffic(*, minutes: int = 60, seed: int = 7) -> None:
    """An hour of deliveries to three endpoints with different health (for the dashboard and the
    README screenshots): CRM mostly fine, Slack with some 429s, Analytics with 503s and timeouts."""
    rng = random.Random(seed)
    now = timezone.now()
    kinds = list(EventType.objects.filter(name__in=["lead.created", "call.ended", "call.started"]))
    profiles = [
        ("CRM (Salesforce)", "https://crm.example.com/hooks", 0.98, 120, [(500, "HTTPError")]),
        ("Slack alerts", "https://hooks.slack.example.com/T0", 0.9, 60, [(429, "HTTPError")]),
        ("Analytics warehouse", "https://analytics.example.com/ingest", 0.65, 450,
         [(503, "HTTPError"), (None, "ReadTimeout"), (502, "HTTPError")]),
    ]
    endpoints = [(endpoint_services.create_endpoint(data={"name": name, "url": url, "events": ["*"]}), *rest)
                 for name, url, *rest in profiles]
    number = 0
    for minute in range(minutes, 0, -1):
        moment = now - timedelta(minutes=minute)
        for endpoint, success, latency, failures in endpoints:
            for _ in range(rng.randint(1, 4) + (2 if 20 < minute < 30 else 0)):
                number += 1
                event = Event.objects.create(
                    event_id=f"evt_seed_{number}", event_type=rng.choice(kinds), timestamp=moment,
                    data={"lead": {"phone": f"+1-555-01{number % 100:02d}", "name": f"Customer {number}"}},
                    environment=endpoint.environment,
                )
                outcomes = []
                while len(outcomes) < 3:
                    ok = rng.random() < success - (0.3 if 20 < minute < 30 and endpoint.name.startswith("Ana") else 0)
                    outcomes.append(ok)
                    if ok:
                        break
                status = Delivery.Status.SUCCEEDED if outcomes[-1] else Delivery.Status.DEAD_LETTERED
                delivery = Delivery.objects.create(event=event, endpoint=endpoint, status=status,
                                                   attempt_count=len(outcomes), completed_at=moment)
                attempts = []
                for attempt_number, ok in enumerate(outcomes, start=1):
                    code, error = (200, "") if ok else rng.choice(failures)
                    attempts.append(DeliveryAttempt(
                        delivery=delivery, attempt_number=attempt_number, url=endpoint.url, http_method="POST",
                        response_status_code=code, error_class=error, started_at=moment,
                        duration_ms=int(rng.lognormvariate(0, 0.4) * latency) if code else 3_000,
                        outcome="succeeded" if ok else ("retry" if attempt_number < 3 else "failed"),
                    ))
                created = DeliveryAttempt.objects.bulk_create(attempts)
                DeliveryAttempt.objects.filter(pk__in=[a.pk for a in created]).update(created_at=moment)
                Delivery.objects.filter(pk=delivery.pk).update(created_at=moment)
    Event.objects.filter(event_id__startswith="evt_seed_").update(received_at=now - timedelta(minutes=30))


def _dead_letter_at(receiver) -> Delivery:
    endpoint = endpoint_services.create_endpoint(data={"name": "Support desk", "url": receiver.url("/hook"),
                                                       "events": ["lead.created"]})
    event = Event.objects.create(event_id="evt_support_ticket_1", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={"lead": {"phone": "+1-555-0199", "name": "Ann"}},
                                 environment=endpoint.environment)
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, status=Delivery.Status.DEAD_LETTERED,
                                       attempt_count=1, last_status_code=503, last_error="HTTP 503",
                                       completed_at=timezone.now())
    DeliveryAttempt.objects.create(delivery=delivery, attempt_number=1, url=endpoint.url, http_method="POST",
                                   request_headers={"Content-Type": "application/json"}, request_body="{}",
                                   response_status_code=503, response_body="maintenance", duration_ms=31,
                                   error_class="HTTPError", outcome="failed", started_at=timezone.now())
    return delivery


def _shot(browser, folder, name: str, *, full_page: bool = False) -> None:
    if full_page:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1400, min(max(height + 120, 1000), 4000))
    browser.save_screenshot(str(folder / f"{name}.png"))
    browser.set_window_size(1400, 1000)


def test_admin_in_browser_login_dashboard_and_retry_a_dead_letter(browser, live_server, worker, receiver,
                                                                    event_types, artifacts_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # given a support user, an hour of traffic and a dead letter whose receiver now answers 200
    User.objects.create_superuser("support", "support@example.com", PASSWORD)
    seed_traffic()
    delivery = _dead_letter_at(receiver)
    wait = WebDriverWait(browser, 20)

    # when: log in through the login form
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys("support")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.ID, "dashboard-link"))
    _shot(browser, artifacts_dir, "01-admin-index")

    # then: the dashboard draws its charts and refreshes them by itself
    browser.find_element(By.LINK_TEXT, "Delivery dashboard").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-volume svg[data-chart=line] polyline"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dashboard svg.chart")) == 7
    Select(browser.find_element(By.ID, "dash-range")).select_by_value("1h")
    browser.find_element(By.CSS_SELECTOR, "#dashboard-filters input[type=submit]").click()
    wait.until(lambda d: "range=1h" in d.current_url)
    browser.get(browser.current_url + "&refresh=2")
    wait.until(lambda d: d.find_element(By.ID, "dashboard").get_attribute("data-refreshed-at"))
    assert browser.find_elements(By.CSS_SELECTOR, '#chart-failing-endpoints rect[data-label="Analytics warehouse"]')
    _shot(browser, artifacts_dir, "02-dashboard", full_page=True)

    # when: find the dead letter by the customer's phone and retry it with the admin action
    browser.get(f"{live_server.url}/admin/deliveries/delivery/?q=%2B1+555+0199")
    browser.find_element(By.CSS_SELECTOR, f"input.action-select[value='{delivery.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("retry_selected")
    _shot(browser, artifacts_dir, "03-retry-selected")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()

    # then: the admin confirms, the worker delivers, and the list shows "succeeded"
    message = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".messagelist .success"))
    assert "Queued 1 delivery(ies) for an attempt now." in message[0].text
    _shot(browser, artifacts_dir, "04-retry-queued")
    wait_until(lambda: Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SUCCEEDED, timeout=30)
    assert receiver.wait_for(1)[0].json()["event_id"] == "evt_support_ticket_1"
    browser.get(f"{live_server.url}/admin/deliveries/delivery/?q=evt_support_ticket_1")
    status = browser.find_element(By.CSS_SELECTOR, "#result_list .delivery-status")
    assert status.get_attribute("data-status") == "succeeded"
    _shot(browser, artifacts_dir, "05-retry-succeeded")

    browser.get(f"{live_server.url}/admin/deliveries/delivery/{delivery.pk}/change/")
    for summary in browser.find_elements(By.CSS_SELECTOR, ".inline-related details")[:4]:
        browser.execute_script("arguments[0].open = true", summary)
    assert "HTTPError" in browser.page_source and "maintenance" in browser.page_source
    _shot(browser, artifacts_dir, "06-delivery-detail", full_page=True)


def test_admin_in_browser_template_preview_renders_while_typing(browser, live_server, transactional_db, event_types,
                                                               artifacts_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # given
    User.objects.create_superuser("editor", "editor@example.com", PASSWORD)
    wait = WebDriverWait(browser, 20)
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/templates_app/payloadtemplate/add/")
    browser.find_element(By.ID, "id_username").send_keys("editor")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.ID, "template-preview"))

    # when: a template is typed (live preview on), then broken
    browser.find_element(By.ID, "id_body").send_keys('{"lead": "{{ data.name | upper }}", "type": "{{ event_type }}"}')
    browser.find_element(By.ID, "preview-data").send_keys('{"name": "Ann Lee"}')
    wait.until(lambda d: d.find_element(By.ID, "preview-output").get_attribute("data-ok") == "true")
    rendered = browser.find_element(By.ID, "preview-output").text
    _shot(browser, artifacts_dir, "07-template-preview", full_page=True)
    body = browser.find_element(By.ID, "id_body")
    body.clear()
    body.send_keys('{"lead": "{{ data.name "}')
    wait.until(lambda d: d.find_element(By.ID, "preview-output").get_attribute("data-ok") == "false")

    # then
    assert '"lead": "ANN LEE"' in rendered and '"type": "lead.created"' in rendered
    assert "TEMPLATE_SYNTAX_ERROR" in browser.find_element(By.ID, "preview-output").text
