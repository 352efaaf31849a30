// The simulator's 3-D Secure page as a customer uses it: click "Complete" (or "Fail"),
// follow the redirect back to the shop, and (a third payment) press "Complete" twice at
// once in two tabs. The Python side checks the payments; this checks what the browser saw.
import { check, launch } from "./launch.mjs";

const base = process.env.KASSA_URL;
const complete = process.env.COMPLETE_URL;
const fail = process.env.FAIL_URL;
const twice = process.env.TWICE_URL;
const shot = process.env.SCREENSHOT;

const { context, close } = await launch();
try {
  const outside = [];
  const blocked = [];
  context.on("request", (request) => {
    if (!request.url().startsWith(base)) outside.push(request.url());
  });

  async function open(url) {
    const page = await context.newPage();
    page.on("console", (message) => {
      if (message.type() === "error") blocked.push(message.text());
    });
    const response = await page.goto(url);
    check(response.status() === 200, `${url} answered ${response.status()}`);
    const csp = response.headers()["content-security-policy"] || "";
    check(csp.includes("default-src 'none'"), `CSP: ${csp}`);
    await page.getByRole("button", { name: "Complete" }).waitFor();
    await page.getByRole("button", { name: "Fail" }).waitFor();
    return page;
  }

  const first = await open(complete);
  if (shot) {
    await first.setViewportSize({ width: 720, height: 560 });
    await first.screenshot({ path: shot });
  }
  await Promise.all([
    first.waitForURL(/redirect_status=succeeded/),
    first.getByRole("button", { name: "Complete" }).click(),
  ]);
  console.log(`completed -> ${first.url()}`);

  const second = await open(fail);
  await Promise.all([
    second.waitForURL(/redirect_status=failed/),
    second.getByRole("button", { name: "Fail" }).click(),
  ]);
  console.log(`failed -> ${second.url()}`);

  // Two tabs on one challenge, "Complete" pressed in both at once.
  const [left, right] = [await open(twice), await open(twice)];
  await Promise.all(
    [left, right].map((tab) =>
      Promise.all([
        tab.waitForURL(/redirect_status=/),
        tab.getByRole("button", { name: "Complete" }).click(),
      ]),
    ),
  );
  console.log(`twice -> ${left.url()} | ${right.url()}`);
  // Back on the page: it says it is done, and offers no button to press again.
  const again = await context.newPage();
  await again.goto(twice);
  const buttons = await again.getByRole("button").count();
  check(buttons === 0, `a finished challenge still shows ${buttons} buttons`);

  check(outside.length === 0, `requests left kassa: ${outside.join(", ")}`);
  check(blocked.length === 0, `the browser reported errors: ${blocked.join(" | ")}`);
  console.log("challenge walked");
} finally {
  await close();
}
