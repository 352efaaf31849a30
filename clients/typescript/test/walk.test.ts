/**
 * A payment's life walked with the generated client against a running `kassa serve` (and a
 * `kassa worker` delivering webhooks), whose address is in KASSA_BASE_URL; the Python test
 * tests/clients/test_typescript_client.py starts both and runs this file with `node --test`.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import {
  createKassaClient,
  KassaError,
  unwrap,
  type ApiKey,
  type CaptureMethod,
  type KassaClient,
  type Payment,
  type Transaction,
} from "../src/index.js";

const baseUrl = process.env.KASSA_BASE_URL;
assert.ok(baseUrl, "KASSA_BASE_URL is not set");

interface Delivery {
  body: string;
  headers: Record<string, string>;
}

/** An HTTP server on loopback that keeps every POST it receives, as a merchant's would. */
async function receiver(): Promise<{ url: string; deliveries: Delivery[]; close: () => void }> {
  const deliveries: Delivery[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      deliveries.push({ body: Buffer.concat(chunks).toString("utf8"), headers: flat(request.headers) });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hooks`, deliveries, close: () => server.close() };
}

function flat(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === "string") out[name] = value;
  }
  return out;
}

async function until<T>(what: string, probe: () => T | undefined, seconds = 20): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const card = {
  number: "4242 4242 4242 4242",
  exp_month: 12,
  exp_year: 2099,
  cvc: "123",
  holder_name: "Sam Cardholder",
};

async function pay(
  kassa: KassaClient,
  amount: number,
  key?: string,
  { number = card.number, capture }: { number?: string; capture?: CaptureMethod } = {},
) {
  return kassa.POST("/api/payments", {
    params: { header: key === undefined ? {} : { "Idempotency-Key": key } },
    body: { amount, currency: "eur", payment_method: "credit_card", details: { ...card, number }, capture },
  });
}

const threeDSecureCard = "4000 0027 6000 3184"; // the simulator asks, and completing succeeds
const returnUrl = "https://shop.example/orders/1042/paid";

test("a payment's life with the TypeScript client", async (t) => {
  const hooks = await receiver();
  t.after(hooks.close);
  const anonymous = createKassaClient({ baseUrl });
  const email = `ts-${randomUUID()}@example.com`;
  const password = `walk ${randomUUID()}`;
  let kassa = anonymous;

  let dashboard = anonymous;
  await t.test("register, and log in once to create an API key", async () => {
    const user = unwrap(
      await anonymous.POST("/api/auth/register", { body: { name: "Sam Cardholder", email, password } }),
    );
    assert.equal(user.email, email);
    const tokens = unwrap(await anonymous.POST("/api/auth/login", { body: { email, password } }));
    assert.equal(tokens.token_type, "bearer");
    dashboard = createKassaClient({ baseUrl, token: tokens.access_token });
    const key: ApiKey = unwrap(
      await dashboard.POST("/api/keys", { body: { name: "back end", mode: "test" } }),
    );
    assert.match(key.secret, /^sk_test_/);
    assert.equal(key.livemode, false);
    // Everything from here on is the merchant's back end, with the key alone.
    kassa = createKassaClient({ baseUrl, token: key.secret });
    assert.equal(unwrap(await kassa.GET("/api/auth/profile")).id, user.id);
  });

  let webhook: { id: string; secret: string } | undefined;
  await t.test("a webhook endpoint is created", async () => {
    const created = unwrap(
      await kassa.POST("/api/webhooks", { body: { url: hooks.url, events: ["payment.completed"] } }),
    );
    assert.match(created.secret, /^whsec_/);
    webhook = { id: created.id, secret: created.secret };
  });

  let payment: Payment | undefined;
  await t.test("create with an Idempotency-Key; the retry replays", async () => {
    const key = randomUUID();
    const first = await pay(kassa, 1050, key);
    payment = unwrap(first);
    assert.equal(first.response.status, 201);
    assert.equal(payment.status, "pending");
    assert.equal(payment.currency, "EUR");
    assert.equal(first.response.headers.get("Idempotent-Replayed"), null);

    const retry = await pay(kassa, 1050, key);
    assert.equal(retry.response.status, 201);
    assert.equal(retry.response.headers.get("Idempotent-Replayed"), "true");
    assert.deepEqual(unwrap(retry), payment);
  });

  await t.test("process, then refund part of it", async () => {
    assert.ok(payment);
    const processed = unwrap(
      await kassa.POST("/api/payments/process", { body: { payment_id: payment.id } }),
    );
    assert.equal(processed.status, "completed");
    const refund = unwrap(
      await kassa.POST("/api/payments/{payment_id}/refund", {
        params: { path: { payment_id: payment.id } },
        body: { amount: 50, reason: "requested_by_customer" },
      }),
    );
    assert.equal(refund.amount, 50);
    assert.equal(refund.status, "succeeded");
    const after = unwrap(
      await kassa.GET("/api/payments/{payment_id}", { params: { path: { payment_id: payment.id } } }),
    );
    assert.equal(after.status, "partially_refunded");
    assert.equal(after.amount_refunded, 50);
  });

  await t.test("the completed event arrives signed, and standardwebhooks verifies it", async () => {
    assert.ok(webhook && payment);
    const paid = payment;
    const delivery = await until("the payment.completed delivery", () =>
      hooks.deliveries.find((d) => d.body.includes(paid.id)),
    );
    const verifier = new Webhook(webhook.secret);
    const event = verifier.verify(delivery.body, delivery.headers) as {
      id: string;
      type: string;
      data: { object: Payment };
    };
    assert.equal(event.type, "payment.completed");
    assert.equal(event.id, delivery.headers["webhook-id"]);
    assert.equal(event.data.object.id, paid.id);
    assert.throws(
      () => verifier.verify(delivery.body.replace("1050", "1051"), delivery.headers),
      WebhookVerificationError,
    );
    assert.throws(
      () => new Webhook(`whsec_${Buffer.from("another secret").toString("base64")}`).verify(
        delivery.body,
        delivery.headers,
      ),
      WebhookVerificationError,
    );
  });

  await t.test("transactions list page by page with a cursor", async () => {
    for (const amount of [700, 800]) {
      const more = unwrap(await pay(kassa, amount));
      unwrap(await kassa.POST("/api/payments/process", { body: { payment_id: more.id } }));
    }
    const seen: Transaction[] = [];
    let cursor: string | undefined;
    let pages = 0;
    for (;;) {
      const page = unwrap(
        await kassa.GET("/api/transactions", { params: { query: { limit: 2, cursor } } }),
      );
      seen.push(...page.data);
      pages += 1;
      if (!page.has_more) break;
      assert.ok(page.next_cursor);
      cursor = page.next_cursor;
    }
    assert.equal(pages, 2);
    assert.equal(new Set(seen.map((tx) => tx.id)).size, 4);
    assert.deepEqual(
      seen.map((tx) => [tx.type, tx.amount]),
      [["charge", 800], ["charge", 700], ["refund", 50], ["charge", 1050]],
    );
  });

  await t.test("payments list page by page with a small limit, following next_cursor", async () => {
    const seen: Payment[] = [];
    let cursor: string | undefined;
    let pages = 0;
    for (;;) {
      const page = unwrap(
        await kassa.GET("/api/payments", { params: { query: { limit: 2, cursor } } }),
      );
      seen.push(...page.data);
      pages += 1;
      if (!page.has_more) {
        assert.equal(page.next_cursor, null);
        break;
      }
      assert.ok(page.next_cursor);
      cursor = page.next_cursor;
    }
    assert.equal(pages, 2);
    assert.equal(new Set(seen.map((p) => p.id)).size, seen.length);
    assert.deepEqual(seen.map((p) => p.amount), [800, 700, 1050]); // newest first
    assert.ok(seen.every((p) => !p.livemode));
  });

  await t.test("3-D Secure: requires_action with next_action; the challenge completed, it settles", async () => {
    const created = unwrap(await pay(kassa, 3100, undefined, { number: threeDSecureCard }));
    const asked = unwrap(
      await kassa.POST("/api/payments/process", {
        body: { payment_id: created.id, return_url: returnUrl },
      }),
    );
    assert.equal(asked.status, "requires_action");
    const next = asked.next_action;
    assert.ok(next);
    assert.equal(next.type, "redirect_to_url");
    assert.equal(next.return_url, returnUrl);

    // The customer's browser, over plain HTTP: the page, then its "Complete" form's POST.
    const page = await fetch(next.url);
    assert.equal(page.status, 200);
    const form = /<form method="post" action="([^"]+)">\s*<button[^>]*>Complete</.exec(await page.text());
    assert.ok(form?.[1]);
    const done = await fetch(new URL(form[1].replaceAll("&amp;", "&"), next.url), {
      method: "POST",
      redirect: "manual",
    });
    assert.equal(done.status, 303);
    const back = new URL(done.headers.get("Location") ?? "");
    assert.equal(`${back.origin}${back.pathname}`, returnUrl);
    assert.equal(back.searchParams.get("payment_id"), created.id);
    assert.equal(back.searchParams.get("redirect_status"), "succeeded");

    const settled = unwrap(
      await kassa.GET("/api/payments/{payment_id}", { params: { path: { payment_id: created.id } } }),
    );
    assert.equal(settled.status, "completed");
    assert.equal(settled.amount_captured, 3100);
    assert.equal(settled.next_action, null);
  });

  await t.test("manual capture: authorized, captured in part, refunded in part of that", async () => {
    const created = unwrap(await pay(kassa, 1000, undefined, { capture: "manual" }));
    assert.equal(created.capture, "manual");
    const authorized = unwrap(
      await kassa.POST("/api/payments/process", { body: { payment_id: created.id } }),
    );
    assert.equal(authorized.status, "requires_capture");
    assert.equal(authorized.amount_captured, 0);
    const path = { payment_id: created.id };
    const captured = unwrap(
      await kassa.POST("/api/payments/{payment_id}/capture", { params: { path }, body: { amount: 600 } }),
    );
    assert.equal(captured.status, "completed");
    assert.equal(captured.amount_captured, 600);

    const refund = unwrap(
      await kassa.POST("/api/payments/{payment_id}/refund", { params: { path }, body: { amount: 250 } }),
    );
    assert.equal(refund.amount, 250);
    const tooMuch = await kassa.POST("/api/payments/{payment_id}/refund", {
      params: { path },
      body: { amount: 351 },
    });
    assert.equal(tooMuch.error?.code, "amount_exceeds_refundable");
    const after = unwrap(await kassa.GET("/api/payments/{payment_id}", { params: { path } }));
    assert.equal(after.status, "partially_refunded");
    assert.equal(after.amount_refunded, 250);

    const again = await kassa.POST("/api/payments/{payment_id}/capture", { params: { path } });
    assert.equal(again.response.status, 409);
    assert.equal(again.error?.code, "invalid_state");
    await assert.rejects(
      async () => unwrap(await kassa.POST("/api/payments/{payment_id}/capture", { params: { path } })),
      (error: unknown) => error instanceof KassaError && error.code === "invalid_state",
    );
  });

  await t.test("webhook endpoints list, and delete", async () => {
    assert.ok(webhook);
    const id = webhook.id;
    const listed = unwrap(await kassa.GET("/api/webhooks"));
    assert.deepEqual(listed.data.map((w) => w.id), [id]);
    assert.equal("secret" in (listed.data[0] ?? {}), false);
    const deleted = await kassa.DELETE("/api/webhooks/{webhook_id}", {
      params: { path: { webhook_id: id } },
    });
    assert.equal(deleted.response.status, 204);
    assert.deepEqual(unwrap(await kassa.GET("/api/webhooks")).data, []);
  });

  await t.test("problems are typed errors carrying their code", async () => {
    const unknown = await kassa.GET("/api/payments/{payment_id}", {
      params: { path: { payment_id: randomUUID() } },
    });
    assert.equal(unknown.response.status, 404);
    assert.equal(unknown.error?.code, "payment_not_found");
    assert.equal(
      unknown.response.headers.get("Content-Type"),
      "application/problem+json",
    );

    const bad = await pay(kassa, -5);
    assert.ok(bad.error);
    assert.equal(bad.error.code, "validation_error");
    assert.deepEqual(bad.error.errors?.map((e) => e.field), ["amount"]);

    await assert.rejects(
      async () => unwrap(await pay(kassa, 0)),
      (error: unknown) =>
        error instanceof KassaError && error.code === "validation_error" && error.status === 422,
    );

    assert.ok(payment);
    const twice = await kassa.POST("/api/payments/process", { body: { payment_id: payment.id } });
    assert.equal(twice.response.status, 409);
    assert.equal(twice.error?.code, "invalid_state");
  });

  await t.test("a key without the scope gets insufficient_scope; a key cannot make keys", async () => {
    const reader = unwrap(
      await dashboard.POST("/api/keys", { body: { name: "reports", mode: "test", scopes: ["read"] } }),
    );
    assert.deepEqual(reader.scopes, ["read"]);
    const reports = createKassaClient({ baseUrl, token: reader.secret });
    const refused = await pay(reports, 700);
    assert.equal(refused.response.status, 403);
    assert.equal(refused.error?.code, "insufficient_scope");
    assert.equal(unwrap(await reports.GET("/api/payments", { params: { query: { limit: 1 } } })).data.length, 1);

    const more = await kassa.POST("/api/keys", { body: { name: "more", mode: "test" } });
    assert.equal(more.response.status, 403);
    assert.equal(more.error?.code, "forbidden");
  });
});
