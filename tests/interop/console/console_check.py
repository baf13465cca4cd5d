"""Drives the hub's console in headless Chromium (Selenium + chromedriver) and checks what a
person sees on each page: texts, counts, rows, the masked signature headers, the live stream
of accepted inbound events, replay buttons, the admin-token sign-in, phone widths and keyboard
access. Saves a screenshot of each page.

Run by tests/console.rs, which starts a hub with real data (published events, dead deliveries,
inbound receipts) and checks afterwards that the replays arrived at the receiver.

usage: console_check.py SETTINGS_JSON
"""

import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

DEADLINE_S = 30


def step(text):
    print(f"ok: {text}", flush=True)


class Console:
    def __init__(self, settings):
        self.s = settings
        options = webdriver.ChromeOptions()
        options.binary_location = settings["chromium"]
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={settings['profile']}",
            "--window-size=1280,1000",
        ]:
            options.add_argument(arg)
        service = Service(executable_path=settings["chromedriver"])
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_page_load_timeout(DEADLINE_S)

    # -- waiting for what a person would see ---------------------------------------------------

    def wait(self, what, check, deadline_s=DEADLINE_S):
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            try:
                found = check()
                if found:
                    return found
            except (StaleElementReferenceException, WebDriverException) as error:
                last = error
            time.sleep(0.1)
        self.shot("failure")
        raise AssertionError(f"within {deadline_s}s: {what} (last error: {last}); page text:\n{self.text()[:3000]}")

    def text(self):
        return self.driver.find_element(By.TAG_NAME, "body").text

    def heading(self):
        return self.driver.find_element(By.TAG_NAME, "h1").text

    def see(self, text, deadline_s=DEADLINE_S):
        return self.wait(f"the page shows {text!r}", lambda: text in self.text(), deadline_s)

    def open(self, fragment):
        self.driver.get(f"{self.s['admin']}/console/#{fragment}")

    def go(self, fragment):
        # A hash change, as a click on a link makes it: the page is not reloaded.
        self.driver.execute_script("location.hash = arguments[0]", fragment)

    def shot(self, name):
        os.makedirs(self.s["screenshots"], exist_ok=True)
        self.driver.save_screenshot(os.path.join(self.s["screenshots"], f"{name}.png"))

    def status(self):
        return self.driver.find_element(By.ID, "status").text

    def row(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def button(self, label):
        return self.driver.find_element(By.CSS_SELECTOR, f'button[aria-label="{label}"]')

    def no_secret_on_page(self):
        source = self.driver.page_source
        for secret in self.s["secrets"]:
            assert secret not in source, "a secret reached the page"


def sign_in(c):
    c.open("/overview")
    c.wait("the sign-in form", lambda: c.heading() == "Admin token needed")
    c.shot("sign-in")
    field = c.driver.find_element(By.ID, "admin-token")
    field.send_keys("not-the-token")
    field.send_keys(Keys.ENTER)
    c.wait("a wrong token refused", lambda: c.heading() == "Admin token needed" and "refused" in c.status())
    field = c.driver.find_element(By.ID, "admin-token")
    field.clear()
    field.send_keys(c.s["token"])
    field.send_keys(Keys.ENTER)
    c.wait("the overview after signing in", lambda: c.heading() == "Overview")
    assert c.s["token"] not in c.driver.current_url, "the token must never be in the URL"
    step("the console asks for the admin token, refuses a wrong one and keeps the right one out of the URL")


def card(c, label):
    for element in c.driver.find_elements(By.CSS_SELECTOR, "#overview-cards .card"):
        if element.find_element(By.CLASS_NAME, "label").text == label:
            return element.find_element(By.CLASS_NAME, "value").text
    return None


def overview(c):
    c.open("/overview") if not c.s["token"] else c.go("/overview")
    c.wait("the overview", lambda: c.heading() == "Overview")
    c.wait("three dead letters on the overview", lambda: card(c, "Dead letters") == "3")
    assert card(c, "Pending") == "0", card(c, "Pending")
    c.see("Delivery rate")
    c.see("Attempt latency")
    # Two refreshes make a rate: the plots draw a line.
    c.wait("a plotted line", lambda: c.driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline"))
    rows = c.driver.find_elements(By.CSS_SELECTOR, "tr[data-delivery-row]")
    assert len(rows) == 3, len(rows)
    c.shot("overview")
    step("overview: dead letters 3, pending 0, plots, newest dead letters listed")


def tasks(c):
    c.go("/tasks")
    c.wait("the tasks page", lambda: c.heading() == "Tasks")
    query = c.driver.find_element(By.ID, "task-q")
    query.send_keys(c.s["task"])
    query.send_keys(Keys.ENTER)
    link = c.wait("the task in the results", lambda: c.driver.find_element(By.LINK_TEXT, c.s["task"]))
    results = c.driver.find_element(By.ID, "task-results").text
    assert "completed" in results and "1 task" in results, results
    c.driver.find_element(By.ID, "task-state").send_keys("failed")
    c.driver.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]").click()
    c.wait("no failed task", lambda: "0 tasks" in c.driver.find_element(By.ID, "task-results").text)
    c.driver.find_element(By.ID, "task-state").send_keys("completed")
    c.driver.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]").click()
    link = c.wait("the task again", lambda: c.driver.find_element(By.LINK_TEXT, c.s["task"]))
    c.shot("tasks")
    link.click()
    step("tasks: found by id and by state, not by another state")


