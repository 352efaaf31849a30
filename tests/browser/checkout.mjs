// A customer pays through kassa's checkout page, as a person would, on a 375 px wide phone:
// with the keyboard through a labelled form, a declined card first, then 4242…, and lands on
// the shop's success page. No script runs on the page and nothing breaks its CSP.
import { check, launch } from "./launch.mjs";

const payUrl = process.env.PAY_URL;
const declineUrl = process.env.DECLINE_URL;
const success = process.env.SUCCESS_PREFIX;
const threeDsUrl = process.env.THREEDS_URL;
const { context, close } = await launch();

async function fillCard(page, number) {
  // Labels lead to the fields; the keyboard moves between them.
  await page.getByLabel("Card number").click();
  await page.keyboard.type(number);
  await page.keyboard.press("Tab");
  await page.keyboard.type("12/34");
  await page.keyboard.press("Tab");
  await page.keyboard.type("123");
  await page.keyboard.press("Tab");
  await page.keyboard.type("Sam Cardholder");
}

try {
  const page = await context.newPage();
  await page.setViewportSize({ width: 375, height: 812 });
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  if (process.env.DEBUG_PAGES) {
    page.on("response", (r) => console.log("resp", r.status(), r.url()));
    page.on("requestfailed", (r) => console.log("failed", r.url(), r.failure()?.errorText));
  }

  // 1. A good card, submitted with Enter from the last field.
  await page.goto(payUrl);
  const amount = await page.getByTestId("amount").textContent();
  check(amount.trim() === "€25.00", `amount shown: ${amount}`);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 375, `the page is ${width}px wide at 375`);
  await fillCard(page, "4242 4242 4242 4242");
  await Promise.all([page.waitForLoadState("load"), page.keyboard.press("Enter")]);
  await page.waitForURL((url) => url.href.startsWith(success), { timeout: 15000 }).catch(async () => {
    const text = await page.evaluate(() => document.body.innerText);
    throw new Error(`not paid: ${page.url()} ${text.replace(/\s+/g, " ")}`);
  });
  check(page.url().startsWith(success), `landed on ${page.url()}`);
  check((await page.textContent("body")).includes("Thanks"), "the shop's success page");
  console.log(`paid: ${page.url()}`);

  // 2. A declined card: the decline is shown, the form stays, 4242 then pays.
  if (declineUrl) await declined(page);
  if (threeDsUrl) await authenticated(page);
  check(problems.length === 0, `console errors (CSP?): ${problems.join(" | ")}`);
} finally {
  await close();
}

async function declined(page) {
  await page.goto(declineUrl);
  await fillCard(page, "4000 0000 0000 0002");
  await page.getByRole("button", { name: /^Pay / }).click();
  const decline = page.getByTestId("decline");
  await decline.waitFor({ timeout: 15000 });
  check((await decline.textContent()).includes("declined"), "the decline is explained");
  check(page.url() === declineUrl, `still on the checkout page: ${page.url()}`);
  await fillCard(page, "4242424242424242");
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(success)),
    page.getByRole("button", { name: /^Pay / }).click(),
  ]);
  console.log(`declined, then paid: ${page.url()}`);
}

// 3. A card that asks for 3-D Secure: kassa's challenge page, "Complete", then the shop.
async function authenticated(page) {
  await page.goto(threeDsUrl);
  await fillCard(page, "4000 0027 6000 3184");
  await Promise.all([
    page.waitForURL((url) => url.pathname.startsWith("/simulator/3ds/")),
    page.getByRole("button", { name: /^Pay / }).click(),
  ]);
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(success)),
    page.getByRole("button", { name: /Complete/ }).click(),
  ]);
  console.log(`authenticated, then paid: ${page.url()}`);
}
