// /docs under its Content-Security-Policy, used as a person would: Swagger UI renders from
// kassa alone, the payments operations open, "Try it out" and the Authorize dialog work, and
// the browser reports no CSP violation. The listener is proven live by one violation we
// provoke on purpose at the end (an image from another origin), which must be the only one.
import { check, launch } from "./launch.mjs";

const base = process.env.KASSA_URL;
const { context, close } = await launch();
try {
  const page = await context.newPage();
  const violations = [];
  page.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) violations.push(message.text());
  });
  const outside = [];
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(base) && !url.startsWith("data:")) outside.push(url);
  });
  await page.goto(`${base}/docs`);
  await page.locator(".opblock").first().waitFor({ timeout: 60000 });
  const operations = await page.locator(".opblock").count();
  check(operations >= 15, `only ${operations} operations rendered`);

  const payments = page.locator(".opblock-tag-section", { has: page.locator("#operations-tag-payments") });
  const summaries = payments.locator(".opblock-summary-control");
  const count = await summaries.count();
  check(count >= 5, `only ${count} payments operations`);
  for (let index = 0; index < count; index += 1) {
    await summaries.nth(index).click();
  }
  await page.waitForFunction((n) => document.querySelectorAll(".opblock.is-open").length >= n, count, { timeout: 60000 });
  await payments.locator(".try-out__btn").first().click();
  await payments.locator(".execute").first().waitFor({ timeout: 30000 });
  await page.locator(".authorize").first().click();
  await page.locator(".modal-ux").waitFor({ timeout: 30000 });
  check(violations.length === 0, `CSP violations: ${violations.join(" | ")}`);
  check(outside.length === 0, `requests left kassa: ${outside.join(", ")}`);

  await page.evaluate(() => {
    const image = document.createElement("img");
    image.src = "https://example.invalid/provoked.png";
    document.body.appendChild(image);
  });
  await page.waitForFunction(() => true);
  for (let waited = 0; violations.length === 0 && waited < 50; waited += 1) {
    await page.waitForTimeout(100);
  }
  check(violations.length === 1, `the provoked violation was not reported once: ${violations.length}`);
  console.log(JSON.stringify({ operations, opened: count, authorize: true }));
} finally {
  await close();
}
