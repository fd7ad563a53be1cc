#!/usr/bin/env bash
# One command for a local devnet: set up, create the chain on first use, and run
# the node with the dev accounts unlocked. Ctrl-C stops it; the chain is kept in
# ./devnet-data (delete the folder to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

DATADIR=${DATADIR:-devnet-data}
PORT=${PORT:-8545}
BLOCK_TIME=${BLOCK_TIME:-2}
if [ ! -d "$DATADIR/chaindata" ]; then
  openledger-node init --genesis genesis/devnet.json --datadir "$DATADIR"
fi
cat <<INFO
OpenLedger devnet
  RPC:       http://127.0.0.1:$PORT   (chain id 1612)
  Dev keys:  see README.md ("Dev accounts"), mnemonic "test test ... junk"
INFO
exec openledger-node run --datadir "$DATADIR" --http-port "$PORT" --block-time "$BLOCK_TIME" --dev "$@"
