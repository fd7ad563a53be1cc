#!/usr/bin/env bash
# One command for a local devnet: set up, start an anvil L1 on loopback, create the L2
# chain and its BatchInbox on first use, and run the node with the dev accounts unlocked
# and the batch poster on. Ctrl-C stops everything it started. The L2 chain and the L1
# state are kept in ./devnet-data (delete the folder to start over).
#   NO_L1=1 ./scripts/devnet.sh   runs the node alone, as before settlement existed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

DATADIR=${DATADIR:-devnet-data}
PORT=${PORT:-8545}
L1_PORT=${L1_PORT:-8546}
L1_HOST=${L1_HOST:-127.0.0.1}  # where anvil listens (docker: 0.0.0.0); the node reaches it on loopback
BLOCK_TIME=${BLOCK_TIME:-2}
BATCH_MAX_AGE=${BATCH_MAX_AGE:-10}
# The L1 mines a block every L1_BLOCK_TIME seconds (as a real L1 does, so that its safe and
# finalized blocks move: anvil puts them 1 and 2 epochs of L1_EPOCH blocks behind its head).
L1_BLOCK_TIME=${L1_BLOCK_TIME:-2}
L1_EPOCH=${L1_EPOCH:-4}
# The L1 batcher: anvil's dev account 9 (INSECURE, a published key), so that dev accounts
# 0-8 stay free for L1 experiments.
export OPENLEDGER_BATCHER_KEY=${OPENLEDGER_BATCHER_KEY:-0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6}

if [ ! -d "$DATADIR/chaindata" ]; then
  openledger-node init --genesis genesis/devnet.json --datadir "$DATADIR"
fi

if [ -n "${NO_L1:-}" ]; then
  cat <<INFO
OpenLedger devnet (no L1)
  RPC:       http://127.0.0.1:$PORT   (chain id 1612)
  Dev keys:  see README.md ("Dev accounts"), mnemonic "test test ... junk"
INFO
  exec openledger-node run --datadir "$DATADIR" --http-port "$PORT" --block-time "$BLOCK_TIME" --dev "$@"
fi

L1_URL="http://127.0.0.1:$L1_PORT"
PIDS=()
stop_all() {
  trap - INT TERM EXIT
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all INT TERM EXIT

# anvil writes its state on exit and loads it on the next start: batches survive restarts.
ANVIL_ARGS=(--host "$L1_HOST" --port "$L1_PORT" --block-time "$L1_BLOCK_TIME" --slots-in-an-epoch "$L1_EPOCH"
            --dump-state "$DATADIR/l1-state.json" --silent)
if [ -f "$DATADIR/l1-state.json" ]; then ANVIL_ARGS+=(--load-state "$DATADIR/l1-state.json"); fi
node_modules/.bin/anvil "${ANVIL_ARGS[@]}" &
PIDS+=($!)
# JSON-RPC to the L1 with the venv's Python (no curl in slim images): l1 METHOD [PARAMS_JSON]
l1() {
  python - "$L1_URL" "$1" "${2:-[]}" <<'PY'
import json, sys, urllib.request
url, method, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
request = urllib.request.Request(url, body, {"content-type": "application/json"})
print(json.load(urllib.request.urlopen(request, timeout=5)).get("result", ""))
PY
}
for _ in $(seq 100); do
  if l1 eth_chainId >/dev/null 2>&1; then break; fi
  sleep 0.1
done

INBOX=""
if [ -f "$DATADIR/l1-inbox" ]; then
  INBOX=$(cat "$DATADIR/l1-inbox")
  CODE=$(l1 eth_getCode "[\"$INBOX\", \"latest\"]" || true)
  if [ -z "$CODE" ] || [ "$CODE" = "0x" ]; then INBOX=""; fi  # the L1 was reset: deploy again
fi
if [ -z "$INBOX" ]; then
  INBOX=$(openledger-node deploy-inbox --l1-rpc "$L1_URL" --datadir "$DATADIR")
  echo "$INBOX" > "$DATADIR/l1-inbox"
fi

cat <<INFO
OpenLedger devnet
  RPC:       http://127.0.0.1:$PORT   (chain id 1612)
  L1:        $L1_URL   (anvil, chain id 31337, a block every ${L1_BLOCK_TIME}s, finalized $((2 * L1_EPOCH)) blocks behind)
  Inbox:     $INBOX   (batches every ${BATCH_MAX_AGE}s or 100 kB; ol_syncStatus shows progress)
  Dev keys:  see README.md ("Dev accounts"), mnemonic "test test ... junk"
  Audit:     openledger-node replay --l1-rpc $L1_URL --inbox $INBOX --genesis genesis/devnet.json --datadir /tmp/audit
INFO
openledger-node run --datadir "$DATADIR" --http-port "$PORT" --block-time "$BLOCK_TIME" --dev \
  --l1-rpc "$L1_URL" --l1-inbox "$INBOX" --l1-chain-id 31337 --batch-max-age "$BATCH_MAX_AGE" "$@" &
PIDS+=($!)
wait -n "${PIDS[@]}" || true
