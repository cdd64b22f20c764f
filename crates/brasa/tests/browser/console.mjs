// Drives Debian's chromium (playwright-core, no downloaded browser) through the brasa console of
// a running `brasa run`, as an operator would: log in, watch counters move after RADIUS
// traffic, find a subscriber by IP, clear a cache entry (and see the next Accounting-Request
// dropped by the seed script), release a quarantined EP; then check that a read-only user can
// change nothing, that a change without the CSRF token and a forged cookie are refused, that
// HTML in subscriber data stays text, and that the pages read without JavaScript.
// Started by crates/brasa/tests/console_browser.rs, which sets the environment below.
// Exits non-zero at the first failed check; prints `screenshot: PATH` for every page it saves.

import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import path from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("BRASA_URL");
const shots = env("SCREENSHOT_DIR");
const operator = { user: env("OPERATOR_USER"), password: env("OPERATOR_PASSWORD") };
const reader = { user: env("READONLY_USER"), password: env("READONLY_PASSWORD") };
const radius = { auth: env("RADIUS_AUTH"), acct: env("RADIUS_ACCT"), secret: env("NAS_SECRET") };
const mac = env("SUBSCRIBER_NAME");
const ip = env("SUBSCRIBER_IP");
const xssName = env("XSS_NAME");
const xssProperty = env("XSS_PROPERTY");
const policy = env("CACHE_POLICY");
const ep = env("QUARANTINED_EP");

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

