// /docs as a person sees it: the operations render from kassa alone (no CDN).
import { check, launch } from "./launch.mjs";

const base = process.env.KASSA_URL;
const { context, close } = await launch();
try {
  const page = await context.newPage();
  const outside = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(base)) outside.push(request.url());
  });
  await page.goto(`${base}/docs`);
  await page.locator(".opblock").first().waitFor({ timeout: 30000 });
  const paths = await page.locator(".opblock-summary-path").allTextContents();
  check(paths.some((path) => path.includes("/api/payments")), `operations: ${paths.join(", ")}`);
  check(outside.length === 0, `requests left kassa: ${outside.join(", ")}`);
  console.log("docs rendered");
} finally {
  await close();
}
