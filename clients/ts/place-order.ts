// place-order.ts: a Node client for the shopbus gateway, using the generated
// TypeScript code in gen/ts. It sets stock and a price for TS-DEMO-1, places
// an order (priced by the server), watches it until the inventory decision
// (WatchOrder, a server stream), checks the stock, and shows how a
// validation error and a wrong price come back.
//
// Every call carries a bearer token: the demo customer's for OrderService,
// an admin's for SetStock and SetPrice. Run it against `shopbus dev` (from the repo root),
// which writes both to .data/auth/:
//
//	npx tsx clients/ts/place-order.ts
//	SHOPBUS_URL=http://127.0.0.1:9090 SHOPBUS_TOKEN_FILE=… SHOPBUS_ADMIN_TOKEN_FILE=… npx tsx clients/ts/place-order.ts
//
// It exits non-zero unless the order is priced 2 × 1250, CONFIRMED, and
// exactly 2 units moved from on hand to reserved.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { InventoryService } from "../../gen/ts/shopbus/inventory/v1/inventory_service_pb";
import { OrderService, OrderStatus } from "../../gen/ts/shopbus/order/v1/order_service_pb";

const baseUrl = process.env.SHOPBUS_URL ?? "http://127.0.0.1:8080";

// bearer sends the token in file as "Authorization: Bearer <token>".
function bearer(file: string): Interceptor {
  const token = readFileSync(file, "utf8").trim();
  return (next) => async (req) => {
    req.header.set("Authorization", `Bearer ${token}`);
    return next(req);
  };
}
const as = (file: string) => createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer(file)] });
const orders = createClient(OrderService, as(process.env.SHOPBUS_TOKEN_FILE ?? ".data/auth/customer.jwt"));
const inventory = createClient(InventoryService, as(process.env.SHOPBUS_ADMIN_TOKEN_FILE ?? ".data/auth/admin.jwt"));

const sku = "TS-DEMO-1";

function fail(msg: string): never {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

await inventory.setStock({ sku, onHand: 10n });
await inventory.setPrice({ sku, unitPriceMinor: 1250n, currency: "EUR" });
const before = (await inventory.getStock({ sku })).stock ?? fail("GetStock returned no stock");

// The server prices the order: a line says no price (or the price the
// customer was shown, which must be the current one). The price reaches the
// order service as an event (inventory.priced); until it has arrived,
// CreateOrder refuses the SKU with FailedPrecondition and writes nothing, so
// the same request (same idempotency key) is retried for a few seconds.
const request = { idempotencyKey: randomUUID(), currency: "EUR", lines: [{ sku, quantity: 2 }] };
async function createWhenPriced() {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await orders.createOrder(request);
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code !== Code.FailedPrecondition || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
const created = await createWhenPriced();
const orderId = created.order?.orderId ?? fail("CreateOrder returned no order");
if (created.order?.totalMinor !== 2500n) fail(`order total ${created.order?.totalMinor}, want 2500 (2 × 1250)`);

// The order is PENDING until the inventory service has decided: WatchOrder
// streams it at once and again when its status changes, and ends with the
// outcome (no polling).
let status = OrderStatus.PENDING;
for await (const { order } of orders.watchOrder({ orderId }, { timeoutMs: 30_000 })) {
  status = order?.status ?? OrderStatus.UNSPECIFIED;
}
console.log(`order ${orderId} of customer ${created.order?.customerId}: ${OrderStatus[status]}`);

const { stock } = await inventory.getStock({ sku });
console.log(`stock ${sku}: onHand=${stock?.onHand} reserved=${stock?.reserved}`);

if (status !== OrderStatus.CONFIRMED) fail(`order is ${OrderStatus[status]}, want CONFIRMED`);
if (stock?.onHand !== before.onHand - 2n || stock.reserved !== before.reserved + 2n) {
  fail(`want onHand=${before.onHand - 2n} reserved=${before.reserved + 2n}`);
}

// A request that breaks the contract's rules fails with InvalidArgument.
try {
  await orders.createOrder({
    idempotencyKey: randomUUID(),
    currency: "EUR",
    lines: [{ sku, quantity: 0 }],
  });
  fail("CreateOrder with quantity 0 succeeded");
} catch (err) {
  const ce = ConnectError.from(err);
  if (ce.code !== Code.InvalidArgument) fail(`want InvalidArgument, got ${Code[ce.code]}: ${ce.message}`);
  console.log(`quantity 0 rejected as expected: ${ce.message}`);
}

// A price that is not the catalog's fails with FailedPrecondition.
try {
  await orders.createOrder({ ...request, idempotencyKey: randomUUID(), lines: [{ sku, quantity: 1, unitPriceMinor: 1n }] });
  fail("CreateOrder at a price of 1 succeeded");
} catch (err) {
  const ce = ConnectError.from(err);
  if (ce.code !== Code.FailedPrecondition) fail(`want FailedPrecondition, got ${Code[ce.code]}: ${ce.message}`);
  console.log(`a wrong price rejected as expected: ${ce.message}`);
}
console.log("OK");