def timeline(c):
    c.wait("the task timeline", lambda: c.heading() == f"Task {c.s['task']}")
    c.see("#1 status → working")
    c.see("#2 artifact report.md (1 part)")
    c.see("#3 status → completed")
    counts = c.driver.find_element(By.ID, "task-counts").text
    assert "delivered 3" in counts and "dead 3" in counts, counts
    dead_row = c.row(f'tr[data-delivery-row="{c.s["dead"][0]}"]')
    text = dead_row.text
    assert "dead" in text and "HTTP 500" in text, text
    # The attempt log shows how each request was signed, masked.
    assert "webhook-signature: v1a," in text, text
    ok_row = c.row(f'tr[data-delivery-row="{c.s["delivered"][0]}"]')
    ok_row.find_element(By.TAG_NAME, "summary").click()
    c.wait("the delivered attempt's masked token", lambda: "x-a2a-notification-token: ****" in ok_row.text)
    assert "HTTP 200" in ok_row.text, ok_row.text
    c.no_secret_on_page()
    assert c.driver.find_element(By.XPATH, "//button[starts-with(., 'Replay all dead (3)')]")
    c.shot("task-timeline")
    step("task timeline: three events in order, deliveries under each, attempts with status and masked headers")
    c.button(f"Replay delivery 1 to {c.s['dead_config']}").click()
    c.wait("the replay acknowledged", lambda: "replayed" in c.status())
    c.wait(
        "the replayed delivery shown delivered",
        lambda: c.row(f'tr[data-delivery-row="{c.s["dead"][0]}"] td:nth-child(2) .badge').text == "delivered",
    )
    c.wait("counts updated live", lambda: "dead 2" in c.driver.find_element(By.ID, "task-counts").text)
    step("task timeline: replay clicked, the delivery turned delivered without a reload")


def configs(c):
    c.go("/configs")
    c.wait("the configs page", lambda: c.heading() == "Push configs")
    c.see(c.s["dead_config"])
    c.see("2 configs")
    c.button(f"Health of config {c.s['dead_config']}").click()
    c.see(f"Health of {c.s['dead_config']}")
    c.see("Last hour")
    text = c.text()
    assert "attempts" in text and "failed" in text, text
    c.no_secret_on_page()
    c.shot("configs")
    step("configs: both listed with state and credentials kind, health shown on request")


def inbound(c):
    c.go("/inbound")
    c.wait("the inbound page", lambda: c.heading() == "Inbound subscriptions")
    # The heading comes before the list, which the page fetches after it: wait for the link.
    c.wait("the subscription listed", lambda: c.driver.find_element(By.LINK_TEXT, c.s["subscription"])).click()
    c.wait("the subscription page", lambda: c.s["subscription"] in c.heading())
    receipts = c.wait("two receipts", lambda: "2 receipts" in c.text() and c.driver.find_element(By.ID, "receipts"))
    text = receipts.text
    assert "accepted" in text and "unauthorized" in text, text
    assert "✔ token: x-a2a-notification-token matches" in text, text
    assert "✘ token: x-a2a-notification-token does not match" in text, text
    assert "order: first event of the task" in text, text
    c.wait("the accepted event in the live list", lambda: "#1" in c.driver.find_element(By.ID, "live-events").text)
    # A peer pushes while the page is open: it appears without a reload.
    body = json.dumps({"statusUpdate": {"taskId": c.s["remote_task"], "contextId": "ctx", "status": {"state": "TASK_STATE_COMPLETED"}}}).encode()
    request = urllib.request.Request(c.s["push_url"], data=body, method="POST", headers={
        "content-type": "application/json", "x-a2a-notification-token": c.s["push_token"]})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200, answer.status
    c.wait("the new event streamed in", lambda: "#2" in c.driver.find_element(By.ID, "live-events").text
           and "status → completed" in c.driver.find_element(By.ID, "live-events").text)
    c.wait("its receipt listed", lambda: "3 receipts" in c.text())
    c.no_secret_on_page()
    c.shot("inbound")
    step("inbound: receipts with each check's verdict and the conformance notes; accepted events streamed live")


