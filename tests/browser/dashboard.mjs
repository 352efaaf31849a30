// A merchant works in the dashboard as a person would: signs in, finds a payment by its id,
// refunds part of it, and redelivers one of its webhook events. Every form is a plain POST.
import { check, launch } from "./launch.mjs";

const base = process.env.KASSA_URL;
const paymentId = process.env.PAYMENT_ID;
const { context, close } = await launch();
try {
  const page = await context.newPage();
  await page.setViewportSize({ width: 375, height: 900 });
  const problems = [];
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));

  // Signed out, the dashboard sends the browser to sign in.
  await page.goto(`${base}/dashboard`);
  check(page.url().endsWith("/dashboard/login"), `asked to sign in: ${page.url()}`);
  await page.getByLabel("Email").fill(process.env.EMAIL);
  await page.getByLabel("Password").fill(process.env.PASSWORD);
  await Promise.all([page.waitForURL("**/dashboard/payments"), page.keyboard.press("Enter")]);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 375, `the payments list is ${width}px wide at 375`);

  // Find the payment by id.
  await page.getByLabel("Find a payment by id").fill(paymentId);
  await Promise.all([page.waitForURL(`**/dashboard/payments/${paymentId}`), page.keyboard.press("Enter")]);
  const amount = await page.getByTestId("payment-amount").textContent();
  check(amount.trim() === "€25.00", `the payment's amount: ${amount}`);

  // Refund part of it.
  await page.getByLabel(/Refund amount/).fill("4.00");
  await page.getByLabel("Reason (optional)").fill("one item returned");
  await Promise.all([page.waitForURL("**notice=refunded"), page.getByRole("button", { name: "Refund" }).click()]);
  const refunded = await page.getByTestId("refunded").textContent();
  check(refunded.trim() === "€4.00", `refunded: ${refunded}`);
  const status = await page.getByTestId("payment-status").textContent();
  check(status.trim() === "partially_refunded", `status: ${status}`);
  console.log(`refunded ${refunded.trim()}`);

  // Redeliver the checkout's event to the webhook.
  const row = page.locator("tr", { hasText: "checkout.session.completed" }).first();
  await Promise.all([page.waitForURL("**notice=redelivered"), row.getByRole("button", { name: "Redeliver" }).click()]);
  check((await page.textContent("main")).includes("queued for delivery again"), "redelivery noticed");
  console.log("redelivered checkout.session.completed");

  // Create an API key (its secret shown once), then revoke it.
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Name").fill("Shop backend");
  await page.getByLabel("checkout").check();
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByTestId("key-secret").textContent()).trim();
  check(/^sk_test_/.test(secret), "a test key's secret is shown");
  console.log(`key ${secret}`);
  await Promise.all([
    page.waitForURL("**notice=key_revoked"),
    page.getByRole("button", { name: "Revoke Shop backend" }).click(),
  ]);
  check(!(await page.textContent("main")).includes(secret), "the secret is not shown again");
  check((await page.textContent("main")).includes("No keys."), "the key is gone");
  console.log("key revoked");

  // Sign out.
  await Promise.all([page.waitForURL("**/dashboard/login**"), page.getByRole("button", { name: "Sign out" }).click()]);
  await page.goto(`${base}/dashboard/payments`);
  check(page.url().endsWith("/dashboard/login"), "signed out for good");
  check(problems.length === 0, `console errors: ${problems.join(" | ")}`);
} finally {
  await close();
}
