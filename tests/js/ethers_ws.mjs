// ethers v6 WebSocketProvider against a running openledger node; driven by tests/test_websocket.py.
//
// Usage: node tests/js/ethers_ws.mjs <config.json>
// config: {url (ws://host:port), chainId, privateKey, abi, bytecode, supply, tokenRecipient,
//          tokenAmount, timeoutMs}
//   supply, tokenAmount: decimal strings (token base units)
//
// Everything goes over the one WebSocket: the deployment, the transfer, `tx.wait()` (a
// "block" listener, i.e. eth_subscribe newHeads), `provider.on("pending")`
// (newPendingTransactions) and `contract.on("Transfer")` (eth_subscribe logs).
// Prints one line `RESULT {json}` on success (bigints as decimal strings) and exits 0; on
// any failure prints the error to stderr and exits 1. A watchdog exits 2 after `timeoutMs`
// (default 60 s) so that the script can never hang the test.
import { readFileSync } from "node:fs";
import { ContractFactory, Network, Wallet, WebSocketProvider } from "ethers";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const json = (value) =>
  JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));

let step = "init";
const rpcCalls = {}; // method -> count of requests sent
const rpcErrors = []; // {method, error} for every JSON-RPC error response
const subscriptions = []; // [params, id] of every answered eth_subscribe
const unsubscribed = []; // [id, result] of every answered eth_unsubscribe
const watchdog = setTimeout(() => {
  console.error(`ethers_ws.mjs: timed out after ${config.timeoutMs ?? 60000} ms at step: ${step}`);
  console.error(`rpc calls so far: ${json(rpcCalls)}; errors: ${json(rpcErrors)}`);
  process.exit(2);
}, config.timeoutMs ?? 60000);

const network = Network.from(config.chainId);
// cacheTimeout -1: the node seals as soon as a transaction arrives, so a cached "pending"
// nonce would be stale (see ethers_send.mjs).
const provider = new WebSocketProvider(config.url, network, { staticNetwork: network, cacheTimeout: -1 });

// Resolves with the subscription id once the node answers an eth_subscribe for "logs".
let logsSubscribed = null;
const logsSubscription = new Promise((resolve, reject) => {
  logsSubscribed = { resolve, reject };
});
logsSubscription.catch(() => {}); // handled where awaited

const pendingById = new Map();
provider.on("debug", (info) => {
  if (info.action === "sendRpcPayload") {
    const payloads = Array.isArray(info.payload) ? info.payload : [info.payload];
    for (const p of payloads) {
      rpcCalls[p.method] = (rpcCalls[p.method] ?? 0) + 1;
      pendingById.set(p.id, p);
    }
  } else if (info.action === "receiveRpcResult") {
    const results = Array.isArray(info.result) ? info.result : [info.result];
    for (const r of results) {
      const request = pendingById.get(r.id);
      pendingById.delete(r.id);
      const method = request?.method;
      if (r.error) {
        rpcErrors.push({ method, error: r.error });
        if (method === "eth_subscribe") logsSubscribed.reject(new Error(`eth_subscribe failed: ${json(r.error)}`));
      } else if (method === "eth_subscribe") {
        subscriptions.push([request.params, r.result]);
        if (request.params[0] === "logs") logsSubscribed.resolve(r.result);
      } else if (method === "eth_unsubscribe") {
        unsubscribed.push([request.params[0], r.result]);
      }
    }
  } else if (info.action === "receiveRpcError") {
    rpcErrors.push({ method: "(transport)", error: String(info.error?.message ?? info.error) });
  }
});

async function main() {
  step = "getNetwork";
  const net = await provider.getNetwork();
  const blockNumber = await provider.getBlockNumber();
  const wallet = new Wallet(config.privateKey, provider);

  // newHeads and newPendingTransactions through provider events.
  const blocks = [];
  provider.on("block", (n) => blocks.push(n));
  const pending = [];
  await provider.on("pending", (hash) => pending.push(hash));

  step = "deploy";
  const factory = new ContractFactory(config.abi, config.bytecode, wallet);
  const token = await factory.deploy(BigInt(config.supply));
  step = "waitForDeployment";
  await token.waitForDeployment();
  const deployReceipt = await token.deploymentTransaction().wait(1, 30000);
  const tokenAddress = await token.getAddress();

  step = "contract.on";
  const eventSeen = new Promise((resolve) => {
    token.on("Transfer", (from, to, value, payload) => {
      resolve({
        from,
        to,
        value,
        transactionHash: payload.log.transactionHash,
        blockNumber: payload.log.blockNumber,
        blockHash: payload.log.blockHash,
        address: payload.log.address,
        logIndex: payload.log.index,
      });
    });
  });
  step = "waiting for eth_subscribe logs";
  const logsSubscriptionId = await logsSubscription; // subscribed before the transfer is sent
  step = "token.transfer";
  const transferTx = await token.transfer(config.tokenRecipient, BigInt(config.tokenAmount));
  const transferReceipt = await transferTx.wait(1, 30000);
  step = "waiting for the Transfer event";
  const event = await eventSeen;
  step = "waiting for the pending hash";
  while (!pending.includes(transferTx.hash)) await new Promise((r) => setTimeout(r, 20));
  step = "balanceOf";
  const tokenBalance = await token.balanceOf(config.tokenRecipient);

  step = "removeAllListeners";
  await token.removeAllListeners();
  await provider.off("block");
  await provider.off("pending"); // (removeAllListeners would drop the "debug" listener too)
  step = "waiting for eth_unsubscribe"; // ethers sends them once each subscription id resolves
  const live = new Set(subscriptions.map(([, id]) => id));
  while (unsubscribed.length < live.size) await new Promise((r) => setTimeout(r, 20));
  step = "final eth_blockNumber";
  const finalBlock = await provider.getBlockNumber();

  console.log(
    "RESULT " +
      json({
        chainId: net.chainId,
        startBlock: blockNumber,
        finalBlock,
        sender: wallet.address,
        deploy: { address: tokenAddress, hash: deployReceipt.hash, status: deployReceipt.status, blockNumber: deployReceipt.blockNumber },
        tokenTransfer: {
          hash: transferReceipt.hash,
          status: transferReceipt.status,
          blockNumber: transferReceipt.blockNumber,
          blockHash: transferReceipt.blockHash,
        },
        logsSubscriptionId,
        subscriptions,
        unsubscribed,
        event,
        blocks,
        pending,
        tokenBalance,
        rpcCalls,
        rpcErrors,
      }),
  );
}

main().then(
  async () => {
    clearTimeout(watchdog);
    await provider.destroy();
    process.exit(0);
  },
  (error) => {
    console.error(`ethers_ws.mjs failed at step: ${step}`);
    console.error(error);
    console.error(`rpc calls: ${json(rpcCalls)}; errors: ${json(rpcErrors)}`);
    process.exit(1);
  },
);
