// The README's pictures of the checkout page, the payments list and a payment's page, taken
// from a scratch `kassa serve` (scripts/screenshots.sh starts it): a merchant with a few
// payments in several currencies, one paid through checkout and partly refunded.
import { launch } from "./launch.mjs";

const base = process.env.KASSA_URL;
const out = process.env.OUT_DIR;
const email = "shop@example.com";
const password = "correct horse battery staple";

async function api(path, body, token) {
  const response = await fetch(`${base}/api${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: {
      "Content-Type": "application/json",
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : response.json();
}

await api("/auth/register", { name: "Corner Tea House", email, password });
const { access_token: token } = await api("/auth/login", { email, password });
const card = (number) => ({ number, exp_month: 12, exp_year: 2030, cvc: "123", holder_name: "Grace Hopper" });
for (const [amount, currency, number] of [
  [4200, "USD", "4242424242424242"],
  [150000, "JPY", "5555555555554444"],
  [1999, "GBP", "4000000000000002"],
  [2750, "CHF", "4242424242424242"],
]) {
  const payment = await api("/payments", { amount, currency, payment_method: "credit_card", details: card(number), description: "Tea subscription" }, token);
  await api("/payments/process", { payment_id: payment.id }, token);
}
const session = (description) => api("/checkout/sessions", {
  amount: 2500, currency: "EUR", description,
  success_url: `${base}/healthz`, cancel_url: `${base}/healthz`,
}, token);
const paid = await session("Order 1001 · Darjeeling, 250 g");
const shown = await session("Order 1002 · Sencha, 100 g");

const { context, close } = await launch();
try {
  const page = await context.newPage();
  // The customer pays the first session, then the merchant refunds part of it.
  await page.goto(paid.url);
  await page.getByLabel("Card number").fill("4242 4242 4242 4242");
  await page.getByLabel("Expiry (MM/YY)").fill("12/30");
  await page.getByLabel("Security code").fill("123");
  await page.getByLabel("Name on card").fill("Grace Hopper");
  await Promise.all([page.waitForURL("**/healthz"), page.getByRole("button", { name: /^Pay / }).click()]);
  const done = await api(`/checkout/sessions/${paid.id}`, undefined, token);
  await api(`/payments/${done.payment_id}/refund`, { amount: 800, reason: "one tin damaged" }, token);

  await page.setViewportSize({ width: 420, height: 860 });
  await page.goto(shown.url);
  await page.screenshot({ path: `${out}/checkout.png`, fullPage: true });

  await page.setViewportSize({ width: 1100, height: 640 });
  await page.goto(`${base}/dashboard/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await Promise.all([page.waitForURL("**/dashboard/payments"), page.keyboard.press("Enter")]);
  await page.screenshot({ path: `${out}/payments.png`, fullPage: true });
  await page.goto(`${base}/dashboard/payments/${done.payment_id}`);
  await page.screenshot({ path: `${out}/payment.png`, fullPage: true });
  console.log(`screenshots: wrote ${out}/checkout.png, payments.png, payment.png`);
} finally {
  await close();
}