async function eventually(what, condition, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) {
      console.log(`ok: ${what}`);
      return;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

/// radclient with `input`; returns whether a reply came back.
function radclient(server, kind, input) {
  try {
    const out = execFileSync("radclient", ["-x", "-r", "1", "-t", "2", server, kind, radius.secret], {
      input,
      encoding: "utf8",
      stdio: ["pipe", "pipe", "pipe"],
    });
    return out.includes("Received ");
  } catch (err) {
    return String(err.stdout || "").includes("Received ");
  }
}

// Any dialog means a script injected through subscriber data ran: recorded, checked at the end.
const dialogs = [];

async function login(context, who) {
  const page = await context.newPage();
  page.on("dialog", async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  await page.goto(`${base}/ui/`);
  check(page.url().includes("/ui/login"), `${who.user}: the console asks for a login first`);
  await page.fill("input[name=user]", who.user);
  await page.fill("input[name=password]", who.password);
  await Promise.all([page.waitForURL("**/ui/overview"), page.click("button[type=submit]")]);
  return page;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const viewport = { width: 1360, height: 900 };

  // Wrong password first: the login page says so.
  {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    await page.goto(`${base}/ui/login`);
    await page.fill("input[name=user]", operator.user);
    await page.fill("input[name=password]", "not the password");
    await page.click("button[type=submit]");
    await page.waitForSelector(".flash.error");
    check((await page.textContent(".flash.error")).includes("wrong user name or password"), "a wrong password is refused");
    await shot(page, "login");
    await context.close();
  }

  const context = await browser.newContext({ viewport });
  const page = await login(context, operator);

  // Overview with live sparklines.
  await page.waitForSelector("figure.spark canvas", { timeout: 20000 });
  check((await page.locator("figure.spark").count()) === 6, "the overview has a sparkline per rate");
  await shot(page, "overview");

  // RADIUS: counters move after traffic, without reloading the page (htmx refresh).
  await page.click("header nav a:has-text('RADIUS')");
  await page.waitForURL("**/ui/radius");
  const requests = async () => {
    const row = page.locator("tr", { has: page.locator("td", { hasText: /^bng-1$/ }) }).first();
    return Number((await row.locator("td").nth(1).textContent()).replace(/\D/g, ""));
  };
  const before = await requests();
  for (let i = 0; i < 3; i++) {
    check(radclient(radius.auth, "auth", `User-Name = "${mac}", User-Password = "${mac}"`), "radclient gets an answer");
  }
  await eventually("the requests counter moves by 3 without a reload", async () => (await requests()) >= before + 3);
  await shot(page, "radius");

  // Subscribers: find one by IP (longest-prefix match).
  await page.click("header nav a:has-text('Subscribers')");
  await page.waitForURL("**/ui/subscribers");
  await page.fill("input[name=q]", ip);
  await page.check("input[name=by][value=ip]");
  await page.click("form.search button");
  await page.waitForSelector("section.results");
  check((await page.textContent("section.results")).includes(`${ip} belongs to ${mac}`), `${ip} is found as ${mac}`);
  await shot(page, "subscribers-by-ip");
  await page.click(`section.results a:has-text("${mac}")`);
  await page.waitForSelector("table.record");
  check((await page.textContent("table.record")).includes(ip), "the record shows the mapping");
  await shot(page, "subscriber-record");

  // HTML in a subscriber's name and properties is text, never markup or script.
  await page.goto(`${base}/ui/subscribers?by=prefix&q=${encodeURIComponent("<img")}`);
  await page.click("ul.names a");
  await page.waitForSelector("table.record");
  const record = await page.textContent("table.record");
  check(record.includes(xssName) && record.includes(xssProperty), "HTML in name and property is shown as text");
  check((await page.locator("table.record img, table.record script").count()) === 0, "and creates no element");
  await shot(page, "subscriber-xss");

  // The cache: clear the entry after a confirmation; the next Accounting-Request is dropped.
  await page.click("header nav a:has-text('Python')");
  await page.waitForURL("**/ui/python");
  await shot(page, "python");
  await page.click(`a:has-text("${policy}")`);
  await page.waitForURL(`**/ui/python/cache/${policy}`);
  await page.fill("form.search input[name=key]", mac);
  await page.click("form.search button");
  await page.waitForURL(/key=/);
  check((await page.locator("td.key", { hasText: mac }).count()) === 1, "the search finds the entry");
  await shot(page, "python-cache");
  check(radclient(radius.acct, "acct", `User-Name = "${mac}", Acct-Status-Type = Interim-Update, Acct-Session-Id = "s1"`),
    "with the entry, an Accounting-Request is answered");
  await page.click("a.button:has-text('Clear')");
  await page.waitForURL(/\/clear\?key_hex=/);
  await shot(page, "python-cache-clear-confirm");
  await page.click("button:has-text('Clear the entry')");
  await page.waitForSelector(".flash.ok");
  check((await page.textContent(".flash.ok")).includes("cleared"), "the entry is cleared");
  check((await page.locator("td.key", { hasText: mac }).count()) === 0, "and gone from the dump");
  check(!radclient(radius.acct, "acct", `User-Name = "${mac}", Acct-Status-Type = Interim-Update, Acct-Session-Id = "s1"`),
    "the next Accounting-Request is dropped by the seed script");
  await page.goto(`${base}/ui/python`);
  const droppedCell = page.locator("tbody tr").first().locator("td").nth(4);
  check(Number((await droppedCell.textContent()).replace(/\D/g, "")) >= 1, "the script counts the drop");

  // A quarantined EP is released.
  await page.goto(`${base}/ui/subscribers`);
  const epRow = page.locator("tr", { has: page.locator("td", { hasText: new RegExp(`^${ep}$`) }) });
  check((await epRow.textContent()).includes("quarantined"), `EP ${ep} is quarantined`);
  await shot(page, "subscribers-eps");
  await epRow.locator("button:has-text('Release quarantine')").click();
  await page.waitForSelector(".flash.ok");
  check((await page.textContent(".flash.ok")).includes(`quarantine of EP ${ep} released`), "the quarantine is released");

  // A change without the CSRF token is refused (the session cookie alone is not enough).
  const forgedPost = await context.request.post(`${base}/ui/python/scripts/python-script-1/reload`, {
    form: { nothing: "here" },
    maxRedirects: 0,
  });
  check(forgedPost.status() === 403, "a POST without the CSRF token gets 403");
  await context.close();

  // A forged session cookie opens nothing.
  {
    const forged = await browser.newContext({ viewport });
    await forged.addCookies([{ name: "brasa_session", value: "ab".repeat(32), url: base }]);
    const page = await forged.newPage();
    await page.goto(`${base}/ui/overview`);
    check(page.url().includes("/ui/login"), "a forged cookie leads to the login page");
    await forged.close();
  }

  // A read-only user sees no button and cannot POST.
  {
    const readOnly = await browser.newContext({ viewport });
    const page = await login(readOnly, reader);
    await page.goto(`${base}/ui/python`);
    check((await page.locator("button:has-text('Reload'), button:has-text('Debug')").count()) === 0, "read-only: no script buttons");
    await page.goto(`${base}/ui/python/cache/${policy}`);
    check((await page.locator("a:has-text('Clear'), button:has-text('Set lifetime')").count()) === 0, "read-only: no cache buttons");
    await page.goto(`${base}/ui/subscribers`);
    check((await page.locator("button:has-text('Release'), button:has-text('Resync'), details.login").count()) === 0,
      "read-only: no subscriber or EP buttons");
    await shot(page, "read-only-subscribers");
    const csrf = await page.getAttribute("input[name=csrf]", "value");
    const refused = await readOnly.request.post(`${base}/ui/subscribers/eps/${ep}/resync`, {
      form: { csrf },
      maxRedirects: 0,
    });
    check(refused.status() === 403, "read-only: a POST with a valid CSRF token still gets 403");
    await readOnly.close();
  }

  // Without JavaScript the console reads the same (progressive enhancement).
  {
    const noScript = await browser.newContext({ viewport, javaScriptEnabled: false });
    const page = await noScript.newPage();
    await page.goto(`${base}/ui/login`);
    await page.fill("input[name=user]", reader.user);
    await page.fill("input[name=password]", reader.password);
    await Promise.all([page.waitForURL("**/ui/overview"), page.click("button[type=submit]")]);
    await page.goto(`${base}/ui/radius`);
    check((await page.textContent("table")).includes("bng-1"), "without JavaScript the RADIUS page shows its tables");
    await shot(page, "radius-without-javascript");
    await noScript.close();
  }
  check(dialogs.length === 0, `no script ran from page data (dialogs: ${JSON.stringify(dialogs)})`);
} finally {
  await browser.close();
}
console.log("console browser checks passed");
