#!/usr/bin/env bash
# Set up everything the node needs on a fresh machine: a .venv with the Python
# packages (and the Cython build), and the npm packages (solc, anvil, cast, ethers).
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

# Reinstall (which also compiles the Cython attribution core and EVM loop) when the package
# metadata or the Cython sources change, or when a compiled module is missing.
want=$(cat pyproject.toml setup.py attribution_native/*.pyx openledger_node/chain/*.pyx | sha256sum | cut -c1-16)
if [ "$(cat .venv/.openledger-installed 2>/dev/null)" != "$want" ] \
  || ! python -c "import attribution_native._core, openledger_node.chain._evm_loop" 2>/dev/null; then
  echo "setup: installing Python packages" >&2
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e '.[test,ai]'
  echo "$want" > .venv/.openledger-installed
fi

lock=$(sha256sum package-lock.json | cut -c1-16)
if [ "$(cat node_modules/.openledger-installed 2>/dev/null)" != "$lock" ]; then
  echo "setup: installing npm packages" >&2
  # Not `npm ci`: the lock file holds only the linux-x64 builds of anvil/cast (the registry
  # reachable here has no others), which `npm ci` reads as out of sync; this installs
  # exactly the locked versions and leaves package.json and the lock file untouched.
  npm install --no-audit --no-fund --no-save --loglevel=error
  echo "$lock" > node_modules/.openledger-installed
fi
