// ethers v6 against a running openledger node; driven by tests/test_clients.py.
//
// Usage: node tests/js/ethers_send.mjs <config.json>
// config: {url, chainId, privateKey, to, value, abi, bytecode, supply, tokenRecipient, tokenAmount}
//   value, supply, tokenAmount: decimal strings (wei / token base units)
//
// Prints one line `RESULT {json}` on success (bigints as decimal strings) and exits 0;
// on any failure prints the error to stderr and exits 1. A watchdog exits 2 after
// `timeoutMs` (default 60 s) so that the script can never hang the test.
import { readFileSync } from "node:fs";
import { ContractFactory, JsonRpcProvider, Network, Wallet } from "ethers";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const json = (value) =>
  JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));

let step = "init";
const rpcCalls = {}; // method -> count of requests sent
const rpcErrors = []; // {method, error} for every JSON-RPC error response
// Settles when the node answers ethers' eth_newFilter (rejects on an error answer).
let newFilterAnswered = null;
let newFilterFailed = null;
const newFilterSeen = new Promise((resolve, reject) => {
  newFilterAnswered = resolve;
  newFilterFailed = reject;
});
newFilterSeen.catch(() => {}); // handled where awaited
const watchdog = setTimeout(() => {
  console.error(`ethers_send.mjs: timed out after ${config.timeoutMs ?? 60000} ms at step: ${step}`);
  console.error(`rpc errors so far: ${JSON.stringify(rpcErrors)}`);
  process.exit(2);
}, config.timeoutMs ?? 60000);

const network = Network.from(config.chainId);
// cacheTimeout -1: ethers shares identical requests made within 250 ms by default; the
// node seals a block as soon as a transaction arrives, so a cached "pending" nonce or
// balance would be stale (the second send would reuse nonce 0: "nonce too low").
const provider = new JsonRpcProvider(config.url, network, {
  staticNetwork: network,
  pollingInterval: 100,
  cacheTimeout: -1,
});

// Track every JSON-RPC request and error (ethers batches, so payloads can be arrays).
const pendingById = new Map();
provider.on("debug", (info) => {
  if (info.action === "sendRpcPayload") {
    const payloads = Array.isArray(info.payload) ? info.payload : [info.payload];
    for (const p of payloads) {
      rpcCalls[p.method] = (rpcCalls[p.method] ?? 0) + 1;
      pendingById.set(p.id, p.method);
    }
  } else if (info.action === "receiveRpcResult") {
    const results = Array.isArray(info.result) ? info.result : [info.result];
    for (const r of results) {
      const method = pendingById.get(r.id);
      pendingById.delete(r.id);
      if (r.error) {
        rpcErrors.push({ method, error: r.error });
        if (method === "eth_newFilter") newFilterFailed(new Error(`eth_newFilter failed: ${json(r.error)}`));
      } else if (method === "eth_newFilter") newFilterAnswered(r.result);
    }
  } else if (info.action === "receiveRpcError") {
    rpcErrors.push({ method: "(transport)", error: String(info.error?.message ?? info.error) });
  }
});

async function main() {
  step = "getNetwork";
  const net = await provider.getNetwork();
  const wallet = new Wallet(config.privateKey, provider);

  // --- value transfer -------------------------------------------------------------
  step = "balances before";
  const senderBefore = await provider.getBalance(wallet.address);
  const recipientBefore = await provider.getBalance(config.to);
  step = "sendTransaction";
  const tx = await wallet.sendTransaction({ to: config.to, value: BigInt(config.value) });
  step = "tx.wait";
  const receipt = await tx.wait(1, 30000);
  step = "balances after";
  const senderAfter = await provider.getBalance(wallet.address);
  const recipientAfter = await provider.getBalance(config.to);
  step = "getTransaction";
  const fetched = await provider.getTransaction(tx.hash);

  // --- contract deployment --------------------------------------------------------
  step = "deploy";
  const factory = new ContractFactory(config.abi, config.bytecode, wallet);
  const token = await factory.deploy(BigInt(config.supply));
  step = "waitForDeployment";
  await token.waitForDeployment();
  const deployReceipt = await token.deploymentTransaction().wait(1, 30000);
  const tokenAddress = await token.getAddress();

  // --- contract event via eth_newFilter / eth_getFilterChanges ---------------------
  step = "contract.on";
  const eventSeen = new Promise((resolve) => {
    token.on("Transfer", (from, to, value, payload) => {
      resolve({
        from,
        to,
        value,
        transactionHash: payload.log.transactionHash,
        blockNumber: payload.log.blockNumber,
        address: payload.log.address,
        logIndex: payload.log.index,
      });
    });
  });
  step = "waiting for eth_newFilter";
  const filterId = await newFilterSeen; // the filter exists before the transfer is sent
  step = "token.transfer";
  const transferTx = await token.transfer(config.tokenRecipient, BigInt(config.tokenAmount));
  const transferReceipt = await transferTx.wait(1, 30000);
  step = "waiting for the Transfer event";
  const event = await eventSeen;
  await token.removeAllListeners();

  step = "queryFilter";
  const queried = (await token.queryFilter("Transfer", deployReceipt.blockNumber)).map((e) => ({
    from: e.args[0],
    to: e.args[1],
    value: e.args[2],
    transactionHash: e.transactionHash,
    blockNumber: e.blockNumber,
  }));
  step = "balanceOf";
  const tokenBalance = await token.balanceOf(config.tokenRecipient);
  const deployerTokenBalance = await token.balanceOf(wallet.address);
  const totalSupply = await token.totalSupply();

  const result = {
    chainId: net.chainId,
    sender: wallet.address,
    transfer: {
      hash: tx.hash,
      status: receipt.status,
      blockNumber: receipt.blockNumber,
      blockHash: receipt.blockHash,
      gasUsed: receipt.gasUsed,
      gasPrice: receipt.gasPrice,
      from: receipt.from,
      to: receipt.to,
      fetchedValue: fetched.value,
      fetchedType: fetched.type,
    },
    balances: { senderBefore, senderAfter, recipientBefore, recipientAfter },
    deploy: {
      address: tokenAddress,
      hash: deployReceipt.hash,
      status: deployReceipt.status,
      blockNumber: deployReceipt.blockNumber,
      contractAddress: deployReceipt.contractAddress,
    },
    tokenTransfer: { hash: transferReceipt.hash, status: transferReceipt.status, blockNumber: transferReceipt.blockNumber },
    filterId,
    event,
    queried,
    tokenBalance,
    deployerTokenBalance,
    totalSupply,
    rpcCalls,
    rpcErrors,
  };
  console.log("RESULT " + json(result));
}

main().then(
  async () => {
    clearTimeout(watchdog);
    provider.destroy();
    process.exit(0);
  },
  (error) => {
    console.error(`ethers_send.mjs failed at step: ${step}`);
    console.error(error);
    console.error(`rpc errors: ${json(rpcErrors)}`);
    process.exit(1);
  },
);