def keys(c):
    c.go("/keys")
    c.wait("the keys page", lambda: c.heading() == "Signing keys")
    text = c.text()
    assert "EdDSA" in text and "ES256" in text and "active" in text, text
    jwks = json.loads(c.driver.find_element(By.ID, "jwks").text)
    kids = {key["kid"] for key in jwks["keys"]}
    assert len(kids) == 2 and all("d" not in key for key in jwks["keys"]), jwks
    c.shot("keys")
    c.driver.find_element(By.XPATH, "//button[.='Rotate keys']").click()
    c.driver.switch_to.alert.accept()
    c.wait("the rotation acknowledged", lambda: "Signing keys rotated." in c.status())
    c.wait("four keys, the old two retiring", lambda: len(c.driver.find_elements(By.CSS_SELECTOR, "tr[data-kid]")) == 4)
    for kid in kids:
        state = c.row(f'tr[data-kid="{kid}"] .badge').text
        assert state == "retiring", (kid, state)
    assert len(json.loads(c.driver.find_element(By.ID, "jwks").text)["keys"]) == 4
    step("keys: the keys in force and the published JWKS; rotation confirmed, the old keys retiring")


def dead_letters(c):
    c.go("/dead")
    c.wait("the dead letters page", lambda: c.heading() == "Dead letters")
    c.wait("two dead deliveries left", lambda: "2 dead deliveries" in c.text())
    c.shot("dead-letters")
    c.driver.find_element(By.CSS_SELECTOR, f'tr[data-delivery-row="{c.s["dead"][1]}"] input[type=checkbox]').click()
    c.driver.find_element(By.XPATH, "//button[.='Replay selected']").click()
    c.wait("one replayed", lambda: "Replayed 1 selected delivery" in c.status())
    c.wait("one dead delivery left", lambda: "1 dead delivery" in c.text())
    task = c.driver.find_element(By.ID, "dead-task")
    task.send_keys("no-such-task")
    task.send_keys(Keys.ENTER)
    c.wait("nothing matches another task", lambda: "0 dead deliveries" in c.text())
    task.clear()
    task.send_keys(c.s["task"])
    task.send_keys(Keys.ENTER)
    c.wait("the last dead delivery", lambda: "1 dead delivery" in c.text())
    c.driver.find_element(By.XPATH, "//button[.='Replay all matching']").click()
    c.wait("all matching replayed", lambda: "Replayed 1 dead deliveries" in c.status())
    c.wait("no dead delivery left", lambda: "0 dead deliveries" in c.text())
    step("dead letters: filtered, one replayed by selection, the rest by filter")


def phone_and_keyboard(c):
    c.driver.set_window_size(390, 844)
    for fragment, name in [("/overview", "phone-overview"), (f"/task//{c.s['task']}", "phone-task")]:
        c.go(fragment)
        c.wait("the page at phone width", lambda: c.driver.find_elements(By.TAG_NAME, "h1"))
        time.sleep(0.2)
        overflow = c.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{fragment} scrolls sideways by {overflow}px at phone width"
        c.shot(name)
    c.driver.set_window_size(1280, 1000)
    unlabeled = c.driver.execute_script(
        "return [...document.querySelectorAll('input, select')]"
        ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.outerHTML)")
    assert not unlabeled, unlabeled
    c.open("/keys")
    c.wait("the keys page", lambda: c.heading() == "Signing keys")
    first = c.driver.execute_script(
        "return [...document.querySelectorAll('a[href], button, input, select')]"
        ".find(e => e.tabIndex >= 0 && !e.hidden).textContent")
    assert first == "Skip to content", first
    c.driver.execute_script("document.querySelector('.skip').focus()")
    assert c.driver.switch_to.active_element.text == "Skip to content"
    c.driver.switch_to.active_element.send_keys(Keys.TAB)
    assert c.driver.switch_to.active_element.text == "a2a-push-hub", c.driver.switch_to.active_element.text
    c.driver.switch_to.active_element.send_keys(Keys.TAB)
    assert c.driver.switch_to.active_element.text == "Overview", c.driver.switch_to.active_element.text
    c.driver.switch_to.active_element.send_keys(Keys.ENTER)
    c.wait("the overview opened from the keyboard", lambda: c.heading() == "Overview")
    step("phone width without sideways scrolling, every field labelled, navigation by keyboard")


def main():
    settings = json.loads(sys.argv[1])
    c = Console(settings)
    try:
        if settings["token"]:
            sign_in(c)
        overview(c)
        tasks(c)
        timeline(c)
        configs(c)
        inbound(c)
        keys(c)
        dead_letters(c)
        phone_and_keyboard(c)
    finally:
        c.driver.quit()


if __name__ == "__main__":
    main()
