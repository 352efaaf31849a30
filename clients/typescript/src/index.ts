/**
 * kassa's TypeScript client: openapi-fetch, typed by the paths and schemas that
 * openapi-typescript generates from kassa's OpenAPI document into ./schema.ts
 * (`make clients`; never edit that file by hand).
 *
 * Every call answers `{ data, error, response }`: `error` is a problem document (RFC 9457)
 * whose `code` is one of kassa's stable codes. `unwrap` turns it into a thrown `KassaError`.
 */
import createClient, { type Client, type ClientOptions } from "openapi-fetch";
import type { components, operations, paths } from "./schema.js";

export type { components, operations, paths };

type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];
export type ProblemCode = Schemas["ProblemCode"];
export type Payment = Schemas["PaymentOut"];
export type PaymentStatus = Schemas["PaymentStatus"];
export type CaptureMethod = Schemas["CaptureMethod"];
export type NextAction = Schemas["NextActionOut"];
export type Refund = Schemas["RefundOut"];
export type Transaction = Schemas["TransactionOut"];
export type WebhookEndpoint = Schemas["WebhookOut"];
export type Event = Schemas["EventOut"];
export type ApiKey = Schemas["CreatedKeyOut"];
export type KassaClient = Client<paths>;

export interface KassaOptions extends Omit<ClientOptions, "headers"> {
  /** An API key (`sk_test_…` / `sk_live_…`), or a login access token where one is needed. */
  token?: string;
  headers?: Record<string, string>;
}

export function createKassaClient({ token, headers, ...options }: KassaOptions = {}): KassaClient {
  return createClient<paths>({
    ...options,
    headers: { ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }), ...headers },
  });
}

/** A problem document kassa answered with, as an error to throw and catch. */
export class KassaError extends Error {
  readonly problem: Problem;
  readonly code: ProblemCode;
  readonly status: number;

  constructor(problem: Problem) {
    super(`${problem.code}: ${problem.detail}`);
    this.name = "KassaError";
    this.problem = problem;
    this.code = problem.code;
    this.status = problem.status;
  }
}

/** The body of a successful answer; a `KassaError` with the problem's `code` otherwise. */
export function unwrap<Data>(result: { data?: Data; error?: Problem; response: Response }): Data {
  if (result.error !== undefined) {
    throw new KassaError(result.error);
  }
  return result.data as Data;
}
