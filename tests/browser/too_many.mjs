// A customer who submits the checkout form too often, as card testing would, is shown a page
// a person can read — not a JSON document: nothing was charged, how long to wait, and a way
// back to the payment page, which still works. No script runs and nothing breaks the CSP.
import { check, launch } from "./launch.mjs";

const payUrl = process.env.PAY_URL;
const tries = Number(process.env.TRIES || "8");
const { context, close } = await launch();

try {
  const page = await context.newPage();
  await page.setViewportSize({ width: 375, height: 812 });
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().includes("429")) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  await page.goto(payUrl);
  let refused = false;
  for (let attempt = 1; attempt <= tries && !refused; attempt++) {
    await page.getByLabel("Card number").fill("4000 0000 0000 0002");
    await page.getByLabel(/Expiry/).fill("12/34");
    await page.getByLabel("Security code").fill("123");
    await page.getByLabel("Name on card").fill("Sam Cardholder");
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST"),
      page.getByRole("button", { name: /^Pay / }).click(),
    ]);
    await page.waitForLoadState("load");
    if (answer.status() === 429) {
      refused = true;
      console.log(`refused at attempt ${attempt}`);
    }
  }
  check(refused, `never refused in ${tries} attempts`);
  const heading = await page.getByRole("heading", { level: 1 }).textContent();
  check(heading.trim() === "Too many requests", `heading: ${heading}`);
  const alert = await page.getByRole("alert").textContent();
  check(/Nothing was charged/.test(alert) && /wait \d+ seconds?/.test(alert), `alert: ${alert}`);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 375, `the page is ${width}px wide at 375`);
  const styled = await page.evaluate(() => getComputedStyle(document.querySelector("main")).maxWidth);
  check(styled !== "none", "kassa's stylesheet applies (the CSP let it load)");
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  await Promise.all([
    page.waitForURL(payUrl),
    page.getByRole("link", { name: "Back to the payment page" }).click(),
  ]);
  const amount = await page.getByTestId("amount").textContent();
  check(amount.trim() === "€25.00", `back on the payment page: ${amount}`);
  console.log(`back: ${page.url()}`);
  check(problems.length === 0, `console errors (CSP?): ${problems.join(" | ")}`);
} finally {
  await close();
}
